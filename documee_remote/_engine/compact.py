"""Compaction and one-shot updates: commits that fold the journal."""

from __future__ import annotations

import logging
from collections.abc import Callable

from .. import journal
from ..bookkeeping import recorded_folded
from ..compaction import CompactReport
from ..interop import AnalysisInput
from ..journal import Delta, DeltaRef, JournalListing
from ..models import CodebaseAnalysis
from ..retry import RetryPolicy
from .commit import Transaction, fresh
from .context import Engine
from .publish import commit_published

# The manager's logger: these records were the manager's before the engine was
# split out of it, and handlers and filters configured for it keep working.
logger = logging.getLogger("documee_remote.manager")


def update(
    eng: Engine,
    codebase_id: str,
    fn: Callable[[CodebaseAnalysis], AnalysisInput | None],
    retry: RetryPolicy | None,
    fencing_token: int | None = None,
) -> Transaction:
    """Read, apply ``fn``, commit with compare-and-swap, replaying ``fn`` after lost races."""
    txn = fresh(codebase_id, fn, fencing_token)
    commit_published(eng, txn, retry or eng.retry, fresh=True)
    return txn


def compact(
    eng: Engine,
    codebase_id: str,
    policy: RetryPolicy,
    *,
    until: DeltaRef | None = None,
    listing: JournalListing | None = None,
    known: dict[DeltaRef, Delta] | None = None,
) -> Transaction:
    """Fold what the journal holds into ``analysis.json`` (a transaction with no changes).

    With ``until`` (a merge's own delta), done as soon as ``analysis.json``
    holds that delta, whoever folded it.
    """
    txn = fresh(codebase_id)
    txn._state.until, txn._state.listing, txn._state.known = until, listing, known
    txn._state.compaction = True
    commit_published(eng, txn, policy, fresh=True)
    return txn


def compact_report(txn: Transaction, codebase_id: str) -> CompactReport:
    """What a compaction's transaction did, for the caller."""
    return CompactReport(
        codebase_id=codebase_id,
        folded=len(txn._state.folded) if txn._state.wrote else 0,
        watermark=journal.watermark(txn.analysis),
        commit=recorded_folded(txn.analysis.__pydantic_extra__).commit,
        analysis_written=txn._state.wrote,
        deleted=txn._state.pruned[0],
        kept_young=txn._state.pruned[1],
        attempts=txn.stats.attempts,
        conflicts=txn.stats.conflicts,
    )
