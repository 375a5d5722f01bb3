"""MemoryStore: the contract in memory."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

import pytest

from documee_remote import open_store
from documee_remote.stores import MemoryStore, Store, etag_of
from documee_remote.testing.contract import StoreContract


class MemoryBackdoor:
    def __init__(self, store: MemoryStore) -> None:
        self.store = store

    def read(self, key: str) -> bytes | None:
        found = self.store._objects.get(key)
        return None if found is None else found[0]

    def write(self, key: str, data: bytes) -> None:
        self.store._objects[key] = (data, etag_of(data), datetime.now(UTC))


class TestMemoryStore(StoreContract):
    @pytest.fixture
    def shared(self) -> MemoryStore:
        return MemoryStore()

    @pytest.fixture
    def store_factory(self, shared: MemoryStore) -> Callable[..., Store]:
        def make(**options: object) -> Store:
            view = MemoryStore(**options)  # type: ignore[arg-type]
            view._objects = shared._objects  # same storage, other options
            view._lock = shared._lock
            return view

        return make

    @pytest.fixture
    def backdoor(self, shared: MemoryStore) -> MemoryBackdoor:
        return MemoryBackdoor(shared)


def test_open_store_memory_is_a_fresh_key_space() -> None:
    a = open_store("memory://")
    b = open_store("memory://")
    assert isinstance(a, MemoryStore)
    a.put("cb/k", b"v")
    assert list(b.list()) == []
