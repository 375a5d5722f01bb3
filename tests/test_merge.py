"""Merging analysers' results: recomputation, transactions, conflicts and races."""

from __future__ import annotations

import functools
import json
import multiprocessing
import re
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from documee_remote import (
    PersistenceManager,
    RetryPolicy,
    TooManyConflictsError,
    TransactionStats,
    UnsupportedOperationError,
)
from documee_remote._engine.reads import read_analysis
from documee_remote.codec import load_codebase_analysis
from documee_remote.errors import CorruptObjectError, InvalidKeyError
from documee_remote.journal import CompactionPolicy
from documee_remote.layout import file_analysis_key
from documee_remote.merge import compute_metrics, rank_teaching_files
from documee_remote.models import CodebaseAnalysis
from documee_remote.stores import Capabilities, LocalStore, MemoryStore, Store, StoredObject
from documee_remote.testing.factories import content_hash, make_file_analysis
from documee_remote.transfer import pull, push

from .conftest import SHARED_FIXTURES

ISO_LOCAL = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{1,6})?\Z")
FAST = RetryPolicy(max_attempts=50, base_delay=0.001, max_delay=0.01, deadline=30)


@pytest.fixture(params=["local", "memory"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    made: Store = LocalStore(tmp_path / "store") if request.param == "local" else MemoryStore()
    with made:
        yield made


def test_metrics_recompute_exactly_as_upstream(codebase_dir: Path) -> None:
    if SHARED_FIXTURES not in codebase_dir.parents:
        pytest.skip("only the original engine's output has metrics to compare with")
    raw = (codebase_dir / "analysis.json").read_bytes()
    if not raw:
        pytest.skip("empty analysis")
    analysis = load_codebase_analysis(raw, key="analysis.json", codebase_id=codebase_dir.name)
    stored = analysis.metrics
    again = compute_metrics(analysis.file_analyses, analysis_time_ms=stored.analysis_time_ms)
    assert again == stored
    stored_top = [list(t) for t in json.loads(raw)["top_teaching_files"]]
    assert [list(t) for t in rank_teaching_files(analysis.file_analyses)] == stored_top


def test_first_merge_creates_the_analysis(store: Store) -> None:
    pm = PersistenceManager(store)
    fa = make_file_analysis("/src/a.py")
    committed = pm.merge_file_analyses("cb1", {"/src/a.py": fa}, {"/src/a.py": "a" * 64})
    assert committed.codebase_id == "cb1"
    assert list(committed.file_analyses) == ["/src/a.py"]
    assert committed.dependency_graph.nodes == {}
    assert committed.global_patterns == []
    assert committed.metrics.total_files == 1
    assert committed.top_teaching_files == [("/src/a.py", fa.teaching_value.total_score)]
    assert ISO_LOCAL.match(committed.analyzed_at)
    loaded = pm.load_analysis("cb1")
    assert loaded == committed
    assert pm.get_file_hashes("cb1") == {"/src/a.py": "a" * 64}
    assert pm.load_file_analysis("cb1", "/src/a.py") == fa


def test_merge_replaces_in_place_appends_and_removes(store: Store) -> None:
    pm = PersistenceManager(store)
    first = {p: make_file_analysis(p, seed=1) for p in ("/a.py", "/b.py", "/c.py")}
    pm.merge_file_analyses("cb1", first, {p: content_hash(p) for p in first})
    newer_b = make_file_analysis("/b.py", seed=2, functions=7)
    committed = pm.merge_file_analyses(
        "cb1",
        {"/b.py": newer_b, "/d.py": make_file_analysis("/d.py")},
        {"/b.py": "b2" * 32, "/d.py": "d" * 64},
        removed=["/a.py"],
    )
    assert list(committed.file_analyses) == ["/b.py", "/c.py", "/d.py"]
    assert committed.file_analyses["/b.py"] == newer_b
    assert committed.metrics == compute_metrics(
        committed.file_analyses, analysis_time_ms=committed.metrics.analysis_time_ms
    )
    assert pm.load_file_analysis("cb1", "/a.py") is None
    assert not store.exists(file_analysis_key("cb1", "/a.py"))
    assert pm.get_file_hashes("cb1") == {
        "/b.py": "b2" * 32,
        "/c.py": content_hash("/c.py"),
        "/d.py": "d" * 64,
    }


def test_merge_keeps_graph_and_patterns_unless_told(store: Store, codebase_dir: Path) -> None:
    raw = (codebase_dir / "analysis.json").read_bytes()
    if not raw or not (codebase_dir / "file_hashes.json").exists():
        pytest.skip("needs a full fixture")
    codebase_id = codebase_dir.name
    original = load_codebase_analysis(raw, key="analysis.json", codebase_id=codebase_id)
    pm = PersistenceManager(store)
    pm.save_analysis(codebase_id, original)
    path = next(iter(original.file_analyses))
    changed = make_file_analysis(path)
    committed = pm.merge_file_analyses(codebase_id, {path: changed}, {path: "f" * 64})
    assert committed.dependency_graph == original.dependency_graph
    assert committed.global_patterns == original.global_patterns
    assert committed.file_analyses[path] == changed
    assert list(committed.file_analyses) == list(original.file_analyses)

    seen: list[frozenset[str]] = []

    def merge_graph(analysis: CodebaseAnalysis, analyses: object, removed: frozenset[str]) -> None:
        seen.append(removed)
        analysis.global_patterns = []

    after = pm.merge_file_analyses(
        codebase_id, {path: changed}, {path: "f" * 64}, merge=merge_graph, removed=["/x.py"]
    )
    assert seen == [frozenset({"/x.py"})]
    assert after.global_patterns == []


def test_merge_rejects_inconsistent_input_and_writes_nothing(store: Store) -> None:
    pm = PersistenceManager(store)
    fa = make_file_analysis("/a.py")
    with pytest.raises(InvalidKeyError, match="names another file"):
        pm.merge_file_analyses("cb1", {"/b.py": fa}, {})
    with pytest.raises(InvalidKeyError, match="no analysis"):
        pm.merge_file_analyses("cb1", {"/a.py": fa}, {"/a.py": "a" * 64, "/z.py": "z" * 64})
    with pytest.raises(InvalidKeyError):
        pm.merge_file_analyses("../cb", {"/a.py": fa}, {})
    assert list(store.list()) == []


def test_merge_refuses_to_overwrite_a_corrupt_analysis(store: Store) -> None:
    pm = PersistenceManager(store)
    store.put("cb1/analysis.json", b"")
    with pytest.raises(CorruptObjectError):
        pm.merge_file_analyses("cb1", {"/a.py": make_file_analysis("/a.py")}, {})
    assert store.get("cb1/analysis.json").data == b""


class RacingStore(MemoryStore):
    """Lets a rival writer commit just before each of the first ``rivals`` puts of a key."""

    def __init__(self, key: str, rivals: int, rival: Callable[[], None]) -> None:
        super().__init__()
        self.key, self.rivals, self.rival = key, rivals, rival

    def _put(self, key: str, data: bytes, *, if_match: str | None, create_only: bool) -> str:
        if key == self.key and self.rivals > 0 and (if_match or create_only):
            self.rivals -= 1
            self.rival()
        return super()._put(key, data, if_match=if_match, create_only=create_only)


def test_lost_race_is_retried_and_both_updates_survive() -> None:
    rival_pm: PersistenceManager | None = None
    counter = iter(range(100))

    def rival() -> None:
        assert rival_pm is not None
        n = next(counter)
        path = f"/rival{n}.py"
        rival_pm.merge_file_analyses("cb1", {path: make_file_analysis(path)}, {})

    store = RacingStore("cb1/analysis.json", rivals=3, rival=rival)
    rival_pm = PersistenceManager(_Unracing(store), retry=FAST)
    pm = PersistenceManager(store, retry=FAST)
    stats = TransactionStats()
    committed = pm.merge_file_analyses(
        "cb1",
        {"/mine.py": make_file_analysis("/mine.py")},
        {"/mine.py": "m" * 64},
        stats=stats,
        merge=lambda analysis, analyses, removed: None,  # commits analysis.json directly
    )
    assert set(committed.file_analyses) == {"/mine.py", "/rival0.py", "/rival1.py", "/rival2.py"}
    assert stats.conflicts == 3
    assert stats.retries == 3
    assert stats.attempts >= 4
    loaded = pm.load_analysis("cb1")
    assert loaded is not None
    assert set(loaded.file_analyses) == set(committed.file_analyses)


class _Unracing(Store):
    """The same storage as a RacingStore, without the rival (so rivals don't recurse)."""

    def __init__(self, inner: MemoryStore) -> None:
        super().__init__()
        self.inner = inner
        self.capabilities = inner.capabilities

    @property
    def url(self) -> str:
        return self.inner.url

    def _get(self, key: str) -> StoredObject:
        return self.inner._get(key)

    def _head(self, key: str):  # type: ignore[no-untyped-def]
        return self.inner._head(key)

    def _put(self, key: str, data: bytes, *, if_match: str | None, create_only: bool) -> str:
        return MemoryStore._put(self.inner, key, data, if_match=if_match, create_only=create_only)

    def _delete(self, key: str, *, if_match: str | None) -> None:
        self.inner._delete(key, if_match=if_match)

    def _list(self, prefix: str) -> Iterator[str]:
        return self.inner._list(prefix)


def test_giving_up_says_how_many_attempts() -> None:
    def rival() -> None:
        current = store.get("cb1/analysis.json")
        MemoryStore._put(
            store, "cb1/analysis.json", current.data + b" ", if_match=None, create_only=False
        )

    store = RacingStore("cb1/analysis.json", rivals=0, rival=rival)
    pm = PersistenceManager(store, retry=RetryPolicy(max_attempts=4, base_delay=0.0))
    pm.update_analysis("cb1", lambda a: None)  # creates it
    store.rivals = 1000
    before = store.get("cb1/analysis.json").data
    with pytest.raises(TooManyConflictsError) as info:
        pm.update_analysis("cb1", lambda a: setattr(a, "analyzed_at", "changed"))
    assert info.value.attempts == 4
    assert "4 attempts" in str(info.value)
    assert info.value.codebase_id == "cb1"
    assert store.get("cb1/analysis.json").data.startswith(before)


def test_transaction_block_replays_its_changes_after_a_lost_race() -> None:
    store = MemoryStore()
    pm = PersistenceManager(store, retry=FAST)
    pm.merge_file_analyses("cb1", {"/a.py": make_file_analysis("/a.py")}, {})
    with pm.transaction("cb1") as txn:
        txn.put_file(make_file_analysis("/b.py"))
        assert set(txn.analysis.file_analyses) == {"/a.py", "/b.py"}
        # Another writer commits while the block runs.
        pm.merge_file_analyses("cb1", {"/c.py": make_file_analysis("/c.py")}, {})
        txn.remove_file("/a.py")
    assert txn.stats.conflicts == 1
    loaded = pm.load_analysis("cb1")
    assert loaded is not None
    assert set(loaded.file_analyses) == {"/b.py", "/c.py"}


def test_transaction_block_that_raises_writes_nothing() -> None:
    store = MemoryStore()
    pm = PersistenceManager(store)

    def body() -> None:
        with pm.transaction("cb1") as txn:
            txn.put_file(make_file_analysis("/b.py"))
            raise RuntimeError("boom")

    with pytest.raises(RuntimeError):
        body()
    assert list(store.list()) == []


class NonAtomicStore(MemoryStore):
    capabilities = Capabilities(atomic_conditional_writes=False, conditional_delete=False)


def test_merges_are_refused_on_stores_that_would_race() -> None:
    pm = PersistenceManager(NonAtomicStore())
    with pytest.raises(UnsupportedOperationError, match="lose updates"):
        pm.merge_file_analyses("cb1", {"/a.py": make_file_analysis("/a.py")}, {})
    with pytest.raises(UnsupportedOperationError):
        pm.update_analysis("cb1", lambda a: None)
    assert list(pm.store.list()) == []


def _merge_worker(
    factory: Callable[[], Store], worker: int, merges: int, compaction: str = "eager"
) -> tuple[int, int]:
    stats = TransactionStats()
    policy = CompactionPolicy("deferred", max_deltas=5) if compaction == "deferred" else None
    retry = RetryPolicy(max_attempts=200, deadline=120)
    with PersistenceManager(factory(), retry=retry, compaction=policy) as pm:
        for i in range(merges):
            path = f"/src/w{worker}/f{i}.py"
            fa = make_file_analysis(path, seed=worker * 1000 + i)
            pm.merge_file_analyses("race1", {path: fa}, {path: content_hash(path)}, stats=stats)
    return stats.attempts, stats.conflicts


def check_merge_race(
    factory: Callable[[], Store],
    store: Store,
    workers: int,
    merges: int,
    compaction: str = "eager",
) -> None:
    """Race ``workers`` processes of ``merges`` merges each and check every invariant."""
    ctx = multiprocessing.get_context("spawn")
    with ctx.Pool(workers) as pool:
        results = pool.starmap(
            _merge_worker, [(factory, w, merges, compaction) for w in range(workers)]
        )
    pm = PersistenceManager(store)
    stored, _, _ = read_analysis(pm.engine, "race1")
    assert stored is not None
    if compaction == "eager":  # analysis.json alone holds everything
        assert len(stored.file_analyses) == workers * merges
    else:  # some merges may wait in the journal; what analysis.json has is consistent
        assert stored.metrics == compute_metrics(
            stored.file_analyses, analysis_time_ms=stored.metrics.analysis_time_ms
        )
    pm.compact("race1")
    final = pm.load_analysis("race1")
    assert final is not None
    expected = {f"/src/w{w}/f{i}.py" for w in range(workers) for i in range(merges)}
    assert set(final.file_analyses) == expected
    assert final.metrics == compute_metrics(
        final.file_analyses, analysis_time_ms=final.metrics.analysis_time_ms
    )
    assert pm.get_file_hashes("race1") == {p: content_hash(p) for p in expected}
    for path, fa in final.file_analyses.items():
        assert pm.load_file_analysis("race1", path) == fa
    attempts = sum(a for a, _ in results)
    conflicts = sum(c for _, c in results)
    print(f"\n{workers}x{merges} merges: {attempts} attempts, {conflicts} conflicts")


@pytest.mark.parametrize("compaction", ["eager", "deferred"])
def test_eight_processes_merging_into_local_store_lose_nothing(
    tmp_path: Path, compaction: str
) -> None:
    factory = functools.partial(LocalStore, tmp_path / "store")
    check_merge_race(factory, LocalStore(tmp_path / "store"), 8, 25, compaction)


def test_a_rival_compaction_that_folds_our_delta_counts_as_our_commit() -> None:
    """Journal merges: losing the analysis.json race to a compaction that already
    folded our delta ends the merge; nothing is written twice."""
    rival_pm: PersistenceManager | None = None
    counter = iter(range(100))

    def rival() -> None:
        assert rival_pm is not None
        path = f"/rival{next(counter)}.py"
        rival_pm.merge_file_analyses("cb1", {path: make_file_analysis(path)}, {path: "r" * 64})

    store = RacingStore("cb1/analysis.json", rivals=3, rival=rival)
    # The rival merges while we hold the folder record and are about to commit: it takes
    # the record over once it is stale (group_wait_seconds) and folds both deltas.
    rival_pm = PersistenceManager(
        _Unracing(store), retry=FAST, compaction=CompactionPolicy(group_wait_seconds=0.1)
    )
    pm = PersistenceManager(store, retry=FAST)
    stats = TransactionStats()
    committed = pm.merge_file_analyses(
        "cb1", {"/mine.py": make_file_analysis("/mine.py")}, {"/mine.py": "m" * 64}, stats=stats
    )
    # Our commit lost to the rival's, which folded our delta with its own: the merge
    # returns what analysis.json holds (this merge included), and commits nothing more.
    assert set(committed.file_analyses) == {"/mine.py", "/rival0.py"}
    assert stats.conflicts == 1
    names = sorted(k.rsplit("/", 1)[1] for k in store.list("cb1/_journal/"))
    deltas = [n[:-5] for n in names if re.fullmatch(r"w\d{13}-[0-9a-f]{16}\.json", n)]
    assert len(deltas) == 2
    assert names == ["_folder.json", f"c{1:020d}.folded", *(f"{d}.json" for d in deltas)]
    stored = json.loads(store.get("cb1/analysis.json").data)
    assert stored["documee_remote"]["commit"] == 1  # one commit folded both
    assert stored["documee_remote"]["folded"] == dict.fromkeys(deltas, 1)
    assert pm.get_file_hashes("cb1") == {"/mine.py": "m" * 64, "/rival0.py": "r" * 64}
    loaded = pm.load_analysis("cb1")
    assert loaded is not None
    assert set(loaded.file_analyses) == {"/mine.py", "/rival0.py"}


# -- issue 12, defect 3: unknown fields survive everything, everywhere ---------------------------

#: Where unknown fields are planted: every model of an analysis, by a path of keys.
EXTRA_SITES: dict[str, tuple[str | int, ...]] = {
    "analysis": (),
    "metrics": ("metrics",),
    "graph": ("dependency_graph",),
    "graph node": ("dependency_graph", "nodes", "/a.py"),
    "graph edge": ("dependency_graph", "edges", 0),
    "cycle": ("dependency_graph", "circular_dependencies", 0),
    "global pattern": ("global_patterns", 0),
    "file": ("file_analyses", "/a.py"),
    "symbols": ("file_analyses", "/a.py", "symbol_info"),
    "function": ("file_analyses", "/a.py", "symbol_info", "functions", 0),
    "class": ("file_analyses", "/a.py", "symbol_info", "classes", 0),
    "method": ("file_analyses", "/a.py", "symbol_info", "classes", 0, "methods", 0),
    "import": ("file_analyses", "/a.py", "symbol_info", "imports", 0),
    "pattern": ("file_analyses", "/a.py", "patterns", 0),
    "teaching value": ("file_analyses", "/a.py", "teaching_value"),
    "complexity": ("file_analyses", "/a.py", "complexity_metrics"),
    "linter issue": ("file_analyses", "/a.py", "linter_issues", 0),
}

_json_leaf = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=10)
)
_json_value = st.recursive(
    _json_leaf,
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3)
    ),
    max_leaves=6,
)
#: Names no model declares (declared ones are snake_case words without a digit).
_extra_names = st.from_regex(r"x[0-9][a-z0-9_]{0,8}", fullmatch=True)
_extras = st.dictionaries(_extra_names, _json_value, min_size=1, max_size=3)


def _site(doc: Any, path: tuple[str | int, ...]) -> Any:
    for step in path:
        doc = doc[step]
    return doc


def _planted_analysis(extras: dict[str, dict[str, Any]]) -> bytes:
    """analysis.json bytes of a codebase with /a.py, with ``extras`` at every site."""
    fa = make_file_analysis("/a.py").to_dict()
    method = fa["symbol_info"]["functions"][0]
    fa["symbol_info"]["classes"] = [
        {
            "name": "A",
            "methods": [dict(method)],
            "base_classes": [],
            "docstring": None,
            "start_line": 1,
            "end_line": 9,
            "decorators": [],
        }
    ]
    fa["linter_issues"] = [
        {"tool": "ruff", "severity": "w", "message": "m", "line": 1, "column": 1, "rule": "E1"}
    ]
    files = {"/a.py": fa}
    doc = {
        "codebase_id": "cb",
        "file_analyses": files,
        "dependency_graph": {
            "nodes": {
                "/a.py": {
                    "file_path": "/a.py",
                    "imports": [],
                    "imported_by": [],
                    "external_imports": ["os"],
                }
            },
            "edges": [{"from_file": "/a.py", "to_file": "/a.py", "import_count": 1}],
            "circular_dependencies": [{"cycle": ["/a.py", "/a.py"]}],
            "external_dependencies": {"os": 1},
        },
        # A copy: planting extras in one site must not plant them in the other.
        "global_patterns": [dict(fa["patterns"][0])],
        "top_teaching_files": [],
        "metrics": compute_metrics({}).to_dict(),
        "analyzed_at": "2024-01-01T00:00:00",
    }
    for name, path in EXTRA_SITES.items():
        _site(doc, path).update(extras[name])
    return json.dumps(doc).encode()


def _assert_extras_kept(raw: bytes, extras: dict[str, dict[str, Any]], what: str) -> None:
    doc = json.loads(raw)
    for name, path in EXTRA_SITES.items():
        site = _site(doc, path)
        for field, value in extras[name].items():
            assert field in site, f"{what}: unknown field {field!r} of {name} was dropped"
            assert site[field] == value, f"{what}: unknown field {field!r} of {name} changed"


def _with_extras(path: str, extras: dict[str, Any]) -> Any:
    return type(make_file_analysis(path)).model_validate(
        {**make_file_analysis(path).to_dict(), **extras}
    )


#: Hypothesis's find: one field name, other values, at a file's pattern and the global one.
_SAME_NAME_AT_TWO_SITES = {
    **{name: {"x1": 1} for name in EXTRA_SITES},
    "pattern": {"x0": []},
    "global pattern": {"x0": None},
}


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    extras=st.fixed_dictionaries(dict.fromkeys(EXTRA_SITES, _extras)),
    file_extras=_extras,
)
@example(extras=_SAME_NAME_AT_TWO_SITES, file_extras={"x2": 2})
def test_unknown_fields_survive_every_write_path(
    extras: dict[str, dict[str, Any]], file_extras: dict[str, Any]
) -> None:
    raw = _planted_analysis(extras)
    analysis = load_codebase_analysis(raw, key="cb/analysis.json", codebase_id="cb")
    new_file = _with_extras("/b.py", file_extras)

    def stored(pm: PersistenceManager) -> bytes:
        return pm.store.get("cb/analysis.json").data

    def check_new_file(pm: PersistenceManager, what: str) -> None:
        entry = json.loads(stored(pm))["file_analyses"]["/b.py"]
        per_file = json.loads(pm.store.get(file_analysis_key("cb", "/b.py")).data)
        for field, value in file_extras.items():
            assert entry[field] == value, f"{what}: /b.py's {field!r} in analysis.json"
            assert per_file[field] == value, f"{what}: /b.py's {field!r} in its object"

    # save
    pm = PersistenceManager(MemoryStore())
    pm.save_analysis("cb", analysis)
    _assert_extras_kept(stored(pm), extras, "save")
    per_file = pm.store.get(file_analysis_key("cb", "/a.py")).data
    _assert_extras_kept(
        json.dumps({**json.loads(raw), "file_analyses": {"/a.py": json.loads(per_file)}}).encode(),
        extras,
        "save (per-file object)",
    )
    # merge (eager: commits analysis.json directly after its delta)
    pm.merge_file_analyses("cb", {"/b.py": new_file}, {"/b.py": "h" * 64})
    _assert_extras_kept(stored(pm), extras, "merge")
    check_new_file(pm, "merge")
    # append to the journal, then compact
    deferred = PersistenceManager(MemoryStore(), compaction=CompactionPolicy(mode="deferred"))
    deferred.save_analysis("cb", analysis)
    deferred.append_file_analyses("cb", {"/b.py": new_file}, {"/b.py": "h" * 64})
    deferred.compact("cb")
    _assert_extras_kept(stored(deferred), extras, "append + compact")
    check_new_file(deferred, "append + compact")
    # a merge with a caller's graph merge and a fencing token (commits directly)
    pm = PersistenceManager(MemoryStore())
    pm.save_analysis("cb", analysis)
    pm.merge_file_analyses(
        "cb", {"/b.py": new_file}, {}, merge=lambda a, fas, removed: None, fencing_token=1
    )
    _assert_extras_kept(stored(pm), extras, "merge with a graph merge and a fence")
    # a transaction
    pm = PersistenceManager(MemoryStore())
    pm.save_analysis("cb", analysis)
    with pm.transaction("cb") as txn:
        txn.put_file(new_file)
    _assert_extras_kept(stored(pm), extras, "transaction")
    # a transfer: pull to a directory, push to another store, read it back and save it
    with tempfile.TemporaryDirectory() as tmp:
        pulled = pull(pm.store, Path(tmp) / "local")
        assert pulled.ok
        target = PersistenceManager(LocalStore(Path(tmp) / "store"))
        assert push(Path(tmp) / "local", target.store).ok
        _assert_extras_kept(stored(target), extras, "pull + push")
        loaded = target.load_analysis("cb")
        assert loaded is not None
        target.save_analysis("again", loaded)
        _assert_extras_kept(
            json.dumps({**json.loads(stored(target)), "codebase_id": "cb"}).encode(),
            extras,
            "load + save",
        )
