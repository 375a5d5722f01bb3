"""Storage backends behind one small interface, and ``open_store`` to pick one by URL.

==========================  ===========================  ==========================
URL                         backend                      needs
==========================  ===========================  ==========================
``/path`` or ``file:///p``  :class:`LocalStore`          nothing
``memory://``               :class:`MemoryStore`         nothing
``s3://bucket/prefix``      ``S3Store`` (boto3)          ``documee-remote[s3]``
``s3://...`` + fsspec       ``FsspecStore``              ``documee-remote[fsspec]``
``s3://...`` + obstore      ``ObstoreStore`` (Rust)      ``documee-remote[obstore]``
``gs://``, ``az://``, ...   ``FsspecStore``              fsspec and its filesystem
other fsspec URLs           ``backend="fsspec"`` only    fsspec and its filesystem
==========================  ===========================  ==========================

Every ``open_store`` call completes its options with the ``DOCUMEE_*``
environment (:class:`~documee_remote.config.Settings`); explicit arguments win.
Backends with optional dependencies are imported only when a URL asks for
them, so ``import documee_remote`` never imports boto3, s3fs, aiohttp or obstore.
"""

from __future__ import annotations

import importlib
import os
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote, urlsplit

from ..config import (
    BACKENDS,
    COMMON_STORE_OPTIONS,
    DEFAULT_STORE_URL,
    Settings,
    backend_opens,
    url_scheme,
)
from ..errors import ConfigurationError
from .base import (
    DEFAULT_CONCURRENCY,
    Capabilities,
    ObjectMeta,
    ProbeResult,
    Store,
    StoredObject,
    etag_of,
    normalize_etag,
)
from .local import LocalStore
from .memory import MemoryStore

if TYPE_CHECKING:
    from ._cache_config import CacheArg
    from ._fsspec import FsspecStore
    from ._obstore import ObstoreStore
    from .s3 import S3Store

__all__ = [
    "DEFAULT_CONCURRENCY",
    "Capabilities",
    "FsspecStore",
    "LocalStore",
    "MemoryStore",
    "ObjectMeta",
    "ObstoreStore",
    "ProbeResult",
    "S3Store",
    "Store",
    "StoredObject",
    "etag_of",
    "normalize_etag",
    "open_store",
]

# name -> (module, class): imported on first use only.
_LAZY = {
    "S3Store": (".s3", "S3Store"),
    "FsspecStore": ("._fsspec", "FsspecStore"),
    "ObstoreStore": ("._obstore", "ObstoreStore"),
}

#: The options of the backends without optional dependencies (the others check their own).
_LOCAL_OPTIONS = {"local": {"fsync"}, "memory": set[str]()}

#: URL schemes opened without naming a backend, for messages: native ones, then fsspec's.
_NATIVE_SCHEMES = ("file", "memory", "s3", "s3a")
_FSSPEC_SCHEMES = ("gs", "gcs", "az", "abfs", "abfss")


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        module, attr = _LAZY[name]
        return getattr(importlib.import_module(module, __name__), attr)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def open_store(
    url: str | os.PathLike[str] | Store | None = None,
    *,
    backend: str | None = None,
    settings: Settings | None = None,
    cache: CacheArg = None,
    **options: Any,
) -> Store:
    """Open a store from a URL, completing the call's options with the ``DOCUMEE_*`` settings.

    This is the one function that builds a store from settings:
    ``PersistenceManager``, the CLI and the Lambda handler all come here. Each
    ``DOCUMEE_*`` variable fills in whatever the call does not pass, where it
    applies to the backend (``DOCUMEE_S3_*`` to ``s3://`` URLs only; the others
    are ignored); explicit arguments always win. See
    :meth:`~documee_remote.config.Settings.complete` for the rule.

    Parameters
    ----------
    url:
        ``file:///abs/path`` or a plain path, ``memory://``, ``s3://bucket/prefix``,
        ``gs://``/``az://`` (fsspec), or any URL fsspec understands with
        ``backend="fsspec"``. ``None``: ``DOCUMEE_STORE_URL``, else upstream's
        ``.documee/analysis``. A :class:`Store` is returned unchanged: it is
        already configured, so the environment is not consulted and options
        are refused.
    backend:
        ``"s3"`` (boto3, the default for ``s3://``), ``"obstore"`` (Rust; the
        fastest bulk transfers, same options and semantics) or ``"fsspec"``;
        ``DOCUMEE_BACKEND`` when not given.
    settings:
        The :class:`~documee_remote.config.Settings` that fill in; by default
        read from the environment now.
    cache:
        Read through a :class:`~documee_remote.cache.ReadCache` revalidated by
        ETag: ``True`` (``DOCUMEE_CACHE_DIR`` or the platform's cache
        directory), a directory, a ``ReadCache``, ``False`` (off); ``None``:
        the ``DOCUMEE_CACHE*`` variables decide (off when unset). A no-op on
        local and in-memory stores. A :class:`Store` passed in is wrapped only
        when ``cache`` is given here.
    options:
        Passed to the backend: ``read_only``, ``concurrency``,
        ``max_object_size`` for every backend; ``endpoint_url``, ``region``,
        ``profile``, ... for the S3 backends (see their docs). An option the
        backend does not take is refused.

    Raises
    ------
    ConfigurationError
        A bad URL, an unsupported scheme (before any network access), an
        option the backend does not take, or an invalid ``DOCUMEE_*`` variable
        (named, its value never shown).
    """
    if isinstance(url, Store):
        if options or backend or settings is not None:
            raise ConfigurationError("options cannot be applied to an already open store")
        return url if cache is None else with_cache(url, cache)
    if settings is None:
        settings = Settings.load()
    store = _open(url, backend, settings, options)
    if cache is None and not (settings.cache or settings.cache_dir):
        return store  # the cache's module is not even imported when it is off
    return with_cache(store, cache, settings)


def with_cache(store: Store, cache: CacheArg, settings: Settings | None = None) -> Store:
    """``store`` read through the cache ``cache`` asks for (see :func:`open_store`)."""
    from ._cache_config import with_cache as wrap

    return wrap(store, cache, settings)


def _open(
    url: str | os.PathLike[str] | None,
    backend: str | None,
    settings: Settings | None,
    options: dict[str, Any],
) -> Store:
    if settings is None:
        settings = Settings.load()
    if url is None:
        url = settings.store_url or DEFAULT_STORE_URL
    if isinstance(url, os.PathLike):
        url = os.fspath(url)
    if not isinstance(url, str) or not url:
        raise ConfigurationError(f"a store URL must be a non-empty string, not {url!r}")
    if backend is not None and backend not in BACKENDS:
        raise ConfigurationError(
            f"unknown backend {backend!r}; use one of " + ", ".join(repr(b) for b in BACKENDS)
        )
    scheme = url_scheme(url)
    if backend is not None and not backend_opens(backend, scheme):
        raise ConfigurationError(f"backend {backend!r} cannot open {_shown(url)}")
    options = settings.complete(url, {**options, "backend": backend})
    backend = options.pop("backend", None)
    if backend is None and scheme not in ("", *_NATIVE_SCHEMES, *_FSSPEC_SCHEMES):
        raise ConfigurationError(
            f"unsupported store URL {_shown(url)}: use a path or file://, memory://, "
            "s3:// (or s3a://), or with documee-remote[fsspec] "
            + ", ".join(f"{s}://" for s in _FSSPEC_SCHEMES)
            + "; other fsspec filesystems with backend='fsspec'"
        )
    _check_common(options)
    if backend in (None, "local") and scheme in ("", "file"):
        _check_names("LocalStore", options, _LOCAL_OPTIONS["local"])
        return LocalStore(_local_path(url), **options)
    if backend in (None, "memory") and scheme == "memory":
        _check_names("MemoryStore", options, _LOCAL_OPTIONS["memory"])
        return MemoryStore(url[len("memory://") :], **options)
    if backend in (None, "s3") and scheme in ("s3", "s3a"):
        from .s3 import S3Store

        return S3Store.from_url(url, **options)
    if backend == "obstore":
        from ._obstore import ObstoreStore

        return ObstoreStore.from_url(url, **options)
    from ._fsspec import FsspecStore

    return FsspecStore.from_url(url, **options)


def _check_common(options: dict[str, Any]) -> None:
    """The options every backend takes, checked here so a bad one is a ConfigurationError."""
    concurrency = options.get("concurrency")
    if concurrency is not None and (type(concurrency) is not int or concurrency < 1):
        raise ConfigurationError("concurrency must be a whole number of at least 1")
    size = options.get("max_object_size")
    if size is not None and (type(size) is not int or size < 0):
        raise ConfigurationError("max_object_size must be a whole number of bytes, or None")


def _check_names(cls: str, options: dict[str, Any], own: set[str]) -> None:
    unknown = sorted(set(options) - {*COMMON_STORE_OPTIONS, *own})
    if unknown:
        taken = ", ".join(sorted({*COMMON_STORE_OPTIONS, *own}))
        raise ConfigurationError(
            f"{cls} does not take {', '.join(unknown)} (it takes {taken}); "
            "S3 options apply to s3:// URLs only"
        )


def _shown(url: str) -> str:
    """``url`` for a message, without a user name or password it may carry."""
    if "://" not in url:
        return repr(url)
    scheme, rest = url.split("://", 1)
    netloc, sep, path = rest.partition("/")
    if "@" in netloc:
        netloc = "***@" + netloc.rsplit("@", 1)[1]
    return repr(f"{scheme}://{netloc}{sep}{path}")


def _local_path(url: str) -> str:
    if url.startswith("file://"):
        parts = urlsplit(url)
        if parts.netloc not in ("", "localhost"):
            raise ConfigurationError(f"file URLs must be local: {url!r}")
        if not parts.path:
            raise ConfigurationError(f"file URL has no path: {url!r}")
        return unquote(parts.path)
    return url
