"""Worker processes of the soak and kill tests (importable, so forkserver/spawn can run them)."""

from __future__ import annotations

import json
import os
import random
import re
import signal
import socket
import time
from collections import Counter
from multiprocessing.connection import Connection
from typing import Any

from documee_remote import PersistenceManager, RetryPolicy, TransactionStats
from documee_remote.errors import CorruptObjectError, DocumeeRemoteError
from documee_remote.journal import CompactionPolicy
from documee_remote.merge import compute_metrics, rank_teaching_files
from documee_remote.stores import LocalStore

from ._helpers import TYPED_ERRORS, hash_of, versioned


def _warm_botocore() -> None:
    """Load S3's service model once, here: the forkserver preloads this module, so every
    worker forked from it starts with the model cached instead of parsing it again."""
    from documee_remote.config import S3Options, build_s3_client

    build_s3_client(S3Options(endpoint_url="http://127.0.0.1:9", region="us-east-1")).close()


_warm_botocore()

#: Modules the forkserver should import before forking workers (every test uses the same
#: list: the forkserver starts once per session and ignores later preload lists).
PRELOAD = ["tests.faults._workers"]
BUCKET = "documee-soak"
CODEBASE = "soak"
PATIENT = RetryPolicy(max_attempts=100_000, base_delay=0.002, max_delay=0.25, deadline=600)


def rss_bytes() -> int:
    """Resident set size of this process (no psutil: /proc/self/statm)."""
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def _aws_env() -> None:
    for name in list(os.environ):
        if name.startswith("AWS_"):
            del os.environ[name]
    os.environ.update(
        AWS_ACCESS_KEY_ID="testing",
        AWS_SECRET_ACCESS_KEY="testing",
        AWS_DEFAULT_REGION="us-east-1",
        AWS_CONFIG_FILE=os.devnull,
        AWS_SHARED_CREDENTIALS_FILE=os.devnull,
        AWS_EC2_METADATA_DISABLED="true",
    )


def _short_botocore_backoff() -> None:
    # botocore sleeps up to 20 s between retries; keep its retries, shorten the sleeps.
    from botocore.retries import standard

    def delay(self: Any, context: Any) -> float:
        return random.uniform(0, min(0.2, 0.01 * 2**context.attempt_number))

    standard.ExponentialBackoff.delay_amount = delay  # type: ignore[method-assign]


# -- the soak --------------------------------------------------------------------------------------


def soak_server(conn: Connection, rates: dict[str, float]) -> None:
    """Run a harness server with probabilistic faults; obey "clear" and "stop" from ``conn``."""
    _aws_env()
    import boto3

    from documee_remote.testing.moto_server import (
        CONDITIONAL_CONFLICT,
        DROP,
        INTERNAL_ERROR,
        SLOW_DOWN,
        MotoServer,
    )

    with MotoServer() as server:
        boto3.client("s3", endpoint_url=server.endpoint_url).create_bucket(Bucket=BUCKET)
        server.faults.clear()
        faults = server.faults
        faults.add(SLOW_DOWN, probability=rates["slowdown"], times=None)
        faults.add(INTERNAL_ERROR, method="GET", probability=rates["internal"], times=None)
        faults.add(
            CONDITIONAL_CONFLICT,
            method="PUT",
            key=r"analysis\.json$",
            probability=rates["conflict"],
            times=None,
        )
        faults.add(DROP, method="PUT", probability=rates["drop"], times=None)
        faults.add(DROP, method="PUT", after=True, probability=rates["drop"], times=None)
        faults.add(DROP, method="GET", probability=rates["drop"] / 2, times=None)
        conn.send(server.endpoint_url)
        while True:
            command = conn.recv()
            snapshot = {"faults": dict(faults.faults), "requests": dict(faults.requests)}
            if command == "clear":
                for rule in faults.rules:
                    faults.remove(rule)
                conn.send(snapshot)
            else:
                conn.send(snapshot)
                return


def _s3_pm(endpoint: str) -> PersistenceManager:
    from documee_remote.stores.s3 import S3Store

    store = S3Store.from_url(f"s3://{BUCKET}/root/", endpoint_url=endpoint, region="us-east-1")
    return PersistenceManager(store, retry=PATIENT)


def soak_writer(endpoint: str, writer: int, duration: float, conn: Connection) -> None:
    """Merge distinct files until ``duration`` is up; report every committed path."""
    _aws_env()
    _short_botocore_backoff()
    pm = _s3_pm(endpoint)
    stats = TransactionStats()
    surfaced: Counter[str] = Counter()
    committed: list[str] = []
    started = time.monotonic()
    warm = started + duration * 0.2
    rss_start: int | None = None
    i = 0
    while time.monotonic() - started < duration:
        path = f"/w{writer:02d}/f{i}.py"
        fa = versioned(path, i)
        while True:  # a merge is idempotent: retry the same one until it is acknowledged
            try:
                pm.merge_file_analyses(CODEBASE, {path: fa}, {path: hash_of(path, i)}, stats=stats)
                break
            except TYPED_ERRORS as exc:
                surfaced[type(exc).__name__] += 1
                if time.monotonic() - started > duration + 120:
                    raise
        committed.append(path)
        i += 1
        if rss_start is None and time.monotonic() >= warm:
            rss_start = rss_bytes()
    pm.close()
    conn.send(
        {
            "committed": committed,
            "attempts": stats.attempts,
            "conflicts": stats.conflicts,
            "surfaced": dict(surfaced),
            "rss_start": rss_start or rss_bytes(),
            "rss_end": rss_bytes(),
        }
    )


def soak_reader(
    endpoint: str, reader: int, duration: float, pause: float, conn: Connection
) -> None:
    """Load the analysis in a loop; every one must parse and be internally consistent."""
    _aws_env()
    _short_botocore_backoff()
    pm = _s3_pm(endpoint)
    loads = empty = transient = 0
    violations: list[str] = []
    most = 0
    started = time.monotonic()
    warm = started + duration * 0.2
    rss_start: int | None = None
    while time.monotonic() - started < duration:
        try:
            hashes = pm.get_file_hashes(CODEBASE)
            analysis = pm.load_analysis(CODEBASE)
        except CorruptObjectError as exc:
            violations.append(f"corrupt: {exc}")
            continue
        except DocumeeRemoteError:
            transient += 1
            continue
        if analysis is None:
            empty += 1
            if most:
                violations.append("analysis.json vanished")
            continue
        loads += 1
        files = analysis.file_analyses
        if any(fa.file_path != path for path, fa in files.items()):
            violations.append("an entry's key differs from its file_path")
        if analysis.metrics != compute_metrics(
            files, analysis_time_ms=analysis.metrics.analysis_time_ms
        ):
            violations.append("metrics differ from their recomputation")
        if [list(t) for t in analysis.top_teaching_files] != [
            list(t) for t in rank_teaching_files(files)
        ]:
            violations.append("top_teaching_files differ from their recomputation")
        if len(files) < most:
            violations.append(f"went back in time: {len(files)} files after {most}")
        if not set(hashes) <= set(files):
            violations.append("file_hashes.json claims a file analysis.json lacks")
        most = max(most, len(files))
        if rss_start is None and time.monotonic() >= warm:
            rss_start = rss_bytes()
        if pause:
            time.sleep(pause)
    pm.close()
    conn.send(
        {
            "loads": loads,
            "empty": empty,
            "transient": transient,
            "violations": violations[:20],
            "violation_count": len(violations),
            "most_files": most,
            "rss_start": rss_start or rss_bytes(),
            "rss_end": rss_bytes(),
        }
    )


# -- the kill test ------------------------------------------------------------------------------

#: Group commit's wait in the eager kill test (see kill_writer).
KILL_GROUP_WAIT = 0.1


def kill_writer(
    root: str, slot: int, incarnation: int, conn: Connection, compaction: str = "eager"
) -> None:
    """Merge (and re-merge) this slot's files forever, acknowledging each merge before the next.

    Versions grow across incarnations, so the parent can tell that a stored
    entry is at least as new as the last one acknowledged. With deferred
    compaction every third delta or so triggers a compaction, so kills land
    in appends and in compactions alike.
    """
    # Eager: a writer killed while folding leaves the folder record held until it is
    # stale; with the default wait (10 s) no merge would finish between kills.
    policy = (
        CompactionPolicy("deferred", max_deltas=3)
        if compaction == "deferred"
        else CompactionPolicy(group_wait_seconds=KILL_GROUP_WAIT)
    )
    pm = PersistenceManager(LocalStore(root), retry=PATIENT, compaction=policy)
    conn.send(("ready", os.getpid()))
    i = 0
    while True:
        path = f"/slot{slot}/f{i % 12}.py"
        version = incarnation * 1_000_000 + i
        pm.merge_file_analyses(
            "kill", {path: versioned(path, version)}, {path: hash_of(path, version)}
        )
        conn.send(("ack", path, version))  # a pipe write: survives our death once it returned
        i += 1


# -- the folder kill test ------------------------------------------------------------------------

#: Where a folder kills itself (SIGKILL, after the request landed), always while it
#: holds ``_journal/_folder.json``: a key regex, and whether the PUT is the one that
#: takes the record (True) or one made while holding it (False).
FOLDER_KILL_POINTS: dict[str, tuple[str, bool]] = {
    # took the record, folded nothing yet
    "took-record": (r"/_journal/_folder\.json$", True),
    # committed analysis.json; hashes, marker and record not written
    "committed": (r"/analysis\.json$", False),
    # published the folded deltas' hashes; marker and record not written
    "published": (r"/file_hashes\.json$", False),
    # wrote the commit marker; the record still names the previous cycle
    "marked": (r"/_journal/c\d+\.folded$", False),
}


def _holder(store: Any, codebase_id: str) -> str | None:
    from documee_remote._engine.folder import folder_key
    from documee_remote.errors import NotFoundError

    try:
        return json.loads(store.get(folder_key(codebase_id)).data).get("holder")  # type: ignore[no-any-return]
    except NotFoundError:
        return None


def folder_kill_writer(
    root: str, slot: int, incarnation: int, conn: Connection, point: str, group_wait: float
) -> None:
    """Merge this slot's files until this process, as the folder, kills itself at ``point``.

    The store wraps a LocalStore in a FaultyStore whose rule matches only
    requests this process makes while it holds the folder record (its
    writer ids all start with ``host:pid:``), and whose "error" is SIGKILL,
    sent after the request landed: the death lands in the folder's critical
    section every time, not by luck of timing.
    """
    from documee_remote.testing.faulty import FaultPlan, FaultyStore

    inner = LocalStore(root)
    me = f"{socket.gethostname()}:{os.getpid()}:"
    pattern, taking = FOLDER_KILL_POINTS[point]

    def in_critical_section(key: str) -> bool:
        if not re.search(pattern, key):
            return False
        holder = _holder(inner, "kill")
        held_by_me = holder is not None and holder.startswith(me)
        return not held_by_me if taking else held_by_me

    def die(operation: str, key: str) -> BaseException:
        conn.send(("dying", point, key))
        os.kill(os.getpid(), signal.SIGKILL)
        raise AssertionError("unreachable")  # pragma: no cover

    plan = FaultPlan(seed=incarnation)
    plan.add("sigkill", op="put", key=in_critical_section, error=die, after=True)
    policy = CompactionPolicy(group_wait_seconds=group_wait)
    pm = PersistenceManager(FaultyStore(inner, plan), retry=PATIENT, compaction=policy)
    conn.send(("ready", os.getpid()))
    i = 0
    while True:
        path = f"/victim{slot}/f{i % 5}.py"
        version = incarnation * 1_000_000 + i
        pm.merge_file_analyses(
            "kill", {path: versioned(path, version)}, {path: hash_of(path, version)}
        )
        conn.send(("ack", path, version))
        i += 1


def folder_survivor(
    root: str, slot: int, conn: Connection, stop: Any, group_wait: float, least: int
) -> None:
    """Merge until ``stop`` is set (and at least ``least`` merges); report each merge's time.

    The final message counts how this writer got past dead folders: records it
    took over, and merges it compacted itself after no folder made progress.
    """
    import logging

    seen: Counter[str] = Counter()

    class Count(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            message = record.getMessage()
            if "taking over" in message:
                seen["takeovers"] += 1
            elif "no folder made progress" in message:
                seen["self-compactions"] += 1

    manager_log = logging.getLogger("documee_remote.manager")
    manager_log.addHandler(Count(logging.INFO))
    manager_log.setLevel(logging.INFO)
    policy = CompactionPolicy(group_wait_seconds=group_wait)
    pm = PersistenceManager(LocalStore(root), retry=PATIENT, compaction=policy)
    i = 0
    while i < least or not stop.is_set():
        path = f"/survivor{slot}/f{i % 7}.py"
        version = i
        started = time.monotonic()
        pm.merge_file_analyses(
            "kill", {path: versioned(path, version)}, {path: hash_of(path, version)}
        )
        conn.send(("ack", path, version, time.monotonic() - started))
        i += 1
    conn.send(("done", i, dict(seen)))


# -- the process fan-out race ----------------------------------------------------------------------


def race_worker(
    url: str, endpoint: str, region: str, worker: int, merges: int, go: Any
) -> dict[str, Any]:
    """Merge ``merges`` files into codebase "race1"; report what happened instead of dying.

    Starts merging when ``go`` is set, so that every process is up and
    contending (process start-up on a small machine would otherwise spread
    the writers out). A merge that raises is recorded by its error's type
    name and ends the worker: in the CI race such a worker used to die.
    """
    _aws_env()
    from documee_remote.stores import open_store

    stats = TransactionStats()
    retry = RetryPolicy(max_attempts=200, deadline=120)
    error: str | None = None
    done = 0
    with PersistenceManager(
        open_store(url, endpoint_url=endpoint, region=region), retry=retry
    ) as pm:
        go.wait(120)
        started = time.monotonic()
        for i in range(merges):
            path = f"/src/w{worker}/f{i}.py"
            fa = versioned(path, worker * 1000 + i)
            try:
                pm.merge_file_analyses("race1", {path: fa}, {path: hash_of(path, i)}, stats=stats)
            except Exception as exc:
                error = type(exc).__name__
                break
            done += 1
        took = time.monotonic() - started
    return {
        "done": done,
        "error": error,
        "attempts": stats.attempts,
        "conflicts": stats.conflicts,
        "seconds": took,
    }
