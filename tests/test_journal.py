"""The delta journal: format, folding, compaction policies, pruning, and the races and
crashes the protocol in ``documee_remote.journal`` is built to survive."""

from __future__ import annotations

import logging
import re
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import TypeVar

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from documee_remote import AppendReport, PersistenceManager, codec, journal
from documee_remote._engine import reads
from documee_remote._engine.context import Engine
from documee_remote.errors import CorruptObjectError, InvalidKeyError
from documee_remote.journal import CompactionPolicy, Delta, GraphUpdate, JournalListing
from documee_remote.merge import new_analysis
from documee_remote.models import (
    CircularDependency,
    CodebaseAnalysis,
    DependencyEdge,
    FileNode,
)
from documee_remote.retry import RetryPolicy
from documee_remote.stores import LocalStore, MemoryStore, ObjectMeta, Store
from documee_remote.testing.factories import make_file_analysis

_T = TypeVar("_T")

FAST = RetryPolicy(max_attempts=50, base_delay=0.0005, max_delay=0.005, deadline=20)
H = "ab" * 32


def h(n: int) -> str:
    return f"{n:064x}"


def delta_names(store: Store, cid: str = "cb") -> list[str]:
    return sorted(k.rsplit("/", 1)[1] for k in store.list(f"{cid}/_journal/"))


def seq_name(seq: int, suffix: str = "json") -> str:
    return f"{seq:020d}.{suffix}"


class CountingStore(MemoryStore):
    """Counts the requests a real S3 would see: one per object operation, one per listing."""

    def __init__(self) -> None:
        super().__init__()
        self.ops: Counter[str] = Counter()

    def _get(self, key: str):  # type: ignore[no-untyped-def]
        self.ops["GET"] += 1
        return super()._get(key)

    def _head(self, key: str) -> ObjectMeta:
        self.ops["HEAD"] += 1
        return super()._head(key)

    def _put(self, key: str, data: bytes, *, if_match: str | None, create_only: bool) -> str:
        self.ops["PUT"] += 1
        return super()._put(key, data, if_match=if_match, create_only=create_only)

    def _delete(self, key: str, *, if_match: str | None) -> None:
        self.ops["DELETE"] += 1
        super()._delete(key, if_match=if_match)

    def _list_meta(self, prefix: str) -> Iterator[ObjectMeta]:
        # One request on S3; MemoryStore's own version HEADs each key instead.
        self.ops["LIST"] += 1
        with self._lock:
            found = [(k, v) for k, v in self._objects.items() if k.startswith(prefix)]
        return iter([ObjectMeta(k, etag, len(d), t) for k, (d, etag, t) in sorted(found)])

    @property
    def total(self) -> int:
        return sum(self.ops.values())


# -- the format --------------------------------------------------------------------------------

file_paths = st.text(
    st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), min_size=1
).filter(lambda p: len(p.encode()) < 300)


@settings(max_examples=60, deadline=None)
@given(paths=st.lists(file_paths, min_size=0, max_size=4, unique=True), ms=st.floats(0, 1e6))
def test_a_delta_round_trips_its_analyses_byte_for_byte(paths: list[str], ms: float) -> None:
    analyses = {p: make_file_analysis(p) for p in paths}
    bodies = {p: codec.dump_file_analysis(fa) for p, fa in analyses.items()}
    data = journal.encode_delta(
        "cb", bodies, removed=["gone.py"], file_hashes=dict.fromkeys(paths, H), analysis_time_ms=ms
    )
    delta = journal.decode_delta(data, key="cb/_journal/x", codebase_id="cb")
    assert list(delta.file_analyses) == paths
    assert {p: codec.dump_file_analysis(fa) for p, fa in delta.file_analyses.items()} == bodies
    assert delta.removed == ["gone.py"]
    assert delta.file_hashes == dict.fromkeys(paths, H)
    assert delta.analysis_time_ms == ms


@pytest.mark.parametrize(
    ("data", "problem"),
    [
        (b"", "empty"),
        (b"[1]", "not a JSON object"),
        (b'{"format": 2, "codebase_id": "cb"}', "format 2"),
        (b'{"format": 1, "codebase_id": "other", "created_at": "", "writer": ""}', "'other'"),
        (b'{"format": 1, "codebase_id": "cb", "writer": ""}', "created_at"),
    ],
)
def test_a_corrupt_delta_is_refused_naming_codebase_and_key(data: bytes, problem: str) -> None:
    with pytest.raises(CorruptObjectError) as info:
        journal.decode_delta(data, key="cb/_journal/00000000000000000007.json", codebase_id="cb")
    assert problem in str(info.value)
    assert info.value.key == "cb/_journal/00000000000000000007.json"
    assert info.value.codebase_id == "cb"


def test_a_delta_filing_an_analysis_under_another_path_is_corrupt() -> None:
    body = codec.dump_file_analysis(make_file_analysis("/real.py"))
    data = journal.encode_delta("cb", {"/claimed.py": body})
    with pytest.raises(CorruptObjectError, match=r"'/real\.py' under '/claimed\.py'"):
        journal.decode_delta(data, key="cb/_journal/1", codebase_id="cb")


def test_listing_sorts_deltas_and_markers_and_ignores_strangers() -> None:
    now = datetime.now(UTC)
    keys = [
        "cb/_journal/" + seq_name(1),
        "cb/_journal/" + seq_name(2),
        "cb/_journal/" + seq_name(2, "folded"),
        "cb/_journal/" + seq_name(4),
        "cb/_journal/notes.txt",
        "cb/_journal/7.json",
    ]
    listing = journal.parse_listing("cb", [ObjectMeta(k, "e", 1, now) for k in keys])
    assert sorted(listing.deltas) == [1, 2, 4]
    assert sorted(listing.markers) == [2]
    assert (listing.max_seq, listing.folded_hint) == (4, 2)
    assert listing.above(1) == [2, 4]
    assert listing.missing_above(1) == [3]
    assert listing.missing_above(4) == []


def _delta(files: dict[str, str | None] | None = None, removed: tuple[str, ...] = ()) -> Delta:
    files = files or {}
    return Delta(
        format=1,
        codebase_id="cb",
        created_at="",
        writer="",
        removed=list(removed),
        file_hashes={p: d for p, d in files.items() if d is not None},
        file_analyses={p: make_file_analysis(p) for p in files},
    )


def test_hash_folding_lets_each_paths_newest_delta_decide() -> None:
    claims, unclaimed = journal.fold_hashes(
        [
            (1, _delta({"/a": h(1), "/b": h(1), "/c": h(1)})),
            (2, _delta({"/a": None}, removed=("/b",))),  # analysed without a hash; removed
            (3, _delta({"/c": h(3)}, removed=("/d",))),
        ]
    )
    assert claims == {"/c": h(3)}
    assert unclaimed == {"/a", "/b", "/d"}


def test_policies_are_validated() -> None:
    assert CompactionPolicy.of(None).mode == "eager"
    assert CompactionPolicy.of("deferred").mode == "deferred"
    with pytest.raises(ValueError, match="'eager' or 'deferred'"):
        CompactionPolicy.of("lazy")
    with pytest.raises(ValueError, match="at least 1"):
        CompactionPolicy(max_deltas=0)
    assert CompactionPolicy("deferred", max_deltas=3).due(3, 0)
    assert not CompactionPolicy("deferred", max_deltas=3).due(2, 0)
    assert CompactionPolicy("deferred", max_bytes=100).due(1, 100)


def test_the_policy_comes_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DOCUMEE_COMPACTION", "deferred")
    monkeypatch.setenv("DOCUMEE_COMPACTION_MAX_DELTAS", "5")
    policy = PersistenceManager("memory://").compaction
    assert (policy.mode, policy.max_deltas) == ("deferred", 5)
    monkeypatch.setenv("DOCUMEE_COMPACTION_MAX_DELTAS", "many")
    with pytest.raises(ValueError, match="DOCUMEE_COMPACTION_MAX_DELTAS"):
        PersistenceManager("memory://")


# -- eager: analysis.json is always complete -----------------------------------------------------


@pytest.fixture(params=["memory", "local"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Store:
    return MemoryStore() if request.param == "memory" else LocalStore(tmp_path / "root")


def stored_analysis(store: Store, cid: str = "cb") -> dict[str, object]:
    loaded = codec.loads(store.get(f"{cid}/analysis.json").data)
    assert isinstance(loaded, dict)
    return loaded


def test_an_eager_merge_leaves_analysis_json_complete(store: Store) -> None:
    pm = PersistenceManager(store, retry=FAST)
    for n in range(3):
        path = f"/f{n}.py"
        pm.merge_file_analyses("cb", {path: make_file_analysis(path)}, {path: h(n)})
        raw = stored_analysis(store)
        assert list(raw["file_analyses"]) == [f"/f{i}.py" for i in range(n + 1)]  # type: ignore[call-overload]
        assert raw["documee_remote"] == {"journal": n + 1}
    # Deltas and markers younger than the grace period (30 minutes) are all kept.
    assert delta_names(store) == [
        seq_name(n, kind) for n in (1, 2, 3) for kind in ("folded", "json")
    ]
    assert pm.get_file_hashes("cb") == {f"/f{n}.py": h(n) for n in range(3)}
    assert codec.loads(store.get("cb/file_hashes.json").data) == pm.get_file_hashes("cb")


def test_compaction_prunes_folded_deltas_past_the_grace_period(store: Store) -> None:
    pm = PersistenceManager(store, retry=FAST, compaction=CompactionPolicy(grace_seconds=0))
    for n in range(4):
        pm.merge_file_analyses("cb", {f"/f{n}.py": make_file_analysis(f"/f{n}.py")}, {})
    # The delta at the watermark stays, so the next writer picks a higher seq.
    assert delta_names(store) == [seq_name(4, "folded"), seq_name(4)]
    pm.merge_file_analyses("cb", {"/g.py": make_file_analysis("/g.py")}, {})
    assert delta_names(store) == [seq_name(5, "folded"), seq_name(5)]
    analysis = pm.load_analysis("cb")
    assert analysis is not None
    assert len(analysis.file_analyses) == 5


def test_young_folded_deltas_are_kept_and_counted(store: Store) -> None:
    pm = PersistenceManager(store, retry=FAST, compaction="deferred")
    for n in range(3):
        pm.append_file_analyses("cb", {f"/f{n}.py": make_file_analysis(f"/f{n}.py")}, {})
    report = pm.compact("cb")
    assert (report.folded, report.watermark, report.deleted, report.kept_young) == (3, 3, 0, 2)
    assert report.to_dict()["codebase_id"] == "cb"


# -- deferred: a small merge is a few small requests -----------------------------------------------


def test_a_deferred_append_of_two_files_is_four_requests() -> None:
    store = CountingStore()
    pm = PersistenceManager(store, retry=FAST, compaction="deferred")
    pm.merge_file_analyses(
        "cb", {f"/f{n}.py": make_file_analysis(f"/f{n}.py") for n in range(50)}, {}
    )
    pm.compact("cb")
    store.ops.clear()
    changed = make_file_analysis("/f1.py", score=0.99)
    report = pm.append_file_analyses(
        "cb",
        {"/f1.py": changed, "/new.py": make_file_analysis("/new.py")},
        {"/f1.py": h(1), "/new.py": h(2)},
    )
    # Two per-file PUTs, one listing to pick the seq, one PUT of the delta; analysis.json
    # is neither read nor written.
    assert store.ops == {"PUT": 3, "LIST": 1}
    assert report.seq == 2
    assert report.compaction is None
    assert journal.watermark(codec.load_codebase_analysis(store.get("cb/analysis.json").data)) == 1
    # Readers of this library see it at once; analysis.json after compaction.
    view = pm.load_analysis("cb")
    assert view is not None
    assert "/new.py" in view.file_analyses
    assert view.file_analyses["/f1.py"] == changed
    assert pm.get_file_hashes("cb") == {"/f1.py": h(1), "/new.py": h(2)}
    assert "/new.py" not in stored_analysis(store)["file_analyses"]  # type: ignore[operator]
    report2 = pm.compact("cb")
    assert (report2.folded, report2.watermark, report2.analysis_written) == (1, 2, True)
    assert "/new.py" in stored_analysis(store)["file_analyses"]  # type: ignore[operator]
    assert codec.loads(store.get("cb/file_hashes.json").data) == {"/f1.py": h(1), "/new.py": h(2)}
    assert pm.compact("cb").analysis_written is False  # nothing pending: nothing written


def test_an_eager_merge_of_two_files_stays_within_ten_requests() -> None:
    store = CountingStore()
    pm = PersistenceManager(store, retry=FAST)
    pm.merge_file_analyses(
        "cb", {f"/f{n}.py": make_file_analysis(f"/f{n}.py") for n in range(50)}, {}
    )
    store.ops.clear()
    pm.merge_file_analyses(
        "cb",
        {
            "/f1.py": make_file_analysis("/f1.py", score=0.99),
            "/new.py": make_file_analysis("/new.py"),
        },
        {"/f1.py": h(1), "/new.py": h(2)},
    )
    assert store.total <= 10, store.ops


def test_deferred_compaction_runs_when_the_journal_passes_its_threshold(store: Store) -> None:
    pm = PersistenceManager(
        store, retry=FAST, compaction=CompactionPolicy("deferred", max_deltas=3)
    )
    reports = [
        pm.append_file_analyses("cb", {f"/f{n}.py": make_file_analysis(f"/f{n}.py")}, {})
        for n in range(4)
    ]
    assert [r.compaction is not None for r in reports] == [False, False, True, False]
    assert journal.watermark(codec.load_codebase_analysis(store.get("cb/analysis.json").data)) == 3
    assert PersistenceManager(store).list_codebases() == ["cb"]


def test_a_codebase_with_only_a_journal_is_listed_and_loadable(store: Store) -> None:
    pm = PersistenceManager(store, retry=FAST, compaction="deferred")
    pm.append_file_analyses("cb", {"/a.py": make_file_analysis("/a.py")}, {"/a.py": H})
    assert not store.exists("cb/analysis.json")
    assert pm.list_codebases() == ["cb"]
    view = pm.load_analysis("cb")
    assert view is not None
    assert list(view.file_analyses) == ["/a.py"]
    assert view.metrics.total_files == 1
    assert pm.get_file_hashes("cb") == {"/a.py": H}


def test_save_analysis_replaces_pending_deltas_instead_of_replaying_them(store: Store) -> None:
    pm = PersistenceManager(store, retry=FAST, compaction="deferred")
    pm.append_file_analyses("cb", {"/a.py": make_file_analysis("/a.py")}, {"/a.py": H})
    pm.append_file_analyses("cb", {"/b.py": make_file_analysis("/b.py")}, {})
    replacement = pm.load_analysis("cb")
    assert replacement is not None
    del replacement.file_analyses["/a.py"]
    pm.save_analysis("cb", replacement)
    loaded = pm.load_analysis("cb")
    assert loaded is not None
    assert list(loaded.file_analyses) == ["/b.py"]
    # A plain upstream-style analysis (no bookkeeping) saved over a journal works too.
    fresh = replacement.model_copy()
    fresh.__pydantic_extra__ = {}
    pm.save_analysis("cb", fresh)
    loaded = pm.load_analysis("cb")
    assert loaded is not None
    assert list(loaded.file_analyses) == ["/b.py"]
    assert fresh.__pydantic_extra__ == {}  # the caller's object is not changed
    # The replaced deltas lend nothing to get_file_hashes any more.
    assert pm.get_file_hashes("cb") == {}
    pm.save_file_hashes("cb", {"/b.py": H})
    assert pm.get_file_hashes("cb") == {"/b.py": H}


def test_transactions_fold_the_journal_first(store: Store) -> None:
    pm = PersistenceManager(store, retry=FAST, compaction="deferred")
    pm.append_file_analyses("cb", {"/a.py": make_file_analysis("/a.py")}, {"/a.py": H})
    with pm.transaction("cb") as txn:
        assert "/a.py" in txn.analysis.file_analyses
        txn.put_file(make_file_analysis("/b.py"))
    raw = stored_analysis(store)
    assert list(raw["file_analyses"]) == ["/a.py", "/b.py"]  # type: ignore[call-overload]
    assert raw["documee_remote"] == {"journal": 1}
    assert codec.loads(store.get("cb/file_hashes.json").data) == {"/a.py": H}


def test_deferred_removals_reach_per_file_objects_and_hashes_at_compaction(store: Store) -> None:
    pm = PersistenceManager(store, retry=FAST, compaction="deferred")
    pm.merge_file_analyses(
        "cb",
        {"/a.py": make_file_analysis("/a.py"), "/b.py": make_file_analysis("/b.py")},
        {"/a.py": H, "/b.py": H},
    )
    pm.compact("cb")
    pm.append_file_analyses("cb", {}, {}, removed=["/a.py"])
    view = pm.load_analysis("cb")
    assert view is not None
    assert list(view.file_analyses) == ["/b.py"]
    assert pm.get_file_hashes("cb") == {"/b.py": H}
    pm.compact("cb")
    assert codec.loads(store.get("cb/file_hashes.json").data) == {"/b.py": H}
    assert pm.load_file_analysis("cb", "/a.py") is None
    assert pm.verify("cb").ok


def test_a_merge_with_a_bad_path_writes_nothing(store: Store) -> None:
    pm = PersistenceManager(store, retry=FAST)
    with pytest.raises(InvalidKeyError):
        pm.append_file_analyses("cb", {"/a.py": make_file_analysis("/b.py")}, {})
    assert list(store.list()) == []


# -- races ----------------------------------------------------------------------------------------


class HookStore(MemoryStore):
    """Runs ``hook(op, key)`` before each operation (once the hook is armed)."""

    def __init__(self) -> None:
        super().__init__()
        self.hook: Callable[[str, str], None] | None = None

    def _fire(self, op: str, key: str) -> None:
        hook, self.hook = self.hook, None  # one shot, and the hook may use the store
        if hook is not None:
            hook(op, key)
            self.hook = hook

    def _get(self, key: str):  # type: ignore[no-untyped-def]
        self._fire("get", key)
        return super()._get(key)

    def _put(self, key: str, data: bytes, *, if_match: str | None, create_only: bool) -> str:
        self._fire("put", key)
        return super()._put(key, data, if_match=if_match, create_only=create_only)

    def _list_meta(self, prefix: str) -> Iterator[ObjectMeta]:
        self._fire("list", prefix)
        return super()._list_meta(prefix)


def test_a_seq_taken_between_listing_and_put_is_picked_again() -> None:
    store = HookStore()
    pm = PersistenceManager(store, retry=FAST, compaction="deferred")
    rival = PersistenceManager(unhooked(store), retry=FAST, compaction="deferred")
    fired: list[int] = []

    def hook(op: str, key: str) -> None:
        if op == "put" and key.endswith(".json") and "/_journal/" in key and not fired:
            fired.append(1)
            rival.append_file_analyses("cb", {"/r.py": make_file_analysis("/r.py")}, {})

    store.hook = hook
    report = pm.append_file_analyses("cb", {"/m.py": make_file_analysis("/m.py")}, {})
    assert fired
    assert report.seq == 2
    assert report.stats.conflicts == 1
    view = pm.load_analysis("cb")
    assert view is not None
    assert list(view.file_analyses) == ["/r.py", "/m.py"]


def unhooked(store: MemoryStore) -> MemoryStore:
    """The same objects as ``store``, without its hooks (for a rival writer)."""
    view = MemoryStore()
    view._objects, view._lock = store._objects, store._lock
    return view


def test_a_reader_whose_analysis_predates_a_pruning_compaction_reads_again(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The hole rule: a listing that shows a compaction's deletions, with an analysis.json
    read from before that compaction, is detected and read again, never folded short."""
    store = HookStore()
    writer = PersistenceManager(
        store, retry=FAST, compaction=CompactionPolicy("deferred", grace_seconds=0)
    )
    for n in range(3):
        writer.append_file_analyses("cb", {f"/f{n}.py": make_file_analysis(f"/f{n}.py")}, {})
    compactor = PersistenceManager(
        unhooked(store), retry=FAST, compaction=CompactionPolicy(grace_seconds=0)
    )
    done: list[int] = []

    def hook(op: str, key: str) -> None:
        # After the reader's GET of analysis.json (absent: watermark 0) and before its
        # listing: one more merge, and a compaction that folds and prunes 1..3.
        if op == "list" and not done:
            done.append(1)
            compactor.merge_file_analyses("cb", {"/late.py": make_file_analysis("/late.py")}, {})

    reader = PersistenceManager(store, retry=FAST)
    concurrent = reads.with_listing
    ordered: list[str] = []

    def in_order(eng: Engine, cid: str, fn: Callable[[], _T]) -> tuple[_T, JournalListing]:
        # The reader's GET of analysis.json first, then its listing (not at once).
        if eng is not reader.engine:
            return concurrent(eng, cid, fn)
        ordered.append(cid)
        return fn(), reads.list_journal(eng, cid)

    monkeypatch.setattr(reads, "with_listing", in_order)
    store.hook = hook
    view = reader.load_analysis("cb")
    assert done
    assert ordered  # the reader read in order
    assert view is not None
    assert set(view.file_analyses) == {"/f0.py", "/f1.py", "/f2.py", "/late.py"}


def test_a_real_hole_is_folded_around_with_a_warning(
    store: Store, caplog: pytest.LogCaptureFixture
) -> None:
    pm = PersistenceManager(store, retry=FAST, compaction="deferred")
    for n in range(3):
        pm.append_file_analyses("cb", {f"/f{n}.py": make_file_analysis(f"/f{n}.py")}, {})
    pm.compact("cb")
    pm.append_file_analyses("cb", {"/x.py": make_file_analysis("/x.py")}, {})
    pm.append_file_analyses("cb", {"/y.py": make_file_analysis("/y.py")}, {})
    store.delete("cb/_journal/" + seq_name(4))  # e.g. a lifecycle rule expired it
    with caplog.at_level(logging.WARNING, logger="documee_remote.manager"):
        view = pm.load_analysis("cb")
    assert view is not None
    assert "/y.py" in view.file_analyses
    assert "/x.py" not in view.file_analyses
    assert "lacks 1 delta(s) above its watermark 3" in caplog.text


def test_a_corrupt_pending_delta_stops_readers_with_its_key_and_is_never_folded_over(
    store: Store,
) -> None:
    pm = PersistenceManager(store, retry=FAST, compaction="deferred")
    pm.append_file_analyses("cb", {"/a.py": make_file_analysis("/a.py")}, {})
    store.put("cb/_journal/" + seq_name(2), b"{not json")
    with pytest.raises(CorruptObjectError) as info:
        pm.load_analysis("cb")
    assert info.value.key == "cb/_journal/" + seq_name(2)
    with pytest.raises(CorruptObjectError):
        pm.compact("cb")
    assert not store.exists("cb/analysis.json")
    report = pm.verify("cb")
    assert not report.ok
    assert [f.key for f in report.findings] == ["cb/_journal/" + seq_name(2)]


@pytest.mark.parametrize("mode", ["eager", "deferred"])
def test_threads_merging_at_once_lose_nothing(store: Store, mode: str) -> None:
    writers, merges = 6, 8
    errors: list[BaseException] = []

    def work(w: int) -> None:
        pm = PersistenceManager(
            store,
            retry=FAST,
            compaction=CompactionPolicy(mode, max_deltas=5),  # type: ignore[arg-type]
        )
        try:
            for m in range(merges):
                path = f"/w{w}/m{m}.py"
                pm.merge_file_analyses(
                    "cb", {path: make_file_analysis(path)}, {path: h(w * 100 + m)}
                )
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(w,)) for w in range(writers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    pm = PersistenceManager(store, retry=FAST)
    pm.compact("cb")
    final = pm.load_analysis("cb")
    assert final is not None
    expected = {f"/w{w}/m{m}.py" for w in range(writers) for m in range(merges)}
    assert set(final.file_analyses) == expected
    assert final.metrics.total_files == len(expected)
    assert journal.watermark(final) == writers * merges
    stored = codec.load_codebase_analysis(store.get("cb/analysis.json").data)
    assert set(stored.file_analyses) == expected
    assert pm.get_file_hashes("cb") == {
        f"/w{w}/m{m}.py": h(w * 100 + m) for w in range(writers) for m in range(merges)
    }
    assert pm.verify("cb").ok


# -- crashes during compaction -----------------------------------------------------------------


class Crash(BaseException):
    """A process dying: not an Exception, so no library code handles it."""


class CrashingStore(MemoryStore):
    """Dies on the first write matching ``when``, once armed."""

    def __init__(self) -> None:
        super().__init__()
        self.when: Callable[[str, str], bool] | None = None

    def _check(self, op: str, key: str) -> None:
        if self.when is not None and self.when(op, key):
            self.when = None
            raise Crash(f"{op} {key}")

    def _put(self, key: str, data: bytes, *, if_match: str | None, create_only: bool) -> str:
        self._check("put", key)
        return super()._put(key, data, if_match=if_match, create_only=create_only)

    def _delete(self, key: str, *, if_match: str | None) -> None:
        self._check("delete", key)
        super()._delete(key, if_match=if_match)


def nth(n: int, when: Callable[[str, str], bool]) -> Callable[[str, str], bool]:
    """``when``, from its ``n``-th match on."""
    seen = [0]

    def match(op: str, key: str) -> bool:
        seen[0] += when(op, key)
        return seen[0] >= n

    return match


CRASH_POINTS: dict[str, Callable[[str, str], bool]] = {
    "before-the-delta": lambda op, key: op == "put" and "/_journal/" in key,
    "before-the-commit": lambda op, key: op == "put" and key.endswith("/analysis.json"),
    "before-the-marker": lambda op, key: op == "put" and key.endswith(".folded"),
    # A merge that removes a file withdraws its hash before the commit ...
    "before-the-withdrawal": lambda op, key: op == "put" and key.endswith("/file_hashes.json"),
    # ... and publishes the new hashes after it.
    "before-the-hashes": nth(2, lambda op, key: op == "put" and key.endswith("/file_hashes.json")),
    "while-deleting-removed": lambda op, key: op == "delete" and "/file_" in key,
    "while-pruning": lambda op, key: op == "delete" and "/_journal/" in key,
}


@pytest.mark.parametrize("point", sorted(CRASH_POINTS))
def test_a_crash_anywhere_in_a_merge_or_compaction_breaks_no_invariant(point: str) -> None:
    store = CrashingStore()
    policy = CompactionPolicy(grace_seconds=0)
    pm = PersistenceManager(store, retry=FAST, compaction=policy)
    pm.merge_file_analyses(
        "cb",
        {p: make_file_analysis(p) for p in ("/a.py", "/b.py", "/c.py")},
        {"/a.py": h(1), "/b.py": h(1), "/c.py": h(1)},
    )
    pm.merge_file_analyses("cb", {"/d.py": make_file_analysis("/d.py")}, {"/d.py": h(1)})
    store.when = CRASH_POINTS[point]
    new_a = make_file_analysis("/a.py", score=0.99)
    with pytest.raises(Crash):
        pm.merge_file_analyses(
            "cb",
            {"/a.py": new_a},
            {"/a.py": h(2)},
            removed=["/b.py"],
        )
    assert store.when is None, "the crash point was never reached"

    survivor = PersistenceManager(store, retry=FAST, compaction=policy)
    view = survivor.load_analysis("cb")
    assert view is not None
    # Either the merge is in (its delta was written) or it is not; never half of it.
    merged = view.file_analyses.get("/a.py") == new_a
    assert merged == (point != "before-the-delta")
    assert ("/b.py" in view.file_analyses) == (not merged)
    assert {"/c.py", "/d.py"} <= set(view.file_analyses)
    # file_hashes.json never claims a file analysis.json lacks (removals are withdrawn
    # before the commit) ...
    stored = codec.load_codebase_analysis(store.get("cb/analysis.json").data)
    stored_hashes = codec.loads(store.get("cb/file_hashes.json").data)
    assert set(stored_hashes) <= set(stored.file_analyses)
    # ... but a crash between a commit and its hashes can leave a re-analysed file's old
    # hash (the file is still re-analysed unless its content goes back to exactly that).
    stale = {p for p, d in stored_hashes.items() if p == "/a.py" and d == h(1)}
    if stored.file_analyses["/a.py"] == new_a:
        assert stale <= {"/a.py"}
        assert point in ("before-the-hashes", "while-deleting-removed") or not stale
    # This library's readers never see a stale hash: the journal is laid over it.
    hashes = survivor.get_file_hashes("cb")
    assert set(hashes) <= set(view.file_analyses)
    assert hashes.get("/a.py") == (h(2) if merged else h(1))
    # The next compaction finishes the dead one's work, even with nothing left to fold.
    report = survivor.compact("cb")
    assert report.folded == (1 if point in ("before-the-commit", "before-the-withdrawal") else 0)
    assert codec.loads(store.get("cb/file_hashes.json").data) == hashes
    survivor.merge_file_analyses("cb", {"/e.py": make_file_analysis("/e.py")}, {"/e.py": h(1)})
    survivor.verify("cb", repair=True, grace_seconds=0)
    assert survivor.verify("cb", grace_seconds=0).findings == []
    final = codec.load_codebase_analysis(store.get("cb/analysis.json").data)
    assert set(final.file_analyses) == set(view.file_analyses) | {"/e.py"}
    assert journal.watermark(final) == max(
        int(k.rsplit("/", 1)[1].split(".")[0]) for k in store.list("cb/_journal/")
    )


def test_the_lambda_and_cli_report_is_json_ready() -> None:
    pm = PersistenceManager("memory://", compaction="deferred")
    pm.append_file_analyses("cb", {"/a.py": make_file_analysis("/a.py")}, {})
    doc = pm.compact("cb").to_dict()
    assert doc == {
        "codebase_id": "cb",
        "folded": 1,
        "watermark": 1,
        "analysis_written": True,
        "deleted": 0,
        "kept_young": 0,
        "attempts": 1,
        "conflicts": 0,
    }


def test_deltas_older_than_the_grace_period_are_pruned_by_gc(store: Store) -> None:
    pm = PersistenceManager(store, retry=FAST)
    for n in range(3):
        pm.merge_file_analyses("cb", {f"/f{n}.py": make_file_analysis(f"/f{n}.py")}, {})
    assert len(delta_names(store)) == 6  # three deltas and three markers, all young
    report = pm.gc("cb", grace_seconds=0)
    assert sorted(k.rsplit("/", 1)[1] for k in report.removed) == [
        seq_name(n, kind) for n in (1, 2) for kind in ("folded", "json")
    ]
    assert delta_names(store) == [seq_name(3, "folded"), seq_name(3)]


# -- graph updates travel in deltas ----------------------------------------------------------------


def _graph_part(path: str, imports: list[str], externals: dict[str, int]) -> GraphUpdate:
    return GraphUpdate(
        nodes={
            path: FileNode(
                file_path=path, imports=imports, imported_by=[], external_imports=list(externals)
            )
        },
        edges=[DependencyEdge(from_file=path, to_file=t, import_count=1) for t in imports],
        external_dependencies=externals,
    )


@pytest.mark.parametrize("mode", ["eager", "deferred"])
def test_graph_updates_are_folded_like_the_equivalent_graph_merge_function(
    store: Store, mode: str
) -> None:
    journaled = PersistenceManager(store, retry=FAST, compaction=mode)
    direct = PersistenceManager(MemoryStore(), retry=FAST)
    steps = [
        ({"/a.py": ["/b.py"]}, {"os": 1}, ()),
        ({"/b.py": ["/c.py", "/a.py"]}, {"re": 2}, ()),
        ({"/a.py": []}, {"os": 3}, ()),  # /a.py re-analysed: its old edge to /b.py goes
        ({}, {}, ("/b.py",)),  # /b.py removed: its node and outgoing edges go
    ]
    for files, externals, removed in steps:
        analyses = {p: make_file_analysis(p) for p in files}
        update = GraphUpdate()
        for path, imports in files.items():
            part = _graph_part(path, imports, externals)
            update.nodes.update(part.nodes)
            update.edges.extend(part.edges)
            update.external_dependencies.update(part.external_dependencies)

        def graph_merge(analysis: CodebaseAnalysis, merged: object, gone: object) -> None:
            journal.apply_graph_update(analysis, update, analyses, removed)

        journaled.merge_file_analyses("cb", analyses, {}, removed=removed, graph=update)
        direct.merge_file_analyses("cb", analyses, {}, removed=removed, merge=graph_merge)
    got = journaled.load_analysis("cb")
    want = direct.load_analysis("cb")
    assert got is not None
    assert want is not None
    assert got.dependency_graph == want.dependency_graph
    assert set(got.dependency_graph.nodes) == {"/a.py"}
    assert got.dependency_graph.edges == []
    assert got.dependency_graph.external_dependencies == {"os": 3, "re": 2}
    journaled.compact("cb")
    stored = codec.load_codebase_analysis(store.get("cb/analysis.json").data)
    assert stored.dependency_graph == want.dependency_graph


def test_codebase_wide_graph_parts_are_replaced_by_the_newest_merge() -> None:
    pm = PersistenceManager("memory://", compaction="deferred")
    cycle = CircularDependency(cycle=["/a.py", "/b.py"])
    pm.append_file_analyses("cb", {}, {}, graph=GraphUpdate(circular_dependencies=[cycle]))
    pm.append_file_analyses("cb", {}, {}, graph=GraphUpdate())  # not given: kept
    view = pm.load_analysis("cb")
    assert view is not None
    assert view.dependency_graph.circular_dependencies == [cycle]
    pm.append_file_analyses("cb", {}, {}, graph=GraphUpdate(circular_dependencies=[]))
    view = pm.load_analysis("cb")
    assert view is not None
    assert view.dependency_graph.circular_dependencies == []


@settings(max_examples=40, deadline=None)
@given(
    mark=st.integers(0, 2**40),
    fence=st.none() | st.integers(1, 99),
    decoy=st.text(max_size=30),
)
def test_the_watermark_is_found_without_parsing_the_analysis(
    mark: int, fence: int | None, decoy: str
) -> None:
    analysis = new_analysis("cb")
    # A file whose content mentions the bookkeeping key must not fool the peek.
    fa = make_file_analysis(f'/x\n  "documee_remote": {{"journal": 99}}{decoy}.py')
    analysis.file_analyses[fa.file_path] = fa
    if fence is not None:
        analysis.documee_remote = {"fence": fence}  # type: ignore[attr-defined]
    if mark:
        journal.set_watermark(analysis, mark)
    raw = codec.dump_codebase_analysis(analysis)
    assert journal.peek_watermark(raw) == journal.watermark(analysis) == mark


# -- long journals are listed from the last watermark seen -------------------------------------


class ListingSizes(MemoryStore):
    """Records how many objects each journal listing returned."""

    def __init__(self) -> None:
        super().__init__()
        self.sizes: list[int] = []

    def list_meta(  # type: ignore[override]
        self, prefix: str = "", *, start_after: str | None = None
    ) -> Iterator[ObjectMeta]:
        found = list(super().list_meta(prefix, start_after=start_after))
        if "/_journal/" in prefix:
            self.sizes.append(len(found))
        return iter(found)


def test_listings_stay_short_however_many_folded_deltas_the_grace_period_keeps() -> None:
    store = ListingSizes()
    pm = PersistenceManager(store, retry=FAST)  # grace 30 min: nothing is pruned
    for n in range(40):
        pm.merge_file_analyses("cb", {f"/f{n}.py": make_file_analysis(f"/f{n}.py")}, {})
    assert len(delta_names(store)) == 80
    store.sizes.clear()
    pm.merge_file_analyses("cb", {"/g.py": make_file_analysis("/g.py")}, {})
    view = pm.load_analysis("cb")
    assert view is not None
    assert len(view.file_analyses) == 41
    assert store.sizes
    assert max(store.sizes) <= 4  # the delta and marker at the floor, and what came since


def test_a_manager_with_an_old_floor_sees_a_codebase_begun_again() -> None:
    store = MemoryStore()
    old = PersistenceManager(store, retry=FAST, compaction="deferred")
    for n in range(5):
        old.merge_file_analyses("cb", {f"/f{n}.py": make_file_analysis(f"/f{n}.py")}, {})
    old.compact("cb")
    assert old.engine.floors["cb"] == 5
    other = PersistenceManager(store, retry=FAST, compaction="deferred")
    assert other.delete_analysis("cb") is True
    other.append_file_analyses("cb", {"/new.py": make_file_analysis("/new.py")}, {})
    view = old.load_analysis("cb")  # its floor (5) is gone: it lists everything
    assert view is not None
    assert list(view.file_analyses) == ["/new.py"]
    report = old.append_file_analyses("cb", {"/more.py": make_file_analysis("/more.py")}, {})
    assert report.seq == 2


def test_compaction_prunes_below_its_floor_every_sixteen_seqs() -> None:
    store = MemoryStore()
    pm = PersistenceManager(store, retry=FAST)  # grace 30 min: nothing is pruned
    for n in range(20):
        pm.merge_file_analyses("cb", {f"/f{n}.py": make_file_analysis(f"/f{n}.py")}, {})
    pm.compaction = CompactionPolicy(grace_seconds=0)  # the deltas are now all "old"
    for n in range(20, 31):
        pm.merge_file_analyses("cb", {f"/f{n}.py": make_file_analysis(f"/f{n}.py")}, {})
    # Listings start at the floor, so the first 19 deltas and markers are out of sight ...
    assert seq_name(1) in delta_names(store)
    assert journal.watermark(pm.load_analysis("cb")) == 31
    pm.merge_file_analyses("cb", {"/f31.py": make_file_analysis("/f31.py")}, {})
    # ... until the watermark reaches 32, a multiple of 16: then the whole journal is listed.
    assert delta_names(store) == [seq_name(32, "folded"), seq_name(32)]


# -- group commit ------------------------------------------------------------------------------


def test_an_eager_append_lets_the_newest_writer_compact_for_it() -> None:
    store = HookStore()
    pm = PersistenceManager(store, retry=FAST)
    newer = PersistenceManager(unhooked(store), retry=FAST)
    fired: list[int] = []

    def hook(op: str, key: str) -> None:
        # Right after our delta exists, a newer writer appends and compacts both.
        if op == "list" and store.exists("cb/_journal/" + seq_name(1)) and not fired:
            fired.append(1)
            newer.append_file_analyses("cb", {"/b.py": make_file_analysis("/b.py")}, {"/b.py": H})

    store.hook = hook
    report = pm.append_file_analyses("cb", {"/a.py": make_file_analysis("/a.py")}, {"/a.py": H})
    assert fired
    assert report.seq == 1
    assert report.folded is True
    assert report.compaction is None  # the newer writer's compaction did it
    stored = codec.load_codebase_analysis(store.get("cb/analysis.json").data)
    assert set(stored.file_analyses) == {"/a.py", "/b.py"}
    assert journal.watermark(stored) == 2
    assert codec.loads(store.get("cb/file_hashes.json").data) == {"/a.py": H, "/b.py": H}


def test_an_eager_append_compacts_itself_when_the_newest_writer_does_not() -> None:
    store = MemoryStore()
    policy = CompactionPolicy(group_wait_seconds=0.3)
    pm = PersistenceManager(store, retry=FAST, compaction=policy)
    lazy = PersistenceManager(store, retry=FAST, compaction="deferred")
    pm.append_file_analyses("cb", {"/a.py": make_file_analysis("/a.py")}, {})

    # A deferred writer appends right after our delta, and never compacts.
    real_put = store._put

    def put(key: str, data: bytes, *, if_match: str | None, create_only: bool) -> str:
        etag = real_put(key, data, if_match=if_match, create_only=create_only)
        if key == "cb/_journal/" + seq_name(2):
            lazy.append_file_analyses("cb", {"/lazy.py": make_file_analysis("/lazy.py")}, {})
        return etag

    store._put = put  # type: ignore[method-assign]
    started = time.monotonic()
    report = pm.append_file_analyses("cb", {"/b.py": make_file_analysis("/b.py")}, {})
    waited = time.monotonic() - started
    assert report.seq == 2
    assert report.compaction is not None
    assert report.compaction.watermark == 3  # it folded the lazy writer's delta too
    assert waited >= 0.3
    stored = codec.load_codebase_analysis(store.get("cb/analysis.json").data)
    assert set(stored.file_analyses) == {"/a.py", "/b.py", "/lazy.py"}


def test_eight_writers_appending_at_once_rewrite_analysis_json_once() -> None:
    """Group commit: when every writer's delta exists before any compaction starts (held
    so here, to be deterministic), only the newest writer rewrites analysis.json."""
    store = CountingStore()
    writes: list[str] = []
    deltas_exist = threading.Barrier(8, timeout=20)
    real_put = store._put

    def put(key: str, data: bytes, *, if_match: str | None, create_only: bool) -> str:
        etag = real_put(key, data, if_match=if_match, create_only=create_only)
        if key == "cb/analysis.json":
            writes.append(key)
        if re.fullmatch(r"cb/_journal/\d{20}\.json", key):
            deltas_exist.wait()
        return etag

    store._put = put  # type: ignore[method-assign]
    reports: list[AppendReport] = []

    def work(w: int) -> None:
        pm = PersistenceManager(store, retry=FAST)
        files = {f"/w{w}/f{i}.py": make_file_analysis(f"/w{w}/f{i}.py") for i in range(20)}
        reports.append(pm.append_file_analyses("cb", files, dict.fromkeys(files, H)))

    threads = [threading.Thread(target=work, args=(w,)) for w in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(reports) == 8
    assert all(r.folded for r in reports)
    assert [r.seq for r in reports if r.compaction is not None] == [8]
    assert writes == ["cb/analysis.json"]
    stored = codec.load_codebase_analysis(store.get("cb/analysis.json").data)
    assert len(stored.file_analyses) == 160
    assert journal.watermark(stored) == 8
    assert len(codec.loads(store.get("cb/file_hashes.json").data)) == 160
