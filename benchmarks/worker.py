"""A contender's process: runs measurements on command, one at a time.

The orchestrator (:mod:`benchmarks.run`) keeps one worker per contender for
the whole run, so imports and dataset loading are paid once. Protocol: one
JSON command per line on stdin, one JSON reply per line on stdout, prefixed
with ``@@`` (anything else on stdout is ignored).

``{"cmd": "prepare", "contender", "scenario", "op", "bucket", "dataset", "version"}``
    builds the operation (clients, inputs), untimed, without requests;
``{"cmd": "run"}``
    times it and replies with wall, CPU, peak memory and a sanity check.

Between the two the orchestrator snapshots the server's counters, so the
requests it reports are exactly those of the timed operation.
"""

from __future__ import annotations

import json
import sys
import traceback
from typing import Any

from . import clients, synth


def _reply(obj: dict[str, Any]) -> None:
    sys.stdout.write("@@" + json.dumps(obj) + "\n")
    sys.stdout.flush()


def main() -> None:
    clients.fake_aws_environment()
    endpoint = sys.argv[1]
    contenders: dict[str, clients.Contender] = {}
    inputs: clients.Inputs | None = None
    dataset_path = ""
    pending: Any = None
    for line in sys.stdin:
        command = json.loads(line)
        cmd = command["cmd"]
        try:
            if cmd == "quit":
                break
            if cmd == "warm":
                name = command["contender"]
                if name not in contenders:
                    contenders[name] = clients.make_contender(name, endpoint)
                _reply({"ok": True})
            elif cmd == "prepare":
                if command["dataset"] != dataset_path:
                    inputs = None  # free the previous size's inputs first
                    inputs = clients.Inputs(synth.load_dataset(command["dataset"]))
                    dataset_path = command["dataset"]
                assert inputs is not None
                name = command["contender"]
                if name not in contenders:
                    contenders[name] = clients.make_contender(name, endpoint)
                contender = contenders[name]
                fn = contender.prepare(
                    command["scenario"],
                    command["op"],
                    command["bucket"],
                    inputs,
                    int(command.get("version", 0)),
                )
                pending = (contender, command, fn)
                _reply({"ok": True})
            elif cmd == "run":
                contender, command, fn = pending
                pending = None
                try:
                    result, timing = clients.timed(fn)
                    assert inputs is not None
                    check = contender.check(command["scenario"], command["op"], result, inputs)
                    del result
                finally:
                    contender.finish()
                _reply({"ok": bool(check.get("ok", True)), **timing, "check": check})
            else:
                _reply({"ok": False, "error": f"unknown command {cmd!r}"})
        except Exception as exc:
            pending = None
            _reply(
                {
                    "ok": False,
                    "error": f"{type(exc).__name__}: {exc}"[:300],
                    "traceback": traceback.format_exc(limit=6)[-2000:],
                }
            )
    for contender in contenders.values():
        contender.close()


if __name__ == "__main__":
    main()
