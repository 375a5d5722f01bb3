"""Many writers merging into one codebase at once: the fan-out runner of issue 14.

:func:`run_fanout` starts ``writers`` threads, each with its **own**
:class:`~documee_remote.PersistenceManager` on its own store (so its own
client and connection pool), each holding one small synthetic
:class:`~documee_remote.models.FileAnalysis`. They wait on a barrier, are
released together, and each merges its one file into one shared codebase
with ``merge_file_analyses`` or ``append_file_analyses``. Afterwards it
checks what a reader sees:

- ``analysis.json`` read **alone** (one plain GET and ``json.loads``, as
  upstream's reader does: no journal), which under the eager policy must
  hold every acknowledged merge;
- :meth:`~documee_remote.PersistenceManager.load_analysis` and
  :meth:`~documee_remote.PersistenceManager.get_file_hashes` (this library's
  readers, which fold pending deltas): a merge acknowledged but missing
  there is a **lost update**.

Request counts come from the caller (``counters``: a callable returning the
server's cumulative counters), snapshotted right before the release and
right after the last writer returns, so the window holds the merges' requests
and nothing else (setup, warm-up and the checks fall outside it).

The benchmark (``python -m benchmarks.fanout``) also runs this file against an
older checkout of the library: it loads it **by path** into a process whose
``documee_remote`` is that checkout, so this module imports the library by
absolute name only and uses nothing but the public verbs every release has.
``python documee_remote/testing/fanout.py --help`` (or :func:`main`) runs one
fan-out against an S3 endpoint and prints the result as one JSON line.
"""

from __future__ import annotations

import argparse
import json
import sys
import threading
import time
import urllib.request
import uuid
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

# Absolute on purpose (see the module docstring): loaded by path, this file must bind to
# whichever documee_remote the process imports, old or new.
from documee_remote import PersistenceManager
from documee_remote.stores import Store
from documee_remote.testing.factories import content_hash, make_file_analysis

__all__ = [
    "APIS",
    "COMPACTIONS",
    "FanoutResult",
    "WriterOutcome",
    "main",
    "run_fanout",
]

Api = Literal["merge", "append"]
Compaction = Literal["eager", "deferred"]
APIS: tuple[Api, ...] = ("merge", "append")
COMPACTIONS: tuple[Compaction, ...] = ("eager", "deferred")

#: A store per call: each writer gets its own (own client, own connection pool).
StoreFactory = Callable[[], Store]
#: The server's cumulative counters: requests by verb in upper case (``"GET"``, ``"PUT"``,
#: ``"LIST"``...), which :attr:`FanoutResult.requests` adds up, and any other figures in
#: lower case (``"bytes_in"``, ``"status_412"``...); deltas over the window are reported.
Counters = Callable[[], Mapping[str, int]]
#: A plain GET of a key relative to the store root: its bytes, or None when absent.
RawGet = Callable[[str], bytes | None]


def _library_file() -> str:
    import documee_remote

    return str(documee_remote.__file__)


@dataclass(frozen=True, slots=True)
class WriterOutcome:
    """One writer's merge: how long it took and, if it raised, what."""

    writer: int
    path: str
    seconds: float
    error: str | None = None
    """The exception's class name, or None when the merge was acknowledged."""
    detail: str | None = None
    """The exception's message, cut to 300 characters."""


@dataclass(frozen=True, slots=True)
class FanoutResult:
    """What one fan-out did and what readers found afterwards."""

    codebase_id: str
    writers: int
    api: str
    compaction: str
    wall_seconds: float
    """From the barrier's release to the last writer's return."""
    outcomes: tuple[WriterOutcome, ...]
    counts: dict[str, int]
    """Server counters over the window (deltas); empty without ``counters``."""
    missing_from_analysis_json: tuple[str, ...]
    """Acknowledged paths absent from ``analysis.json`` read alone (plain GET)."""
    missing_from_load: tuple[str, ...]
    """Acknowledged paths absent from ``load_analysis``: lost updates."""
    missing_hashes: tuple[str, ...]
    """Acknowledged paths absent from ``get_file_hashes``."""
    files_in_analysis_json: int
    """How many of the ``writers`` files ``analysis.json`` read alone holds (raised ones too)."""
    files_in_load: int
    """How many of the ``writers`` files ``load_analysis`` holds."""
    verify_ok: bool | None = None
    """``PersistenceManager.verify(...).ok``, when asked for."""
    verify_findings: dict[str, int] = field(default_factory=dict)
    """What ``verify`` found, by kind (empty when not asked for or nothing found)."""
    library: str = field(default_factory=_library_file)
    """``documee_remote.__file__`` of the process that ran it."""

    @property
    def failures(self) -> dict[str, int]:
        """Merges that raised, by exception class name."""
        return dict(Counter(o.error for o in self.outcomes if o.error is not None))

    @property
    def acknowledged(self) -> int:
        """Merges that returned normally."""
        return sum(1 for o in self.outcomes if o.error is None)

    @property
    def lost(self) -> int:
        """Acknowledged merges that ``load_analysis`` does not show."""
        return len(self.missing_from_load)

    @property
    def requests(self) -> int | None:
        """Requests in the window, all verbs; None when not counted."""
        if not self.counts:
            return None
        return sum(v for k, v in self.counts.items() if k.isupper())

    @property
    def requests_per_merge(self) -> float | None:
        """Requests in the window divided by the number of writers."""
        total = self.requests
        return None if total is None else total / self.writers

    def summary(self) -> str:
        """One line: wall, requests per merge, failures, lost, what readers miss."""
        per = self.requests_per_merge
        return (
            f"{self.writers} writers ({self.api}, {self.compaction}): "
            f"wall {self.wall_seconds:.1f} s, "
            f"{'?' if per is None else f'{per:.1f}'} requests/merge {self.counts}, "
            f"failures {self.failures or 0}, lost {self.lost}, "
            f"analysis.json alone holds {self.files_in_analysis_json}/{self.writers} files, "
            f"missing hashes {len(self.missing_hashes)}, "
            f"verify {self.verify_ok} {self.verify_findings or ''}"
        )

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict: the fields plus the derived figures."""
        data = asdict(self)
        data.update(
            failures=self.failures,
            acknowledged=self.acknowledged,
            lost=self.lost,
            requests=self.requests,
            requests_per_merge=self.requests_per_merge,
        )
        return data


def run_fanout(
    store_factory: StoreFactory,
    writers: int,
    *,
    api: Api = "merge",
    compaction: Compaction = "eager",
    codebase_id: str | None = None,
    counters: Counters | None = None,
    raw_get: RawGet | None = None,
    verify: bool = False,
    warm_up: bool = True,
    timeout: float | None = 900.0,
) -> FanoutResult:
    """Release ``writers`` threads at once, each merging one file into one codebase.

    Parameters
    ----------
    store_factory:
        Called once per writer (in that writer's thread, before the barrier)
        and once for the checks; every call must return a new store on the
        same root.
    api:
        ``"merge"``: ``merge_file_analyses``; ``"append"``: ``append_file_analyses``.
    compaction:
        Every writer's ``PersistenceManager(compaction=...)``.
    codebase_id:
        Default: a fresh ``fanout-<hex>`` id, so runs never share a journal.
    counters:
        The server's cumulative counters (see :data:`Counters`).
    raw_get:
        How to read ``analysis.json`` alone; default: one ``get`` on a store
        from the factory (one plain GET, no journal).
    verify:
        Also run ``verify`` on the codebase afterwards.
    warm_up:
        Merge one file into another codebase first, so imports, the
        service model and the models' validators are loaded before the
        window opens (a Lambda's warm container, not its cold start).
    timeout:
        Seconds to wait for the writers once released; :class:`TimeoutError`
        past it (the writer threads are daemons and are left behind).

    Retries follow the library's default :class:`~documee_remote.RetryPolicy`.
    """
    if writers < 1:
        raise ValueError("writers must be at least 1")
    if api not in APIS:
        raise ValueError(f"api must be one of {APIS}, not {api!r}")
    if compaction not in COMPACTIONS:
        raise ValueError(f"compaction must be one of {COMPACTIONS}, not {compaction!r}")
    codebase_id = codebase_id or f"fanout-{uuid.uuid4().hex[:12]}"
    if warm_up:
        _warm_up(store_factory, f"{codebase_id}-warmup", api, compaction)

    paths = [f"/src/pkg{i // 64}/mod_{i}.py" for i in range(writers)]
    outcomes: list[WriterOutcome | None] = [None] * writers
    ready = threading.Barrier(writers + 1)
    go = threading.Event()

    def writer(index: int) -> None:
        path = paths[index]
        pm: PersistenceManager | None = None
        store: Store | None = None
        setup_error: BaseException | None = None
        try:
            store = store_factory()
            pm = PersistenceManager(store, compaction=compaction)
            analysis = make_file_analysis(path, seed=index)
            hashes = {path: content_hash(path)}
        except BaseException as exc:  # noqa: BLE001 - reported as this writer's outcome
            setup_error = exc
        try:
            ready.wait()
        except threading.BrokenBarrierError:
            setup_error = setup_error or RuntimeError("the start barrier broke")
        go.wait()
        started = time.perf_counter()
        error: BaseException | None = setup_error
        if pm is not None and setup_error is None:
            try:
                if api == "merge":
                    pm.merge_file_analyses(codebase_id, {path: analysis}, hashes)
                else:
                    pm.append_file_analyses(codebase_id, {path: analysis}, hashes)
            except Exception as exc:  # noqa: BLE001 - counted by type, the point of the run
                error = exc
        finished = time.perf_counter()
        outcomes[index] = WriterOutcome(
            writer=index,
            path=path,
            seconds=finished - started,
            error=None if error is None else type(error).__name__,
            detail=None if error is None else str(error)[:300],
        )
        finish_times[index] = finished
        if pm is not None:
            pm.close()
        if store is not None:
            store.close()

    finish_times: list[float] = [0.0] * writers
    threads = [
        threading.Thread(target=writer, args=(i,), name=f"fanout-writer-{i}", daemon=True)
        for i in range(writers)
    ]
    for thread in threads:
        thread.start()
    ready.wait()
    before = dict(counters()) if counters is not None else {}
    released = time.perf_counter()
    go.set()
    limit = None if timeout is None else released + timeout
    for thread in threads:
        thread.join(None if limit is None else max(0.0, limit - time.perf_counter()))
        if thread.is_alive():
            raise TimeoutError(f"{thread.name} still merging {timeout} s after the release")
    wall = max(finish_times) - released
    after = dict(counters()) if counters is not None else {}
    counts = {k: after.get(k, 0) - before.get(k, 0) for k in sorted(set(before) | set(after))}

    done = [o for o in outcomes if o is not None]
    acknowledged = [o.path for o in done if o.error is None]
    checker = store_factory()
    try:
        data = (
            raw_get(f"{codebase_id}/analysis.json")
            if raw_get
            else _store_get(checker)(f"{codebase_id}/analysis.json")
        )
        in_json = set(json.loads(data)["file_analyses"]) if data is not None else set()
        pm = PersistenceManager(checker, compaction=compaction)
        loaded = pm.load_analysis(codebase_id)
        in_load = set(loaded.file_analyses) if loaded is not None else set()
        in_hashes = set(pm.get_file_hashes(codebase_id))
        verified: bool | None = None
        findings: Counter[str] = Counter()
        if verify:
            report = pm.verify(codebase_id)
            verified = report.ok
            findings.update(str(f.kind) for f in report.findings if not f.repaired)
        pm.close()
    finally:
        checker.close()
    return FanoutResult(
        codebase_id=codebase_id,
        writers=writers,
        api=api,
        compaction=compaction,
        wall_seconds=wall,
        outcomes=tuple(done),
        counts=counts,
        missing_from_analysis_json=tuple(p for p in acknowledged if p not in in_json),
        missing_from_load=tuple(p for p in acknowledged if p not in in_load),
        missing_hashes=tuple(p for p in acknowledged if p not in in_hashes),
        files_in_analysis_json=len(in_json & set(paths)),
        files_in_load=len(in_load & set(paths)),
        verify_ok=verified,
        verify_findings=dict(findings),
    )


def _store_get(store: Store) -> RawGet:
    from documee_remote.errors import NotFoundError

    def get(key: str) -> bytes | None:
        try:
            return store.get(key).data
        except NotFoundError:
            return None

    return get


def _warm_up(store_factory: StoreFactory, codebase_id: str, api: Api, compaction: str) -> None:
    store = store_factory()
    try:
        pm = PersistenceManager(store, compaction=compaction)
        path = "/src/warm_up.py"
        analysis, hashes = make_file_analysis(path), {path: content_hash(path)}
        if api == "merge":
            pm.merge_file_analyses(codebase_id, {path: analysis}, hashes)
        else:
            pm.append_file_analyses(codebase_id, {path: analysis}, hashes)
        pm.load_analysis(codebase_id)
        pm.close()
    finally:
        store.close()


# -- one fan-out from the command line (the benchmark's child processes) -------------------


def _http_counters(url: str) -> Counters:
    def counters() -> Mapping[str, int]:
        with urllib.request.urlopen(url, timeout=30) as response:  # noqa: S310 - our server
            data: dict[str, int] = json.loads(response.read())
        return data

    return counters


def main(argv: list[str] | None = None) -> int:
    """Run one fan-out against an S3 endpoint; print the result as one JSON line."""
    parser = argparse.ArgumentParser(description="One fan-out of concurrent merges (issue 14).")
    parser.add_argument("--endpoint-url", required=True)
    parser.add_argument("--bucket", required=True)
    parser.add_argument("--prefix", default="")
    parser.add_argument("--region", default="us-east-1")
    parser.add_argument("--writers", type=int, required=True)
    parser.add_argument("--api", choices=APIS, default="merge")
    parser.add_argument("--compaction", choices=COMPACTIONS, default="eager")
    parser.add_argument("--codebase-id", default=None)
    parser.add_argument("--stats-url", default=None, help="GET: the server's counters as JSON")
    parser.add_argument("--expect-root", default=None, help="fail unless the library is here")
    parser.add_argument("--timeout", type=float, default=900.0)
    parser.add_argument("--verify", action="store_true")
    args = parser.parse_args(argv)

    library = Path(_library_file()).resolve()
    if args.expect_root and not library.is_relative_to(Path(args.expect_root).resolve()):
        print(json.dumps({"error": f"imported {library}, not under {args.expect_root}"}))
        return 2

    from documee_remote.stores import open_store

    url = f"s3://{args.bucket}/{args.prefix}"

    def factory() -> Store:
        return open_store(url, endpoint_url=args.endpoint_url, region=args.region)

    result = run_fanout(
        factory,
        args.writers,
        api=args.api,
        compaction=args.compaction,
        codebase_id=args.codebase_id,
        counters=_http_counters(args.stats_url) if args.stats_url else None,
        verify=args.verify,
        timeout=args.timeout,
    )
    print(json.dumps(result.to_json()), flush=True)
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
