"""S3-compatible servers that break S3's rules, emulated by the moto harness (issue 12).

Each behaviour was seen on a real server (SeaweedFS, Ceph RGW 16.2, LocalStack)
and is imitated by :meth:`FaultInjector.emulate`, so these tests run anywhere;
``tests/seaweed`` runs the suites against a real SeaweedFS as well.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

from documee_remote import PersistenceManager, RetryPolicy, TransactionStats
from documee_remote._engine.hashes import cas_hashes
from documee_remote.doctor import run_checks
from documee_remote.errors import TooManyConflictsError, UnsupportedOperationError
from documee_remote.journal import listing_start_after
from documee_remote.stores import Store
from documee_remote.stores._fsspec import FsspecStore
from documee_remote.stores._obstore import ObstoreStore
from documee_remote.stores.s3 import S3Store
from documee_remote.testing.factories import content_hash, make_file_analysis
from documee_remote.testing.fixtures import STORE_PREFIX, S3Endpoint

FAST = RetryPolicy(max_attempts=20, base_delay=0.001, max_delay=0.01, deadline=30)

BACKENDS: dict[str, Callable[..., Store]] = {
    "boto3": S3Store.from_url,
    "fsspec": FsspecStore.from_url,
    "obstore": ObstoreStore.from_url,
}


@pytest.fixture(params=sorted(BACKENDS))
def any_store(request: pytest.FixtureRequest, s3_endpoint: S3Endpoint) -> Iterator[Store]:
    """A store of each S3 backend on the harness server."""
    opener = BACKENDS[request.param]
    store = opener(
        s3_endpoint.url(STORE_PREFIX),
        endpoint_url=s3_endpoint.endpoint_url,
        region=s3_endpoint.region,
    )
    try:
        yield store
    finally:
        store.close()


def test_quirks_are_checked_and_cleared(s3_endpoint: S3Endpoint) -> None:
    faults = s3_endpoint.server.faults
    with pytest.raises(ValueError, match="unknown quirks"):
        faults.emulate("minio-2015")
    faults.emulate("ceph16", "localstack")
    assert faults.quirks == {"ceph16", "localstack"}
    faults.clear()
    assert faults.quirks == frozenset()


# -- defect 9: the server's StartAfter is not trusted --------------------------------------------


def test_the_emulated_server_really_returns_keys_before_start_after(
    s3_endpoint: S3Endpoint,
) -> None:
    """The quirk works: a raw client sees the keys a correct server would leave out."""
    client = s3_endpoint.client()
    for key in ("cb/a", "cb/b", "cb/c"):
        client.put_object(Bucket=s3_endpoint.bucket, Key=key, Body=b"{}")
    s3_endpoint.server.faults.emulate("ignore-start-after")
    listed = client.list_objects_v2(Bucket=s3_endpoint.bucket, Prefix="cb/", StartAfter="cb/b")
    assert [o["Key"] for o in listed["Contents"]] == ["cb/a", "cb/b", "cb/c"]


def test_list_meta_drops_keys_the_server_returns_before_start_after(
    any_store: Store, s3_endpoint: S3Endpoint
) -> None:
    keys = [f"cb/_journal/{n:020d}.{kind}" for n in (1, 2, 3) for kind in ("folded", "json")]
    for key in keys:
        any_store.put(key, b"{}")
    s3_endpoint.server.faults.emulate("ignore-start-after")
    after = listing_start_after("cb", 2)  # ".../00000000000000000001/": ends in "/"
    assert [m.key for m in any_store.list_meta("cb/_journal/", start_after=after)] == keys[2:]
    assert [m.key for m in any_store.list_meta("cb/_journal/", start_after=keys[3])] == keys[4:]
    assert list(any_store.list_meta("cb/_journal/", start_after="cb/~")) == []


# -- defect 8: Ceph RGW 16.2 and LocalStack --------------------------------------------------------


def test_probe_on_ceph16_reports_instead_of_raising(s3_endpoint: S3Endpoint) -> None:
    """Ceph deletes despite a stale If-Match; the probe used to die with NotFoundError."""
    s3_endpoint.server.faults.emulate("ceph16")
    with s3_endpoint.store() as store:
        result = store.probe()
        assert not result.ok
        assert result.if_none_match
        assert result.if_match  # a stale ETag is refused (as every ETag is)
        assert not result.conditional_delete
        assert "If-Match was ignored on DELETE" in result.detail
        assert list(store.list()) == []  # no scratch object left behind


def test_probe_checks_that_the_current_etag_is_accepted(s3_endpoint: S3Endpoint) -> None:
    """A server refusing If-Match with the current ETag fails the probe (it used to pass)."""
    s3_endpoint.server.faults.emulate("ceph16")
    with s3_endpoint.store() as store:
        result = store.probe()
        assert result.if_match_current is False
        assert "current ETag" in result.detail
        assert "was refused on PUT" in result.detail
    s3_endpoint.server.faults.clear()
    with s3_endpoint.store() as store:
        honest = store.probe()
        assert honest.ok, honest.detail
        assert honest.if_match_current is True


@pytest.mark.parametrize("backend", ["boto3", "obstore"])
def test_probe_on_localstack_reports_no_conditional_delete(
    s3_endpoint: S3Endpoint, backend: str
) -> None:
    """LocalStack answers 501 to a conditional DELETE: a result, not an exception."""
    s3_endpoint.server.faults.emulate("localstack")
    store = BACKENDS[backend](
        s3_endpoint.url(STORE_PREFIX),
        endpoint_url=s3_endpoint.endpoint_url,
        region=s3_endpoint.region,
    )
    with store:
        result = store.probe()
        assert (result.if_none_match, result.if_match, result.if_match_current) == (
            True,
            True,
            True,
        )
        assert result.conditional_delete is False
        assert "not implemented" in result.detail
        assert list(store.list()) == []


def _merge(pm: PersistenceManager, codebase_id: str, n: int) -> None:
    path = f"/src/f{n}.py"
    pm.merge_file_analyses(
        codebase_id, {path: make_file_analysis(path)}, {path: content_hash(path)}, retry=FAST
    )


def test_a_lone_writer_refused_by_the_endpoint_is_told_so(s3_endpoint: S3Endpoint) -> None:
    """Ceph refuses the quoted current ETag: not "lost to other writers", but a typed
    error that names the endpoint and points at doctor, after a few attempts, not 20."""
    with s3_endpoint.store() as store:
        pm = PersistenceManager(store, retry=FAST)
        _merge(pm, "cb1", 0)  # creates analysis.json (If-None-Match works)
        s3_endpoint.server.faults.emulate("ceph16")
        puts_before = s3_endpoint.server.faults.requests["PUT"]
        with pytest.raises(UnsupportedOperationError) as info:
            _merge(pm, "cb1", 1)
        message = str(info.value)
        assert "documee-remote doctor" in message
        assert "other writers" not in message
        assert "does not honour correct conditional writes" in message
        assert not isinstance(info.value, TooManyConflictsError)
        # Three refusals in a row, not the policy's twenty attempts.
        refused = s3_endpoint.server.faults.requests["PUT"] - puts_before
        assert refused < 10
        s3_endpoint.server.faults.clear()
        loaded = pm.load_analysis("cb1")
        assert loaded is not None
        assert "/src/f0.py" in loaded.file_analyses


def test_file_hashes_refused_by_the_endpoint_is_told_so(s3_endpoint: S3Endpoint) -> None:
    """The file_hashes.json compare-and-swap loop tells refusals apart too."""
    with s3_endpoint.store() as store:
        pm = PersistenceManager(store, retry=FAST)
        store.put("cb1/file_hashes.json", b"{}")
        s3_endpoint.server.faults.emulate("ceph16")
        with pytest.raises(UnsupportedOperationError, match="documee-remote doctor"):
            cas_hashes(
                pm.engine,
                "cb1",
                lambda current: {**current, "/a.py": "a" * 64},
                retry=FAST,
                stats=TransactionStats(),
            )


def test_doctor_on_ceph16_fails_the_probe_with_what_it_found(s3_endpoint: S3Endpoint) -> None:
    s3_endpoint.server.faults.emulate("ceph16")
    results = {
        r.name: r
        for r in run_checks(s3_endpoint.url("doc/"), {"endpoint_url": s3_endpoint.endpoint_url})
    }
    probe = results["conditional writes"]
    assert probe.ok is False
    assert "If-Match was ignored on DELETE" in probe.detail
    assert "current ETag" in probe.detail


def test_doctor_on_localstack_fails_the_probe_without_crashing(s3_endpoint: S3Endpoint) -> None:
    s3_endpoint.server.faults.emulate("localstack")
    results = {
        r.name: r
        for r in run_checks(s3_endpoint.url("doc/"), {"endpoint_url": s3_endpoint.endpoint_url})
    }
    probe = results["conditional writes"]
    assert probe.ok is False
    assert "conditional DELETE (If-Match) is not implemented" in probe.detail
    assert "deletes" in probe.detail
