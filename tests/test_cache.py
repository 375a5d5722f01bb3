"""The read cache: revalidated by ETag, never stale, shared safely (issue 15, item 1)."""

from __future__ import annotations

import copy
import json
import multiprocessing
import os
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from documee_remote import PersistenceManager, journal, layout
from documee_remote.cache import (
    CachingStore,
    ReadCache,
    ReadOnlyAnalysisError,
    default_cache_dir,
    is_frozen,
    resolve_cache,
)
from documee_remote.errors import ConfigurationError, NotFoundError, NotModifiedError
from documee_remote.stores import MemoryStore, Store, open_store
from documee_remote.stores._cache import IMMUTABLE_KEY
from documee_remote.stores.base import StoredObject, etag_of
from documee_remote.testing.factories import content_hash, make_file_analysis
from documee_remote.testing.fixtures import S3Endpoint

BACKENDS = ["s3", "fsspec", "obstore"]


class CountingStore(MemoryStore):
    """A memory store that counts gets and the bodies it sends."""

    def __init__(self) -> None:
        super().__init__()
        self.gets: Counter[str] = Counter()
        self.bodies: Counter[str] = Counter()
        self.delay = 0.0

    def _get(self, key: str) -> StoredObject:
        self.gets[key] += 1
        time.sleep(self.delay)
        obj = super()._get(key)
        self.bodies[key] += 1
        return obj

    def _get_if_none_match(self, key: str, etag: str) -> StoredObject:
        self.gets[key] += 1
        time.sleep(self.delay)
        obj = super()._get(key)
        if obj.etag == etag:
            raise NotModifiedError("unchanged", key=key)
        self.bodies[key] += 1
        return obj


@pytest.fixture
def cache(tmp_path: Path) -> ReadCache:
    return ReadCache(tmp_path / "cache", max_bytes=1 << 20)


@pytest.fixture
def counting() -> CountingStore:
    return CountingStore()


def remote(endpoint: S3Endpoint, backend: str, **options: Any) -> Store:
    if backend != "s3":
        pytest.importorskip(backend)
    return open_store(
        endpoint.url("store-root/"),
        backend=backend,
        endpoint_url=endpoint.endpoint_url,
        region=endpoint.region,
        **options,
    )


def make_analysis(codebase_id: str, n: int = 3, version: int = 0) -> Any:
    from documee_remote.merge import new_analysis

    analysis = new_analysis(codebase_id)
    analysis.file_analyses = {
        f"/src/m{i}.py": make_file_analysis(f"/src/m{i}.py") for i in range(n)
    }
    analysis.analyzed_at = f"v{version}"
    return analysis


# -- the storage level ------------------------------------------------------------------------


def test_a_repeated_read_moves_no_body_and_a_changed_object_is_read_anew(
    counting: CountingStore, cache: ReadCache
) -> None:
    store = CachingStore(counting, cache)
    counting.put("cb/analysis.json", b"one")
    assert store.get("cb/analysis.json").data == b"one"
    assert store.get("cb/analysis.json").data == b"one"
    assert counting.gets["cb/analysis.json"] == 2  # revalidated every time
    assert counting.bodies["cb/analysis.json"] == 1  # but the body came once
    counting.put("cb/analysis.json", b"two")  # another writer
    assert store.get("cb/analysis.json").data == b"two"
    assert cache.stats.revalidated == 1
    assert cache.stats.fetched == 2


def test_a_deleted_object_is_not_served_from_the_cache(
    counting: CountingStore, cache: ReadCache
) -> None:
    store = CachingStore(counting, cache)
    counting.put("cb/file_hashes.json", b"{}")
    store.get("cb/file_hashes.json")
    counting.delete("cb/file_hashes.json")
    with pytest.raises(NotFoundError):
        store.get("cb/file_hashes.json")
    assert cache.lookup(store.entry_key("cb/file_hashes.json")) is None


def test_the_immutable_key_shape_is_the_journals() -> None:
    assert IMMUTABLE_KEY.search(journal.delta_key("cb", 7))
    assert IMMUTABLE_KEY.search(journal.delta_key("cb", 10**19))
    assert IMMUTABLE_KEY.search(journal.named_key("cb", journal.new_name()))
    assert IMMUTABLE_KEY.search(journal.named_key("cb-2", "w0000000000000-0123456789abcdef"))
    for key in (
        layout.analysis_key("cb"),
        layout.file_hashes_key("cb"),
        layout.file_analysis_key("cb", "/a.py"),
        layout.lease_key("cb"),
        layout.journal_prefix("cb") + f"{7:020d}.folded",
        journal.commit_marker_key("cb", 7),
        layout.journal_prefix("cb") + "_folder.json",
    ):
        assert not IMMUTABLE_KEY.search(key), key


def test_listed_journal_deltas_are_served_without_a_request(
    counting: CountingStore, cache: ReadCache
) -> None:
    store = CachingStore(counting, cache)
    key = journal.delta_key("cb", 1)
    counting.put(key, b'{"delta": 1}')
    list(store.list_meta(layout.journal_prefix("cb")))
    assert store.get(key).data == b'{"delta": 1}'
    assert counting.gets[key] == 1
    for _ in range(3):
        list(store.list_meta(layout.journal_prefix("cb")))
        assert store.get(key).data == b'{"delta": 1}'
    assert counting.gets[key] == 1  # no request after the first
    assert cache.stats.unrequested == 3


def test_a_delta_begun_again_under_the_same_seq_is_read_anew(
    counting: CountingStore, cache: ReadCache
) -> None:
    # A codebase deleted and begun again reuses sequence numbers.
    store = CachingStore(counting, cache)
    key = journal.delta_key("cb", 1)
    counting.put(key, b"old")
    list(store.list_meta(layout.journal_prefix("cb")))
    assert store.get(key).data == b"old"
    counting.delete(key)
    counting.put(key, b"new")
    list(store.list_meta(layout.journal_prefix("cb")))
    assert store.get(key).data == b"new"


def test_an_unlisted_delta_is_revalidated(counting: CountingStore, cache: ReadCache) -> None:
    store = CachingStore(counting, cache)
    key = journal.delta_key("cb", 1)
    counting.put(key, b"d")
    store.get(key)
    assert store.get(key).data == b"d"
    assert counting.gets[key] == 2
    assert counting.bodies[key] == 1


def test_concurrent_reads_of_one_key_share_a_fetch(
    counting: CountingStore, cache: ReadCache
) -> None:
    store = CachingStore(counting, cache)
    counting.put("cb/analysis.json", b"x" * 1000)
    counting.delay = 0.2
    barrier = threading.Barrier(16)
    results: list[bytes] = []

    def read() -> None:
        barrier.wait()
        results.append(store.get("cb/analysis.json").data)

    threads = [threading.Thread(target=read) for _ in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results == [b"x" * 1000] * 16
    # One fetch, and at most one more (conditional) for those that came after it began.
    assert counting.gets["cb/analysis.json"] <= 2
    assert counting.bodies["cb/analysis.json"] == 1


def test_a_reader_never_joins_a_fetch_that_began_before_it(
    counting: CountingStore, cache: ReadCache
) -> None:
    store = CachingStore(counting, cache)
    counting.put("k/a.json", b"old")
    counting.delay = 0.3
    first: list[bytes] = []
    t = threading.Thread(target=lambda: first.append(store.get("k/a.json").data))
    t.start()
    time.sleep(0.1)  # the first fetch is under way
    MemoryStore.put(counting, "k/a.json", b"new")  # a write completes...
    assert store.get("k/a.json").data == b"new"  # ...so a read that starts now sees it
    t.join()


# -- the disk level -----------------------------------------------------------------------------


def test_a_new_process_revalidates_the_disk_entry_without_a_body(
    counting: CountingStore, tmp_path: Path
) -> None:
    counting.put("cb/analysis.json", b"body")
    first = ReadCache(tmp_path / "c")
    CachingStore(counting, first).get("cb/analysis.json")
    first.flush()
    fresh = ReadCache(tmp_path / "c")  # what another process sees
    assert CachingStore(counting, fresh).get("cb/analysis.json").data == b"body"
    assert counting.bodies["cb/analysis.json"] == 1
    assert fresh.stats.disk_hits == 1


def _entry_files(cache: ReadCache) -> list[Path]:
    return sorted(cache.directory.rglob("*.entry"))


@pytest.mark.parametrize(
    "damage",
    [
        lambda raw: raw[: len(raw) - 3],  # truncated
        lambda raw: raw[:-4] + b"XXXX",  # garbled body
        lambda raw: b"garbage",  # not an entry at all
        lambda raw: raw.replace(b'"size": ', b'"size": 1'),  # a header that lies
        lambda raw: b"",
    ],
    ids=["truncated", "garbled", "garbage", "header", "empty"],
)
def test_a_damaged_entry_is_ignored_and_replaced(
    counting: CountingStore, tmp_path: Path, damage: Any
) -> None:
    counting.put("cb/analysis.json", b"the real body " * 10)
    first = ReadCache(tmp_path / "c")
    CachingStore(counting, first).get("cb/analysis.json")
    first.flush()
    [path] = _entry_files(first)
    path.write_bytes(damage(path.read_bytes()))
    fresh = ReadCache(tmp_path / "c")
    assert CachingStore(counting, fresh).get("cb/analysis.json").data == b"the real body " * 10
    assert fresh.stats.corrupt == 1
    assert counting.bodies["cb/analysis.json"] == 2  # fetched again
    fresh.flush()
    again = ReadCache(tmp_path / "c")
    assert CachingStore(counting, again).get("cb/analysis.json").data == b"the real body " * 10
    assert again.stats.disk_hits == 1  # the entry was replaced by a whole one


def test_eviction_keeps_the_directory_under_its_bound(
    counting: CountingStore, tmp_path: Path
) -> None:
    cache = ReadCache(tmp_path / "c", max_bytes=10_000, memory_bytes=0)
    store = CachingStore(counting, cache)
    for i in range(40):
        counting.put(f"cb/file_{i:016x}.json", bytes([i]) * 1000)
        store.get(f"cb/file_{i:016x}.json")
        assert cache.info().bytes <= 10_000
    cache.flush()
    assert cache.stats.evicted > 0
    # The most recent entries stayed, the oldest went.
    assert cache.lookup(store.entry_key(f"cb/file_{39:016x}.json")) is not None
    assert cache.lookup(store.entry_key(f"cb/file_{0:016x}.json")) is None


def test_an_object_over_the_bound_is_not_kept_on_disk(
    counting: CountingStore, tmp_path: Path
) -> None:
    cache = ReadCache(tmp_path / "c", max_bytes=100)
    counting.put("cb/analysis.json", b"x" * 1000)
    CachingStore(counting, cache).get("cb/analysis.json")
    cache.flush()
    assert _entry_files(cache) == []


@pytest.mark.skipif(os.name != "posix", reason="POSIX modes")
def test_the_directory_is_private(counting: CountingStore, tmp_path: Path) -> None:
    cache = ReadCache(tmp_path / "c")
    counting.put("cb/analysis.json", b"secret analysis")
    CachingStore(counting, cache).get("cb/analysis.json")
    cache.flush()
    assert (tmp_path / "c").stat().st_mode & 0o777 == 0o700


def test_clear_and_info(counting: CountingStore, cache: ReadCache) -> None:
    store = CachingStore(counting, cache)
    for i in range(3):
        counting.put(f"cb/file_{i:016x}.json", b"abc")
        store.get(f"cb/file_{i:016x}.json")
    info = cache.info()
    assert (info.entries, info.memory_entries) == (3, 3)
    assert info.bytes > 9
    assert cache.clear() == 3
    assert (cache.info().entries, cache.info().memory_entries) == (0, 0)


def test_two_stores_never_share_entries(s3_endpoint: S3Endpoint, tmp_path: Path) -> None:
    from documee_remote.stores._cache import store_identity

    cache = ReadCache(tmp_path / "c")
    a = CachingStore(s3_endpoint.store("team-a/"), cache)
    b = CachingStore(s3_endpoint.store("team-b/"), cache)
    a.inner.put("cb/analysis.json", b"A's")
    b.inner.put("cb/analysis.json", b"B's")
    assert a.get("cb/analysis.json").data == b"A's"
    assert b.get("cb/analysis.json").data == b"B's"
    assert a.entry_key("cb/analysis.json") != b.entry_key("cb/analysis.json")
    # The same bucket and prefix behind another endpoint is another store too.
    elsewhere = s3_endpoint.store("team-a/", endpoint_url="http://127.0.0.1:9")
    assert store_identity(elsewhere) != store_identity(a.inner)
    for store in (a, b, elsewhere):
        store.close()


def test_entries_hold_no_credentials(
    s3_endpoint: S3Endpoint, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    secret = os.environ["AWS_SECRET_ACCESS_KEY"]
    cache = ReadCache(tmp_path / "c")
    store = CachingStore(s3_endpoint.store(), cache)
    store.inner.put("cb/analysis.json", b"{}")
    store.get("cb/analysis.json")
    cache.flush()
    files = [p for p in (tmp_path / "c").rglob("*") if p.is_file()]
    assert files
    for path in files:
        data = path.read_bytes()
        assert secret.encode() not in data
        assert b"AKIA" not in data
    store.close()


@pytest.mark.parametrize("backend", BACKENDS)
def test_listed_deltas_cost_no_request_on_the_server(
    s3_endpoint: S3Endpoint, backend: str, tmp_path: Path
) -> None:
    reader = PersistenceManager(
        remote(s3_endpoint, backend, cache=ReadCache(tmp_path / "c")), compaction="deferred"
    )
    writer = PersistenceManager(remote(s3_endpoint, backend), compaction="deferred")
    try:
        writer.save_analysis("cb", make_analysis("cb", n=2))
        for i in range(3):
            path = f"/src/new{i}.py"
            writer.append_file_analyses("cb", {path: make_file_analysis(path)}, {})
        first = reader.load_analysis("cb")
        assert first is not None
        assert len(first.file_analyses) == 5
        faults = s3_endpoint.server.faults
        faults.clear()
        again = reader.load_analysis("cb")
        assert again is not None
        assert len(again.file_analyses) == 5
        # A listing and analysis.json (304); the 3 pending deltas cost nothing.
        assert faults.requests["GET"] <= 3, faults.requests
        assert reader.store.cache.stats.unrequested >= 3  # type: ignore[attr-defined]
    finally:
        reader.close()
        writer.close()


def _reader(directory: str, rounds: int, queue: Any) -> None:
    """A process that reads through a cache directory it shares with others."""
    store = _SharedStore(directory)
    # No memory level: every read goes through the entries all the processes write.
    cache = ReadCache(Path(directory) / "cache", memory_bytes=0)
    caching = CachingStore(store, cache)
    bad = 0
    for _ in range(rounds):
        for i in range(4):
            obj = caching.get(f"cb/file_{i:016x}.json")
            # Whole and the bytes of the ETag it came with: never half of an entry.
            if etag_of(obj.data) != obj.etag or len(set(obj.data)) != 1:
                bad += 1
    cache.flush()
    queue.put((bad, cache.stats.corrupt, cache.stats.disk_hits))


class _SharedStore(MemoryStore):
    """A 'remote' store all processes see: objects are files, rewritten atomically."""

    def __init__(self, directory: str) -> None:
        super().__init__()
        self.dir = Path(directory)

    def _get(self, key: str) -> StoredObject:
        i = int(key.rsplit("_", 1)[1][:16], 16)
        data = (self.dir / f"obj{i}").read_bytes()
        return StoredObject(data, etag_of(data))


@pytest.mark.slow
def test_processes_sharing_a_directory_never_see_half_written_entries(tmp_path: Path) -> None:
    for i in range(4):
        (tmp_path / f"obj{i}").write_bytes(bytes([65 + i]) * (200_000 + i))
    ctx = multiprocessing.get_context("spawn")
    queue = ctx.Queue()
    procs = [ctx.Process(target=_reader, args=(str(tmp_path), 30, queue)) for _ in range(4)]
    for p in procs:
        p.start()
    # Meanwhile the objects keep changing, so the processes keep replacing entries.
    for round_ in range(20):
        for i in range(4):
            tmp = tmp_path / f"obj{i}.tmp"
            tmp.write_bytes(bytes([65 + (i + round_) % 26]) * (200_000 + i + round_))
            os.replace(tmp, tmp_path / f"obj{i}")
        time.sleep(0.01)
    results = [queue.get(timeout=120) for _ in procs]
    for p in procs:
        p.join(30)
        assert p.exitcode == 0
    assert [(bad, corrupt) for bad, corrupt, _ in results] == [(0, 0)] * 4
    assert sum(hits for _, _, hits in results) > 0  # the entries were really shared


# -- every S3 backend, through the moto server --------------------------------------------------


@pytest.mark.parametrize("backend", BACKENDS)
def test_conditional_get_is_native_on_every_s3_backend(
    s3_endpoint: S3Endpoint, backend: str
) -> None:
    store = remote(s3_endpoint, backend)
    try:
        etag = store.put("cb/analysis.json", b"x" * 5000)
        faults = s3_endpoint.server.faults
        faults.clear()
        with pytest.raises(NotModifiedError) as caught:
            store.get("cb/analysis.json", if_none_match=etag)
        assert caught.value.key == "cb/analysis.json"
        assert faults.requests["GET"] == 1
        assert store.get("cb/analysis.json", if_none_match=etag_of(b"other")).data == b"x" * 5000
        with pytest.raises(NotFoundError):
            store.get("cb/missing.json", if_none_match=etag)
    finally:
        store.close()


@pytest.mark.parametrize("backend", BACKENDS)
def test_another_writer_is_seen_at_once_on_every_backend(
    s3_endpoint: S3Endpoint, backend: str, tmp_path: Path
) -> None:
    reader = PersistenceManager(remote(s3_endpoint, backend, cache=ReadCache(tmp_path / "c")))
    writer = PersistenceManager(remote(s3_endpoint, backend))
    try:
        assert isinstance(reader.store, CachingStore)
        for version in range(4):
            writer.save_analysis("cb", make_analysis("cb", n=2 + version, version=version))
            writer.save_file_hashes("cb", {"/src/m0.py": content_hash(f"v{version}")})
            first = reader.load_analysis("cb")
            assert first is not None
            assert first.analyzed_at == f"v{version}"
            assert len(first.file_analyses) == 2 + version
            assert reader.get_file_hashes("cb") == {"/src/m0.py": content_hash(f"v{version}")}
            again = reader.load_analysis("cb")
            assert again is first  # unchanged: the shared parse
        hit = reader.store.cache.stats  # type: ignore[attr-defined]
        assert hit.revalidated >= 4
    finally:
        reader.close()
        writer.close()


def test_a_repeated_load_costs_two_requests_and_no_body(
    s3_endpoint: S3Endpoint, tmp_path: Path
) -> None:
    writer = PersistenceManager(remote(s3_endpoint, "s3"))
    writer.save_analysis("cb", make_analysis("cb", n=20))
    reader = PersistenceManager(remote(s3_endpoint, "s3", cache=ReadCache(tmp_path / "c")))
    try:
        reader.load_analysis("cb")
        faults = s3_endpoint.server.faults
        faults.clear()
        for _ in range(3):
            reader.load_analysis("cb")
        assert sum(faults.requests.values()) == 6  # a conditional GET and a listing, each
        assert reader.store.cache.stats.fetched == 1  # type: ignore[attr-defined]
    finally:
        reader.close()
        writer.close()


# -- what callers get ---------------------------------------------------------------------------


@pytest.fixture
def pms(counting: CountingStore, cache: ReadCache) -> tuple[PersistenceManager, Any]:
    pm = PersistenceManager(CachingStore(counting, cache))
    pm.save_analysis("cb", make_analysis("cb", n=3))
    return pm, counting


def test_a_caller_that_changes_its_analysis_cannot_change_the_next_callers(
    pms: tuple[PersistenceManager, Any],
) -> None:
    pm, _ = pms
    shared = pm.load_analysis("cb")
    assert shared is not None
    assert is_frozen(shared)
    path = next(iter(shared.file_analyses))
    attempts = [
        lambda: setattr(shared, "analyzed_at", "changed"),
        lambda: shared.file_analyses.pop(path),
        lambda: shared.file_analyses.__setitem__("/x.py", shared.file_analyses[path]),
        lambda: shared.file_analyses[path].symbol_info.functions.append(None),
        lambda: setattr(shared.file_analyses[path], "language", "cobol"),
        shared.global_patterns.clear,
        lambda: setattr(shared.metrics, "total_files", 0),
    ]
    for attempt in attempts:
        with pytest.raises(ReadOnlyAnalysisError):
            attempt()
    nxt = pm.load_analysis("cb")
    assert nxt is not None
    assert len(nxt.file_analyses) == 3
    assert nxt.file_analyses[path].language == "python"
    assert nxt.analyzed_at == "v0"


def test_copy_true_gives_a_private_analysis(pms: tuple[PersistenceManager, Any]) -> None:
    pm, counting = pms
    pm.load_analysis("cb")
    mine = pm.load_analysis("cb", copy=True)
    assert mine is not None
    assert not is_frozen(mine)
    mine.analyzed_at = "mine"
    mine.file_analyses.clear()
    assert counting.bodies["cb/analysis.json"] == 1  # parsed from the cached bytes
    other = pm.load_analysis("cb")
    assert other is not None
    assert other.analyzed_at == "v0"
    assert len(other.file_analyses) == 3


def test_deep_copies_of_a_shared_analysis_are_ordinary(pms: tuple[PersistenceManager, Any]) -> None:
    pm, _ = pms
    shared = pm.load_analysis("cb")
    assert shared is not None
    for clone in (copy.deepcopy(shared), shared.model_copy(deep=True)):
        assert not is_frozen(clone)
        clone.analyzed_at = "clone"
        next(iter(clone.file_analyses.values())).language = "rust"
    assert shared.analyzed_at == "v0"
    assert next(iter(shared.file_analyses.values())).language == "python"
    # Serialization of a shared analysis is the same bytes as of a private one.
    from documee_remote import codec

    private = pm.load_analysis("cb", copy=True)
    assert private is not None
    assert codec.dump_codebase_analysis(shared) == codec.dump_codebase_analysis(private)


def test_pending_merges_are_folded_in_with_the_cache_on(
    counting: CountingStore, cache: ReadCache
) -> None:
    pm = PersistenceManager(CachingStore(counting, cache), compaction="deferred")
    pm.save_analysis("cb", make_analysis("cb", n=2))
    pm.append_file_analyses("cb", {"/src/new.py": make_file_analysis("/src/new.py")}, {})
    first = pm.load_analysis("cb")
    assert first is not None
    assert "/src/new.py" in first.file_analyses
    pm.append_file_analyses("cb", {"/src/newer.py": make_file_analysis("/src/newer.py")}, {})
    second = pm.load_analysis("cb")
    assert second is not None
    assert {"/src/new.py", "/src/newer.py"} <= set(second.file_analyses)
    deltas = [k for k in counting.gets if IMMUTABLE_KEY.search(k)]
    assert all(counting.bodies[k] == 1 for k in deltas)  # each delta's body once
    pm.compact("cb")
    third = pm.load_analysis("cb")
    assert third is not None
    assert len(third.file_analyses) == 4


def test_folded_named_deltas_still_listed_leave_analysis_json_alone(
    counting: CountingStore, cache: ReadCache
) -> None:
    # Folded deltas stay listed for the grace period: the folded map, not the
    # listing alone, says they are in analysis.json, so the shared path answers.
    pm = PersistenceManager(CachingStore(counting, cache), compaction="deferred")
    pm.save_analysis("cb", make_analysis("cb", n=2))
    for path in ("/src/new.py", "/src/newer.py"):
        pm.append_file_analyses("cb", {path: make_file_analysis(path)}, {})
    pm.compact("cb")
    listed = journal.parse_listing("cb", counting.list_meta(layout.journal_prefix("cb")))
    assert len(listed.named) == 2  # still there, folded
    counting.bodies.clear()
    first = pm.load_analysis("cb")
    assert first is not None
    assert is_frozen(first)
    assert pm.load_analysis("cb") is first
    assert len(first.file_analyses) == 4
    assert not any(counting.bodies[journal.named_key("cb", n)] for n in listed.named)


def _rewrite_compact(store: Store, codebase_id: str) -> None:
    """analysis.json as another tool might write it: one line, so peek_book finds nothing."""
    key = layout.analysis_key(codebase_id)
    doc = json.loads(store.get(key).data)
    assert doc["documee_remote"]["folded"]  # the record the peek will miss
    store.put(key, json.dumps(doc, separators=(",", ":")).encode())


def test_a_body_whose_bookkeeping_cannot_be_peeked_is_read_in_full(
    counting: CountingStore, cache: ReadCache
) -> None:
    pm = PersistenceManager(CachingStore(counting, cache), compaction="deferred")
    pm.save_analysis("cb", make_analysis("cb", n=2))
    pm.append_file_analyses("cb", {"/src/new.py": make_file_analysis("/src/new.py")}, {})
    pm.compact("cb")
    _rewrite_compact(counting, "cb")
    # Nothing pending: the full read answers (private), with what is stored.
    whole = pm.load_analysis("cb")
    assert whole is not None
    assert not is_frozen(whole)
    assert set(whole.file_analyses) == {"/src/m0.py", "/src/m1.py", "/src/new.py"}
    # A merge pending on top of it is folded in, not hidden behind the unpeeked record.
    pm.append_file_analyses("cb", {"/src/newer.py": make_file_analysis("/src/newer.py")}, {})
    later = pm.load_analysis("cb")
    assert later is not None
    assert "/src/newer.py" in later.file_analyses
    assert len(later.file_analyses) == 4


def test_an_unpeekable_body_with_no_journal_is_still_checked_against_its_parse(
    counting: CountingStore, cache: ReadCache, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The peek is only a shortcut: when it disagrees with the parse, the full read decides.
    import documee_remote.cache as cache_module

    pm = PersistenceManager(CachingStore(counting, cache), compaction="deferred")
    pm.save_analysis("cb", make_analysis("cb", n=2))
    pm.append_file_analyses("cb", {"/src/new.py": make_file_analysis("/src/new.py")}, {})
    pm.compact("cb")
    for meta in list(counting.list_meta(layout.journal_prefix("cb"))):
        counting.delete(meta.key)  # an emptied journal: nothing listed, nothing pending
    monkeypatch.setattr(cache_module, "peek_book", lambda raw: {})
    found = pm.load_analysis("cb")
    assert found is not None
    assert not is_frozen(found)
    assert len(found.file_analyses) == 3


def test_an_absent_analysis_is_none(counting: CountingStore, cache: ReadCache) -> None:
    pm = PersistenceManager(CachingStore(counting, cache))
    assert pm.load_analysis("nothing") is None


# -- configuration ------------------------------------------------------------------------------


@pytest.fixture
def no_cache_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    for name in ("DOCUMEE_CACHE", "DOCUMEE_CACHE_DIR", "DOCUMEE_CACHE_MAX_BYTES"):
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


def test_the_cache_is_off_unless_asked(no_cache_env: pytest.MonkeyPatch, tmp_path: Path) -> None:
    assert resolve_cache(None) is None
    no_cache_env.setenv("DOCUMEE_CACHE_DIR", str(tmp_path / "c"))
    found = resolve_cache(None)
    assert found is not None
    assert found.directory == tmp_path / "c"
    assert resolve_cache(False) is None  # the argument wins
    no_cache_env.setenv("DOCUMEE_CACHE", "false")
    assert resolve_cache(None) is None
    no_cache_env.setenv("DOCUMEE_CACHE_MAX_BYTES", "12345")
    explicit = resolve_cache(tmp_path / "d")
    assert explicit is not None
    assert explicit.max_bytes == 12345


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("DOCUMEE_CACHE", "maybe"),
        ("DOCUMEE_CACHE_MAX_BYTES", "-1"),
        ("DOCUMEE_CACHE_MAX_BYTES", "lots"),
    ],
)
def test_a_bad_variable_is_named(no_cache_env: pytest.MonkeyPatch, name: str, value: str) -> None:
    no_cache_env.setenv(name, value)
    with pytest.raises(ConfigurationError) as caught:
        open_store("memory://")
    assert name in str(caught.value)
    assert value not in str(caught.value)


def test_local_and_memory_stores_are_never_wrapped(tmp_path: Path) -> None:
    assert not isinstance(open_store("memory://", cache=True), CachingStore)
    assert not isinstance(open_store(str(tmp_path / "s"), cache=tmp_path / "c"), CachingStore)


def test_a_store_object_is_wrapped_only_when_asked(
    no_cache_env: pytest.MonkeyPatch, s3_endpoint: S3Endpoint, tmp_path: Path
) -> None:
    no_cache_env.setenv("DOCUMEE_CACHE_DIR", str(tmp_path / "c"))
    store = s3_endpoint.store()
    assert open_store(store) is store  # a Store is used as it is: the environment is not read
    pm = PersistenceManager(store, cache=ReadCache(tmp_path / "d"))
    assert isinstance(pm.store, CachingStore)
    assert isinstance(
        PersistenceManager(s3_endpoint.url("x/"), endpoint_url=s3_endpoint.endpoint_url).store,
        CachingStore,
    )
    pm.close()


def test_default_directories(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("AWS_LAMBDA_FUNCTION_NAME", "compact")
    assert str(default_cache_dir()).startswith(("/tmp", os.environ.get("TMPDIR", "/tmp")))
    monkeypatch.delenv("AWS_LAMBDA_FUNCTION_NAME")
    if os.name == "posix" and os.uname().sysname == "Linux":
        monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
        assert default_cache_dir() == tmp_path / "documee-remote"


# -- the CLI and the Lambda handler -----------------------------------------------------------


def test_the_cli_reads_through_the_cache_and_manages_it(
    no_cache_env: pytest.MonkeyPatch, s3_endpoint: S3Endpoint, tmp_path: Path
) -> None:
    from click.testing import CliRunner

    from documee_remote.cli import cli

    writer = PersistenceManager(remote(s3_endpoint, "s3"))
    writer.save_analysis("cb", make_analysis("cb", n=2))
    env = {
        "DOCUMEE_S3_ENDPOINT_URL": s3_endpoint.endpoint_url,
        "DOCUMEE_S3_REGION": s3_endpoint.region,
        "DOCUMEE_STORE_URL": s3_endpoint.url("store-root/"),
        "DOCUMEE_CACHE_DIR": str(tmp_path / "cli-cache"),
    }
    runner = CliRunner()
    shown = runner.invoke(cli, ["show", "cb", "--json"], env=env, catch_exceptions=False)
    assert shown.exit_code == 0, shown.output
    info = runner.invoke(cli, ["cache", "info", "--json"], env=env, catch_exceptions=False)
    assert info.exit_code == 0, info.output
    found = json.loads(info.stdout)
    assert found["directory"] == str(tmp_path / "cli-cache")
    assert found["entries"] >= 1  # analysis.json, read by show
    cleared = runner.invoke(cli, ["cache", "clear", "--json"], env=env, catch_exceptions=False)
    assert json.loads(cleared.stdout)["removed"] == found["entries"]
    again = runner.invoke(cli, ["cache", "info", "--json"], env=env, catch_exceptions=False)
    assert json.loads(again.stdout)["entries"] == 0
    bad = runner.invoke(cli, ["cache", "info"], env={**env, "DOCUMEE_CACHE_MAX_BYTES": "x"})
    assert bad.exit_code == 8
    assert "DOCUMEE_CACHE_MAX_BYTES" in bad.output
    writer.close()


def test_the_lambda_handler_uses_the_cache_when_configured(
    no_cache_env: pytest.MonkeyPatch, s3_endpoint: S3Endpoint, tmp_path: Path
) -> None:
    from documee_remote import aws_lambda

    monkeypatch = no_cache_env
    monkeypatch.setenv("DOCUMEE_STORE_URL", s3_endpoint.url("store-root/"))
    monkeypatch.setenv("DOCUMEE_S3_ENDPOINT_URL", s3_endpoint.endpoint_url)
    monkeypatch.setenv("DOCUMEE_CACHE", "true")
    monkeypatch.setenv("AWS_LAMBDA_FUNCTION_NAME", "documee-compact")
    monkeypatch.setattr("tempfile.tempdir", str(tmp_path))  # Lambda's /tmp, here
    aws_lambda.clear_caches()
    writer = PersistenceManager(remote(s3_endpoint, "s3"))
    writer.save_analysis("cb", make_analysis("cb", n=2))
    try:
        pm = aws_lambda.get_manager()
        assert isinstance(pm.store, CachingStore)
        assert pm.store.cache.directory == tmp_path / "documee-remote-cache"
        assert pm.load_analysis("cb") is aws_lambda.get_manager().load_analysis("cb")
    finally:
        aws_lambda.clear_caches()
        writer.close()


def test_the_benchmark_runs_and_a_hit_moves_no_body(tmp_path: Path) -> None:
    """benchmarks/cache_bench.py end to end, tiny (the numbers are judged by `make bench`)."""
    pytest.importorskip("moto")
    from benchmarks import cache_bench

    rows = {r["row"]: r for r in cache_bench.run(20, 0.0, 1, tmp_path)}
    assert (tmp_path / "cache.md").exists()
    for name in ("memory hit (shared)", "disk hit, new process", "memory hit after the merge"):
        assert rows[name]["requests"] == 2, name
        assert rows[name]["statuses"].get("304") == 1, name
        assert rows[name]["bytes"] < 2000, name  # the listing's XML, no object body
    assert rows["after one merge (changed)"]["bytes"] > rows["memory hit (shared)"]["bytes"]


def test_what_a_deferred_merge_returns_is_the_callers(
    counting: CountingStore, cache: ReadCache
) -> None:
    pm = PersistenceManager(CachingStore(counting, cache), compaction="deferred")
    pm.save_analysis("cb", make_analysis("cb", n=2))
    pm.load_analysis("cb")  # the shared parse exists
    merged = pm.merge_file_analyses("cb", {"/src/x.py": make_file_analysis("/src/x.py")}, {})
    assert not is_frozen(merged)
    merged.analyzed_at = "the caller's"  # no ReadOnlyAnalysisError


class _CountingParses:
    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        from documee_remote import codec

        self.calls = 0
        real = codec.load_codebase_analysis

        def counting(*args: Any, **kwargs: Any) -> Any:
            self.calls += 1
            time.sleep(0.05)  # a parse takes a while: the others arrive meanwhile
            return real(*args, **kwargs)

        monkeypatch.setattr(codec, "load_codebase_analysis", counting)


def test_sixteen_concurrent_loads_fetch_once_and_parse_once(
    counting: CountingStore, cache: ReadCache, monkeypatch: pytest.MonkeyPatch
) -> None:
    pm = PersistenceManager(CachingStore(counting, cache))
    pm.save_analysis("cb", make_analysis("cb", n=5))
    parses = _CountingParses(monkeypatch)
    counting.delay = 0.1
    barrier = threading.Barrier(16)
    got: list[Any] = []

    def load() -> None:
        barrier.wait()
        got.append(pm.load_analysis("cb"))

    threads = [threading.Thread(target=load) for _ in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(got) == 16
    assert all(a is got[0] for a in got)  # one shared result
    assert counting.bodies["cb/analysis.json"] == 1
    assert counting.gets["cb/analysis.json"] <= 2
    assert parses.calls == 1


def test_documees_own_class_gets_private_analyses(
    counting: CountingStore, cache: ReadCache
) -> None:
    from documee_remote.documee import PersistenceManager as DocumeesManager

    pm = DocumeesManager(CachingStore(counting, cache))
    pm.save_analysis("cb", make_analysis("cb", n=2))
    pm.load_analysis("cb")
    loaded = pm.load_analysis("cb")
    assert loaded is not None
    assert not is_frozen(loaded)
    assert counting.bodies["cb/analysis.json"] == 1  # still no second body


def test_a_pickled_shared_analysis_comes_back_private(pms: tuple[PersistenceManager, Any]) -> None:
    import pickle

    from documee_remote import codec

    pm, _ = pms
    shared = pm.load_analysis("cb")
    assert shared is not None
    back = pickle.loads(pickle.dumps(shared))
    assert not is_frozen(back)
    assert codec.dump_codebase_analysis(back) == codec.dump_codebase_analysis(shared)
    back.analyzed_at = "mine"
