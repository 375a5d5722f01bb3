"""Running analysers over a codebase: loading them, worker processes, merging results."""

from __future__ import annotations

import importlib
import logging
import multiprocessing
import os
import pickle
import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import asdict, dataclass, field
from functools import partial
from pathlib import Path
from typing import Any, Literal, TypeAlias

from ..errors import ConfigurationError
from ..manager import PersistenceManager
from ..models import (
    FileAnalysis,
)
from ..retry import RetryPolicy, TransactionStats
from .files import content_sha256, discover_files, in_shard, stored_path
from .reference import reference_analyser

logger = logging.getLogger("documee_remote.analyser")

#: An analyser: ``(file path as it will be stored, file content) -> FileAnalysis``.
#: For ``workers > 1`` it must be picklable: a module-level function.
Analyser: TypeAlias = Callable[[str, bytes], FileAnalysis]


def load_analyser(spec: str) -> Analyser:
    """Import an analyser named ``"package.module:function"`` (or ``module:obj.attr``).

    Raises
    ------
    ConfigurationError
        The spec is malformed, the module cannot be imported, the attribute is
        missing, or it is not callable.
    """
    module_name, sep, attr_path = spec.partition(":")
    if not sep or not module_name or not attr_path:
        raise ConfigurationError(
            f"invalid analyser {spec!r}: expected 'package.module:function', "
            "e.g. 'documee_remote.analyser:reference_analyser'"
        )
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ConfigurationError(f"cannot import analyser module {module_name!r}: {exc}") from exc
    except Exception as exc:
        raise ConfigurationError(
            f"importing analyser module {module_name!r} failed: {type(exc).__name__}: {exc}"
        ) from exc
    target: Any = module
    for part in attr_path.split("."):
        try:
            target = getattr(target, part)
        except AttributeError:
            raise ConfigurationError(
                f"analyser module {module_name!r} has no attribute {attr_path!r}"
            ) from None
    if not callable(target):
        raise ConfigurationError(f"analyser {spec!r} is a {type(target).__name__}, not a function")
    analyser: Analyser = target
    return analyser


ProgressKind: TypeAlias = Literal["discovered", "analysed", "error", "merged", "conflict", "done"]


@dataclass(frozen=True, slots=True)
class ProgressEvent:
    """What :func:`analyse_codebase` just did, for progress bars and live demos.

    ``kind`` is one of:

    ``"discovered"``
        Hashing is done: ``total`` files will be analysed, ``unchanged`` were
        skipped, ``removed`` will be removed.
    ``"analysed"`` / ``"error"``
        One file (``path``) was analysed, or failed (``message``); ``done``
        of ``total``.
    ``"conflict"``
        A merge batch lost ``conflicts`` race(s) to other writers and was
        retried (``attempts`` in all); reported when the batch is committed.
    ``"merged"``
        A batch of ``batch`` files was committed; ``merged`` files so far.
    ``"done"``
        The run finished; the counts are final.
    """

    kind: ProgressKind
    total: int = 0
    done: int = 0
    merged: int = 0
    unchanged: int = 0
    removed: int = 0
    batch: int = 0
    attempts: int = 0
    conflicts: int = 0
    path: str | None = None
    message: str | None = None


@dataclass
class AnalyseReport:
    """What a run of :func:`analyse_codebase` did.

    Attributes
    ----------
    files_seen:
        Source files found in this run's shard.
    analysed:
        Files analysed and merged.
    unchanged:
        Files skipped because their content hash matched ``file_hashes.json``.
    removed:
        Stored files of this shard that are no longer on disk, removed.
    merges:
        ``merge_file_analyses`` calls (batches).
    attempts, conflicts, retries:
        Summed over the merges' transactions (see ``TransactionStats``).
    errors:
        ``(stored path, message)`` for every file that could not be read or
        analysed; their hashes were not recorded, so the next run retries them.
    elapsed:
        Seconds the run took.
    """

    files_seen: int = 0
    analysed: int = 0
    unchanged: int = 0
    removed: int = 0
    merges: int = 0
    attempts: int = 0
    conflicts: int = 0
    retries: int = 0
    errors: list[tuple[str, str]] = field(default_factory=list)
    elapsed: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict; ``errors`` as ``[{"path": .., "message": ..}]``."""
        data = asdict(self)
        data["errors"] = [{"path": p, "message": m} for p, m in self.errors]
        data["elapsed"] = round(self.elapsed, 3)
        return data


@dataclass(frozen=True, slots=True)
class _FileOutcome:
    """One file's result, sent back from a worker process."""

    path: str
    sha256: str | None = None
    analysis: FileAnalysis | None = None
    error: str | None = None
    seconds: float = 0.0


def _analyse_file(analyser: Analyser, os_path: str, path: str) -> _FileOutcome:
    """Read, hash and analyse one file; in a worker process when ``workers > 1``.

    The file is read here, and the hash returned is that of the very bytes
    analysed, so a file edited during the run is recorded consistently.
    """
    started = time.perf_counter()
    try:
        content = Path(os_path).read_bytes()
    except OSError as exc:
        return _FileOutcome(path, error=f"cannot read: {exc.strerror or exc}")
    try:
        result = analyser(path, content)
    except Exception as exc:  # noqa: BLE001 - one file's failure must not stop the run
        return _FileOutcome(path, error=f"analyser failed: {type(exc).__name__}: {exc}")
    seconds = time.perf_counter() - started
    if not isinstance(result, FileAnalysis):
        return _FileOutcome(
            path, error=f"analyser returned {type(result).__name__}, not a FileAnalysis"
        )
    if result.file_path != path:
        return _FileOutcome(
            path, error=f"analyser returned an analysis of {result.file_path!r} instead"
        )
    return _FileOutcome(path, content_sha256(content), result, seconds=seconds)


def _outcomes(
    analyser: Analyser, tasks: Sequence[tuple[str, str]], workers: int
) -> Iterator[_FileOutcome]:
    """Results in task order: inline, or from a process pool with a bounded window.

    Order is kept (not completion order) so that ``analysis.json`` lists files
    in walk order on every run; the window bounds memory and keeps the pool
    busy while the caller merges.
    """
    if workers <= 1:
        for os_path, path in tasks:
            yield _analyse_file(analyser, os_path, path)
        return
    # spawn, not fork: the parent holds store clients and their threads, which a
    # forked child would inherit half-locked; spawn is also what macOS and Windows use.
    context = multiprocessing.get_context("spawn")
    work = partial(_analyse_file, analyser)
    pool = ProcessPoolExecutor(max_workers=workers, mp_context=context)
    pending: deque[Future[_FileOutcome]] = deque()
    try:
        for os_path, path in tasks:
            pending.append(pool.submit(work, os_path, path))
            if len(pending) >= workers * 4:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def _check_picklable(analyser: Analyser) -> None:
    try:
        pickle.dumps(analyser)
    except Exception as exc:
        raise ConfigurationError(
            f"analyser {analyser!r} cannot be sent to worker processes ({exc}); "
            "use a module-level function, or workers=1"
        ) from exc


def analyse_codebase(
    pm: PersistenceManager,
    codebase_id: str,
    root: Path,
    *,
    analyser: Analyser = reference_analyser,
    shard: tuple[int, int] | None = None,
    workers: int = 1,
    path_prefix: str | None = None,
    batch_size: int = 50,
    retry: RetryPolicy | None = None,
    progress: Callable[[ProgressEvent], None] | None = None,
) -> AnalyseReport:
    """Analyse the changed files under ``root`` and merge them into ``codebase_id``.

    1. :func:`discover_files` under ``root``; keep this ``shard``'s files
       (by :func:`in_shard` of the :func:`stored_path`).
    2. Hash each file and skip those whose hash matches ``file_hashes.json``.
    3. Analyse the others with ``analyser``, in a process pool of ``workers``
       processes when ``workers > 1`` (``analyser`` must then be a
       module-level function).
    4. Merge every ``batch_size`` results with
       :meth:`PersistenceManager.merge_file_analyses`, with their hashes. The
       last merge also removes the stored files that are no longer among the
       discovered files, but only those under this ``root`` (its stored
       prefix) and in this shard: other shards and other roots are left to
       their own runs.

    A file whose reading or analysis fails is reported in ``errors`` and not
    merged; its hash is not recorded, so the next run tries it again.

    Any number of these runs may write into the same codebase at once
    (processes, shards, machines): each merge is a compare-and-swap that is
    replayed on a fresh read when another writer got there first, so nothing
    is lost. ``progress`` is called with a :class:`ProgressEvent` at each step.

    The unchanged check trusts ``file_hashes.json``: the manager only records
    a hash together with its analysis.

    Raises
    ------
    ConfigurationError
        ``root`` is not a directory, ``shard`` or ``batch_size`` are invalid,
        or the analyser cannot be sent to worker processes.
    TooManyConflictsError
        A merge kept losing to other writers; earlier batches stay merged.
    """
    started = time.monotonic()
    if shard is not None and not 1 <= shard[0] <= shard[1]:
        raise ConfigurationError(f"invalid shard {shard[0]}/{shard[1]}")
    if batch_size < 1:
        raise ConfigurationError("batch_size must be at least 1")
    if workers > 1:
        _check_picklable(analyser)

    def emit(event: ProgressEvent) -> None:
        if progress is not None:
            progress(event)

    report = AnalyseReport()
    base = Path(os.path.abspath(root))
    on_disk: dict[str, Path] = {}
    for path in discover_files(base):
        name = stored_path(path, base, path_prefix)
        if shard is None or in_shard(name, *shard):
            on_disk[name] = path
    report.files_seen = len(on_disk)

    stored = pm.get_file_hashes(codebase_id)
    todo: list[tuple[str, str]] = []
    for name, path in on_disk.items():
        try:
            digest = content_sha256(path.read_bytes())
        except OSError as exc:
            report.errors.append((name, f"cannot read: {exc.strerror or exc}"))
            emit(ProgressEvent("error", path=name, message=report.errors[-1][1]))
            continue
        if stored.get(name) == digest:
            report.unchanged += 1
        else:
            todo.append((os.fspath(path), name))

    root_name = stored_path(base, base, path_prefix).rstrip("/") + "/"
    removed = sorted(
        name
        for name in stored
        if name.startswith(root_name)
        and name not in on_disk
        and (shard is None or in_shard(name, *shard))
    )
    emit(
        ProgressEvent(
            "discovered", total=len(todo), unchanged=report.unchanged, removed=len(removed)
        )
    )

    batch: dict[str, FileAnalysis] = {}
    hashes: dict[str, str] = {}
    batch_seconds = 0.0
    done = 0

    def merge(*, final: bool) -> None:
        nonlocal batch, hashes, batch_seconds
        gone = removed if final else []
        if not batch and not gone:
            return
        stats = TransactionStats()
        pm.merge_file_analyses(
            codebase_id,
            batch,
            hashes,
            removed=gone,
            analysis_time_ms=batch_seconds * 1000.0,
            retry=retry,
            stats=stats,
        )
        report.merges += 1
        report.analysed += len(batch)
        report.removed += len(gone)
        report.attempts += stats.attempts
        report.conflicts += stats.conflicts
        report.retries += stats.retries
        if stats.conflicts:
            emit(
                ProgressEvent(
                    "conflict",
                    total=len(todo),
                    done=done,
                    batch=len(batch),
                    attempts=stats.attempts,
                    conflicts=stats.conflicts,
                )
            )
        emit(
            ProgressEvent(
                "merged",
                total=len(todo),
                done=done,
                merged=report.analysed,
                removed=report.removed,
                batch=len(batch),
                attempts=stats.attempts,
                conflicts=stats.conflicts,
            )
        )
        batch, hashes, batch_seconds = {}, {}, 0.0

    for outcome in _outcomes(analyser, todo, workers):
        done += 1
        if outcome.analysis is None or outcome.sha256 is None:
            message = outcome.error or "no result"
            report.errors.append((outcome.path, message))
            logger.warning("%s: %s", outcome.path, message)
            emit(
                ProgressEvent(
                    "error", total=len(todo), done=done, path=outcome.path, message=message
                )
            )
        else:
            batch[outcome.path] = outcome.analysis
            hashes[outcome.path] = outcome.sha256
            batch_seconds += outcome.seconds
            emit(ProgressEvent("analysed", total=len(todo), done=done, path=outcome.path))
        if len(batch) >= batch_size:
            merge(final=False)
    merge(final=True)

    report.elapsed = time.monotonic() - started
    emit(
        ProgressEvent(
            "done",
            total=len(todo),
            done=done,
            merged=report.analysed,
            unchanged=report.unchanged,
            removed=report.removed,
            attempts=report.attempts,
            conflicts=report.conflicts,
        )
    )
    logger.info(
        "analysed %d file(s) of %s (%d unchanged, %d removed, %d error(s)) in %.1fs",
        report.analysed,
        codebase_id,
        report.unchanged,
        report.removed,
        len(report.errors),
        report.elapsed,
    )
    return report
