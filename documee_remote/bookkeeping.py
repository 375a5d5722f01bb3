"""The reserved ``"documee_remote"`` record in ``analysis.json``: watermark and fence.

``analysis.json`` keeps one top-level key for this library's own bookkeeping,
``{"documee_remote": {"journal": W, "fence": T, "commit": n, "floor": M,
"folded": {name: n}, "commits": {n: t}}}``: the highest legacy journal seq
folded into it (the **watermark**), the highest lease fencing token recorded
(see :mod:`documee_remote.leases`), and which named journal deltas it holds
(:class:`Folded`, see :mod:`documee_remote.journal`).
Upstream's reader ignores unknown keys, and the models keep it as an extra
field. This module is the only one that reads or writes that record; it
depends on nothing above the models.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from .models import CodebaseAnalysis

__all__ = [
    "BOOKKEEPING_KEY",
    "Folded",
    "peek_book",
    "peek_watermark",
    "record_fence",
    "recorded_fence",
    "recorded_folded",
    "recorded_watermark",
    "set_folded",
    "set_watermark",
    "watermark",
]

#: Reserved top-level key of analysis.json where documee-remote keeps its
#: bookkeeping (the highest fencing token). Upstream's reader ignores
#: unknown keys, and the models keep it as an extra field.
BOOKKEEPING_KEY = "documee_remote"

_WATERMARK = "journal"
_FENCE = "fence"
_COMMIT = "commit"
_FLOOR = "floor"
_FOLDED = "folded"
_COMMITS = "commits"
_DECODER = json.JSONDecoder()


def recorded_fence(extra: dict[str, Any] | None) -> int:
    """The highest fencing token recorded in an analysis's bookkeeping (0 if none)."""
    if not extra:
        return 0
    book = extra.get(BOOKKEEPING_KEY)
    if isinstance(book, dict):
        fence = book.get(_FENCE, 0)
        if isinstance(fence, int) and not isinstance(fence, bool):
            return fence
    return 0


def recorded_watermark(extra: dict[str, Any] | None) -> int:
    """The watermark recorded in an analysis's bookkeeping (0 if none), from a plain dict."""
    if not extra:
        return 0
    book = extra.get(BOOKKEEPING_KEY)
    if isinstance(book, dict):
        value = book.get(_WATERMARK, 0)
        if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
            return value
    return 0


def watermark(analysis: CodebaseAnalysis | None) -> int:
    """The highest journal seq folded into ``analysis`` (0 when none)."""
    return 0 if analysis is None else recorded_watermark(analysis.__pydantic_extra__)


#: How the bookkeeping key starts in this library's (and upstream's) indent-2 output:
#: a newline and two spaces put it at the top level, since a raw newline cannot
#: occur inside a JSON string.
_BOOK_MARK = b'\n  "' + BOOKKEEPING_KEY.encode() + b'": '


def peek_book(raw: bytes) -> dict[str, Any]:
    """The bookkeeping record of ``analysis.json`` bytes, without parsing the whole document.

    The bookkeeping key is written last, so it is found from the end. Returns
    ``{}`` when it is not there in the expected layout: callers use this only
    as a shortcut ("already folded"), falling back to a full parse otherwise.
    """
    at = raw.rfind(_BOOK_MARK)
    if at < 0:
        return {}
    tail = raw[at + len(_BOOK_MARK) :].decode("utf-8", "replace")
    try:
        book, _ = _DECODER.raw_decode(tail)
    except ValueError:
        return {}
    return book if isinstance(book, dict) else {}


def peek_watermark(raw: bytes) -> int:
    """The watermark of ``analysis.json`` bytes (see :func:`peek_book`); 0 when not found."""
    return recorded_watermark({BOOKKEEPING_KEY: peek_book(raw)})


def _count(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else None


@dataclass(frozen=True, slots=True)
class Folded:
    """Which named journal deltas an ``analysis.json`` holds.

    ``names`` maps each folded delta still remembered to the number of the
    commit that folded it; ``commit`` is the newest such number; ``times``
    holds each remembered commit's time (Unix ms, the compactor's clock);
    every delta named below ``floor`` (Unix ms) counts as folded.
    """

    commit: int = 0
    floor: int = 0
    names: Mapping[str, int] = field(default_factory=dict)
    times: Mapping[int, int] = field(default_factory=dict)

    def holds(self, name: str, name_ms: int) -> bool:
        """Whether the delta ``name`` (named at ``name_ms``) is folded."""
        return name_ms < self.floor or name in self.names

    def folded_before(self, name: str, cutoff: float) -> bool:
        """Whether ``name`` was folded by a commit at or before ``cutoff`` (Unix seconds)."""
        n = self.names.get(name)
        if n is None or n not in self.times:
            return False
        return self.times[n] <= cutoff * 1000


def recorded_folded(extra: Mapping[str, Any] | None) -> Folded:
    """The :class:`Folded` record of an analysis's bookkeeping (empty when none).

    Entries that are not well formed are ignored: they cannot name a delta
    this library wrote, and refusing the whole analysis for them would stop
    every merge.
    """
    book = (extra or {}).get(BOOKKEEPING_KEY)
    if not isinstance(book, dict):
        return Folded()
    names_raw = book.get(_FOLDED)
    names = {
        k: n
        for k, v in (names_raw.items() if isinstance(names_raw, dict) else ())
        if isinstance(k, str) and (n := _count(v)) is not None
    }
    times_raw = book.get(_COMMITS)
    times: dict[int, int] = {}
    for k, v in times_raw.items() if isinstance(times_raw, dict) else ():
        if isinstance(k, str) and k.isdigit() and (t := _count(v)) is not None:
            times[int(k)] = t
    return Folded(
        commit=_count(book.get(_COMMIT)) or 0,
        floor=_count(book.get(_FLOOR)) or 0,
        names=names,
        times=times,
    )


def set_folded(analysis: CodebaseAnalysis, folded: Folded) -> None:
    """Record ``folded``, keeping the rest of the bookkeeping (watermark, fence)."""
    found = (analysis.__pydantic_extra__ or {}).get(BOOKKEEPING_KEY)
    book = dict(found) if isinstance(found, dict) else {}
    book[_COMMIT] = folded.commit
    book[_FLOOR] = folded.floor
    book[_FOLDED] = dict(sorted(folded.names.items()))
    book[_COMMITS] = {str(n): t for n, t in sorted(folded.times.items())}
    setattr(analysis, BOOKKEEPING_KEY, book)


def set_watermark(analysis: CodebaseAnalysis, seq: int) -> None:
    """Record ``seq`` as folded, keeping the rest of the bookkeeping (the fence)."""
    found = (analysis.__pydantic_extra__ or {}).get(BOOKKEEPING_KEY)
    book = dict(found) if isinstance(found, dict) else {}
    book[_WATERMARK] = seq
    setattr(analysis, BOOKKEEPING_KEY, book)


def record_fence(analysis: CodebaseAnalysis, token: int) -> None:
    """Record ``token`` as the highest fencing token, keeping the rest (the watermark)."""
    found = (analysis.__pydantic_extra__ or {}).get(BOOKKEEPING_KEY)
    book = dict(found) if isinstance(found, dict) else {}
    book[_FENCE] = token
    setattr(analysis, BOOKKEEPING_KEY, book)
