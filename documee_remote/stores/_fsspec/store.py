"""FsspecStore: any fsspec filesystem behind the :class:`~..base.Store` interface.

See :mod:`documee_remote.stores._fsspec` for what each kind of filesystem can do.
"""

from __future__ import annotations

import posixpath
from collections.abc import Iterator, Mapping
from typing import Any

import fsspec
import fsspec.asyn
from fsspec.implementations.local import LocalFileSystem
from fsspec.implementations.memory import MemoryFileSystem

from ... import redact
from ...config import S3Options
from ...errors import (
    ConfigurationError,
    DocumeeRemoteError,
    MissingDependencyError,
)
from ..base import (
    DEFAULT_CONCURRENCY,
    DEFAULT_MAX_OBJECT_SIZE,
    ObjectMeta,
    Store,
    StoredObject,
)
from .drivers import (
    _AsyncFilesystemDriver,
    _Driver,
    _FilesystemDriver,
    _is_async,
    _is_s3fs,
    _LocalDriver,
    _MemoryDriver,
)
from .errors import FSSPEC_INSTALL_HINT
from .s3driver import _S3Driver
from .s3options import S3_OPTION_NAMES, _merge_storage_options, s3fs_storage_options

# -- the store -----------------------------------------------------------------------------------


class FsspecStore(Store):
    """A store on any fsspec filesystem.

    Parameters
    ----------
    fs:
        An fsspec filesystem instance. It is used as given: build it with
        ``skip_instance_cache=True`` to keep it private (``from_url`` does).
    root:
        The directory, bucket or ``bucket/prefix`` holding the keys, in the
        filesystem's own path syntax (with or without its protocol).
    **options:
        ``read_only``, ``concurrency``, ``max_object_size``: see :class:`Store`.

    What the store can do depends on the filesystem; see the module docstring
    and :attr:`capabilities`.
    """

    def __init__(self, fs: Any, root: str, **options: Any) -> None:
        super().__init__(**options)
        # s3fs and aiobotocore log request headers (tokens) at DEBUG; scrub them.
        redact.install_redaction()
        if not isinstance(fs, fsspec.AbstractFileSystem):
            raise ConfigurationError(
                f"FsspecStore needs an fsspec filesystem, not {type(fs).__name__}"
            )
        self.fs = fs
        self._owns_fs = False
        self._root: str = fs._strip_protocol(root)
        if isinstance(self._root, list):  # pragma: no cover - defensive
            raise ConfigurationError(f"root must be one path, not {root!r}")
        # The full path of key "x" minus "x": the prefix every full path starts with.
        self._base: str = fs._strip_protocol(posixpath.join(self._root, "x"))[:-1]
        self._driver = self._make_driver()
        self.capabilities = self._driver.capabilities

    def _make_driver(self) -> _Driver:
        if _is_s3fs(self.fs):
            return _S3Driver(self)
        if isinstance(self.fs, LocalFileSystem):
            return _LocalDriver(self)
        if isinstance(self.fs, MemoryFileSystem):
            return _MemoryDriver(self)
        if _is_async(self.fs):
            return _AsyncFilesystemDriver(self)
        return _FilesystemDriver(self)

    @classmethod
    def from_url(
        cls,
        url: str,
        *,
        storage_options: Mapping[str, Any] | None = None,
        read_only: bool = False,
        concurrency: int = DEFAULT_CONCURRENCY,
        max_object_size: int | None = DEFAULT_MAX_OBJECT_SIZE,
        **options: Any,
    ) -> FsspecStore:
        """Open a store from a URL fsspec understands.

        Parameters
        ----------
        url:
            ``s3://bucket/prefix``, ``memory://name``, ``file:///abs/path``,
            ``gs://bucket/prefix``, ... The path part becomes the root.
        storage_options:
            Extra options for the fsspec filesystem, passed through as they
            are (merged into ``client_kwargs``, ``config_kwargs`` and
            ``s3_additional_kwargs`` for s3).
        read_only, concurrency, max_object_size:
            See :class:`Store`.
        **options:
            For ``s3://`` URLs only: the native S3 backend's options
            (:data:`S3_OPTION_NAMES`; see ``documee_remote.config.S3Options``),
            mapped onto s3fs by :func:`s3fs_storage_options`.

        Raises
        ------
        ConfigurationError
            An unknown option, or an S3 option for a non-S3 URL.
        MissingDependencyError
            The filesystem's package (s3fs, gcsfs, ...) is not installed.
        """
        if not isinstance(url, str) or "://" not in url:
            raise ConfigurationError("FsspecStore needs a URL with a scheme, like s3://bucket/p")
        scheme, rest = url.split("://", 1)
        scheme = scheme.lower()
        if "@" in rest.split("/", 1)[0]:
            # Never echo such a URL: the part before "@" would be a credential.
            raise ConfigurationError(
                f"{scheme}:// URLs must not carry credentials; use storage_options or the "
                "usual credential chain"
            )
        unknown = sorted(set(options) - set(S3_OPTION_NAMES))
        if unknown:
            raise ConfigurationError(
                f"unknown option(s) for FsspecStore: {', '.join(unknown)}; pass filesystem "
                "options as storage_options={...}"
            )
        store_options = {
            "read_only": read_only,
            "concurrency": concurrency,
            "max_object_size": max_object_size,
        }
        extra = dict(storage_options or {})
        if scheme in ("s3", "s3a"):
            fs_class = _filesystem_class("s3")  # first: MissingDependencyError if no s3fs
            fs_options = _merge_storage_options(
                s3fs_storage_options(_s3_options(options), concurrency=concurrency), extra
            )
            try:
                fs = fs_class(**fs_options)
            except DocumeeRemoteError:
                raise
            except Exception as exc:
                raise ConfigurationError(
                    f"cannot configure s3fs: {type(exc).__name__}: {exc}"
                ) from exc
            root = rest
        else:
            if options:
                raise ConfigurationError(
                    f"S3 options ({', '.join(sorted(options))}) do not apply to {scheme}:// URLs"
                )
            fs_options = {"skip_instance_cache": True, "use_listings_cache": False, **extra}
            try:
                fs, root = fsspec.core.url_to_fs(url, **fs_options)
            except ImportError as exc:
                raise MissingDependencyError(
                    f"{scheme}:// needs a package fsspec could not import ({exc}); "
                    f"{FSSPEC_INSTALL_HINT} and the package for {scheme}"
                ) from exc
            except ValueError as exc:
                raise ConfigurationError(f"fsspec cannot open this {scheme}:// URL: {exc}") from exc
        store = cls(fs, root, **store_options)
        store._owns_fs = True
        return store

    @property
    def url(self) -> str:
        if _is_s3fs(self.fs):
            return f"s3://{self._root}"
        url: str = self.fs.unstrip_protocol(self._root)
        return url

    def _path(self, key: str) -> str:
        return self._base + key

    # -- the operations ------------------------------------------------------------

    def _get(self, key: str) -> StoredObject:
        return self._driver.get(key)

    def _get_if_none_match(self, key: str, etag: str) -> StoredObject:
        # S3 through s3fs has a conditional GET; other filesystems read and compare.
        conditional = getattr(self._driver, "get_if_none_match", None)
        if conditional is None:
            return super()._get_if_none_match(key, etag)
        result: StoredObject = conditional(key, etag)
        return result

    def _head(self, key: str) -> ObjectMeta:
        return self._driver.head(key)

    def _put(self, key: str, data: bytes, *, if_match: str | None, create_only: bool) -> str:
        return self._driver.put(key, data, if_match, create_only)

    def _delete(self, key: str, *, if_match: str | None) -> None:
        self._driver.delete(key, if_match)

    def _list(self, prefix: str) -> Iterator[str]:
        return iter(self._driver.list_keys(prefix))

    # -- bulk: batched on async filesystems ------------------------------------------

    def _get_many(self, keys: list[str]) -> dict[str, StoredObject | None]:
        # On async filesystems (s3fs, ...) the requests run on the
        # filesystem's event loop, ``concurrency`` at a time, not a thread each.
        found = self._driver.get_many(keys)
        return found if found is not None else super()._get_many(keys)

    def _put_many(self, items: dict[str, bytes]) -> dict[str, str]:
        etags = self._driver.put_many(items)
        return etags if etags is not None else super()._put_many(items)

    def _delete_many(self, keys: list[str], conditions: dict[str, str]) -> list[str]:
        # On S3, unconditional deletes go 1,000 keys per DeleteObjects request
        # and conditional ones are gathered on the event loop.
        kept = self._driver.delete_many(keys, conditions)
        return kept if kept is not None else super()._delete_many(keys, conditions)

    def _list_meta(self, prefix: str) -> Iterator[ObjectMeta]:
        found = self._driver.list_meta(prefix)
        return iter(found) if found is not None else super()._list_meta(prefix)

    def close(self) -> None:
        """Release the filesystem's connections if this store created it."""
        if not self._closed:
            self._driver.close()
        super().close()


def _filesystem_class(protocol: str) -> Any:
    """fsspec's class for ``protocol``, importing its package (s3fs, ...) only now."""
    try:
        return fsspec.get_filesystem_class(protocol)
    except ImportError as exc:
        raise MissingDependencyError(
            f"{protocol}:// through fsspec needs its package ({exc}); {FSSPEC_INSTALL_HINT}"
        ) from exc


def _s3_options(options: Mapping[str, Any]) -> S3Options:
    # Raises ConfigurationError naming the fields, never echoing values (external_id).
    return S3Options.from_options(dict(options))
