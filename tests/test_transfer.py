"""The transfer engine: push, pull, sync and migrate between a directory and a store."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest

from documee_remote import codec, journal, layout
from documee_remote.analyser import analyse_codebase
from documee_remote.errors import (
    ConfigurationError,
    InvalidKeyError,
    NotFoundError,
    ServiceUnavailableError,
    UnsupportedOperationError,
)
from documee_remote.integrity import FindingKind
from documee_remote.manager import PersistenceManager
from documee_remote.models import FileAnalysis
from documee_remote.retry import RetryPolicy
from documee_remote.stores import LocalStore, MemoryStore, Store
from documee_remote.stores.base import Capabilities, etag_of
from documee_remote.testing.factories import content_hash, make_file_analysis
from documee_remote.testing.faulty import FaultPlan, FaultyStore
from documee_remote.testing.fixtures import S3Endpoint
from documee_remote.transfer import (
    SYNC_STATE_NAME,
    TransferEvent,
    migrate,
    pull,
    push,
    sync,
)

from .conftest import QUIRK_FIXTURES, SHARED_FIXTURES

STALE = QUIRK_FIXTURES / "incremental-stale"


def files_of(root: Path) -> dict[str, bytes]:
    """Every visible file under ``root`` as ``{relative path: bytes}``."""
    found = {}
    for path in sorted(root.rglob("*")):
        rel = path.relative_to(root)
        if path.is_file() and not any(part.startswith(".") for part in rel.parts):
            found[rel.as_posix()] = path.read_bytes()
    return found


def copy_tree(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    for path in dst.rglob("*"):
        path.chmod(0o755 if path.is_dir() else 0o644)
    dst.chmod(0o755)
    return dst


def only_codebase(root: Path) -> str:
    (codebase,) = [p.name for p in root.iterdir() if p.is_dir()]
    return codebase


#: Objects in the incremental-stale fixture: analysis.json, file_hashes.json, 4 per-file.
COUNT = 6


class RecordingStore(MemoryStore):
    """Records every write and delete, in order."""

    def __init__(self) -> None:
        super().__init__()
        self.log: list[tuple[str, str, str]] = []

    def _put(self, key: str, data: bytes, *, if_match: str | None, create_only: bool) -> str:
        condition = "if-none-match" if create_only else ("if-match" if if_match else "none")
        self.log.append(("put", key, condition))
        return super()._put(key, data, if_match=if_match, create_only=create_only)

    def _delete(self, key: str, *, if_match: str | None) -> None:
        self.log.append(("delete", key, "if-match" if if_match else "none"))
        super()._delete(key, if_match=if_match)


class MultipartStore(MemoryStore):
    """A store whose ETags look like S3's multipart ones: not the MD5 of the bytes."""

    def _put(self, key: str, data: bytes, *, if_match: str | None, create_only: bool) -> str:
        digest = hashlib.md5(hashlib.md5(data).digest()).hexdigest()
        etag = f'"{digest}-2"'
        with self._lock:
            current = self._objects.get(key)
            if create_only and current is not None:
                raise self._already_exists(key)
            if if_match is not None and (current is None or current[1] != if_match):
                raise self._precondition_failed(key, if_match)
            self._objects[key] = (data, etag, datetime.now(UTC))
        return etag


# -- push / pull / migrate ----------------------------------------------------------------------


def test_migrate_then_pull_is_byte_exact(codebase_dir: Path, tmp_path: Path) -> None:
    store = MemoryStore()
    root = codebase_dir.parent
    report = migrate(root, store, [codebase_dir.name])
    expected = files_of(codebase_dir)
    assert report.ok
    assert report.verified == len(expected)
    assert sorted(report.copied) == sorted(f"{codebase_dir.name}/{n}" for n in expected)
    out = tmp_path / "pulled"
    pulled = pull(store, out, [codebase_dir.name])
    assert len(pulled.copied) == len(expected)
    assert files_of(out / codebase_dir.name) == expected


def test_second_push_copies_nothing_and_a_change_copies_only_itself(tmp_path: Path) -> None:
    local = copy_tree(STALE, tmp_path / "local")
    codebase = only_codebase(local)
    store = MemoryStore()
    first = push(local, store)
    assert len(first.copied) == len(files_of(local)) == COUNT
    again = push(local, store)
    assert again.copied == []
    assert again.skipped_same == COUNT
    assert again.bytes == 0
    (local / codebase / "file_hashes.json").write_bytes(b"{}")
    third = push(local, store)
    assert third.copied == [f"{codebase}/file_hashes.json"]
    assert store.get(f"{codebase}/file_hashes.json").data == b"{}"


def test_analysis_json_is_committed_after_objects_and_before_hashes(tmp_path: Path) -> None:
    local = copy_tree(STALE, tmp_path / "local")
    codebase = only_codebase(local)
    store = RecordingStore()
    push(local, store)
    puts = [entry for entry in store.log if entry[0] == "put"]
    # Per-file objects, then the commit point, then the hash claims (invariant 3).
    assert [key for _, key, _ in puts[-2:]] == [
        f"{codebase}/analysis.json",
        f"{codebase}/file_hashes.json",
    ]
    assert all(key.split("/")[1].startswith("file_") for _, key, _ in puts[:-2])
    assert len(puts) == COUNT
    assert {condition for _, _, condition in puts} == {"if-none-match"}
    # The next push of a changed analysis.json names the version it replaces.
    store.log.clear()
    path = local / codebase / "analysis.json"
    path.write_bytes(path.read_bytes() + b" ")
    push(local, store)
    assert store.log == [("put", f"{codebase}/analysis.json", "if-match")]


def test_dry_run_writes_nothing_and_lists_the_plan(tmp_path: Path) -> None:
    local = copy_tree(STALE, tmp_path / "local")
    store = MemoryStore()
    report = push(local, store, dry_run=True)
    assert report.dry_run
    assert len(report.copied) == COUNT
    assert report.bytes == sum(len(b) for b in files_of(local).values())
    assert list(store.list()) == []
    pulled = pull(store, tmp_path / "nowhere", dry_run=True)
    assert pulled.copied == []
    assert not (tmp_path / "nowhere").exists()


def test_hidden_and_temporary_files_are_never_copied(tmp_path: Path) -> None:
    local = copy_tree(STALE, tmp_path / "local")
    codebase = only_codebase(local)
    (local / codebase / ".tmp-0123abcd").write_bytes(b"half a write")
    (local / codebase / ".editor.swp").write_bytes(b"x")
    (local / ".hidden").mkdir()
    (local / ".hidden" / "analysis.json").write_bytes(b"{}")
    (local / "README.txt").write_bytes(b"not a codebase")
    store = MemoryStore()
    push(local, store)
    keys = list(store.list())
    assert len(keys) == COUNT
    assert all(k.startswith(codebase + "/") for k in keys)
    assert not any("/." in k for k in keys)


def test_a_remote_change_after_the_plan_is_a_conflict_not_an_overwrite(tmp_path: Path) -> None:
    local = copy_tree(STALE, tmp_path / "local")
    codebase = only_codebase(local)
    store = MemoryStore()
    push(local, store)
    path = local / codebase / "analysis.json"
    path.write_bytes(path.read_bytes() + b"\n")
    key = f"{codebase}/analysis.json"

    def racing_writer(event: TransferEvent) -> None:
        if event.kind == "plan":  # another analyser commits between plan and copy
            store.put(key, b'{"theirs": true}')

    report = push(local, store, progress=racing_writer)
    assert not report.ok
    assert [c.key for c in report.conflicts] == [key]
    assert store.get(key).data == b'{"theirs": true}'


def test_a_conflicting_per_file_object_keeps_analysis_json_unwritten(tmp_path: Path) -> None:
    local = copy_tree(STALE, tmp_path / "local")
    codebase = only_codebase(local)
    store = MemoryStore()
    names = sorted(files_of(local / codebase))
    per_file = next(n for n in names if n.startswith("file_") and n != "file_hashes.json")
    for name in (per_file, "analysis.json"):
        path = local / codebase / name
        path.write_bytes(path.read_bytes() + b" ")

    def racing_writer(event: TransferEvent) -> None:
        if event.kind == "plan":
            store.put(f"{codebase}/{per_file}", b"someone else's")

    report = push(local, store, progress=racing_writer)
    keys = {c.key for c in report.conflicts}
    assert f"{codebase}/{per_file}" in keys
    assert f"{codebase}/analysis.json" in keys
    assert not store.exists(f"{codebase}/analysis.json")
    assert report.codebases[codebase] == "conflict"


def test_migrate_refuses_to_overwrite_different_data_unless_forced(tmp_path: Path) -> None:
    local = copy_tree(STALE, tmp_path / "local")
    codebase = only_codebase(local)
    store = MemoryStore()
    store.put(f"{codebase}/analysis.json", b"{}")
    refused = migrate(local, store)
    assert refused.refused
    assert not refused.ok
    assert [c.key for c in refused.conflicts] == [f"{codebase}/analysis.json"]
    assert list(store.list()) == [f"{codebase}/analysis.json"]  # nothing written
    forced = migrate(local, store, force=True)
    assert forced.ok
    assert forced.verified == COUNT
    assert (
        store.get(f"{codebase}/analysis.json").data
        == (local / codebase / "analysis.json").read_bytes()
    )


def test_migrate_leaves_the_upstream_directory_untouched(tmp_path: Path) -> None:
    local = copy_tree(STALE, tmp_path / "local")
    before = sorted(p.name for p in local.rglob("*"))
    migrate(local, MemoryStore())
    assert sorted(p.name for p in local.rglob("*")) == before
    assert not (local / SYNC_STATE_NAME).exists()


def test_multipart_etags_fall_back_to_comparing_contents(tmp_path: Path) -> None:
    local = copy_tree(STALE, tmp_path / "local")
    codebase = only_codebase(local)
    store = MultipartStore()
    for name, data in files_of(local / codebase).items():
        store.put(f"{codebase}/{name}", data)
    same = push(local, store)
    assert same.copied == []
    assert same.skipped_same == COUNT
    assert all("-" in meta.etag for meta in store.list_meta())
    store.put(f"{codebase}/file_hashes.json", b"{}")
    changed = push(local, store)
    assert changed.copied == [f"{codebase}/file_hashes.json"]
    assert (
        store.get(f"{codebase}/file_hashes.json").data
        == (local / codebase / "file_hashes.json").read_bytes()
    )


def test_delete_removes_only_within_pushed_codebases(tmp_path: Path) -> None:
    local = copy_tree(STALE, tmp_path / "local")
    codebase = only_codebase(local)
    store = MemoryStore()
    store.put(f"{codebase}/file_0000000000000000.json", b"{}")
    store.put("someone-else/analysis.json", b"{}")
    kept = push(local, store)
    assert store.exists(f"{codebase}/file_0000000000000000.json")
    assert kept.deleted == []
    report = push(local, store, delete=True)
    assert report.deleted == [f"{codebase}/file_0000000000000000.json"]
    assert store.exists("someone-else/analysis.json")


def test_errors_for_missing_directories_and_bad_ids(tmp_path: Path) -> None:
    with pytest.raises(NotFoundError):
        push(tmp_path / "missing", MemoryStore())
    with pytest.raises(InvalidKeyError):
        push(tmp_path, MemoryStore(), ["../etc"])
    local = copy_tree(STALE, tmp_path / "local")
    with pytest.raises(NotFoundError):
        push(local, MemoryStore(), ["not-there"])


def test_the_directory_above_the_analyses_is_refused(tmp_path: Path) -> None:
    documee = tmp_path / ".documee"
    copy_tree(STALE, documee / "analysis")
    with pytest.raises(ConfigurationError, match="analysis"):
        push(documee, MemoryStore())
    with pytest.raises(ConfigurationError):
        migrate(documee, MemoryStore())
    assert push(documee / "analysis", MemoryStore()).ok


def test_report_to_dict_is_json(tmp_path: Path) -> None:
    local = copy_tree(STALE, tmp_path / "local")
    report = push(local, MemoryStore(), dry_run=True)
    data = json.loads(json.dumps(report.to_dict()))
    assert data["operation"] == "push"
    assert data["copied"] == COUNT
    assert data["dry_run"] is True
    assert {a["op"] for a in data["actions"]} == {"put"}


# -- sync ----------------------------------------------------------------------------------


@pytest.fixture
def synced(tmp_path: Path) -> tuple[Path, Store, str]:
    local = copy_tree(STALE, tmp_path / "local")
    store = MemoryStore()
    report = sync(local, store)
    assert report.codebases == {only_codebase(local): "push"}
    return local, store, only_codebase(local)


def test_sync_copies_codebases_that_exist_on_one_side(tmp_path: Path) -> None:
    local = copy_tree(STALE, tmp_path / "local")
    codebase = only_codebase(local)
    store = MemoryStore()
    store.put("remote-only/analysis.json", b"{}")
    report = sync(local, store)
    assert report.codebases == {codebase: "push", "remote-only": "pull"}
    assert (local / "remote-only" / "analysis.json").read_bytes() == b"{}"
    assert len(list(store.list(codebase + "/"))) == COUNT
    again = sync(local, store)
    assert set(again.codebases.values()) == {"same"}
    assert again.copied == []


def test_sync_pushes_a_local_change_and_pulls_a_remote_one(
    synced: tuple[Path, Store, str],
) -> None:
    local, store, codebase = synced
    (local / codebase / "file_hashes.json").write_bytes(b'{"local": "1"}')
    pushed = sync(local, store)
    assert pushed.codebases == {codebase: "push"}
    assert store.get(f"{codebase}/file_hashes.json").data == b'{"local": "1"}'
    store.put(f"{codebase}/file_hashes.json", b'{"remote": "2"}')
    pulled = sync(local, store)
    assert pulled.codebases == {codebase: "pull"}
    assert (local / codebase / "file_hashes.json").read_bytes() == b'{"remote": "2"}'


def test_sync_refuses_a_codebase_changed_on_both_sides(synced: tuple[Path, Store, str]) -> None:
    local, store, codebase = synced
    key = f"{codebase}/file_hashes.json"
    (local / codebase / "file_hashes.json").write_bytes(b'{"local": "1"}')
    store.put(key, b'{"remote": "2"}')
    report = sync(local, store)
    assert report.codebases == {codebase: "conflict"}
    assert not report.ok
    assert report.copied == []
    assert store.get(key).data == b'{"remote": "2"}'
    assert (local / codebase / "file_hashes.json").read_bytes() == b'{"local": "1"}'
    settled = sync(local, store, prefer="remote")
    assert settled.codebases == {codebase: "pull"}
    assert (local / codebase / "file_hashes.json").read_bytes() == b'{"remote": "2"}'


def test_sync_of_never_synced_different_data_is_a_conflict(tmp_path: Path) -> None:
    local = copy_tree(STALE, tmp_path / "local")
    codebase = only_codebase(local)
    store = MemoryStore()
    store.put(f"{codebase}/analysis.json", b"{}")
    report = sync(local, store, dry_run=True)
    assert report.codebases == {codebase: "conflict"}
    forced = sync(local, store, prefer="local")
    assert forced.codebases == {codebase: "push"}
    assert (
        store.get(f"{codebase}/analysis.json").data
        == (local / codebase / "analysis.json").read_bytes()
    )


def test_sync_never_deletes_without_delete(synced: tuple[Path, Store, str]) -> None:
    local, store, codebase = synced
    victim = next(
        p
        for p in (local / codebase).iterdir()
        if p.name.startswith("file_") and p.name != "file_hashes.json"
    )
    key = f"{codebase}/{victim.name}"
    victim.unlink()
    sync(local, store)
    assert store.exists(key)  # kept remotely...
    again = sync(local, store)
    assert not victim.exists()  # ...and not pulled back either
    assert again.codebases == {codebase: "same"}


def test_sync_with_delete_propagates_a_deletion(synced: tuple[Path, Store, str]) -> None:
    local, store, codebase = synced
    victim = next(
        p
        for p in (local / codebase).iterdir()
        if p.name.startswith("file_") and p.name != "file_hashes.json"
    )
    victim.unlink()
    report = sync(local, store, delete=True)
    assert report.deleted == [f"{codebase}/{victim.name}"]
    assert not store.exists(f"{codebase}/{victim.name}")


def test_sync_dry_run_changes_nothing(synced: tuple[Path, Store, str]) -> None:
    local, store, codebase = synced
    state = (local / SYNC_STATE_NAME).read_bytes()
    (local / codebase / "file_hashes.json").write_bytes(b"{}")
    report = sync(local, store, dry_run=True)
    assert report.copied == [f"{codebase}/file_hashes.json"]
    assert store.get(f"{codebase}/file_hashes.json").data != b"{}"
    assert (local / SYNC_STATE_NAME).read_bytes() == state


def test_push_leaves_a_never_synced_directory_untouched(tmp_path: Path) -> None:
    local = copy_tree(STALE, tmp_path / "local")
    push(local, MemoryStore())
    assert not (local / SYNC_STATE_NAME).exists()


def test_push_keeps_the_sync_base_of_a_synced_directory(synced: tuple[Path, Store, str]) -> None:
    local, store, codebase = synced
    (local / codebase / "file_hashes.json").write_bytes(b"{}")
    push(local, store)
    # The push is remembered: the next sync finds nothing changed on either side.
    assert sync(local, store).codebases == {codebase: "same"}


def test_pull_records_the_sync_base(tmp_path: Path) -> None:
    store = MemoryStore()
    migrate(STALE, store)
    local = tmp_path / "local"
    pull(store, local)
    assert (local / SYNC_STATE_NAME).is_file()
    codebase = only_codebase(local)
    store.put(f"{codebase}/file_hashes.json", b"{}")
    assert sync(local, store).codebases == {codebase: "pull"}


# -- against S3 (moto server) ---------------------------------------------------------------


def test_s3_migrate_pull_round_trip_is_byte_exact(s3_endpoint: S3Endpoint, tmp_path: Path) -> None:
    root = SHARED_FIXTURES / "requests-incremental"
    if not root.is_dir():
        root = STALE
    with s3_endpoint.store() as store:
        report = migrate(root, store)
        assert report.ok
        assert report.verified == len(files_of(root))
        # S3's single-part ETags are MD5s: nothing differs, nothing is sent again.
        again = push(root, store)
        assert again.copied == []
        assert again.skipped_same == report.verified
        out = tmp_path / "pulled"
        pull(store, out)
        assert files_of(out) == files_of(root)


def test_s3_etags_are_the_local_md5s(s3_endpoint: S3Endpoint) -> None:
    with s3_endpoint.store() as store:
        migrate(STALE, store)
        for meta in store.list_meta():
            local = STALE / meta.key
            assert meta.etag == etag_of(local.read_bytes()), os.fspath(local)


# -- invariant 3 under interruption and races (issue 12, defect 1) ------------------------------

CB = "interrupted"


def _fa(path: str, version: int) -> tuple[FileAnalysis, str]:
    return make_file_analysis(path, seed=version), content_hash(f"{path} v{version}")


def _two_file_store() -> tuple[MemoryStore, dict[str, tuple[FileAnalysis, str]]]:
    """A store whose codebase holds ``p00`` (version 1) and ``gone.py``."""
    store = MemoryStore()
    return store, _two_file_store_into(store)


def _two_file_store_into(store: Store) -> dict[str, tuple[FileAnalysis, str]]:
    old = {"p00": _fa("p00", 1), "gone.py": _fa("gone.py", 1)}
    pm = PersistenceManager(store)
    pm.merge_file_analyses(
        CB, {p: fa for p, (fa, _) in old.items()}, {p: h for p, (_, h) in old.items()}
    )
    return old


def _local_34(root: Path) -> dict[str, tuple[FileAnalysis, str]]:
    """A consistent local directory: 34 files, ``p00`` re-analysed (version 2), no ``gone.py``."""
    new = {f"p{i:02d}": _fa(f"p{i:02d}", 2) for i in range(34)}
    with PersistenceManager(LocalStore(root)) as pm:
        pm.merge_file_analyses(
            CB, {p: fa for p, (fa, _) in new.items()}, {p: h for p, (_, h) in new.items()}
        )
    return new


def _assert_claims_match_analysis(
    store: Store, *versions: dict[str, tuple[FileAnalysis, str]]
) -> None:
    """Invariant 3, strictly: every claimed (path, hash) stands beside that very analysis.

    This is what an analyser relies on: a path whose content hash is claimed is
    skipped as "unchanged", so its entry in analysis.json must be the one made
    from that content.
    """
    pm = PersistenceManager(store)
    analysis = pm.load_analysis(CB)
    entries = analysis.file_analyses if analysis is not None else {}
    for path, digest in pm.get_file_hashes(CB).items():
        made_from = [
            fa
            for version in versions
            for p, (fa, h) in version.items()
            if p == path and h == digest
        ]
        assert path in entries, f"{path} claimed, but analysis.json lacks it"
        assert entries[path] in made_from, f"{path} claimed with a hash its entry was not made from"
    assert not [f for f in pm.verify(CB).findings if f.kind == FindingKind.HASH_WITHOUT_ENTRY]


def _writes_of_a_push(tmp_path: Path) -> int:
    store, _ = _two_file_store()
    faulty = FaultyStore(store)
    _local_34(tmp_path / "count")
    push(tmp_path / "count", faulty)
    return faulty.plan.calls["put"] + faulty.plan.calls["delete"]


@pytest.mark.parametrize("after", [False, True], ids=["before-the-write", "after-the-write"])
def test_a_push_interrupted_at_any_write_never_claims_what_analysis_json_lacks(
    tmp_path: Path, after: bool
) -> None:
    local = tmp_path / "local"
    new = _local_34(local)
    writes = _writes_of_a_push(tmp_path)
    assert writes >= 36  # 34 objects, analysis.json, file_hashes.json (and the withdrawal)
    interrupted = 0
    for n in range(1, writes + 1):
        store, old = _two_file_store()
        plan = FaultPlan()
        plan.add("ctrl-c", op=("put", "delete"), error=KeyboardInterrupt, nth=n, after=after)
        try:
            push(local, FaultyStore(store, plan))
        except KeyboardInterrupt:
            interrupted += 1
        # (Not interrupted: the nth write was refused by its condition, so nothing
        # landed to interrupt after: the journal marker the store already had.)
        _assert_claims_match_analysis(store, old, new)
        # What an analyser does next: re-analyse every file whose hash is not claimed.
        claimed = PersistenceManager(store).get_file_hashes(CB)
        redo = {p: v for p, v in new.items() if claimed.get(p) != v[1]}
        PersistenceManager(store).merge_file_analyses(
            CB, {p: fa for p, (fa, _) in redo.items()}, {p: h for p, (_, h) in redo.items()}
        )
        analysis = PersistenceManager(store).load_analysis(CB)
        assert analysis is not None
        assert {p: analysis.file_analyses[p] for p in new} == {
            p: fa for p, (fa, _) in new.items()
        }, n
        # And a push run again finishes the job.
        push(local, store)
        assert PersistenceManager(store).get_file_hashes(CB) == {p: h for p, (_, h) in new.items()}
    assert interrupted >= writes - 1


def _publishing_late(store: Store, seconds: float | None) -> FaultyStore:
    """``store`` for a merger whose hash publication (after its commit) comes late:
    ``seconds`` late, or (None) not at all until its next compaction."""
    plan = FaultPlan()
    if seconds is None:
        plan.add(
            "late", op="put", key=r"file_hashes\.json$", error=ServiceUnavailableError, times=None
        )
    else:
        plan.add("late", op="get", key=r"file_hashes\.json$", delay=seconds, times=None)
    return FaultyStore(store, plan, close_inner=False)


def test_a_push_that_loses_the_race_to_a_merge_claims_nothing_and_loses_nothing(
    tmp_path: Path,
) -> None:
    local = tmp_path / "local"
    new = _local_34(local)
    store, old = _two_file_store()
    rival = {"rival.py": _fa("rival.py", 1)}

    def concurrent_merge(event: TransferEvent) -> None:
        # Another analyser commits between the push's plan and its copy; its hashes
        # are published after the push's writes (here: by its next compaction).
        if event.kind == "plan":
            late = _publishing_late(store, None)
            PersistenceManager(late, retry=RetryPolicy(max_attempts=2)).merge_file_analyses(
                CB, {p: fa for p, (fa, _) in rival.items()}, {p: h for p, (_, h) in rival.items()}
            )

    report = push(local, store, progress=concurrent_merge)
    assert f"{CB}/analysis.json" in {c.key for c in report.conflicts}
    PersistenceManager(store).compact(CB)  # the rival's hashes, published late
    _assert_claims_match_analysis(store, old, new, rival)
    analysis = PersistenceManager(store).load_analysis(CB)
    assert analysis is not None
    assert analysis.file_analyses["rival.py"] == rival["rival.py"][0]  # not lost
    assert PersistenceManager(store).get_file_hashes(CB)["rival.py"] == rival["rival.py"][1]
    assert "p01" not in analysis.file_analyses
    assert "p01" not in PersistenceManager(store).get_file_hashes(CB)


def test_pushes_racing_merges_in_threads_keep_invariant_3(tmp_path: Path) -> None:
    local = tmp_path / "local"
    new = _local_34(local)
    store, old = _two_file_store()
    merged: dict[str, tuple[FileAnalysis, str]] = {}
    stop = threading.Event()
    pushes_done = threading.Event()
    after_pushes: list[str] = []
    errors: list[BaseException] = []

    def merger(worker: int) -> None:
        pm = PersistenceManager(_publishing_late(store, 0.03))
        i = 0
        while not stop.is_set():
            started_after = pushes_done.is_set()
            path = f"w{worker}-{i}.py"
            version = {path: _fa(path, 1)}
            merged.update(version)
            # Each merge also removes p00 or re-analyses it, racing the push's claims.
            removed = ["p00"] if i % 2 else []
            try:
                pm.merge_file_analyses(
                    CB,
                    {p: fa for p, (fa, _) in version.items()},
                    {p: h for p, (_, h) in version.items()},
                    removed=removed,
                )
            except BaseException as exc:  # surfaced below
                errors.append(exc)
                return
            if started_after:
                after_pushes.append(path)
            i += 1

    threads = [threading.Thread(target=merger, args=(w,)) for w in range(3)]
    for t in threads:
        t.start()
    try:
        # (The invariant is checked once the writers stop: a check reads two
        # objects, which concurrent writers move between the two reads.)
        # The push's own writes are slowed down, so merges commit in between.
        slow = FaultPlan()
        slow.add("slow", op="put", key=r"analysis\.json$", delay=0.01, times=None)
        reports = [push(local, FaultyStore(store, slow, close_inner=False)) for _ in range(15)]
        pushes_done.set()
        deadline = time.monotonic() + 30
        while len(after_pushes) < 6 and time.monotonic() < deadline and not errors:
            time.sleep(0.01)
    finally:
        stop.set()
        for t in threads:
            t.join()
    assert not errors
    committed = [r for r in reports if f"{CB}/analysis.json" in r.copied]
    assert committed  # some pushes won their race (the others lost it: conflicts)
    _assert_claims_match_analysis(store, old, new, merged)
    # No update lost: the merges made after the pushes all stand on top of them.
    analysis = PersistenceManager(store).load_analysis(CB)
    assert analysis is not None
    assert len(after_pushes) >= 6
    assert set(after_pushes) <= set(analysis.file_analyses)


# -- unreadable objects never replace readable ones (issue 12, defect 4) -------------------------


def test_an_empty_local_analysis_json_never_replaces_a_readable_remote_one(tmp_path: Path) -> None:
    local = copy_tree(STALE, tmp_path / "local")
    codebase = only_codebase(local)
    key = f"{codebase}/analysis.json"
    store = MemoryStore()
    push(local, store)
    good = store.get(key).data
    (local / codebase / "analysis.json").write_bytes(b"")  # as upstream ships some
    (local / codebase / "file_hashes.json").write_bytes(b'{"new.py": "ab"}')
    attempts = [push(local, store), migrate(local, store), sync(local, store, prefer="local")]
    for report in attempts:
        assert not report.ok
        (conflict,) = report.conflicts
        assert conflict.corrupt
        assert conflict.key == key
        assert codebase in conflict.reason
        assert store.get(key).data == good
        assert store.get(f"{codebase}/file_hashes.json").data != b'{"new.py": "ab"}'
    forced = push(local, store, force=True)
    assert forced.ok
    assert store.get(key).data == b""


def test_a_corrupt_remote_object_never_replaces_a_readable_local_one(tmp_path: Path) -> None:
    local = copy_tree(STALE, tmp_path / "local")
    codebase = only_codebase(local)
    store = MemoryStore()
    push(local, store)
    per_file = next(
        k
        for k in store.list(codebase + "/")
        if k.split("/")[1].startswith("file_") and not k.endswith("hashes.json")
    )
    store.put(per_file, b'{"truncated')
    before = files_of(local)
    report = pull(store, local)
    assert [c.key for c in report.conflicts if c.corrupt] == [per_file]
    assert files_of(local) == before
    assert pull(store, local, force=True).ok
    assert (local / per_file).read_bytes() == b'{"truncated'


def test_an_empty_analysis_json_over_nothing_is_still_migrated_byte_for_byte(
    tmp_path: Path,
) -> None:
    local = copy_tree(QUIRK_FIXTURES / "empty-analysis", tmp_path / "local")
    store = MemoryStore()
    report = migrate(local, store)
    assert report.ok
    assert report.verified == len(files_of(local))


# -- where the store and the directory are (issue 12, item 10) ------------------------------------


def test_a_store_that_is_a_file_or_missing_is_named(tmp_path: Path) -> None:
    local = copy_tree(STALE, tmp_path / "local")
    a_file = tmp_path / "store.txt"
    a_file.write_text("x")
    with pytest.raises(ConfigurationError, match="is a file"):
        push(local, LocalStore(a_file))
    with pytest.raises(NotFoundError, match="does not exist"):
        pull(LocalStore(tmp_path / "nowhere"), tmp_path / "out")
    # A destination that does not exist yet is created.
    assert push(local, LocalStore(tmp_path / "new" / "store")).ok
    assert (tmp_path / "new" / "store" / only_codebase(local) / "analysis.json").is_file()


def test_a_codebase_folder_given_for_its_parent_is_refused(tmp_path: Path) -> None:
    local = copy_tree(STALE, tmp_path / "local")
    codebase = local / only_codebase(local)
    store = MemoryStore()
    for operation in (push, migrate):
        with pytest.raises(
            InvalidKeyError, match="looks like a codebase folder; point at its parent"
        ):
            operation(codebase, store)
    with pytest.raises(InvalidKeyError, match="codebase folder"):
        push(local, LocalStore(codebase))
    assert list(store.list()) == []


# -- pushing onto a journal with pending merges ---------------------------------------------


def _pending_merges(store: Store, n: int) -> dict[str, tuple[FileAnalysis, str]]:
    """``n`` merges appended to ``store``'s journal and left pending (deferred compaction)."""
    pm = PersistenceManager(store, compaction="deferred")
    merges = {f"pending{i}.py": _fa(f"pending{i}.py", 1) for i in range(n)}
    for path, (fa, digest) in merges.items():
        pm.append_file_analyses(CB, {path: fa}, {path: digest})
    return merges


def _legacy_delta(
    store: Store,
    seq: int,
    files: dict[str, tuple[FileAnalysis, str]],
    *,
    removed: tuple[str, ...] = (),
) -> None:
    """A merge as a version before named deltas wrote it: per-file objects, then ``<seq>.json``."""
    bodies = {p: codec.dump_file_analysis(fa) for p, (fa, _) in files.items()}
    for path, body in bodies.items():
        store.put(layout.file_analysis_key(CB, path), body)
    hashes = {p: h for p, (_, h) in files.items()}
    body = journal.encode_delta(CB, bodies, removed=removed, file_hashes=hashes)
    store.put(journal.delta_key(CB, seq), body, if_none_match="*")


def _legacy_pending_merges(store: Store, n: int) -> dict[str, tuple[FileAnalysis, str]]:
    """``n`` merges a legacy writer appended to ``store``'s journal, left pending."""
    start = journal.parse_listing(CB, store.list_meta(layout.journal_prefix(CB))).max_seq + 1
    merges = {f"pending{i}.py": _fa(f"pending{i}.py", 1) for i in range(n)}
    for seq, (path, version) in enumerate(merges.items(), start):
        _legacy_delta(store, seq, {path: version})
    return merges


def _local_with_journal(root: Path, n: int) -> dict[str, tuple[FileAnalysis, str]]:
    """A local directory whose analysis.json folded legacy journal deltas 1..n (watermark n)."""
    store = LocalStore(root)
    merges = {f"local{i}.py": _fa(f"local{i}.py", 2) for i in range(n)}
    for seq, (path, version) in enumerate(merges.items(), 1):
        _legacy_delta(store, seq, {path: version})
    with PersistenceManager(store, compaction="deferred") as pm:
        assert pm.compact(CB).watermark == n
    return merges


@pytest.mark.parametrize("kind", ["legacy", "named"])
def test_pending_merges_at_the_destination_stay_and_fold_on_top(tmp_path: Path, kind: str) -> None:
    local = tmp_path / "local"
    new = _local_34(local)
    shutil.rmtree(local / CB / "_journal")  # as an upstream directory: no journal, watermark 0
    store, old = _two_file_store()
    pending = (_legacy_pending_merges if kind == "legacy" else _pending_merges)(store, 2)
    assert push(local, store).ok
    pm = PersistenceManager(store)
    analysis = pm.load_analysis(CB)
    assert analysis is not None
    assert set(analysis.file_analyses) == set(new) | set(pending)
    _assert_claims_match_analysis(store, old, new, pending)
    assert {p: h for p, (_, h) in pending.items()}.items() <= pm.get_file_hashes(CB).items()


def test_a_pending_merge_is_never_overwritten_by_a_diverged_journal(tmp_path: Path) -> None:
    local = tmp_path / "local"
    _local_with_journal(local, 5)
    store = MemoryStore()
    pending = _legacy_pending_merges(store, 3)
    before = {k: store.get(k).data for k in store.list(f"{CB}/_journal/")}
    for report in (
        push(local, store),
        push(local, store, force=True),
        migrate(local, store, force=True),
    ):
        assert not report.ok
        assert "journals diverged" in report.conflicts[0].reason
    assert {k: store.get(k).data for k in store.list(f"{CB}/_journal/")} == before
    analysis = PersistenceManager(store).load_analysis(CB)
    assert analysis is not None
    assert set(analysis.file_analyses) == set(pending)


def test_a_watermark_that_would_hide_pending_merges_is_refused(tmp_path: Path) -> None:
    local = tmp_path / "local"
    _local_with_journal(local, 5)
    for seq in range(1, 5):  # the source kept only the delta at its watermark
        (local / CB / "_journal" / f"{seq:020d}.json").unlink()
    store = MemoryStore()
    pending = _legacy_pending_merges(store, 3)
    before = sorted(store.list())
    report = push(local, store)
    assert f"{CB}/analysis.json" in {c.key for c in report.conflicts}
    assert "would hide them" in report.conflicts[0].reason
    assert sorted(store.list()) == before  # refused before writing anything
    analysis = PersistenceManager(store).load_analysis(CB)
    assert analysis is not None
    assert set(analysis.file_analyses) == set(pending)


def test_a_watermark_above_the_destination_journal_is_refused(tmp_path: Path) -> None:
    local = tmp_path / "local"
    _local_with_journal(local, 5)
    shutil.rmtree(local / CB / "_journal")
    store = MemoryStore()
    report = push(local, store)
    assert not report.ok
    assert "would be hidden from readers" in report.conflicts[0].reason
    assert not store.exists(f"{CB}/analysis.json")
    # With its journal, the same directory goes over, and later merges are seen.
    _local_with_journal(tmp_path / "whole", 5)
    assert push(tmp_path / "whole", store).ok
    PersistenceManager(store, compaction="deferred").append_file_analyses(
        CB, {"after.py": _fa("after.py", 1)[0]}, {"after.py": _fa("after.py", 1)[1]}
    )
    analysis = PersistenceManager(store).load_analysis(CB)
    assert analysis is not None
    assert "after.py" in analysis.file_analyses


def _upstream_dir(root: Path, files: dict[str, tuple[FileAnalysis, str]]) -> None:
    """A directory as upstream writes it: no journal, no bookkeeping in analysis.json."""
    scratch = PersistenceManager(MemoryStore())
    scratch.merge_file_analyses(
        CB, {p: fa for p, (fa, _) in files.items()}, {p: h for p, (_, h) in files.items()}
    )
    analysis = scratch.load_analysis(CB)
    assert analysis is not None
    assert analysis.__pydantic_extra__ is not None
    analysis.__pydantic_extra__.pop("documee_remote")
    with PersistenceManager(LocalStore(root)) as pm:
        pm.save_analysis(CB, analysis)
        pm.save_file_hashes(CB, {p: h for p, (_, h) in files.items()})
    assert not (root / CB / "_journal").exists()


def test_a_push_below_the_destination_watermark_does_not_replay_folded_merges(
    tmp_path: Path,
) -> None:
    # The store folded two merges: a.py and b.py, then b.py removed (and c.py added).
    store = MemoryStore()
    pm = PersistenceManager(store)
    first = {"a.py": _fa("a.py", 1), "b.py": _fa("b.py", 1)}
    later = {"c.py": _fa("c.py", 1)}
    pm.merge_file_analyses(
        CB, {p: v[0] for p, v in first.items()}, {p: v[1] for p, v in first.items()}
    )
    pm.merge_file_analyses(
        CB,
        {p: v[0] for p, v in later.items()},
        {p: v[1] for p, v in later.items()},
        removed=["b.py"],
    )
    # An upstream directory with a.py and b.py (watermark 0) replaces that analysis.
    local = tmp_path / "local"
    _upstream_dir(local, first)
    assert push(local, store).ok
    _assert_claims_match_analysis(store, first, later)
    analysis = PersistenceManager(store).load_analysis(CB)
    assert analysis is not None
    assert set(analysis.file_analyses) == set(first)  # what was pushed, not merges replayed
    # A merge pending in the journal (not folded) is still kept.
    pending = _pending_merges(store, 1)
    assert push(local, store).ok
    analysis = PersistenceManager(store).load_analysis(CB)
    assert analysis is not None
    assert set(analysis.file_analyses) == set(first) | set(pending)
    _assert_claims_match_analysis(store, first, pending)


def test_a_push_below_a_legacy_watermark_does_not_replay_folded_merges(tmp_path: Path) -> None:
    # The same, with the store's journal as a version before named deltas left it.
    store = MemoryStore()
    first = {"a.py": _fa("a.py", 1), "b.py": _fa("b.py", 1)}
    later = {"c.py": _fa("c.py", 1)}
    _legacy_delta(store, 1, first)
    _legacy_delta(store, 2, later, removed=("b.py",))
    assert PersistenceManager(store).compact(CB).watermark == 2
    local = tmp_path / "local"
    _upstream_dir(local, first)
    report = push(local, store)
    assert report.ok
    assert report.rebased == [f"{CB}/analysis.json"]
    _assert_claims_match_analysis(store, first, later)
    analysis = PersistenceManager(store).load_analysis(CB)
    assert analysis is not None
    assert set(analysis.file_analyses) == set(first)
    pending = _legacy_pending_merges(store, 1)
    assert push(local, store).ok
    analysis = PersistenceManager(store).load_analysis(CB)
    assert analysis is not None
    assert set(analysis.file_analyses) == set(first) | set(pending)


def _stored_book(store: Store) -> dict[str, object]:
    doc = json.loads(store.get(f"{CB}/analysis.json").data)
    book = doc["documee_remote"]
    assert isinstance(book, dict)
    return book


def test_a_push_over_folded_named_deltas_carries_their_names_and_replays_none(
    tmp_path: Path,
) -> None:
    store = MemoryStore()
    pm = PersistenceManager(store)
    folded = {f"d{i}.py": _fa(f"d{i}.py", 1) for i in range(3)}
    for path, (fa, digest) in folded.items():
        pm.merge_file_analyses(CB, {path: fa}, {path: digest})
    theirs = _stored_book(store)
    assert len(theirs["folded"]) == 3  # type: ignore[arg-type]
    # The compaction of d2.py died before its marker: its hashes count as unpublished.
    store.delete(journal.commit_marker_key(CB, 3))
    local = tmp_path / "local"
    new = _local_34(local)  # its own journal: one named delta, its own commit 1
    report = push(local, store)
    assert report.ok
    ours = _stored_book(store)
    # The union: the destination's three names and the source's one, the higher counter.
    assert set(theirs["folded"]) < set(ours["folded"])  # type: ignore[arg-type]
    assert len(ours["folded"]) == 4  # type: ignore[arg-type]
    assert ours["commit"] == theirs["commit"] == 3
    analysis = PersistenceManager(store).load_analysis(CB)
    assert analysis is not None
    assert set(analysis.file_analyses) == set(new)  # the d*.py merges are not replayed
    # The next compaction publishes only what the copy holds: not d2.py's claim,
    # which the copy's commit marker retired with the analysis it replaced.
    after = {"after.py": _fa("after.py", 1)}
    deferred = PersistenceManager(store, compaction="deferred")
    deferred.append_file_analyses(CB, {"after.py": after["after.py"][0]}, {})
    assert deferred.compact(CB).folded == 1
    _assert_claims_match_analysis(store, new, after)
    assert "d2.py" not in PersistenceManager(store).get_file_hashes(CB)


def _local_holding(root: Path, store: Store, names: list[str]) -> None:
    """A local directory whose analysis.json folded ``store``'s deltas ``names`` (as if
    pulled, then compacted), with those deltas no longer in its journal."""
    local = LocalStore(root)
    for name in names:
        key = journal.named_key(CB, name)
        local.put(key, store.get(key).data)
    with PersistenceManager(local, compaction="deferred") as pm:
        assert pm.compact(CB).folded == len(names)
    for name in names:
        local.delete(journal.named_key(CB, name))


def test_a_copied_folded_map_that_would_hide_pending_named_merges_is_refused(
    tmp_path: Path,
) -> None:
    store = MemoryStore()
    pending = _pending_merges(store, 2)
    names = sorted(journal.parse_listing(CB, store.list_meta(f"{CB}/_journal/")).named)
    local = tmp_path / "local"
    _local_holding(local, store, names[:1])  # its map names the first; it lacks the delta
    before = {k: store.get(k).data for k in store.list()}
    report = push(local, store)
    assert not report.ok
    assert report.conflicts[0].key == f"{CB}/analysis.json"
    assert "would hide them" in report.conflicts[0].reason
    assert names[0] in report.conflicts[0].reason
    assert {k: store.get(k).data for k in store.list()} == before  # nothing written
    analysis = PersistenceManager(store).load_analysis(CB)
    assert analysis is not None
    assert set(analysis.file_analyses) == set(pending)


def test_a_copied_floor_that_would_hide_a_pending_named_merge_is_refused(tmp_path: Path) -> None:
    # A destination in deferred mode can keep a merge pending for hours; a source
    # compacted since has a floor above it, and never saw it.
    store = MemoryStore()
    _pending_merges(store, 1)
    (name,) = journal.parse_listing(CB, store.list_meta(f"{CB}/_journal/")).named
    local = tmp_path / "local"
    _local_34(local)
    key = local / CB / "analysis.json"
    doc = json.loads(key.read_bytes())
    doc["documee_remote"]["floor"] = journal.name_ms(name) + 1
    key.write_bytes(json.dumps(doc, indent=2).encode())
    before = {k: store.get(k).data for k in store.list()}
    report = push(local, store)
    assert not report.ok
    assert name in report.conflicts[0].reason
    assert "would hide them" in report.conflicts[0].reason
    assert {k: store.get(k).data for k in store.list()} == before  # nothing written
    analysis = PersistenceManager(store).load_analysis(CB)
    assert analysis is not None
    assert set(analysis.file_analyses) == {"pending0.py"}


def test_a_merge_pending_at_the_source_but_folded_at_the_destination_is_not_dropped(
    tmp_path: Path,
) -> None:
    # Pulled while a merge was pending there; the destination folded it since.
    store = MemoryStore()
    _two_file_store_into(store)
    pending = _pending_merges(store, 1)
    local = tmp_path / "local"
    assert pull(store, local).ok
    PersistenceManager(store).compact(CB)
    PersistenceManager(LocalStore(local), compaction="deferred").append_file_analyses(
        CB, {"mine.py": _fa("mine.py", 1)[0]}, {"mine.py": _fa("mine.py", 1)[1]}
    )
    report = push(local, store)
    assert not report.ok
    assert "on the source first" in report.conflicts[0].reason
    # Compacted at the source, the same push goes over and loses nothing.
    PersistenceManager(LocalStore(local)).compact(CB)
    assert push(local, store).ok
    analysis = PersistenceManager(store).load_analysis(CB)
    assert analysis is not None
    assert set(pending) | {"mine.py", "p00", "gone.py"} <= set(analysis.file_analyses)


def test_a_mirror_never_deletes_a_pending_named_merge(tmp_path: Path) -> None:
    store = MemoryStore()
    pending = _pending_merges(store, 1)
    (name,) = journal.parse_listing(CB, store.list_meta(f"{CB}/_journal/")).named
    local = tmp_path / "local"
    _local_34(local)
    report = push(local, store, delete=True)
    assert not report.ok
    assert report.conflicts[0].key == journal.named_key(CB, name)
    assert name in report.conflicts[0].reason
    assert store.exists(journal.named_key(CB, name))
    analysis = PersistenceManager(store).load_analysis(CB)
    assert analysis is not None
    assert set(pending) <= set(analysis.file_analyses)


class PlainStore(RecordingStore):
    """A store that cannot write conditionally (as fsspec on most filesystems): it refuses."""

    def __init__(self) -> None:
        super().__init__()
        self.capabilities = Capabilities(atomic_conditional_writes=False, conditional_delete=False)

    def _put(self, key: str, data: bytes, *, if_match: str | None, create_only: bool) -> str:
        if if_match is not None or create_only:
            raise UnsupportedOperationError(f"cannot write {key!r} conditionally", key=key)
        return super()._put(key, data, if_match=None, create_only=False)


def test_a_store_without_conditional_writes_gets_the_same_order_in_plain_writes(
    tmp_path: Path,
) -> None:
    local = copy_tree(STALE, tmp_path / "local")
    codebase = only_codebase(local)
    store = PlainStore()
    store.put(f"{codebase}/file_hashes.json", b'{"old.py": "00"}')
    store.log.clear()
    assert push(local, store).ok
    puts = [key.split("/")[1] for op, key, _ in store.log if op == "put"]
    # The old claim is withdrawn, then the commit, then the source's hashes.
    assert puts[-3:] == ["file_hashes.json", "analysis.json", "file_hashes.json"]
    assert {condition for _, _, condition in store.log} == {"none"}
    assert files_of(local) == {k: store.get(k).data for k in store.list()}


def test_analyze_after_an_interrupted_push_analyses_every_file_analysis_json_lacks(
    tmp_path: Path,
) -> None:
    """The issue's scenario end to end, with the reference analyser: 34 files pushed onto
    a store holding 2, interrupted at every write; `analyze` then completes the codebase."""
    src = tmp_path / "src"
    src.mkdir()
    # The store analysed an older tree at the same place: m00.py differs, gone.py is gone.
    (src / "m00.py").write_text("def f0():\n    return 'old'\n")
    (src / "gone.py").write_text("X = 1\n")
    template = MemoryStore()
    assert analyse_codebase(PersistenceManager(template), CB, src).analysed == 2
    (src / "gone.py").unlink()
    for i in range(34):
        (src / f"m{i:02d}.py").write_text(f"def f{i}():\n    return {i}\n")
    local = tmp_path / "local"
    with PersistenceManager(LocalStore(local)) as pm:
        assert analyse_codebase(pm, CB, src).analysed == 34
        local_hashes = pm.get_file_hashes(CB)
    expected = set(local_hashes)
    assert len(expected) == 34

    def store_of_two() -> MemoryStore:
        store = MemoryStore()
        store.put_many({k: template.get(k).data for k in template.list()})
        return store

    counting = FaultyStore(store_of_two())
    push(local, counting)
    writes = counting.plan.calls["put"] + counting.plan.calls["delete"]
    for n in range(1, writes + 1):
        store = store_of_two()
        plan = FaultPlan()
        plan.add("ctrl-c", op=("put", "delete"), error=KeyboardInterrupt, nth=n, after=True)
        with contextlib.suppress(KeyboardInterrupt):
            push(local, FaultyStore(store, plan))
        pm = PersistenceManager(store)
        report = analyse_codebase(pm, CB, src)
        analysis = pm.load_analysis(CB)
        assert analysis is not None
        # Every file on disk is analysed, with the hash of its content. (An entry
        # of a deleted file whose claim was withdrawn may linger: the analyser
        # finds deletions through the claims. A stale entry, never a missing one.)
        assert expected <= set(analysis.file_analyses), (n, report)
        assert {p: pm.get_file_hashes(CB).get(p) for p in expected} == local_hashes, n
        _assert_claims_match_analysis_loosely(pm)


def _assert_claims_match_analysis_loosely(pm: PersistenceManager) -> None:
    """Invariant 3 as ``verify`` checks it: no claim without an entry."""
    analysis = pm.load_analysis(CB)
    entries = analysis.file_analyses if analysis is not None else {}
    assert set(pm.get_file_hashes(CB)) <= set(entries)
    assert not [f for f in pm.verify(CB).findings if f.kind == FindingKind.HASH_WITHOUT_ENTRY]
