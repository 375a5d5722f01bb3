"""The storage interface every backend implements.

A :class:`Store` is a flat key space of immutable byte objects with S3's
semantics: whole-object ``get``/``put``, ETags, conditional writes
(``If-Match`` / ``If-None-Match: *``) and conditional deletes. The public
methods here validate keys, enforce read-only mode and then call the
backend's ``_get``/``_head``/``_put``/``_delete``/``_list``; a backend never
sees an unvalidated key and never has to re-check read-only mode.

ETags are the quoted MD5 hex of the bytes, as S3 gives for a single-part PUT,
so the same bytes carry the same ETag on every backend and objects can be
compared across backends without being read.
"""

from __future__ import annotations

import builtins
import hashlib
import logging
import uuid
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime
from types import TracebackType
from typing import Self, TypeVar

from ..errors import (
    AlreadyExistsError,
    NotFoundError,
    NotModifiedError,
    PreconditionFailedError,
    ReadOnlyError,
    StoreClosedError,
    UnsupportedOperationError,
)
from ._keys import validate_key, validate_prefix

__all__ = [
    "DEFAULT_CONCURRENCY",
    "Capabilities",
    "ObjectMeta",
    "ProbeResult",
    "Store",
    "StoredObject",
    "etag_of",
    "normalize_etag",
]

logger = logging.getLogger("documee_remote.stores")

#: Objects larger than this are refused before they are read unless a store is told
#: otherwise (``max_object_size=None`` lifts the limit).
DEFAULT_MAX_OBJECT_SIZE = 1 << 30

#: Parallel requests for bulk transfers unless a store is told otherwise.
DEFAULT_CONCURRENCY = 16

_T = TypeVar("_T")
_R = TypeVar("_R")


def etag_of(data: bytes) -> str:
    """The ETag S3 gives ``data`` on a single-part PUT: the quoted MD5 hex."""
    return '"' + hashlib.md5(data, usedforsecurity=False).hexdigest() + '"'


def normalize_etag(etag: str) -> str:
    """Accept an ETag with or without its quotes and return it quoted."""
    etag = etag.strip()
    if etag.startswith("W/"):
        etag = etag[2:]
    if not (len(etag) >= 2 and etag.startswith('"') and etag.endswith('"')):
        etag = f'"{etag}"'
    return etag


@dataclass(frozen=True, slots=True)
class StoredObject:
    """An object's bytes and the ETag of exactly those bytes."""

    data: bytes
    etag: str

    def __repr__(self) -> str:
        # Never put object bodies into reprs (they end up in logs and tracebacks).
        return f"StoredObject(etag={self.etag!r}, size={len(self.data)})"


@dataclass(frozen=True, slots=True)
class ObjectMeta:
    """What ``head`` tells about an object without reading it."""

    key: str
    etag: str
    size: int
    last_modified: datetime


@dataclass(frozen=True, slots=True)
class Capabilities:
    """What a backend can do, consulted by higher layers before they rely on it.

    Attributes
    ----------
    atomic_conditional_writes:
        ``put(if_match=...)`` / ``put(if_none_match="*")`` are a real
        compare-and-swap, atomic against every other writer. Without it the
        manager refuses concurrent merges instead of racing.
    conditional_delete:
        ``delete(if_match=...)`` is atomic too.
    native_etags:
        The service computes ETags itself (S3); otherwise the backend computes
        the MD5 of the bytes.
    """

    atomic_conditional_writes: bool
    conditional_delete: bool
    native_etags: bool = False


@dataclass(frozen=True, slots=True)
class ProbeResult:
    """Outcome of :meth:`Store.probe`: which conditional headers the endpoint honours.

    Attributes
    ----------
    if_none_match:
        ``If-None-Match: *`` refuses to overwrite an existing object.
    if_match:
        ``If-Match`` with a stale ETag refuses a PUT and leaves the object as it was.
    conditional_delete:
        ``If-Match`` with a stale ETag refuses a DELETE, and with the current
        one deletes (False too when the endpoint does not implement it).
    if_match_current:
        ``If-Match`` with the object's *current* ETag lets a PUT through. An
        endpoint that refuses it (Ceph RGW 16.2 refuses the quoted form) makes
        every compare-and-swap fail as if another writer had won.
    detail:
        What was not honoured, in words.
    """

    if_none_match: bool
    if_match: bool
    conditional_delete: bool
    detail: str = ""
    if_match_current: bool = True

    @property
    def ok(self) -> bool:
        """True when every conditional operation was honoured."""
        return (
            self.if_none_match
            and self.if_match
            and self.if_match_current
            and self.conditional_delete
        )


class Store(ABC):
    """A key space of byte objects with ETags and conditional writes.

    Parameters
    ----------
    read_only:
        Refuse every ``put`` and ``delete`` with :class:`ReadOnlyError`.
    concurrency:
        How many requests bulk operations (``get_many``, ``put_many``,
        ``delete_many``) keep in flight.
    max_object_size:
        Objects larger than this many bytes are refused by ``get`` with
        :class:`~documee_remote.errors.ObjectTooLargeError` before their body
        is read. ``None`` means no limit.
    """

    #: What this backend can do; see :class:`Capabilities`.
    capabilities: Capabilities

    #: Whether reads go through a read cache that shares parsed results
    #: (:class:`~documee_remote.cache.CachingStore`); the manager asks it for them.
    reads_through_cache: bool = False

    def __init__(
        self,
        *,
        read_only: bool = False,
        concurrency: int = DEFAULT_CONCURRENCY,
        max_object_size: int | None = DEFAULT_MAX_OBJECT_SIZE,
    ) -> None:
        if concurrency < 1:
            raise ValueError("concurrency must be at least 1")
        if max_object_size is not None and max_object_size < 0:
            raise ValueError("max_object_size must not be negative")
        self._read_only = read_only
        self.concurrency = concurrency
        self.max_object_size = max_object_size
        self._closed = False

    # -- identity -----------------------------------------------------------------

    @property
    @abstractmethod
    def url(self) -> str:
        """Where this store points, as a URL without credentials."""

    @property
    def read_only(self) -> bool:
        """True when writes and deletes are refused."""
        return self._read_only

    def __repr__(self) -> str:
        mode = ", read_only=True" if self._read_only else ""
        return f"{type(self).__name__}({self.url!r}{mode})"

    # -- the operations -------------------------------------------------------------

    def get(self, key: str, *, if_none_match: str | None = None) -> StoredObject:
        """Read a whole object.

        Parameters
        ----------
        if_none_match:
            An ETag the caller holds the bytes of: if the object still has it,
            :class:`~documee_remote.errors.NotModifiedError` is raised and no
            body is sent (S3's conditional GET, 304). Backends without one read
            the object and compare.

        Raises
        ------
        NotFoundError
            The key does not exist.
        NotModifiedError
            ``if_none_match`` names the stored ETag.
        ObjectTooLargeError
            The object is larger than ``max_object_size``.
        """
        self._check_open()
        if if_none_match is not None:
            return self._get_if_none_match(validate_key(key), normalize_etag(if_none_match))
        return self._get(validate_key(key))

    def _get_if_none_match(self, key: str, etag: str) -> StoredObject:
        """A conditional GET; backends with a native one override this (the S3 ones do)."""
        obj = self._get(key)
        if obj.etag == etag:
            raise NotModifiedError(f"{key!r} in {self.url} is unchanged", key=key)
        return obj

    def head(self, key: str) -> ObjectMeta:
        """Read an object's ETag, size and last-modified time without its body.

        Raises
        ------
        NotFoundError
            The key does not exist.
        """
        self._check_open()
        return self._head(validate_key(key))

    def put(
        self,
        key: str,
        data: bytes,
        *,
        if_match: str | None = None,
        if_none_match: str | None = None,
    ) -> str:
        """Write a whole object atomically and return its new ETag.

        Parameters
        ----------
        if_match:
            Write only if the stored object's ETag is this one.
        if_none_match:
            Only ``"*"``: write only if the key does not exist yet.

        Raises
        ------
        AlreadyExistsError
            ``if_none_match="*"`` and the key exists.
        PreconditionFailedError
            ``if_match`` names another version, or the key does not exist.
        ReadOnlyError
            The store was opened read-only.
        """
        self._check_open()
        key = validate_key(key)
        if not isinstance(data, bytes | bytearray | memoryview):
            raise TypeError(f"data must be bytes, not {type(data).__name__}")
        if if_none_match is not None and if_none_match != "*":
            raise ValueError('if_none_match only takes "*"')
        if if_match is not None and if_none_match is not None:
            raise ValueError("give if_match or if_none_match, not both")
        self._check_writable(key)
        return self._put(
            key,
            bytes(data),
            if_match=normalize_etag(if_match) if if_match is not None else None,
            create_only=if_none_match == "*",
        )

    def delete(self, key: str, *, if_match: str | None = None) -> None:
        """Delete an object.

        Without ``if_match``, deleting a missing key is a no-op, as on S3. With
        it, the delete happens only if the stored ETag is that one.

        Raises
        ------
        PreconditionFailedError
            ``if_match`` names another version, or the key does not exist.
        ReadOnlyError
            The store was opened read-only.
        """
        self._check_open()
        key = validate_key(key)
        self._check_writable(key)
        self._delete(key, if_match=normalize_etag(if_match) if if_match is not None else None)

    def list(self, prefix: str = "") -> Iterator[str]:
        """Yield every key that starts with ``prefix``, in lexicographic order.

        ``prefix`` is a plain string prefix, as on S3: ``"abc"`` matches
        ``"abc/x.json"`` and ``"abcd/y.json"``.
        """
        self._check_open()
        return self._list(validate_prefix(prefix))

    def list_meta(
        self, prefix: str = "", *, start_after: str | None = None
    ) -> Iterator[ObjectMeta]:
        """Like :meth:`list`, with each key's ETag, size and last-modified time.

        S3 returns these with the listing at no extra cost; other backends
        may have to look at each object. With ``start_after``, only keys
        that sort after it (S3's ``StartAfter``: a long listing read from the
        middle costs only what follows).
        """
        self._check_open()
        prefix = validate_prefix(prefix)
        if start_after is None:
            return self._list_meta(prefix)
        if not isinstance(start_after, str):
            raise TypeError(f"start_after must be a string, not {type(start_after).__name__}")
        # The server's StartAfter only saves transfer; it is not trusted to be exact.
        # SeaweedFS answers keys before a StartAfter that ends in "/" (the form the
        # journal's listings use), and obstore turns the offset into a path, dropping
        # that "/". Every backend's answer is filtered here, once.
        return (m for m in self._list_meta_after(prefix, start_after) if m.key > start_after)

    def _list_meta_after(self, prefix: str, start_after: str) -> Iterator[ObjectMeta]:
        """Backends with a native ``StartAfter`` override this; the rest list it all.

        What this yields at or before ``start_after`` is dropped by :meth:`list_meta`.
        """
        return self._list_meta(prefix)

    def _list_meta(self, prefix: str) -> Iterator[ObjectMeta]:
        for key in self._list(prefix):
            try:
                yield self._head(key)
            except NotFoundError:
                continue  # deleted between the listing and the look

    def exists(self, key: str) -> bool:
        """True when ``key`` exists."""
        try:
            self.head(key)
        except NotFoundError:
            return False
        return True

    # -- bulk operations ------------------------------------------------------------

    def get_many(self, keys: Iterable[str]) -> dict[str, StoredObject | None]:
        """Read many objects concurrently; a missing key maps to ``None``.

        Any other error is raised once every request has finished.
        """
        self._check_open()
        return self._get_many(list(dict.fromkeys(validate_key(k) for k in keys)))

    def put_many(self, items: Mapping[str, bytes]) -> dict[str, str]:
        """Write many objects concurrently (unconditionally); return their ETags."""
        self._check_open()
        checked = {validate_key(k): bytes(v) for k, v in items.items()}
        for key in checked:
            self._check_writable(key)
        return self._put_many(checked)

    def delete_many(
        self, keys: Iterable[str], *, if_match: Mapping[str, str] | None = None
    ) -> builtins.list[str]:
        """Delete many objects concurrently.

        With ``if_match`` (key -> ETag), each key is deleted only if it still
        has that ETag; keys that changed or vanished are kept and returned.
        Without it, deletes are unconditional and the list is empty.
        """
        self._check_open()
        checked = list(dict.fromkeys(validate_key(k) for k in keys))
        for key in checked:
            self._check_writable(key)
        conditions = {
            validate_key(k): normalize_etag(v) for k, v in (if_match or {}).items() if k in checked
        }
        return self._delete_many(checked, conditions) if checked else []

    # Backends with a faster bulk path (batched requests, an event loop)
    # override these; keys arrive validated, de-duplicated and writable.

    def _get_many(self, keys: builtins.list[str]) -> dict[str, StoredObject | None]:
        def one(key: str) -> StoredObject | None:
            try:
                return self._get(key)
            except NotFoundError:
                return None

        return dict(zip(keys, self._map(one, keys), strict=True))

    def _put_many(self, items: dict[str, bytes]) -> dict[str, str]:
        keys = builtins.list(items)

        def one(key: str) -> str:
            return self._put(key, items[key], if_match=None, create_only=False)

        return dict(zip(keys, self._map(one, keys), strict=True))

    def _delete_many(
        self, keys: builtins.list[str], conditions: dict[str, str]
    ) -> builtins.list[str]:
        def one(key: str) -> str | None:
            try:
                self._delete(key, if_match=conditions.get(key))
            except PreconditionFailedError:
                return key
            return None

        return [k for k in self._map(one, keys) if k is not None]

    def _map(self, fn: Callable[[_T], _R], items: Sequence[_T]) -> builtins.list[_R]:
        """Apply ``fn`` to every item with up to ``concurrency`` in flight.

        All calls run to completion before the first error is raised, so a
        failure never leaves requests running behind the caller's back.
        """
        if len(items) <= 1 or self.concurrency == 1:
            return [fn(item) for item in items]
        with ThreadPoolExecutor(max_workers=min(self.concurrency, len(items))) as pool:
            futures = [pool.submit(fn, item) for item in items]
        for future in futures:
            error = future.exception()
            if error is not None:
                raise error
        return [f.result() for f in futures]

    # -- checking the endpoint --------------------------------------------------------

    def probe(self, *, scratch_prefix: str = "_probe/") -> ProbeResult:
        """Check that this store really honours conditional writes and deletes.

        Some S3-compatible services accept ``If-None-Match`` and ``If-Match``
        and silently ignore them, refuse a correct one, or do not implement
        them on DELETE; running concurrent merges on such a service would lose
        updates or fail. This writes a scratch key and checks, in turn, that a
        create-only write over it is refused, that a stale ``If-Match`` write
        is refused and changes nothing, that an ``If-Match`` write with the
        current ETag succeeds, and that a stale conditional delete is refused
        while a current one deletes; then removes the key. A deviation is
        reported in the result, never raised.
        """
        key = validate_key(f"{scratch_prefix}{uuid.uuid4().hex}.probe")
        self._check_open()
        self._check_writable(key)
        notes: list[str] = []
        try:
            self._put(key, b"probe-1", if_match=None, create_only=True)
        except UnsupportedOperationError:
            notes.append("If-None-Match: * is not implemented")
            self._put(key, b"probe-1", if_match=None, create_only=False)
        try:
            inm = self._probe_create_only(key, notes)
            im, current = self._probe_stale_put(key, notes)
            im_current, current = self._probe_current_put(key, current, notes)
            cd = self._probe_delete(key, current, notes)
        finally:
            self._delete(key, if_match=None)  # a no-op when the probe deleted it
        return ProbeResult(
            if_none_match=inm,
            if_match=im,
            conditional_delete=cd,
            if_match_current=im_current,
            detail="; ".join(dict.fromkeys(notes)),
        )

    def _probe_create_only(self, key: str, notes: builtins.list[str]) -> bool:
        try:
            self._put(key, b"probe-2", if_match=None, create_only=True)
        except AlreadyExistsError:
            return True
        except PreconditionFailedError:
            return True  # refused, if not with S3's code
        except UnsupportedOperationError:
            notes.append("If-None-Match: * is not implemented")
            return False
        notes.append("If-None-Match: * was ignored (the object was overwritten)")
        return False

    def _probe_stale_put(self, key: str, notes: builtins.list[str]) -> tuple[bool, str]:
        """A PUT with a stale ETag: (refused and nothing changed, the ETag now stored)."""
        before = self._head(key).etag
        try:
            self._put(
                key, b"probe-3", if_match=etag_of(b"not-the-current-version"), create_only=False
            )
        except PreconditionFailedError:
            after = self._head(key).etag
            if after != before:
                notes.append("a refused If-Match PUT still changed the object")
                return False, after
            return True, after
        except UnsupportedOperationError:
            notes.append("If-Match is not implemented on PUT")
            return False, self._head(key).etag
        notes.append("If-Match was ignored on PUT")
        return False, self._head(key).etag

    def _probe_current_put(
        self, key: str, current: str, notes: builtins.list[str]
    ) -> tuple[bool, str]:
        """A PUT with the ETag just read: (it went through, the ETag now stored)."""
        try:
            return True, self._put(key, b"probe-4", if_match=current, create_only=False)
        except PreconditionFailedError:
            notes.append(
                f"If-Match with the current ETag {current} was refused on PUT: every "
                "compare-and-swap would fail as if another writer had won"
            )
        except UnsupportedOperationError:
            notes.append("If-Match is not implemented on PUT")
        return False, self._head(key).etag

    def _probe_delete(self, key: str, current: str, notes: builtins.list[str]) -> bool:
        """A stale conditional DELETE must be refused, then a current one must delete."""
        try:
            self._delete(key, if_match=etag_of(b"not-the-current-version"))
        except PreconditionFailedError:
            pass
        except UnsupportedOperationError:
            notes.append("conditional DELETE (If-Match) is not implemented")
            return False
        else:
            notes.append("If-Match was ignored on DELETE")
            return False
        try:
            self._delete(key, if_match=current)
        except PreconditionFailedError:
            notes.append("If-Match with the current ETag was refused on DELETE")
            return False
        except UnsupportedOperationError:  # pragma: no cover - refused the stale one fine
            notes.append("conditional DELETE (If-Match) is not implemented")
            return False
        try:
            self._head(key)
        except NotFoundError:
            return True
        notes.append("a conditional DELETE with the current ETag left the object in place")
        return False

    # -- lifecycle ------------------------------------------------------------------

    def close(self) -> None:
        """Release connections and other resources. Safe to call twice."""
        self._closed = True

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # -- for subclasses ---------------------------------------------------------------

    def _check_open(self) -> None:
        if self._closed:
            raise StoreClosedError(f"{self.url} is closed; open a new store")

    def _check_writable(self, key: str) -> None:
        if self._read_only:
            raise ReadOnlyError(
                f"{self.url} is open read-only; refusing to change {key!r}", key=key
            )

    def _not_found(self, key: str) -> NotFoundError:
        return NotFoundError(f"{key!r} not found in {self.url}", key=key)

    def _precondition_failed(self, key: str, if_match: str | None) -> PreconditionFailedError:
        return PreconditionFailedError(
            f"{key!r} in {self.url} is not at version {if_match} (changed or deleted by "
            "another writer)",
            key=key,
        )

    def _already_exists(self, key: str) -> AlreadyExistsError:
        return AlreadyExistsError(f"{key!r} already exists in {self.url}", key=key)

    @abstractmethod
    def _get(self, key: str) -> StoredObject: ...

    @abstractmethod
    def _head(self, key: str) -> ObjectMeta: ...

    @abstractmethod
    def _put(self, key: str, data: bytes, *, if_match: str | None, create_only: bool) -> str:
        """Write ``data``; ``if_match`` comes quoted; ``create_only`` is If-None-Match: *."""

    @abstractmethod
    def _delete(self, key: str, *, if_match: str | None) -> None: ...

    @abstractmethod
    def _list(self, prefix: str) -> Iterator[str]: ...
