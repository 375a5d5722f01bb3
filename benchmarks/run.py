"""Run the benchmarks: ``python -m benchmarks.run`` (``make bench``).

Starts the moto harness in a subprocess (:mod:`benchmarks.server`), one
worker process per contender (:mod:`benchmarks.worker`), generates the
synthetic codebases (:mod:`benchmarks.synth`) and, for every number of files
and every added latency, measures the scenarios:

save
    a full save into a fresh bucket;
load
    a full load of analysis.json from a fresh bucket that holds it;
incremental
    2 files changed in a saved codebase (file_hashes.json included): the
    whole-analysis save each contender would do, documee-remote's
    ``merge_file_analyses`` of the 2 files, and the raw clients' minimum
    (PUT the 2 objects and the new analysis.json);
concurrent
    8 spawned processes each merging 1/8 of the files into one empty
    codebase at the same moment; the result is checked for lost updates.

Results go to ``benchmarks/results/`` (``results.json``, ``results.md``,
``plot.png``); see ``benchmarks/README.md`` for the methodology.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import multiprocessing
import os
import platform
import queue
import re
import subprocess
import sys
import tempfile
import threading
import time
from collections import deque
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import clients, report, synth

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_OUT = ROOT / "benchmarks" / "results"
SCENARIOS = ("save", "load", "incremental", "concurrent")

BENCH_KEY = "bench"
#: Who runs at latencies other than the primary (largest) one, unless --full.
CORE_CLIENTS = ("documee-remote", "sequential-port", "obstore")


# ----------------------------------------------------------------------------- processes


def _child_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env.update(
        AWS_ACCESS_KEY_ID=BENCH_KEY,
        AWS_SECRET_ACCESS_KEY=BENCH_KEY,
        AWS_DEFAULT_REGION=clients.REGION,
        AWS_EC2_METADATA_DISABLED="true",
        PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")])),
    )
    return env


class _Lines:
    """Lines of a child's stdout, read by a thread (so waits can time out)."""

    def __init__(self, stream: Any, prefix: str = "") -> None:
        self.queue: queue.Queue[str | None] = queue.Queue()
        self.prefix = prefix
        self.other: deque[str] = deque(maxlen=50)
        self.stream = stream
        self.thread = threading.Thread(target=self._pump, args=(stream,), daemon=True)
        self.thread.start()

    def close(self) -> None:
        """After the process exited: let the reader reach EOF, then close the pipe."""
        self.thread.join(timeout=5)
        with contextlib.suppress(Exception):
            self.stream.close()

    def _pump(self, stream: Any) -> None:
        for line in stream:
            if line.startswith(self.prefix):
                self.queue.put(line[len(self.prefix) :].rstrip("\n"))
            else:
                self.other.append(line)
        self.queue.put(None)

    def get(self, timeout: float) -> str:
        try:
            line = self.queue.get(timeout=timeout)
        except queue.Empty:
            raise TimeoutError(f"no answer within {timeout:.0f} s") from None
        if line is None:
            raise RuntimeError("the process exited")
        return line


class Server:
    """The moto harness in a subprocess, with counters (benchmarks/server.py)."""

    def __init__(self, log: Path) -> None:
        self.log = log.open("w")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "benchmarks.server", "--port", "0"],
            cwd=ROOT,
            env=_child_env(),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self.log,
            text=True,
        )
        self.lines = _Lines(self.proc.stdout)
        self.endpoint = self.lines.get(60).strip()
        print(f"moto harness (subprocess pid {self.proc.pid}) at {self.endpoint}", flush=True)

    def _ask(self, command: str) -> str:
        assert self.proc.stdin is not None
        self.proc.stdin.write(command + "\n")
        self.proc.stdin.flush()
        return self.lines.get(120)

    def stats(self) -> dict[str, Any]:
        result: dict[str, Any] = json.loads(self._ask("stats"))
        return result

    def latency(self, ms: float) -> None:
        self._ask(f"latency {ms}")

    def reset(self) -> None:
        self._ask("reset")

    def close(self) -> None:
        with contextlib.suppress(Exception):
            assert self.proc.stdin is not None
            self.proc.stdin.write("quit\n")
            self.proc.stdin.flush()
        _finish(self.proc, self.lines, 10)
        self.log.close()


def _finish(proc: subprocess.Popen[str], lines: _Lines, timeout: float) -> None:
    """Wait for (or kill) a child, and close every pipe to it."""
    with contextlib.suppress(Exception):
        assert proc.stdin is not None
        proc.stdin.close()
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
    lines.close()


class Worker:
    """One contender's persistent process (benchmarks/worker.py)."""

    def __init__(self, name: str, endpoint: str, logdir: Path) -> None:
        self.name = name
        self.endpoint = endpoint
        self.log_path = logdir / f"worker-{re.sub(r'[^a-z0-9]+', '-', name)}.log"
        self._start()

    def _start(self) -> None:
        self.log = self.log_path.open("a")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "benchmarks.worker", self.endpoint],
            cwd=ROOT,
            env=_child_env(),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self.log,
            text=True,
        )
        self.lines = _Lines(self.proc.stdout, prefix="@@")

    def call(self, command: dict[str, Any], timeout: float) -> dict[str, Any]:
        try:
            assert self.proc.stdin is not None
            self.proc.stdin.write(json.dumps(command) + "\n")
            self.proc.stdin.flush()
            answer: dict[str, Any] = json.loads(self.lines.get(timeout))
            return answer
        except (TimeoutError, RuntimeError, OSError) as exc:
            self.restart()
            return {"ok": False, "error": f"worker {self.name}: {exc}", "log": self.log_tail()}

    def log_tail(self) -> str:
        self.log.flush()
        with contextlib.suppress(OSError):
            return self.log_path.read_text()[-1500:]
        return ""

    def restart(self) -> None:
        self.proc.kill()
        _finish(self.proc, self.lines, 5)
        self.log.close()
        self._start()

    def close(self) -> None:
        with contextlib.suppress(Exception):
            assert self.proc.stdin is not None
            self.proc.stdin.write(json.dumps({"cmd": "quit"}) + "\n")
            self.proc.stdin.flush()
        _finish(self.proc, self.lines, 20)
        self.log.close()


class WriterPool:
    """The concurrent writers: spawned processes (``clients.writer_loop``), started once."""

    def __init__(self, writers: int) -> None:
        ctx = multiprocessing.get_context("spawn")
        self.writers = writers
        self.ready = ctx.Semaphore(0)
        self.go = ctx.Event()
        self.results: Any = ctx.Queue()
        self.tasks: list[Any] = [ctx.Queue() for _ in range(writers)]
        self.procs = [
            ctx.Process(
                target=clients.writer_loop,
                args=(k, self.tasks[k], self.ready, self.go, self.results),
                daemon=True,
                name=f"bench-writer-{k}",
            )
            for k in range(writers)
        ]
        for proc in self.procs:
            proc.start()

    def wait_warm(self, timeout: float) -> None:
        """Wait until every writer has imported what it needs (once, before measuring)."""
        deadline = time.monotonic() + timeout
        for _ in range(self.writers):
            while not self.ready.acquire(timeout=1.0):
                self._check(deadline, "start")

    def run(
        self, task: tuple[str, str, str, str], timeout: float, server: Server
    ) -> tuple[list[dict[str, Any]], dict[str, Any], dict[str, Any], float]:
        """Every writer prepares ``task``; then all start at once. Returns their reports."""
        self.go.clear()
        for q in self.tasks:
            q.put(task)
        deadline = time.monotonic() + timeout
        for _ in range(self.writers):
            while not self.ready.acquire(timeout=1.0):
                self._check(deadline, "get ready")
        before = server.stats()
        t_go = time.perf_counter()
        self.go.set()
        got = []
        while len(got) < self.writers:
            try:
                got.append(self.results.get(timeout=1.0))
            except queue.Empty:
                self._check(deadline, "finish")
        wall = time.perf_counter() - t_go
        after = server.stats()
        self.go.clear()
        return got, before, after, wall

    def _check(self, deadline: float, what: str) -> None:
        dead = [p.name for p in self.procs if not p.is_alive()]
        if dead:
            raise TimeoutError(f"writer process(es) died: {', '.join(dead)}")
        if time.monotonic() > deadline:
            raise TimeoutError(f"the writers did not {what} in time")

    def close(self) -> None:
        for q in self.tasks:
            with contextlib.suppress(Exception):
                q.put(None)
        for proc in self.procs:
            proc.join(timeout=10)
            if proc.is_alive():
                proc.kill()
                proc.join()


# ----------------------------------------------------------------------------- the run


@dataclass
class Run:
    args: argparse.Namespace
    server: Server
    workers: dict[str, Worker]
    tmp: Path
    rows: list[dict[str, Any]] = field(default_factory=list)
    started: float = field(default_factory=time.perf_counter)
    pool: WriterPool | None = None
    _buckets: int = 0
    _s3: Any = None
    _warm: bool = False
    skipped: list[str] = field(default_factory=list)

    # -- helpers ------------------------------------------------------------------------

    @property
    def s3(self) -> Any:
        """The orchestrator's own client, for setup and checks (never inside a measurement)."""
        if self._s3 is None:
            import boto3
            from botocore.config import Config

            self._s3 = boto3.client(
                "s3",
                endpoint_url=self.server.endpoint,
                region_name=clients.REGION,
                aws_access_key_id=BENCH_KEY,
                aws_secret_access_key=BENCH_KEY,
                config=Config(max_pool_connections=clients.THREADS),
            )
        return self._s3

    def bucket(self, scenario: str, n: int, latency: float, client: str) -> str:
        self._buckets += 1
        slug = re.sub(r"[^a-z0-9]+", "-", client.lower()).strip("-")
        name = f"b{self._buckets:03d}-{scenario[:4]}-{n}-{int(latency)}ms-{slug}"[:63].rstrip("-")
        self.s3.create_bucket(Bucket=name)
        return name

    def populate(self, bucket: str, ds: synth.Dataset) -> None:
        def put(item: tuple[str, bytes]) -> None:
            self.s3.put_object(Bucket=bucket, Key=item[0], Body=item[1])

        with ThreadPoolExecutor(clients.THREADS) as pool:
            list(pool.map(put, ((ds.file_key(p), b) for p, b in ds.files.items())))
        put((ds.analysis_key, ds.analysis))

    def say(self, text: str) -> None:
        print(f"[{time.perf_counter() - self.started:6.1f}s] {text}", flush=True)

    def record(self, row: dict[str, Any]) -> dict[str, Any]:
        self.rows.append(row)
        if row.get("ok"):
            extra = f", lost updates {row['lost_updates']}" if "lost_updates" in row else ""
            self.say(
                f"{row['scenario']:<11} {row['files']:>5} files {row['latency_ms']:>4g} ms  "
                f"{row['client']:<22} {row['op']:<30} {row['wall_s']:8.2f} s  "
                f"{row['requests']:>6} req  {row['cpu_s']:6.2f} s CPU  "
                f"{row['peak_mb']:7.1f} MB{extra}"
            )
        else:
            self.say(
                f"{row['scenario']} {row['files']} {row['latency_ms']} {row['client']} "
                f"{row['op']}: FAILED {row.get('error', '')}"
            )
        return row

    @staticmethod
    def _diff(before: dict[str, Any], after: dict[str, Any]) -> dict[str, Any]:
        def sub(key: str) -> dict[str, int]:
            keys = set(before[key]) | set(after[key])
            out = {k: after[key].get(k, 0) - before[key].get(k, 0) for k in sorted(keys)}
            return {k: v for k, v in out.items() if v}

        return {
            "requests": after["requests"] - before["requests"],
            "methods": sub("methods"),
            "statuses": sub("statuses"),
            "mb_in": (after["bytes_in"] - before["bytes_in"]) / 1e6,
            "mb_out": (after["bytes_out"] - before["bytes_out"]) / 1e6,
        }

    def measure(
        self,
        client: str,
        scenario: str,
        op: str,
        bucket: str,
        ds_path: Path,
        n: int,
        latency: float,
        version: int = 0,
        record: bool = True,
    ) -> dict[str, Any]:
        worker = self.workers[client]
        base = {"scenario": scenario, "files": n, "latency_ms": latency, "client": client, "op": op}
        prep = worker.call(
            {
                "cmd": "prepare",
                "contender": client,
                "scenario": scenario,
                "op": op,
                "bucket": bucket,
                "dataset": str(ds_path),
                "version": version,
            },
            timeout=self.args.timeout,
        )
        if not prep.get("ok"):
            failed = {**base, "ok": False, "error": prep.get("error"), "detail": prep}
            return self.record(failed) if record else failed
        before = self.server.stats()
        result = worker.call({"cmd": "run"}, timeout=self.args.timeout)
        after = self.server.stats()
        counts = self._diff(before, after)
        row = {**base, **result, **counts, "mb": counts["mb_in"] + counts["mb_out"]}
        row.pop("t0", None)
        row.pop("t1", None)
        return self.record(row) if record else row

    # -- what runs where -------------------------------------------------------------------

    def clients_for(self, latency: float) -> list[str]:
        """Every contender at the primary latency; the core ones elsewhere (unless --full)."""
        if self.args.full or latency == max(self.args.latency):
            return list(self.workers)
        core = [c for c in self.workers if c in CORE_CLIENTS]
        if "obstore" not in self.workers and "boto3-threads" in self.workers:
            core.append("boto3-threads")  # the raw limit when obstore is not installed
        self.skip(f"at {latency:g} ms: {', '.join(c for c in self.workers if c not in core)}")
        return core

    def skip(self, text: str) -> None:
        if text not in self.skipped and not text.endswith(": "):
            self.skipped.append(text)

    # -- scenarios ----------------------------------------------------------------------

    def save(self, ds: synth.Dataset, ds_path: Path, latency: float) -> dict[str, str]:
        saved: dict[str, str] = {}
        for client in self.clients_for(latency):
            for op in clients.CONTENDERS[client]["save"]:
                bucket = self.bucket("save", ds.n, latency, client)
                row = self.measure(client, "save", op, bucket, ds_path, ds.n, latency)
                if row.get("ok"):
                    saved[client] = bucket
        return saved

    def load(self, ds: synth.Dataset, ds_path: Path, latency: float) -> None:
        bucket = self.bucket("load", ds.n, latency, "all")
        self.s3.put_object(Bucket=bucket, Key=ds.analysis_key, Body=ds.analysis)
        for client in self.clients_for(latency):
            for op in clients.CONTENDERS[client]["load"]:
                # A load is one request and a parse: short, so noisy. Median of a few.
                runs = [
                    self.measure(client, "load", op, bucket, ds_path, ds.n, latency, record=False)
                    for _ in range(self.args.load_repeat)
                ]
                good = sorted((r for r in runs if r.get("ok")), key=lambda r: r["wall_s"])
                if not good:
                    self.record(runs[-1])
                    continue
                row = dict(good[len(good) // 2])
                row["runs"] = len(runs)
                row["wall_runs_s"] = [round(r["wall_s"], 4) for r in good]
                row["cpu_runs_s"] = [round(r["cpu_s"], 4) for r in good]
                self.record(row)

    def incremental(
        self, ds: synth.Dataset, ds_path: Path, latency: float, saved: dict[str, str]
    ) -> None:
        # The state every op starts from: the whole codebase saved (documee-remote's
        # save bucket when there is one: the same bytes), plus file_hashes.json.
        bucket = saved.get("documee-remote") or saved.get("boto3-threads")
        if bucket is None:
            bucket = self.bucket("incr", ds.n, latency, "base")
            self.populate(bucket, ds)
        self.s3.put_object(Bucket=bucket, Key=ds.hashes_key, Body=ds.hashes_json)
        version = 0
        for client in self.clients_for(latency):
            for op in clients.CONTENDERS[client]["incremental"]:
                version += 1
                if (
                    client == "sequential-port"
                    and ds.n > self.args.port_rerun_max_files
                    and not self.args.full
                ):
                    self.skip(
                        f"sequential-port incremental above {self.args.port_rerun_max_files} "
                        "files: copied from its full save (the same requests and bytes)"
                    )
                    self._reuse_port_save(ds.n, latency)
                    continue
                self.measure(client, "incremental", op, bucket, ds_path, ds.n, latency, version)

    def _reuse_port_save(self, n: int, latency: float) -> None:
        for row in self.rows:
            if (row["scenario"], row["files"], row["latency_ms"], row["client"]) == (
                "save",
                n,
                latency,
                "sequential-port",
            ):
                self.record(
                    {
                        **row,
                        "scenario": "incremental",
                        "note": "not re-run: the port rewrites everything, the same requests "
                        "and bytes as its full save (row copied from save)",
                        "reused": True,
                    }
                )
                return

    def concurrent(self, ds: synth.Dataset, ds_path: Path, latency: float) -> None:
        if not self.args.full and latency != max(self.args.latency) and ds.n > 1000:
            self.skip(f"concurrent above 1000 files at {latency:g} ms")
            return
        for client in self.args.concurrent_clients:
            if client not in self.workers:
                continue
            limit = self.args.port_concurrent_max_files
            if latency != max(self.args.latency):
                limit = min(limit, 100)
            if client == "sequential-port" and ds.n > limit and not self.args.full:
                self.skip(f"sequential-port concurrent above {limit} files at {latency:g} ms")
                continue
            bucket = self.bucket("conc", ds.n, latency, client)
            row = self._concurrent_one(client, bucket, ds, ds_path, latency)
            self.record(row)

    def _concurrent_one(
        self, client: str, bucket: str, ds: synth.Dataset, ds_path: Path, latency: float
    ) -> dict[str, Any]:
        base = {
            "scenario": "concurrent",
            "files": ds.n,
            "latency_ms": latency,
            "client": client,
            "op": clients.CONCURRENT_KINDS[client].format(writers=self.args.writers),
        }
        if self.pool is None:
            self.pool = WriterPool(self.args.writers)
        try:
            got, before, after, wall = self.pool.run(
                (client, self.server.endpoint, bucket, str(ds_path)), self.args.timeout, self.server
            )
        except (TimeoutError, queue.Empty) as exc:
            self.pool.close()
            self.pool = None
            return {**base, "ok": False, "error": f"{type(exc).__name__}: {exc}"}
        errors = [g["error"] for g in got if "error" in g]
        timings = [g for g in got if "error" not in g]
        counts = self._diff(before, after)
        row: dict[str, Any] = {**base, **counts, "mb": counts["mb_in"] + counts["mb_out"]}
        row["wall_s"] = (
            max(g["t1"] for g in timings) - min(g["t0"] for g in timings) if timings else wall
        )
        row["wall_orchestrator_s"] = wall
        row["cpu_s"] = sum(g["cpu_s"] for g in timings)
        row["peak_mb"] = max((g["peak_mb"] for g in timings), default=0.0)
        row["peak_sum_mb"] = sum(g["peak_mb"] for g in timings)
        row["memory_method"] = timings[0]["memory_method"] if timings else ""
        row["writers"] = [
            {
                "writer": g["writer"],
                "wall_s": round(g["t1"] - g["t0"], 3),
                "cpu_s": round(g["cpu_s"], 3),
                "peak_mb": round(g["peak_mb"], 1),
                **g.get("info", {}),
            }
            for g in sorted(timings, key=lambda g: g["writer"])
        ]
        row["errors"] = errors
        row.update(self._verify(bucket, ds))
        # ok = every writer ran; lost updates are reported (and judged) separately.
        row["ok"] = not errors
        if errors:
            row["error"] = f"{len(errors)} writer(s) failed: {errors[0][:200]}"
        return row

    def _verify(self, bucket: str, ds: synth.Dataset) -> dict[str, Any]:
        """Lost updates: files, graph nodes and hashes missing from the final objects."""

        def read(key: str) -> Any:
            try:
                return json.loads(self.s3.get_object(Bucket=bucket, Key=key)["Body"].read())
            except Exception:
                return None

        analysis = read(ds.analysis_key) or {}
        hashes = read(ds.hashes_key) or {}
        expected = set(ds.paths)
        files = set(analysis.get("file_analyses", {}))
        nodes = set(analysis.get("dependency_graph", {}).get("nodes", {}))
        return {
            "lost_updates": len(expected - files),
            "lost_graph_nodes": len(expected - nodes),
            "lost_hashes": len(expected - set(hashes)),
        }

    # -- everything ---------------------------------------------------------------------

    def warm(self) -> None:
        """Before the first measurement: every process has imported and built its clients."""
        if self._warm:
            return
        for worker in self.workers.values():
            answer = worker.call({"cmd": "warm", "contender": worker.name}, self.args.timeout)
            if not answer.get("ok"):
                self.say(f"warming {worker.name} failed: {answer.get('error')}")
        if self.pool is not None:
            self.pool.wait_warm(self.args.timeout)
        self._warm = True

    def go(self) -> None:
        model = synth.fit_sizes()
        self.datasets: dict[int, dict[str, Any]] = {}
        for n in self.args.files:
            t0 = time.perf_counter()
            ds = synth.build_dataset(
                n, model=model, graph_ratio=self.args.graph_ratio, writers=self.args.writers
            )
            ds_path = self.tmp / f"dataset-{n}.pkl"
            ds.save(ds_path)
            self.datasets[n] = ds.stats
            st = ds.stats
            self.say(
                f"dataset {n} files: {st['file_bytes_total'] / 1e6:.1f} MB of per-file objects "
                f"(median {st['file_bytes_median'] / 1e3:.1f} KB, max "
                f"{st['file_bytes_max'] / 1e3:.0f} KB), analysis.json "
                f"{st['analysis_json_bytes'] / 1e6:.1f} MB, built in "
                f"{time.perf_counter() - t0:.1f} s"
            )
            self.warm()
            for latency in self.args.latency:
                self.server.latency(latency)
                saved: dict[str, str] = {}
                if "save" in self.args.scenarios:
                    saved = self.save(ds, ds_path, latency)
                if "load" in self.args.scenarios:
                    self.load(ds, ds_path, latency)
                if "incremental" in self.args.scenarios:
                    self.incremental(ds, ds_path, latency, saved)
                if "concurrent" in self.args.scenarios:
                    self.concurrent(ds, ds_path, latency)
                self.server.reset()  # moto keeps every object in memory
            del ds
            ds_path.unlink()


# ----------------------------------------------------------------------------- CLI


def _numbers(text: str, kind: type) -> list[Any]:
    return [kind(x) for x in text.split(",") if x.strip()]


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.run", description=__doc__.split("\n", 1)[0]
    )
    parser.add_argument("--files", default="100,1000,3000", help="file counts (comma-separated)")
    parser.add_argument("--latency", default="0,20", help="added latencies in ms")
    parser.add_argument("--scenarios", default=",".join(SCENARIOS))
    parser.add_argument(
        "--clients",
        default="",
        help="contenders (default: every one installed): " + ", ".join(clients.CONTENDERS),
    )
    parser.add_argument(
        "--concurrent-clients",
        default="documee-remote,sequential-port",
        help="who runs the concurrent scenario: " + ", ".join(clients.CONCURRENT_KINDS),
    )
    parser.add_argument("--quick", action="store_true", help="100 and 1000 files, 20 ms only")
    parser.add_argument(
        "--full",
        action="store_true",
        help="no shortcuts: every contender at every latency and size (about 13 minutes)",
    )
    parser.add_argument("--out", default=str(DEFAULT_OUT), help="results directory")
    parser.add_argument("--writers", type=int, default=8, help="concurrent writers")
    parser.add_argument("--graph-ratio", type=float, default=synth.DJANGO_GRAPH_RATIO)
    parser.add_argument(
        "--port-rerun-max-files",
        type=int,
        default=100,
        help="above this, the port's incremental save (a full rewrite, the same requests as "
        "its full save) is not run again but copied from its save",
    )
    parser.add_argument(
        "--port-concurrent-max-files",
        type=int,
        default=1000,
        help="above this, the port does not run the concurrent scenario",
    )
    parser.add_argument("--timeout", type=float, default=900, help="seconds per measurement")
    parser.add_argument(
        "--load-repeat", type=int, default=3, help="loads per contender (the median is kept)"
    )
    parser.add_argument("--no-plot", action="store_true")
    args = parser.parse_args(argv)
    if args.quick:
        args.files, args.latency = "100,1000", "20"
    args.files = _numbers(args.files, int)
    args.latency = _numbers(args.latency, float)
    args.scenarios = [s.strip() for s in args.scenarios.split(",") if s.strip()]
    unknown = set(args.scenarios) - set(SCENARIOS)
    if unknown:
        parser.error(f"unknown scenario(s): {', '.join(sorted(unknown))}")
    installed = clients.available_contenders()
    wanted = [c.strip() for c in args.clients.split(",") if c.strip()] or installed
    missing = [c for c in wanted if c not in installed]
    if any(c not in clients.CONTENDERS for c in missing):
        parser.error(f"unknown client(s): {', '.join(missing)}")
    args.skipped_clients = missing
    args.clients = [c for c in wanted if c in installed]
    args.concurrent_clients = [c.strip() for c in args.concurrent_clients.split(",") if c.strip()]
    return args


def _versions() -> dict[str, str]:
    from importlib import metadata

    out = {"python": platform.python_version()}
    for name in ("documee-remote", "boto3", "botocore", "s3fs", "obstore", "moto", "pydantic"):
        with contextlib.suppress(metadata.PackageNotFoundError):
            out[name] = metadata.version(name)
    with contextlib.suppress(Exception):
        out["git"] = subprocess.run(
            ["git", "describe", "--always", "--dirty"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    return out


@contextlib.contextmanager
def _processes(args: argparse.Namespace, tmp: Path) -> Iterator[tuple[Server, dict[str, Worker]]]:
    server = Server(tmp / "server.log")
    workers: dict[str, Worker] = {}
    try:
        for name in args.clients:
            workers[name] = Worker(name, server.endpoint, tmp)
        yield server, workers
    finally:
        for worker in workers.values():
            worker.close()
        server.close()


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    if args.skipped_clients:
        print(f"not installed, skipped: {', '.join(args.skipped_clients)}", flush=True)
    started_at = time.strftime("%Y-%m-%dT%H:%M:%S")
    load_before = os.getloadavg()
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="documee-bench-") as tmpdir:
        tmp = Path(tmpdir)
        with _processes(args, tmp) as (server, workers):
            run = Run(args, server, workers, tmp)
            if "concurrent" in args.scenarios:
                run.pool = WriterPool(args.writers)  # started early: it takes seconds
            try:
                run.go()
            finally:
                if run.pool is not None:
                    run.pool.close()
                if run._s3 is not None:
                    run._s3.close()
                total = time.perf_counter() - t0
                meta = {
                    "started": started_at,
                    "duration_s": round(total, 1),
                    "argv": sys.argv[1:] if argv is None else argv,
                    "files": args.files,
                    "latency_ms": args.latency,
                    "scenarios": args.scenarios,
                    "clients": args.clients,
                    "skipped_clients": args.skipped_clients,
                    "writers": args.writers,
                    "machine": {
                        "cpus": os.cpu_count(),
                        "platform": platform.platform(),
                        # Other work on the machine shows up in every number.
                        "loadavg_before": [round(x, 2) for x in load_before],
                        "loadavg_after": [round(x, 2) for x in os.getloadavg()],
                    },
                    "versions": _versions(),
                    "datasets": getattr(run, "datasets", {}),
                    "skipped": run.skipped,
                    "server": "moto harness (documee_remote.testing.moto_server.MotoServer) in "
                    "its own process; requests and bytes counted server-side",
                }
                paths = report.write(out, meta, run.rows, plot=not args.no_plot)
    print(f"\ndone in {total:.0f} s; wrote {', '.join(str(p) for p in paths)}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
