"""Which read cache a store gets: ``cache=`` and the ``DOCUMEE_CACHE*`` settings.

The rule of every setting (:mod:`documee_remote.config`): the explicit
argument wins, the environment fills in. One :class:`~._cache.ReadCache` per
directory and bound per process, so stores opened alike share its memory
level and single flights.
"""

from __future__ import annotations

import os
import threading
from typing import TYPE_CHECKING

from ..errors import ConfigurationError
from ._cache import (
    DEFAULT_MAX_BYTES,
    DEFAULT_MEMORY_BYTES,
    CachingStore,
    ReadCache,
    default_cache_dir,
)
from .base import Store

if TYPE_CHECKING:
    from ..config import Settings

__all__ = ["CacheArg", "resolve_cache", "shared_cache", "with_cache"]

#: What ``cache=`` takes: a ReadCache, True (on, configured by the environment),
#: False (off), a directory, or None (the environment decides).
CacheArg = ReadCache | bool | str | os.PathLike[str] | None

_SHARED: dict[tuple[str, int, int], ReadCache] = {}
_SHARED_LOCK = threading.Lock()


def shared_cache(
    directory: str | os.PathLike[str] | None = None, *, max_bytes: int | None = None
) -> ReadCache:
    """The process's one :class:`ReadCache` for this directory and bound.

    Stores opened with the same cache settings share its memory level and
    single flights. ``directory`` defaults to :func:`default_cache_dir`.
    """
    path = os.path.abspath(os.fspath(directory) if directory else default_cache_dir())
    bound = DEFAULT_MAX_BYTES if max_bytes is None else max_bytes
    with _SHARED_LOCK:
        found = _SHARED.get((path, bound, DEFAULT_MEMORY_BYTES))
        if found is None:
            found = _SHARED[(path, bound, DEFAULT_MEMORY_BYTES)] = ReadCache(path, max_bytes=bound)
        return found


def resolve_cache(cache: CacheArg, settings: Settings | None = None) -> ReadCache | None:
    """The cache that ``cache=`` (and the ``DOCUMEE_CACHE*`` settings) ask for, if any.

    The explicit argument wins; the settings fill in: ``DOCUMEE_CACHE_DIR``
    turns the cache on there (``DOCUMEE_CACHE=false`` keeps it off), and
    ``DOCUMEE_CACHE=true`` turns it on in the default directory.
    ``DOCUMEE_CACHE_MAX_BYTES`` bounds the disk level either way.
    ``settings``: read from the environment now when not given.
    """
    if settings is None:
        from ..config import Settings

        settings = Settings.load()
    if isinstance(cache, ReadCache):
        return cache
    if cache is False:
        return None
    env_dir = os.path.expanduser(settings.cache_dir) if settings.cache_dir else None
    if cache is None:
        if settings.cache is False or (settings.cache is None and env_dir is None):
            return None
        return shared_cache(env_dir, max_bytes=settings.cache_max_bytes)
    if cache is True:
        return shared_cache(env_dir, max_bytes=settings.cache_max_bytes)
    if isinstance(cache, str | os.PathLike) and os.fspath(cache):
        return shared_cache(cache, max_bytes=settings.cache_max_bytes)
    raise ConfigurationError(
        f"cache must be True, False, None, a directory or a ReadCache, not {type(cache).__name__}"
    )


def with_cache(store: Store, cache: CacheArg, settings: Settings | None = None) -> Store:
    """``store`` read through the cache asked for, or ``store`` itself.

    Local and in-memory stores are returned as they are: reading them costs
    no request, so a cache would only add a copy (the cache is a documented
    no-op there). A store already caching is returned as it is.
    """
    from .local import LocalStore
    from .memory import MemoryStore

    found = resolve_cache(cache, settings)
    if found is None or isinstance(store, CachingStore | LocalStore | MemoryStore):
        return store
    return CachingStore(store, found)
