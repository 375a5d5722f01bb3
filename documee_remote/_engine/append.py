"""A merge recorded in the journal (per-file objects, one delta), then compacted."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass

from .. import codec, journal, layout
from ..compaction import CompactReport
from ..journal import Delta
from ..merge import GraphUpdate
from ..models import CodebaseAnalysis, FileAnalysis
from ..retry import RetryPolicy, TransactionStats
from .compact import compact, compact_report, group_commit
from .context import Engine, retrying
from .journal_io import create_delta

# The manager's logger: these records were the manager's before the engine was
# split out of it, and handlers and filters configured for it keep working.
logger = logging.getLogger("documee_remote.manager")


@dataclass(frozen=True, slots=True)
class AppendReport:
    """What :meth:`PersistenceManager.append_file_analyses` recorded."""

    codebase_id: str
    #: The journal seq of the delta holding this merge.
    seq: int
    files: int
    removed: int
    #: The compaction this call ran, if any.
    compaction: CompactReport | None
    stats: TransactionStats
    #: Whether ``analysis.json`` holds the merge (eager: always, by this call's
    #: compaction or a concurrent writer's; deferred: once a compaction ran).
    folded: bool = False


@dataclass(frozen=True, slots=True)
class Appended:
    """An append's report, and the analysis its compaction committed or found."""

    report: AppendReport
    #: None: not compacted.
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
    until_folded: bool,
    graph: GraphUpdate | None = None,
) -> Appended:
    """Per-file objects, then one delta; then the compaction the policy asks for."""
    policy = retry or eng.retry
    bodies = {path: codec.dump_file_analysis(fa) for path, fa in analyses.items()}
    retrying(
        eng,
        lambda: eng.store.put_many(
            {layout.file_analysis_key(codebase_id, p): b for p, b in bodies.items()}
        ),
        retry,
    )
    body = journal.encode_delta(
        codebase_id,
        bodies,
        removed=removed,
        file_hashes=file_hashes,
        analysis_time_ms=analysis_time_ms,
        graph=graph,
    )
    stats = TransactionStats()
    seq, listing = create_delta(eng, codebase_id, body, policy, stats)
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
    pending = listing.above(listing.folded_hint)
    pending_bytes = sum(listing.deltas[s].size for s in pending)
    compaction: CompactReport | None = None
    committed: CodebaseAnalysis | None = None
    group = not until_folded and eng.compaction.mode == "eager"
    if group or until_folded or eng.compaction.due(len(pending), pending_bytes):
        try:
            if group:
                txn = group_commit(eng, codebase_id, seq, delta, policy)
            else:
                txn = compact(
                    eng,
                    codebase_id,
                    policy,
                    until=seq if until_folded else None,
                    listing=listing,
                    known={seq: delta},
                )
        except Exception as exc:
            exc.add_note(
                f"the merge itself is recorded as journal delta {seq} of {codebase_id!r}: "
                "readers of documee-remote see it, and the next compaction folds it into "
                "analysis.json"
            )
            raise
        if txn is not None:
            stats.add(txn.stats)
            compaction = compact_report(txn, codebase_id)
            committed = txn.analysis
    logger.info(
        "merged %d file(s), removed %d, into %s as journal delta %d%s",
        len(analyses),
        len(removed),
        codebase_id,
        seq,
        "" if compaction is None else f" (compacted to {compaction.watermark})",
    )
    report = AppendReport(
        folded=group or compaction is not None,
        codebase_id=codebase_id,
        seq=seq,
        files=len(analyses),
        removed=len(removed),
        compaction=compaction,
        stats=stats,
    )
    return Appended(report, committed)
