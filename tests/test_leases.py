"""Leases: exclusion, expiry and take-over, renewal, and fencing of stale holders."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from documee_remote import PersistenceManager
from documee_remote.bookkeeping import BOOKKEEPING_KEY
from documee_remote.leases import FencedError, LeaseHeldError, LeaseLostError
from documee_remote.stores import LocalStore, MemoryStore, Store
from documee_remote.testing.factories import make_file_analysis


@pytest.fixture(params=["local", "memory"])
def pm(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[PersistenceManager]:
    store: Store = LocalStore(tmp_path / "store") if request.param == "local" else MemoryStore()
    with PersistenceManager(store) as manager:
        yield manager


def test_lease_excludes_others_and_release_hands_over(pm: PersistenceManager) -> None:
    with pm.lease("cb1", ttl=30, owner="first") as first:
        assert first.token == 1
        with pytest.raises(LeaseHeldError) as info:
            pm.lease("cb1", ttl=30, owner="second").acquire()
        assert info.value.holder == "first"
        assert "first" in str(info.value)
    with pm.lease("cb1", ttl=30, owner="second") as second:
        assert second.token == 2
    assert pm.store.exists("cb1/_lease.json")  # kept, so tokens keep counting


def test_expired_lease_is_taken_over_and_the_old_holder_is_fenced(
    pm: PersistenceManager,
) -> None:
    pm.merge_file_analyses("cb1", {"/a.py": make_file_analysis("/a.py")}, {})
    stale = pm.lease("cb1", ttl=0.3, owner="stale", auto_renew=False).acquire()
    with pytest.raises(LeaseHeldError):
        pm.lease("cb1", ttl=0.3, owner="new").acquire()
    # The holder stalls past its TTL; a contender watching the unrenewed
    # lease for a whole TTL takes it over.
    new = pm.lease("cb1", ttl=5, owner="new", wait=3).acquire()
    assert new.token == stale.token + 1
    # Taking over recorded the new token in analysis.json at once, so the
    # stale holder is refused before the new one has merged anything.
    with pytest.raises(FencedError, match="taken over"):
        pm.merge_file_analyses(
            "cb1", {"/late.py": make_file_analysis("/late.py")}, {}, fencing_token=stale.token
        )
    with pytest.raises(LeaseLostError):
        stale.renew()
    committed = pm.merge_file_analyses(
        "cb1", {"/b.py": make_file_analysis("/b.py")}, {}, fencing_token=new.token
    )
    assert set(committed.file_analyses) == {"/a.py", "/b.py"}
    assert getattr(committed, BOOKKEEPING_KEY)["fence"] == new.token
    new.release()
    stale.release()  # harmless: nothing of its own to release
    with pm.lease("cb1", ttl=5) as third:
        assert third.token == new.token + 1


def test_auto_renewal_keeps_the_lease_past_its_ttl(pm: PersistenceManager) -> None:
    with pm.lease("cb1", ttl=0.4, owner="holder") as holder:
        time.sleep(1.0)
        holder.check()
        with pytest.raises(LeaseHeldError):
            pm.lease("cb1", ttl=0.4, owner="other", clock_skew=0).acquire()


def test_tokens_continue_from_the_analysis_if_the_lease_object_is_lost(
    pm: PersistenceManager,
) -> None:
    pm.merge_file_analyses("cb1", {"/a.py": make_file_analysis("/a.py")}, {})
    for _ in range(3):
        with pm.lease("cb1", ttl=5):
            pass
    pm.store.delete("cb1/_lease.json")  # e.g. expired by a bucket lifecycle rule
    with pm.lease("cb1", ttl=5) as lease:
        assert lease.token == 4


def test_contending_threads_never_overlap(pm: PersistenceManager) -> None:
    inside: list[str] = []
    overlaps: list[tuple[str, str]] = []
    tokens: list[int] = []

    def work(name: str) -> None:
        for _ in range(3):
            with pm.lease("cb1", ttl=2, owner=name, wait=30) as lease:
                if inside:
                    overlaps.append((inside[0], name))
                inside.append(name)
                tokens.append(lease.token)
                time.sleep(0.02)
                inside.remove(name)

    threads = [threading.Thread(target=work, args=(f"t{i}",)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert overlaps == []
    assert sorted(tokens) == list(range(1, 13))
    assert tokens == sorted(tokens)  # handed out in order of acquisition


def test_a_taken_over_holder_is_fenced_before_the_first_analysis_exists(
    pm: PersistenceManager,
) -> None:
    # issue 12, defect 2: with no analysis.json yet (the first full analysis a
    # lease exists for), the stale holder's merge went through with token 1
    # and recorded 1 as the fence.
    assert pm.load_analysis_etag("fresh") is None
    stale = pm.lease("fresh", ttl=0.3, owner="stale", auto_renew=False).acquire()
    new = pm.lease("fresh", ttl=5, owner="new", wait=3, auto_renew=False).acquire()
    assert new.token == stale.token + 1
    with pytest.raises(FencedError, match="taken over"):
        pm.merge_file_analyses(
            "fresh", {"/late.py": make_file_analysis("/late.py")}, {}, fencing_token=stale.token
        )
    stored = pm.load_analysis("fresh")
    assert stored is not None
    assert "/late.py" not in stored.file_analyses
    assert getattr(stored, BOOKKEEPING_KEY)["fence"] == new.token
    committed = pm.merge_file_analyses(
        "fresh", {"/a.py": make_file_analysis("/a.py")}, {}, fencing_token=new.token
    )
    assert set(committed.file_analyses) == {"/a.py"}
    assert getattr(committed, BOOKKEEPING_KEY)["fence"] == new.token
    new.release()


def test_the_first_holders_fence_is_recorded_at_acquisition(pm: PersistenceManager) -> None:
    # A stale holder that commits after being taken over must find a fence
    # that is at least its successor's token, whatever it read before.
    with pm.lease("fresh", ttl=5) as lease:
        stored = pm.load_analysis("fresh")
        assert stored is not None
        assert stored.file_analyses == {}
        assert getattr(stored, BOOKKEEPING_KEY)["fence"] == lease.token
