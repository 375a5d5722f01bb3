"""Reading a codebase: ``analysis.json`` and the journal, pending deltas folded in."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import Future
from dataclasses import dataclass
from typing import TypeVar

from .. import codec, journal, layout
from ..bookkeeping import BOOKKEEPING_KEY, peek_book, recorded_folded
from ..errors import ConflictError, CorruptObjectError, NotFoundError
from ..journal import Delta, DeltaRef, JournalListing
from ..merge import new_analysis
from ..models import CodebaseAnalysis
from .context import Engine

# The manager's logger: these records were the manager's before the engine was
# split out of it, and handlers and filters configured for it keep working.
logger = logging.getLogger("documee_remote.manager")

_T = TypeVar("_T")

#: How often a read starts over when the journal moved under it.
_VIEW_ATTEMPTS = 6


@dataclass
class View:
    """``analysis.json`` as stored, with the journal's pending deltas folded in."""

    analysis: CodebaseAnalysis | None
    etag: str | None
    raw: bytes | None
    #: The legacy watermark of the stored ``analysis.json`` (before folding).
    watermark: int
    folded: list[tuple[DeltaRef, Delta]]
    listing: JournalListing
    #: Whether the stored ``analysis.json`` already holds the caller's delta (``until``).
    holds_until: bool = False


def read_analysis(
    eng: Engine, codebase_id: str
) -> tuple[CodebaseAnalysis | None, str | None, bytes | None]:
    """The stored ``analysis.json`` alone: ``(analysis, etag, raw bytes)``."""
    etag, raw = read_raw(eng, codebase_id)
    if raw is None:
        return None, None, None
    key = layout.analysis_key(codebase_id)
    analysis = codec.load_codebase_analysis(raw, key=key, codebase_id=codebase_id)
    return analysis, etag, raw


def read_raw(eng: Engine, codebase_id: str) -> tuple[str | None, bytes | None]:
    """The stored ``analysis.json``'s ``(etag, bytes)``, unparsed; Nones when absent."""
    try:
        obj = eng.store.get(layout.analysis_key(codebase_id))
    except NotFoundError:
        return None, None
    return obj.etag, obj.data


def list_journal(eng: Engine, codebase_id: str, *, full: bool = False) -> JournalListing:
    """List the journal from the last watermark seen (all of it with ``full``).

    The delta at the current watermark is never pruned and watermarks only
    grow, so a listing from an older one that still finds that delta is
    complete from there up. When it does not find it (pruned after the
    watermark moved on, or the codebase deleted and begun again), the
    whole journal is listed.
    """
    prefix = layout.journal_prefix(codebase_id)
    floor = 0 if full else eng.floors.get(codebase_id, 0)
    if floor > 1:
        after = journal.listing_start_after(codebase_id, floor)
        metas = eng.store.list_meta(prefix, start_after=after)
        listing = journal.parse_listing(codebase_id, metas, start=floor)
        if floor in listing.deltas:
            return listing
    return journal.parse_listing(codebase_id, eng.store.list_meta(prefix))


def saw_watermark(eng: Engine, codebase_id: str, mark: int) -> None:
    eng.floors[codebase_id] = mark


def with_listing(eng: Engine, codebase_id: str, fn: Callable[[], _T]) -> tuple[_T, JournalListing]:
    """Run ``fn`` and list the journal at the same time (one round trip, not two).

    The order does not matter to correctness: a listing older than the
    ``analysis.json`` read shows nothing above its watermark, and one
    that is newer can only show a hole (see :func:`read_view`).
    """
    listing: Future[JournalListing] = eng.side().submit(list_journal, eng, codebase_id)
    try:
        result = fn()
    finally:
        found = listing.result()
    return result, found


def get_deltas(
    eng: Engine,
    codebase_id: str,
    seqs: Iterable[DeltaRef],
    *,
    known: Mapping[DeltaRef, Delta] | None = None,
    tolerate_missing: bool = False,
) -> list[tuple[DeltaRef, Delta]]:
    """Fetch and decode deltas (concurrently), in fold order; ``NotFoundError`` if one has gone."""
    seqs = list(seqs)
    known = known or {}
    wanted = {s: journal.ref_key(codebase_id, s) for s in seqs if s not in known}
    got = eng.store.get_many(wanted.values()) if wanted else {}
    deltas: list[tuple[DeltaRef, Delta]] = []
    for seq in sorted({*wanted, *(s for s in seqs if s in known)}, key=journal.fold_order):
        if seq in known:
            deltas.append((seq, known[seq]))
            continue
        obj = got[wanted[seq]]
        if obj is None:
            if tolerate_missing:
                continue
            raise NotFoundError(
                f"journal delta {seq} of {codebase_id!r} was folded and removed meanwhile",
                key=wanted[seq],
            )
        deltas.append((seq, decode_once_more(eng, codebase_id, wanted[seq], obj.data)))
    return deltas


def decode_once_more(eng: Engine, codebase_id: str, key: str, data: bytes) -> Delta:
    """Decode a delta; if it does not parse, read it once more before calling it corrupt.

    A delta is immutable and was whole when it was created, so a body that
    does not parse was most likely cut short on its way here; the same
    bytes twice are really corrupt.
    """
    try:
        return journal.decode_delta(data, key=key, codebase_id=codebase_id)
    except CorruptObjectError:
        again = eng.store.get(key).data
        if again == data:
            raise
        return journal.decode_delta(again, key=key, codebase_id=codebase_id)


def holds(raw: bytes | None, listing: JournalListing, ref: DeltaRef) -> bool:
    """Whether ``analysis.json`` bytes hold delta ``ref``, found without parsing them."""
    if raw is None:
        return False
    if isinstance(ref, int):
        return max(listing.folded_hint, journal.peek_watermark(raw)) >= ref
    folded = recorded_folded({BOOKKEEPING_KEY: peek_book(raw)})
    return folded.holds(ref, journal.name_ms(ref))


def read_view(
    eng: Engine,
    codebase_id: str,
    *,
    listing: JournalListing | None = None,
    known: Mapping[DeltaRef, Delta] | None = None,
    until: DeltaRef | None = None,
    stop_early: bool = False,
) -> View:
    """``analysis.json`` with every pending delta folded in, in fold order.

    With ``until`` (a delta the caller waits for), the view says whether
    the stored ``analysis.json`` holds it (``holds_until``); with
    ``stop_early`` too, a read that shows it held returns at once, without
    parsing, with ``analysis`` None.

    Pending deltas are the legacy ones above the watermark and the named
    ones the folded map does not hold (see :mod:`documee_remote.journal`).
    A hole in the listed legacy seqs above the watermark means the listing saw
    a compaction's deletions that the ``analysis.json`` read predates, and
    a delta that vanished between listing and GET was folded meanwhile:
    either way, read again. A hole that stays while ``analysis.json``
    stays the same is real (deltas deleted by hand, by a bucket lifecycle
    rule, or with the codebase): the deltas that exist are folded, with a
    warning.
    """
    gap_seen_at: str | bool | None = False  # the ETag a hole was first seen with
    for _ in range(_VIEW_ATTEMPTS):
        if listing is None:
            (etag, raw), found = with_listing(eng, codebase_id, lambda: read_raw(eng, codebase_id))
        else:
            (etag, raw), found = read_raw(eng, codebase_id), listing
        listing = None
        held = until is not None and holds(raw, found, until)
        if held and stop_early:
            return View(None, etag, raw, journal.peek_watermark(raw or b""), [], found, True)
        analysis = None
        if raw is not None:
            try:
                analysis = codec.load_codebase_analysis(
                    raw, key=layout.analysis_key(codebase_id), codebase_id=codebase_id
                )
            except CorruptObjectError:
                # Once more before calling it corrupt: a read can be cut short.
                if read_raw(eng, codebase_id)[1] == raw:
                    raise
                continue
        mark = journal.watermark(analysis)
        if found.start > mark + 1:
            # Listed from a watermark newer than this analysis.json's (a
            # stale read, or a codebase begun again): list all of it.
            found = list_journal(eng, codebase_id, full=True)
        saw_watermark(eng, codebase_id, mark)
        missing = found.missing_above(mark)
        if missing and gap_seen_at != etag:
            gap_seen_at = etag
            continue
        if missing:
            (logger.debug if analysis is None else logger.warning)(
                "journal of %s lacks %d delta(s) above its watermark %d (e.g. seq %d): "
                "folding the %d that exist",
                codebase_id,
                len(missing),
                mark,
                missing[0],
                len(found.above(mark)),
            )
        folded = recorded_folded(analysis.__pydantic_extra__ if analysis is not None else None)
        if isinstance(until, int):
            held = held or mark >= until
        elif until is not None:
            held = held or folded.holds(until, journal.name_ms(until))
        pending = found.pending(mark, folded)
        try:
            deltas = get_deltas(eng, codebase_id, pending, known=known)
        except NotFoundError:
            continue
        view = analysis
        if deltas:
            view = analysis if analysis is not None else new_analysis(codebase_id)
            journal.fold(view, deltas, grace_seconds=eng.compaction.grace_seconds)
        return View(view, etag, raw, mark, deltas, found, held)
    raise ConflictError(
        f"could not read a consistent state of {codebase_id!r}: its journal was "
        f"compacted under every one of {_VIEW_ATTEMPTS} reads",
        key=layout.analysis_key(codebase_id),
    )
