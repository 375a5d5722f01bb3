"""The read cache: a two-level (memory, disk) cache of object bodies, revalidated by ETag.

:class:`ReadCache` keeps bodies by ``(store identity, key)`` with the ETag they
were read at; :class:`CachingStore` wraps any remote store and reads through
it. It never serves stale data:

* **Mutable objects** (``analysis.json``, ``file_hashes.json``, per-file
  objects, anything not below) are revalidated on every read with a
  conditional GET (``If-None-Match: <cached ETag>``). The service answers 304
  with no body when the cached bytes are current, else the new bytes.
* **Journal deltas** (``<codebase>/_journal/<seq>.json`` and
  ``<codebase>/_journal/w<ms>-<random>.json``) are immutable by
  construction (created with ``If-None-Match: *``, never rewritten) and served
  without a request, but only when the store's latest listing of the journal
  (which every reader makes before it reads deltas) showed the key with the
  cached ETag: a codebase deleted and begun again reuses legacy sequence
  numbers, and its new deltas have other ETags. Without such a listing they are revalidated
  like the rest.

Concurrent reads of one key share one fetch (single flight) that starts after
every reader sharing it arrived, so none of them can be handed an answer older
than its own call; a burst of readers costs at most two requests, the second
one conditional.

On disk an entry is one file: a header (the ETag, the body's length and
CRC-32, the store identity's digest) and the body, written to a temporary file,
fsynced and renamed over the final name, so a reader (in this process or
another sharing the directory) sees a whole entry or none. An entry that does
not check out (truncated, garbled, another format) is ignored, removed and
fetched again. Eviction (least recently used first, by modification time,
which a hit refreshes) keeps the directory under ``max_bytes``. The directory
is created ``0700``: entries are bodies of objects this user may read.

Nothing here imports the domain (layout, journal, models): the journal's key
shapes are matched by :data:`IMMUTABLE_KEY`, checked against
``journal.delta_key`` and ``journal.named_key`` by the tests.
"""

from __future__ import annotations

import builtins
import contextlib
import hashlib
import json
import logging
import os
import re
import sys
import tempfile
import threading
import time
import zlib
from collections import OrderedDict
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Generic, TypeVar

from ..errors import ConfigurationError, NotFoundError, NotModifiedError
from .base import ObjectMeta, Store, StoredObject

__all__ = [
    "DEFAULT_MAX_BYTES",
    "DEFAULT_MEMORY_BYTES",
    "IMMUTABLE_KEY",
    "CacheInfo",
    "CacheStats",
    "CachingStore",
    "ReadCache",
    "default_cache_dir",
    "store_identity",
]

logger = logging.getLogger("documee_remote.cache")

#: The disk level's bound unless told otherwise (``DOCUMEE_CACHE_MAX_BYTES``).
DEFAULT_MAX_BYTES = 1 << 30
#: The memory level's bound (bodies, and parsed results weighed by their body's size).
DEFAULT_MEMORY_BYTES = 256 << 20

#: Journal deltas: ``<codebase>/_journal/<20 digits>.json`` (``journal.delta_key``) and
#: ``<codebase>/_journal/w<13 digits>-<16 hex>.json`` (``journal.named_key``).
IMMUTABLE_KEY = re.compile(r"(?:\A|/)_journal/(?:[0-9]{20}|w[0-9]{13}-[0-9a-f]{16})\.json\Z")

_MAGIC = b"documee-remote-cache 1\n"
_SUFFIX = ".entry"
_TMP_PREFIX = ".tmp-"
#: Temporary files older than this are a crashed writer's and are removed by eviction.
_STALE_TMP_SECONDS = 3600.0
#: How many listed ETags of immutable keys a CachingStore remembers.
_LISTED_MAX = 65536

_T = TypeVar("_T")


def default_cache_dir() -> Path:
    """Where the cache lives unless told: the platform's per-user cache directory.

    ``/tmp/documee-remote-cache`` on AWS Lambda (the only writable place there,
    detected by ``AWS_LAMBDA_FUNCTION_NAME``); ``%LOCALAPPDATA%\\documee-remote\\Cache``
    on Windows; ``~/Library/Caches/documee-remote`` on macOS; else
    ``$XDG_CACHE_HOME/documee-remote`` (default ``~/.cache``).
    """
    if os.environ.get("AWS_LAMBDA_FUNCTION_NAME"):
        return Path(tempfile.gettempdir()) / "documee-remote-cache"
    if sys.platform == "win32":
        base = os.environ.get("LOCALAPPDATA") or str(Path.home() / "AppData" / "Local")
        return Path(base) / "documee-remote" / "Cache"
    if sys.platform == "darwin":
        return Path.home() / "Library" / "Caches" / "documee-remote"
    xdg = os.environ.get("XDG_CACHE_HOME")
    base_dir = Path(xdg) if xdg and os.path.isabs(xdg) else Path.home() / ".cache"
    return base_dir / "documee-remote"


def store_identity(store: Store) -> str:
    """What tells stores apart in cache keys: backend endpoint, bucket and prefix.

    The store's URL (``s3://bucket/prefix/``, no credentials) and its endpoint
    (``endpoint_url`` of the S3 backends; AWS when none), so two stores never
    share entries. Only its digest is ever written to disk.
    """
    options = getattr(store, "options", None)
    endpoint = getattr(options, "endpoint_url", None) or ""
    return f"{endpoint}\n{store.url}"


@dataclass(slots=True)
class CacheStats:
    """Counters of one :class:`ReadCache` in this process (for tests, benchmarks, ``info``)."""

    memory_hits: int = 0
    disk_hits: int = 0
    #: Conditional GETs answered 304: the cached bytes were current.
    revalidated: int = 0
    #: Immutable keys served without a request.
    unrequested: int = 0
    #: Bodies fetched (absent from the cache, or changed).
    fetched: int = 0
    #: Parsed results handed out from memory.
    parsed_hits: int = 0
    #: Disk entries that did not check out and were dropped.
    corrupt: int = 0
    evicted: int = 0


@dataclass(frozen=True, slots=True)
class CacheInfo:
    """What ``documee-remote cache info`` shows."""

    directory: str
    entries: int
    bytes: int
    max_bytes: int
    memory_entries: int
    memory_bytes: int
    max_memory_bytes: int


@dataclass(slots=True)
class _Entry:
    etag: str
    data: bytes


@dataclass(slots=True)
class _Flight(Generic[_T]):
    done: threading.Event = field(default_factory=threading.Event)
    result: Any = None
    error: BaseException | None = None


class ReadCache:
    """Object bodies by store and key, with their ETags, in memory and on disk.

    Parameters
    ----------
    directory:
        The disk level's directory (created ``0700``); default
        :func:`default_cache_dir`. Processes on one machine may share it.
    max_bytes:
        Bound of the disk level; least recently used entries go first. An
        object larger than this is not kept on disk.
    memory_bytes:
        Bound of the memory level (bodies, and parsed results weighed by the
        size of the body they were parsed from); ``0`` turns it off.
    disk:
        ``False``: memory only (nothing is written anywhere).

    Use one instance for many stores: entries are keyed by store identity.
    :func:`~._cache_config.shared_cache` hands out one per configuration
    and process, so that every store opened with the same settings shares the
    memory level and the single flights.
    """

    def __init__(
        self,
        directory: str | os.PathLike[str] | None = None,
        *,
        max_bytes: int = DEFAULT_MAX_BYTES,
        memory_bytes: int = DEFAULT_MEMORY_BYTES,
        disk: bool = True,
    ) -> None:
        if type(max_bytes) is not int or max_bytes < 0:
            raise ConfigurationError("max_bytes must be a whole number of bytes")
        if type(memory_bytes) is not int or memory_bytes < 0:
            raise ConfigurationError("memory_bytes must be a whole number of bytes")
        self.directory = Path(directory) if directory is not None else default_cache_dir()
        self.max_bytes = max_bytes
        self.memory_bytes = memory_bytes
        self.disk = disk
        self.stats = CacheStats()
        self._lock = threading.Lock()
        self._memory: OrderedDict[str, _Entry] = OrderedDict()
        self._memory_used = 0
        self._parsed: OrderedDict[tuple[str, str, str], tuple[object, int]] = OrderedDict()
        self._waiting: dict[str, _Flight[Any]] = {}
        self._stripes = [threading.Lock() for _ in range(256)]
        self._ready = False
        self._writer: ThreadPoolExecutor | None = None

    def __repr__(self) -> str:
        return f"ReadCache({str(self.directory)!r}, max_bytes={self.max_bytes})"

    # -- keys -------------------------------------------------------------------------

    @staticmethod
    def entry_key(identity: str, key: str) -> str:
        """The digest an object is kept under: of its store's identity and its key."""
        return hashlib.sha256(f"{identity}\0{key}".encode()).hexdigest()

    def _path(self, ck: str) -> Path:
        return self.directory / ck[:2] / (ck + _SUFFIX)

    # -- reading ----------------------------------------------------------------------

    def lookup(self, ck: str) -> tuple[_Entry, str] | None:
        """The cached entry and its level (``"memory"``/``"disk"``), or None."""
        with self._lock:
            entry = self._memory.get(ck)
            if entry is not None:
                self._memory.move_to_end(ck)
                return entry, "memory"
        if not self.disk:
            return None
        entry = self._read_disk(ck)
        if entry is None:
            return None
        self._remember(ck, entry)
        return entry, "disk"

    def _read_disk(self, ck: str) -> _Entry | None:
        path = self._path(ck)
        try:
            with path.open("rb") as f:
                raw = f.read()
        except FileNotFoundError:
            return None
        except OSError as exc:
            logger.debug("cache entry %s unreadable (%s)", path.name, type(exc).__name__)
            return None
        entry = _decode(raw, ck)
        if entry is None:
            with self._lock:
                self.stats.corrupt += 1
            logger.warning("cache entry %s is damaged; ignored and removed", path.name)
            with contextlib.suppress(OSError):
                path.unlink()
            return None
        with contextlib.suppress(OSError):
            os.utime(path)  # least recently used goes first
        return entry

    # -- writing ----------------------------------------------------------------------

    def _remember(self, ck: str, entry: _Entry) -> None:
        size = len(entry.data)
        with self._lock:
            old = self._memory.pop(ck, None)
            if old is not None:
                self._memory_used -= len(old.data)
            if size > self.memory_bytes:
                return
            self._memory[ck] = entry
            self._memory_used += size
            self._trim_memory()

    def _trim_memory(self) -> None:
        # Called with the lock held.
        while self._memory_used > self.memory_bytes and self._memory:
            _, gone = self._memory.popitem(last=False)
            self._memory_used -= len(gone.data)
        while self._parsed and self._memory_used + self._parsed_weight() > self.memory_bytes:
            self._parsed.popitem(last=False)

    def _parsed_weight(self) -> int:
        return sum(w for _, w in self._parsed.values())

    def store(self, ck: str, etag: str, data: bytes) -> None:
        """Keep ``data`` (at ``etag``) in memory, and on disk by a background writer.

        The read that fetched ``data`` does not wait for the disk (70 MB with an
        fsync costs more than the fetch): entries are written in order by one
        thread, which the interpreter waits for at exit. :meth:`flush` waits.
        """
        entry = _Entry(etag, bytes(data))
        self._remember(ck, entry)
        if self.disk and len(data) <= self.max_bytes:
            with self._lock:
                if self._writer is None:
                    self._writer = ThreadPoolExecutor(1, thread_name_prefix="documee-cache-write")
                writer = self._writer
            writer.submit(self._write_quietly, ck, entry)

    def flush(self) -> None:
        """Wait until every entry handed to the disk level is on disk."""
        with self._lock:
            writer = self._writer
        if writer is not None:
            writer.submit(lambda: None).result()

    def _write_quietly(self, ck: str, entry: _Entry) -> None:
        try:
            self._write_disk(ck, entry)
        except OSError as exc:
            # A full or read-only disk costs the disk level, never the read.
            logger.warning("cannot write the read cache in %s: %s", self.directory, exc)

    def _ensure_directory(self) -> None:
        if self._ready:
            return
        try:
            self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
            if os.name == "posix":
                mode = self.directory.stat().st_mode & 0o777
                if mode & 0o077:
                    os.chmod(self.directory, 0o700)
        except OSError as exc:
            raise OSError(f"cannot create the cache directory: {exc}") from exc
        self._ready = True

    def _write_disk(self, ck: str, entry: _Entry) -> None:
        self._ensure_directory()
        path = self._path(ck)
        path.parent.mkdir(mode=0o700, exist_ok=True)
        header = json.dumps(
            {"etag": entry.etag, "size": len(entry.data), "crc": zlib.crc32(entry.data), "id": ck}
        ).encode()
        fd, tmp = tempfile.mkstemp(prefix=_TMP_PREFIX, dir=path.parent)
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(_MAGIC + header + b"\n")
                f.write(entry.data)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise
        self._evict()

    def forget(self, ck: str) -> None:
        """Drop an entry (the object is gone from the store)."""
        with self._lock:
            old = self._memory.pop(ck, None)
            if old is not None:
                self._memory_used -= len(old.data)
        if self.disk:
            with contextlib.suppress(OSError):
                self._path(ck).unlink()

    # -- parsed results ---------------------------------------------------------------

    def parsed(self, ck: str, etag: str, kind: str) -> object | None:
        """A parsed result kept by :meth:`keep_parsed` for these bytes, or None."""
        with self._lock:
            found = self._parsed.get((ck, etag, kind))
            if found is None:
                return None
            self._parsed.move_to_end((ck, etag, kind))
            self.stats.parsed_hits += 1
            return found[0]

    def parse_once(
        self, ck: str, etag: str, kind: str, parse: Callable[[], tuple[object, int]]
    ) -> object:
        """The kept parse of these bytes, or ``parse()``'s (value, weight), kept.

        Concurrent callers for one key wait for one parse instead of each
        parsing 70 MB (joining a parse under way is safe: same ETag, same bytes).
        """
        found = self.parsed(ck, etag, kind)
        if found is not None:
            return found
        with self._stripes[int(ck[:8], 16) % len(self._stripes)]:
            found = self.parsed(ck, etag, kind)
            if found is not None:
                return found
            with self._lock:
                # An older version's parse goes first: parsing next to it would hold
                # two analyses of 70 MB at once (callers that still use it keep it).
                for stale in [k for k in self._parsed if k[0] == ck and k[2] == kind]:
                    del self._parsed[stale]
            value, weight = parse()
            self.keep_parsed(ck, etag, kind, value, weight)
            return value

    def keep_parsed(self, ck: str, etag: str, kind: str, value: object, weight: int) -> None:
        """Keep ``value``, parsed from the body at ``etag``; older parses of the key go."""
        with self._lock:
            for stale in [k for k in self._parsed if k[0] == ck and k[2] == kind]:
                del self._parsed[stale]
            if weight > self.memory_bytes:
                return
            self._parsed[(ck, etag, kind)] = (value, weight)
            self._trim_memory()

    # -- single flight ----------------------------------------------------------------

    def single_flight(self, ck: str, fetch: Callable[[], _T]) -> _T:
        """Run ``fetch`` once for every caller that arrives before it starts.

        A caller joins a fetch that has not started yet, never one already
        under way (its answer could predate the caller's call). Fetches of one
        key run one at a time, so a burst of callers costs at most two.
        """
        with self._lock:
            flight = self._waiting.get(ck)
            leader = flight is None
            if flight is None:
                flight = self._waiting[ck] = _Flight()
        if not leader:
            flight.done.wait()
            if flight.error is not None:
                raise flight.error
            result: _T = flight.result
            return result
        with self._stripes[int(ck[:8], 16) % len(self._stripes)]:
            with self._lock:
                del self._waiting[ck]  # callers from now on wait for the next fetch
            try:
                flight.result = fetch()
            except BaseException as exc:
                flight.error = exc
                raise
            finally:
                flight.done.set()
        return flight.result  # type: ignore[no-any-return]

    # -- the directory ----------------------------------------------------------------

    def _entries(self) -> Iterator[os.DirEntry[str]]:
        try:
            shards = builtins.list(os.scandir(self.directory))
        except FileNotFoundError:
            return
        for shard in shards:
            if not shard.is_dir(follow_symlinks=False):
                continue
            with contextlib.suppress(FileNotFoundError):
                yield from os.scandir(shard.path)

    def _evict(self) -> None:
        """Remove least recently used entries until the directory is under its bound."""
        now = time.time()
        found: builtins.list[tuple[float, int, str]] = []
        total = 0
        for item in self._entries():
            try:
                st = item.stat(follow_symlinks=False)
            except FileNotFoundError:
                continue
            if item.name.startswith(_TMP_PREFIX):
                # Another writer's file in progress counts; a crashed one's goes.
                if now - st.st_mtime > _STALE_TMP_SECONDS:
                    with contextlib.suppress(OSError):
                        os.unlink(item.path)
                    continue
                total += st.st_size
                continue
            if item.name.endswith(_SUFFIX):
                found.append((st.st_mtime, st.st_size, item.path))
                total += st.st_size
        if total <= self.max_bytes:
            return
        found.sort()
        for _, size, path in found:
            if total <= self.max_bytes:
                break
            with contextlib.suppress(FileNotFoundError, PermissionError):
                os.unlink(path)
                with self._lock:
                    self.stats.evicted += 1
            total -= size

    def info(self) -> CacheInfo:
        """Entries and bytes on disk and in this process's memory."""
        self.flush()
        entries = size = 0
        for item in self._entries():
            if item.name.endswith(_SUFFIX):
                with contextlib.suppress(FileNotFoundError):
                    size += item.stat(follow_symlinks=False).st_size
                    entries += 1
        with self._lock:
            return CacheInfo(
                directory=str(self.directory),
                entries=entries,
                bytes=size,
                max_bytes=self.max_bytes,
                memory_entries=len(self._memory) + len(self._parsed),
                memory_bytes=self._memory_used + self._parsed_weight(),
                max_memory_bytes=self.memory_bytes,
            )

    def clear(self) -> int:
        """Remove every entry, in memory and on disk; return how many files went."""
        self.flush()
        with self._lock:
            self._memory.clear()
            self._parsed.clear()
            self._memory_used = 0
        removed = 0
        for item in builtins.list(self._entries()):
            if item.name.endswith(_SUFFIX) or item.name.startswith(_TMP_PREFIX):
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(item.path)
                    removed += item.name.endswith(_SUFFIX)
        return removed


def _decode(raw: bytes, ck: str) -> _Entry | None:
    """An entry file's contents, or None when it does not check out."""
    if not raw.startswith(_MAGIC):
        return None
    end = raw.find(b"\n", len(_MAGIC))
    if end < 0:
        return None
    try:
        header = json.loads(raw[len(_MAGIC) : end])
        etag, size, crc, ident = header["etag"], header["size"], header["crc"], header["id"]
    except (ValueError, KeyError, TypeError):
        return None
    body = raw[end + 1 :]
    if (
        not isinstance(etag, str)
        or ident != ck
        or type(size) is not int
        or len(body) != size
        or zlib.crc32(body) != crc
    ):
        return None
    return _Entry(etag, body)


class CachingStore(Store):
    """A remote store read through a :class:`ReadCache`; every other call goes straight on.

    Reads follow the rules in the module's docstring (conditional GETs for
    mutable objects, none for listed journal deltas, single flight). Writes,
    deletes, listings and heads are the wrapped store's. Attributes the
    wrapper does not have (``options``, ``client``...) are the wrapped store's.
    """

    reads_through_cache = True

    def __init__(
        self,
        inner: Store,
        cache: ReadCache,
        *,
        immutable: Callable[[str], bool] | None = None,
    ) -> None:
        super().__init__(
            read_only=inner.read_only,
            concurrency=inner.concurrency,
            max_object_size=inner.max_object_size,
        )
        self.inner = inner
        self.cache = cache
        self.capabilities = inner.capabilities
        self.identity = store_identity(inner)
        self._immutable = immutable or (lambda key: IMMUTABLE_KEY.search(key) is not None)
        self._listed: OrderedDict[str, str] = OrderedDict()
        self._listed_lock = threading.Lock()

    @property
    def url(self) -> str:
        return self.inner.url

    def __repr__(self) -> str:
        return f"CachingStore({self.inner!r}, {self.cache!r})"

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__") or name in ("inner", "cache"):
            raise AttributeError(name)
        return getattr(self.inner, name)

    def entry_key(self, key: str) -> str:
        """The cache's digest for ``key`` of this store."""
        return self.cache.entry_key(self.identity, key)

    # -- reads ------------------------------------------------------------------------

    def _get(self, key: str) -> StoredObject:
        ck = self.entry_key(key)
        if self._immutable(key):
            with self._listed_lock:
                listed = self._listed.get(key)
            if listed is not None:
                found = self.cache.lookup(ck)
                if found is not None and found[0].etag == listed:
                    with self.cache._lock:
                        self.cache.stats.unrequested += 1
                    return StoredObject(found[0].data, found[0].etag)
        return self.cache.single_flight(ck, lambda: self._fetch(key, ck))

    def _fetch(self, key: str, ck: str) -> StoredObject:
        found = self.cache.lookup(ck)
        try:
            obj = self.inner.get(key, if_none_match=found[0].etag if found else None)
        except NotModifiedError:
            if found is None:  # pragma: no cover - a 304 to an unconditional GET
                raise
            entry, level = found
            with self.cache._lock:
                self.cache.stats.revalidated += 1
                if level == "memory":
                    self.cache.stats.memory_hits += 1
                else:
                    self.cache.stats.disk_hits += 1
            return StoredObject(entry.data, entry.etag)
        except NotFoundError:
            if found is not None:
                self.cache.forget(ck)
            raise
        with self.cache._lock:
            self.cache.stats.fetched += 1
        self.cache.store(ck, obj.etag, obj.data)
        return obj

    def _head(self, key: str) -> ObjectMeta:
        return self.inner.head(key)

    def _list(self, prefix: str) -> Iterator[str]:
        return self.inner.list(prefix)

    def _list_meta(self, prefix: str) -> Iterator[ObjectMeta]:
        return self._noting(self.inner.list_meta(prefix))

    def _list_meta_after(self, prefix: str, start_after: str) -> Iterator[ObjectMeta]:
        return self._noting(self.inner.list_meta(prefix, start_after=start_after))

    def _noting(self, metas: Iterator[ObjectMeta]) -> Iterator[ObjectMeta]:
        """Pass a listing on, remembering the ETags of the immutable keys it shows."""
        for meta in metas:
            if self._immutable(meta.key):
                with self._listed_lock:
                    self._listed[meta.key] = meta.etag
                    self._listed.move_to_end(meta.key)
                    if len(self._listed) > _LISTED_MAX:
                        self._listed.popitem(last=False)
            yield meta

    # -- everything else goes straight on ---------------------------------------------

    def _put(self, key: str, data: bytes, *, if_match: str | None, create_only: bool) -> str:
        return self.inner.put(
            key, data, if_match=if_match, if_none_match="*" if create_only else None
        )

    def _delete(self, key: str, *, if_match: str | None) -> None:
        self.inner.delete(key, if_match=if_match)

    def _put_many(self, items: dict[str, bytes]) -> dict[str, str]:
        return self.inner.put_many(items)

    def _delete_many(
        self, keys: builtins.list[str], conditions: dict[str, str]
    ) -> builtins.list[str]:
        return self.inner.delete_many(keys, if_match=conditions)

    def probe(self, *, scratch_prefix: str = "_probe/") -> Any:
        """The wrapped store's probe."""
        return self.inner.probe(scratch_prefix=scratch_prefix)

    def close(self) -> None:
        """Close the wrapped store (the cache stays, shared)."""
        self.inner.close()
        super().close()
