"""The delta journal: small immutable deltas instead of rewriting ``analysis.json``.

A merge writes its per-file objects, then one delta object holding the same
file analyses (plus removed paths, hashes and the analysis time), under a name
its writer chooses, so concurrent writers never contend for a name::

    <codebase_id>/_journal/w<ms>-<random>.json  a delta (13-digit ms, 16 hex digits)
    <codebase_id>/_journal/c<n>.folded          marker: commits up to n published
    <codebase_id>/_journal/_folder.json         who folds now, and what it folded last

``analysis.json`` is the commit point. Its bookkeeping (``"documee_remote"``,
see :mod:`documee_remote.bookkeeping`) records which deltas it holds: the
**folded map** ``{name: n}`` (n: the number of the commit that folded it), the
commit counter ``n``, the commits' times, and a **floor** ``M`` below which
every delta counts as folded. A delta is *pending* when it is listed, named at
or above the floor, and not in the folded map; readers of this library fold
the pending deltas onto ``analysis.json`` in name order, and a compaction does
the same and commits the result with ``If-Match``, adding them to the map.
Readers that know only the original format read ``analysis.json`` alone,
which is why eager compaction (every merge returns once folded) is the default.

Why no acknowledged update is lost or replayed:

- **Names never collide, so writing a delta never waits for another writer.**
  A name is ``w`` + the writer's clock in ms + 64 random bits, created with
  ``If-None-Match: *`` (a collision only picks another name). The ms part is
  at least one more than every name the writer listed just before (a hybrid
  logical clock), so a merge that starts after another was acknowledged sorts
  after it even when the clocks disagree; pending deltas fold in name order.
- **Membership is decided at fold time and recorded in the commit.** A
  compaction folds exactly the pending deltas it listed and records them in
  the same ``analysis.json`` it writes with ``If-Match``: a delta is folded
  by one commit or by none, never twice, and one that landed too late for a
  compaction's listing stays pending for the next (order among merges that
  overlapped is the order of their folds).
- **Folded deltas are deleted only ``grace_seconds`` after their commit**, so
  a reader whose ``analysis.json`` read is older than a compaction still
  finds the deltas that compaction folded in its listing (the two requests
  run at once; a gap of the grace period between them is impossible).
- **The folded map forgets a name only below the floor**, and the floor
  trails the compactor's clock by ``grace_seconds`` plus
  :data:`LATE_WRITE_SECONDS`: a writer renames its delta when an attempt would
  start with a name older than a quarter of the grace period, and an S3
  request lands within 15 minutes of signing from a clock within 15 minutes of
  S3's, so no delta can still land below the floor; a delta below it is
  folded history, even once its entry is gone.
- **Folding is deterministic and idempotent.** Deltas are immutable and carry
  the file analyses themselves (not references to per-file objects, which
  the next writer of a path overwrites), so every reader and every compactor
  that folds the same deltas computes the same analysis.
- **The marker is only a hint.** ``c<n>.folded`` is written after the commit
  and after its deltas' hashes are published, so it may lag ``n`` (a
  compactor can die in between); the next compaction publishes the hashes of
  every delta folded by a commit above the newest marker again.

The journal written before this layout (``<seq:020d>.json`` deltas with dense
seqs taken by ``If-None-Match``, ``<seq>.folded`` markers and the watermark
``"journal": W``) is still read and folded: deltas above ``W`` are pending,
folded before the named ones, and a compaction moves ``W`` as before (a hole in
the seqs above ``W`` means a stale read). New writers only write named deltas.

``file_hashes.json`` describes the compacted analysis: a compaction withdraws
the claims of files it removes before its commit and publishes the folded
deltas' hashes after it, and this library's
:meth:`~documee_remote.PersistenceManager.get_file_hashes` lays the hashes of
pending and unpublished deltas over it, so an analyser never skips a file
whose newest analysis is still in the journal.
"""

from __future__ import annotations

import os
import re
import secrets
import socket
import time
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Literal, TypeAlias

from pydantic import BaseModel, ConfigDict, ValidationError

from . import codec, layout
from .bookkeeping import (
    Folded,
    peek_watermark,
    recorded_folded,
    set_folded,
    set_watermark,
    watermark,
)
from .compaction import CompactionPolicy, CompactReport
from .errors import CorruptObjectError
from .merge import GraphUpdate, apply_file_changes, apply_graph_update, refresh_derived
from .models import (
    CodebaseAnalysis,
    FileAnalysis,
)
from .stores.base import ObjectMeta

__all__ = [
    "DELTA_FORMAT",
    "LATE_WRITE_SECONDS",
    "CompactReport",
    "CompactionPolicy",
    "Delta",
    "DeltaRef",
    "GraphUpdate",
    "JournalListing",
    "apply_graph_update",
    "decode_delta",
    "delta_key",
    "encode_commit_marker",
    "encode_delta",
    "encode_marker",
    "fold",
    "fold_hashes",
    "fold_order",
    "listing_start_after",
    "marker_key",
    "name_ms",
    "named_key",
    "named_start_after",
    "new_name",
    "parse_listing",
    "peek_watermark",
    "ref_key",
    "set_watermark",
    "supersede",
    "watermark",
    "writer_id",
]

#: The ``format`` every delta carries; a reader refuses formats it does not know.
DELTA_FORMAT: Literal[1] = 1
_SEQ_DIGITS = 20
_DELTA_SUFFIX = ".json"
_MARKER_SUFFIX = ".folded"
_NAME_RE = re.compile(rf"\A(\d{{{_SEQ_DIGITS}}})(\.json|\.folded)\Z")
_NAMED_RE = re.compile(r"\A(w(\d{13})-[0-9a-f]{16})\.json\Z")
_COMMIT_MARKER_RE = re.compile(rf"\Ac(\d{{{_SEQ_DIGITS}}})\.folded\Z")

#: A delta: a legacy seq (``int``) or a named delta's name (``str``, ``w<ms>-<hex>``).
DeltaRef: TypeAlias = int | str

#: Seconds past which no delta can still land: a writer renames a delta whose
#: attempt would start with a name older than a quarter of the grace period, an
#: S3 request is refused 15 minutes after signing and from a clock more than 15
#: minutes off S3's; 45 minutes bounds all three. The folded map forgets names
#: this much (plus the grace period) older than the newest it holds.
LATE_WRITE_SECONDS = 2700.0


def named_key(codebase_id: str, name: str) -> str:
    """``<codebase_id>/_journal/<name>.json`` for a named delta."""
    return layout.journal_prefix(codebase_id) + name + _DELTA_SUFFIX


def ref_key(codebase_id: str, ref: DeltaRef) -> str:
    """The key of a delta, legacy or named."""
    return delta_key(codebase_id, ref) if isinstance(ref, int) else named_key(codebase_id, ref)


def name_ms(name: str) -> int:
    """The ms stamp of a named delta's name."""
    return int(name[1:14])


def new_name(after_ms: int = 0) -> str:
    """A fresh delta name: this clock's ms, at least ``after_ms``, and 64 random bits."""
    ms = max(time.time_ns() // 1_000_000, after_ms)
    return f"w{ms:013d}-{secrets.token_hex(8)}"


def commit_marker_key(codebase_id: str, commit: int) -> str:
    """The marker saying "commits up to ``commit`` published their hashes" (a hint)."""
    return layout.journal_prefix(codebase_id) + f"c{commit:0{_SEQ_DIGITS}d}{_MARKER_SUFFIX}"


def encode_commit_marker(commit: int) -> bytes:
    """The body of a commit marker."""
    return codec.dumps({"format": DELTA_FORMAT, "published_through": commit})


def named_start_after(codebase_id: str, ms: int) -> str:
    """The ``start_after`` of a listing of the deltas named at ``ms`` or later (nothing else)."""
    return layout.journal_prefix(codebase_id) + f"w{ms:013d}"


def delta_key(codebase_id: str, seq: int) -> str:
    """``<codebase_id>/_journal/<seq, 20 digits>.json``."""
    return layout.journal_prefix(codebase_id) + f"{seq:0{_SEQ_DIGITS}d}{_DELTA_SUFFIX}"


def marker_key(codebase_id: str, seq: int) -> str:
    """The empty object saying "deltas up to ``seq`` are folded" (a hint, see the module doc)."""
    return layout.journal_prefix(codebase_id) + f"{seq:0{_SEQ_DIGITS}d}{_MARKER_SUFFIX}"


def encode_marker(seq: int) -> bytes:
    """The body of a marker: tiny, and JSON like every other object."""
    return codec.dumps({"format": DELTA_FORMAT, "folded_through": seq})


@dataclass(frozen=True, slots=True)
class JournalListing:
    """One listing of a codebase's journal."""

    #: Legacy deltas by seq, and their markers.
    deltas: dict[int, ObjectMeta] = field(default_factory=dict)
    markers: dict[int, ObjectMeta] = field(default_factory=dict)
    #: The lowest legacy seq this listing is complete from (a listing may
    #: start in the middle of a long legacy journal: see
    #: :func:`listing_start_after`); named deltas and commit markers sort
    #: after every legacy name, so a listing always holds all of them.
    start: int = 1
    #: Named deltas by name, and commit markers by commit number.
    named: dict[str, ObjectMeta] = field(default_factory=dict)
    commit_markers: dict[int, ObjectMeta] = field(default_factory=dict)

    @property
    def max_named_ms(self) -> int:
        """The highest ms stamp among the named deltas listed (0 when none)."""
        return max((name_ms(n) for n in self.named), default=0)

    @property
    def published(self) -> int:
        """A lower bound of the commits whose hashes are published: the newest commit marker."""
        return max(self.commit_markers, default=0)

    def pending(self, mark: int, folded: Folded) -> list[DeltaRef]:
        """Every listed delta an ``analysis.json`` at watermark ``mark`` holding ``folded``
        lacks, in fold order: legacy ones above the watermark, then named ones."""
        return [*self.above(mark), *self.pending_named(folded)]

    def pending_named(self, folded: Folded) -> list[str]:
        """The named deltas listed that ``folded`` does not hold, in fold (name) order."""
        return sorted(n for n in self.named if not folded.holds(n, name_ms(n)))

    def unmarked_named(self) -> list[str]:
        """Named deltas at least as new as the newest commit marker: the pending ones, estimated.

        For the deferred policy's threshold only; what is pending is decided
        by the folded map in ``analysis.json``.
        """
        if not self.commit_markers:
            return sorted(self.named)
        marked_at = self.commit_markers[max(self.commit_markers)].last_modified
        return sorted(n for n, meta in self.named.items() if meta.last_modified >= marked_at)

    def with_named(self, name: str, meta: ObjectMeta) -> JournalListing:
        """This listing plus one named delta the caller has just created."""
        return JournalListing(
            self.deltas,
            self.markers,
            self.start,
            {**self.named, name: meta},
            self.commit_markers,
        )

    @property
    def max_seq(self) -> int:
        """The highest delta seq listed (0 for an empty journal)."""
        return max(self.deltas, default=0)

    @property
    def folded_hint(self) -> int:
        """A lower bound of the watermark: the highest marker listed (0 when none)."""
        return max(self.markers, default=0)

    def above(self, seq: int) -> list[int]:
        """Listed delta seqs above ``seq``, in order."""
        return sorted(s for s in self.deltas if s > seq)

    def missing_above(self, seq: int) -> list[int]:
        """Seqs in (``seq``, max] the listing lacks: a hole means a stale watermark."""
        return [
            s for s in range(max(seq, self.start - 1) + 1, self.max_seq + 1) if s not in self.deltas
        ]

    def with_delta(self, seq: int, meta: ObjectMeta) -> JournalListing:
        """This listing plus one delta the caller has just created."""
        return JournalListing(
            {**self.deltas, seq: meta}, self.markers, self.start, self.named, self.commit_markers
        )


def listing_start_after(codebase_id: str, seq: int) -> str:
    """The ``start_after`` of a listing that begins with seq ``seq``'s delta and marker."""
    # "/" sorts right after ".": past every object of seq - 1, before those of seq.
    return layout.journal_prefix(codebase_id) + f"{seq - 1:0{_SEQ_DIGITS}d}/"


def parse_listing(
    codebase_id: str, metas: Iterable[ObjectMeta], *, start: int = 1
) -> JournalListing:
    """Sort a listing of ``journal_prefix(codebase_id)`` into deltas and markers.

    Objects with other names (a tool's leftovers, the folder record) are
    ignored: they are not deltas, and refusing the whole journal for them
    would stop every merge.
    """
    prefix = layout.journal_prefix(codebase_id)
    listing = JournalListing(start=start)
    for meta in metas:
        if not meta.key.startswith(prefix):
            continue
        name = meta.key[len(prefix) :]
        if match := _NAME_RE.match(name):
            target = listing.deltas if match.group(2) == _DELTA_SUFFIX else listing.markers
            target[int(match.group(1))] = meta
        elif match := _NAMED_RE.match(name):
            listing.named[match.group(1)] = meta
        elif match := _COMMIT_MARKER_RE.match(name):
            listing.commit_markers[int(match.group(1))] = meta
    return listing


class Delta(BaseModel):
    """One merge, as stored in the journal (its name is in the key, not the body)."""

    model_config = ConfigDict(extra="allow", defer_build=True, hide_input_in_errors=True)

    format: Literal[1]
    codebase_id: str
    created_at: str
    writer: str
    analysis_time_ms: float = 0.0
    removed: list[str] = []
    file_hashes: dict[str, str] = {}
    file_analyses: dict[str, FileAnalysis] = {}
    graph: GraphUpdate | None = None


def writer_id() -> str:
    # Unique per delta so that, after a PUT whose response was lost, the
    # writer can tell its own delta from one another writer put there.
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:12]}"


def encode_delta(
    codebase_id: str,
    per_file_bodies: Mapping[str, bytes],
    *,
    removed: Iterable[str] = (),
    file_hashes: Mapping[str, str] | None = None,
    analysis_time_ms: float = 0.0,
    graph: GraphUpdate | None = None,
) -> bytes:
    """The bytes of a delta, reusing the already serialised per-file bodies.

    ``per_file_bodies`` maps each file path to the exact bytes of its per-file
    object, which are JSON documents and so valid as values here: the big
    part of a delta costs no second serialisation.
    """
    head = {
        "format": DELTA_FORMAT,
        "codebase_id": codebase_id,
        "created_at": datetime.now(UTC).isoformat(),
        "writer": writer_id(),
        "analysis_time_ms": analysis_time_ms,
        "removed": sorted(set(removed)),
        "file_hashes": dict(file_hashes or {}),
    }
    if graph is not None:
        head["graph"] = graph.model_dump(mode="json", exclude_none=True)
    parts = [codec.dumps(head)[:-1].rstrip(), b',\n  "file_analyses": {']
    for i, (path, body) in enumerate(per_file_bodies.items()):
        parts.append(b"," if i else b"")
        parts.append(b"\n" + codec.dumps(path) + b": " + body)
    parts.append(b"\n  }\n}")
    return b"".join(parts)


def decode_delta(data: bytes, *, key: str, codebase_id: str) -> Delta:
    """Parse and validate a delta.

    Raises
    ------
    CorruptObjectError
        Not JSON, not a delta, a format this version does not know, or a
        delta of another codebase (a copied object would merge foreign files).
    """
    obj = codec.loads(data, key=key, codebase_id=codebase_id)
    if not isinstance(obj, dict):
        raise CorruptObjectError(
            f"journal delta {key!r} of codebase {codebase_id!r} is not a JSON object",
            key=key,
            codebase_id=codebase_id,
        )
    if obj.get("format") != DELTA_FORMAT:
        raise CorruptObjectError(
            f"journal delta {key!r} of codebase {codebase_id!r} has format "
            f"{obj.get('format')!r}; this version reads format {DELTA_FORMAT}",
            key=key,
            codebase_id=codebase_id,
        )
    try:
        delta = Delta.model_validate(obj)
    except ValidationError as exc:
        raise CorruptObjectError(
            f"journal delta {key!r} of codebase {codebase_id!r} is not valid: "
            f"{exc.error_count()} error(s), first at "
            f"{'.'.join(map(str, exc.errors()[0]['loc']))}",
            key=key,
            codebase_id=codebase_id,
        ) from None
    if delta.codebase_id != codebase_id:
        raise CorruptObjectError(
            f"journal delta {key!r} belongs to codebase {delta.codebase_id!r}, not {codebase_id!r}",
            key=key,
            codebase_id=codebase_id,
        )
    for path, fa in delta.file_analyses.items():
        if fa.file_path != path:
            raise CorruptObjectError(
                f"journal delta {key!r} files the analysis of {fa.file_path!r} under {path!r}",
                key=key,
                codebase_id=codebase_id,
            )
    return delta


def fold_order(ref: DeltaRef) -> tuple[int, int, str]:
    """The sort key of the fold order: legacy deltas by seq, then named deltas by name."""
    return (0, ref, "") if isinstance(ref, int) else (1, 0, ref)


def fold(
    analysis: CodebaseAnalysis,
    deltas: Sequence[tuple[DeltaRef, Delta]],
    *,
    grace_seconds: float = 0.0,
    now: float | None = None,
) -> None:
    """Apply deltas in fold order, recompute what derives, and record them as folded.

    Legacy deltas move the watermark; named ones are added to the folded map
    under a new commit number, and the map forgets names that fell below
    the floor more than ``grace_seconds`` after their commit (see the module
    doc). The caller passes every pending delta it listed.
    """
    if not deltas:
        return
    ordered = sorted(deltas, key=lambda item: fold_order(item[0]))
    added_ms = 0.0
    for _, delta in ordered:
        apply_file_changes(analysis, delta.file_analyses, delta.removed)
        if delta.graph is not None:
            apply_graph_update(analysis, delta.graph, delta.file_analyses, delta.removed)
        added_ms += delta.analysis_time_ms
    refresh_derived(analysis, add_analysis_time_ms=added_ms)
    seqs = [ref for ref, _ in ordered if isinstance(ref, int)]
    if seqs:
        set_watermark(analysis, seqs[-1])
    names = [ref for ref, _ in ordered if isinstance(ref, str)]
    if names:
        set_folded(
            analysis,
            _record(recorded_folded(analysis.__pydantic_extra__), names, grace_seconds, now),
        )


def supersede(analysis: CodebaseAnalysis, listing: JournalListing) -> bool:
    """Record every delta ``listing`` holds as folded into ``analysis``, which replaces them.

    For a save of a whole analysis: the deltas pending in the journal are
    superseded, and readers must not replay them on top. The commit number
    passes every listed commit marker, so that a marker at it says the
    superseded deltas' hashes are settled. Returns whether anything changed.
    """
    changed = False
    if listing.max_seq > watermark(analysis):
        set_watermark(analysis, listing.max_seq)
        changed = True
    folded = recorded_folded(analysis.__pydantic_extra__)
    pending = listing.pending_named(folded)
    if pending:
        after = max(folded.commit, listing.published)
        set_folded(analysis, _record(folded, pending, 0.0, None, after_commit=after))
        changed = True
    return changed


def _record(
    before: Folded,
    names: Sequence[str],
    grace_seconds: float,
    now: float | None,
    *,
    after_commit: int | None = None,
) -> Folded:
    clock = time.time() if now is None else now
    commit = (before.commit if after_commit is None else after_commit) + 1
    folded = {**before.names, **dict.fromkeys(names, commit)}
    # The floor follows the compactor's clock, but never the newest name past
    # it: a clock far ahead cannot declare deltas folded that are still coming.
    newest = max(name_ms(n) for n in folded)
    lag_ms = int((grace_seconds + LATE_WRITE_SECONDS) * 1000)
    floor = max(before.floor, min(int(clock * 1000), newest) - lag_ms)
    times = {**before.times, commit: int(clock * 1000)}
    cutoff_ms = (clock - grace_seconds) * 1000
    kept = {
        n: c
        for n, c in folded.items()
        if name_ms(n) >= floor or times.get(c, cutoff_ms + 1) > cutoff_ms
    }
    used = {*kept.values(), commit}
    return Folded(commit, floor, kept, {c: t for c, t in times.items() if c in used})


def fold_hashes(deltas: Sequence[tuple[DeltaRef, Delta]]) -> tuple[dict[str, str], set[str]]:
    """The net effect of deltas (in fold order) on ``file_hashes.json``: ``(claims, unclaimed)``.

    A path's newest delta decides: it claims the hash that delta recorded, or,
    when that delta removed the path or analysed it without a hash, any older
    claim is withdrawn (it would describe an analysis that was replaced).
    """
    claims: dict[str, str] = {}
    unclaimed: set[str] = set()
    for _, delta in deltas:
        touched = [p for p in delta.removed if p not in delta.file_analyses]
        touched.extend(delta.file_analyses)
        for path in touched:
            digest = delta.file_hashes.get(path) if path in delta.file_analyses else None
            if digest is None:
                claims.pop(path, None)
                unclaimed.add(path)
            else:
                claims[path] = digest
                unclaimed.discard(path)
    return claims, unclaimed
