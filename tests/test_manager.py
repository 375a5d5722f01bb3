"""PersistenceManager: the seed API on every in-process store, over every fixture."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from documee_remote import PersistenceManager, open_store
from documee_remote.codec import dump_file_analysis
from documee_remote.errors import CorruptObjectError, InvalidKeyError
from documee_remote.layout import file_analysis_name
from documee_remote.stores import LocalStore, MemoryStore, Store

ISO_LOCAL = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{6})?\Z")


def load_dir_into(store: Store, codebase_dir: Path) -> str:
    """Copy a fixture directory into a store byte for byte; return its codebase id."""
    codebase_id = codebase_dir.name
    for path in sorted(codebase_dir.iterdir()):
        store.put(f"{codebase_id}/{path.name}", path.read_bytes())
    return codebase_id


@pytest.fixture(params=["local", "memory"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    made: Store = LocalStore(tmp_path / "store") if request.param == "local" else MemoryStore()
    with made:
        yield made


def test_fixture_round_trips_byte_for_byte(store: Store, codebase_dir: Path) -> None:
    check_round_trip(store, codebase_dir)


def check_round_trip(store: Store, codebase_dir: Path) -> None:
    """Load a fixture directory and save it into ``store``: the bytes must not change."""
    source = MemoryStore()
    codebase_id = load_dir_into(source, codebase_dir)
    reader = PersistenceManager(source)
    writer = PersistenceManager(store)
    names = sorted(p.name for p in codebase_dir.iterdir())
    analysis_bytes = (codebase_dir / "analysis.json").read_bytes()
    if not analysis_bytes:
        with pytest.raises(CorruptObjectError):
            reader.load_analysis(codebase_id)
        return
    analysis = reader.load_analysis(codebase_id)
    assert analysis is not None
    writer.save_analysis(codebase_id, analysis)
    if "file_hashes.json" in names:
        writer.save_file_hashes(codebase_id, reader.get_file_hashes(codebase_id))
    assert store.get(f"{codebase_id}/analysis.json").data == analysis_bytes
    if "file_hashes.json" in names:
        assert (
            store.get(f"{codebase_id}/file_hashes.json").data
            == (codebase_dir / "file_hashes.json").read_bytes()
        )
    # Every per-file object upstream wrote for a path still in the analysis is
    # reproduced exactly (stale ones of an inconsistent run are not rewritten).
    for path in analysis.file_analyses:
        name = file_analysis_name(path)
        original = codebase_dir / name
        if original.exists():
            assert store.get(f"{codebase_id}/{name}").data == original.read_bytes()
    # And each per-file object reads back as the embedded entry (compared as
    # bytes: a NaN in a fixture is never == itself).
    for path, fa in analysis.file_analyses.items():
        loaded = writer.load_file_analysis(codebase_id, path)
        assert loaded is not None
        assert dump_file_analysis(loaded) == dump_file_analysis(fa)


def test_list_codebases_lists_unreadable_ones_too(store: Store) -> None:
    pm = PersistenceManager(store)
    store.put("test_errors_123/analysis.json", b"")
    store.put("good1/analysis.json", b"{}")
    store.put("nohead/file_hashes.json", b"{}")
    assert sorted(pm.list_codebases()) == ["good1", "test_errors_123"]
    with pytest.raises(CorruptObjectError) as info:
        pm.load_analysis("test_errors_123")
    assert info.value.codebase_id == "test_errors_123"
    assert info.value.key == "test_errors_123/analysis.json"
    assert "test_errors_123" in str(info.value)
    with pytest.raises(CorruptObjectError):
        pm.load_analysis("good1")  # valid JSON, wrong shape


def test_absent_things_are_none_or_empty(store: Store) -> None:
    pm = PersistenceManager(store)
    assert pm.load_analysis("absent1") is None
    assert pm.get_file_hashes("absent1") == {}
    assert pm.load_file_analysis("absent1", "/x.py") is None
    assert pm.delete_analysis("absent1") is False
    assert pm.list_codebases() == []


def test_corrupt_hashes_raise_instead_of_pretending_empty(store: Store) -> None:
    pm = PersistenceManager(store)
    store.put("cb1/file_hashes.json", b'{"a": 1}')
    with pytest.raises(CorruptObjectError) as info:
        pm.get_file_hashes("cb1")
    assert info.value.key == "cb1/file_hashes.json"


def test_delete_analysis_removes_everything(store: Store, codebase_dir: Path) -> None:
    codebase_id = load_dir_into(store, codebase_dir)
    pm = PersistenceManager(store)
    assert pm.delete_analysis(codebase_id) is True
    assert list(store.list(f"{codebase_id}/")) == []
    assert codebase_id not in pm.list_codebases()
    assert pm.delete_analysis(codebase_id) is False


@pytest.mark.parametrize(
    "bad", ["", "../x", "a/b", "/abs", "x\x00", ".hidden", "CON", "a" * 200, "a\\b"]
)
def test_bad_codebase_ids_are_refused_and_nothing_is_written(store: Store, bad: str) -> None:
    pm = PersistenceManager(store)
    with pytest.raises(InvalidKeyError):
        pm.load_analysis(bad)
    with pytest.raises(InvalidKeyError):
        pm.save_file_hashes(bad, {"/a.py": "0" * 64})
    with pytest.raises(InvalidKeyError):
        pm.delete_analysis(bad)
    assert list(store.list()) == []


def test_load_file_analyses_fetches_many(store: Store, codebase_dir: Path) -> None:
    if not (codebase_dir / "analysis.json").read_bytes():
        pytest.skip("empty analysis")
    codebase_id = load_dir_into(store, codebase_dir)
    pm = PersistenceManager(store)
    analysis = pm.load_analysis(codebase_id)
    assert analysis is not None
    paths = list(analysis.file_analyses)[:10]
    found = pm.load_file_analyses(codebase_id, [*paths, "/not/there.py"])
    assert found["/not/there.py"] is None
    for path in paths:
        if (codebase_dir / file_analysis_name(path)).exists():
            got = found[path]
            assert got is not None
            assert dump_file_analysis(got) == dump_file_analysis(analysis.file_analyses[path])


def test_default_is_upstreams_local_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("DOCUMEE_STORE_URL", raising=False)
    with PersistenceManager() as pm:
        assert isinstance(pm.store, LocalStore)
        pm.save_file_hashes("cb1", {"/a.py": "ab" * 32})
    assert (tmp_path / ".documee" / "analysis" / "cb1" / "file_hashes.json").exists()


def test_store_url_from_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DOCUMEE_STORE_URL", (tmp_path / "elsewhere").as_uri())
    with PersistenceManager() as pm:
        assert isinstance(pm.store, LocalStore)
        assert pm.store.root == tmp_path / "elsewhere"


def test_manager_closes_only_stores_it_opened(tmp_path: Path) -> None:
    store = open_store(str(tmp_path))
    closed: list[bool] = []
    store.close = lambda: closed.append(True)  # type: ignore[method-assign]
    with PersistenceManager(store):
        pass
    assert closed == []


def test_save_writes_only_what_changed(store: Store) -> None:
    from documee_remote.merge import new_analysis, refresh_derived
    from documee_remote.testing.factories import make_file_analysis

    pm = PersistenceManager(store)
    analysis = new_analysis("cb1")
    for i in range(40):
        path = f"/src/f{i}.py"
        analysis.file_analyses[path] = make_file_analysis(path)
    refresh_derived(analysis)
    first = pm.save_analysis("cb1", analysis)
    assert (first.uploaded, first.unchanged, first.analysis_written) == (40, 0, True)

    again = pm.save_analysis("cb1", analysis)
    assert (again.uploaded, again.deleted, again.analysis_written) == (0, 0, False)

    for path in ("/src/f3.py", "/src/f7.py"):
        analysis.file_analyses[path] = make_file_analysis(path, functions=9)
    del analysis.file_analyses["/src/f9.py"]
    refresh_derived(analysis)
    changed = pm.save_analysis("cb1", analysis)
    assert (changed.uploaded, changed.deleted, changed.analysis_written) == (2, 1, True)
    assert pm.load_file_analysis("cb1", "/src/f9.py") is None
    assert pm.load_analysis("cb1") == analysis
    assert pm.verify("cb1").findings == []
