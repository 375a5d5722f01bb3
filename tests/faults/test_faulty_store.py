"""The FaultyStore wrapper itself: a proper Store, and faults exactly as planned."""

from __future__ import annotations

import contextlib
import functools
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from documee_remote.errors import (
    NotFoundError,
    PermissionDeniedError,
    ReadOnlyError,
    ServiceUnavailableError,
    ThrottledError,
    TooManyConflictsError,
)
from documee_remote.stores import LocalStore, MemoryStore, Store, etag_of
from documee_remote.testing.contract import DirectoryBackdoor, StoreContract
from documee_remote.testing.faulty import FaultPlan, FaultyStore


def _faulty_local(root: Path, **options: object) -> Store:
    return FaultyStore(LocalStore(root, **options), FaultPlan())  # type: ignore[arg-type]


class TestFaultyStoreContract(StoreContract):
    """With an empty plan, a FaultyStore is indistinguishable from the store it wraps."""

    @pytest.fixture
    def store_factory(self, tmp_path: Path) -> Callable[..., Store]:
        return functools.partial(_faulty_local, tmp_path / "root")

    @pytest.fixture
    def backdoor(self, tmp_path: Path) -> DirectoryBackdoor:
        return DirectoryBackdoor(tmp_path / "root")


def test_it_takes_url_capabilities_and_limits_from_the_inner_store(tmp_path: Path) -> None:
    inner = LocalStore(tmp_path, read_only=True, concurrency=3, max_object_size=10)
    store = FaultyStore(inner)
    assert store.url == inner.url
    assert store.capabilities == inner.capabilities
    assert (store.read_only, store.concurrency, store.max_object_size) == (True, 3, 10)
    with pytest.raises(ReadOnlyError):
        store.put("cb/k", b"v")
    store.close()
    assert inner._closed


def test_error_before_leaves_the_inner_store_untouched() -> None:
    inner = MemoryStore()
    plan = FaultPlan()
    rule = plan.add("503", op="put", error=ThrottledError)
    store = FaultyStore(inner, plan)
    with pytest.raises(ThrottledError) as info:
        store.put("cb/k", b"v")
    assert info.value.key == "cb/k"
    assert "503" in str(info.value)
    assert not inner.exists("cb/k")
    store.put("cb/k", b"v")  # times=1: the next call goes through
    assert inner.get("cb/k").data == b"v"
    assert (rule.seen, rule.fired, plan.injected["503"]) == (2, 1, 1)


def test_error_after_lets_the_write_land() -> None:
    inner = MemoryStore()
    plan = FaultPlan()
    plan.add(
        "lost-response", op=("put", "delete"), error=ServiceUnavailableError, after=True, times=2
    )
    store = FaultyStore(inner, plan)
    with pytest.raises(ServiceUnavailableError):
        store.put("cb/k", b"v", if_none_match="*")
    assert inner.get("cb/k").data == b"v"
    with pytest.raises(ServiceUnavailableError):
        store.delete("cb/k")
    assert not inner.exists("cb/k")
    assert [e.after for e in plan.events] == [True, True]


def test_truncated_reads_keep_the_full_objects_etag() -> None:
    inner = MemoryStore()
    inner.put("cb/k", b"0123456789")
    plan = FaultPlan()
    plan.add("half", op="get", truncate=0.5)
    plan.add("three", op="get", truncate=3)
    store = FaultyStore(inner, plan)
    first, second, third = store.get("cb/k"), store.get("cb/k"), store.get("cb/k")
    assert first.data == b"01234"
    assert second.data == b"012"
    assert third.data == b"0123456789"
    assert first.etag == second.etag == third.etag == etag_of(b"0123456789")


def test_delay_key_patterns_and_nth() -> None:
    plan = FaultPlan()
    plan.add("slow", op="head", key=r"^cb/slow", delay=0.05, times=None)
    plan.add("third", op="get", key=lambda k: k.endswith(".json"), error=NotFoundError, nth=3)
    store = FaultyStore(MemoryStore(), plan)
    store.put("cb/slow", b"1")
    store.put("cb/a.json", b"2")
    started = time.monotonic()
    store.head("cb/slow")
    assert time.monotonic() - started >= 0.05
    store.get("cb/a.json")
    store.get("cb/a.json")
    with pytest.raises(NotFoundError):
        store.get("cb/a.json")
    store.get("cb/a.json")
    assert plan.injected == {"slow": 1, "third": 1}


def test_bulk_operations_fault_per_key() -> None:
    inner = MemoryStore()
    plan = FaultPlan()
    plan.add("deny-b", op="put", key=r"/b$", error=PermissionDeniedError)
    store = FaultyStore(inner, plan)
    with pytest.raises(PermissionDeniedError):
        store.put_many({"cb/a": b"1", "cb/b": b"2", "cb/c": b"3"})
    assert sorted(inner.list()) == ["cb/a", "cb/c"]  # the others completed
    assert plan.calls["put"] == 3


def test_the_same_seed_replays_the_same_faults() -> None:
    def run(seed: int) -> list[tuple[str, str]]:
        plan = FaultPlan(seed=seed)
        plan.add("flaky", error=ThrottledError, probability=0.3, times=None)
        store = FaultyStore(MemoryStore(), plan)
        for i in range(200):
            with contextlib.suppress(ThrottledError):
                store.put(f"cb/k{i % 7}", b"x")
        return [(e.operation, e.key) for e in plan.events]

    assert run(11) == run(11)
    assert run(11) != run(12)
    assert 30 < len(run(11)) < 90  # about 30% of 200


def test_errors_needing_extra_fields_still_raise_a_library_error() -> None:
    plan = FaultPlan()
    plan.add("odd", op="get", error=TooManyConflictsError)
    store = FaultyStore(MemoryStore(), plan)
    with pytest.raises(Exception) as info:
        store.get("cb/k")
    assert "injected fault" in str(info.value)


def test_bad_rules_are_refused() -> None:
    plan = FaultPlan()
    with pytest.raises(ValueError):
        plan.add("x", op="frobnicate", error=ThrottledError)
    with pytest.raises(ValueError):
        plan.add("x", op="put", truncate=0.5)
    with pytest.raises(ValueError):
        plan.add("x", after=True, delay=1)
    with pytest.raises(ValueError):
        plan.add("x")
