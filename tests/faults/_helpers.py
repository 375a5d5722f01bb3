"""Shared pieces of the fault suite: versioned analyses, a merge job, integrity checks."""

from __future__ import annotations

import json
import random
import re
import threading
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

from documee_remote import PersistenceManager, TransactionStats, journal, layout
from documee_remote.codec import (
    load_codebase_analysis,
    load_file_analysis,
    load_file_hashes,
    loads,
)
from documee_remote.errors import (
    ConflictError,
    CorruptObjectError,
    PermissionDeniedError,
    StorageFullError,
    TransientError,
)
from documee_remote.integrity import VerifyReport
from documee_remote.layout import ANALYSIS_NAME, FILE_HASHES_NAME, LEASE_NAME, is_file_analysis_name
from documee_remote.merge import compute_metrics, rank_teaching_files
from documee_remote.models import CodebaseAnalysis, FileAnalysis
from documee_remote.stores import Store
from documee_remote.testing.factories import content_hash, make_file_analysis

ANALYSIS_KEY = r"analysis\.json$"
#: What a merge may raise while storage misbehaves: the documented typed errors.
TYPED_ERRORS: tuple[type[Exception], ...] = (
    TransientError,
    PermissionDeniedError,
    CorruptObjectError,
    StorageFullError,
    ConflictError,
)
_VERSION = re.compile(r"v(\d+)")


def versioned(path: str, version: int, *, marker: str = "", functions: int = 1) -> FileAnalysis:
    """A small FileAnalysis of ``path`` whose content says which version it is."""
    fa = make_file_analysis(path, functions=functions, docstring_bytes=8, seed=version)
    fa.teaching_value.explanation = f"v{version}{marker}"
    return fa


def version_of(fa: FileAnalysis) -> int:
    match = _VERSION.match(fa.teaching_value.explanation)
    assert match is not None, fa.teaching_value.explanation
    return int(match.group(1))


def hash_of(path: str, version: int) -> str:
    return content_hash(f"{path}@{version}")


def assert_consistent(analysis: CodebaseAnalysis, codebase_id: str) -> None:
    """What a reader must always find: derived fields recomputed, entries named right."""
    assert analysis.codebase_id == codebase_id
    for path, fa in analysis.file_analyses.items():
        assert fa.file_path == path, (path, fa.file_path)
    assert analysis.metrics == compute_metrics(
        analysis.file_analyses, analysis_time_ms=analysis.metrics.analysis_time_ms
    )
    assert [list(t) for t in analysis.top_teaching_files] == [
        list(t) for t in rank_teaching_files(analysis.file_analyses)
    ]


def check_objects_parse(store: Store, prefix: str = "") -> Counter[str]:
    """Read every object under ``prefix`` and parse it by its kind; count them."""
    counts: Counter[str] = Counter()
    for key in store.list(prefix):
        assert not any(seg.startswith(".") for seg in key.split("/")), f"hidden key {key!r}"
        data = store.get(key).data
        name = key.rsplit("/", 1)[-1]
        if name == ANALYSIS_NAME:
            load_codebase_analysis(data, key=key)
            counts["analysis"] += 1
        elif name == FILE_HASHES_NAME:
            load_file_hashes(data, key=key)
            counts["hashes"] += 1
        elif is_file_analysis_name(name):
            load_file_analysis(data, key=key)
            counts["per_file"] += 1
        elif name == LEASE_NAME:
            record = json.loads(data)
            assert {"owner", "token", "expires_at", "released"} <= set(record)
            counts["lease"] += 1
        else:
            loads(data, key=key)
            counts["other"] += 1
    return counts


def repair_then_clean(pm: PersistenceManager, codebase_id: str) -> VerifyReport:
    """``verify(repair=True, grace_seconds=0)``, then a plain verify must find nothing."""
    first = pm.verify(codebase_id, repair=True, grace_seconds=0)
    second = pm.verify(codebase_id)
    assert second.findings == [], second.to_dict()
    return first


@dataclass
class JobResult:
    """What a merge job acknowledged, and what it went through."""

    expected: dict[str, int] = field(default_factory=dict)  # path -> acknowledged version
    merges: int = 0
    surfaced: Counter[str] = field(default_factory=Counter)
    stats: TransactionStats = field(default_factory=TransactionStats)


def merge_job(
    pm: PersistenceManager,
    codebase_id: str,
    *,
    steps: int = 8,
    seed: int = 0,
    max_tries: int = 40,
    tolerate: tuple[type[Exception], ...] = TYPED_ERRORS,
    between: Callable[[int], None] | None = None,
) -> JobResult:
    """Merge new files, update and remove old ones, step by step, as an analyser would.

    A step that raises one of the documented typed errors is tried again (a
    merge is idempotent); anything else propagates. Returns what was
    acknowledged: every path with the version its last successful merge wrote.
    """
    rng = random.Random(seed)
    job = JobResult()
    for step in range(steps):
        if between is not None:
            between(step)
        analyses = {f"/src/s{step}_{j}.py": versioned(f"/src/s{step}_{j}.py", step) for j in (0, 1)}
        if step % 4 == 3 and job.expected:
            path = rng.choice(sorted(job.expected))
            analyses[path] = versioned(path, 1000 + step)
        removed: list[str] = []
        if step % 3 == 2:
            candidates = sorted(set(job.expected) - set(analyses))
            if len(candidates) > 2:
                removed.append(rng.choice(candidates))
        hashes = {p: hash_of(p, version_of(fa)) for p, fa in analyses.items()}
        for _ in range(max_tries):
            try:
                pm.merge_file_analyses(
                    codebase_id, analyses, hashes, removed=removed, stats=job.stats
                )
            except tolerate as exc:
                job.surfaced[type(exc).__name__] += 1
                continue
            break
        else:
            raise AssertionError(f"step {step} never succeeded: {dict(job.surfaced)}")
        job.merges += 1
        for path, fa in analyses.items():
            job.expected[path] = version_of(fa)
        for path in removed:
            job.expected.pop(path, None)
    return job


def lost_updates(pm: PersistenceManager, codebase_id: str, expected: dict[str, int]) -> int:
    """Acknowledged versions missing from (or older in) the stored analysis."""
    final = pm.load_analysis(codebase_id)
    entries = final.file_analyses if final is not None else {}
    return sum(
        1
        for path, version in expected.items()
        if path not in entries or version_of(entries[path]) < version
    )


def check_job_outcome(pm: PersistenceManager, codebase_id: str, job: JobResult) -> None:
    """The stored codebase is exactly what the job acknowledged, and every invariant holds."""
    final = pm.load_analysis(codebase_id)
    assert final is not None
    assert {p: version_of(fa) for p, fa in final.file_analyses.items()} == job.expected
    assert_consistent(final, codebase_id)
    want = {p: hash_of(p, v) for p, v in job.expected.items()}
    got = pm.get_file_hashes(codebase_id)
    assert got == want, {
        p: (got.get(p), want.get(p)) for p in {*got, *want} if got.get(p) != want.get(p)
    }
    check_objects_parse(pm.store, f"{codebase_id}/")
    repair_then_clean(pm, codebase_id)
    for path, fa in final.file_analyses.items():
        assert pm.load_file_analysis(codebase_id, path) == fa


def merge_until_acknowledged(
    pm: PersistenceManager,
    path: str,
    version: int,
    *,
    tries: Counter[str],
    surfaced: Counter[str],
    lock: threading.Lock,
    attempts: int = 20,
) -> None:
    """Merge one file until acknowledged (a merge is idempotent), counting the tries
    and the typed errors that surfaced; an untyped error propagates."""
    for _ in range(attempts):
        with lock:
            tries[path] += 1
        try:
            pm.merge_file_analyses(
                "cb1", {path: versioned(path, version)}, {path: "h"}, analysis_time_ms=1.0
            )
            return
        except TYPED_ERRORS as exc:
            with lock:
                surfaced[type(exc).__name__] += 1


def named_delta_copies(store: Store, codebase_id: str) -> tuple[Counter[str], int]:
    """How many named deltas of ``codebase_id`` hold each path, and how many there are."""
    listing = journal.parse_listing(
        codebase_id, store.list_meta(layout.journal_prefix(codebase_id))
    )
    copies: Counter[str] = Counter()
    for name in listing.named:
        key = journal.named_key(codebase_id, name)
        delta = journal.decode_delta(store.get(key).data, key=key, codebase_id=codebase_id)
        copies.update(list(delta.file_analyses))
    return copies, len(listing.named)
