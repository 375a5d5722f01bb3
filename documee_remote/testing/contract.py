"""The store contract: one pytest class of semantics that every backend's tests subclass.

A backend's test module provides three fixtures and inherits every test::

    class TestMyStore(StoreContract):
        @pytest.fixture
        def store_factory(self, tmp_path):
            return functools.partial(MyStore, tmp_path)      # same storage on every call

        @pytest.fixture
        def backdoor(self, tmp_path):
            return MyBackdoor(tmp_path)                      # raw access, bypassing the store

        @pytest.fixture
        def process_store_factory(self, tmp_path):
            return functools.partial(MyStore, tmp_path)  # picklable; or None

``store_factory(**options)`` must open a new store over the *same* storage on
each call (so a read-only view and a size-limited view see what the main
store wrote). The backdoor lets the tests check what is really stored instead
of trusting the store to report on itself.
"""

from __future__ import annotations

import multiprocessing
import threading
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Protocol

import pytest

from ..errors import (
    AlreadyExistsError,
    ConflictError,
    InvalidKeyError,
    NotFoundError,
    NotModifiedError,
    ObjectTooLargeError,
    PreconditionFailedError,
    ReadOnlyError,
    StoreClosedError,
)
from ..stores.base import Store, etag_of

__all__ = ["BAD_KEYS", "Backdoor", "DirectoryBackdoor", "StoreContract", "increment_counter"]

#: Keys that every store must refuse before its backend sees them.
BAD_KEYS = [
    "",
    "/abs/key.json",
    "../escape.json",
    "cb/../../escape.json",
    "cb/./x.json",
    "cb//x.json",
    "cb/x.json/",
    "cb\\x.json",
    "cb/.hidden",
    "cb/x\x00.json",
    "cb/x\n.json",
    "C:/windows.json",
    "a/" + "x" * 300,
    "/".join(["seg"] * 400),
]


class Backdoor(Protocol):
    """Raw access to a store's storage that does not go through the store."""

    def read(self, key: str) -> bytes | None:
        """The stored bytes of ``key``, or None when absent."""

    def write(self, key: str, data: bytes) -> None:
        """Store ``data`` under ``key`` directly."""


class DirectoryBackdoor:
    """Raw bytes under a local directory (a LocalStore's root), bypassing every store."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def read(self, key: str) -> bytes | None:
        """The bytes of the file for ``key``, or None."""
        path = self.root.joinpath(*key.split("/"))
        return path.read_bytes() if path.is_file() else None

    def write(self, key: str, data: bytes) -> None:
        """Write the file for ``key`` directly."""
        path = self.root.joinpath(*key.split("/"))
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)


def increment_counter(
    factory: Callable[[], Store], key: str, times: int, barrier: Any = None
) -> tuple[int, int]:
    """Increment the integer stored at ``key`` ``times`` times with compare-and-swap.

    Runs in a worker process or thread. Returns (successful writes, conflicts).
    """
    store = factory()
    conflicts = 0
    done = 0
    if barrier is not None:
        barrier.wait()
    try:
        while done < times:
            try:
                current = store.get(key)
            except NotFoundError:
                try:
                    store.put(key, b"1", if_none_match="*")
                    done += 1
                except (PreconditionFailedError, ConflictError):
                    conflicts += 1
                continue
            value = int(current.data)
            try:
                store.put(key, str(value + 1).encode(), if_match=current.etag)
                done += 1
            except (PreconditionFailedError, ConflictError):
                # ConflictError: S3's 409, another conditional write in flight.
                conflicts += 1
    finally:
        store.close()
    return done, conflicts


class StoreContract:
    """Semantics every :class:`~documee_remote.stores.base.Store` must have."""

    #: Worker processes and increments each in the multi-process race.
    race_processes = 8
    race_increments = 25

    # -- fixtures a backend provides ---------------------------------------------------

    @pytest.fixture
    def store_factory(self) -> Callable[..., Store]:
        raise NotImplementedError("a backend's test class must provide store_factory")

    @pytest.fixture
    def backdoor(self) -> Backdoor:
        raise NotImplementedError("a backend's test class must provide backdoor")

    @pytest.fixture
    def process_store_factory(self) -> Callable[[], Store] | None:
        return None

    @pytest.fixture
    def store(self, store_factory: Callable[..., Store]) -> Iterator[Store]:
        with store_factory() as store:
            yield store

    # -- get / head / put ------------------------------------------------------------------

    def test_put_then_get_returns_bytes_and_md5_etag(
        self, store: Store, backdoor: Backdoor
    ) -> None:
        data = b'{\n  "k": "v\xc3\xa9"\n}'
        etag = store.put("cb/analysis.json", data)
        assert etag == etag_of(data)
        got = store.get("cb/analysis.json")
        assert got.data == data
        assert got.etag == etag
        assert backdoor.read("cb/analysis.json") == data

    def test_head_reports_etag_size_and_recent_time(self, store: Store) -> None:
        data = b"x" * 1234
        etag = store.put("cb/file_0123456789abcdef.json", data)
        meta = store.head("cb/file_0123456789abcdef.json")
        assert meta.etag == etag
        assert meta.size == 1234
        assert meta.key == "cb/file_0123456789abcdef.json"
        assert meta.last_modified.tzinfo is not None
        assert abs(datetime.now(UTC) - meta.last_modified) < timedelta(minutes=5)

    def test_empty_and_binary_objects_round_trip(self, store: Store) -> None:
        assert store.put("cb/empty.json", b"") == etag_of(b"")
        assert store.get("cb/empty.json").data == b""
        every_byte = bytes(range(256)) * 4
        store.put("cb/bin", every_byte)
        assert store.get("cb/bin").data == every_byte

    def test_missing_key_raises_not_found_naming_the_key(self, store: Store) -> None:
        for op in (store.get, store.head):
            with pytest.raises(NotFoundError) as info:
                op("nope123/analysis.json")
            assert isinstance(info.value, FileNotFoundError)
            assert info.value.key == "nope123/analysis.json"
            assert info.value.codebase_id == "nope123"
            assert "nope123/analysis.json" in str(info.value)
        assert store.exists("nope123/analysis.json") is False

    def test_overwrite_replaces_and_changes_etag(self, store: Store, backdoor: Backdoor) -> None:
        first = store.put("cb/k", b"one")
        second = store.put("cb/k", b"two")
        assert first != second
        assert store.get("cb/k").data == b"two"
        assert backdoor.read("cb/k") == b"two"
        assert store.exists("cb/k")

    def test_backdoor_writes_are_visible_with_md5_etag(
        self, store: Store, backdoor: Backdoor
    ) -> None:
        backdoor.write("cb/raw.json", b"raw bytes")
        got = store.get("cb/raw.json")
        assert got.data == b"raw bytes"
        assert got.etag == etag_of(b"raw bytes")
        assert store.head("cb/raw.json").etag == etag_of(b"raw bytes")

    # -- conditional reads and the read cache (issue 15) ---------------------------------

    def test_conditional_get(self, store: Store, backdoor: Backdoor) -> None:
        etag = store.put("cb/c.json", b"one")
        with pytest.raises(NotModifiedError):
            store.get("cb/c.json", if_none_match=etag)
        with pytest.raises(NotModifiedError):
            store.get("cb/c.json", if_none_match=etag.strip('"'))  # unquoted too
        backdoor.write("cb/c.json", b"two")  # another writer
        got = store.get("cb/c.json", if_none_match=etag)
        assert (got.data, got.etag) == (b"two", etag_of(b"two"))
        with pytest.raises(NotFoundError):
            store.get("cb/none.json", if_none_match=etag)

    def test_read_cache_never_serves_stale_bytes(
        self, store: Store, backdoor: Backdoor, tmp_path: Path
    ) -> None:
        from ..stores._cache import CachingStore, ReadCache

        cached = CachingStore(store, ReadCache(tmp_path / "read-cache"))
        for version in range(3):
            backdoor.write("cb/analysis.json", b"version %d" % version)
            assert cached.get("cb/analysis.json").data == b"version %d" % version
            assert cached.get("cb/analysis.json").data == b"version %d" % version
        assert cached.cache.stats.revalidated == 3
        store.delete("cb/analysis.json")  # not through the cache
        with pytest.raises(NotFoundError):
            cached.get("cb/analysis.json")

    # -- conditional writes -------------------------------------------------------------

    def test_create_only_creates_then_refuses(self, store: Store, backdoor: Backdoor) -> None:
        etag = store.put("cb/lease", b"mine", if_none_match="*")
        assert etag == etag_of(b"mine")
        with pytest.raises(AlreadyExistsError) as info:
            store.put("cb/lease", b"theirs", if_none_match="*")
        assert isinstance(info.value, PreconditionFailedError)
        assert isinstance(info.value, FileExistsError)
        assert info.value.key == "cb/lease"
        assert backdoor.read("cb/lease") == b"mine"

    def test_if_match_current_etag_succeeds(self, store: Store) -> None:
        etag = store.put("cb/k", b"v1")
        new = store.put("cb/k", b"v2", if_match=etag)
        assert new == etag_of(b"v2")
        assert store.get("cb/k").data == b"v2"

    def test_if_match_accepts_unquoted_etag(self, store: Store) -> None:
        etag = store.put("cb/k", b"v1")
        store.put("cb/k", b"v2", if_match=etag.strip('"'))
        assert store.get("cb/k").data == b"v2"

    def test_stale_if_match_fails_and_keeps_data(self, store: Store, backdoor: Backdoor) -> None:
        stale = store.put("cb/k", b"v1")
        store.put("cb/k", b"v2")
        with pytest.raises(PreconditionFailedError) as info:
            store.put("cb/k", b"v3", if_match=stale)
        assert not isinstance(info.value, AlreadyExistsError)
        assert info.value.key == "cb/k"
        assert backdoor.read("cb/k") == b"v2"

    def test_if_match_on_missing_key_fails_and_creates_nothing(
        self, store: Store, backdoor: Backdoor
    ) -> None:
        with pytest.raises(PreconditionFailedError):
            store.put("cb/missing", b"v", if_match=etag_of(b"whatever"))
        assert backdoor.read("cb/missing") is None
        assert list(store.list("cb/")) == []

    def test_put_argument_errors(self, store: Store) -> None:
        with pytest.raises(ValueError, match=r"\*"):
            store.put("cb/k", b"v", if_none_match='"abc"')
        with pytest.raises(ValueError, match="not both"):
            store.put("cb/k", b"v", if_match='"a"', if_none_match="*")
        with pytest.raises(TypeError):
            store.put("cb/k", "text")  # type: ignore[arg-type]
        assert not store.exists("cb/k")

    # -- delete -----------------------------------------------------------------------------

    def test_delete_removes_and_missing_is_a_no_op(self, store: Store, backdoor: Backdoor) -> None:
        store.put("cb/k", b"v")
        store.delete("cb/k")
        assert backdoor.read("cb/k") is None
        store.delete("cb/k")  # no error, as on S3
        store.delete("never/was")
        with pytest.raises(NotFoundError):
            store.get("cb/k")

    def test_conditional_delete(self, store: Store, backdoor: Backdoor) -> None:
        stale = store.put("cb/k", b"v1")
        current = store.put("cb/k", b"v2")
        with pytest.raises(PreconditionFailedError):
            store.delete("cb/k", if_match=stale)
        assert backdoor.read("cb/k") == b"v2"
        store.delete("cb/k", if_match=current)
        assert backdoor.read("cb/k") is None
        with pytest.raises(PreconditionFailedError):
            store.delete("cb/k", if_match=current)

    def test_recreate_after_delete(self, store: Store) -> None:
        store.put("cb/only", b"1")
        store.delete("cb/only")
        store.put("cb/only", b"2", if_none_match="*")
        assert store.get("cb/only").data == b"2"

    # -- listing ---------------------------------------------------------------------------

    def test_list_prefixes_sorted_and_relative(self, store: Store) -> None:
        keys = [
            "abc/analysis.json",
            "abc/file_0000000000000001.json",
            "abc/_journal/00000000000000000001.json",
            "abcd/analysis.json",
            "b/file_hashes.json",
        ]
        for key in reversed(keys):
            store.put(key, b"{}")
        assert list(store.list()) == sorted(keys)
        assert list(store.list("abc/")) == sorted(k for k in keys if k.startswith("abc/"))
        assert list(store.list("abc")) == sorted(k for k in keys if k.startswith("abc"))
        assert list(store.list("abc/file_")) == ["abc/file_0000000000000001.json"]
        assert list(store.list("abc/_journal/")) == ["abc/_journal/00000000000000000001.json"]
        assert list(store.list("zzz/")) == []

    def test_list_of_empty_store_is_empty(self, store: Store) -> None:
        assert list(store.list()) == []

    def test_list_meta_from_the_middle(self, store: Store) -> None:
        keys = [f"cb/_journal/{n:020d}.{kind}" for n in (1, 2, 3) for kind in ("folded", "json")]
        for key in [*keys, "cb/analysis.json", "cba/x.json"]:
            store.put(key, b"{}")
        full = [m.key for m in store.list_meta("cb/_journal/")]
        assert full == sorted(keys)
        after = [m.key for m in store.list_meta("cb/_journal/", start_after=keys[1])]
        assert after == sorted(keys)[2:]
        # A start that is no key (S3's StartAfter need not exist), before and after all.
        between = f"cb/_journal/{1:020d}/"
        assert [m.key for m in store.list_meta("cb/_journal/", start_after=between)] == keys[2:]
        assert [m.key for m in store.list_meta("cb/", start_after="cb/_journal/~")] == [
            "cb/analysis.json"
        ]
        assert list(store.list_meta("cb/_journal/", start_after="cb/~")) == []
        assert [m.etag for m in store.list_meta("cb/_journal/", start_after="")] == [
            m.etag for m in store.list_meta("cb/_journal/")
        ]

    # -- validation --------------------------------------------------------------------------

    @pytest.mark.parametrize("bad", BAD_KEYS, ids=lambda k: repr(k)[:40])
    def test_bad_keys_are_refused_before_the_backend(self, store: Store, bad: str) -> None:
        with pytest.raises(InvalidKeyError):
            store.put(bad, b"x")
        with pytest.raises(InvalidKeyError):
            store.get(bad)
        with pytest.raises(InvalidKeyError):
            store.head(bad)
        with pytest.raises(InvalidKeyError):
            store.delete(bad)
        assert list(store.list()) == []

    def test_bad_prefix_is_refused(self, store: Store) -> None:
        with pytest.raises(InvalidKeyError):
            list(store.list("../"))

    # -- modes and limits --------------------------------------------------------------------

    def test_read_only_refuses_writes_and_reads_fine(
        self, store: Store, store_factory: Callable[..., Store], backdoor: Backdoor
    ) -> None:
        store.put("cb/k", b"v")
        with store_factory(read_only=True) as ro:
            assert ro.read_only
            assert ro.get("cb/k").data == b"v"
            assert list(ro.list()) == ["cb/k"]
            with pytest.raises(ReadOnlyError):
                ro.put("cb/k", b"w")
            with pytest.raises(ReadOnlyError):
                ro.put("cb/new", b"w", if_none_match="*")
            with pytest.raises(ReadOnlyError):
                ro.delete("cb/k")
            with pytest.raises(ReadOnlyError):
                ro.put_many({"cb/a": b"1"})
            with pytest.raises(ReadOnlyError):
                ro.delete_many(["cb/k"])
        assert backdoor.read("cb/k") == b"v"
        assert backdoor.read("cb/new") is None

    def test_max_object_size_refuses_large_objects(
        self, store: Store, store_factory: Callable[..., Store]
    ) -> None:
        store.put("cb/big", b"x" * 2000)
        store.put("cb/small", b"x" * 10)
        with store_factory(max_object_size=1000) as limited:
            with pytest.raises(ObjectTooLargeError) as info:
                limited.get("cb/big")
            assert info.value.key == "cb/big"
            assert limited.get("cb/small").data == b"x" * 10

    def test_closed_store_refuses_use(self, store_factory: Callable[..., Store]) -> None:
        store = store_factory()
        store.put("cb/k", b"v")
        store.close()
        store.close()  # twice is fine
        for op in (
            lambda: store.get("cb/k"),
            lambda: store.head("cb/k"),
            lambda: store.put("cb/k", b"w"),
            lambda: store.delete("cb/k"),
            lambda: list(store.list()),
            lambda: store.get_many(["cb/k"]),
            lambda: store.put_many({"cb/k": b"w"}),
            lambda: store.delete_many(["cb/k"]),
        ):
            with pytest.raises(StoreClosedError):
                op()
        with store_factory() as again:
            assert again.get("cb/k").data == b"v"

    def test_repr_names_the_backend_and_url(self, store: Store) -> None:
        text = repr(store)
        assert type(store).__name__ in text
        assert store.url in text

    # -- bulk ---------------------------------------------------------------------------------

    def test_put_many_get_many_delete_many(self, store: Store, backdoor: Backdoor) -> None:
        items = {f"cb/file_{i:016x}.json": f"{{{i}}}".encode() for i in range(40)}
        etags = store.put_many(items)
        assert etags == {k: etag_of(v) for k, v in items.items()}
        got = store.get_many([*items, "cb/missing.json"])
        assert got["cb/missing.json"] is None
        for key, data in items.items():
            obj = got[key]
            assert obj is not None
            assert obj.data == data
            assert obj.etag == etags[key]
        doomed = list(items)[:25]
        store.delete_many(doomed)
        assert all(backdoor.read(k) is None for k in doomed)
        assert sorted(store.list("cb/")) == sorted(list(items)[25:])

    # -- concurrency -------------------------------------------------------------------------

    def test_threads_racing_compare_and_swap_lose_nothing(
        self, store_factory: Callable[..., Store], store: Store
    ) -> None:
        if not store.capabilities.atomic_conditional_writes:
            pytest.skip(f"{type(store).__name__} does not write conditionally")
        threads, each = 6, 15
        barrier = threading.Barrier(threads)
        results: list[tuple[int, int]] = []

        def run() -> None:
            results.append(increment_counter(store_factory, "cb/counter", each, barrier))

        workers = [threading.Thread(target=run) for _ in range(threads)]
        for w in workers:
            w.start()
        for w in workers:
            w.join()
        assert sum(done for done, _ in results) == threads * each
        assert int(store.get("cb/counter").data) == threads * each

    def test_processes_racing_compare_and_swap_lose_nothing(
        self, process_store_factory: Callable[[], Store] | None, store: Store
    ) -> None:
        if process_store_factory is None:
            pytest.skip(f"{type(store).__name__} cannot be shared between processes")
        if not store.capabilities.atomic_conditional_writes:
            pytest.skip(f"{type(store).__name__} does not write conditionally")
        n, each = self.race_processes, self.race_increments
        ctx = multiprocessing.get_context("spawn")
        with ctx.Manager() as manager:
            barrier = manager.Barrier(n)
            with ctx.Pool(n) as pool:
                results = pool.starmap(
                    increment_counter,
                    [(process_store_factory, "cb/counter", each, barrier)] * n,
                )
        assert sum(done for done, _ in results) == n * each
        assert int(store.get("cb/counter").data) == n * each

    # -- the probe -----------------------------------------------------------------------------

    def test_probe_finds_conditional_writes_honoured(self, store: Store) -> None:
        if not store.capabilities.atomic_conditional_writes:
            pytest.skip(f"{type(store).__name__} does not write conditionally")
        result = store.probe()
        assert result.ok, result.detail
        assert list(store.list()) == []  # the scratch key is gone
