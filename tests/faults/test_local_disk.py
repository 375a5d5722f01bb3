"""Local disk: a full disk, fsync of file and directory on every commit, huge objects."""

from __future__ import annotations

import errno
import os
import random
import re
import stat
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from documee_remote import PersistenceManager, RetryPolicy
from documee_remote.errors import ObjectTooLargeError, StorageFullError
from documee_remote.stores import LocalStore, MemoryStore
from documee_remote.stores import local as local_module

from ._helpers import (
    check_job_outcome,
    check_objects_parse,
    merge_job,
    versioned,
)
from .conftest import FaultLedger

FAST = RetryPolicy(max_attempts=40, base_delay=0.001, max_delay=0.01, deadline=30)


def tmp_files(root: Path) -> list[Path]:
    return list(root.rglob(".tmp-*"))


def rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


# -- a full disk ---------------------------------------------------------------------------------


class FullDisk:
    """Stands in for the ``os`` module inside ``stores/local.py``: writes and fsyncs fail
    with ENOSPC while ``full`` is set, or with probability ``chance``."""

    def __init__(self, *, chance: float = 0.0, seed: int = 0) -> None:
        self.full = False
        self.chance = chance
        self.injected = 0
        self._random = random.Random(seed)
        self._lock = threading.Lock()

    def _maybe_fail(self, what: str) -> None:
        with self._lock:
            fail = self.full or (self.chance > 0 and self._random.random() < self.chance)
            if fail:
                self.injected += 1
        if fail:
            raise OSError(errno.ENOSPC, f"No space left on device ({what})")

    def write(self, fd: int, data: Any) -> int:
        self._maybe_fail("write")
        return os.write(fd, data)

    def fsync(self, fd: int) -> None:
        self._maybe_fail("fsync")
        os.fsync(fd)

    def __getattr__(self, name: str) -> Any:
        return getattr(os, name)


@pytest.fixture
def full_disk(monkeypatch: pytest.MonkeyPatch) -> FullDisk:
    disk = FullDisk(seed=3)
    monkeypatch.setattr(local_module, "os", disk)
    return disk


def test_a_full_disk_raises_storage_full_and_leaves_the_object_whole(
    tmp_path: Path, full_disk: FullDisk
) -> None:
    store = LocalStore(tmp_path / "root")
    etag = store.put("cb/analysis.json", b'{"v": 1}')
    full_disk.full = True
    for attempt in (
        lambda: store.put("cb/analysis.json", b'{"v": 2}', if_match=etag),
        lambda: store.put("cb/new.json", b"{}", if_none_match="*"),
        lambda: store.put_many({"cb/a.json": b"1", "cb/b.json": b"2"}),
    ):
        with pytest.raises(StorageFullError) as info:
            attempt()
        assert info.value.key is not None
        assert "no space left" in str(info.value)
    assert store.get("cb/analysis.json").data == b'{"v": 1}'
    assert sorted(store.list()) == ["cb/analysis.json"]
    assert tmp_files(tmp_path) == []  # the temporary files were removed
    full_disk.full = False
    store.put("cb/analysis.json", b'{"v": 2}', if_match=etag)
    assert store.get("cb/analysis.json").data == b'{"v": 2}'


def test_merges_on_a_disk_that_keeps_filling_up_lose_nothing(
    tmp_path: Path, full_disk: FullDisk, fault_ledger: FaultLedger
) -> None:
    store = LocalStore(tmp_path / "root")
    # Every write and fsync fails with this chance. A journal merge makes about 20 of
    # them (per-file objects, delta, analysis.json, marker, hashes: each a write, a
    # file fsync and a directory fsync), so a merge gets through about one time in ten.
    full_disk.chance = 0.1
    pm = PersistenceManager(store, retry=FAST)
    job = merge_job(pm, "cb1", steps=10, seed=2)
    full_disk.chance = 0.0
    fault_ledger.record(
        "localdisk",
        "enospc-random",
        "local",
        injected=full_disk.injected,
        survived=full_disk.injected,
        surfaced=sum(job.surfaced.values()),
        note=",".join(f"{k}={v}" for k, v in sorted(job.surfaced.items())),
    )
    assert full_disk.injected > 0
    assert set(job.surfaced) == {"StorageFullError"}
    check_job_outcome(pm, "cb1", job)
    assert tmp_files(tmp_path) == []


@pytest.fixture
def tiny_tmpfs(tmp_path: Path) -> Iterator[Path]:
    """A real 256 KiB tmpfs (needs root and CAP_SYS_ADMIN, as on CI); skipped otherwise."""
    mountpoint = tmp_path / "tiny"
    mountpoint.mkdir()
    result = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=256k", "documee-full", str(mountpoint)],
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {result.stderr.strip()}")
    try:
        yield mountpoint
    finally:
        subprocess.run(["umount", "-l", str(mountpoint)], check=False)


def test_a_really_full_tmpfs(tiny_tmpfs: Path, fault_ledger: FaultLedger) -> None:
    pm = PersistenceManager(LocalStore(tiny_tmpfs / "root"), retry=FAST)
    acked: list[str] = []
    error: StorageFullError | None = None
    for i in range(2000):
        path = f"/src/f{i}.py"
        try:
            pm.merge_file_analyses("cb1", {path: versioned(path, i)}, {path: "h"})
        except StorageFullError as exc:
            error = exc
            break
        acked.append(path)
    assert error is not None, "the 256 KiB disk never filled up"
    assert error.codebase_id == "cb1"
    final = pm.load_analysis("cb1")
    assert final is not None
    assert set(acked) <= set(final.file_analyses)
    check_objects_parse(pm.store)
    assert tmp_files(tiny_tmpfs) == []
    # verify's repairs only delete: they work on a full disk and free space.
    pm.verify("cb1", repair=True, grace_seconds=0)
    fault_ledger.record(
        "localdisk",
        "enospc-real-tmpfs",
        "local",
        injected=1,
        survived=1,
        surfaced=1,
        note=f"filled after {len(acked)} merges",
    )


# -- fsync ---------------------------------------------------------------------------------------


@pytest.fixture
def fs_events(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, str]]:
    """Record fsyncs (of files and of directories), renames and links, in order."""
    events: list[tuple[str, str]] = []
    real_fsync, real_replace, real_link, real_mkdir = os.fsync, os.replace, os.link, os.mkdir

    def fsync(fd: int) -> None:
        kind = "fsync-dir" if stat.S_ISDIR(os.fstat(fd).st_mode) else "fsync-file"
        events.append((kind, os.readlink(f"/proc/self/fd/{fd}")))
        real_fsync(fd)

    def replace(src: Any, dst: Any, **kw: Any) -> None:
        events.append(("replace", os.fspath(dst)))
        real_replace(src, dst, **kw)

    def link(src: Any, dst: Any, **kw: Any) -> None:
        events.append(("link", os.fspath(dst)))
        real_link(src, dst, **kw)

    def mkdir(path: Any, *args: Any, **kw: Any) -> None:
        real_mkdir(path, *args, **kw)
        events.append(("mkdir", os.fspath(path)))  # only directories really made

    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(os, "replace", replace)
    monkeypatch.setattr(os, "link", link)
    monkeypatch.setattr(os, "mkdir", mkdir)
    return events


def test_every_commit_fsyncs_the_file_then_renames_then_fsyncs_the_directory(
    tmp_path: Path, fs_events: list[tuple[str, str]]
) -> None:
    root = tmp_path / "root"
    store = LocalStore(root)
    cb = str(root / "cb")
    etag = store.put("cb/a.json", b"1", if_none_match="*")
    fs_events.clear()
    store.put("cb/a.json", b"2", if_match=etag)
    kinds = [k for k, _ in fs_events]
    assert kinds == ["fsync-file", "replace", "fsync-dir"]
    assert os.path.dirname(fs_events[0][1]) == cb  # the temporary file beside the target
    assert os.path.basename(fs_events[0][1]).startswith(".tmp-")
    assert fs_events[1][1] == os.path.join(cb, "a.json")
    assert fs_events[2][1] == cb

    fs_events.clear()
    store.put("cb/b.json", b"3", if_none_match="*")
    assert [k for k, _ in fs_events] == ["fsync-file", "link", "fsync-dir"]

    fs_events.clear()
    store.delete("cb/b.json")
    assert fs_events == [("fsync-dir", cb)]

    fs_events.clear()
    pm = PersistenceManager(store)
    pm.merge_file_analyses("cb", {"/x.py": versioned("/x.py", 1)}, {"/x.py": "h"})
    files = sum(1 for k, _ in fs_events if k == "fsync-file")
    dirs = sum(1 for k, _ in fs_events if k == "fsync-dir")
    written = [os.path.relpath(p, cb) for k, p in fs_events if k in ("replace", "link")]
    # per-file object, journal delta, the folder record (taken), analysis.json,
    # file_hashes.json, the commit marker, and (its look for more found nothing) the
    # folder record freed: each flushed, renamed, its directory flushed; and the new
    # _journal directory made durable in its parent.
    folder = os.path.join("_journal", "_folder.json")
    assert [_shape(w) for w in written] == [
        "file_N.json",
        os.path.join("_journal", "wN-N.json"),
        folder,
        "analysis.json",
        "file_hashes.json",
        os.path.join("_journal", "cN.folded"),
        folder,
    ]
    assert files == len(written) == 7
    assert dirs == 7 + 1
    assert ("mkdir", os.path.join(cb, "_journal")) in fs_events


def _shape(key: str) -> str:
    """A written key with its numbers and random parts replaced by N."""
    key = re.sub(r"c\d{20}\.folded$", "cN.folded", key)
    key = re.sub(r"w\d{13}-[0-9a-f]{16}\.json$", "wN-N.json", key)
    return re.sub(r"file_[0-9a-f]{16}\.json$", "file_N.json", key)


def test_without_fsync_nothing_is_flushed(tmp_path: Path, fs_events: list[tuple[str, str]]) -> None:
    store = LocalStore(tmp_path / "root", fsync=False)
    store.put("cb/a.json", b"1")
    store.delete("cb/a.json")
    assert [k for k, _ in fs_events if k.startswith("fsync")] == []


def test_a_new_directory_is_made_durable_in_its_parent(
    tmp_path: Path, fs_events: list[tuple[str, str]]
) -> None:
    root = tmp_path / "root"
    root.mkdir()
    store = LocalStore(root)
    store.put("newcb/analysis.json", b"{}")
    assert ("mkdir", str(root / "newcb")) in fs_events
    assert ("fsync-dir", str(root)) in fs_events


# -- objects that claim gigabytes ------------------------------------------------------------------


def test_a_gigabyte_object_is_refused_before_it_is_read(tmp_path: Path) -> None:
    root = tmp_path / "root"
    (root / "cb1").mkdir(parents=True)
    with open(root / "cb1" / "analysis.json", "wb") as f:
        f.truncate(3 << 30)  # sparse: claims 3 GiB, occupies nothing
    store = LocalStore(root, max_object_size=64 << 20)
    before = rss_bytes()
    started = time.monotonic()
    with pytest.raises(ObjectTooLargeError) as info:
        PersistenceManager(store).load_analysis("cb1")
    assert info.value.key == "cb1/analysis.json"
    assert "3221225472 bytes" in str(info.value)
    assert time.monotonic() - started < 1.0
    assert rss_bytes() - before < 32 << 20  # the body was never read
    # (head() would compute the MD5 of all 3 GiB: slow, though chunked, so memory stays flat)


def test_stores_have_an_object_size_limit_by_default(tmp_path: Path) -> None:
    for store in (LocalStore(tmp_path), MemoryStore(), PersistenceManager("memory://").store):
        assert store.max_object_size is not None
        assert store.max_object_size <= 4 << 30


def test_os_proxy_is_the_module_the_store_uses() -> None:
    # The full-disk fixture replaces ``os`` inside stores/local.py; guard that assumption.
    assert isinstance(local_module.os, ModuleType)
    assert local_module.os is os
