"""The delta journal: small immutable deltas instead of rewriting ``analysis.json``.

A merge that goes through the journal writes its per-file objects, then one
delta object holding the same file analyses (plus removed paths, hashes and
the analysis time)::

    <codebase_id>/_journal/<seq>.json     a delta, seq zero-padded to 20 digits
    <codebase_id>/_journal/<seq>.folded   a marker: deltas <= seq are folded

Deltas are created with ``If-None-Match: *``, so two writers can never own the
same ``seq``; each picks ``seq`` = the highest listed + 1 and, when it loses,
lists again. ``analysis.json`` records the **watermark** W, the highest ``seq``
folded into it, in its bookkeeping key (``"documee_remote": {"journal": W}``,
beside the fencing token). A reader of this library folds the deltas above W,
in ``seq`` order (newest analysis of a path wins), onto ``analysis.json``;
:meth:`~documee_remote.PersistenceManager.compact` does the same and commits
the result with ``If-Match``, moving W. Readers that know only the original
format read ``analysis.json`` alone, which is why eager compaction (after every
merge) is the default.

Why no update is lost, and what the rules below protect:

- **Seqs are dense.** A writer creates ``max + 1`` only after seeing ``max``,
  so every seq below an existing delta exists or was folded and deleted. A
  reader that lists the journal and finds a hole in (W, max] knows that its
  ``analysis.json`` is older than its listing (a compaction moved W and
  deleted deltas in between) and reads again.
- **Folded deltas are deleted only after a grace period**
  (:attr:`CompactionPolicy.grace_seconds`, 30 minutes by default), and the
  delta at W never: so ``max`` never drops below W, and a writer that picked
  ``seq`` from an old listing finds it taken rather than re-creating a folded
  number that every reader would skip. Writers list again when their pick is
  older than a quarter of the grace period; on S3 a signed request is refused
  after 15 minutes anyway, which bounds how long a PUT can hang in flight.
- **Folding is deterministic and idempotent.** Deltas are immutable and carry
  the file analyses themselves (not references to per-file objects, which
  the next writer of a path overwrites), so every reader and every compactor
  that folds the same deltas computes the same analysis.
- **The marker is only a hint.** It is written after the commit and after the
  folded deltas' hashes are published, so it may lag W (a compactor can die
  in between); everything that uses it treats deltas above it as possibly
  pending, which costs work, never correctness, and the next compaction
  publishes their hashes again.
- **Listings start at a watermark already seen** (``start_after``): the delta
  at the current watermark is never deleted and watermarks only grow, so a
  listing that finds the delta at an older one is complete from there up;
  one that does not lists the whole journal. The journal may hold a grace
  period's worth of folded deltas, but a merge or a read lists only the
  newest few; compaction lists it all every 16 seqs, to prune.

``file_hashes.json`` describes the compacted analysis: a compaction withdraws
the claims of files it removes before its commit and publishes the folded
deltas' hashes after it, and this library's
:meth:`~documee_remote.PersistenceManager.get_file_hashes` lays the hashes of
deltas above the newest marker over it, so an analyser never skips a file
whose newest analysis is still in the journal.
"""

from __future__ import annotations

import os
import re
import socket
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, ValidationError

from . import codec, layout
from .bookkeeping import peek_watermark, set_watermark, watermark
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
    "CompactReport",
    "CompactionPolicy",
    "Delta",
    "GraphUpdate",
    "JournalListing",
    "apply_graph_update",
    "decode_delta",
    "delta_key",
    "encode_delta",
    "encode_marker",
    "fold",
    "fold_hashes",
    "listing_start_after",
    "marker_key",
    "parse_listing",
    "peek_watermark",
    "set_watermark",
    "watermark",
]

#: The ``format`` every delta carries; a reader refuses formats it does not know.
DELTA_FORMAT: Literal[1] = 1
_SEQ_DIGITS = 20
_DELTA_SUFFIX = ".json"
_MARKER_SUFFIX = ".folded"
_NAME_RE = re.compile(rf"\A(\d{{{_SEQ_DIGITS}}})(\.json|\.folded)\Z")


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

    deltas: dict[int, ObjectMeta] = field(default_factory=dict)
    markers: dict[int, ObjectMeta] = field(default_factory=dict)
    #: The lowest seq this listing is complete from (a listing may start in
    #: the middle of a long journal: see :func:`listing_start_after`).
    start: int = 1

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
        return JournalListing({**self.deltas, seq: meta}, self.markers, self.start)


def listing_start_after(codebase_id: str, seq: int) -> str:
    """The ``start_after`` of a listing that begins with seq ``seq``'s delta and marker."""
    # "/" sorts right after ".": past every object of seq - 1, before those of seq.
    return layout.journal_prefix(codebase_id) + f"{seq - 1:0{_SEQ_DIGITS}d}/"


def parse_listing(
    codebase_id: str, metas: Iterable[ObjectMeta], *, start: int = 1
) -> JournalListing:
    """Sort a listing of ``journal_prefix(codebase_id)`` into deltas and markers.

    Objects with other names (a tool's leftovers) are ignored: they are not
    part of the protocol, and refusing the whole journal for them would stop
    every merge.
    """
    prefix = layout.journal_prefix(codebase_id)
    listing = JournalListing(start=start)
    for meta in metas:
        match = _NAME_RE.match(meta.key[len(prefix) :]) if meta.key.startswith(prefix) else None
        if match is None:
            continue
        target = listing.deltas if match.group(2) == _DELTA_SUFFIX else listing.markers
        target[int(match.group(1))] = meta
    return listing


class Delta(BaseModel):
    """One merge, as stored in the journal (the seq is in the key, not the body)."""

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


def _writer_id() -> str:
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
        "writer": _writer_id(),
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


def fold(analysis: CodebaseAnalysis, deltas: Sequence[tuple[int, Delta]]) -> None:
    """Apply deltas, in the given (ascending seq) order, and recompute what derives."""
    if not deltas:
        return
    added_ms = 0.0
    for _, delta in deltas:
        apply_file_changes(analysis, delta.file_analyses, delta.removed)
        if delta.graph is not None:
            apply_graph_update(analysis, delta.graph, delta.file_analyses, delta.removed)
        added_ms += delta.analysis_time_ms
    refresh_derived(analysis, add_analysis_time_ms=added_ms)
    set_watermark(analysis, deltas[-1][0])


def fold_hashes(deltas: Sequence[tuple[int, Delta]]) -> tuple[dict[str, str], set[str]]:
    """The net effect of deltas (in seq order) on ``file_hashes.json``: ``(claims, unclaimed)``.

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
