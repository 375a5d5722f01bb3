"""MemoryStore: the store semantics in a dict, for tests and embedding."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import UTC, datetime

from ..errors import ObjectTooLargeError
from .base import Capabilities, ObjectMeta, Store, StoredObject, etag_of

__all__ = ["MemoryStore"]


class MemoryStore(Store):
    """A thread-safe in-memory store with the same semantics as S3.

    Every operation holds one lock for the few dictionary steps it takes, so
    conditional writes are atomic across threads. Each instance is its own
    key space: there is no process-wide registry to leak between users.
    """

    capabilities = Capabilities(atomic_conditional_writes=True, conditional_delete=True)

    def __init__(self, name: str = "", **options: object) -> None:
        super().__init__(**options)  # type: ignore[arg-type]
        self._name = name
        self._objects: dict[str, tuple[bytes, str, datetime]] = {}
        self._lock = threading.Lock()

    @property
    def url(self) -> str:
        return f"memory://{self._name}"

    def _get(self, key: str) -> StoredObject:
        with self._lock:
            found = self._objects.get(key)
        if found is None:
            raise self._not_found(key)
        data, etag, _ = found
        if self.max_object_size is not None and len(data) > self.max_object_size:
            raise ObjectTooLargeError(
                f"{key!r} is {len(data)} bytes, over this store's limit of {self.max_object_size}",
                key=key,
            )
        return StoredObject(data=data, etag=etag)

    def _head(self, key: str) -> ObjectMeta:
        with self._lock:
            found = self._objects.get(key)
        if found is None:
            raise self._not_found(key)
        data, etag, modified = found
        return ObjectMeta(key=key, etag=etag, size=len(data), last_modified=modified)

    def _put(self, key: str, data: bytes, *, if_match: str | None, create_only: bool) -> str:
        etag = etag_of(data)
        with self._lock:
            current = self._objects.get(key)
            if create_only and current is not None:
                raise self._already_exists(key)
            if if_match is not None and (current is None or current[1] != if_match):
                raise self._precondition_failed(key, if_match)
            self._objects[key] = (data, etag, datetime.now(UTC))
        return etag

    def _delete(self, key: str, *, if_match: str | None) -> None:
        with self._lock:
            current = self._objects.get(key)
            if if_match is not None and (current is None or current[1] != if_match):
                raise self._precondition_failed(key, if_match)
            self._objects.pop(key, None)

    def _list(self, prefix: str) -> Iterator[str]:
        with self._lock:
            keys = sorted(k for k in self._objects if k.startswith(prefix))
        return iter(keys)
