"""Writing the journal: creating deltas, marking them published, pruning folded ones."""

from __future__ import annotations

import contextlib
import logging
import time
from datetime import timedelta

from .. import journal, layout
from ..errors import (
    ConflictError,
    NotFoundError,
    PreconditionFailedError,
    TooManyConflictsError,
    TransientError,
)
from ..journal import JournalListing
from ..retry import Again, Backoff, RetryPolicy, TransactionStats, cas_loop
from ..stores import ObjectMeta, etag_of
from .context import Engine, utcnow
from .reads import list_journal

# The manager's logger: these records were the manager's before the engine was
# split out of it, and handlers and filters configured for it keep working.
logger = logging.getLogger("documee_remote.manager")


def create_delta(
    eng: Engine, codebase_id: str, body: bytes, policy: RetryPolicy, stats: TransactionStats
) -> tuple[int, JournalListing]:
    """Create the next delta with If-None-Match; return its seq and the listing it extends."""
    backoff = Backoff(policy, stats=stats)
    # A pick older than this may collide with a number a compaction
    # folded and deleted meanwhile (see the journal module): list again.
    fresh_for = eng.compaction.grace_seconds / 4
    listing: JournalListing | None = None
    listed_at = 0.0

    def attempt() -> tuple[int, JournalListing] | Again:
        nonlocal listing, listed_at
        if listing is None or time.monotonic() - listed_at > fresh_for:
            try:
                listing, listed_at = list_journal(eng, codebase_id), time.monotonic()
            except TransientError as exc:
                return Again(exc)
        seq = listing.max_seq + 1
        key = journal.delta_key(codebase_id, seq)
        try:
            etag = eng.store.put(key, body, if_none_match="*")
        except (PreconditionFailedError, ConflictError) as exc:
            listing = None
            return Again(exc, lost=True)
        except TransientError as exc:
            if not landed(eng, key, body):
                return Again(exc)
            etag = etag_of(body)
        meta = ObjectMeta(key, etag, len(body), utcnow())
        return seq, listing.with_delta(seq, meta)

    def exhausted(last_error: Exception | None) -> Exception:
        return TooManyConflictsError(
            f"gave up adding a delta to the journal of {codebase_id!r} after "
            f"{stats.attempts} attempts ({stats.conflicts} seqs taken by other writers)",
            attempts=stats.attempts,
            key=layout.journal_prefix(codebase_id),
        )

    return cas_loop(backoff, attempt, exhausted=exhausted)


def landed(eng: Engine, key: str, body: bytes) -> bool:
    """Whether a PUT whose response was lost stored ``body`` (each delta is unique)."""
    try:
        return eng.store.head(key).etag == etag_of(body)
    except (NotFoundError, TransientError):
        return False


def put_marker(eng: Engine, codebase_id: str, seq: int) -> None:
    """Record "deltas up to ``seq`` folded, hashes published" (see the journal module)."""
    with contextlib.suppress(PreconditionFailedError):  # a rival wrote it first
        eng.store.put(
            journal.marker_key(codebase_id, seq),
            journal.encode_marker(seq),
            if_none_match="*",
        )


def prune_journal(
    eng: Engine,
    codebase_id: str,
    listing: JournalListing,
    mark: int,
    *,
    marked: bool = False,
    grace_seconds: float | None = None,
) -> tuple[list[str], int]:
    """Delete deltas folded below ``mark`` older than the grace period, and old markers.

    The delta at the watermark is never deleted: it keeps the highest
    seq visible, so the next writer picks a number above it. A marker
    goes once a newer one stands in for it (``marked``: the caller has
    just written the one at ``mark``). Returns the keys deleted and how
    many folded deltas were kept for being young.
    """
    grace = eng.compaction.grace_seconds if grace_seconds is None else grace_seconds
    cutoff = utcnow() - timedelta(seconds=grace)
    old = [s for s in listing.deltas if s < mark and listing.deltas[s].last_modified <= cutoff]
    young = sum(1 for s in listing.deltas if s < mark) - len(old)
    keys = [journal.delta_key(codebase_id, s) for s in old]
    # Markers go with the deltas (one batch, not a DELETE per compaction),
    # and only once a newer marker stands in for them.
    newest = max([*listing.markers, *([mark] if marked else [])], default=0)
    keys += [
        journal.marker_key(codebase_id, s)
        for s, meta in listing.markers.items()
        if s < newest and meta.last_modified <= cutoff
    ]
    if not keys:
        return [], young
    try:
        kept = set(eng.store.delete_many(keys))
    except TransientError as exc:
        logger.debug("pruning the journal of %s failed, left for later: %s", codebase_id, exc)
        return [], young + len(old)
    return [k for k in keys if k not in kept], young
