"""Merges on S3 (a real moto server over HTTP): races, faults, and the spurious 412.

The harness serialises conditional writes per key, as S3 does (moto alone
checks and writes in separate steps and would lose updates under
concurrency); 409 ConditionalRequestConflict, which moto never sends, and
lost responses come from its fault injector.
"""

from __future__ import annotations

import functools
from pathlib import Path

import pytest

from documee_remote import (
    PersistenceManager,
    RetryPolicy,
    ServiceUnavailableError,
    ThrottledError,
    TransactionStats,
)
from documee_remote.stores import open_store
from documee_remote.testing.factories import content_hash, make_file_analysis
from documee_remote.testing.fixtures import S3Endpoint
from documee_remote.testing.moto_server import (
    CONDITIONAL_CONFLICT,
    DROP,
    INTERNAL_ERROR,
    SLOW_DOWN,
)

from .test_manager import check_round_trip
from .test_merge import check_merge_race

FAST = RetryPolicy(max_attempts=60, base_delay=0.005, max_delay=0.05, deadline=60)
ANALYSIS_PUT = r"analysis\.json$"


def s3_pm(s3_endpoint: S3Endpoint, **options: object) -> PersistenceManager:
    return PersistenceManager(s3_endpoint.store(**options), retry=FAST)  # type: ignore[arg-type]


def files(n: int, prefix: str = "/src/f") -> dict[str, object]:
    return {f"{prefix}{i}.py": make_file_analysis(f"{prefix}{i}.py") for i in range(n)}


@pytest.mark.slow
def test_eight_processes_merging_into_s3_lose_nothing(s3_endpoint: S3Endpoint) -> None:
    factory = functools.partial(
        open_store,
        s3_endpoint.url("race/"),
        endpoint_url=s3_endpoint.endpoint_url,
        region=s3_endpoint.region,
    )
    check_merge_race(factory, factory(), workers=8, merges=25)


def test_merges_survive_slowdown_storms_500s_and_409s(
    s3_endpoint: S3Endpoint, fast_retries: None
) -> None:
    faults = s3_endpoint.server.faults
    faults.add(SLOW_DOWN, probability=0.25, times=None)
    faults.add(INTERNAL_ERROR, method="GET", probability=0.1, times=None)
    faults.add(CONDITIONAL_CONFLICT, method="PUT", key=ANALYSIS_PUT, nth=2, times=5)
    pm = s3_pm(s3_endpoint)
    stats = TransactionStats()
    for i in range(12):
        path = f"/src/f{i}.py"
        pm.merge_file_analyses(
            "cb1", {path: make_file_analysis(path)}, {path: content_hash(path)}, stats=stats
        )
    injected = faults.faults
    faults.clear()
    final = pm.load_analysis("cb1")
    assert final is not None
    assert set(final.file_analyses) == {f"/src/f{i}.py" for i in range(12)}
    assert len(pm.get_file_hashes("cb1")) == 12
    assert pm.verify("cb1").ok
    assert injected["ConditionalRequestConflict"] == 5
    assert injected["SlowDown"] > 0
    assert stats.conflicts >= 5  # each 409 cost the transaction one attempt


def test_dropped_connections_during_merges_lose_nothing(
    s3_endpoint: S3Endpoint, fast_retries: None
) -> None:
    faults = s3_endpoint.server.faults
    faults.add(DROP, method="PUT", probability=0.2, times=None)
    faults.add(DROP, method="PUT", after=True, probability=0.2, times=None)
    pm = s3_pm(s3_endpoint)
    for i in range(10):
        path = f"/src/f{i}.py"
        pm.merge_file_analyses("cb1", {path: make_file_analysis(path)}, {path: content_hash(path)})
    dropped = faults.faults["drop"]
    faults.clear()
    final = pm.load_analysis("cb1")
    assert final is not None
    assert len(final.file_analyses) == 10
    assert pm.verify("cb1").ok
    assert dropped > 0


def test_spurious_412_during_a_merge_counts_as_success(
    s3_endpoint: S3Endpoint, fast_retries: None
) -> None:
    pm = s3_pm(s3_endpoint)
    pm.merge_file_analyses("cb1", files(2), {})  # type: ignore[arg-type]
    # The next conditional PUT of analysis.json lands, but its response is
    # lost; botocore resends it and S3 answers 412 to our own write.
    rule = s3_endpoint.server.faults.add(DROP, method="PUT", key=ANALYSIS_PUT, after=True)
    stats = TransactionStats()
    committed = pm.merge_file_analyses(
        "cb1", {"/src/new.py": make_file_analysis("/src/new.py")}, {}, stats=stats
    )
    assert rule.fired == 1
    assert stats.conflicts == 0  # recognised as our own write, not a lost race
    assert "/src/new.py" in committed.file_analyses
    loaded = pm.load_analysis("cb1")
    assert loaded is not None
    assert set(loaded.file_analyses) == {"/src/f0.py", "/src/f1.py", "/src/new.py"}


def test_storage_that_keeps_failing_surfaces_a_typed_error(
    s3_endpoint: S3Endpoint, fast_retries: None
) -> None:
    pm = PersistenceManager(
        s3_endpoint.store(max_attempts=2),
        retry=RetryPolicy(max_attempts=3, base_delay=0.001, deadline=10),
    )
    pm.merge_file_analyses("cb1", files(1), {})  # type: ignore[arg-type]
    before = s3_endpoint.backdoor().read("cb1/analysis.json")
    s3_endpoint.server.faults.add(SLOW_DOWN, method="PUT", key=ANALYSIS_PUT, times=None)
    with pytest.raises((ThrottledError, ServiceUnavailableError)) as info:
        pm.merge_file_analyses("cb1", {"/x.py": make_file_analysis("/x.py")}, {})
    assert info.value.key is not None
    assert "cb1" in str(info.value)
    s3_endpoint.server.faults.clear()
    assert s3_endpoint.backdoor().read("cb1/analysis.json") == before


def test_incremental_save_of_two_files_is_a_handful_of_requests(s3_endpoint: S3Endpoint) -> None:
    from documee_remote.merge import new_analysis, refresh_derived

    pm = s3_pm(s3_endpoint)
    analysis = new_analysis("cb1")
    for i in range(300):
        path = f"/src/f{i}.py"
        analysis.file_analyses[path] = make_file_analysis(path)
    refresh_derived(analysis)
    pm.save_analysis("cb1", analysis)
    for path in ("/src/f10.py", "/src/f200.py"):
        analysis.file_analyses[path] = make_file_analysis(path, functions=8)
    refresh_derived(analysis)
    s3_endpoint.server.faults.clear()  # zero the request counters
    report = pm.save_analysis("cb1", analysis)
    requests = s3_endpoint.server.faults.requests
    assert report.uploaded == 2
    assert requests["PUT"] == 3  # two per-file objects and analysis.json
    assert sum(requests.values()) <= 10, requests
    loaded = pm.load_analysis("cb1")
    assert loaded == analysis


@pytest.mark.parametrize("backend", ["s3", "fsspec"])
def test_fixtures_round_trip_byte_for_byte_through_s3_backends(
    s3_endpoint: S3Endpoint, codebase_dir: Path, backend: str
) -> None:
    store = open_store(
        s3_endpoint.url("fixtures/"),
        backend=backend,
        endpoint_url=s3_endpoint.endpoint_url,
        region=s3_endpoint.region,
    )
    with store:
        check_round_trip(store, codebase_dir)
    # And the bytes in the bucket are the fixture's own, read without the store.
    analysis = (codebase_dir / "analysis.json").read_bytes()
    if analysis:
        backdoor = s3_endpoint.backdoor("fixtures/")
        assert backdoor.read(f"{codebase_dir.name}/analysis.json") == analysis
