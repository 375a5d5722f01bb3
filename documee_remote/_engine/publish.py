"""After a commit that folded journal deltas: publish what they imply.

Hashes to ``file_hashes.json``, deletion of removed files' objects, the marker
"folded, hashes published", and pruning. :func:`commit_published` is the
commit of :mod:`.commit` with this work hooked in: what every caller above uses.
"""

from __future__ import annotations

import contextlib
import logging

from .. import journal, layout
from ..bookkeeping import recorded_folded
from ..errors import ConflictError, PermissionDeniedError, TransientError
from ..retry import RetryPolicy, TransactionStats
from .commit import Transaction, commit
from .context import Engine, retrying
from .hashes import merge_hashes, withdraw_overtaken_hashes
from .journal_io import prune_journal, put_commit_marker, put_marker
from .reads import get_deltas, list_journal, saw_watermark

# The manager's logger: these records were the manager's before the engine was
# split out of it, and handlers and filters configured for it keep working.
logger = logging.getLogger("documee_remote.manager")

#: A compaction that moves the watermark past a multiple of this lists the whole
#: journal to prune what listings from a watermark no longer show.
_PRUNE_EVERY = 16


def commit_published(eng: Engine, txn: Transaction, policy: RetryPolicy, *, fresh: bool) -> None:
    """Commit ``txn`` (see :func:`.commit.commit`), then publish what it folded."""
    commit(eng, txn, policy, fresh=fresh, on_folded=lambda done, p: publish_folded(eng, done, p))


def publish_folded(eng: Engine, txn: Transaction, policy: RetryPolicy) -> None:
    """After a commit that folded deltas: hashes, removed per-file objects, marker, prune.

    The marker goes last, so it means "folded, and the hashes published":
    the hashes of every delta above the newest marker are published here,
    which finishes the work of a compaction that died after its commit.
    The commit has happened, so a storage failure here is logged, not
    raised: the hashes are only late (a re-analysis, never a skip), and
    without a marker the next compaction publishes them again.
    """
    codebase_id = txn.codebase_id
    mark = journal.watermark(txn.analysis)
    saw_watermark(eng, codebase_id, mark)
    try:
        retrying(eng, lambda: publish_hashes(eng, txn, policy, mark), policy)
    except (TransientError, ConflictError, PermissionDeniedError) as exc:
        logger.warning(
            "committed %s up to journal seq %d, but publishing its hashes failed; "
            "the next compaction will: %s",
            codebase_id,
            mark,
            exc,
        )
        return
    listing = txn._state.listing_seen
    if listing is not None:
        seqs = [ref for ref, _ in txn._state.folded if isinstance(ref, int)]
        before = seqs[0] - 1 if seqs else mark
        if listing.start > 1 and mark // _PRUNE_EVERY > before // _PRUNE_EVERY:
            # Listings start at the last watermark seen, so deltas folded
            # before it are out of sight: every so many seqs, look at all.
            with contextlib.suppress(TransientError):
                listing = list_journal(eng, codebase_id, full=True)
        pruned, young = prune_journal(
            eng,
            codebase_id,
            listing,
            mark,
            marked=True,
            folded=recorded_folded(txn.analysis.__pydantic_extra__),
        )
        txn._state.pruned = (len(pruned), young)


def publish_hashes(eng: Engine, txn: Transaction, policy: RetryPolicy, mark: int) -> None:
    """Hashes and removals of the deltas folded by commits above the newest markers,
    then the markers (legacy ``mark``, and the commit's). Idempotent, so it can be retried."""
    codebase_id, listing = txn.codebase_id, txn._state.listing_seen
    hint = listing.folded_hint if listing is not None else 0
    record = recorded_folded(txn.analysis.__pydantic_extra__)
    published = listing.published if listing is not None else 0
    folded = dict(txn._state.folded)
    unfinished: list[journal.DeltaRef] = [
        s for s in (listing.deltas if listing else ()) if hint < s <= mark
    ]
    unfinished += [
        name for name in (listing.named if listing else ()) if record.names.get(name, 0) > published
    ]
    unfinished = [s for s in unfinished if s not in folded]
    if unfinished:
        folded.update(get_deltas(eng, codebase_id, unfinished, tolerate_missing=True))
    entries = txn.analysis.file_analyses

    # The order they were folded in: legacy seqs, then by commit, then by name.
    def order(item: tuple[journal.DeltaRef, journal.Delta]) -> tuple[int, int, str]:
        ref = item[0]
        if isinstance(ref, int):
            return (0, ref, "")
        return (1, record.names.get(ref, record.commit), ref)

    claims, unclaimed = journal.fold_hashes(sorted(folded.items(), key=order))
    gone = [p for p in unclaimed if p not in entries]
    if gone:
        eng.store.delete_many([layout.file_analysis_key(codebase_id, p) for p in gone])
    merge_hashes(
        eng, codebase_id, claims, frozenset(unclaimed), retry=policy, stats=TransactionStats()
    )
    withdraw_overtaken_hashes(
        eng, codebase_id, txn.etag, {p: entries[p] for p in claims if p in entries}, claims
    )
    if mark > hint:
        put_marker(eng, codebase_id, mark)
    if record.commit > published:
        put_commit_marker(eng, codebase_id, record.commit)
