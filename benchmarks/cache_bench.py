"""The read cache's benchmark (issue 15): repeated loads of one analysis, with and without it.

    python -m benchmarks.cache_bench          # 3,000 files, 20 ms (`make bench` runs it)
    python -m benchmarks.cache_bench --files 1000 --latency 20 --repeat 3

Against the moto harness in its own process (:mod:`benchmarks.server`, requests
and body bytes counted server-side), a Django-size analysis
(:mod:`benchmarks.synth`) is loaded by ``PersistenceManager.load_analysis`` on
the boto3 backend, each reader in its own spawned process:

cold
    no cache: a GET of the whole ``analysis.json``, a journal listing, the parse.
miss
    the cache on, its directory empty: as cold, plus writing the entry.
memory hit
    the same process again, nothing changed: a conditional GET answered 304
    and the listing; the shared, read-only parse is handed back.
memory hit, copy=True
    the same, with a private analysis parsed from the cached bytes.
disk hit, new process
    a fresh process on the same cache directory: 304, the body read from disk
    and parsed once.
after one merge
    another process merges one file (eager compaction rewrites
    ``analysis.json``); the cached reader's next load fetches the new body.
    The load's result is checked to hold the merged file.

Every row gives wall time (median of ``--repeat`` where a row can repeat),
requests, body bytes (request + response, listing XML included) and the ratio
of its wall time to the cold load's, all from the same run. Results:
``benchmarks/results/cache.md`` and ``cache.json``.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import statistics
import sys
import tempfile
import time
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

from . import synth
from .run import DEFAULT_OUT, Server, _child_env

BUCKET = "cache-bench"


def _reader(conn: Connection, endpoint: str, env: dict[str, str], cache_dir: str | None) -> None:
    """A reader process: opens a manager and answers ``load`` / ``merge`` commands."""
    import os

    os.environ.update(env)
    from documee_remote import PersistenceManager

    pm = PersistenceManager(
        f"s3://{BUCKET}/store/",
        endpoint_url=endpoint,
        region="us-east-1",
        cache=cache_dir if cache_dir else False,
    )
    pm.store.exists("warm-up")  # the client and its connection pool exist before timing
    # pydantic builds the models' validators on first use (defer_build): not timed either.
    from documee_remote import codec
    from documee_remote.merge import new_analysis

    codec.load_codebase_analysis(codec.dump_codebase_analysis(new_analysis("warm-up")))
    conn.send("ready")
    while True:
        cmd, arg = conn.recv()
        if cmd == "quit":
            break
        if cmd == "load":
            t = time.perf_counter()
            analysis = pm.load_analysis(arg["codebase_id"], copy=arg.get("copy", False))
            wall = time.perf_counter() - t
            assert analysis is not None
            conn.send(
                {
                    "wall": wall,
                    "files": len(analysis.file_analyses),
                    "has": arg.get("path") in analysis.file_analyses,
                }
            )
        elif cmd == "merge":
            from documee_remote.testing.factories import content_hash, make_file_analysis

            path = arg["path"]
            fa = make_file_analysis(path, functions=3)
            t = time.perf_counter()
            pm.merge_file_analyses(arg["codebase_id"], {path: fa}, {path: content_hash(path)})
            conn.send({"wall": time.perf_counter() - t})
    pm.close()


class Reader:
    def __init__(self, endpoint: str, cache_dir: str | None) -> None:
        ctx = multiprocessing.get_context("spawn")
        self.conn, child = ctx.Pipe()
        env = {k: v for k, v in _child_env().items() if k.startswith("AWS_")}
        self.proc = ctx.Process(target=_reader, args=(child, endpoint, env, cache_dir))
        self.proc.start()
        if not self.conn.poll(120):
            raise TimeoutError("the reader did not start")
        assert self.conn.recv() == "ready"

    def call(self, cmd: str, **arg: Any) -> dict[str, Any]:
        self.conn.send((cmd, arg))
        if not self.conn.poll(600):
            raise TimeoutError(f"{cmd} took over 600 s")
        answer: dict[str, Any] = self.conn.recv()
        return answer

    def close(self) -> None:
        self.conn.send(("quit", {}))
        self.proc.join(30)


def measure(server: Server, reader: Reader, cmd: str, **arg: Any) -> dict[str, Any]:
    before = server.stats()
    answer = reader.call(cmd, **arg)
    after = server.stats()
    methods = {
        m: after["methods"].get(m, 0) - before["methods"].get(m, 0)
        for m in after["methods"]
        if after["methods"].get(m, 0) != before["methods"].get(m, 0)
    }
    statuses = {
        s: after["statuses"].get(s, 0) - before["statuses"].get(s, 0)
        for s in after["statuses"]
        if after["statuses"].get(s, 0) != before["statuses"].get(s, 0)
    }
    return {
        **answer,
        "requests": after["requests"] - before["requests"],
        "bytes": (after["bytes_in"] - before["bytes_in"])
        + (after["bytes_out"] - before["bytes_out"]),
        "methods": methods,
        "statuses": statuses,
    }


def _row(name: str, runs: list[dict[str, Any]]) -> dict[str, Any]:
    walls = [r["wall"] for r in runs]
    last = runs[-1]
    return {
        "row": name,
        "wall_s": statistics.median(walls),
        "walls_s": walls,
        "requests": last["requests"],
        "bytes": last["bytes"],
        "methods": last["methods"],
        "statuses": last["statuses"],
    }


def run(files: int, latency: float, repeat: int, out: Path) -> list[dict[str, Any]]:
    import boto3

    print(f"cache: building a {files}-file analysis", flush=True)
    ds = synth.build_dataset(files)
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="documee-cache-bench-") as tmp:
        server = Server(Path(tmp) / "server.log")
        try:
            s3 = boto3.client(
                "s3",
                endpoint_url=server.endpoint,
                region_name="us-east-1",
                aws_access_key_id="bench",
                aws_secret_access_key="bench",
            )
            s3.create_bucket(Bucket=BUCKET)
            s3.put_object(Bucket=BUCKET, Key=f"store/{ds.analysis_key}", Body=ds.analysis)
            s3.put_object(Bucket=BUCKET, Key=f"store/{ds.hashes_key}", Body=ds.hashes_json)
            s3.close()
            server.latency(latency)
            cid = ds.codebase_id
            cache_dir = str(Path(tmp) / "cache")
            plain = Reader(server.endpoint, None)
            cold = [measure(server, plain, "load", codebase_id=cid) for _ in range(repeat)]
            rows.append(_row("cold (no cache)", cold))
            misses = []
            for k in range(repeat - 1):
                empty = Reader(server.endpoint, str(Path(tmp) / f"empty-{k}"))
                misses.append(measure(server, empty, "load", codebase_id=cid))
                empty.close()
            cached = Reader(server.endpoint, cache_dir)
            misses.append(measure(server, cached, "load", codebase_id=cid))
            rows.append(_row("miss (cache on, empty)", misses))
            hits = [measure(server, cached, "load", codebase_id=cid) for _ in range(repeat)]
            rows.append(_row("memory hit (shared)", hits))
            copies = [
                measure(server, cached, "load", codebase_id=cid, copy=True) for _ in range(repeat)
            ]
            rows.append(_row("memory hit, copy=True", copies))
            disk = []
            for _ in range(repeat):
                fresh = Reader(server.endpoint, cache_dir)
                disk.append(measure(server, fresh, "load", codebase_id=cid))
                fresh.close()
            rows.append(_row("disk hit, new process", disk))
            path = "/srv/code/django/merged_by_another_writer.py"
            plain.call("merge", codebase_id=cid, path=path)
            after = measure(server, cached, "load", codebase_id=cid, path=path)
            if not after["has"]:
                raise AssertionError("the load after a merge did not see the merged file: stale")
            rows.append(_row("after one merge (changed)", [after]))
            again = measure(server, cached, "load", codebase_id=cid, path=path)
            rows.append(_row("memory hit after the merge", [again]))
            plain.close()
            cached.close()
        finally:
            server.close()
    base = rows[0]["wall_s"]
    for row in rows:
        row["ratio_to_cold"] = row["wall_s"] / base if base else None
    write(
        out,
        rows,
        {
            "files": files,
            "latency_ms": latency,
            "repeat": repeat,
            "analysis_bytes": len(ds.analysis),
            # Other work on the machine (2 cores, shared) shows up in every number.
            "loadavg_after": [round(x, 2) for x in os.getloadavg()],
        },
    )
    return rows


def table(rows: list[dict[str, Any]], meta: dict[str, Any]) -> str:
    lines = [
        f"Read cache: load_analysis of a {meta['files']}-file analysis "
        f"({meta['analysis_bytes'] / 1e6:.1f} MB analysis.json), {meta['latency_ms']:g} ms "
        f"added per request, boto3 backend; wall = median of {meta['repeat']} where repeated; "
        f"load average after: {meta.get('loadavg_after')}.",
        "",
        "| load | wall s | ÷ cold | requests | bytes moved | answers |",
        "| --- | ---: | ---: | ---: | ---: | --- |",
    ]
    for r in rows:
        answers = " ".join(f"{k}:{v}" for k, v in sorted(r["statuses"].items()))
        lines.append(
            f"| {r['row']} | {r['wall_s']:.3f} | {r['ratio_to_cold']:.2f} | {r['requests']} | "
            f"{r['bytes']:,} | {answers} |"
        )
    return "\n".join(lines) + "\n"


def write(out: Path, rows: list[dict[str, Any]], meta: dict[str, Any]) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / "cache.json").write_text(json.dumps({"meta": meta, "rows": rows}, indent=2))
    text = table(rows, meta)
    (out / "cache.md").write_text(text)
    print(text, flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--files", type=int, default=3000)
    parser.add_argument("--latency", type=float, default=20.0, help="ms added to every request")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--out", default=str(DEFAULT_OUT))
    args = parser.parse_args(argv)
    run(args.files, args.latency, args.repeat, Path(args.out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
