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


# -- the drop-in for Documee's engine (issue 11) ------------------------------------------
#
# tests/upstream/ runs Documee's real classes and engine when ../shared is present; these
# stand-ins keep the same contracts tested in a plain clone: Documee's objects are
# anything with to_dict(), and its CodebaseAnalysis.to_dict() calls to_dict() on children.


class _DocumeeObject:
    """A Documee dataclass as persistence sees it: an object with ``to_dict()``."""

    def __init__(self, data: dict[str, object]) -> None:
        self._data = data

    def to_dict(self) -> dict[str, object]:
        return dict(self._data)


class _DocumeeCodebase:
    """Documee's CodebaseAnalysis: its to_dict() asks every file analysis for its own."""

    def __init__(self, data: dict[str, object], file_analyses: dict[str, object]) -> None:
        self._data = data
        self.file_analyses = file_analyses

    def to_dict(self) -> dict[str, object]:
        out = dict(self._data)
        out["file_analyses"] = {k: v.to_dict() for k, v in self.file_analyses.items()}  # type: ignore[attr-defined]
        return out


def _documee_writes(obj: object) -> bytes:
    """What Documee's own PersistenceManager writes for ``obj``."""
    import json

    return json.dumps(obj.to_dict(), indent=2, ensure_ascii=False).encode("utf-8")  # type: ignore[attr-defined]


def _sample(paths: tuple[str, ...] = ("/src/a.py", "/src/b.py")) -> object:
    from documee_remote.merge import new_analysis, refresh_derived
    from documee_remote.testing.factories import make_file_analysis

    analysis = new_analysis("cb1")
    for path in paths:
        analysis.file_analyses[path] = make_file_analysis(path)
    refresh_derived(analysis)
    return analysis


def test_base_path_by_keyword_and_position_creates_the_root(tmp_path: Path) -> None:
    by_keyword = tmp_path / "kw" / "analysis"
    with PersistenceManager(base_path=str(by_keyword)) as pm:
        assert by_keyword.is_dir()  # at construction, before any save, as upstream
        assert isinstance(pm.base_path, Path)
        assert pm.base_path == by_keyword
        assert pm.base_path / "cb" == by_keyword / "cb"
    by_position = tmp_path / "pos"
    with PersistenceManager(by_position) as pm:
        assert by_position.is_dir()
        assert pm.base_path == by_position
    by_url = tmp_path / "url"
    with PersistenceManager(base_path=by_url.as_uri(), compaction="deferred") as pm:
        assert pm.base_path == by_url
        assert by_url.is_dir()
        assert pm.compaction.mode == "deferred"


def test_default_base_path_is_upstreams_directory_created_at_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("DOCUMEE_STORE_URL", raising=False)
    with PersistenceManager() as pm:
        assert (tmp_path / ".documee" / "analysis").is_dir()
        assert pm.base_path == tmp_path / ".documee" / "analysis"


def test_base_path_of_a_store_without_a_directory_is_a_clear_attribute_error() -> None:
    with PersistenceManager("memory://") as pm:
        assert not hasattr(pm, "base_path")
        with pytest.raises(AttributeError, match=r"memory://.*not a local directory"):
            _ = pm.base_path


def test_read_only_local_store_is_not_created(tmp_path: Path) -> None:
    root = tmp_path / "ro"
    with PersistenceManager(base_path=str(root), read_only=True) as pm:
        assert not root.exists()
        assert pm.load_analysis("cb1") is None


def test_documee_objects_are_saved_as_documee_writes_them(store: Store) -> None:
    from documee_remote.codec import dumps

    ours = _sample()
    data = ours.to_dict()  # type: ignore[attr-defined]
    data["added_by_a_newer_documee"] = {"kept": [1, 2.0]}  # unknown fields survive
    documee = _DocumeeObject(data)
    pm = PersistenceManager(store)
    pm.save_analysis("cb1", documee)
    assert store.get("cb1/analysis.json").data == _documee_writes(documee)
    for path, fa in ours.file_analyses.items():  # type: ignore[attr-defined]
        assert store.get(f"cb1/{file_analysis_name(path)}").data == dumps(fa.to_dict())
    loaded = pm.load_analysis("cb1")
    assert loaded is not None
    assert loaded.model_extra == {"added_by_a_newer_documee": {"kept": [1, 2.0]}}


def test_mixed_tree_documee_codebase_holding_our_file_analyses(store: Store) -> None:
    """What Documee's incremental run builds after loading through this library."""
    from documee_remote.testing.factories import make_file_analysis

    ours = _sample()
    data = ours.to_dict()  # type: ignore[attr-defined]
    new = make_file_analysis("/src/new.py", functions=3).to_dict()
    new["from_documee_only"] = True
    files: dict[str, object] = dict(ours.file_analyses)  # type: ignore[attr-defined]
    files["/src/new.py"] = _DocumeeObject(new)
    documee = _DocumeeCodebase(data, files)
    pm = PersistenceManager(store)
    pm.save_analysis("cb1", documee)
    assert store.get("cb1/analysis.json").data == _documee_writes(documee)
    assert store.get(f"cb1/{file_analysis_name('/src/new.py')}").data == _documee_writes(
        files["/src/new.py"]
    )


def test_plain_dict_is_saved_unchanged(store: Store) -> None:
    import json

    data = json.loads(_documee_writes(_sample()))
    PersistenceManager(store).save_analysis("cb1", data)
    assert store.get("cb1/analysis.json").data == json.dumps(
        data, indent=2, ensure_ascii=False
    ).encode("utf-8")


def test_our_models_pass_through_without_a_copy() -> None:
    from documee_remote import interop

    ours = _sample()
    assert interop.as_codebase_analysis(ours, codebase_id="cb1") is ours
    files = ours.file_analyses  # type: ignore[attr-defined]
    assert interop.as_file_analyses(files, codebase_id="cb1") is files


def test_merge_append_and_transactions_take_documee_objects(store: Store) -> None:
    from documee_remote.models import CodebaseAnalysis, FileAnalysis
    from documee_remote.testing.factories import content_hash, make_file_analysis

    pm = PersistenceManager(store)
    a = make_file_analysis("/src/a.py")
    b = make_file_analysis("/src/b.py", functions=2)
    c = make_file_analysis("/src/c.py", functions=3)
    d = make_file_analysis("/src/d.py", functions=4)
    pm.merge_file_analyses(
        "cb1",
        {"/src/a.py": _DocumeeObject(a.to_dict()), "/src/b.py": b.to_dict()},
        {"/src/a.py": content_hash("a"), "/src/b.py": content_hash("b")},
    )
    pm.append_file_analyses("cb1", {"/src/c.py": _DocumeeObject(c.to_dict())}, {})
    with pm.transaction("cb1") as txn:
        txn.put_file(_DocumeeObject(d.to_dict()))
    loaded = pm.load_analysis("cb1")
    assert loaded is not None
    assert list(loaded.file_analyses) == ["/src/a.py", "/src/b.py", "/src/c.py", "/src/d.py"]
    for fa in (a, b, c, d):
        assert loaded.file_analyses[fa.file_path] == fa
    for fa in (a, b, c):  # merges write per-file objects too (a transaction does not)
        assert pm.load_file_analysis("cb1", fa.file_path) == fa
    assert pm.get_file_hashes("cb1") == {
        "/src/a.py": content_hash("a"),
        "/src/b.py": content_hash("b"),
    }

    # A change that puts Documee's object into the loaded tree, or returns a dict.
    e = make_file_analysis("/src/e.py", functions=5)

    def put_documee_object(analysis: CodebaseAnalysis) -> None:
        analysis.file_analyses["/src/e.py"] = _DocumeeObject(e.to_dict())  # type: ignore[assignment]

    committed = pm.update_analysis("cb1", put_documee_object)
    assert isinstance(committed.file_analyses["/src/e.py"], FileAnalysis)
    assert committed.file_analyses["/src/e.py"] == e

    def as_dict(analysis: CodebaseAnalysis) -> dict[str, object]:
        data = analysis.to_dict()
        del data["file_analyses"]["/src/a.py"]  # type: ignore[attr-defined]
        return data

    committed = pm.update_analysis("cb1", as_dict)
    assert isinstance(committed, CodebaseAnalysis)
    loaded = pm.load_analysis("cb1")
    assert loaded is not None
    assert "/src/a.py" not in loaded.file_analyses
    assert loaded.file_analyses["/src/e.py"] == e


@pytest.mark.parametrize(
    ("bad", "match"),
    [
        (42, r"must be a documee_remote CodebaseAnalysis.*not int"),
        (object(), r"an object with to_dict\(\).*not object"),
        (_DocumeeObject({"codebase_id": "cb1"}), r"not a valid CodebaseAnalysis.*first at"),
        (_DocumeeObject({"codebase_id": ["x"]}), r"_DocumeeObject"),
    ],
)
def test_objects_that_are_no_analysis_are_refused_naming_the_codebase(
    store: Store, bad: object, match: str
) -> None:
    pm = PersistenceManager(store)
    with pytest.raises(InvalidKeyError, match=match) as caught:
        pm.save_analysis("cb1", bad)  # type: ignore[arg-type]
    assert caught.value.codebase_id == "cb1"
    assert list(store.list()) == []


def test_wrong_kind_of_model_is_refused(store: Store) -> None:
    from documee_remote.testing.factories import make_file_analysis

    pm = PersistenceManager(store)
    fa = make_file_analysis("/src/a.py")
    with pytest.raises(InvalidKeyError, match="not this library's FileAnalysis"):
        pm.save_analysis("cb1", fa)  # type: ignore[arg-type]
    with pytest.raises(InvalidKeyError, match=r"analysis of '/src/a.py'.*not int"):
        pm.merge_file_analyses("cb1", {"/src/a.py": 7}, {})  # type: ignore[dict-item]
    with pytest.raises(InvalidKeyError, match="mapping of file path"):
        pm.append_file_analyses("cb1", [fa], {})  # type: ignore[arg-type]
    assert list(store.list()) == []


def test_documee_entry_point_defers_upstreams_default_to_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from documee_remote.documee import PersistenceManager as ForDocumee

    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("DOCUMEE_STORE_URL", raising=False)
    with ForDocumee(".documee/analysis") as pm:  # what Documee's server always passes
        assert pm.base_path == tmp_path / ".documee" / "analysis"
    monkeypatch.setenv("DOCUMEE_STORE_URL", "memory://")
    with ForDocumee(".documee/analysis") as pm:
        assert isinstance(pm.store, MemoryStore)
    with ForDocumee() as pm:
        assert isinstance(pm.store, MemoryStore)
    with ForDocumee(str(tmp_path / "explicit")) as pm:  # anything else is used as given
        assert pm.base_path == tmp_path / "explicit"
