"""A merge recorded in the journal (per-file objects, one named delta), then folded."""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from concurrent.futures import Future
from dataclasses import dataclass

from .. import codec, journal, layout
from ..compaction import CompactReport
from ..errors import TransientError
from ..journal import Delta, JournalListing
from ..merge import GraphUpdate
from ..models import CodebaseAnalysis, FileAnalysis
from ..retry import RetryPolicy, TransactionStats
from ..stores import ObjectMeta
from .commit import Transaction
from .compact import compact, compact_report
from .context import Engine, retrying
from .folder import fold_until
from .journal_io import create_delta, newest_names
from .reads import list_journal

# The manager's logger: these records were the manager's before the engine was
# split out of it, and handlers and filters configured for it keep working.
logger = logging.getLogger("documee_remote.manager")


@dataclass(frozen=True, slots=True)
class AppendReport:
    """What :meth:`PersistenceManager.append_file_analyses` recorded."""

    codebase_id: str
    #: The name of the journal delta holding this merge (``w<ms>-<random>``).
    delta: str
    files: int
    removed: int
    #: The compaction this call ran, if any.
    compaction: CompactReport | None
    stats: TransactionStats
    #: Whether ``analysis.json`` holds the merge (eager: always, by this call's
    #: compaction or another writer's; deferred: once a compaction ran).
    folded: bool = False


@dataclass(frozen=True, slots=True)
class Appended:
    """An append's report, and the analysis its compaction committed or found."""

    report: AppendReport
    #: None: not compacted by this call.
    committed: CodebaseAnalysis | None


def append(
    eng: Engine,
    codebase_id: str,
    analyses: Mapping[str, FileAnalysis],
    file_hashes: Mapping[str, str],
    removed: frozenset[str],
    *,
    analysis_time_ms: float,
    retry: RetryPolicy | None,
    graph: GraphUpdate | None = None,
) -> Appended:
    """Per-file objects, then one named delta; then the compaction the policy asks for.

    Eager: returns once ``analysis.json`` holds the delta, folded by this
    writer or by the one folding for everybody (group commit, see
    :mod:`.folder`). Deferred: compacts only when the policy says it is due.
    """
    policy = retry or eng.retry
    eager = eng.compaction.mode == "eager"
    bodies = {path: codec.dump_file_analysis(fa) for path, fa in analyses.items()}
    # The listing that names the delta (and, deferred, decides whether to
    # compact) runs while the per-file objects are written: no added latency.
    listed: Future[JournalListing] = eng.side().submit(
        lambda: newest_names(eng, codebase_id) if eager else list_journal(eng, codebase_id)
    )
    try:
        retrying(
            eng,
            lambda: eng.store.put_many(
                {layout.file_analysis_key(codebase_id, p): b for p, b in bodies.items()}
            ),
            retry,
        )
    finally:
        try:
            listing: JournalListing | None = listed.result()
        except TransientError as exc:
            logger.debug("listing the journal of %s failed, naming by clock: %s", codebase_id, exc)
            listing = None
    body = journal.encode_delta(
        codebase_id,
        bodies,
        removed=removed,
        file_hashes=file_hashes,
        analysis_time_ms=analysis_time_ms,
        graph=graph,
    )
    stats = TransactionStats()
    after_ms = listing.max_named_ms + 1 if listing is not None and listing.named else 0
    put_started = time.monotonic()
    name, meta = create_delta(eng, codebase_id, body, policy, stats, after_ms=after_ms)
    round_trip = time.monotonic() - put_started
    compaction: CompactReport | None = None
    committed: CodebaseAnalysis | None = None
    # The delta as a compaction of ours folds it, without reading it back.
    delta = Delta(
        format=journal.DELTA_FORMAT,
        codebase_id=codebase_id,
        created_at="",
        writer="",
        analysis_time_ms=analysis_time_ms,
        removed=sorted(removed),
        file_hashes=dict(file_hashes),
        file_analyses=dict(analyses),
        graph=graph,
    )
    try:
        if eager:
            txn = fold_until(
                eng,
                codebase_id,
                name,
                delta,
                policy=policy,
                writer=journal.writer_id(),
                round_trip=round_trip,
            )
        else:
            txn = _compact_if_due(
                eng,
                codebase_id,
                name=name,
                delta=delta,
                meta=meta,
                listing=listing,
                policy=policy,
            )
    except Exception as exc:
        exc.add_note(
            f"the merge itself is recorded as journal delta {name} of {codebase_id!r}: "
            "readers of documee-remote see it, and the next compaction folds it into "
            "analysis.json"
        )
        raise
    if txn is not None:
        stats.add(txn.stats)
        compaction = compact_report(txn, codebase_id)
        committed = txn.analysis
    logger.info(
        "merged %d file(s), removed %d, into %s as journal delta %s%s",
        len(analyses),
        len(removed),
        codebase_id,
        name,
        "" if compaction is None else f" (compacted to commit {compaction.commit})",
    )
    report = AppendReport(
        folded=eager or compaction is not None,
        codebase_id=codebase_id,
        delta=name,
        files=len(analyses),
        removed=len(removed),
        compaction=compaction,
        stats=stats,
    )
    return Appended(report, committed)


def _compact_if_due(
    eng: Engine,
    codebase_id: str,
    *,
    name: str,
    delta: Delta,
    meta: ObjectMeta,
    listing: JournalListing | None,
    policy: RetryPolicy,
) -> Transaction | None:
    """Deferred: compact when the pending deltas (an estimate from the listing) are due."""
    if listing is None:
        return None
    listing = listing.with_named(name, meta)
    legacy = listing.above(listing.folded_hint)
    named = listing.unmarked_named()
    pending_bytes = sum(listing.deltas[s].size for s in legacy)
    pending_bytes += sum(listing.named[n].size for n in named)
    pending = len(legacy) + len(named)
    if not eng.compaction.due(pending, pending_bytes):
        return None
    return compact(eng, codebase_id, policy, listing=listing, known={name: delta})
