"""Power loss on local disk: writer processes killed with SIGKILL at random points of merges.

Three writer slots merge into one LocalStore codebase without pause; each
writer reports every merge through a pipe *before* starting the next one (a
pipe write that returned survives the writer's death). The parent kills a
random writer at a random moment (``DOCUMEE_KILLS``, 60 by default) and
starts a new one in its slot. Afterwards: everything acknowledged is there
(at its acknowledged version or newer), every object parses, the invariants
hold, ``verify(repair=True, grace_seconds=0)`` leaves nothing for a second
``verify()`` to find, and no ``.tmp-*`` file is visible to listings.
"""

from __future__ import annotations

import multiprocessing
import os
import random
import signal
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from documee_remote import PersistenceManager, codec
from documee_remote._engine.reads import read_analysis
from documee_remote.stores import LocalStore

from ._helpers import assert_consistent, check_objects_parse, version_of
from ._workers import PRELOAD, kill_writer
from .conftest import FaultLedger

KILLS = int(os.environ.get("DOCUMEE_KILLS", "60"))
SLOTS = 3


@dataclass
class Slot:
    process: Any
    conn: Any
    kill_at: float | None = None


@pytest.mark.slow
@pytest.mark.parametrize("compaction", ["eager", "deferred"])
def test_sigkilled_writers_lose_nothing_acknowledged(
    tmp_path: Path, fault_ledger: FaultLedger, compaction: str
) -> None:
    ctx = multiprocessing.get_context("forkserver")
    ctx.set_forkserver_preload(PRELOAD)
    root = tmp_path / "store"
    rng = random.Random(20251124)
    acked: dict[str, int] = {}
    counters: Counter[str] = Counter()
    incarnation = 0

    def start(slot: int) -> Slot:
        nonlocal incarnation
        incarnation += 1
        mine, theirs = ctx.Pipe(duplex=False)
        process = ctx.Process(
            target=kill_writer,
            args=(str(root), slot, incarnation, theirs, compaction),
            daemon=True,
        )
        process.start()
        theirs.close()
        return Slot(process, mine)

    def drain(slot: Slot) -> None:
        while True:
            try:
                if not slot.conn.poll():
                    return
                message = slot.conn.recv()
            except (EOFError, OSError):
                return
            if message[0] == "ready":
                # Die anywhere from before the first merge to several merges in.
                slot.kill_at = time.monotonic() + rng.uniform(0.0, 0.35)
            else:
                _, path, version = message
                acked[path] = max(acked.get(path, -1), version)
                counters["acks"] += 1

    def kill(slot: Slot) -> None:
        os.kill(slot.process.pid, signal.SIGKILL)
        slot.process.join(30)
        assert slot.process.exitcode == -signal.SIGKILL
        drain(slot)  # acknowledgements written before the death
        slot.conn.close()
        counters["kills"] += 1

    slots = {s: start(s) for s in range(SLOTS)}
    give_up = time.monotonic() + 300
    while counters["kills"] < KILLS - SLOTS:
        assert time.monotonic() < give_up, f"only {counters['kills']} kills in 300 s"
        for number, slot in slots.items():
            drain(slot)
            assert slot.process.is_alive() or slot.kill_at is None, "a writer died on its own"
            if slot.kill_at is not None and time.monotonic() >= slot.kill_at:
                kill(slot)
                slots[number] = start(number)
        time.sleep(0.002)
    for slot in slots.values():  # the last ones die too, mid-merge or not
        while slot.kill_at is None and time.monotonic() < give_up:
            drain(slot)
            time.sleep(0.002)
        time.sleep(rng.uniform(0.0, 0.2))
        kill(slot)

    store = LocalStore(root)
    pm = PersistenceManager(store)
    listed = list(store.list())
    tmp_on_disk = sorted(p.name for p in root.rglob(".tmp-*"))
    assert not [k for k in listed if any(s.startswith(".") for s in k.split("/"))]
    parsed = check_objects_parse(store)  # every object parses
    # analysis.json alone (what upstream reads) is consistent too, and with the deltas
    # still in the journal folded by a compaction, holds everything.
    stored_view, _, _ = read_analysis(pm.engine, "kill")
    if stored_view is not None:
        assert_consistent(stored_view, "kill")
        assert set(codec.loads(store.get("kill/file_hashes.json").data)) <= set(
            stored_view.file_analyses
        )
    compacted = pm.compact("kill")
    final = pm.load_analysis("kill")
    assert final is not None
    entries = final.file_analyses
    missing = [p for p in acked if p not in entries]
    older = [p for p, v in acked.items() if p in entries and version_of(entries[p]) < v]
    assert_consistent(final, "kill")
    hashes = pm.get_file_hashes("kill")
    assert set(acked) <= set(hashes)  # an acknowledged merge's hash is recorded ...
    assert set(hashes) <= set(entries)  # ... and no hash without its analysis (invariant 3)
    repaired = pm.verify("kill", repair=True, grace_seconds=0)
    after = pm.verify("kill")
    removed_tmp = store.remove_stale_temp_files(older_than=0)
    figures = {
        "kills": counters["kills"],
        "writer incarnations": incarnation,
        "merges acknowledged": counters["acks"],
        "files": len(entries),
        "objects parsed": dict(parsed),
        "repaired by verify": dict(Counter(str(f.kind) for f in repaired.findings)),
        "stray .tmp files (hidden from listings)": len(tmp_on_disk),
        "lost (missing or older than acknowledged)": len(missing) + len(older),
        "deltas folded by the final compaction": compacted.folded,
    }
    fault_ledger.figure(f"kill -9 ({compaction})", figures)
    fault_ledger.record(
        "durability",
        f"sigkill-during-merges ({compaction})",
        "local",
        injected=counters["kills"],
        survived=counters["kills"] if not (missing or older) else 0,
        lost=len(missing) + len(older),
        note=f"{counters['acks']} acks; verify repaired {len(repaired.findings)}",
    )
    print("\nkill -9:", figures)
    assert counters["kills"] >= 50
    assert counters["acks"] > 0
    assert missing == []
    assert older == []
    assert after.findings == [], after.to_dict()
    assert removed_tmp == len(tmp_on_disk)
    assert list(root.rglob(".tmp-*")) == []
    assert pm.verify("kill").findings == []
