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
==========================  ===========================  ==========================

Backends with optional dependencies are imported only when a URL asks for
them, so ``import documee_remote`` never imports boto3, s3fs, aiohttp or obstore.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote, urlsplit

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
    from .fsspec import FsspecStore
    from .obstore import ObstoreStore
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
    "FsspecStore": (".fsspec", "FsspecStore"),
    "ObstoreStore": (".obstore", "ObstoreStore"),
}

_BACKENDS = ("s3", "obstore", "fsspec", "local", "memory")


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        module, attr = _LAZY[name]
        return getattr(importlib.import_module(module, __name__), attr)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def open_store(url: str | Store, *, backend: str | None = None, **options: Any) -> Store:
    """Open a store from a URL.

    Parameters
    ----------
    url:
        ``file:///abs/path`` or a plain path, ``memory://``, ``s3://bucket/prefix``,
        or any URL fsspec understands. A :class:`Store` is returned unchanged.
    backend:
        ``"s3"`` (boto3, the default for ``s3://``), ``"obstore"`` (Rust; the
        fastest bulk transfers, same options and semantics) or ``"fsspec"``.
    options:
        Passed to the backend: ``read_only``, ``concurrency``,
        ``max_object_size`` for every backend; ``endpoint_url``, ``region``,
        ``profile``, ... for the S3 backends (see their docs).
    """
    if isinstance(url, Store):
        if options or backend:
            raise ConfigurationError("options cannot be applied to an already open store")
        return url
    if not isinstance(url, str) or not url:
        raise ConfigurationError(f"a store URL must be a non-empty string, not {url!r}")
    scheme = urlsplit(url).scheme.lower() if "://" in url else ""
    if backend is not None and backend not in _BACKENDS:
        raise ConfigurationError(
            f"unknown backend {backend!r}; use one of " + ", ".join(repr(b) for b in _BACKENDS)
        )
    if scheme in ("", "file") and backend in (None, "local"):
        return LocalStore(_local_path(url), **options)
    if scheme == "memory" and backend in (None, "memory"):
        return MemoryStore(url[len("memory://") :], **options)
    if scheme in ("s3", "s3a") and backend in (None, "s3"):
        from .s3 import S3Store

        return S3Store.from_url(url, **options)
    if scheme in ("s3", "s3a") and backend == "obstore":
        from .obstore import ObstoreStore

        return ObstoreStore.from_url(url, **options)
    if backend in (None, "fsspec"):
        from .fsspec import FsspecStore

        return FsspecStore.from_url(url, **options)
    raise ConfigurationError(f"backend {backend!r} cannot open {url!r}")


def _local_path(url: str) -> str:
    if url.startswith("file://"):
        parts = urlsplit(url)
        if parts.netloc not in ("", "localhost"):
            raise ConfigurationError(f"file URLs must be local: {url!r}")
        if not parts.path:
            raise ConfigurationError(f"file URL has no path: {url!r}")
        return unquote(parts.path)
    return url
