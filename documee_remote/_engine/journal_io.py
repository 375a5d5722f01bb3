"""Writing the journal: creating deltas, marking them published, pruning folded ones."""

from __future__ import annotations

import contextlib
import logging
import time
from datetime import timedelta

from .. import journal, layout
from ..bookkeeping import Folded
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

# The manager's logger: these records were the manager's before the engine was
# split out of it, and handlers and filters configured for it keep working.
logger = logging.getLogger("documee_remote.manager")


def create_delta(
    eng: Engine,
    codebase_id: str,
    body: bytes,
    policy: RetryPolicy,
    stats: TransactionStats,
    *,
    after_ms: int = 0,
) -> tuple[str, ObjectMeta]:
    """Create a named delta (a name no other writer takes); return its name and metadata.

    ``after_ms``: one more than the highest name the writer listed before (a
    hybrid logical clock, see the journal module). A collision of the random
    part, or a name grown older than a quarter of the grace period before
    an attempt starts, just picks another name: a delta must never land so
    late that the folded map's floor has passed it.
    """
    backoff = Backoff(policy, stats=stats)
    fresh_for_ms = eng.compaction.grace_seconds / 4 * 1000
    name = journal.new_name(after_ms)
    # Whether an earlier attempt may have stored the delta under ``name`` (a lost
    # response that no HEAD could confirm or rule out): then the name must not
    # change, or the merge would be stored, and folded, twice.
    unsure = False

    def attempt() -> tuple[str, ObjectMeta] | Again:
        nonlocal name, unsure
        if not unsure and journal.name_ms(name) < time.time() * 1000 - fresh_for_ms:
            name = journal.new_name(after_ms)
        key = journal.named_key(codebase_id, name)
        try:
            etag = eng.store.put(key, body, if_none_match="*")
        except (PreconditionFailedError, ConflictError) as exc:
            ours = landed(eng, key, body)
            if ours:  # our own earlier attempt, its response lost
                return name, ObjectMeta(key, etag_of(body), len(body), utcnow())
            if ours is None:  # cannot tell whose it is: ask again under the same name
                unsure = True
                return Again(exc)
            name = journal.new_name(after_ms)
            unsure = False
            return Again(exc, lost=True)
        except TransientError as exc:
            ours = landed(eng, key, body)
            if not ours:
                unsure = ours is None
                return Again(exc)
            etag = etag_of(body)
        return name, ObjectMeta(key, etag, len(body), utcnow())

    def exhausted(last_error: Exception | None) -> Exception:
        return TooManyConflictsError(
            f"gave up adding a delta to the journal of {codebase_id!r} after "
            f"{stats.attempts} attempts: {last_error}",
            attempts=stats.attempts,
            key=layout.journal_prefix(codebase_id),
        )

    return cas_loop(backoff, attempt, exhausted=exhausted)


def newest_names(eng: Engine, codebase_id: str) -> JournalListing:
    """A listing of the deltas named at this clock's ms or later (usually none).

    One short listing: names below this clock's ms cannot matter to a new
    name, which starts at this clock's ms anyway.
    """
    now_ms = time.time_ns() // 1_000_000
    after = journal.named_start_after(codebase_id, now_ms - 1)
    metas = eng.store.list_meta(layout.journal_prefix(codebase_id), start_after=after)
    return journal.parse_listing(codebase_id, metas)


def landed(eng: Engine, key: str, body: bytes) -> bool | None:
    """Whether a PUT whose response was lost stored ``body`` (each delta is unique).

    None when the HEAD that would tell failed too.
    """
    try:
        return eng.store.head(key).etag == etag_of(body)
    except NotFoundError:
        return False
    except TransientError:
        return None


def put_commit_marker(eng: Engine, codebase_id: str, commit: int) -> None:
    """Record "commits up to ``commit`` folded, hashes published" (see the journal module)."""
    with contextlib.suppress(PreconditionFailedError):  # a rival wrote it first
        eng.store.put(
            journal.commit_marker_key(codebase_id, commit),
            journal.encode_commit_marker(commit),
            if_none_match="*",
        )


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
    folded: Folded | None = None,
) -> tuple[list[str], int]:
    """Delete deltas folded more than the grace period ago, and old markers.

    Legacy deltas below ``mark`` go once older than the grace period; the
    one at the watermark is never deleted (it keeps the highest seq
    visible, so a legacy writer picks a number above it). Named deltas go
    once the commit that folded them (``folded``, the committed analysis's
    record) is older than the grace period, or once they are below its
    floor and forgotten. A marker goes once a newer one stands in for it
    (``marked``: the caller has just written the ones at ``mark`` and at
    ``folded.commit``). Returns the keys deleted and how many folded deltas
    were kept for being young.
    """
    grace = eng.compaction.grace_seconds if grace_seconds is None else grace_seconds
    now = utcnow()
    cutoff = now - timedelta(seconds=grace)
    old = [s for s in listing.deltas if s < mark and listing.deltas[s].last_modified <= cutoff]
    young = sum(1 for s in listing.deltas if s < mark) - len(old)
    keys = [journal.delta_key(codebase_id, s) for s in old]
    if folded is not None:
        epoch_cutoff = now.timestamp() - grace
        done = [
            n
            for n in listing.named
            if folded.folded_before(n, epoch_cutoff)
            or (journal.name_ms(n) < folded.floor and n not in folded.names)
        ]
        young += sum(1 for n in listing.named if n in folded.names) - len(
            [n for n in done if n in folded.names]
        )
        keys += [journal.named_key(codebase_id, n) for n in done]
        newest_commit = max(
            [*listing.commit_markers, *([folded.commit] if marked else [])], default=0
        )
        keys += [
            journal.commit_marker_key(codebase_id, c)
            for c, meta in listing.commit_markers.items()
            if c < newest_commit and meta.last_modified <= cutoff
        ]
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
