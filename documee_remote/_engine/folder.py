"""Group commit: one writer folds the journal for everyone appending at the same time.

Each eager merge must return once ``analysis.json`` holds its delta. If every
writer compacted for itself, N writers would each read and fold the whole
pending journal and race N compare-and-swaps: O(N²) work. Instead one writer,
the **folder**, folds for all, and the others wait for it:

- The folder record ``<codebase_id>/_journal/_folder.json`` names the folder
  (``holder``), counts its completed folds (``cycle``) and lists the deltas the
  last one folded (``folded``). A writer takes it when it is free (absent, or
  ``holder`` null) or stale (unchanged for ``group_wait_seconds`` while held:
  its holder died), with ``If-None-Match``/``If-Match``, so one writer wins.
- The folder repeats: compact (fold every pending delta into
  ``analysis.json`` with ``If-Match``, publish the hashes), list the journal
  once more, and rewrite the record with ``cycle + 1`` and the names it
  folded. When that listing shows nothing pending, or once it has served
  others for ``group_wait_seconds`` after its own delta, the rewrite also
  frees the record. A folder that fails frees it too; one that dies leaves it
  to go stale.
- A waiter is done when the record lists its delta, or once ``cycle`` is two
  past the first value it read after its delta landed: every fold lists the
  journal after the record's previous version was written, so the fold that
  made the cycle after next listed it after the waiter's read, hence after its
  delta landed, and committed everything that listing held.
- Waiters pace their reads of the record by the folder's last cycle and by a
  budget of :data:`POLL_BUDGET` reads a second shared among the writers
  waiting, with jitter.

The record is only a hint for efficiency: every commit is still a
compare-and-swap of ``analysis.json`` and the folded map decides what is
folded, so two folders (a stale one that woke up) cost work, never an update.
A waiter that sees no progress for three ``group_wait_seconds`` compacts
itself.
"""

from __future__ import annotations

import contextlib
import json
import logging
import random
import time
from dataclasses import dataclass
from datetime import UTC, datetime

from .. import layout
from ..bookkeeping import recorded_folded, watermark
from ..errors import (
    ConflictError,
    DocumeeRemoteError,
    NotFoundError,
    PreconditionFailedError,
    TransientError,
)
from ..journal import Delta, JournalListing
from ..retry import RefusalWatch, RetryPolicy
from .commit import Transaction
from .compact import compact
from .context import Engine
from .reads import list_journal

# The manager's logger: these records were the manager's before the engine was
# split out of it, and handlers and filters configured for it keep working.
logger = logging.getLogger("documee_remote.manager")

#: Bounds of the pause between two reads of the folder record by a waiter.
_MIN_PAUSE, _MAX_PAUSE = 0.1, 5.0
#: Reads of the folder record per second that all of a codebase's waiters
#: together aim to stay under: a tenth of S3's 5,500 GET/s per prefix, and few
#: enough that polling never crowds out the folder's own requests, while 1,000
#: waiters still read every 2 s.
POLL_BUDGET = 500.0
#: About how many sequential requests one fold takes (list, read, write, hashes, marker).
_FOLD_REQUESTS = 8
#: How often a folder that failed tries to free the record before leaving it held.
_FREE_ATTEMPTS = 3


def folder_key(codebase_id: str) -> str:
    """``<codebase_id>/_journal/_folder.json``."""
    return layout.journal_prefix(codebase_id) + "_folder.json"


@dataclass(frozen=True, slots=True)
class FolderRecord:
    """The folder record as read: ``etag`` None when it does not exist."""

    holder: str | None
    cycle: int
    folded: frozenset[str]
    etag: str | None
    #: How long the folder's last cycle took (seconds), and how many deltas were
    #: pending when it listed: waiters pace their reads by both.
    seconds: float = 0.0
    pending: int = 0

    def encode(self) -> bytes:
        return json.dumps(
            {
                "format": 1,
                "holder": self.holder,
                "cycle": self.cycle,
                "folded": sorted(self.folded),
                "seconds": round(self.seconds, 3),
                "pending": self.pending,
                "at": datetime.now(UTC).isoformat(),
            },
            separators=(",", ":"),
        ).encode()


def read_record(eng: Engine, codebase_id: str) -> FolderRecord:
    """The folder record; a free one when absent or unreadable (it is only a hint)."""
    try:
        obj = eng.store.get(folder_key(codebase_id))
    except NotFoundError:
        return FolderRecord(None, 0, frozenset(), None)
    try:
        doc = json.loads(obj.data)
        holder = doc.get("holder")
        cycle = doc.get("cycle", 0)
        folded = doc.get("folded", [])
        seconds = doc.get("seconds", 0.0)
        pending = doc.get("pending", 0)
        if not (
            isinstance(holder, str | None)
            and isinstance(cycle, int)
            and isinstance(seconds, int | float)
            and isinstance(pending, int)
        ):
            raise ValueError("not a folder record")
        folded_names = frozenset(str(n) for n in folded)
        return FolderRecord(holder, cycle, folded_names, obj.etag, float(seconds), pending)
    except (ValueError, AttributeError, TypeError):
        logger.warning("the folder record of %s is not readable; taking it over", codebase_id)
        return FolderRecord(None, 0, frozenset(), obj.etag)


def write_record(eng: Engine, codebase_id: str, record: FolderRecord, *, over: str | None) -> str:
    """Write ``record`` over the version ``over`` (None: create); the new ETag.

    Raises ``PreconditionFailedError`` (or S3's ``ConflictError``) when
    another writer changed the record first.
    """
    key, body = folder_key(codebase_id), record.encode()
    if over is None:
        return eng.store.put(key, body, if_none_match="*")
    return eng.store.put(key, body, if_match=over)


def fold_until(
    eng: Engine,
    codebase_id: str,
    name: str,
    delta: Delta,
    *,
    policy: RetryPolicy,
    writer: str,
    round_trip: float = 0.0,
) -> Transaction | None:
    """Return once ``analysis.json`` holds delta ``name`` and its hashes are published.

    ``round_trip``: how long this writer's last request took (its delta's
    PUT). A fold takes some eight sequential requests, so a waiter with no
    better measure first waits that long: under load, requests are slow and
    waiters read the record less often.

    Returns the compaction this writer ran while it was the folder (its
    first, which folded this delta), or None when another writer's did.
    """
    wait = eng.compaction.group_wait_seconds
    first_cycle: int | None = None
    watched: tuple[str | None, float] = (None, time.monotonic())
    progress_at = time.monotonic()
    pause = min(max(_FOLD_REQUESTS * round_trip, _MIN_PAUSE), _MAX_PAUSE)
    watch = RefusalWatch(eng.store.url, folder_key(codebase_id))
    while True:
        try:
            record: FolderRecord | None = read_record(eng, codebase_id)
        except TransientError:
            record = None
        now = time.monotonic()
        if record is not None:
            watch.reread(record.etag)  # raises when the endpoint refuses true conditions
            if name in record.folded:
                return None
            if first_cycle is None:
                first_cycle = record.cycle
            elif record.cycle >= first_cycle + 2:
                return None
            if record.holder == writer and record.etag is not None:
                # Our take landed but its response was lost: we are the folder (not
                # a stale one to wait out for group_wait_seconds).
                return _lead(
                    eng,
                    codebase_id,
                    policy=policy,
                    writer=writer,
                    etag=record.etag,
                    cycle=record.cycle,
                    own=(name, delta),
                )
            if record.etag != watched[0]:
                watched, progress_at = (record.etag, now), now
            # A folder slowed by an overloaded store is not dead: judge it by its
            # own pace as well as by the policy.
            stale_after = max(wait, 3 * record.seconds)
            dead = record.holder in eng.dead_folders  # one of ours that failed to free it
            if record.holder is None or dead or now - watched[1] >= stale_after:
                taken = _take(eng, codebase_id, record, writer, watch)
                if taken is not None:
                    return _lead(
                        eng,
                        codebase_id,
                        policy=policy,
                        writer=writer,
                        etag=taken,
                        cycle=record.cycle,
                        own=(name, delta),
                    )
        if now - progress_at >= 3 * wait:
            logger.info(
                "journal of %s: no folder made progress for %.1f s; compacting delta %s",
                codebase_id,
                3 * wait,
                name,
            )
            txn = compact(eng, codebase_id, policy, until=name, known={name: delta})
            # Found folded without parsing, its analysis is not the committed one.
            return txn if txn._state.wrote else None
        if record is not None and record.seconds > 0:
            # Three quarters of the folder's last cycle: a waiter needs a cycle
            # and a half on average, so two or three reads, and learns of its fold
            # under half a cycle late. And no faster than the poll budget
            # shared among as many waiters as deltas were pending.
            paced = max(record.seconds * 0.75, record.pending / POLL_BUDGET)
            pause = min(max(paced, _MIN_PAUSE), _MAX_PAUSE)
        elif record is not None:
            # No cycle measured yet (a codebase's first burst): back off, but never
            # faster than the budget allows for the deltas the folder saw waiting.
            pause = min(max(pause, record.pending / POLL_BUDGET), _MAX_PAUSE)
        # Jittered, so that writers released together do not read together.
        time.sleep(pause * random.uniform(0.75, 1.25))
        pause = min(pause * 2, _MAX_PAUSE)


def _take(
    eng: Engine, codebase_id: str, record: FolderRecord, writer: str, watch: RefusalWatch
) -> str | None:
    """Try to become the folder; the record's new ETag, or None when another writer won."""
    try:
        etag = write_record(
            eng,
            codebase_id,
            FolderRecord(writer, record.cycle, record.folded, None, record.seconds, record.pending),
            over=record.etag,
        )
    except PreconditionFailedError:
        # Another writer took it, unless the next read finds the record unchanged:
        # then the endpoint refused a true condition (see RefusalWatch).
        watch.refused(record.etag)
        return None
    except (ConflictError, TransientError):
        return None  # another writer took it (or the store hiccupped): wait, read again
    except DocumeeRemoteError:
        # The merge fails here, but the record may have landed (a full disk can
        # fail the flush after the write): our next writer need not wait it out.
        eng.dead_folders.add(writer)
        raise
    if record.holder is not None:
        logger.info(
            "journal of %s: folder %s made no progress; taking over", codebase_id, record.holder
        )
    return etag


def _lead(
    eng: Engine,
    codebase_id: str,
    *,
    policy: RetryPolicy,
    writer: str,
    etag: str,
    cycle: int,
    own: tuple[str, Delta],
) -> Transaction:
    """Fold for everyone until nothing is pending (or we served long enough); free the record.

    Each cycle's listing is made after the record's previous version was
    written, and everything pending in it is committed before the record
    says ``cycle + 1`` (see the module doc). After a commit, one listing
    tells whether anything is pending still: if not, the record is freed
    (with ``cycle + 1``) at once.
    """
    first: Transaction | None = None
    own_done_at = 0.0
    last = frozenset[str]()
    took, pending = 0.0, 0
    try:
        # Listed after the take, as a cycle must be; and the record says at once
        # how many deltas wait, so that their writers pace their reads.
        listing: JournalListing | None = list_journal(eng, codebase_id)
        assert listing is not None
        estimate = len(listing.unmarked_named())
        if estimate > 1:
            early = FolderRecord(writer, cycle, frozenset(), None, 0.0, estimate)
            try:
                etag = write_record(eng, codebase_id, early, over=etag)
            except (PreconditionFailedError, ConflictError, TransientError) as exc:
                # Only a hint: fold anyway; a takeover shows at the next write.
                logger.debug("journal of %s: no early folder record: %s", codebase_id, exc)
        while True:
            started = time.monotonic()
            txn = compact(
                eng,
                codebase_id,
                policy,
                listing=listing,
                known=None if first is not None else {own[0]: own[1]},
            )
            if first is None:
                first = txn  # it listed after our delta landed: our delta is in
                own_done_at = time.monotonic()
            last = frozenset(deltas_named(txn)) if txn._state.wrote else last
            cycle += 1  # the fold of a listing made after the record's last version
            took = time.monotonic() - started
            # What this cycle folded stands in for how many writers wait.
            pending = len(txn._state.folded) if txn._state.wrote else 0
            served = time.monotonic() - own_done_at >= eng.compaction.group_wait_seconds
            # Served long enough, the next writer folds what remains; else one
            # listing says whether anything still waits.
            if served or not _more_pending(eng, codebase_id, txn):
                # Taken over meanwhile (412): the new folder frees it.
                with contextlib.suppress(PreconditionFailedError, ConflictError):
                    record = FolderRecord(None, cycle, last, None, took, pending)
                    write_record(eng, codebase_id, record, over=etag)
                return first
            try:
                etag = write_record(
                    eng,
                    codebase_id,
                    FolderRecord(writer, cycle, last, None, took, pending),
                    over=etag,
                )
            except (PreconditionFailedError, ConflictError):
                # Taken over (we were too slow): our delta is folded, the new
                # folder serves the rest.
                return first
            # The next fold lists anew (beside its read of analysis.json): its
            # listing must be made after the record above was written.
            listing = None
    except BaseException as exc:
        # Free the record so that waiters need not wait for it to go stale;
        # the cycle stays, since this one did not finish its fold.
        def free() -> None:
            # Read first: a record write whose response was lost may have landed,
            # and freeing over the older ETag would fail, leaving the record held
            # by us until it goes stale.
            current = read_record(eng, codebase_id)
            if current.holder == writer and current.etag is not None:
                released = FolderRecord(None, current.cycle, current.folded, None)
                write_record(eng, codebase_id, released, over=current.etag)

        for attempt in range(_FREE_ATTEMPTS):
            try:
                free()
                break
            except DocumeeRemoteError as free_exc:  # the original error matters more
                # Not only transient errors: a disk that is full now may not be in a
                # moment, and every waiter would wait out group_wait_seconds.
                logger.debug(
                    "could not free the folder record of %s (attempt %d): %s",
                    codebase_id,
                    attempt + 1,
                    free_exc,
                )
        else:
            # Our own writers know this holder is dead: the next one takes over at once.
            eng.dead_folders.add(writer)
        if first is not None and isinstance(exc, Exception):
            logger.warning(
                "journal of %s: folding for other writers failed after ours was folded: %s",
                codebase_id,
                exc,
            )
            return first
        raise


def _more_pending(eng: Engine, codebase_id: str, txn: Transaction) -> bool:
    """Whether a fresh listing shows deltas the analysis just committed (or found) lacks.

    Judged against that analysis: if another writer committed since, the next
    fold's read finds out, at the cost of that read.
    """
    listing = list_journal(eng, codebase_id)
    held = recorded_folded(txn.analysis.__pydantic_extra__)
    return bool(listing.pending(watermark(txn.analysis), held))


def deltas_named(txn: Transaction) -> list[str]:
    """The named deltas a transaction folded (for reports)."""
    return [ref for ref, _ in txn._state.folded if isinstance(ref, str)]
