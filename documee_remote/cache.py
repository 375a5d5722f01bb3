"""The read cache, validated by ETag: repeated loads of an unchanged analysis move no body.

Opt in with ``cache=`` (``open_store``, ``PersistenceManager``) or the
environment (``DOCUMEE_CACHE_DIR``, ``DOCUMEE_CACHE=true``,
``DOCUMEE_CACHE_MAX_BYTES``); see "Read cache" in the README. The storage
side (two levels, conditional GETs, single flight, the disk format) is
:mod:`documee_remote.stores._cache`; this module adds what knows about
analyses: :func:`load_shared`, the parsed-result level behind
``PersistenceManager.load_analysis``.

Shared or private results
-------------------------
With the cache on, ``load_analysis(codebase_id)`` returns one parsed analysis
shared by every caller in the process while ``analysis.json`` keeps its ETag,
made read-only (:mod:`documee_remote._readonly`): changing it raises
:class:`~documee_remote.errors.ReadOnlyAnalysisError`, so no caller can
corrupt the cache or what another caller holds. ``load_analysis(codebase_id,
copy=True)`` returns a private, mutable analysis, parsed from the cached bytes
(no body moves; the parse is the cost). The shared result is the default
because a private copy of a Django-size analysis costs as much as parsing it
(0.6 s, about 70% of a cold load over a 20 ms link), which would make a cache
hit hardly faster than no cache; a shared hit costs two small requests.
Without the cache every load is private, as before.
"""

from __future__ import annotations

import threading
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TYPE_CHECKING, Final, cast

from . import codec, journal, layout
from ._readonly import ReadOnlyAnalysisError, freeze, is_frozen
from .bookkeeping import BOOKKEEPING_KEY, peek_book, recorded_folded, recorded_watermark
from .errors import CorruptObjectError, NotFoundError
from .stores._cache import (
    DEFAULT_MAX_BYTES,
    DEFAULT_MEMORY_BYTES,
    CacheInfo,
    CacheStats,
    CachingStore,
    ReadCache,
    default_cache_dir,
)
from .stores._cache_config import CacheArg, resolve_cache, shared_cache, with_cache

if TYPE_CHECKING:
    from .models import CodebaseAnalysis
    from .stores.base import Store

__all__ = [
    "DEFAULT_MAX_BYTES",
    "DEFAULT_MEMORY_BYTES",
    "MISS",
    "CacheArg",
    "CacheInfo",
    "CacheStats",
    "CachingStore",
    "Miss",
    "ReadCache",
    "ReadOnlyAnalysisError",
    "default_cache_dir",
    "freeze",
    "is_frozen",
    "load_shared",
    "resolve_cache",
    "shared_cache",
    "with_cache",
]


class Miss:
    """:func:`load_shared` could not answer alone; ``listing``: the journal as it listed it."""

    __slots__ = ("listing",)

    def __init__(self, listing: journal.JournalListing | None = None) -> None:
        self.listing = listing

    def __repr__(self) -> str:
        return "MISS"


#: :func:`load_shared` could not answer alone and listed nothing (no cache).
MISS: Final = Miss()

_SIDE: list[ThreadPoolExecutor] = []  # one pool, made on first use
_SIDE_LOCK = threading.Lock()


def _side() -> ThreadPoolExecutor:
    with _SIDE_LOCK:
        if not _SIDE:
            _SIDE.append(ThreadPoolExecutor(4, thread_name_prefix="documee-cache"))
        return _SIDE[0]


def load_shared(store: Store, codebase_id: str) -> CodebaseAnalysis | Miss | None:
    """The shared, read-only analysis of ``codebase_id``, or :data:`MISS`.

    Two requests at once: a conditional GET of ``analysis.json`` (304, no body,
    when the cached bytes are current) and a listing of the journal. When the
    listing shows no pending delta (none above ``analysis.json``'s legacy
    watermark, no named one its folded map lacks; both peeked from the bytes,
    and checked against the parse), the answer is ``analysis.json`` alone,
    parsed once per ETag and shared. Otherwise (merges pending in the
    journal, a hole in it, a body that does not parse, bookkeeping that
    could not be peeked) this answers a :class:`Miss` carrying its listing,
    and the manager's full read (which folds the journal, and retries) takes
    over from it.
    """
    if not isinstance(store, CachingStore):
        return MISS
    key = layout.analysis_key(codebase_id)
    prefix = layout.journal_prefix(codebase_id)
    listed: Future[journal.JournalListing] = _side().submit(
        lambda: journal.parse_listing(codebase_id, store.list_meta(prefix))
    )
    try:
        try:
            obj = store.get(key)
        except NotFoundError:
            obj = None
    finally:
        listing = listed.result()
    if obj is None:
        return None if not (listing.deltas or listing.named) else Miss(listing)
    book = {BOOKKEEPING_KEY: peek_book(obj.data)}
    mark = recorded_watermark(book)
    folded = recorded_folded(book)
    if listing.pending(mark, folded) or listing.missing_above(mark) or listing.start > mark + 1:
        return Miss(listing)
    data = obj.data

    def parse() -> tuple[object, int]:
        try:
            analysis = codec.load_codebase_analysis(data, key=key, codebase_id=codebase_id)
        except CorruptObjectError:
            raise _NotAloneError from None  # the full read reads once more, then calls it corrupt
        extra = analysis.__pydantic_extra__
        if recorded_watermark(extra) != mark or recorded_folded(extra) != folded:
            # peek_book found no bookkeeping where it looked (or another one):
            # what is pending was judged against the wrong record.
            raise _NotAloneError
        return freeze(analysis), len(data)

    try:
        found = store.cache.parse_once(store.entry_key(key), obj.etag, "analysis", parse)
    except _NotAloneError:
        return Miss(listing)
    return cast("CodebaseAnalysis", found)


class _NotAloneError(Exception):
    """The shared path cannot answer; the manager's full read will."""
