"""LocalStore: the contract, plus what only a local directory can show."""

from __future__ import annotations

import functools
import os
from collections.abc import Callable
from pathlib import Path

import pytest

from documee_remote import open_store
from documee_remote.errors import InvalidKeyError, NotFoundError, StorageFullError
from documee_remote.stores import LocalStore, Store
from documee_remote.testing.contract import DirectoryBackdoor, StoreContract


class TestLocalStore(StoreContract):
    race_increments = 100  # the 8 x 100 = 800

    @pytest.fixture
    def store_factory(self, tmp_path: Path) -> Callable[..., Store]:
        return functools.partial(LocalStore, tmp_path / "root")

    @pytest.fixture
    def backdoor(self, tmp_path: Path) -> DirectoryBackdoor:
        return DirectoryBackdoor(tmp_path / "root")

    @pytest.fixture
    def process_store_factory(self, tmp_path: Path) -> Callable[[], Store]:
        return functools.partial(open_store, f"file://{tmp_path / 'root'}")


def test_layout_on_disk_is_upstreams(tmp_path: Path) -> None:
    store = LocalStore(tmp_path)
    store.put("f894e86523a62387/analysis.json", b"{}")
    assert (tmp_path / "f894e86523a62387" / "analysis.json").read_bytes() == b"{}"


def test_no_temp_files_remain_and_listing_skips_them(tmp_path: Path) -> None:
    store = LocalStore(tmp_path)
    store.put("cb/a.json", b"1")
    store.put("cb/a.json", b"2", if_match=store.head("cb/a.json").etag)
    assert sorted(os.listdir(tmp_path / "cb")) == ["a.json"]
    (tmp_path / "cb" / ".tmp-deadbeef").write_bytes(b"partial")
    assert list(store.list()) == ["cb/a.json"]
    os.utime(tmp_path / "cb" / ".tmp-deadbeef", (1, 1))
    assert store.remove_stale_temp_files(older_than=60) == 1
    assert sorted(os.listdir(tmp_path / "cb")) == ["a.json"]


def test_deleting_the_last_object_removes_the_directory(tmp_path: Path) -> None:
    store = LocalStore(tmp_path)
    store.put("cb/a.json", b"1")
    store.delete("cb/a.json")
    assert not (tmp_path / "cb").exists()
    assert tmp_path.exists()
    store.put("cb/a.json", b"again")
    assert store.get("cb/a.json").data == b"again"


def test_in_place_rewrite_by_another_program_is_seen(tmp_path: Path) -> None:
    # Upstream Documee truncates and rewrites files in place: the cached ETag
    # must not outlive such a change.
    store = LocalStore(tmp_path)
    store.put("cb/a.json", b"original")
    with open(tmp_path / "cb" / "a.json", "r+b") as f:
        f.truncate(0)
        f.write(b"rewritten")
    os.utime(tmp_path / "cb" / "a.json", ns=(1, 1_000_000_000))
    assert store.head("cb/a.json").etag == store.get("cb/a.json").etag
    assert store.get("cb/a.json").data == b"rewritten"


def test_symlink_out_of_the_root_is_refused(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.json").write_bytes(b"secret")
    root = tmp_path / "root"
    root.mkdir()
    (root / "cb").symlink_to(outside)
    store = LocalStore(root)
    with pytest.raises(InvalidKeyError):
        store.get("cb/secret.json")
    with pytest.raises(InvalidKeyError):
        store.put("cb/new.json", b"x")
    assert not (outside / "new.json").exists()


def test_key_colliding_with_a_directory_is_a_typed_error(tmp_path: Path) -> None:
    store = LocalStore(tmp_path)
    store.put("cb/a/b.json", b"1")
    with pytest.raises(InvalidKeyError):
        store.put("cb/a", b"2")
    with pytest.raises(NotFoundError):
        store.get("cb/a")


def test_full_disk_is_a_typed_error_and_leaves_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = LocalStore(tmp_path)
    store.put("cb/a.json", b"old")
    real_write = os.write

    def full(fd: int, data: object) -> int:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "write", full)
    with pytest.raises(StorageFullError) as info:
        store.put("cb/a.json", b"new" * 1000)
    monkeypatch.setattr(os, "write", real_write)
    assert info.value.key == "cb/a.json"
    assert store.get("cb/a.json").data == b"old"
    assert sorted(os.listdir(tmp_path / "cb")) == ["a.json"]


def test_open_store_accepts_paths_and_file_urls(tmp_path: Path) -> None:
    for url in (str(tmp_path), f"file://{tmp_path}", tmp_path.as_uri()):
        store = open_store(url)
        assert isinstance(store, LocalStore)
        assert store.root == tmp_path


def test_deleting_a_codebase_with_a_journal_concurrently_never_trips_on_a_vanished_dir(
    tmp_path: Path,
) -> None:
    """delete_many empties _journal/ and the codebase directory at once: the thread that
    empties _journal/ removes the codebase directory too once it is empty, which once
    made a concurrent delete's directory fsync fail with NotFoundError."""
    for _ in range(30):
        store = LocalStore(tmp_path / "root")
        keys = [f"cb/_journal/{n:020d}.json" for n in range(4)] + [
            f"cb/f{n}.json" for n in range(4)
        ]
        for key in keys:
            store.put(key, b"{}")
        assert store.delete_many(keys) == []
        assert list(store.list()) == []
        assert not (tmp_path / "root" / "cb").exists()
