"""Faults injected between the manager and in-process stores (memory, local disk).

Each kind runs the same merge job (new files, updates, removals) through a
:class:`FaultyStore`. The job retries a step only when the library raised
one of its documented typed errors; anything else fails the test. Afterwards,
with the faults off, the stored codebase must be exactly what the job
acknowledged, every object must parse, and verify must find nothing to
repair (after one repair pass with no grace period, for per-file objects
that a failed step wrote before its commit point).
"""

from __future__ import annotations

import json
import re
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from documee_remote import PersistenceManager, RetryPolicy
from documee_remote.compaction import CompactionPolicy
from documee_remote.errors import (
    ConditionalRequestConflictError,
    DocumeeRemoteError,
    PermissionDeniedError,
    ServiceUnavailableError,
    StorageTimeoutError,
    ThrottledError,
)
from documee_remote.merge import new_analysis, refresh_derived
from documee_remote.stores import LocalStore, MemoryStore, Store
from documee_remote.testing.faulty import FaultPlan, FaultyStore

from ._helpers import (
    ANALYSIS_KEY,
    assert_consistent,
    check_job_outcome,
    check_objects_parse,
    lost_updates,
    merge_job,
    merge_until_acknowledged,
    named_delta_copies,
    repair_then_clean,
    versioned,
)
from .conftest import FaultLedger

FAST = RetryPolicy(max_attempts=40, base_delay=0.001, max_delay=0.01, deadline=30)

#: kind -> how to plan it. Probabilities are per call; the job makes ~150 calls.
KINDS: dict[str, Callable[[FaultPlan], None]] = {
    "503-slowdown-storm": lambda p: p.add(
        "503-slowdown-storm", error=ThrottledError, probability=0.3, times=None
    ),
    "500-internal-error": lambda p: p.add(
        "500-internal-error", error=ServiceUnavailableError, probability=0.15, times=None
    ),
    "409-conditional-conflict": lambda p: p.add(
        "409-conditional-conflict",
        op="put",
        key=ANALYSIS_KEY,
        error=ConditionalRequestConflictError,
        probability=0.5,
        times=None,
    ),
    "reset-before-write": lambda p: p.add(
        "reset-before-write",
        op=("put", "delete"),
        error=ServiceUnavailableError,
        probability=0.25,
        times=None,
    ),
    "reset-after-write": lambda p: p.add(
        "reset-after-write",
        op=("put", "delete"),
        error=ServiceUnavailableError,
        after=True,
        probability=0.25,
        times=None,
    ),
    "read-timeout": lambda p: p.add(
        "read-timeout",
        op=("get", "head", "list"),
        error=StorageTimeoutError,
        delay=0.002,
        probability=0.2,
        times=None,
    ),
    "truncated-body": lambda p: p.add(
        "truncated-body", op="get", truncate=0.5, probability=0.25, times=None
    ),
    "permission-denied-mid-save": lambda p: p.add(
        "permission-denied-mid-save", op="put", error=PermissionDeniedError, nth=7, times=3
    ),
}


@pytest.fixture(params=["memory", "local"])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    store: Store = MemoryStore() if request.param == "memory" else LocalStore(tmp_path / "root")
    with store:
        yield store


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_merge_job_under_faults_loses_nothing(
    kind: str, backend: Store, fault_ledger: FaultLedger
) -> None:
    plan = FaultPlan(seed=sorted(KINDS).index(kind))
    KINDS[kind](plan)
    pm = PersistenceManager(FaultyStore(backend, plan, close_inner=False), retry=FAST)
    job = merge_job(pm, "cb1", steps=10, seed=1)
    injected = plan.total_injected
    plan.clear()
    lost = lost_updates(pm, "cb1", job.expected)
    fault_ledger.record(
        "inprocess",
        kind,
        type(backend).__name__.replace("Store", "").lower(),
        injected=injected,
        survived=injected if lost == 0 else 0,
        surfaced=sum(job.surfaced.values()),
        lost=lost,
        note=",".join(f"{k}={v}" for k, v in sorted(job.surfaced.items())),
    )
    assert injected > 0
    assert lost == 0
    check_job_outcome(PersistenceManager(backend), "cb1", job)
    if kind == "409-conditional-conflict":
        assert job.stats.conflicts >= injected  # each 409 cost an attempt, not the update
    if kind == "truncated-body":
        # A truncated analysis.json does not parse: the merge stops with the typed error
        # before writing anything, and the stored object is intact.
        assert set(job.surfaced) <= {"CorruptObjectError"}


def test_throttling_longer_than_the_retry_deadline_raises_in_time(
    backend: Store, fault_ledger: FaultLedger
) -> None:
    pm = PersistenceManager(backend)
    pm.merge_file_analyses("cb1", {"/a.py": versioned("/a.py", 1)}, {})
    before = backend.get("cb1/analysis.json").data
    plan = FaultPlan()
    plan.add("503-forever", op="put", key=ANALYSIS_KEY, error=ThrottledError, times=None)
    deadline = 0.4
    faulty = PersistenceManager(
        FaultyStore(backend, plan, close_inner=False),
        retry=RetryPolicy(max_attempts=10_000, base_delay=0.005, max_delay=0.05, deadline=deadline),
    )
    started = time.monotonic()
    with pytest.raises(ThrottledError) as info:
        faulty.merge_file_analyses("cb1", {"/b.py": versioned("/b.py", 1)}, {})
    elapsed = time.monotonic() - started
    fault_ledger.record(
        "inprocess",
        "throttled-past-deadline",
        type(backend).__name__.replace("Store", "").lower(),
        injected=plan.total_injected,
        survived=0,
        surfaced=1,
        note=f"gave up after {elapsed:.2f}s (deadline {deadline}s)",
    )
    assert info.value.key == "cb1/analysis.json"
    assert elapsed < deadline + 0.5
    assert plan.total_injected >= 3
    assert backend.get("cb1/analysis.json").data == before  # the commit point did not move
    # The merge itself is durable in the journal, and the error says so: readers of this
    # library see it, and the first compaction after the storm folds it.
    notes = " ".join(getattr(info.value, "__notes__", []))
    pending = sorted(k for k in backend.list("cb1/_journal/") if k.rsplit("/", 1)[1][0] == "w")
    assert len(pending) == 2  # the first merge's delta (folded) and this one's
    assert pending[1].rsplit("/", 1)[1].removesuffix(".json") in notes
    assert list(pm.load_analysis("cb1").file_analyses) == ["/a.py", "/b.py"]  # type: ignore[union-attr]
    report = pm.compact("cb1")
    assert (report.folded, report.commit, report.analysis_written) == (1, 2, True)
    assert backend.get("cb1/analysis.json").data != before
    repair_then_clean(pm, "cb1")
    assert list(pm.load_analysis("cb1").file_analyses) == ["/a.py", "/b.py"]  # type: ignore[union-attr]


def test_permission_denied_mid_save_keeps_the_previous_analysis(
    backend: Store, fault_ledger: FaultLedger
) -> None:
    pm = PersistenceManager(backend)
    v1 = new_analysis("cb1")
    for i in range(10):
        v1.file_analyses[f"/f{i}.py"] = versioned(f"/f{i}.py", 1)
    refresh_derived(v1)
    pm.save_analysis("cb1", v1)
    v2 = v1.model_copy(deep=True)
    for i in range(0, 10, 2):
        v2.file_analyses[f"/f{i}.py"] = versioned(f"/f{i}.py", 2)
    v2.file_analyses.pop("/f9.py")
    refresh_derived(v2)
    plan = FaultPlan()
    plan.add("permission-denied", op="put", error=PermissionDeniedError, nth=3, times=None)
    faulty = PersistenceManager(FaultyStore(backend, plan, close_inner=False))
    with pytest.raises(PermissionDeniedError) as info:
        faulty.save_analysis("cb1", v2)
    assert info.value.key is not None
    assert info.value.key.startswith("cb1/")
    assert pm.load_analysis("cb1") == v1
    check_objects_parse(backend)
    first = repair_then_clean(pm, "cb1")
    assert first.repaired >= 2  # per-file objects of v2 written before the refusal
    assert pm.load_analysis("cb1") == v1
    plan.clear()
    faulty.save_analysis("cb1", v2)
    assert pm.load_analysis("cb1") == v2
    assert pm.verify("cb1").findings == []
    fault_ledger.record(
        "inprocess",
        "permission-denied-save",
        type(backend).__name__.replace("Store", "").lower(),
        injected=plan.total_injected,
        survived=plan.total_injected,
        surfaced=1,
    )


def test_a_truncated_read_is_read_again_and_a_corrupt_object_reported() -> None:
    inner = MemoryStore()
    pm = PersistenceManager(inner)
    pm.merge_file_analyses("cb1", {"/a.py": versioned("/a.py", 1)}, {"/a.py": "h"})
    stored = {k: inner.get(k).data for k in inner.list()}
    # One read cut short: the bytes do not parse, so they are read once more.
    plan = FaultPlan()
    plan.add("truncated", op="get", key=ANALYSIS_KEY, truncate=0.9)
    faulty = PersistenceManager(FaultyStore(inner, plan))
    assert faulty.load_analysis("cb1") == pm.load_analysis("cb1")
    assert plan.total_injected == 1
    # The same unparseable bytes twice: the object itself is corrupt, and says so.
    plan = FaultPlan()
    plan.add("truncated", op="get", key=ANALYSIS_KEY, truncate=0.9, times=None)
    faulty = PersistenceManager(FaultyStore(inner, plan))
    with pytest.raises(DocumeeRemoteError) as info:
        faulty.load_analysis("cb1")
    assert type(info.value).__name__ == "CorruptObjectError"
    assert info.value.codebase_id == "cb1"
    assert plan.total_injected == 2
    assert {k: inner.get(k).data for k in inner.list()} == stored


def test_lease_acquire_gives_up_in_time_under_a_409_storm(fault_ledger: FaultLedger) -> None:
    plan = FaultPlan()
    plan.add(
        "409-storm",
        op="put",
        key=r"_lease\.json$",
        error=ConditionalRequestConflictError,
        times=None,
    )
    pm = PersistenceManager(FaultyStore(MemoryStore(), plan))
    outcome: list[str] = []

    def acquire() -> None:
        try:
            pm.lease("cb1", wait=0.3, auto_renew=False).acquire().release()
            outcome.append("acquired")
        except DocumeeRemoteError as exc:
            outcome.append(type(exc).__name__)

    worker = threading.Thread(target=acquire, daemon=True)
    worker.start()
    worker.join(2.0)
    finished_in_time = not worker.is_alive()
    requests = plan.calls["put"]
    plan.clear()  # let a spinning acquire finish
    worker.join(5.0)
    fault_ledger.figure("lease 409 storm: PUTs in 2 s", requests)
    assert finished_in_time, f"still spinning after 2 s (wait=0.3) with {requests} PUTs"
    assert requests < 200  # backed off rather than hammering the store


def test_a_landed_commit_whose_response_was_lost_is_not_applied_twice() -> None:
    plan = FaultPlan()
    pm = PersistenceManager(FaultyStore(MemoryStore(), plan), retry=FAST)
    pm.merge_file_analyses("cb1", {"/a.py": versioned("/a.py", 1)}, {}, analysis_time_ms=100)
    plan.add("lost-response", op="put", key=ANALYSIS_KEY, error=ServiceUnavailableError, after=True)
    committed = pm.merge_file_analyses(
        "cb1", {"/b.py": versioned("/b.py", 1)}, {}, analysis_time_ms=100
    )
    assert plan.total_injected == 1
    assert committed.metrics.analysis_time_ms == 200  # today: 300, the time counted twice


# -- group commit (issue 14): faults on the requests the named-delta protocol added -------------

FOLDER_KEY = r"/_journal/_folder\.json$"
NAMED_DELTA_KEY = r"/_journal/w\d{13}-[0-9a-f]{16}\.json$"

#: kind -> how to plan it: every request group commit added, failing before or after it
#: landed. Probabilities are per matching call.
GROUP_KINDS: dict[str, Callable[[FaultPlan], object]] = {
    "folder-record-get-503": lambda p: p.add(
        "folder-record-get-503",
        op="get",
        key=FOLDER_KEY,
        error=ThrottledError,
        probability=0.4,
        times=None,
    ),
    "folder-record-put-500": lambda p: p.add(
        "folder-record-put-500",
        op="put",
        key=FOLDER_KEY,
        error=ServiceUnavailableError,
        probability=0.3,
        times=None,
    ),
    "folder-record-put-lost-response": lambda p: p.add(
        "folder-record-put-lost-response",
        op="put",
        key=FOLDER_KEY,
        error=ServiceUnavailableError,
        after=True,
        probability=0.3,
        times=None,
    ),
    "delta-put-lost-response": lambda p: p.add(
        "delta-put-lost-response",
        op="put",
        key=NAMED_DELTA_KEY,
        error=ServiceUnavailableError,
        after=True,
        probability=0.5,
        times=None,
    ),
    # The PUT landed, its response was lost, and the HEAD that would recognise it
    # fails too: the retry must still not store the merge a second time, under
    # another name.
    "delta-put-lost-response-head-503": lambda p: (
        p.add(
            "delta-put-lost-response",
            op="put",
            key=NAMED_DELTA_KEY,
            error=ServiceUnavailableError,
            after=True,
            probability=0.5,
            times=None,
        ),
        p.add(
            "delta-head-503",
            op="head",
            key=NAMED_DELTA_KEY,
            error=ThrottledError,
            probability=0.6,
            times=None,
        ),
    ),
    "journal-list-503": lambda p: p.add(
        "journal-list-503",
        op="list",
        key=r"/_journal/$",
        error=ThrottledError,
        probability=0.4,
        times=None,
    ),
    "analysis-409-while-folding": lambda p: p.add(
        "analysis-409-while-folding",
        op="put",
        key=ANALYSIS_KEY,
        error=ConditionalRequestConflictError,
        probability=0.4,
        times=None,
    ),
}

GROUP_WRITERS = 4
GROUP_MERGES = 6


@pytest.mark.parametrize("kind", sorted(GROUP_KINDS))
def test_group_commit_under_faults_loses_nothing_and_applies_nothing_twice(
    kind: str, fault_ledger: FaultLedger
) -> None:
    """Writers (threads) merge at once, so one folds for the others while the
    requests the named-delta protocol added fail: no acknowledged merge is
    lost, each merge is stored as exactly one delta, each delta is folded
    once (its analysis time counted once), and what surfaces is typed."""
    inner = MemoryStore()
    plan = FaultPlan(seed=sorted(GROUP_KINDS).index(kind))
    GROUP_KINDS[kind](plan)
    policy = CompactionPolicy(group_wait_seconds=0.2)
    surfaced: Counter[str] = Counter()
    untyped: list[BaseException] = []
    tries: Counter[str] = Counter()
    lock = threading.Lock()

    def writer(w: int) -> None:
        pm = PersistenceManager(
            FaultyStore(inner, plan, close_inner=False), retry=FAST, compaction=policy
        )
        try:
            for i in range(GROUP_MERGES):
                merge_until_acknowledged(
                    pm, f"/w{w}/f{i}.py", i, tries=tries, surfaced=surfaced, lock=lock
                )
        except BaseException as exc:
            untyped.append(exc)

    threads = [threading.Thread(target=writer, args=(w,)) for w in range(GROUP_WRITERS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    injected = plan.injected
    plan.clear()
    assert not any(t.is_alive() for t in threads), "a writer hung"
    assert untyped == []
    expected = {f"/w{w}/f{i}.py" for w in range(GROUP_WRITERS) for i in range(GROUP_MERGES)}
    # Eager: analysis.json alone holds every acknowledged merge.
    plain = json.loads(inner.get("cb1/analysis.json").data)["file_analyses"]
    missing = sorted(expected - set(plain))
    # One delta per merge attempt that reached the journal, never two for one attempt.
    copies, deltas = named_delta_copies(inner, "cb1")
    repeated = {p: n for p, n in copies.items() if n > tries[p]}
    pm = PersistenceManager(inner)
    pm.compact("cb1")
    final = pm.load_analysis("cb1")
    assert final is not None
    fault_ledger.record(
        "inprocess",
        f"group-commit {kind}",
        "memory",
        injected=sum(injected.values()),
        survived=sum(injected.values()) if not (missing or repeated) else 0,
        surfaced=sum(surfaced.values()),
        lost=len(missing),
        note=",".join(f"{k}={v}" for k, v in sorted(surfaced.items())),
    )
    assert sum(injected.values()) > 0, injected
    assert missing == []
    assert repeated == {}
    # Merges that never surfaced an error: exactly one delta each.
    assert [p for p in expected if tries[p] == 1 and copies[p] != 1] == []
    # Each delta folded exactly once: the analysis time counts every delta once.
    assert final.metrics.analysis_time_ms == deltas
    assert set(final.file_analyses) == expected
    assert_consistent(final, "cb1")
    repair_then_clean(pm, "cb1")


@pytest.mark.parametrize("grace_seconds", [1800.0, 0.0])
def test_a_landed_delta_whose_response_and_head_were_lost_is_stored_once(
    grace_seconds: float,
) -> None:
    """The delta PUT lands but its response is lost, and the HEADs that would
    recognise it fail too: the retry must keep the name (a 412 there is our
    own delta, or cannot be told apart yet), never store the merge again
    under another name, where it would be folded twice. With no grace
    period every retry would otherwise pick a fresh name."""
    inner = MemoryStore()
    plan = FaultPlan()
    plan.add("lost", op="put", key=NAMED_DELTA_KEY, error=ServiceUnavailableError, after=True)
    plan.add("head-503", op="head", key=NAMED_DELTA_KEY, error=ThrottledError, times=2)
    policy = CompactionPolicy(grace_seconds=grace_seconds)
    pm = PersistenceManager(FaultyStore(inner, plan), retry=FAST, compaction=policy)
    pm.merge_file_analyses("cb1", {"/a.py": versioned("/a.py", 1)}, {}, analysis_time_ms=5.0)
    assert plan.injected == {"lost": 1, "head-503": 2}
    loaded = PersistenceManager(inner).load_analysis("cb1")
    assert loaded is not None
    assert loaded.metrics.analysis_time_ms == 5.0  # folded once: stored once
    if grace_seconds:  # (with none, the folded deltas are pruned at once)
        named = [k for k in inner.list("cb1/_journal/") if re.search(NAMED_DELTA_KEY, k)]
        assert len(named) == 1, named


@pytest.mark.parametrize("nth", [1, 2, 3], ids=["taking", "cycle-done", "freeing"])
def test_a_lost_response_on_the_folder_record_costs_no_group_wait(nth: int) -> None:
    """A folder-record PUT lands but its response is lost (a lone writer's merge
    takes the record, says its cycle is done, frees it). The writer must know
    the record is its own: not wait ``group_wait_seconds`` for itself to go
    stale (taking), nor leave it held so that the next merge waits."""
    wait = 5.0
    plan = FaultPlan()
    plan.add("lost", op="put", key=FOLDER_KEY, error=ServiceUnavailableError, after=True, nth=nth)
    pm = PersistenceManager(
        FaultyStore(MemoryStore(), plan),
        retry=FAST,
        compaction=CompactionPolicy(group_wait_seconds=wait),
    )
    took = []
    for path in ("/a.py", "/b.py"):
        started = time.monotonic()
        pm.merge_file_analyses("cb1", {path: versioned(path, 1)}, {})
        took.append(time.monotonic() - started)
    assert plan.injected == {"lost": 1}
    assert max(took) < wait / 2, took
    loaded = pm.load_analysis("cb1")
    assert loaded is not None
    assert set(loaded.file_analyses) == {"/a.py", "/b.py"}
