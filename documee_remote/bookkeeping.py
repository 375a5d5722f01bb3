"""The reserved ``"documee_remote"`` record in ``analysis.json``: watermark and fence.

``analysis.json`` keeps one top-level key for this library's own bookkeeping,
``{"documee_remote": {"journal": W, "fence": T}}``: the highest journal seq
folded into it (the **watermark**, see :mod:`documee_remote.journal`) and the
highest lease fencing token recorded (see :mod:`documee_remote.leases`).
Upstream's reader ignores unknown keys, and the models keep it as an extra
field. This module is the only one that reads or writes that record; it
depends on nothing above the models.
"""

from __future__ import annotations

import json
from typing import Any

from .models import CodebaseAnalysis

__all__ = [
    "BOOKKEEPING_KEY",
    "peek_watermark",
    "record_fence",
    "recorded_fence",
    "recorded_watermark",
    "set_watermark",
    "watermark",
]

#: Reserved top-level key of analysis.json where documee-remote keeps its
#: bookkeeping (the highest fencing token). Upstream's reader ignores
#: unknown keys, and the models keep it as an extra field.
BOOKKEEPING_KEY = "documee_remote"

_WATERMARK = "journal"
_FENCE = "fence"
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


def peek_watermark(raw: bytes) -> int:
    """The watermark of ``analysis.json`` bytes, without parsing the whole document.

    The bookkeeping key is written last, so it is found from the end. Returns
    0 when it is not there in the expected layout: callers use this only as a
    shortcut ("already folded"), falling back to a full parse otherwise.
    """
    at = raw.rfind(_BOOK_MARK)
    if at < 0:
        return 0
    tail = raw[at + len(_BOOK_MARK) :].decode("utf-8", "replace")
    try:
        book, _ = _DECODER.raw_decode(tail)
    except ValueError:
        return 0
    value = book.get(_WATERMARK, 0) if isinstance(book, dict) else 0
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


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
