"""FsspecStore: any fsspec filesystem behind the :class:`Store` interface.

What each kind of filesystem can do, and how:

===================  =========================================  ================================
filesystem           conditional writes and deletes             ``get``: bytes and their ETag
===================  =========================================  ================================
s3fs (``s3://``)     S3's ``If-None-Match: *`` / ``If-Match``   one GetObject (S3's ETag of
                     headers: atomic on the service             exactly the bytes returned)
``file://``          delegated to :class:`LocalStore`: temp     delegated to :class:`LocalStore`
                     file + rename, checked under ``flock``
``memory://``        one lock per ``MemoryFileSystem.store``    MD5 of the bytes, same lock
                     dict, shared by every store over it
anything else        refused with ``UnsupportedOperationError``  MD5 of the bytes read
                     (``capabilities`` say so), never a
                     check-then-set race
===================  =========================================  ================================

No shared state between stores: :meth:`FsspecStore.from_url` creates its
filesystem with ``skip_instance_cache=True`` and ``use_listings_cache=False``,
so two stores never share a filesystem object, a connection pool or a stale
directory listing, even in a warm AWS Lambda container. Two exceptions are
fsspec's by design: its memory filesystem keeps one process-wide dict (pass
``storage_options={"global_store": False}`` for a private one), and its async
filesystems run on fsspec's one IO thread and event loop.

On s3fs the store calls the aiobotocore client that s3fs configured rather
than s3fs's file-system methods, because those hide what a conditional write
needs: they retry some requests themselves, ``_pipe_file`` drops ``IfMatch``
for multipart uploads and returns no ETag then, and errors come back collapsed
into ``OSError(EINVAL)`` and friends. What S3's answers mean (the error tables,
the 403 that hides a 404, the write token of conditional PUTs) is shared with
``S3Store`` in :mod:`._s3common`, so both S3 backends behave the same. Every
failure of every filesystem is translated by :func:`translate_error`.
"""

from __future__ import annotations

import asyncio
import errno
import itertools
import logging
import posixpath
import sys
import threading
from collections.abc import Awaitable, Callable, Coroutine, Iterable, Iterator, Mapping
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, TypeVar

from ..errors import (
    ConfigurationError,
    DocumeeRemoteError,
    InvalidKeyError,
    MissingDependencyError,
    NotFoundError,
    ObjectTooLargeError,
    PermissionDeniedError,
    PreconditionFailedError,
    ServiceUnavailableError,
    StorageFullError,
    StorageTimeoutError,
    UnsupportedOperationError,
)
from ..layout import validate_key
from . import _s3common as s3c
from ._s3common import DELETE_BATCH, S3Answer
from .base import (
    DEFAULT_CONCURRENCY,
    DEFAULT_MAX_OBJECT_SIZE,
    Capabilities,
    ObjectMeta,
    Store,
    StoredObject,
    etag_of,
    normalize_etag,
)

_INSTALL_HINT = "pip install 'documee-remote[fsspec]'"

try:
    import fsspec
    import fsspec.asyn
    from fsspec.implementations.local import LocalFileSystem
    from fsspec.implementations.memory import MemoryFileSystem
except ImportError as _exc:  # pragma: no cover - exercised only without the extra
    raise MissingDependencyError(f"FsspecStore needs fsspec: {_INSTALL_HINT}") from _exc

if TYPE_CHECKING:
    from ..config import S3Options
    from .local import LocalStore

__all__ = [
    "S3_OPTION_NAMES",
    "FsspecStore",
    "s3fs_storage_options",
    "translate_error",
]

_T = TypeVar("_T")

logger = logging.getLogger("documee_remote.stores.fsspec")

#: The S3 option names shared with the native S3 backend (fields of ``S3Options``).
S3_OPTION_NAMES = (
    "endpoint_url",
    "region",
    "profile",
    "role_arn",
    "external_id",
    "role_session_name",
    "sse",
    "sse_kms_key_id",
    "expected_bucket_owner",
    "max_pool_connections",
    "connect_timeout",
    "read_timeout",
    "retry_mode",
    "max_attempts",
    "addressing_style",
)


# -- error translation ---------------------------------------------------------------------------


def _s3_answer(exc: BaseException) -> S3Answer | None:
    """S3's answer behind ``exc``, if there is one.

    s3fs (and fsspec wrappers around it) re-raise S3's answers as OSError
    subclasses with the original ClientError as ``__cause__``; follow the
    chain so that the status code, not the collapsed errno, decides.
    """
    botocore_exceptions = sys.modules.get("botocore.exceptions")
    if botocore_exceptions is None:
        return None
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, botocore_exceptions.ClientError):
            call = str(getattr(current, "operation_name", "") or "")
            return s3c.answer_from_response(getattr(current, "response", None) or {}, call)
        current = current.__cause__ or current.__context__
    return None


def translate_error(
    exc: BaseException,
    *,
    store_url: str,
    operation: str,
    key: str | None = None,
    if_match: str | None = None,
    create_only: bool = False,
) -> DocumeeRemoteError:
    """Turn any filesystem's failure into the library's error tree.

    Every driver of :class:`FsspecStore` sends its exceptions here and raises
    the result ``from exc``; the arguments are those of
    ``documee_remote.stores.s3.translate_error``. S3's answers and botocore's
    exceptions are translated by :mod:`._s3common` exactly as for ``S3Store``;
    aiohttp's, timeouts and other filesystems' ``OSError`` are mapped by type.
    The result never contains object bodies or credentials.
    """
    if isinstance(exc, DocumeeRemoteError):
        return exc
    answer = _s3_answer(exc)
    if answer is not None:
        return s3c.translate(
            answer, store_url, operation, key, if_match=if_match, create_only=create_only
        )
    error = s3c.botocore_error(exc, store_url=store_url, operation=operation, key=key)
    if error is not None:
        return error
    at = s3c.where(store_url, key)
    if isinstance(exc, TimeoutError | fsspec.exceptions.FSTimeoutError):
        return StorageTimeoutError(f"timed out {s3c.doing(operation)} {at}", key=key)
    aiohttp = sys.modules.get("aiohttp")
    if aiohttp is not None and isinstance(exc, aiohttp.ClientError):
        # Dropped connections and truncated bodies while streaming a response.
        return ServiceUnavailableError(
            f"connection to the store failed on {at} ({type(exc).__name__})", key=key
        )
    if isinstance(exc, FileNotFoundError):
        if operation in ("put", "delete") and if_match is not None:
            return PreconditionFailedError(f"{at} does not exist (If-Match)", key=key)
        return NotFoundError(f"{at} not found", key=key)
    if isinstance(exc, PermissionError):
        return PermissionDeniedError(f"permission denied for {at}", key=key)
    if isinstance(exc, FileExistsError | IsADirectoryError | NotADirectoryError):
        # Filesystems with real directories cannot hold both "cb/a" and "cb/a/b".
        return InvalidKeyError(
            f"{at} cannot be stored on this filesystem: a key and a directory of the "
            "same name cannot both exist",
            key=key,
        )
    if isinstance(exc, ConnectionError):
        return ServiceUnavailableError(f"connection to the store failed on {at}: {exc}", key=key)
    if isinstance(exc, OSError):
        if exc.errno in (errno.ENOSPC, errno.EDQUOT):
            return StorageFullError(f"no space left for {at}", key=key)
        return DocumeeRemoteError(f"storage failed for {at}: {exc}", key=key)
    return DocumeeRemoteError(f"storage failed for {at}: {type(exc).__name__}: {exc}", key=key)


# -- S3 options -----------------------------------------------------------------------------


def s3fs_storage_options(options: S3Options, *, concurrency: int) -> dict[str, Any]:
    """Map the native S3 backend's options onto s3fs's ``storage_options``.

    ``role_arn`` becomes an aiobotocore session whose credentials come from
    STS AssumeRole and refresh themselves before they expire.
    ``max_pool_connections`` defaults to the store's ``concurrency`` so that
    bulk transfers do not queue for connections.
    """
    client_kwargs: dict[str, Any] = {}
    if options.endpoint_url:
        client_kwargs["endpoint_url"] = options.endpoint_url
    if options.region:
        client_kwargs["region_name"] = options.region
    config_kwargs: dict[str, Any] = {
        "max_pool_connections": options.max_pool_connections or max(10, concurrency),
        "connect_timeout": options.connect_timeout,
        "read_timeout": options.read_timeout,
        # total_max_attempts counts the first attempt, like AWS_MAX_ATTEMPTS and
        # like the native backend (botocore's "max_attempts" would count retries).
        "retries": {"mode": options.retry_mode, "total_max_attempts": options.max_attempts},
        "user_agent_extra": "documee-remote",
    }
    if options.addressing_style:
        config_kwargs["s3"] = {"addressing_style": options.addressing_style}
    additional: dict[str, Any] = {}
    if options.sse:
        additional["ServerSideEncryption"] = options.sse
    if options.sse_kms_key_id:
        additional["SSEKMSKeyId"] = options.sse_kms_key_id
    if options.expected_bucket_owner:
        additional["ExpectedBucketOwner"] = options.expected_bucket_owner
    storage: dict[str, Any] = {
        "client_kwargs": client_kwargs,
        "config_kwargs": config_kwargs,
        "s3_additional_kwargs": additional,
        # No process-wide sharing, no stale listings (see the module docstring).
        "skip_instance_cache": True,
        "use_listings_cache": False,
    }
    if options.role_arn:
        storage["session"] = _assume_role_session(options)
    elif options.profile:
        storage["profile"] = options.profile
    return storage


def _assume_role_session(options: S3Options) -> Any:
    """An aiobotocore session whose credentials come from AssumeRole and refresh themselves.

    The source credentials are the usual chain (or ``profile``). As in the
    native backend, STS is found by botocore's own resolution
    (``AWS_ENDPOINT_URL_STS``, regional endpoints), never at the S3
    ``endpoint_url``.
    """
    from aiobotocore.credentials import (
        AioAssumeRoleCredentialFetcher,
        AioCredentialResolver,
        AioDeferredRefreshableCredentials,
    )
    from aiobotocore.session import AioSession
    from botocore.credentials import CredentialProvider
    from botocore.exceptions import NoCredentialsError

    source = AioSession(profile=options.profile) if options.profile else AioSession()
    extra_args: dict[str, Any] = {"RoleSessionName": options.role_session_name}
    if options.external_id is not None:
        extra_args["ExternalId"] = options.external_id
    region = options.region

    def create_sts(service: str, **kwargs: Any) -> Any:
        return source.create_client(service, region_name=region, **kwargs)

    role_arn = options.role_arn

    class _AssumedRole(CredentialProvider):  # the async resolver awaits load()
        METHOD = "assume-role"
        CANONICAL_NAME = "documee-remote-assume-role"

        async def load(self) -> Any:
            source_credentials = await source.get_credentials()
            if source_credentials is None:
                raise NoCredentialsError()
            fetcher = AioAssumeRoleCredentialFetcher(
                client_creator=create_sts,
                source_credentials=source_credentials,
                role_arn=role_arn,
                extra_args=extra_args,
            )
            # Deferred: the first request fetches, and botocore refreshes shortly
            # before expiry, so a long-lived store never signs with stale keys.
            return AioDeferredRefreshableCredentials(
                refresh_using=fetcher.fetch_credentials, method=self.METHOD
            )

    session = AioSession()
    # The resolver is the public way to replace where a session gets credentials.
    session.register_component("credential_provider", AioCredentialResolver([_AssumedRole()]))
    return session


def _merge_storage_options(base: dict[str, Any], extra: Mapping[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for name, value in extra.items():
        if name in ("client_kwargs", "config_kwargs", "s3_additional_kwargs") and isinstance(
            value, Mapping
        ):
            merged[name] = {**merged.get(name, {}), **value}
        else:
            merged[name] = value
    return merged


# -- helpers -----------------------------------------------------------------------------------

# MemoryFileSystem keeps its objects in one dict, class-wide (or per instance with
# global_store=False): conditional writes serialise on that dict, so its lock is keyed
# by id(fs.store) (dicts cannot be weakly referenced), the module's one process-wide
# state. Should a freed dict's id be reused, two stores share a lock: never less safe.
_MEMORY_LOCKS: dict[int, threading.Lock] = {}
_MEMORY_LOCKS_GUARD = threading.Lock()


def _memory_lock(store_dict: object) -> threading.Lock:
    with _MEMORY_LOCKS_GUARD:
        return _MEMORY_LOCKS.setdefault(id(store_dict), threading.Lock())


def _is_s3fs(fs: Any) -> bool:
    # s3fs can only be in play if something imported it; never import it just to check.
    s3fs = sys.modules.get("s3fs")
    return s3fs is not None and isinstance(fs, s3fs.S3FileSystem)


def _is_async(fs: Any) -> bool:
    """Can the store run ``fs``'s coroutines on its loop (async-capable, not ``asynchronous``)?"""
    if not getattr(fs, "async_impl", False) or getattr(fs, "asynchronous", False):
        return False
    # Wrappers such as DirFileSystem claim async_impl but are only as async as
    # the filesystem they wrap.
    inner = getattr(fs, "fs", None)
    return _is_async(inner) if isinstance(inner, fsspec.AbstractFileSystem) else True


def _to_datetime(value: Any) -> datetime | None:
    if isinstance(value, datetime):
        return value if value.tzinfo is not None else value.replace(tzinfo=UTC)
    if isinstance(value, int | float):
        return datetime.fromtimestamp(value, UTC)
    if isinstance(value, str):
        try:
            parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            return None
        return _to_datetime(parsed)
    return None


# -- drivers: one per kind of filesystem ----------------------------------------------------------


class _Driver:
    """How one kind of filesystem performs the store's operations on full paths."""

    capabilities = Capabilities(atomic_conditional_writes=False, conditional_delete=False)

    def __init__(self, store: FsspecStore) -> None:
        self.store = store
        self.fs = store.fs

    def error(
        self,
        exc: BaseException,
        key: str | None,
        operation: str,
        *,
        if_match: str | None = None,
        create_only: bool = False,
    ) -> DocumeeRemoteError:
        return translate_error(
            exc,
            store_url=self.store.url,
            operation=operation,
            key=key,
            if_match=if_match,
            create_only=create_only,
        )

    def run(self, coro_fn: Callable[..., Coroutine[Any, Any, _T]], *args: Any) -> _T:
        """Run a coroutine of an async filesystem on its event loop and wait for it."""
        result: _T = fsspec.asyn.sync(self.fs.loop, coro_fn, *args)
        return result

    def gather(self, coros: Iterable[Awaitable[_T]]) -> list[_T]:
        """Await ``coros`` on the loop, ``concurrency`` at a time; then raise the first error."""

        async def all_of() -> list[_T | BaseException]:
            semaphore = asyncio.Semaphore(self.store.concurrency)

            async def one(coro: Awaitable[_T]) -> _T:
                async with semaphore:
                    return await coro

            return await asyncio.gather(*(one(c) for c in coros), return_exceptions=True)

        results = self.run(all_of)
        for result in results:
            if isinstance(result, BaseException):
                raise result
        return [r for r in results if not isinstance(r, BaseException)]

    def get(self, key: str) -> StoredObject:
        raise NotImplementedError

    def head(self, key: str) -> ObjectMeta:
        raise NotImplementedError

    def put(self, key: str, data: bytes, if_match: str | None, create_only: bool) -> str:
        raise NotImplementedError

    def delete(self, key: str, if_match: str | None) -> None:
        raise NotImplementedError

    def list_keys(self, prefix: str) -> list[str]:
        raise NotImplementedError

    # Bulk operations: None means "use the Store's thread pool".
    def get_many(self, keys: list[str]) -> dict[str, StoredObject | None] | None:
        return None

    def put_many(self, items: dict[str, bytes]) -> dict[str, str] | None:
        return None

    def delete_many(self, keys: list[str], conditions: dict[str, str]) -> list[str] | None:
        return None

    def list_meta(self, prefix: str) -> list[ObjectMeta] | None:
        return None

    def close(self) -> None:
        return None


class _FilesystemDriver(_Driver):
    """Any fsspec filesystem through its public API; no conditional writes."""

    def path(self, key: str) -> str:
        return self.store._path(key)

    def _too_large(self, key: str, size: int) -> ObjectTooLargeError:
        return ObjectTooLargeError(
            f"{key!r} is {size} bytes, over this store's limit of {self.store.max_object_size}",
            key=key,
        )

    def _read(self, key: str) -> bytes:
        path = self.path(key)
        try:
            limit = self.store.max_object_size
            if limit is not None:
                size = self.fs.size(path)
                if size is not None and size > limit:
                    raise self._too_large(key, size)
            data = self.fs.cat_file(path)
        except DocumeeRemoteError:
            raise
        except Exception as exc:
            raise self.error(exc, key, "get") from exc
        data = bytes(data)
        # The object may have grown between size() and cat_file().
        if self.store.max_object_size is not None and len(data) > self.store.max_object_size:
            raise self._too_large(key, len(data))
        return data

    def get(self, key: str) -> StoredObject:
        data = self._read(key)
        return StoredObject(data=data, etag=etag_of(data))

    def head(self, key: str) -> ObjectMeta:
        path = self.path(key)
        try:
            info = self.fs.info(path)
            if info.get("type") == "directory":
                raise FileNotFoundError(path)
            # The ETag is the MD5 of the bytes, so a head has to read them.
            data = bytes(self.fs.cat_file(path))
            modified = self._modified(path, info)
        except DocumeeRemoteError:
            raise
        except Exception as exc:
            raise self.error(exc, key, "head") from exc
        return ObjectMeta(key=key, etag=etag_of(data), size=len(data), last_modified=modified)

    def _modified(self, path: str, info: Mapping[str, Any]) -> datetime:
        for name in ("LastModified", "last_modified", "mtime", "modified", "updated", "created"):
            found = _to_datetime(info.get(name))
            if found is not None:
                return found
        try:
            found = _to_datetime(self.fs.modified(path))
        except (NotImplementedError, AttributeError):
            found = None
        return found if found is not None else datetime.now(UTC)

    def _unsupported(self, key: str, what: str) -> UnsupportedOperationError:
        return UnsupportedOperationError(
            f"{type(self.fs).__name__} cannot {what} atomically, so {self.store.url} refuses "
            f"it for {key!r} rather than racing other writers (see the store's capabilities); "
            "use s3://, file:// or memory://, or write unconditionally",
            key=key,
        )

    def put(self, key: str, data: bytes, if_match: str | None, create_only: bool) -> str:
        if if_match is not None or create_only:
            raise self._unsupported(key, "write conditionally")
        self._write(key, data)
        return etag_of(data)

    def _write(self, key: str, data: bytes) -> None:
        path = self.path(key)
        try:
            try:
                self.fs.pipe_file(path, data)
            except FileNotFoundError:
                # Filesystems with real directories need the parent first.
                self.fs.makedirs(self.fs._parent(path), exist_ok=True)
                self.fs.pipe_file(path, data)
        except DocumeeRemoteError:
            raise
        except Exception as exc:
            raise self.error(exc, key, "put") from exc

    def delete(self, key: str, if_match: str | None) -> None:
        if if_match is not None:
            raise self._unsupported(key, "delete conditionally")
        self._remove(key)

    def _remove(self, key: str) -> None:
        try:
            self.fs.rm_file(self.path(key))
        except FileNotFoundError:
            return  # deleting a missing key is a no-op, as on S3
        except DocumeeRemoteError:
            raise
        except Exception as exc:
            raise self.error(exc, key, "delete") from exc

    def list_keys(self, prefix: str) -> list[str]:
        # Start from the deepest directory the prefix names completely.
        head = prefix.rpartition("/")[0]
        start = self.path(head) if head else self.store._base.rstrip("/") or self.store._base
        base = self.store._base
        try:
            found = self.fs.find(start, detail=True)
        except FileNotFoundError:
            return []
        except DocumeeRemoteError:
            raise
        except Exception as exc:
            raise self.error(exc, prefix or None, "list") from exc
        keys = []
        for name, info in found.items():
            if info.get("type") != "file" or not name.startswith(base):
                continue
            key = name[len(base) :]
            if not key.startswith(prefix):
                continue
            try:
                validate_key(key)
            except InvalidKeyError:
                continue  # temporary files (".x") and names this store cannot address
            keys.append(key)
        keys.sort()
        return keys


class _AsyncFilesystemDriver(_FilesystemDriver):
    """An async-capable filesystem (gcsfs, adlfs, ...): bulk transfers gathered on its loop."""

    async def _aget(self, key: str) -> StoredObject | None:
        path = self.path(key)
        try:
            limit = self.store.max_object_size
            if limit is not None:
                size = (await self.fs._info(path)).get("size")
                if size is not None and size > limit:
                    raise self._too_large(key, size)
            data = bytes(await self.fs._cat_file(path))
        except FileNotFoundError:
            return None
        except DocumeeRemoteError:
            raise
        except Exception as exc:
            raise self.error(exc, key, "get") from exc
        if self.store.max_object_size is not None and len(data) > self.store.max_object_size:
            raise self._too_large(key, len(data))
        return StoredObject(data=data, etag=etag_of(data))

    async def _aput(self, key: str, data: bytes) -> str:
        try:
            await self.fs._pipe_file(self.path(key), data)
        except DocumeeRemoteError:
            raise
        except Exception as exc:
            raise self.error(exc, key, "put") from exc
        return etag_of(data)

    async def _adelete(self, key: str) -> None:
        try:
            await self.fs._rm_file(self.path(key))
        except FileNotFoundError:
            return
        except DocumeeRemoteError:
            raise
        except Exception as exc:
            raise self.error(exc, key, "delete") from exc

    def get_many(self, keys: list[str]) -> dict[str, StoredObject | None]:
        return dict(zip(keys, self.gather(self._aget(k) for k in keys), strict=True))

    def put_many(self, items: dict[str, bytes]) -> dict[str, str]:
        etags = self.gather(self._aput(k, v) for k, v in items.items())
        return dict(zip(items, etags, strict=True))

    def delete_many(self, keys: list[str], conditions: dict[str, str]) -> list[str] | None:
        if conditions:
            return None  # the Store's default refuses them key by key, like delete()
        self.gather(self._adelete(k) for k in keys)
        return []


class _MemoryDriver(_FilesystemDriver):
    """fsspec's MemoryFileSystem, with conditional writes made atomic by a shared lock.

    Every operation of every store over the same ``fs.store`` dict holds the
    same lock (see ``_memory_lock``), exactly as :class:`MemoryStore` does. Code
    that writes to the filesystem without going through a store bypasses it.
    """

    capabilities = Capabilities(atomic_conditional_writes=True, conditional_delete=True)

    def __init__(self, store: FsspecStore) -> None:
        super().__init__(store)
        self.lock = _memory_lock(self.fs.store)

    def _current_etag(self, key: str) -> str | None:
        path = self.path(key)
        if not self.fs.isfile(path):
            return None
        return etag_of(bytes(self.fs.cat_file(path)))

    def get(self, key: str) -> StoredObject:
        # MemoryFile objects are shared BytesIOs: reading moves their position.
        with self.lock:
            return super().get(key)

    def head(self, key: str) -> ObjectMeta:
        with self.lock:
            return super().head(key)

    def put(self, key: str, data: bytes, if_match: str | None, create_only: bool) -> str:
        with self.lock:
            current = self._current_etag(key)
            if create_only and current is not None:
                raise self.store._already_exists(key)
            if if_match is not None and current != if_match:
                raise self.store._precondition_failed(key, if_match)
            self._write(key, data)
        return etag_of(data)

    def delete(self, key: str, if_match: str | None) -> None:
        with self.lock:
            if if_match is not None and self._current_etag(key) != if_match:
                raise self.store._precondition_failed(key, if_match)
            self._remove(key)

    def list_keys(self, prefix: str) -> list[str]:
        with self.lock:
            return super().list_keys(prefix)


class _LocalDriver(_Driver):
    """fsspec's LocalFileSystem: every operation goes to a :class:`LocalStore` on the same root.

    LocalStore writes through a temporary file, fsync and rename, and checks
    conditions under ``flock`` on the directory, which is a compare-and-swap
    across processes; reimplementing that on fsspec's local API would be
    weaker for no gain.
    """

    def __init__(self, store: FsspecStore) -> None:
        super().__init__(store)
        from .local import LocalStore

        self.local: LocalStore = LocalStore(
            store._root,
            read_only=store.read_only,
            concurrency=store.concurrency,
            max_object_size=store.max_object_size,
        )
        self.capabilities = self.local.capabilities

    def get(self, key: str) -> StoredObject:
        return self.local.get(key)

    def head(self, key: str) -> ObjectMeta:
        return self.local.head(key)

    def put(self, key: str, data: bytes, if_match: str | None, create_only: bool) -> str:
        return self.local.put(
            key, data, if_match=if_match, if_none_match="*" if create_only else None
        )

    def delete(self, key: str, if_match: str | None) -> None:
        self.local.delete(key, if_match=if_match)

    def list_keys(self, prefix: str) -> list[str]:
        return list(self.local.list(prefix))

    def close(self) -> None:
        self.local.close()


class _S3Driver(_Driver):
    """s3fs: S3's own conditional headers, native ETags, bulk requests gathered on s3fs's loop."""

    capabilities = Capabilities(
        atomic_conditional_writes=True, conditional_delete=True, native_etags=True
    )

    def __init__(self, store: FsspecStore) -> None:
        super().__init__(store)
        if getattr(self.fs, "asynchronous", False):
            raise ConfigurationError(
                "FsspecStore needs a synchronous S3FileSystem (asynchronous=False)"
            )
        bucket, prefix, _ = self.fs.split_path(store._root)
        if not bucket:
            raise ConfigurationError(f"{store.url}: an s3 URL needs a bucket")
        self.bucket: str = bucket
        self.prefix: str = prefix.strip("/") + "/" if prefix.strip("/") else ""

    # -- plumbing -----------------------------------------------------------------

    async def call(self, method: str, **kwargs: Any) -> Any:
        """Call the aiobotocore client s3fs configured, with no retry layer of s3fs's own.

        s3fs's ``s3_additional_kwargs`` (SSE, ExpectedBucketOwner) are added
        and filtered to what the operation accepts, as s3fs itself does.
        """
        await self.fs.set_session()
        client = await self.fs.get_s3(kwargs.get("Bucket"))
        bound = getattr(client, method)
        final = self.fs._get_s3_method_kwargs(bound, **kwargs)
        for condition in ("IfMatch", "IfNoneMatch"):
            # s3fs drops parameters the client does not know; an old botocore
            # must not turn a conditional request into an unconditional one.
            if condition in kwargs and condition not in final:
                raise UnsupportedOperationError(
                    f"this botocore does not know {condition} for {method}; upgrade botocore"
                )
        return await bound(**final)

    def s3_key(self, key: str) -> str:
        return self.prefix + key

    async def answer(
        self, exc: BaseException, key: str | None, operation: str, if_match: str | None
    ) -> S3Answer | None:
        """S3's answer behind ``exc``; a 403 a prefix listing shows to hide a 404 becomes one."""
        answer = _s3_answer(exc)
        if answer is None or key is None:
            return answer
        if s3c.may_hide_missing_key(answer, operation, key, if_match):
            full = self.s3_key(key)
            try:
                listing = await self.call(
                    "list_objects_v2", Bucket=self.bucket, Prefix=full, MaxKeys=1
                )
            except Exception:  # noqa: BLE001 - cannot tell: keep the permission error
                return answer
            if s3c.listing_shows_absent(listing, full):
                return s3c.missing_key(answer)
        return answer

    async def s3_error(
        self,
        exc: BaseException,
        key: str | None,
        operation: str,
        *,
        if_match: str | None = None,
        create_only: bool = False,
    ) -> DocumeeRemoteError:
        """``translate_error``, plus telling a 403 that hides a 404 from a real one."""
        answer = await self.answer(exc, key, operation, if_match)
        if answer is None:
            return self.error(exc, key, operation, if_match=if_match, create_only=create_only)
        url = self.store.url
        return s3c.translate(
            answer, url, operation, key, if_match=if_match, create_only=create_only
        )

    # -- single objects -----------------------------------------------------------------

    async def aget(self, key: str) -> StoredObject:
        # One GetObject: the ETag comes with exactly the bytes it describes.
        try:
            response = await self.call("get_object", Bucket=self.bucket, Key=self.s3_key(key))
            body = response["Body"]
            try:
                size = int(response.get("ContentLength") or 0)
                limit = self.store.max_object_size
                if limit is not None and size > limit:
                    raise ObjectTooLargeError(
                        f"{key!r} is {size} bytes, over this store's limit of {limit}", key=key
                    )
                data = bytes(await body.read())
            finally:
                body.close()
        except DocumeeRemoteError:
            raise
        except Exception as exc:
            raise await self.s3_error(exc, key, "get") from exc
        return StoredObject(data=data, etag=normalize_etag(response["ETag"]))

    async def aget_or_none(self, key: str) -> StoredObject | None:
        try:
            return await self.aget(key)
        except NotFoundError:
            return None

    async def ahead(self, key: str) -> ObjectMeta:
        try:
            response = await self.call("head_object", Bucket=self.bucket, Key=self.s3_key(key))
        except DocumeeRemoteError:
            raise
        except Exception as exc:
            raise await self.s3_error(exc, key, "head") from exc
        return ObjectMeta(
            key=key,
            etag=normalize_etag(response["ETag"]),
            size=int(response["ContentLength"]),
            last_modified=_to_datetime(response["LastModified"]) or datetime.now(UTC),
        )

    async def aput(self, key: str, data: bytes, if_match: str | None, create_only: bool) -> str:
        # put_object rather than s3fs's _pipe_file: _pipe_file switches to a
        # multipart upload for large bodies, which drops IfMatch and returns no ETag.
        extra, token = s3c.put_parameters(key, if_match=if_match, create_only=create_only)
        if token is not None:  # keep s3_additional_kwargs' metadata: ours would replace it
            extra["Metadata"] = {
                **self.fs.s3_additional_kwargs.get("Metadata", {}),
                **extra["Metadata"],
            }
        try:
            response = await self.call(
                "put_object", Bucket=self.bucket, Key=self.s3_key(key), Body=data, **extra
            )
        except DocumeeRemoteError:
            raise
        except Exception as exc:
            error = await self.s3_error(exc, key, "put", if_match=if_match, create_only=create_only)
            # resent=True: besides botocore's counted retries, aiohttp silently resends
            # an idempotent request (PUT is one) when a reused connection drops, so any
            # copy may have been sent twice; each such failure costs one HEAD.
            if token is not None and s3c.may_have_landed(error, resent=True):
                landed = await self._landed_etag(key, token)
                if landed is not None:
                    logger.info(s3c.LANDED_MESSAGE, key, self.store.url)
                    return landed
            raise error from exc
        return normalize_etag(response["ETag"])

    async def _landed_etag(self, key: str, token: str) -> str | None:
        try:
            response = await self.call("head_object", Bucket=self.bucket, Key=self.s3_key(key))
        except Exception:  # noqa: BLE001 - the original 412 is the error to report
            return None
        return s3c.landed_etag(response, token)

    async def adelete(self, key: str, if_match: str | None) -> None:
        conditions = {"IfMatch": if_match} if if_match is not None else {}
        try:
            await self.call("delete_object", Bucket=self.bucket, Key=self.s3_key(key), **conditions)
        except DocumeeRemoteError:
            raise
        except Exception as exc:
            answer = await self.answer(exc, key, "delete", if_match)
            if answer is None:
                raise self.error(exc, key, "delete", if_match=if_match) from exc
            if s3c.delete_landed(answer, if_match=if_match):
                logger.info("conditional delete of %r in %s landed on a retry", key, self.store.url)
                return
            raise s3c.translate(answer, self.store.url, "delete", key, if_match=if_match) from exc

    def get(self, key: str) -> StoredObject:
        return self.run(self.aget, key)

    def head(self, key: str) -> ObjectMeta:
        return self.run(self.ahead, key)

    def put(self, key: str, data: bytes, if_match: str | None, create_only: bool) -> str:
        return self.run(self.aput, key, data, if_match, create_only)

    def delete(self, key: str, if_match: str | None) -> None:
        self.run(self.adelete, key, if_match)

    # -- listing ------------------------------------------------------------------------

    async def alist(self, prefix: str) -> list[ObjectMeta]:
        found: list[ObjectMeta] = []
        kwargs: dict[str, Any] = {"Bucket": self.bucket, "Prefix": self.prefix + prefix}
        try:
            while True:
                page = await self.call("list_objects_v2", **kwargs)
                for item in page.get("Contents", ()):
                    key = item["Key"][len(self.prefix) :]
                    try:
                        validate_key(key)
                    except InvalidKeyError:
                        # Directory markers ("x/"), temporary files (".x") and other
                        # tools' odd names are not objects of this store.
                        continue
                    found.append(
                        ObjectMeta(
                            key=key,
                            etag=normalize_etag(item["ETag"]),
                            size=int(item["Size"]),
                            last_modified=_to_datetime(item["LastModified"]) or datetime.now(UTC),
                        )
                    )
                token = page.get("NextContinuationToken")
                if not page.get("IsTruncated") or not token:
                    break
                kwargs["ContinuationToken"] = token
        except DocumeeRemoteError:
            raise
        except Exception as exc:
            raise self.error(exc, None, "list") from exc
        found.sort(key=lambda meta: meta.key)  # S3 lists in this order; S3-compatibles may not
        return found

    def list_keys(self, prefix: str) -> list[str]:
        return [meta.key for meta in self.run(self.alist, prefix)]

    def list_meta(self, prefix: str) -> list[ObjectMeta] | None:
        # ListObjectsV2 returns ETag, size and time with each key: no HEAD per object.
        return self.run(self.alist, prefix)

    # -- bulk ---------------------------------------------------------------------------

    def get_many(self, keys: list[str]) -> dict[str, StoredObject | None]:
        return dict(zip(keys, self.gather(self.aget_or_none(k) for k in keys), strict=True))

    def put_many(self, items: dict[str, bytes]) -> dict[str, str]:
        etags = self.gather(self.aput(k, v, None, False) for k, v in items.items())
        return dict(zip(items, etags, strict=True))

    def delete_many(self, keys: list[str], conditions: dict[str, str]) -> list[str] | None:
        plain = [k for k in keys if k not in conditions]
        batches = [plain[i : i + DELETE_BATCH] for i in range(0, len(plain), DELETE_BATCH)]
        conditional = [k for k in keys if k in conditions]

        async def conditional_delete(key: str) -> str | None:
            try:
                await self.adelete(key, conditions[key])
            except PreconditionFailedError:
                return key  # changed or vanished: kept, and reported to the caller
            return None

        results = self.gather(
            itertools.chain(
                (self._delete_batch(b) for b in batches),
                (conditional_delete(k) for k in conditional),
            )
        )
        return [r for r in results if r is not None]

    async def _delete_batch(self, batch: list[str]) -> None:
        objects = [{"Key": self.s3_key(k)} for k in batch]
        try:
            response = await self.call(
                "delete_objects", Bucket=self.bucket, Delete={"Objects": objects, "Quiet": True}
            )
        except DocumeeRemoteError:
            raise
        except Exception as exc:
            answer = _s3_answer(exc)
            if answer is not None and answer.code in s3c.DELETE_OBJECTS_UNSUPPORTED:
                for key in batch:
                    await self.adelete(key, None)
                return
            raise self.error(exc, None, "delete") from exc
        errors = response.get("Errors", ())
        url = self.store.url
        error = s3c.delete_objects_error(
            errors, batch=len(batch), prefix=self.prefix, store_url=url
        )
        if error is not None:
            raise error

    def close(self) -> None:
        if not self.store._owns_fs:
            return
        creator = getattr(self.fs, "_s3creator", None)
        if getattr(self.fs, "_s3", None) is not None and creator is not None:
            # Close the connection pool now rather than at garbage collection.
            try:
                self.fs.close_session(self.fs.loop, creator)
            finally:
                self.fs._s3 = None


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
        from ..redact import install_redaction

        install_redaction()
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
                    f"{_INSTALL_HINT} and the package for {scheme}"
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
            f"{protocol}:// through fsspec needs its package ({exc}); {_INSTALL_HINT}"
        ) from exc


def _s3_options(options: Mapping[str, Any]) -> S3Options:
    from ..config import S3Options

    # Raises ConfigurationError naming the fields, never echoing values (external_id).
    return S3Options.from_options(dict(options))
