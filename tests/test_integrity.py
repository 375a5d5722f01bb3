"""verify / repair / gc, and the conditional delete, against real and broken codebases."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from documee_remote import PersistenceManager, PreconditionFailedError
from documee_remote.codec import dump_file_analysis
from documee_remote.integrity import FindingKind
from documee_remote.layout import (
    analysis_key,
    file_analysis_key,
    is_file_analysis_name,
    journal_prefix,
)
from documee_remote.merge import new_analysis
from documee_remote.stores import LocalStore, MemoryStore, Store
from documee_remote.testing.factories import content_hash, make_file_analysis

from .conftest import QUIRK_FIXTURES, SHARED_FIXTURES
from .test_manager import load_dir_into


@pytest.fixture(params=["local", "memory"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    made: Store = LocalStore(tmp_path / "store") if request.param == "local" else MemoryStore()
    with made:
        yield made


def seeded(store: Store, n: int = 5) -> PersistenceManager:
    pm = PersistenceManager(store)
    analyses = {f"/src/f{i}.py": make_file_analysis(f"/src/f{i}.py") for i in range(n)}
    pm.merge_file_analyses("cb1", analyses, {p: content_hash(p) for p in analyses})
    return pm


def test_consistent_codebase_verifies_clean(store: Store) -> None:
    pm = seeded(store)
    report = pm.verify("cb1")
    assert report.ok
    assert report.findings == []
    assert report.files_checked == 5


def test_real_full_fixtures_verify_clean(store: Store) -> None:
    for name in ("requests", "documee-MCP"):
        root = SHARED_FIXTURES / name
        if not root.is_dir():
            pytest.skip("shared fixtures not present")
        codebase_id = load_dir_into(store, next(root.iterdir()))
        report = PersistenceManager(store).verify(codebase_id)
        assert report.ok, [f.to_dict() for f in report.findings][:3]
        assert report.files_checked > 30


def incremental_fixture() -> Path:
    shared = SHARED_FIXTURES / "requests-incremental"
    if shared.is_dir():
        return next(shared.iterdir())
    return next(p for p in (QUIRK_FIXTURES / "incremental-stale").iterdir() if p.is_dir())


def test_inconsistent_incremental_run_is_diagnosed_and_repaired(store: Store) -> None:
    codebase_dir = incremental_fixture()
    codebase_id = load_dir_into(store, codebase_dir)
    pm = PersistenceManager(store)
    analysis = pm.load_analysis(codebase_id)
    assert analysis is not None
    on_disk = sum(1 for p in codebase_dir.iterdir() if is_file_analysis_name(p.name))
    stale = on_disk - len(analysis.file_analyses)
    hashes = pm.get_file_hashes(codebase_id)
    report = pm.verify(codebase_id)
    assert not report.ok
    assert report.count(FindingKind.PER_FILE_ORPHAN) == stale
    assert report.count(FindingKind.HASH_WITHOUT_ENTRY) == len(hashes) - len(analysis.file_analyses)
    assert all("grace" in f.detail for f in report.findings if f.kind == "per_file_orphan")

    # Just copied in, the stale objects are younger than the grace period:
    # repair withdraws the false hash claims but keeps the young orphans.
    young = pm.verify(codebase_id, repair=True)
    assert young.count(FindingKind.HASH_WITHOUT_ENTRY) > 0
    assert all(f.repaired for f in young.findings if f.kind == "hash_without_entry")
    assert not any(f.repaired for f in young.findings if f.kind == "per_file_orphan")
    assert set(pm.get_file_hashes(codebase_id)) == set(analysis.file_analyses)

    repaired = pm.verify(codebase_id, repair=True, grace_seconds=0)
    assert repaired.ok
    after = pm.verify(codebase_id, grace_seconds=0)
    assert after.ok
    assert after.findings == []
    assert pm.load_analysis(codebase_id) == analysis  # the commit point is untouched


def test_per_file_damage_is_found_and_rewritten_from_the_analysis(store: Store) -> None:
    pm = seeded(store)
    analysis = pm.load_analysis("cb1")
    assert analysis is not None
    paths = list(analysis.file_analyses)
    store.delete(file_analysis_key("cb1", paths[0]))
    store.put(file_analysis_key("cb1", paths[1]), b'{"truncated": ')
    store.put(file_analysis_key("cb1", paths[2]), dump_file_analysis(make_file_analysis("/other")))
    report = pm.verify("cb1")
    kinds = {f.file_path: f.kind for f in report.findings}
    assert kinds == {
        paths[0]: FindingKind.PER_FILE_MISSING,
        paths[1]: FindingKind.PER_FILE_UNREADABLE,
        paths[2]: FindingKind.PER_FILE_DIFFERS,
    }
    assert pm.verify("cb1", repair=True).ok
    for path, fa in analysis.file_analyses.items():
        assert pm.load_file_analysis("cb1", path) == fa
    assert pm.verify("cb1").findings == []


def test_unreadable_analysis_is_reported_and_left_alone(store: Store) -> None:
    store.put("cb1/analysis.json", b"")
    store.put("cb1/file_0123456789abcdef.json", b"{}")
    report = PersistenceManager(store).verify("cb1", repair=True)
    assert [f.kind for f in report.findings] == [FindingKind.ANALYSIS_UNREADABLE]
    assert not report.ok
    assert store.get("cb1/analysis.json").data == b""
    assert store.exists("cb1/file_0123456789abcdef.json")


def test_unreadable_hashes_are_dropped_on_repair(store: Store) -> None:
    pm = seeded(store)
    store.put("cb1/file_hashes.json", b"[1, 2")
    report = pm.verify("cb1", repair=True)
    assert [f.kind for f in report.findings] == [FindingKind.HASHES_UNREADABLE]
    assert report.ok
    assert pm.get_file_hashes("cb1") == {}


def test_gc_removes_old_orphans_only(store: Store) -> None:
    pm = seeded(store)
    orphan = file_analysis_key("cb1", "/gone.py")
    store.put(orphan, b"{}")
    young = pm.gc("cb1")
    assert young.removed == []
    assert young.kept_young == [orphan]
    dry = pm.gc("cb1", grace_seconds=0, dry_run=True)
    assert dry.removed == [orphan]
    assert store.exists(orphan)
    folded = [journal_prefix("cb1") + n for n in _journal_names(store) if n.startswith("w")]
    assert len(folded) == 1  # the merge's delta, folded by its own (eager) merge
    done = pm.gc("cb1", grace_seconds=0)
    assert done.removed == [orphan, *folded]  # the per-file orphan, then folded journal deltas
    assert not store.exists(orphan)
    assert pm.verify("cb1").ok
    assert sum(1 for k in store.list("cb1/") if is_file_analysis_name(k[4:])) == 5


def test_gc_without_analysis_removes_nothing(store: Store) -> None:
    store.put(file_analysis_key("cb1", "/a.py"), b"{}")
    assert PersistenceManager(store).gc("cb1", grace_seconds=0).removed == []
    assert store.exists(file_analysis_key("cb1", "/a.py"))


def _journal_names(store: Store, codebase_id: str = "cb1") -> list[str]:
    prefix = journal_prefix(codebase_id)
    return sorted(k[len(prefix) :] for k in store.list(prefix))


def test_gc_keeps_pending_named_deltas_even_with_no_grace(store: Store) -> None:
    # The deltas pending in the journal are the only copy of their merges. A
    # read folds them in memory under a commit dated now; gc must judge them
    # by the folded map stored in analysis.json, or grace 0 deletes them.
    pm = PersistenceManager(store, compaction="deferred")
    pm.save_analysis("cb1", new_analysis("cb1"))
    for i in range(3):
        path = f"/src/p{i}.py"
        pm.append_file_analyses("cb1", {path: make_file_analysis(path)}, {})
    before = _journal_names(store)
    assert len([n for n in before if n.startswith("w")]) == 3
    report = pm.gc("cb1", grace_seconds=0)
    assert not [k for k in report.removed if "/_journal/" in k]
    assert _journal_names(store) == before
    loaded = pm.load_analysis("cb1")
    assert loaded is not None
    assert set(loaded.file_analyses) == {f"/src/p{i}.py" for i in range(3)}


def test_gc_prunes_folded_named_deltas_and_old_commit_markers_only(store: Store) -> None:
    pm = PersistenceManager(store, compaction="deferred")
    pm.save_analysis("cb1", new_analysis("cb1"))
    pm.append_file_analyses("cb1", {"/a.py": make_file_analysis("/a.py")}, {})
    pm.compact("cb1")
    pm.append_file_analyses("cb1", {"/b.py": make_file_analysis("/b.py")}, {})
    pm.compact("cb1")
    pm.append_file_analyses("cb1", {"/c.py": make_file_analysis("/c.py")}, {})  # pending
    names = _journal_names(store)
    deltas = [n for n in names if n.startswith("w")]
    assert len(deltas) == 3
    assert [n for n in names if n.startswith("c")] == [f"c{1:020d}.folded", f"c{2:020d}.folded"]
    young = pm.gc("cb1")  # the default grace: everything is young
    assert not [k for k in young.removed if "/_journal/" in k]
    report = pm.gc("cb1", grace_seconds=0)
    removed = sorted(k.rsplit("/", 1)[1] for k in report.removed)
    assert removed == sorted([*(d for d in deltas[:2]), f"c{1:020d}.folded"])
    assert _journal_names(store) == [f"c{2:020d}.folded", deltas[2]]
    loaded = pm.load_analysis("cb1")
    assert loaded is not None
    assert set(loaded.file_analyses) == {"/a.py", "/b.py", "/c.py"}
    assert pm.verify("cb1").ok


def test_gc_reads_the_folded_map_of_an_analysis_json_written_on_one_line(store: Store) -> None:
    # Another tool's layout: the bookkeeping is not where peek_book looks.
    pm = PersistenceManager(store, compaction="deferred")
    pm.save_analysis("cb1", new_analysis("cb1"))
    pm.append_file_analyses("cb1", {"/a.py": make_file_analysis("/a.py")}, {})
    pm.compact("cb1")
    pm.append_file_analyses("cb1", {"/b.py": make_file_analysis("/b.py")}, {})  # pending
    key = analysis_key("cb1")
    doc = json.loads(store.get(key).data)
    store.put(key, json.dumps(doc, separators=(",", ":")).encode())
    folded, pending = [n for n in _journal_names(store) if n.startswith("w")]
    report = pm.gc("cb1", grace_seconds=0)
    assert journal_prefix("cb1") + folded in report.removed
    assert pending in _journal_names(store)
    loaded = pm.load_analysis("cb1")
    assert loaded is not None
    assert set(loaded.file_analyses) == {"/a.py", "/b.py"}


def test_verify_reports_no_journal_object_as_a_stray(store: Store) -> None:
    # Eager merges leave a folder record, commit markers and (young) folded
    # deltas; deferred ones leave pending deltas: none of them is a finding.
    pm = seeded(store)
    pm.merge_file_analyses("cb1", {"/src/more.py": make_file_analysis("/src/more.py")}, {})
    PersistenceManager(store, compaction="deferred").append_file_analyses(
        "cb1", {"/src/late.py": make_file_analysis("/src/late.py")}, {}
    )
    names = _journal_names(store)
    assert "_folder.json" in names
    assert any(n.startswith("c") and n.endswith(".folded") for n in names)
    assert sum(1 for n in names if n.startswith("w")) == 3
    report = pm.verify("cb1", grace_seconds=0)
    assert report.findings == []
    assert report.files_checked == 7
    repaired = pm.verify("cb1", repair=True, grace_seconds=0)
    assert repaired.findings == []
    assert _journal_names(store) == names


class DeleteRacingStore(MemoryStore):
    """A merge lands right after the delete has listed the codebase."""

    def __init__(self) -> None:
        super().__init__()
        self.armed = False

    def list_meta(  # type: ignore[override]
        self, prefix: str = "", *, start_after: str | None = None
    ) -> Iterator:  # type: ignore[type-arg]
        listing = list(super().list_meta(prefix, start_after=start_after))
        if self.armed:
            self.armed = False
            PersistenceManager(self).merge_file_analyses(
                "cb1", {"/new.py": make_file_analysis("/new.py")}, {}
            )
        return iter(listing)


def test_delete_racing_a_merge_fails_cleanly_and_loses_nothing() -> None:
    store = DeleteRacingStore()
    pm = seeded(store)
    store.armed = True
    with pytest.raises(PreconditionFailedError, match="nothing was deleted"):
        pm.delete_analysis("cb1")
    analysis = pm.load_analysis("cb1")
    assert analysis is not None
    assert "/new.py" in analysis.file_analyses
    assert pm.verify("cb1").ok
    assert pm.delete_analysis("cb1") is True
    assert list(store.list()) == []


def test_delete_keeps_objects_rewritten_after_its_listing() -> None:
    class Rewriting(MemoryStore):
        armed = False

        def list_meta(self, prefix: str = "", *, start_after: str | None = None):  # type: ignore[no-untyped-def, override]
            listing = list(super().list_meta(prefix, start_after=start_after))
            if self.armed:
                self.armed = False
                self.put(file_analysis_key("cb1", "/src/f0.py"), b'{"rewritten": true}')
            return iter(listing)

    store = Rewriting()
    pm = seeded(store)
    store.armed = True
    assert pm.delete_analysis("cb1") is True
    assert list(store.list()) == [file_analysis_key("cb1", "/src/f0.py")]
