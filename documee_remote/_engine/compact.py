"""Compaction, group commit, and one-shot updates: commits that fold the journal."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from .. import journal
from ..compaction import CompactReport
from ..errors import TransientError
from ..interop import AnalysisInput
from ..journal import Delta, JournalListing
from ..models import CodebaseAnalysis
from ..retry import RetryPolicy
from .commit import Transaction, fresh
from .context import Engine
from .publish import commit_published
from .reads import list_journal

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


def group_commit(
    eng: Engine, codebase_id: str, seq: int, delta: Delta, policy: RetryPolicy
) -> Transaction | None:
    """Fold delta ``seq`` into ``analysis.json``, letting a newer writer do it if one exists.

    Every compaction folds every delta below the newest it lists (seqs are
    dense), so when several writers append at once only the newest needs
    to read, fold and rewrite ``analysis.json``. A compaction that finds a
    newer delta, when it has read ``analysis.json`` and before it parses
    it, yields: its writer waits for the marker of a compaction that
    covers its delta instead. Past the policy's ``group_wait_seconds`` (the
    newer writer may be deferred, or dead) it compacts regardless.
    Returns the compaction that did the work here, or None when another
    writer's did.
    """
    deadline = time.monotonic() + eng.compaction.group_wait_seconds
    known = {seq: delta}
    pause = 0.02
    while True:
        txn = compact(
            eng,
            codebase_id,
            policy,
            until=seq,
            known=known,
            yield_to_newer=time.monotonic() < deadline,
        )
        if not txn._state.yielded:
            return txn if txn._state.wrote else None
        while time.monotonic() < deadline:
            time.sleep(pause)
            pause = min(pause * 2, 0.5)
            try:
                if list_journal(eng, codebase_id).folded_hint >= seq:
                    return None  # folded, and its hashes published
            except TransientError:
                continue
        logger.info(
            "journal of %s: no newer writer folded delta %d within %.1f s; compacting",
            codebase_id,
            seq,
            eng.compaction.group_wait_seconds,
        )


def compact(
    eng: Engine,
    codebase_id: str,
    policy: RetryPolicy,
    *,
    until: int | None = None,
    listing: JournalListing | None = None,
    known: dict[int, Delta] | None = None,
    yield_to_newer: bool = False,
) -> Transaction:
    """Fold what the journal holds into ``analysis.json`` (a transaction with no changes)."""
    txn = fresh(codebase_id)
    txn._state.until, txn._state.listing, txn._state.known = until, listing, known
    txn._state.compaction, txn._state.yield_newer = True, yield_to_newer
    commit_published(eng, txn, policy, fresh=True)
    return txn


def compact_report(txn: Transaction, codebase_id: str) -> CompactReport:
    """What a compaction's transaction did, for the caller."""
    return CompactReport(
        codebase_id=codebase_id,
        folded=len(txn._state.folded) if txn._state.wrote else 0,
        watermark=journal.watermark(txn.analysis),
        analysis_written=txn._state.wrote,
        deleted=txn._state.pruned[0],
        kept_young=txn._state.pruned[1],
        attempts=txn.stats.attempts,
        conflicts=txn.stats.conflicts,
    )
