"""How each kind of filesystem performs the store's operations: one driver per kind.

The S3 driver, which talks to s3fs's aiobotocore client, is in :mod:`.s3driver`.
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Awaitable, Callable, Coroutine, Iterable, Mapping
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, TypeVar

import fsspec
import fsspec.asyn

from ...errors import (
    DocumeeRemoteError,
    InvalidKeyError,
    ObjectTooLargeError,
    UnsupportedOperationError,
)
from .._aio import gather_bounded
from .._keys import validate_key
from ..base import (
    Capabilities,
    ObjectMeta,
    StoredObject,
    etag_of,
)
from ..local import LocalStore
from .errors import translate_error

if TYPE_CHECKING:
    from .store import FsspecStore

_T = TypeVar("_T")


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
        return self.run(gather_bounded, coros, self.store.concurrency)

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
