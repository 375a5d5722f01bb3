"""Faults on the wire: the moto harness's injector and HTTP faults, under real boto3.

The same merge job as in-process (new files, updates, removals) runs against
the harness server while it answers 503 SlowDown storms, 500s, 409
ConditionalRequestConflict, drops connections before and after applying a
write, stalls past the client's read timeout, truncates bodies, refuses a
save half-way, and while the assumed role's credentials expire mid-job.
"""

from __future__ import annotations

import json
import re
import threading
import time
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import boto3
import pytest

from documee_remote import PersistenceManager, RetryPolicy
from documee_remote.compaction import CompactionPolicy
from documee_remote.errors import (
    ObjectTooLargeError,
    PermissionDeniedError,
    ServiceUnavailableError,
    ThrottledError,
)
from documee_remote.stores.s3 import S3Store
from documee_remote.testing.faulty import HttpFaults
from documee_remote.testing.fixtures import TEST_REGION, S3Endpoint
from documee_remote.testing.moto_server import (
    ACCESS_DENIED,
    CONDITIONAL_CONFLICT,
    DROP,
    INTERNAL_ERROR,
    SLOW_DOWN,
    Fault,
    RequestInfo,
)

from ._helpers import (
    ANALYSIS_KEY,
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

FAST = RetryPolicy(max_attempts=60, base_delay=0.005, max_delay=0.05, deadline=60)
EXPIRED_TOKEN = Fault.error(400, "ExpiredToken", "The provided token has expired.")
#: The client's read timeout in the read-timeout case (botocore's default is 60 s).
READ_TIMEOUT = 1.0


@pytest.fixture
def http_faults(s3_endpoint: S3Endpoint) -> Iterator[HttpFaults]:
    with HttpFaults(s3_endpoint.server, seed=5) as faults:
        yield faults


KINDS = [
    "409-conditional-conflict",
    "500-internal-error",
    "503-slowdown-storm",
    "permission-denied-mid-save",
    "read-timeout",
    "reset-after-write",
    "reset-before-write",
    "truncated-body",
]


def plan(kind: str, endpoint: S3Endpoint, http: HttpFaults) -> dict[str, Any]:
    """Set up the faults of ``kind``; return the store options it needs."""
    faults = endpoint.server.faults
    if kind == "503-slowdown-storm":
        faults.add(SLOW_DOWN, probability=0.3, times=None)
    elif kind == "500-internal-error":
        faults.add(INTERNAL_ERROR, probability=0.2, times=None)
    elif kind == "409-conditional-conflict":
        faults.add(
            CONDITIONAL_CONFLICT, method="PUT", key=ANALYSIS_KEY, probability=0.5, times=None
        )
    elif kind == "reset-before-write":
        faults.add(DROP, method="PUT", probability=0.25, times=None)
    elif kind == "reset-after-write":
        faults.add(DROP, method="PUT", after=True, probability=0.25, times=None)
    elif kind == "read-timeout":
        # Stalls past the client's read timeout: before a GET is served, and after a
        # PUT was applied (the write landed; the client timed out and sends it again).
        # The timeout is long enough that an unstalled request on a busy machine does
        # not time out too (0.2 s did, once: timeouts the test did not inject), and a
        # stall is a wide margin longer, so that each injected one does time out.
        stall = READ_TIMEOUT * 2.5
        http.add("delay_before", method="GET", value=stall, probability=0.3, times=4)
        http.add("delay_after", method="PUT", value=stall, probability=0.3, times=4)
        return {"read_timeout": READ_TIMEOUT}
    elif kind == "truncated-body":
        http.add("truncate", method="GET", value=0.5, probability=0.35, times=None)
    elif kind == "permission-denied-mid-save":
        faults.add(ACCESS_DENIED, method="PUT", nth=7, times=3)
    else:
        raise AssertionError(kind)
    return {}


def injected_total(endpoint: S3Endpoint, http: HttpFaults) -> int:
    return sum(endpoint.server.faults.faults.values()) + sum(http.injected.values())


@pytest.mark.parametrize("kind", KINDS)
def test_merge_job_against_a_misbehaving_s3_loses_nothing(
    kind: str,
    s3_endpoint: S3Endpoint,
    http_faults: HttpFaults,
    fast_retries: None,
    fault_ledger: FaultLedger,
) -> None:
    options = plan(kind, s3_endpoint, http_faults)
    with s3_endpoint.store(**options) as store:
        pm = PersistenceManager(store, retry=FAST)
        job = merge_job(pm, "cb1", steps=8, seed=3)
        injected = injected_total(s3_endpoint, http_faults)
        s3_endpoint.server.faults.clear()
        http_faults.clear()
        lost = lost_updates(pm, "cb1", job.expected)
        fault_ledger.record(
            "s3",
            kind,
            "s3",
            injected=injected,
            survived=injected if lost == 0 else 0,
            surfaced=sum(job.surfaced.values()),
            lost=lost,
            note=",".join(f"{k}={v}" for k, v in sorted(job.surfaced.items())),
        )
        assert injected > 0
        assert lost == 0
        check_job_outcome(pm, "cb1", job)
        if kind in ("reset-after-write", "read-timeout"):
            # Writes that landed while the client saw an error were recognised as ours.
            assert job.stats.conflicts <= sum(job.surfaced.values()) + 2


def test_throttling_past_the_deadline_surfaces_throttled_in_time(
    s3_endpoint: S3Endpoint, fast_retries: None, fault_ledger: FaultLedger
) -> None:
    deadline = 0.8
    with s3_endpoint.store(max_attempts=2) as store:
        pm = PersistenceManager(
            store, retry=RetryPolicy(max_attempts=10_000, base_delay=0.01, deadline=deadline)
        )
        pm.merge_file_analyses("cb1", {"/a.py": versioned("/a.py", 1)}, {})
        before = s3_endpoint.backdoor().read("cb1/analysis.json")
        rule = s3_endpoint.server.faults.add(SLOW_DOWN, method="PUT", key=ANALYSIS_KEY, times=None)
        started = time.monotonic()
        with pytest.raises(ThrottledError) as info:
            pm.merge_file_analyses("cb1", {"/b.py": versioned("/b.py", 1)}, {})
        elapsed = time.monotonic() - started
        s3_endpoint.server.faults.clear()
        fault_ledger.record(
            "s3",
            "throttled-past-deadline",
            "s3",
            injected=rule.fired,
            survived=0,
            surfaced=1,
            note=f"gave up after {elapsed:.2f}s (deadline {deadline}s)",
        )
        assert "cb1/analysis.json" in str(info.value)
        assert elapsed < deadline + 1.5
        assert rule.fired >= 4
        assert s3_endpoint.backdoor().read("cb1/analysis.json") == before
        repair_then_clean(pm, "cb1")


# -- credentials -------------------------------------------------------------------------------


@pytest.fixture
def role_arn(s3_endpoint: S3Endpoint, monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("AWS_ENDPOINT_URL_STS", s3_endpoint.endpoint_url)
    iam = boto3.client("iam", endpoint_url=s3_endpoint.endpoint_url, region_name=TEST_REGION)
    trust = {
        "Version": "2012-10-17",
        "Statement": [{"Effect": "Allow", "Principal": {"AWS": "*"}, "Action": "sts:AssumeRole"}],
    }
    role = iam.create_role(RoleName="documee-faults", AssumeRolePolicyDocument=json.dumps(trust))
    iam.close()
    return str(role["Role"]["Arn"])


def _access_key(info: RequestInfo) -> str | None:
    match = re.search(r"Credential=([^/]+)/", info.headers.get("authorization", ""))
    return match.group(1) if match else None


def test_credentials_expiring_mid_job_are_refreshed_by_the_assume_role_session(
    s3_endpoint: S3Endpoint, role_arn: str, fault_ledger: FaultLedger
) -> None:
    expired: set[str] = set()
    used: list[str] = []

    def signed_with_expired_credentials(info: RequestInfo) -> bool:
        key = _access_key(info)
        if key is None:
            return False
        used.append(key)
        return key in expired

    # S3 would refuse a request signed with expired credentials: so does the harness.
    refused = s3_endpoint.server.faults.add(
        EXPIRED_TOKEN, key=signed_with_expired_credentials, times=None
    )
    with s3_endpoint.store(role_arn=role_arn) as store:
        credentials = store.client._request_signer._credentials  # type: ignore[attr-defined]
        pm = PersistenceManager(store, retry=FAST)

        def expire(step: int) -> None:
            if step % 2 == 1:
                expired.add(credentials.get_frozen_credentials().access_key)
                credentials._expiry_time = datetime.now(UTC) - timedelta(seconds=1)

        job = merge_job(pm, "cb1", steps=8, seed=4, between=expire)
        check_job_outcome(pm, "cb1", job)
    fault_ledger.record(
        "s3",
        "credentials-expired-mid-job",
        "s3",
        injected=len(expired),
        survived=len(expired) if refused.fired == 0 else 0,
        surfaced=sum(job.surfaced.values()),
        note=f"{len(set(used))} access keys used",
    )
    assert len(expired) == 4
    assert refused.fired == 0  # no request went out with expired credentials
    assert all(key.startswith("ASIA") for key in used)  # the role's, never the env's
    assert len(set(used)) == 5  # the first set and one refresh per expiry
    assert job.surfaced == {}


def test_a_token_the_server_calls_expired_surfaces_as_permission_denied(
    s3_endpoint: S3Endpoint, role_arn: str, fault_ledger: FaultLedger
) -> None:
    with s3_endpoint.store(role_arn=role_arn) as store:
        pm = PersistenceManager(store, retry=FAST)
        pm.merge_file_analyses("cb1", {"/a.py": versioned("/a.py", 1)}, {"/a.py": "h"})
        before = s3_endpoint.backdoor().read("cb1/analysis.json")
        s3_endpoint.server.faults.add(EXPIRED_TOKEN, method="PUT", key=ANALYSIS_KEY)
        with pytest.raises(PermissionDeniedError) as info:
            pm.merge_file_analyses("cb1", {"/b.py": versioned("/b.py", 1)}, {"/b.py": "h"})
        assert "ExpiredToken" in str(info.value)
        assert info.value.key == "cb1/analysis.json"
        assert s3_endpoint.backdoor().read("cb1/analysis.json") == before
        # The compaction failed, not the merge: its delta is in the journal (the error says
        # so), file_hashes.json does not claim it yet, and this library's readers see it.
        assert any("journal delta" in note for note in getattr(info.value, "__notes__", []))
        stored_hashes = json.loads(s3_endpoint.backdoor().read("cb1/file_hashes.json"))
        assert stored_hashes == {"/a.py": "h"}
        assert pm.get_file_hashes("cb1") == {"/a.py": "h", "/b.py": "h"}
        pm.merge_file_analyses("cb1", {"/b.py": versioned("/b.py", 1)}, {"/b.py": "h"})
        final = pm.load_analysis("cb1")
        assert final is not None
        assert set(final.file_analyses) == {"/a.py", "/b.py"}
        repair_then_clean(pm, "cb1")
    fault_ledger.record("s3", "expired-token-answered", "s3", injected=1, survived=1, surfaced=1)


def test_permission_denied_mid_save_keeps_the_previous_analysis_on_s3(
    s3_endpoint: S3Endpoint, fault_ledger: FaultLedger
) -> None:
    from documee_remote.merge import new_analysis, refresh_derived

    with s3_endpoint.store() as store:
        pm = PersistenceManager(store)
        v1 = new_analysis("cb1")
        for i in range(8):
            v1.file_analyses[f"/f{i}.py"] = versioned(f"/f{i}.py", 1)
        refresh_derived(v1)
        pm.save_analysis("cb1", v1)
        v2 = v1.model_copy(deep=True)
        for i in range(0, 8, 2):
            v2.file_analyses[f"/f{i}.py"] = versioned(f"/f{i}.py", 2)
        refresh_derived(v2)
        s3_endpoint.server.faults.add(ACCESS_DENIED, method="PUT", key=ANALYSIS_KEY)
        with pytest.raises(PermissionDeniedError):
            pm.save_analysis("cb1", v2)
        assert pm.load_analysis("cb1") == v1
        check_objects_parse(store)
        assert repair_then_clean(pm, "cb1").repaired == 4
        pm.save_analysis("cb1", v2)
        assert pm.load_analysis("cb1") == v2
    fault_ledger.record("s3", "permission-denied-save", "s3", injected=1, survived=1, surfaced=1)


# -- bodies ---------------------------------------------------------------------------------------


def test_a_response_claiming_gigabytes_is_refused_before_reading(
    s3_endpoint: S3Endpoint, http_faults: HttpFaults
) -> None:
    with s3_endpoint.store() as writer:
        writer.put("cb1/analysis.json", b"{}")
    with s3_endpoint.store(max_object_size=64 << 20) as limited:
        http_faults.add("claim_length", method="GET", key=ANALYSIS_KEY, value=5 << 30)
        started = time.monotonic()
        with pytest.raises(ObjectTooLargeError) as info:
            limited.get("cb1/analysis.json")
        assert time.monotonic() - started < 2.0
        assert "5368709120 bytes" in str(info.value)
        assert limited.get("cb1/analysis.json").data == b"{}"  # the connection was not reused


def test_a_short_body_without_a_limit_is_a_typed_transient_error(
    s3_endpoint: S3Endpoint, http_faults: HttpFaults, fast_retries: None
) -> None:
    with s3_endpoint.store(max_attempts=2, read_timeout=2.0, max_object_size=None) as store:
        store.put("cb1/analysis.json", b"{}")
        http_faults.add("claim_length", method="GET", key=ANALYSIS_KEY, value=5 << 30, times=None)
        with pytest.raises(ServiceUnavailableError) as info:
            store.get("cb1/analysis.json")
        assert info.value.key == "cb1/analysis.json"
        assert http_faults.injected["claim_length"] == 2  # read once, retried once


def test_http_faults_are_removed_on_exit(s3_endpoint: S3Endpoint) -> None:
    server = s3_endpoint.server
    original = server._server.app
    with HttpFaults(server) as faults:
        assert server._server.app is not original
        faults.add("truncate", method="GET", value=0.0, times=None)
    assert server._server.app is original
    assert isinstance(S3Store, type)


# -- group commit (issue 14): the requests the named-delta protocol added, on the wire ----------

FOLDER_KEY = r"/_journal/_folder\.json$"
NAMED_DELTA_KEY = r"/_journal/w\d{13}-[0-9a-f]{16}\.json$"


def _short_listing(info: RequestInfo) -> bool:
    """The short LIST a writer makes before naming its delta (start-after a ``w<ms>`` name)."""
    start_after = info.query.get("start-after", [""])[0]
    return info.method == "GET" and "list-type" in info.query and "/_journal/w" in start_after


GROUP_S3_KINDS: dict[str, list[tuple[Fault, dict[str, Any]]]] = {
    "folder-record-get-503": [(SLOW_DOWN, {"method": "GET", "key": FOLDER_KEY})],
    "folder-record-put-500": [(INTERNAL_ERROR, {"method": "PUT", "key": FOLDER_KEY})],
    "folder-record-put-dropped-after": [
        (DROP, {"method": "PUT", "key": FOLDER_KEY, "after": True})
    ],
    "delta-put-dropped-after": [(DROP, {"method": "PUT", "key": NAMED_DELTA_KEY, "after": True})],
    "delta-put-dropped-after-head-503": [
        (DROP, {"method": "PUT", "key": NAMED_DELTA_KEY, "after": True}),
        (SLOW_DOWN, {"method": "HEAD", "key": NAMED_DELTA_KEY}),
    ],
    "short-list-503-and-dropped": [
        (SLOW_DOWN, {"key": _short_listing}),
        (DROP, {"key": _short_listing}),
    ],
    "analysis-409-while-folding": [
        (CONDITIONAL_CONFLICT, {"method": "PUT", "key": ANALYSIS_KEY}),
    ],
}


@pytest.mark.parametrize("kind", sorted(GROUP_S3_KINDS))
def test_group_commit_against_a_misbehaving_s3_loses_nothing_and_applies_nothing_twice(
    kind: str, s3_endpoint: S3Endpoint, fast_retries: None, fault_ledger: FaultLedger
) -> None:
    """Three writers (threads, each its own client) merge at once through group
    commit while the harness faults the folder record, the named-delta PUT
    (the response of a PUT that landed dropped: botocore resends it, S3
    answers 412, the writer must recognise its own delta), the short LIST
    before naming, or analysis.json's compare-and-swap with 409. Every
    acknowledged merge is in analysis.json alone, one delta each, each
    folded once; what surfaces is typed."""
    faults = s3_endpoint.server.faults
    rules = [
        faults.add(fault, probability=0.35, times=None, **where)
        for fault, where in GROUP_S3_KINDS[kind]
    ]
    policy = CompactionPolicy(group_wait_seconds=0.3)
    surfaced: Counter[str] = Counter()
    untyped: list[BaseException] = []
    tries: Counter[str] = Counter()
    lock = threading.Lock()
    writers, merges = 3, 4

    def writer(w: int) -> None:
        try:
            with s3_endpoint.store() as store:
                pm = PersistenceManager(store, retry=FAST, compaction=policy)
                for i in range(merges):
                    merge_until_acknowledged(
                        pm, f"/w{w}/f{i}.py", i, tries=tries, surfaced=surfaced, lock=lock
                    )
        except BaseException as exc:
            untyped.append(exc)

    threads = [threading.Thread(target=writer, args=(w,)) for w in range(writers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(180)
    fired = sum(rule.fired for rule in rules)
    faults.clear()
    assert not any(t.is_alive() for t in threads), "a writer hung"
    assert untyped == []
    expected = {f"/w{w}/f{i}.py" for w in range(writers) for i in range(merges)}
    backdoor = s3_endpoint.backdoor()
    stored = backdoor.read("cb1/analysis.json")
    assert stored is not None
    plain = json.loads(stored)["file_analyses"]
    missing = sorted(expected - set(plain))
    with s3_endpoint.store() as store:
        copies, deltas = named_delta_copies(store, "cb1")
        repeated = {p: n for p, n in copies.items() if n > tries[p]}
        pm = PersistenceManager(store)
        pm.compact("cb1")
        final = pm.load_analysis("cb1")
        assert final is not None
        fault_ledger.record(
            "s3",
            f"group-commit {kind}",
            "s3",
            injected=fired,
            survived=fired if not (missing or repeated) else 0,
            surfaced=sum(surfaced.values()),
            lost=len(missing),
            note=",".join(f"{k}={v}" for k, v in sorted(surfaced.items())),
        )
        assert fired > 0
        assert missing == []
        assert repeated == {}
        assert [p for p in expected if tries[p] == 1 and copies[p] != 1] == []
        assert final.metrics.analysis_time_ms == deltas  # each delta folded once
        assert set(final.file_analyses) == expected
        repair_then_clean(pm, "cb1")
