"""The delta journal: format, folding, compaction policies, pruning, and the races and
crashes the protocol in ``documee_remote.journal`` is built to survive."""

from __future__ import annotations

import json
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

from documee_remote import AppendReport, PersistenceManager, codec, journal, layout
from documee_remote._engine import folder, journal_io, reads
from documee_remote._engine.context import Engine
from documee_remote.bookkeeping import Folded, recorded_folded
from documee_remote.errors import CorruptObjectError, InvalidKeyError, TransientError
from documee_remote.journal import CompactionPolicy, Delta, GraphUpdate, JournalListing
from documee_remote.merge import new_analysis
from documee_remote.models import (
    CircularDependency,
    CodebaseAnalysis,
    DependencyEdge,
    FileAnalysis,
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


def commit_name(n: int) -> str:
    return f"c{n:020d}.folded"


NAME = re.compile(r"w\d{13}-[0-9a-f]{16}")


def named(store: Store, cid: str = "cb") -> list[str]:
    """The named deltas in a codebase's journal, in name (fold) order."""
    return [n[: -len(".json")] for n in delta_names(store, cid) if NAME.fullmatch(n[:-5])]


def folded_of(store: Store, cid: str = "cb") -> Folded:
    """The folded map (and commit counter, floor) the stored analysis.json records."""
    return recorded_folded(stored_analysis(store, cid))


def write_legacy_delta(
    store: Store,
    seq: int,
    files: dict[str, str | None],
    cid: str = "cb",
    *,
    removed: tuple[str, ...] = (),
) -> None:
    """A delta as a version before named deltas wrote it: per-file objects, then ``<seq>.json``."""
    bodies = {p: codec.dump_file_analysis(make_file_analysis(p)) for p in files}
    for path, body in bodies.items():
        store.put(layout.file_analysis_key(cid, path), body)
    hashes = {p: d for p, d in files.items() if d is not None}
    store.put(
        journal.delta_key(cid, seq),
        journal.encode_delta(cid, bodies, removed=removed, file_hashes=hashes),
        if_none_match="*",
    )


def write_legacy_journal(store: Store, seqs: int, mark: int, cid: str = "cb") -> None:
    """A legacy journal: deltas 1..``seqs`` (delta n analyses ``/l<n>.py``, hash h(n)),
    folded into analysis.json up to the watermark ``mark`` with its marker and hashes,
    as an old version left it; the ones above ``mark`` pending."""
    for seq in range(1, seqs + 1):
        write_legacy_delta(store, seq, {f"/l{seq}.py": h(seq)}, cid)
    if not mark:
        return
    analysis = new_analysis(cid)
    deltas = [
        (
            seq,
            journal.decode_delta(
                store.get(journal.delta_key(cid, seq)).data, key="k", codebase_id=cid
            ),
        )
        for seq in range(1, mark + 1)
    ]
    journal.fold(analysis, deltas)
    store.put(layout.analysis_key(cid), codec.dump_codebase_analysis(analysis))
    store.put(journal.marker_key(cid, mark), journal.encode_marker(mark))
    store.put(
        layout.file_hashes_key(cid),
        codec.dump_file_hashes({f"/l{seq}.py": h(seq) for seq in range(1, mark + 1)}),
    )


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
        # Each merge is its own commit, recorded in the folded map; no legacy watermark.
        folded = folded_of(store)
        assert folded.commit == n + 1
        assert dict(folded.names) == {name: i + 1 for i, name in enumerate(named(store))}
        assert "journal" not in raw["documee_remote"]  # type: ignore[operator]
    # Deltas and markers younger than the grace period (30 minutes) are all kept.
    assert len(named(store)) == 3
    assert delta_names(store) == [
        "_folder.json",
        *(commit_name(n) for n in (1, 2, 3)),
        *(f"{name}.json" for name in named(store)),
    ]
    assert pm.get_file_hashes("cb") == {f"/f{n}.py": h(n) for n in range(3)}
    assert codec.loads(store.get("cb/file_hashes.json").data) == pm.get_file_hashes("cb")


def test_compaction_prunes_folded_deltas_past_the_grace_period(store: Store) -> None:
    pm = PersistenceManager(store, retry=FAST, compaction=CompactionPolicy(grace_seconds=0))
    for n in range(4):
        pm.merge_file_analyses("cb", {f"/f{n}.py": make_file_analysis(f"/f{n}.py")}, {})
    # Every folded delta goes (no seq to keep visible), and every marker but the newest.
    assert delta_names(store) == ["_folder.json", commit_name(4)]
    assert folded_of(store).commit == 4
    pm.merge_file_analyses("cb", {"/g.py": make_file_analysis("/g.py")}, {})
    assert delta_names(store) == ["_folder.json", commit_name(5)]
    analysis = pm.load_analysis("cb")
    assert analysis is not None
    assert len(analysis.file_analyses) == 5


def test_young_folded_deltas_are_kept_and_counted(store: Store) -> None:
    pm = PersistenceManager(store, retry=FAST, compaction="deferred")
    for n in range(3):
        pm.append_file_analyses("cb", {f"/f{n}.py": make_file_analysis(f"/f{n}.py")}, {})
    report = pm.compact("cb")
    assert (report.folded, report.commit, report.deleted, report.kept_young) == (3, 1, 0, 3)
    assert report.watermark == 0  # no legacy delta
    assert len(named(store)) == 3
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
    # Two per-file PUTs, one listing (the policy's estimate of what is pending), one PUT of
    # the delta; analysis.json is neither read nor written.
    assert store.ops == {"PUT": 3, "LIST": 1}
    assert NAME.fullmatch(report.delta)
    assert report.delta in named(store)
    assert report.compaction is None
    assert folded_of(store).commit == 1
    assert report.delta not in folded_of(store).names
    # Readers of this library see it at once; analysis.json after compaction.
    view = pm.load_analysis("cb")
    assert view is not None
    assert "/new.py" in view.file_analyses
    assert view.file_analyses["/f1.py"] == changed
    assert pm.get_file_hashes("cb") == {"/f1.py": h(1), "/new.py": h(2)}
    assert "/new.py" not in stored_analysis(store)["file_analyses"]  # type: ignore[operator]
    report2 = pm.compact("cb")
    assert (report2.folded, report2.commit, report2.analysis_written) == (1, 2, True)
    assert folded_of(store).names[report.delta] == 2
    assert "/new.py" in stored_analysis(store)["file_analyses"]  # type: ignore[operator]
    assert codec.loads(store.get("cb/file_hashes.json").data) == {"/f1.py": h(1), "/new.py": h(2)}
    assert pm.compact("cb").analysis_written is False  # nothing pending: nothing written


def test_an_eager_merge_of_two_files_stays_within_fifteen_requests() -> None:
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
    # Measured (one writer, nothing else pending): LIST(names) || 2 PUT(files), PUT delta,
    # GET+PUT folder (take), LIST, GET analysis, PUT analysis, GET+PUT hashes, HEAD
    # analysis, PUT commit marker, LIST (nothing pending), PUT folder (release): 15. (The
    # dense-seq journal took 10: it had no folder record and no look for more work.)
    assert store.total <= 15, store.ops
    assert store.ops["PUT"] <= 8, store.ops


def test_deferred_compaction_runs_when_the_journal_passes_its_threshold(store: Store) -> None:
    pm = PersistenceManager(
        store, retry=FAST, compaction=CompactionPolicy("deferred", max_deltas=3)
    )
    reports = [
        pm.append_file_analyses("cb", {f"/f{n}.py": make_file_analysis(f"/f{n}.py")}, {})
        for n in range(4)
    ]
    assert [r.compaction is not None for r in reports] == [False, False, True, False]
    folded = folded_of(store)
    assert folded.commit == 1
    assert set(folded.names) == {r.delta for r in reports[:3]}
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
    # The transaction's commit folded the pending delta and recorded it as commit 1.
    assert dict(folded_of(store).names) == dict.fromkeys(named(store), 1)
    assert len(named(store)) == 1
    assert folded_of(store).commit == 1
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
            try:
                hook(op, key)
            finally:
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


def test_a_name_taken_by_another_writer_is_never_overwritten_another_is_picked() -> None:
    store = HookStore()
    pm = PersistenceManager(store, retry=FAST, compaction="deferred")
    rival_body = journal.encode_delta(
        "cb", {"/r.py": codec.dump_file_analysis(make_file_analysis("/r.py"))}
    )
    taken: list[str] = []

    def hook(op: str, key: str) -> None:
        # Another writer's delta lands under the very name ours is about to take.
        if op == "put" and NAME.search(key) and not taken:
            taken.append(key.rsplit("/", 1)[1][:-5])
            unhooked(store).put(key, rival_body, if_none_match="*")

    store.hook = hook
    report = pm.append_file_analyses("cb", {"/m.py": make_file_analysis("/m.py")}, {})
    assert taken
    assert report.delta != taken[0]
    assert report.stats.conflicts == 1
    assert named(store) == sorted([taken[0], report.delta])
    assert store.get(journal.named_key("cb", taken[0])).data == rival_body  # not overwritten
    view = pm.load_analysis("cb")
    assert view is not None
    assert set(view.file_analyses) == {"/r.py", "/m.py"}


def test_a_name_grown_older_than_a_quarter_of_the_grace_period_is_renamed_before_its_attempt() -> (
    None
):
    store = HookStore()
    grace = 0.4  # a name older than 0.1 s may not be put any more
    pm = PersistenceManager(
        store, retry=FAST, compaction=CompactionPolicy("deferred", grace_seconds=grace)
    )
    tried: list[str] = []

    def hook(op: str, key: str) -> None:
        if op == "put" and NAME.search(key):
            tried.append(key.rsplit("/", 1)[1][:-5])
            if len(tried) == 1:
                time.sleep(grace / 4 + 0.05)  # the first attempt hangs, then fails
                raise TransientError("connection reset")

    store.hook = hook
    report = pm.append_file_analyses("cb", {"/m.py": make_file_analysis("/m.py")}, {})
    assert len(tried) == 2
    assert tried[1] != tried[0]
    assert journal.name_ms(tried[1]) - journal.name_ms(tried[0]) >= grace / 4 * 1000
    assert report.delta == tried[1]
    assert named(store) == [tried[1]]


def unhooked(store: MemoryStore) -> MemoryStore:
    """The same objects as ``store``, without its hooks (for a rival writer)."""
    view = MemoryStore()
    view._objects, view._lock = store._objects, store._lock
    return view


def test_a_reader_whose_analysis_predates_a_pruning_compaction_reads_again(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The hole rule (legacy journals): a listing that shows a compaction's deletions, with
    an analysis.json read from before that compaction, is detected and read again, never
    folded short."""
    store = HookStore()
    write_legacy_journal(store, 3, 0)  # three legacy deltas pending, no analysis.json
    compactor = PersistenceManager(
        unhooked(store), retry=FAST, compaction=CompactionPolicy(grace_seconds=0)
    )
    done: list[int] = []

    def hook(op: str, key: str) -> None:
        # After the reader's GET of analysis.json (absent: watermark 0) and before its
        # listing: one more merge (a named delta), and a compaction that folds legacy 1..3
        # and the named delta, and prunes 1..2 (3, at the watermark, stays).
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
    assert set(view.file_analyses) == {"/l1.py", "/l2.py", "/l3.py", "/late.py"}
    assert delta_names(store)[:2] == [seq_name(3, "folded"), seq_name(3)]
    assert journal.watermark(codec.load_codebase_analysis(store.get("cb/analysis.json").data)) == 3


def test_a_real_hole_is_folded_around_with_a_warning(
    store: Store, caplog: pytest.LogCaptureFixture
) -> None:
    # A legacy journal: 1..3 folded (watermark 3), 4 and 5 pending; and a named delta.
    write_legacy_journal(store, 5, 3)
    pm = PersistenceManager(store, retry=FAST, compaction="deferred")
    pm.append_file_analyses("cb", {"/n.py": make_file_analysis("/n.py")}, {})
    store.delete("cb/_journal/" + seq_name(4))  # e.g. a lifecycle rule expired it
    with caplog.at_level(logging.WARNING, logger="documee_remote.manager"):
        view = pm.load_analysis("cb")
    assert view is not None
    assert {"/l5.py", "/n.py"} <= set(view.file_analyses)
    assert "/l4.py" not in view.file_analyses
    assert "lacks 1 delta(s) above its watermark 3" in caplog.text
    report = pm.compact("cb")
    assert (report.folded, report.watermark, report.commit) == (2, 5, 1)


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
    # Every merge's delta (none pruned within the grace period) is in the folded map,
    # each folded by exactly one commit, and nothing is pending.
    stored = codec.load_codebase_analysis(store.get("cb/analysis.json").data)
    folded = recorded_folded(stored.__pydantic_extra__)
    assert len(named(store)) == writers * merges
    assert set(folded.names) == set(named(store))
    assert 1 <= folded.commit <= writers * merges
    assert set(folded.names.values()) <= set(range(1, folded.commit + 1))
    assert journal.watermark(stored) == 0
    assert set(stored.file_analyses) == expected
    assert pm.get_file_hashes("cb") == {
        f"/w{w}/m{m}.py": h(w * 100 + m) for w in range(writers) for m in range(merges)
    }
    assert pm.verify("cb").ok


# -- crashes during compaction -----------------------------------------------------------------


class Crash(BaseException):
    """A process dying: not an Exception, so no library code handles it."""


class CrashingStore(MemoryStore):
    """Dies on the first write matching ``when``, once armed, and stays dead: every later
    request of this store (the dead process's) raises too, so nothing it would have
    done afterwards (freeing the folder record) happens."""

    def __init__(self) -> None:
        super().__init__()
        self.when: Callable[[str, str], bool] | None = None
        self.dead = False

    def _check(self, op: str, key: str) -> None:
        if self.dead:
            raise Crash(f"dead: {op} {key}")
        if self.when is not None and self.when(op, key):
            self.when, self.dead = None, True
            raise Crash(f"{op} {key}")

    def _get(self, key: str):  # type: ignore[no-untyped-def]
        self._check("get", key)
        return super()._get(key)

    def _head(self, key: str) -> ObjectMeta:
        self._check("head", key)
        return super()._head(key)

    def _list_meta(self, prefix: str) -> Iterator[ObjectMeta]:
        self._check("list", prefix)
        return super()._list_meta(prefix)

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


def _folder_put(op: str, key: str) -> bool:
    return op == "put" and key.endswith("/_journal/_folder.json")


class _AfterMarker:
    """A listing of the journal once a commit marker was written (the folder's look
    for more work)."""

    def __init__(self) -> None:
        self.marked = False

    def __call__(self, op: str, key: str) -> bool:
        if op == "put" and key.endswith(".folded"):
            self.marked = True
        return self.marked and op == "list" and "/_journal/" in key


_after_marker = _AfterMarker()  # one test uses it, once, like nth()


CRASH_POINTS: dict[str, Callable[[str, str], bool]] = {
    "before-the-delta": lambda op, key: op == "put" and bool(NAME.search(key)),
    # The delta landed; the writer dies before it takes the folder record.
    "before-the-folder": _folder_put,
    "before-the-commit": lambda op, key: op == "put" and key.endswith("/analysis.json"),
    # A merge that removes a file withdraws its hash before the commit ...
    "before-the-withdrawal": lambda op, key: op == "put" and key.endswith("/file_hashes.json"),
    # ... and publishes the new hashes after it.
    "before-the-hashes": nth(2, lambda op, key: op == "put" and key.endswith("/file_hashes.json")),
    "while-deleting-removed": lambda op, key: op == "delete" and "/file_" in key,
    "before-the-commit-marker": lambda op, key: op == "put" and key.endswith(".folded"),
    "while-pruning": lambda op, key: op == "delete" and "/_journal/" in key,
    # Leading: committed, published and marked, dies while it lists for more work
    # (the record still held) ...
    "while-leading": _after_marker,
    # ... or when that listing found nothing pending, before it frees the record.
    "before-the-release": nth(2, _folder_put),
}


@pytest.mark.parametrize("point", sorted(CRASH_POINTS))
def test_a_crash_anywhere_in_a_merge_or_compaction_breaks_no_invariant(point: str) -> None:
    store = CrashingStore()
    policy = CompactionPolicy(grace_seconds=0, group_wait_seconds=0.2)
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

    alive = unhooked(store)  # another process, on the same objects
    survivor = PersistenceManager(alive, retry=FAST, compaction=policy)
    view = survivor.load_analysis("cb")
    assert view is not None
    # Either the merge is in (its delta was written) or it is not; never half of it.
    merged = view.file_analyses.get("/a.py") == new_a
    assert merged == (point != "before-the-delta")
    assert ("/b.py" in view.file_analyses) == (not merged)
    assert {"/c.py", "/d.py"} <= set(view.file_analyses)
    # file_hashes.json never claims a file analysis.json lacks (removals are withdrawn
    # before the commit) ...
    stored = codec.load_codebase_analysis(alive.get("cb/analysis.json").data)
    stored_hashes = codec.loads(alive.get("cb/file_hashes.json").data)
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
    pending = ("before-the-folder", "before-the-commit", "before-the-withdrawal")
    assert report.folded == (1 if point in pending else 0)
    assert codec.loads(alive.get("cb/file_hashes.json").data) == hashes
    # A new merge folds through a folder record the dead writer may still hold.
    survivor.merge_file_analyses("cb", {"/e.py": make_file_analysis("/e.py")}, {"/e.py": h(1)})
    assert folder.read_record(survivor.engine, "cb").holder is None
    survivor.verify("cb", repair=True, grace_seconds=0)
    assert survivor.verify("cb", grace_seconds=0).findings == []
    final = codec.load_codebase_analysis(alive.get("cb/analysis.json").data)
    assert set(final.file_analyses) == set(view.file_analyses) | {"/e.py"}
    # Nothing pending, every commit's hashes published, no legacy watermark.
    listing = journal.parse_listing("cb", alive.list_meta("cb/_journal/"))
    folded = recorded_folded(final.__pydantic_extra__)
    assert listing.pending_named(folded) == []
    assert listing.published == folded.commit
    # Each merge was folded by exactly one commit, of its own (no delta twice, none lost).
    assert folded.commit == 3 + merged
    assert sorted(folded.names.values()) == list(range(1, folded.commit + 1))
    assert journal.watermark(final) == 0


def test_the_lambda_and_cli_report_is_json_ready() -> None:
    pm = PersistenceManager("memory://", compaction="deferred")
    pm.append_file_analyses("cb", {"/a.py": make_file_analysis("/a.py")}, {})
    doc = pm.compact("cb").to_dict()
    assert doc == {
        "codebase_id": "cb",
        "folded": 1,
        "watermark": 0,
        "commit": 1,
        "analysis_written": True,
        "deleted": 0,
        "kept_young": 1,
        "attempts": 1,
        "conflicts": 0,
    }


def test_deltas_older_than_the_grace_period_are_pruned_by_gc(store: Store) -> None:
    pm = PersistenceManager(store, retry=FAST)
    for n in range(3):
        pm.merge_file_analyses("cb", {f"/f{n}.py": make_file_analysis(f"/f{n}.py")}, {})
    folded = named(store)
    # A pending delta (appended, not folded) is never pruned, however old.
    lazy = PersistenceManager(store, retry=FAST, compaction="deferred")
    pending = lazy.append_file_analyses("cb", {"/p.py": make_file_analysis("/p.py")}, {}).delta
    assert len(delta_names(store)) == 8  # four deltas, three markers, the folder: all young
    report = pm.gc("cb", grace_seconds=0)
    assert sorted(k.rsplit("/", 1)[1] for k in report.removed) == sorted(
        [commit_name(1), commit_name(2), *(f"{n}.json" for n in folded)]
    )
    assert delta_names(store) == ["_folder.json", commit_name(3), f"{pending}.json"]
    view = pm.load_analysis("cb")
    assert view is not None
    assert len(view.file_analyses) == 4


def test_gc_prunes_a_legacy_journal_below_its_watermark_and_never_a_pending_delta(
    store: Store,
) -> None:
    write_legacy_journal(store, 4, 3)  # 1..3 folded, 4 pending
    pm = PersistenceManager(store, retry=FAST)
    report = pm.gc("cb", grace_seconds=0)
    assert sorted(k.rsplit("/", 1)[1] for k in report.removed) == [seq_name(1), seq_name(2)]
    assert delta_names(store) == [seq_name(3, "folded"), seq_name(3), seq_name(4)]
    view = pm.load_analysis("cb")
    assert view is not None
    assert set(view.file_analyses) == {f"/l{n}.py" for n in range(1, 5)}


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


def test_legacy_listings_stay_short_however_many_folded_deltas_the_grace_period_keeps() -> None:
    store = ListingSizes()
    write_legacy_journal(store, 40, 40)  # 40 folded legacy deltas, all young
    pm = PersistenceManager(store, retry=FAST)  # grace 30 min: nothing is pruned
    assert pm.load_analysis("cb") is not None  # lists it all once: the floor is now 40
    store.sizes.clear()
    pm.merge_file_analyses("cb", {"/g.py": make_file_analysis("/g.py")}, {})
    view = pm.load_analysis("cb")
    assert view is not None
    assert len(view.file_analyses) == 41
    assert store.sizes
    # The legacy delta and marker at the floor, the named delta, its commit marker and
    # the folder record: never the 39 folded legacy deltas below the floor.
    assert max(store.sizes) <= 5, store.sizes
    assert len(delta_names(store)) == 41 + 3


def test_an_eager_writer_names_its_delta_from_a_listing_of_the_newest_names_only() -> None:
    store = ListingSizes()
    pm = PersistenceManager(store, retry=FAST)  # grace 30 min: nothing is pruned
    for n in range(20):
        pm.merge_file_analyses("cb", {f"/f{n}.py": make_file_analysis(f"/f{n}.py")}, {})
    assert len(named(store)) == 20
    store.sizes.clear()
    pm.merge_file_analyses("cb", {"/g.py": make_file_analysis("/g.py")}, {})
    # The naming listing starts at this clock's ms: none of the 20 folded deltas (the
    # compaction's own listings do hold every named delta the grace period keeps).
    assert store.sizes[0] <= 1, store.sizes


def test_a_manager_with_an_old_floor_sees_a_codebase_begun_again() -> None:
    store = MemoryStore()
    write_legacy_journal(store, 5, 0)  # five pending legacy deltas
    old = PersistenceManager(store, retry=FAST, compaction="deferred")
    assert old.compact("cb").watermark == 5
    assert old.engine.floors["cb"] == 5
    other = PersistenceManager(store, retry=FAST, compaction="deferred")
    assert other.delete_analysis("cb") is True
    other.append_file_analyses("cb", {"/new.py": make_file_analysis("/new.py")}, {})
    view = old.load_analysis("cb")  # its floor (5) is gone: it lists everything
    assert view is not None
    assert list(view.file_analyses) == ["/new.py"]
    report = old.append_file_analyses("cb", {"/more.py": make_file_analysis("/more.py")}, {})
    assert named(store) == sorted(named(store))
    assert named(store)[-1] == report.delta  # named after the one it listed
    view = old.load_analysis("cb")
    assert view is not None
    assert list(view.file_analyses) == ["/new.py", "/more.py"]


def test_compaction_prunes_a_legacy_journal_below_its_floor_every_sixteen_seqs() -> None:
    store = MemoryStore()
    write_legacy_journal(store, 20, 20)
    pm = PersistenceManager(store, retry=FAST, compaction=CompactionPolicy(grace_seconds=0))
    assert pm.load_analysis("cb") is not None  # the floor is now 20
    # Old writers (a version before named deltas) go on appending legacy deltas.
    for seq in range(21, 32):
        write_legacy_delta(store, seq, {f"/l{seq}.py": h(seq)})
    assert pm.compact("cb").watermark == 31
    # Listings start at the floor, so the first 19 deltas are out of sight ...
    assert seq_name(1) in delta_names(store)
    assert seq_name(20) not in delta_names(store)
    write_legacy_delta(store, 32, {"/l32.py": h(32)})
    assert pm.compact("cb").watermark == 32
    # ... until the watermark reaches 32, a multiple of 16: then the whole journal is listed.
    assert delta_names(store) == [seq_name(32, "folded"), seq_name(32)]
    view = pm.load_analysis("cb")
    assert view is not None
    assert len(view.file_analyses) == 32


# -- group commit ------------------------------------------------------------------------------


def _take_record(pm: PersistenceManager, holder: str | None, cycle: int, names: set[str]) -> None:
    """Write the folder record as another writer would (over whatever is there)."""
    record = folder.FolderRecord(holder, cycle, frozenset(names), None)
    current = folder.read_record(pm.engine, "cb")
    folder.write_record(pm.engine, "cb", record, over=current.etag)


class HeldRelease(MemoryStore):
    """The same objects as a store; a folder that releases its record waits for ``go``."""

    def __init__(self, store: MemoryStore) -> None:
        super().__init__()
        self._objects, self._lock = store._objects, store._lock
        self.releasing, self.go = threading.Event(), threading.Event()

    def _put(self, key: str, data: bytes, *, if_match: str | None, create_only: bool) -> str:
        if key.endswith("/_folder.json") and b'"holder":null' in data:
            self.releasing.set()
            assert self.go.wait(10)
        return super()._put(key, data, if_match=if_match, create_only=create_only)


def test_an_eager_append_is_folded_by_the_writer_holding_the_folder() -> None:
    store = HookStore()
    pm = PersistenceManager(store, retry=FAST)
    held = HeldRelease(store)
    other = PersistenceManager(held, retry=FAST)
    fired: list[str] = []
    done: list[AppendReport] = []

    def hook(op: str, key: str) -> None:
        # Right after our delta exists, before we look at the folder record: another
        # writer appends, takes the folder and folds both deltas; we read the record
        # while it still holds it (its one fold found nothing more, it is about to
        # free the record), then the freed record names what it folded.
        if op == "get" and key.endswith("/_folder.json") and not fired:
            fired.append(key)
            threading.Thread(
                target=lambda: done.append(
                    other.append_file_analyses(
                        "cb", {"/b.py": make_file_analysis("/b.py")}, {"/b.py": H}
                    )
                )
            ).start()
            assert held.releasing.wait(10)
            threading.Timer(0.05, held.go.set).start()

    store.hook = hook
    started = time.monotonic()
    report = pm.append_file_analyses("cb", {"/a.py": make_file_analysis("/a.py")}, {"/a.py": H})
    held.go.set()
    assert fired
    assert time.monotonic() - started < 2  # no group wait: the record names our delta
    assert report.folded is True
    assert report.compaction is None  # the other writer's compaction did it
    deadline = time.monotonic() + 10
    while not done and time.monotonic() < deadline:
        time.sleep(0.01)
    assert done
    assert done[0].compaction is not None
    assert done[0].compaction.folded == 2
    record = folder.read_record(pm.engine, "cb")
    assert record.holder is None  # freed once nothing was pending
    stored = codec.load_codebase_analysis(store.get("cb/analysis.json").data)
    assert set(stored.file_analyses) == {"/a.py", "/b.py"}
    folded = recorded_folded(stored.__pydantic_extra__)
    assert folded.commit == 1
    assert dict(folded.names) == dict.fromkeys(named(store), 1)
    assert codec.loads(store.get("cb/file_hashes.json").data) == {"/a.py": H, "/b.py": H}


def test_a_late_waiter_that_finds_the_folder_free_writes_nothing() -> None:
    """The freed record still names what the last fold held: a waiter that looks only
    then finds its delta there and is done, without taking the folder."""
    store = HookStore()
    pm = PersistenceManager(store, retry=FAST)
    other = PersistenceManager(unhooked(store), retry=FAST)
    fired: list[str] = []

    def hook(op: str, key: str) -> None:
        # Right after our delta exists, before we look at the folder record: another
        # writer appends, takes the folder and folds both deltas.
        if op == "get" and key.endswith("/_folder.json") and not fired:
            fired.append(key)
            other.append_file_analyses("cb", {"/b.py": make_file_analysis("/b.py")}, {"/b.py": H})

    store.hook = hook
    started = time.monotonic()
    report = pm.append_file_analyses("cb", {"/a.py": make_file_analysis("/a.py")}, {"/a.py": H})
    assert fired
    assert time.monotonic() - started < 2  # no waiting
    assert report.folded is True
    assert report.compaction is None  # another writer's fold did the work
    record = folder.read_record(pm.engine, "cb")
    assert record.holder is None
    assert report.delta in record.folded
    stored = codec.load_codebase_analysis(store.get("cb/analysis.json").data)
    assert set(stored.file_analyses) == {"/a.py", "/b.py"}
    folded = recorded_folded(stored.__pydantic_extra__)
    assert folded.commit == 1
    assert dict(folded.names) == dict.fromkeys(named(store), 1)
    assert codec.loads(store.get("cb/file_hashes.json").data) == {"/a.py": H, "/b.py": H}


def test_a_waiter_is_done_once_the_folder_cycle_is_two_past_the_first_it_saw() -> None:
    """The record lists only the last cycle's deltas: a waiter that missed the cycle
    naming its delta is done once the cycle has moved by two (that cycle listed the
    journal after the waiter's delta landed)."""
    store = HookStore()
    pm = PersistenceManager(store, retry=FAST)
    rival = PersistenceManager(unhooked(store), retry=FAST)
    reads_seen: list[int] = []

    def hook(op: str, key: str) -> None:
        if not (op == "get" and key.endswith("/_folder.json")):
            return
        reads_seen.append(len(reads_seen))
        if len(reads_seen) == 1:
            _take_record(rival, "rival", 5, set())  # a folder at work, cycle 5
        elif len(reads_seen) == 2:
            # Cycle 6 may have listed the journal before our delta landed: not done yet.
            _take_record(rival, "rival", 6, {"w0000000000000-0123456789abcdef"})
        elif len(reads_seen) == 3:
            # Cycle 7 folds it, and cycle 8 overwrites the record before we look again.
            assert rival.compact("cb").folded == 1
            _take_record(rival, "rival", 7, set(named(store)))
            _take_record(rival, "rival", 8, set())

    store.hook = hook
    started = time.monotonic()
    report = pm.append_file_analyses("cb", {"/a.py": make_file_analysis("/a.py")}, {})
    assert time.monotonic() - started < 5  # far less than group_wait_seconds (10)
    assert reads_seen == [0, 1, 2]  # saw cycles 5, 6 (not done: waits on), 8 (done)
    assert report.compaction is None
    assert report.delta in folded_of(store).names


def test_a_stale_folder_is_taken_over(caplog: pytest.LogCaptureFixture) -> None:
    store = MemoryStore()
    wait = 0.3
    pm = PersistenceManager(store, retry=FAST, compaction=CompactionPolicy(group_wait_seconds=wait))
    _take_record(pm, "dead-writer", 3, set())  # its holder died while folding
    started = time.monotonic()
    with caplog.at_level(logging.INFO, logger="documee_remote.manager"):
        report = pm.append_file_analyses("cb", {"/a.py": make_file_analysis("/a.py")}, {})
    waited = time.monotonic() - started
    assert wait <= waited < 3 * wait  # took over; did not wait for the self-compaction
    assert "folder dead-writer made no progress" in caplog.text
    assert report.compaction is not None
    assert report.compaction.folded == 1
    record = folder.read_record(pm.engine, "cb")
    # Folded once; its look for more found nothing, and freeing the record says so.
    assert (record.holder, record.cycle) == (None, 4)
    assert report.delta in folded_of(store).names


def test_a_waiter_that_sees_no_progress_compacts_itself() -> None:
    store = MemoryStore()
    wait = 0.2
    pm = PersistenceManager(store, retry=FAST, compaction=CompactionPolicy(group_wait_seconds=wait))
    lazy = PersistenceManager(store, retry=FAST, compaction="deferred")
    real_get, real_put = store._get, store._put
    appended: list[str] = []

    def get(key: str):  # type: ignore[no-untyped-def]
        if key.endswith("/_folder.json"):
            raise TransientError("the folder record cannot be read")
        return real_get(key)

    def put(key: str, data: bytes, *, if_match: str | None, create_only: bool) -> str:
        etag = real_put(key, data, if_match=if_match, create_only=create_only)
        if NAME.search(key) and not appended:
            # A deferred writer appends right after our delta, and never compacts.
            appended.append(key)
            appended.append(
                lazy.append_file_analyses(
                    "cb", {"/lazy.py": make_file_analysis("/lazy.py")}, {}
                ).delta
            )
        return etag

    store._get, store._put = get, put  # type: ignore[method-assign]
    started = time.monotonic()
    report = pm.append_file_analyses("cb", {"/b.py": make_file_analysis("/b.py")}, {})
    waited = time.monotonic() - started
    assert waited >= 3 * wait
    assert report.compaction is not None
    assert report.compaction.folded == 2  # it folded the lazy writer's delta too
    store._get = real_get  # type: ignore[method-assign]
    assert set(folded_of(store).names) == {report.delta, appended[1]}
    stored = codec.load_codebase_analysis(store.get("cb/analysis.json").data)
    assert set(stored.file_analyses) == {"/b.py", "/lazy.py"}


def test_eight_writers_appending_at_once_rewrite_analysis_json_once() -> None:
    """Group commit: when every writer's delta exists before any compaction starts (held
    so here, to be deterministic), one writer folds them all in one commit."""
    store = CountingStore()
    writes: list[str] = []
    deltas_exist = threading.Barrier(8, timeout=20)
    real_put = store._put

    def put(key: str, data: bytes, *, if_match: str | None, create_only: bool) -> str:
        etag = real_put(key, data, if_match=if_match, create_only=create_only)
        if key == "cb/analysis.json":
            writes.append(key)
        if NAME.search(key):
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
    written = [r.compaction for r in reports if r.compaction and r.compaction.analysis_written]
    assert [c.folded for c in written] == [8]
    assert writes == ["cb/analysis.json"]
    stored = codec.load_codebase_analysis(store.get("cb/analysis.json").data)
    assert len(stored.file_analyses) == 160
    folded = recorded_folded(stored.__pydantic_extra__)
    assert dict(folded.names) == {r.delta: 1 for r in reports}
    assert len(codec.loads(store.get("cb/file_hashes.json").data)) == 160


# -- the named-delta protocol's invariants ------------------------------------------------------


def _named_delta(store: Store, name: str, files: dict[str, FileAnalysis], cid: str = "cb") -> None:
    """A named delta put by hand, as a writer whose clock said ``name`` would."""
    bodies = {p: codec.dump_file_analysis(fa) for p, fa in files.items()}
    store.put(journal.named_key(cid, name), journal.encode_delta(cid, bodies), if_none_match="*")


@settings(max_examples=40, deadline=None)
@given(
    legacy=st.integers(0, 4),
    mark=st.integers(0, 4),
    stamps=st.lists(st.integers(1_700_000_000_000, 1_700_000_000_020), max_size=5),
)
def test_pending_deltas_fold_legacy_by_seq_then_named_by_name(
    legacy: int, mark: int, stamps: list[int]
) -> None:
    """Every delta rewrites /p.py; what a reader and a compaction end with is the one
    last in fold order among the pending ones: legacy seqs above the watermark, then the
    named deltas in name order (whatever order they were written in)."""
    mark = min(mark, legacy)
    store = MemoryStore()
    scores: dict[journal.DeltaRef, float] = {}
    for seq in range(1, legacy + 1):
        scores[seq] = seq / 100
        bodies = {"/p.py": codec.dump_file_analysis(make_file_analysis("/p.py", score=seq / 100))}
        store.put(journal.delta_key("cb", seq), journal.encode_delta("cb", bodies))
    if mark:
        analysis = new_analysis("cb")
        journal.fold(
            analysis,
            [
                (
                    s,
                    journal.decode_delta(
                        store.get(journal.delta_key("cb", s)).data, key="k", codebase_id="cb"
                    ),
                )
                for s in range(1, mark + 1)
            ],
        )
        store.put("cb/analysis.json", codec.dump_codebase_analysis(analysis))
    for i, ms in enumerate(stamps):  # written in this order, not in name order
        name = f"w{ms:013d}-{i:016x}"
        scores[name] = 0.5 + i / 100
        _named_delta(store, name, {"/p.py": make_file_analysis("/p.py", score=0.5 + i / 100)})
    pending: list[journal.DeltaRef] = [*range(mark + 1, legacy + 1)]
    pending += sorted(n for n in scores if isinstance(n, str))
    pm = PersistenceManager(store, retry=FAST)
    view = pm.load_analysis("cb")
    # The last pending delta decides; with none, what analysis.json holds (if anything).
    expected = scores[pending[-1]] if pending else (scores[mark] if mark else None)
    got = None if view is None else view.file_analyses["/p.py"].teaching_value.total_score
    assert got == expected
    report = pm.compact("cb")
    assert report.folded == len(pending)
    if pending:
        stored = codec.load_codebase_analysis(store.get("cb/analysis.json").data)
        assert stored.file_analyses["/p.py"].teaching_value.total_score == expected
        assert journal.watermark(stored) == max(legacy, mark)
        assert set(recorded_folded(stored.__pydantic_extra__).names) == {
            n for n in scores if isinstance(n, str)
        }


class _Clock:
    """A process clock ``skew`` seconds off the real one (time.time and time.time_ns)."""

    def __init__(self, skew: float) -> None:
        self.skew = skew

    def time(self) -> float:
        return time.time() + self.skew

    def time_ns(self) -> int:
        return time.time_ns() + int(self.skew * 1e9)


def test_a_delta_appended_after_another_was_acknowledged_sorts_after_it_despite_a_slow_clock(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The hybrid logical clock: writer B's clock is an hour behind writer A's; B appends
    after A's append returned, both pending; B's delta still folds last."""
    store = MemoryStore()
    a = PersistenceManager(store, retry=FAST, compaction="deferred")
    b = PersistenceManager(store, retry=FAST, compaction="deferred")
    first = a.append_file_analyses("cb", {"/p.py": make_file_analysis("/p.py", score=0.1)}, {})
    behind = _Clock(-3600)
    monkeypatch.setattr(journal, "time", behind)
    monkeypatch.setattr(journal_io, "time", behind)
    second = b.append_file_analyses("cb", {"/p.py": make_file_analysis("/p.py", score=0.2)}, {})
    monkeypatch.undo()
    assert second.delta > first.delta
    assert journal.name_ms(second.delta) == journal.name_ms(first.delta) + 1
    view = a.load_analysis("cb")
    assert view is not None
    assert view.file_analyses["/p.py"].teaching_value.total_score == 0.2
    assert a.compact("cb").folded == 2
    stored = codec.load_codebase_analysis(store.get("cb/analysis.json").data)
    assert stored.file_analyses["/p.py"].teaching_value.total_score == 0.2


_EMPTY = Delta(format=1, codebase_id="cb", created_at="", writer="")


@settings(max_examples=60, deadline=None)
@given(
    grace=st.sampled_from([0.0, 5.0, 600.0]),
    steps=st.lists(
        st.tuples(st.floats(0, 4000), st.lists(st.floats(0, 3000), min_size=1, max_size=3)),
        min_size=1,
        max_size=8,
    ),
)
def test_the_folded_map_forgets_only_below_the_floor_and_only_grace_after_the_commit(
    grace: float, steps: list[tuple[float, list[float]]]
) -> None:
    """Commits at increasing times, each folding deltas named up to an hour before it:
    a name leaves the map only once below the floor and grace after its commit; every
    name ever folded stays held (in the map, or below the floor), and the floor trails
    the compactor's clock by grace + LATE_WRITE_SECONDS."""
    analysis = new_analysis("cb")
    now = 1_700_000_000.0
    committed: dict[str, tuple[int, float]] = {}  # name -> (commit, its time)
    serial = 0
    for gap, ages in steps:
        now += gap
        deltas: list[tuple[journal.DeltaRef, Delta]] = []
        for age in ages:
            serial += 1
            deltas.append((f"w{int((now - age) * 1000):013d}-{serial:016x}", _EMPTY))
        before = recorded_folded(analysis.__pydantic_extra__)
        journal.fold(analysis, deltas, grace_seconds=grace, now=now)
        folded = recorded_folded(analysis.__pydantic_extra__)
        assert folded.commit == before.commit + 1
        assert folded.floor >= before.floor
        assert folded.floor <= now * 1000 - (grace + journal.LATE_WRITE_SECONDS) * 1000
        for name, _ in deltas:
            committed[name] = (folded.commit, now)
            # In the map under this commit, unless already below the floor (possible only
            # with no grace at all: a delta folded the moment it fell below).
            assert folded.names.get(name) == folded.commit or (
                grace == 0 and journal.name_ms(name) < folded.floor
            )
        for name, (commit, at) in committed.items():
            assert folded.holds(name, journal.name_ms(name))
            if name not in folded.names:
                assert journal.name_ms(name) < folded.floor
                assert at <= now - grace
            else:
                assert folded.names[name] == commit
                assert commit in folded.times


def test_a_forgotten_name_below_the_floor_is_never_replayed_and_is_pruned() -> None:
    store = MemoryStore()
    pm = PersistenceManager(store, retry=FAST, compaction=CompactionPolicy(grace_seconds=0))
    pm.merge_file_analyses("cb", {"/p.py": make_file_analysis("/p.py", score=0.1)}, {})
    # A delta named an hour and a half ago, not in the folded map: below the floor, it
    # is folded history whose entry was forgotten (its deletion failed, say).
    old_ms = time.time_ns() // 1_000_000 - 5_400_000
    old = f"w{old_ms:013d}-{0:016x}"
    _named_delta(store, old, {"/p.py": make_file_analysis("/p.py", score=0.9)})
    folded = folded_of(store)
    assert journal.name_ms(old) < folded.floor
    assert old not in folded.names
    view = pm.load_analysis("cb")
    assert view is not None
    assert view.file_analyses["/p.py"].teaching_value.total_score == 0.1
    assert pm.get_file_hashes("cb") == {}  # lends nothing to the hash index either
    pm.merge_file_analyses("cb", {"/q.py": make_file_analysis("/q.py")}, {})
    assert old not in named(store)  # pruned with the folded ones
    stored = codec.load_codebase_analysis(store.get("cb/analysis.json").data)
    assert stored.file_analyses["/p.py"].teaching_value.total_score == 0.1


def test_compaction_prunes_a_folded_delta_grace_after_its_commit_keeping_the_newest_marker() -> (
    None
):
    store = MemoryStore()
    grace = 2.0
    pm = PersistenceManager(store, retry=FAST, compaction=CompactionPolicy(grace_seconds=grace))
    pm.merge_file_analyses("cb", {"/a.py": make_file_analysis("/a.py")}, {})
    folded_at = time.time()
    pm.merge_file_analyses("cb", {"/b.py": make_file_analysis("/b.py")}, {})
    first, second = named(store)
    assert time.time() - folded_at < grace / 2
    assert delta_names(store) == [
        "_folder.json",
        commit_name(1),
        commit_name(2),
        f"{first}.json",
        f"{second}.json",
    ]
    # Past grace (and a second for the commit times' resolution), the next commit prunes
    # both folded deltas and the markers its own stands in for.
    time.sleep(max(0.0, folded_at + grace + 1.05 - time.time()))
    pm.merge_file_analyses("cb", {"/c.py": make_file_analysis("/c.py")}, {})
    third = named(store)[-1]
    assert delta_names(store) == ["_folder.json", commit_name(3), f"{third}.json"]
    view = pm.load_analysis("cb")
    assert view is not None
    assert set(view.file_analyses) == {"/a.py", "/b.py", "/c.py"}


def _listing_of(store: Store) -> JournalListing:
    return journal.parse_listing("cb", store.list_meta("cb/_journal/"))


def test_pruning_spares_pending_deltas_and_deltas_folded_less_than_grace_ago() -> None:
    store = MemoryStore()
    pm = PersistenceManager(store, retry=FAST)
    now = time.time()
    grace = 100.0
    ms = int(now * 1000)
    old, young, pending = (f"w{ms - 10:013d}-{i:016x}" for i in range(3))
    for name in (old, young, pending):
        _named_delta(store, name, {})
    for n in (1, 2):
        store.put(journal.commit_marker_key("cb", n), journal.encode_commit_marker(n))
    folded = Folded(
        commit=2,
        floor=0,
        names={old: 1, young: 2},
        times={1: int((now - grace - 5) * 1000), 2: int((now - grace + 5) * 1000)},
    )
    pruned, kept_young = journal_io.prune_journal(
        pm.engine, "cb", _listing_of(store), 0, grace_seconds=0.0 + grace, folded=folded
    )
    # Every object was created just now: what decides is the commit's time, not the
    # object's age. The markers are young objects: both stay until they are old.
    assert pruned == [journal.named_key("cb", old)]
    assert kept_young == 1
    assert named(store) == sorted([young, pending])
    pruned, _ = journal_io.prune_journal(
        pm.engine, "cb", _listing_of(store), 0, grace_seconds=0.0, folded=folded
    )
    assert sorted(pruned) == [journal.commit_marker_key("cb", 1), journal.named_key("cb", young)]
    assert named(store) == [pending]  # never a pending one
    assert delta_names(store) == [commit_name(2), f"{pending}.json"]  # the newest marker stays


def test_a_commit_less_than_grace_ago_is_young_whatever_the_fraction_of_its_second() -> None:
    """Commit times are kept in ms: whole seconds rounded down would make a commit up to
    a second older than it is, and prune its deltas before grace has passed."""
    store = MemoryStore()
    pm = PersistenceManager(store, retry=FAST)
    grace = 1.0
    while time.time() % 1 > 0.9:  # keep the commit below within the last second
        time.sleep(0.02)
    at = float(int(time.time())) - 0.001  # 1 to 900 ms ago, just before a whole second
    analysis = new_analysis("cb")
    name = f"w{int(at * 1000):013d}-{0:016x}"
    journal.fold(analysis, [(name, _EMPTY)], grace_seconds=grace, now=at)
    _named_delta(store, name, {})
    assert time.time() - at < grace
    pruned, kept_young = journal_io.prune_journal(
        pm.engine,
        "cb",
        _listing_of(store),
        0,
        grace_seconds=grace,
        folded=recorded_folded(analysis.__pydantic_extra__),
    )
    assert pruned == []
    assert kept_young == 1


def test_a_legacy_journal_upgrades_in_place_legacy_pending_folded_before_named() -> None:
    """A codebase an older version wrote (deltas 1..4 folded, watermark 4; 5 and 6
    pending), read and merged into by this version, while an old writer still appends."""
    store = MemoryStore()
    write_legacy_journal(store, 6, 4)
    pm = PersistenceManager(store, retry=FAST)
    lazy = PersistenceManager(store, retry=FAST, compaction="deferred")
    legacy_files = {f"/l{n}.py" for n in range(1, 7)}
    view = pm.load_analysis("cb")
    assert view is not None
    assert set(view.file_analyses) == legacy_files
    assert pm.get_file_hashes("cb") == {f"/l{n}.py": h(n) for n in range(1, 7)}
    # A new (deferred) writer appends a named delta; then an old writer, still running,
    # a legacy one rewriting the same path: legacy deltas fold first, so the named wins.
    shared = make_file_analysis("/shared.py", score=0.2)
    first = lazy.append_file_analyses("cb", {"/shared.py": shared}, {"/shared.py": h(20)})
    assert NAME.fullmatch(first.delta)
    write_legacy_delta(store, 7, {"/shared.py": h(30), "/l7.py": h(7)})
    view = pm.load_analysis("cb")
    assert view is not None
    assert view.file_analyses["/shared.py"] == shared
    # A new eager merge: a named delta (no new legacy seq), and a compaction that folds
    # legacy 5..7, then both named deltas, in one commit.
    pm.merge_file_analyses("cb", {"/n.py": make_file_analysis("/n.py")}, {"/n.py": h(40)})
    assert _listing_of(store).max_seq == 7
    assert len(named(store)) == 2
    raw = json.loads(store.get("cb/analysis.json").data)  # as upstream's reader would
    assert set(raw["file_analyses"]) == legacy_files | {"/l7.py", "/shared.py", "/n.py"}
    assert raw["file_analyses"]["/shared.py"]["teaching_value"]["total_score"] == 0.2
    book = raw["documee_remote"]
    assert book["journal"] == 7
    assert book["commit"] == 1
    assert book["folded"] == dict.fromkeys(named(store), 1)
    hashes = {f"/l{n}.py": h(n) for n in range(1, 8)} | {"/shared.py": h(20), "/n.py": h(40)}
    assert codec.loads(store.get("cb/file_hashes.json").data) == hashes
    assert pm.get_file_hashes("cb") == hashes
    # The old writer's per-file object of /shared.py came last, its delta folds first:
    # the per-file copy differs (as when two writers race on a path), and repair fixes it.
    findings = pm.verify("cb").findings
    assert [(f.kind, f.file_path) for f in findings] == [("per_file_differs", "/shared.py")]
    pm.verify("cb", repair=True)
    assert pm.verify("cb").ok
    # Markers: the legacy one at the new watermark, and the commit's.
    assert {seq_name(7, "folded"), commit_name(1)} <= set(delta_names(store))


def test_get_file_hashes_lays_pending_and_unpublished_named_deltas_over_the_index() -> None:
    store = CrashingStore()
    pm = PersistenceManager(store, retry=FAST, compaction=CompactionPolicy(group_wait_seconds=0.1))
    pm.merge_file_analyses(
        "cb", {p: make_file_analysis(p) for p in ("/a.py", "/b.py")}, {"/a.py": h(1), "/b.py": h(1)}
    )
    # A compactor that dies after its commit, before it publishes the hashes.
    store.when = lambda op, key: op == "put" and key.endswith("/file_hashes.json")
    with pytest.raises(Crash):
        pm.merge_file_analyses("cb", {"/a.py": make_file_analysis("/a.py")}, {"/a.py": h(2)})
    alive = unhooked(store)
    survivor = PersistenceManager(alive, retry=FAST, compaction="deferred")
    assert folded_of(alive).commit == 2
    assert _listing_of(alive).published == 1  # commit 2 has no marker
    assert codec.loads(alive.get("cb/file_hashes.json").data) == {"/a.py": h(1), "/b.py": h(1)}
    # A pending delta that removes /b.py, and one that claims /c.py.
    survivor.append_file_analyses("cb", {}, {}, removed=["/b.py"])
    survivor.append_file_analyses("cb", {"/c.py": make_file_analysis("/c.py")}, {"/c.py": h(3)})
    assert survivor.get_file_hashes("cb") == {"/a.py": h(2), "/c.py": h(3)}
    # The next compaction folds the pending ones and republishes commit 2's hashes.
    report = survivor.compact("cb")
    assert (report.folded, report.commit) == (2, 3)
    assert codec.loads(alive.get("cb/file_hashes.json").data) == {"/a.py": h(2), "/c.py": h(3)}
    assert _listing_of(alive).published == 3


def test_a_compaction_with_nothing_to_fold_republishes_a_dead_compactors_hashes() -> None:
    store = CrashingStore()
    pm = PersistenceManager(store, retry=FAST, compaction=CompactionPolicy(group_wait_seconds=0.1))
    pm.merge_file_analyses("cb", {"/a.py": make_file_analysis("/a.py")}, {"/a.py": h(1)})
    store.when = lambda op, key: op == "put" and key.endswith("/file_hashes.json")
    with pytest.raises(Crash):
        pm.merge_file_analyses("cb", {"/a.py": make_file_analysis("/a.py")}, {"/a.py": h(2)})
    alive = unhooked(store)
    survivor = PersistenceManager(alive, retry=FAST)
    assert survivor.get_file_hashes("cb") == {"/a.py": h(2)}
    report = survivor.compact("cb")
    assert (report.folded, report.analysis_written, report.commit) == (0, False, 2)
    assert codec.loads(alive.get("cb/file_hashes.json").data) == {"/a.py": h(2)}
    assert _listing_of(alive).published == 2
