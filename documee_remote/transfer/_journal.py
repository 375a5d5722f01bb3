"""What a copy must know of the journals on both sides.

The bookkeeping of an ``analysis.json`` read as plain JSON, the union of two
folded maps (so that a copy replays none of the destination's folded merges),
and the merges a copy would hide from readers (see :func:`hidden_merges`).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .. import codec, journal, layout
from ..bookkeeping import (
    Folded,
    peek_watermark,
    recorded_fence,
    recorded_folded,
    recorded_watermark,
)
from ..errors import CorruptObjectError, NotFoundError
from ..stores import Store
from ._listing import _folded_of


@dataclass(frozen=True, slots=True)
class _Book:
    """What a copy needs of an ``analysis.json``, read as plain JSON (fast, unvalidated):
    its file paths and its bookkeeping (the README's ``"documee_remote"`` key)."""

    paths: frozenset[str]
    watermark: int
    fence: int
    folded: Folded = field(default_factory=Folded)


def _book_of(data: bytes, key: str) -> _Book | None:
    """``data``'s :class:`_Book`, or None when it is not a JSON object."""
    try:
        doc = codec.loads(data, key=key)
    except CorruptObjectError:
        return None
    if not isinstance(doc, dict):
        return None
    files = doc.get("file_analyses")
    paths = frozenset(files) if isinstance(files, dict) else frozenset()
    return _Book(paths, recorded_watermark(doc), recorded_fence(doc), recorded_folded(doc))


def _union(ours: Folded, theirs: Folded) -> Folded:
    """``ours`` with ``theirs`` (the destination's) folded deltas too: every name either
    holds, the higher commit counter and floor, and each commit's later time (so
    a folded delta is pruned no sooner than either side would)."""
    if theirs == Folded() or ours == theirs:
        return ours
    times = dict(theirs.times)
    for n, t in ours.times.items():
        times[n] = max(t, times.get(n, t))
    return Folded(
        commit=max(ours.commit, theirs.commit),
        floor=max(ours.floor, theirs.floor),
        names={**theirs.names, **ours.names},
        times=times,
    )


def hidden_merges(
    src: Store,
    dst: Store,
    codebase_id: str,
    *,
    watermark: int,
    ours: Folded,
    replaced: _Book | None,
    coming: int = 0,
) -> str | None:
    """Why committing the source's ``analysis.json`` would hide merges from readers.

    Readers fold the destination's legacy journal deltas above the
    watermark of ``analysis.json`` and skip those at or below it. Deltas
    pending at the destination above the copied watermark stay pending and
    are folded on top of the copy: nothing is lost. But a copied watermark
    above a pending delta the source does not hold would hide it, and one
    above the destination's newest seq would hide the merges appended next.
    Named deltas alike: a copied folded map that holds (by name or floor) a
    delta pending at the destination which the source does not have, or
    one pending in the source's journal that the destination's folded map
    holds (the copy would carry that map, and lose the merge).
    Checked before anything of the codebase is written (``coming``: the
    highest source delta about to be copied), and again just before the
    commit, when the source's deltas are there, for merges appended meanwhile.
    """
    folds_there = replaced is not None and replaced.folded != Folded()
    if watermark == 0 and ours == Folded() and not folds_there:
        return None  # nothing copied says "folded", nothing replaced folded named deltas
    prefix = layout.journal_prefix(codebase_id)
    listing = journal.parse_listing(codebase_id, dst.list_meta(prefix))
    if watermark and max(listing.max_seq, coming) < watermark:
        return (
            f"analysis.json records journal seq {watermark} as folded, but the "
            f"journal at {dst.url} ends at seq {listing.max_seq}: merges appended "
            "after this copy would be hidden from readers; copy the codebase's _journal "
            "too, or run `documee-remote compact` where it came from"
        )
    candidates = [s for s in listing.deltas if s <= watermark]
    if not candidates and not listing.named and not folds_there:
        return None
    if replaced is not None:
        # Read just before (_read_replaced); if it changed since, the commit fails.
        dst_mark, theirs = replaced.watermark, replaced.folded
    else:
        a_key = layout.analysis_key(codebase_id)
        try:
            dst_raw = dst.get(a_key).data
        except NotFoundError:
            dst_mark, theirs = 0, Folded()
        else:
            dst_mark, theirs = peek_watermark(dst_raw), _folded_of(dst_raw, a_key)
    hidden: list[journal.DeltaRef] = []
    for seq in sorted(s for s in candidates if s > dst_mark):
        if not _has(src, journal.delta_key(codebase_id, seq), listing.deltas[seq].etag):
            hidden.append(seq)
    if hidden:
        return (
            f"{len(hidden)} merge(s) pending in the journal at {dst.url} (seq "
            f"{hidden[0]}..{hidden[-1]}) are not in this analysis.json, whose watermark "
            f"{watermark} would hide them: run `documee-remote compact "
            f"{codebase_id}` there and pull before pushing"
        )
    for name in listing.pending_named(theirs):
        held = ours.holds(name, journal.name_ms(name))
        key = journal.named_key(codebase_id, name)
        if held and not _has(src, key, listing.named[name].etag):
            hidden.append(name)
    if hidden:
        return (
            f"{len(hidden)} merge(s) pending in the journal at {dst.url} (e.g. "
            f"delta {hidden[0]}) are not in this analysis.json, whose folded map "
            f"would hide them: run `documee-remote compact {codebase_id}` there and "
            "pull before pushing"
        )
    if theirs == Folded():
        return None
    src_listing = journal.parse_listing(codebase_id, src.list_meta(prefix))
    dropped = [n for n in src_listing.pending_named(ours) if theirs.holds(n, journal.name_ms(n))]
    if dropped:
        return (
            f"{len(dropped)} merge(s) pending in the source's journal (e.g. delta "
            f"{dropped[0]}) are folded into the analysis.json at {dst.url} that "
            f"this copy replaces, so they would be lost: run `documee-remote compact "
            f"{codebase_id}` on the source first"
        )
    return None


def _has(store: Store, key: str, etag: str) -> bool:
    """Whether ``store`` holds ``key`` with ``etag`` (the same delta)."""
    try:
        return store.head(key).etag == etag
    except NotFoundError:
        return False
