"""S3Store: the store contract twice (moto server, mock_aws), then what only S3 shows."""

from __future__ import annotations

import functools
import json
import logging
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import boto3
import botocore.exceptions as bce
import pytest
from botocore.exceptions import ClientError

from documee_remote import open_store
from documee_remote.config import S3Options, build_s3_client
from documee_remote.errors import (
    AlreadyExistsError,
    ConditionalRequestConflictError,
    ConfigurationError,
    ObjectTooLargeError,
    PermissionDeniedError,
    PreconditionFailedError,
    ServiceUnavailableError,
    StorageTimeoutError,
    ThrottledError,
    TransientError,
    UnsupportedOperationError,
)
from documee_remote.stores import Store, etag_of
from documee_remote.stores.s3 import WRITE_TOKEN_METADATA, S3Store, parse_s3_url
from documee_remote.testing.contract import StoreContract
from documee_remote.testing.fixtures import (
    STORE_PREFIX,
    TEST_BUCKET,
    TEST_REGION,
    S3Backdoor,
    S3Endpoint,
    atomic_mock_aws,
)
from documee_remote.testing.moto_server import (
    ACCESS_DENIED,
    CONDITIONAL_CONFLICT,
    DROP,
    INTERNAL_ERROR,
    SLOW_DOWN,
    Fault,
)

URL = f"s3://{TEST_BUCKET}/{STORE_PREFIX}"


# -- the contract ---------------------------------------------------------------------------------


class TestS3StoreMotoServer(StoreContract):
    """The contract over HTTP against the harness server (atomic per key, like S3)."""

    race_increments = 50  # 8 processes x 50 = 400 conditional increments of one object

    @pytest.fixture
    def store_factory(self, s3_endpoint: S3Endpoint) -> Callable[..., Store]:
        return functools.partial(
            S3Store.from_url, URL, endpoint_url=s3_endpoint.endpoint_url, region=TEST_REGION
        )

    @pytest.fixture
    def backdoor(self, s3_endpoint: S3Endpoint) -> S3Backdoor:
        return s3_endpoint.backdoor()

    @pytest.fixture
    def process_store_factory(self, store_factory: Callable[..., Store]) -> Callable[[], Store]:
        return store_factory  # a partial of a classmethod: picklable for spawn workers

    @pytest.mark.slow
    def test_processes_racing_compare_and_swap_lose_nothing(
        self, process_store_factory: Callable[[], Store] | None, store: Store
    ) -> None:
        # ~6,000 requests through one in-process server: the slowest test here.
        super().test_processes_racing_compare_and_swap_lose_nothing(process_store_factory, store)


class TestS3StoreMockAws(StoreContract):
    """The contract in-process under moto's mock_aws (no HTTP)."""

    @pytest.fixture
    def mocked(self, aws_credentials: None) -> Iterator[Any]:
        with atomic_mock_aws():
            client = build_s3_client(S3Options(region=TEST_REGION))
            client.create_bucket(Bucket=TEST_BUCKET)
            yield client
            client.close()

    @pytest.fixture
    def store_factory(self, mocked: Any) -> Callable[..., Store]:
        return functools.partial(S3Store.from_url, URL, region=TEST_REGION)

    @pytest.fixture
    def backdoor(self, mocked: Any) -> S3Backdoor:
        return S3Backdoor(mocked, TEST_BUCKET, STORE_PREFIX)


# -- URLs, prefixes and isolation -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "bucket", "prefix"),
    [
        ("s3://bkt", "bkt", ""),
        ("s3://bkt/", "bkt", ""),
        ("s3://bkt/team-a", "bkt", "team-a/"),
        ("s3://bkt/team-a/", "bkt", "team-a/"),
        ("s3://bkt//team-a/sub//", "bkt", "team-a/sub/"),
        ("s3a://my.bucket_1/x", "my.bucket_1", "x/"),
        ("S3://bkt/p", "bkt", "p/"),
    ],
)
def test_url_parsing_normalises_the_prefix(url: str, bucket: str, prefix: str) -> None:
    assert parse_s3_url(url) == (bucket, prefix)


@pytest.mark.parametrize(
    "url",
    [
        "http://bkt/p",
        "s3:/bkt",
        "s3://",
        "s3:///p",
        "s3://bkt:9000/p",
        "s3://bkt/p?region=x",
        "s3://bkt/p#f",
        "s3://bkt/a/../b",
        "s3://bkt/.hidden",
        "s3://-bkt/p",
        "s3://bk t/p",
    ],
)
def test_bad_urls_raise_configuration_error(url: str, aws_credentials: None) -> None:
    with pytest.raises(ConfigurationError):
        S3Store.from_url(url)


def test_credentials_in_url_are_refused_without_echoing_them(aws_credentials: None) -> None:
    with pytest.raises(ConfigurationError) as info:
        S3Store.from_url("s3://AKIAXXXX:s3cr3t-v4lue@bkt/p")
    assert "s3cr3t-v4lue" not in str(info.value)
    assert "AKIAXXXX" not in str(info.value)


def test_open_store_picks_s3store_for_s3_urls(s3_endpoint: S3Endpoint) -> None:
    for backend in (None, "s3"):
        with open_store(
            s3_endpoint.url("p"),
            backend=backend,
            endpoint_url=s3_endpoint.endpoint_url,
            read_only=True,
            concurrency=3,
            max_object_size=10,
        ) as store:
            assert isinstance(store, S3Store)
            assert (store.bucket, store.prefix) == (TEST_BUCKET, "p/")
            assert store.url == f"s3://{TEST_BUCKET}/p/"
            assert store.read_only
            assert store.concurrency == 3
            assert store.max_object_size == 10


def test_keys_live_under_the_prefix_and_listing_strips_it(s3_endpoint: S3Endpoint) -> None:
    raw = s3_endpoint.client()
    with (
        s3_endpoint.store("team-a/") as team_a,
        s3_endpoint.store("team-b") as team_b,
        s3_endpoint.store("") as root,
    ):
        team_a.put("cb/analysis.json", b"a")
        team_b.put("cb/analysis.json", b"b")
        team_b.put("other/x.json", b"b2")
        stored = sorted(o["Key"] for o in raw.list_objects_v2(Bucket=TEST_BUCKET)["Contents"])
        assert stored == [
            "team-a/cb/analysis.json",
            "team-b/cb/analysis.json",
            "team-b/other/x.json",
        ]
        assert list(team_a.list()) == ["cb/analysis.json"]
        assert list(team_b.list()) == ["cb/analysis.json", "other/x.json"]
        assert team_a.get("cb/analysis.json").data == b"a"
        assert not team_a.exists("other/x.json")
        assert list(root.list("team-")) == stored
        team_a.delete_many(["cb/analysis.json", "other/x.json"])
        assert team_b.get("other/x.json").data == b"b2"  # untouched by team-a's delete


def test_a_store_on_a_prefix_does_not_see_a_sibling_with_a_longer_name(
    s3_endpoint: S3Endpoint,
) -> None:
    with s3_endpoint.store("team") as team, s3_endpoint.store("team-b") as team_b:
        team_b.put("cb/k", b"x")
        assert list(team.list()) == []  # "team/" is not a prefix of "team-b/..."


def test_listing_pages_through_the_paginator(s3_store: S3Store) -> None:
    pages: list[int] = []

    def small_pages(params: dict[str, Any], **_: Any) -> None:
        params["MaxKeys"] = 3
        pages.append(1)

    s3_store.client.meta.events.register("before-parameter-build.s3.ListObjectsV2", small_pages)
    keys = [f"cb/file_{i:016x}.json" for i in range(10)]
    s3_store.put_many(dict.fromkeys(keys, b"{}"))
    assert list(s3_store.list("cb/")) == keys
    assert len(pages) == 4  # 3 + 3 + 3 + 1


def test_listing_skips_names_that_are_not_valid_keys(
    s3_store: S3Store, s3_endpoint: S3Endpoint
) -> None:
    raw = s3_endpoint.client()
    for name in ("cb/", "cb/.tmp-123", "cb//double", "cb/ok.json"):
        raw.put_object(Bucket=TEST_BUCKET, Key=STORE_PREFIX + name, Body=b"x")
    assert list(s3_store.list()) == ["cb/ok.json"]


# -- error translation: the table is shared, see tests/test_s3_common.py ------------------------


# -- error translation: live, through the fault injector ------------------------------------------


def test_missing_bucket_is_a_configuration_error(s3_endpoint: S3Endpoint) -> None:
    with S3Store.from_url("s3://no-such-bucket/p", endpoint_url=s3_endpoint.endpoint_url) as store:
        with pytest.raises(ConfigurationError, match="does not exist"):
            store.get("cb/k")
        with pytest.raises(ConfigurationError):
            list(store.list())


@pytest.mark.parametrize(
    ("operation", "method"),
    [("get", "GET"), ("head", "HEAD"), ("put", "PUT"), ("delete", "DELETE"), ("list", "GET")],
)
def test_access_denied_is_permission_denied(
    s3_endpoint: S3Endpoint, s3_store: S3Store, operation: str, method: str
) -> None:
    s3_store.put("cb/k.json", b"v")
    s3_endpoint.server.faults.add(ACCESS_DENIED, method=method, times=None)
    calls: dict[str, Callable[[], object]] = {
        "get": lambda: s3_store.get("cb/k.json"),
        "head": lambda: s3_store.head("cb/k.json"),
        "put": lambda: s3_store.put("cb/k.json", b"w"),
        "delete": lambda: s3_store.delete("cb/k.json"),
        "list": lambda: list(s3_store.list()),
    }
    with pytest.raises(PermissionDeniedError) as info:
        calls[operation]()
    assert isinstance(info.value, PermissionError)
    assert s3_store.url in str(info.value)
    if operation != "list":
        assert info.value.key == "cb/k.json"
        assert "'cb/k.json'" in str(info.value)
    assert isinstance(info.value.__cause__, ClientError)
    # 403 is not retried; a 403 on a read is checked once with a listing (a
    # GET too, denied here as well), since S3 hides 404s behind 403s.
    expected = 2 if operation == "get" else 1
    assert s3_endpoint.server.faults.faults["AccessDenied"] == expected


@pytest.mark.parametrize(
    ("fault", "expected"),
    [(SLOW_DOWN, ThrottledError), (INTERNAL_ERROR, ServiceUnavailableError)],
)
def test_transient_errors_are_retried_then_succeed(
    s3_endpoint: S3Endpoint, s3_store: S3Store, fast_retries: None, fault: Fault, expected: type
) -> None:
    faults = s3_endpoint.server.faults
    s3_store.put("cb/k", b"v")
    faults.add(fault, method="GET", key="cb/k", times=2)
    assert s3_store.get("cb/k").data == b"v"
    faults.add(fault, method="PUT", key="cb/k", times=2)
    assert s3_store.put("cb/k", b"w") == etag_of(b"w")
    assert faults.faults[fault.code] == 4
    assert faults.requests["GET"] == 3


@pytest.mark.parametrize(
    ("fault", "expected"),
    [
        (SLOW_DOWN, ThrottledError),
        (INTERNAL_ERROR, ServiceUnavailableError),
        (Fault.error(503, "ServiceUnavailable"), ServiceUnavailableError),
        (DROP, ServiceUnavailableError),
    ],
)
def test_persistent_failures_raise_transient_errors_after_the_retries(
    s3_endpoint: S3Endpoint, fast_retries: None, fault: Fault, expected: type
) -> None:
    faults = s3_endpoint.server.faults
    with s3_endpoint.store(max_attempts=3) as store:
        faults.add(fault, method="GET", times=None)
        with pytest.raises(expected) as info:
            store.get("cb/k")
        assert isinstance(info.value, TransientError)
        assert "'cb/k'" in str(info.value)
        assert faults.requests["GET"] == 3  # every attempt reached the server
        with pytest.raises(expected):
            list(store.list())


def test_head_of_a_throttled_key_is_still_transient(
    s3_endpoint: S3Endpoint, fast_retries: None
) -> None:
    with s3_endpoint.store(max_attempts=2) as store:
        s3_endpoint.server.faults.add(SLOW_DOWN, method="HEAD", times=None)
        with pytest.raises(TransientError):  # HEAD errors carry no code, only "503"
            store.head("cb/k")


def test_dropped_connection_is_retried_by_botocore(
    s3_endpoint: S3Endpoint, s3_store: S3Store, fast_retries: None
) -> None:
    faults = s3_endpoint.server.faults
    faults.add(DROP, method="PUT", key="cb/k")
    assert s3_store.put("cb/k", b"v") == etag_of(b"v")
    assert faults.faults["drop"] == 1
    assert faults.requests["PUT"] == 2


def test_dropped_connection_without_retries_is_service_unavailable(
    s3_endpoint: S3Endpoint,
) -> None:
    with s3_endpoint.store(max_attempts=1) as store:
        s3_endpoint.server.faults.add(DROP, method="GET")
        with pytest.raises(ServiceUnavailableError) as info:
            store.get("cb/k")
        assert isinstance(info.value.__cause__, bce.ConnectionClosedError)
        assert s3_endpoint.server.faults.requests["GET"] == 1  # max_attempts=1: no retry


def test_read_timeout_is_storage_timeout(s3_endpoint: S3Endpoint) -> None:
    faults = s3_endpoint.server.faults
    with s3_endpoint.store(read_timeout=0.2, max_attempts=1) as store:
        faults.latency_ms = 600
        with pytest.raises(StorageTimeoutError) as info:
            store.head("cb/k")
        assert isinstance(info.value, TimeoutError)
    # The server counts the abandoned HEAD only when its latency has passed: wait
    # for it here, or it lands in a later test's request counts (which then flakes).
    deadline = time.monotonic() + 10
    while faults.requests["HEAD"] < 1 and time.monotonic() < deadline:
        time.sleep(0.02)


def test_unreachable_endpoint_is_service_unavailable(aws_credentials: None) -> None:
    import socket

    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with S3Store.from_url(
        "s3://bkt/p", endpoint_url=f"http://127.0.0.1:{port}", max_attempts=1
    ) as store:
        with pytest.raises(ServiceUnavailableError) as info:
            store.get("cb/k")
        assert "s3://bkt/p/" in str(info.value)
        assert isinstance(info.value.__cause__, bce.EndpointConnectionError)


def test_not_implemented_is_unsupported_operation(
    s3_endpoint: S3Endpoint, s3_store: S3Store
) -> None:
    s3_endpoint.server.faults.add(Fault.error(501, "NotImplemented"), method="PUT")
    with pytest.raises(UnsupportedOperationError):
        s3_store.put("cb/k", b"v", if_none_match="*")


# -- conditional writes: 409, lost responses and the write token ----------------------------------


def test_conditional_writes_carry_a_fresh_token(s3_store: S3Store, s3_endpoint: S3Endpoint) -> None:
    backdoor = s3_endpoint.backdoor()
    s3_store.put("cb/k", b"1", if_none_match="*")
    first = backdoor.head("cb/k")["Metadata"][WRITE_TOKEN_METADATA]
    s3_store.put("cb/k", b"2", if_match=etag_of(b"1"))
    second = backdoor.head("cb/k")["Metadata"][WRITE_TOKEN_METADATA]
    assert len(first) == 32
    assert first != second
    s3_store.put("cb/plain", b"x")
    assert WRITE_TOKEN_METADATA not in backdoor.head("cb/plain")["Metadata"]


@pytest.mark.parametrize("fault", [DROP, INTERNAL_ERROR], ids=["drop", "500"])
@pytest.mark.parametrize("condition", ["if_match", "create_only"])
def test_a_retried_conditional_write_whose_first_attempt_landed_succeeds(
    s3_endpoint: S3Endpoint, s3_store: S3Store, fast_retries: None, fault: Fault, condition: str
) -> None:
    faults = s3_endpoint.server.faults
    if condition == "if_match":
        old = s3_store.put("cb/k", b"old")
        kwargs: dict[str, Any] = {"if_match": old}
    else:
        kwargs = {"if_none_match": "*"}
    # The first attempt is applied by moto, then its response is lost: botocore
    # retries, and the retry's precondition fails against our own write.
    faults.add(fault, method="PUT", key="cb/k", after=True)
    assert s3_store.put("cb/k", b"new", **kwargs) == etag_of(b"new")
    assert s3_store.get("cb/k").data == b"new"
    assert faults.faults[fault.name] == 1
    assert faults.requests["HEAD"] == 1  # the token check


def test_a_conditional_write_whose_every_response_is_lost_is_still_recognised(
    s3_endpoint: S3Endpoint, fast_retries: None
) -> None:
    faults = s3_endpoint.server.faults
    with s3_endpoint.store(max_attempts=2) as store:
        old = store.put("cb/k", b"old")
        faults.add(DROP, method="PUT", key="cb/k", after=True, times=None)
        # Attempt 1 lands, attempt 2 fails its If-Match: both answers are lost, and
        # botocore gives up with a connection error. The token says it was ours.
        assert store.put("cb/k", b"new", if_match=old) == etag_of(b"new")
        assert faults.faults["drop"] == 2
        with pytest.raises(ServiceUnavailableError):  # unconditional: nothing to check
            store.put("cb/k", b"plain")


@pytest.mark.parametrize("fault", [DROP, INTERNAL_ERROR], ids=["drop", "500"])
def test_without_the_token_check_that_retry_would_report_a_lost_race(
    s3_endpoint: S3Endpoint, fault: Fault, fast_retries: None
) -> None:
    # The failure mode the token guards against, shown with a plain boto3 client.
    raw = s3_endpoint.client()
    old = raw.put_object(Bucket=TEST_BUCKET, Key="k", Body=b"old")["ETag"]
    s3_endpoint.server.faults.add(fault, method="PUT", key="^k$", after=True)
    with pytest.raises(ClientError) as info:
        raw.put_object(Bucket=TEST_BUCKET, Key="k", Body=b"new", IfMatch=old)
    assert info.value.response["Error"]["Code"] == "PreconditionFailed"
    assert info.value.response["ResponseMetadata"]["RetryAttempts"] == 1
    body = raw.get_object(Bucket=TEST_BUCKET, Key="k")["Body"]
    assert body.read() == b"new"  # although the write landed
    body.close()


def test_a_genuine_lost_race_still_fails_after_the_token_check(
    s3_endpoint: S3Endpoint, s3_store: S3Store
) -> None:
    stale = s3_store.put("cb/k", b"1", if_none_match="*")
    s3_store.put("cb/k", b"2", if_match=stale)  # another writer's token is stored now
    with pytest.raises(PreconditionFailedError):
        s3_store.put("cb/k", b"3", if_match=stale)
    with pytest.raises(AlreadyExistsError):
        s3_store.put("cb/k", b"3", if_none_match="*")
    assert s3_store.get("cb/k").data == b"2"
    assert s3_endpoint.server.faults.requests["HEAD"] == 0  # no retry: nothing to check


def test_409_conditional_conflict_is_retryable_error(
    s3_endpoint: S3Endpoint, s3_store: S3Store
) -> None:
    etag = s3_store.put("cb/k", b"1")
    s3_endpoint.server.faults.add(CONDITIONAL_CONFLICT, method="PUT", key="cb/k")
    with pytest.raises(ConditionalRequestConflictError) as info:
        s3_store.put("cb/k", b"2", if_match=etag)
    assert isinstance(info.value, TransientError)
    assert info.value.key == "cb/k"
    assert s3_store.get("cb/k").data == b"1"
    assert s3_endpoint.server.faults.faults["ConditionalRequestConflict"] == 1


def test_409_on_a_retry_after_our_own_write_landed_is_success(
    s3_endpoint: S3Endpoint, s3_store: S3Store, fast_retries: None
) -> None:
    etag = s3_store.put("cb/k", b"1")
    faults = s3_endpoint.server.faults
    # The first attempt lands but its response is lost; the retry meets a 409.
    faults.add(DROP, method="PUT", key="cb/k", after=True)
    faults.add(CONDITIONAL_CONFLICT, method="PUT", key="cb/k", nth=2)
    assert s3_store.put("cb/k", b"2", if_match=etag) == etag_of(b"2")
    assert faults.faults == {"drop": 1, "ConditionalRequestConflict": 1}
    assert faults.requests["HEAD"] == 1


def test_a_retried_conditional_delete_that_finds_the_key_gone_succeeds(
    s3_endpoint: S3Endpoint, s3_store: S3Store, fast_retries: None
) -> None:
    etag = s3_store.put("cb/k", b"1")
    s3_endpoint.server.faults.add(DROP, method="DELETE", key="cb/k", after=True)
    s3_store.delete("cb/k", if_match=etag)
    assert not s3_store.exists("cb/k")
    assert s3_endpoint.server.faults.requests["DELETE"] == 2
    with pytest.raises(PreconditionFailedError):  # without a retry, still a failure
        s3_store.delete("cb/k", if_match=etag)


def test_probe_passes_on_the_honest_server(s3_store: S3Store) -> None:
    result = s3_store.probe()
    assert result.ok, result.detail


def test_probe_fails_when_conditional_headers_are_ignored(
    s3_endpoint: S3Endpoint, s3_store: S3Store
) -> None:
    s3_endpoint.server.faults.strip_conditional_headers = True
    result = s3_store.probe()
    assert not result.ok
    assert (result.if_none_match, result.if_match, result.conditional_delete) == (
        False,
        False,
        False,
    )
    assert "ignored" in result.detail
    assert list(s3_store.list()) == []


def test_threads_racing_through_one_store_lose_nothing(s3_store: S3Store) -> None:
    from concurrent.futures import ThreadPoolExecutor

    from documee_remote.testing.contract import increment_counter

    with ThreadPoolExecutor(8) as pool:
        results = list(
            pool.map(
                lambda _: increment_counter(lambda: _Unclosable(s3_store), "cb/n", 10), range(8)
            )
        )
    assert sum(done for done, _ in results) == 80
    assert s3_store.get("cb/n").data == b"80"
    assert sum(conflicts for _, conflicts in results) > 0  # they did collide


class _Unclosable:
    """One shared store handed to several workers that each close 'their' store."""

    def __init__(self, store: S3Store) -> None:
        self._store = store

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)

    def close(self) -> None:
        pass


# -- reading --------------------------------------------------------------------------------------


def test_max_object_size_checks_content_length_before_reading(
    s3_endpoint: S3Endpoint, s3_store: S3Store
) -> None:
    s3_store.put("cb/big", b"x" * 5000)
    with s3_endpoint.store(max_object_size=4999) as limited:
        read: list[int] = []
        original = limited.client.get_object

        def spying_get_object(**kwargs: Any) -> Any:
            response = original(**kwargs)
            body = response["Body"]
            real_read = body.read
            body.read = lambda *a: read.append(1) or real_read(*a)  # type: ignore[method-assign]
            return response

        limited.client.get_object = spying_get_object  # type: ignore[method-assign]
        with pytest.raises(ObjectTooLargeError, match="5000 bytes"):
            limited.get("cb/big")
        assert read == []  # the body was never read
        assert limited.get_many(["cb/missing"]) == {"cb/missing": None}


def test_a_body_that_breaks_off_is_read_again(s3_store: S3Store) -> None:
    s3_store.put("cb/k", b"payload")
    original = s3_store.client.get_object
    calls: list[int] = []

    def flaky_get_object(**kwargs: Any) -> Any:
        response = original(**kwargs)
        calls.append(1)
        if len(calls) == 1:

            def broken(*_: Any) -> bytes:
                raise bce.IncompleteReadError(actual_bytes=3, expected_bytes=7)

            response["Body"].read = broken
        return response

    s3_store.client.get_object = flaky_get_object  # type: ignore[method-assign]
    assert s3_store.get("cb/k").data == b"payload"
    assert len(calls) == 2


def test_a_body_that_keeps_breaking_is_service_unavailable(s3_endpoint: S3Endpoint) -> None:
    with s3_endpoint.store(max_attempts=2) as store:
        store.put("cb/k", b"payload")
        original = store.client.get_object

        def broken_get_object(**kwargs: Any) -> Any:
            response = original(**kwargs)

            def broken(*_: Any) -> bytes:
                raise bce.IncompleteReadError(actual_bytes=3, expected_bytes=7)

            response["Body"].read = broken
            return response

        store.client.get_object = broken_get_object  # type: ignore[method-assign]
        with pytest.raises(ServiceUnavailableError):
            store.get("cb/k")


# -- encryption, bucket owner, client configuration -----------------------------------------------


def _capture_headers(store: S3Store) -> list[tuple[str, dict[str, str]]]:
    seen: list[tuple[str, dict[str, str]]] = []

    def capture(request: Any, **kwargs: Any) -> None:
        operation = kwargs["event_name"].rsplit(".", 1)[-1]
        headers = {
            k.lower(): v.decode() if isinstance(v, bytes) else v for k, v in request.headers.items()
        }
        seen.append((operation, headers))

    store.client.meta.events.register("before-send.s3", capture)
    return seen


def test_sse_s3_is_requested_and_applied(s3_endpoint: S3Endpoint) -> None:
    with s3_endpoint.store(sse="AES256") as store:
        sent = _capture_headers(store)
        store.put("cb/k", b"v")
        store.put("cb/c", b"v", if_none_match="*")
    puts = [h for op, h in sent if op == "PutObject"]
    assert len(puts) == 2
    assert all(h["x-amz-server-side-encryption"] == "AES256" for h in puts)
    assert s3_endpoint.backdoor().head("cb/k")["ServerSideEncryption"] == "AES256"


def test_sse_kms_with_a_key_is_requested_and_applied(s3_endpoint: S3Endpoint) -> None:
    key_id = "arn:aws:kms:us-east-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab"
    with s3_endpoint.store(sse="aws:kms", sse_kms_key_id=key_id) as store:
        sent = _capture_headers(store)
        store.put("cb/k", b"v")
        assert store.get("cb/k").data == b"v"
    (put,) = [h for op, h in sent if op == "PutObject"]
    assert put["x-amz-server-side-encryption"] == "aws:kms"
    assert put["x-amz-server-side-encryption-aws-kms-key-id"] == key_id
    head = s3_endpoint.backdoor().head("cb/k")
    assert head["ServerSideEncryption"] == "aws:kms"
    assert head["SSEKMSKeyId"] == key_id


def test_no_sse_header_unless_asked(s3_store: S3Store) -> None:
    sent = _capture_headers(s3_store)
    s3_store.put("cb/k", b"v")
    assert all("x-amz-server-side-encryption" not in h for _, h in sent)


def test_expected_bucket_owner_is_sent_on_every_call(s3_endpoint: S3Endpoint) -> None:
    with s3_endpoint.store(expected_bucket_owner="123456789012") as store:
        sent = _capture_headers(store)
        etag = store.put("cb/k", b"v")
        store.put("cb/k", b"w", if_match=etag)
        store.get("cb/k")
        store.head("cb/k")
        list(store.list())
        store.delete("cb/k")
        store.put_many({"cb/a": b"1", "cb/b": b"2"})
        store.delete_many(["cb/a", "cb/b"])
        store.put("cb/x", b"1", if_none_match="*")
        with pytest.raises(AlreadyExistsError):
            store.put("cb/x", b"1", if_none_match="*")  # 412 -> token check (HEAD)
    operations = {op for op, _ in sent}
    assert operations >= {
        "PutObject",
        "GetObject",
        "HeadObject",
        "ListObjectsV2",
        "DeleteObject",
        "DeleteObjects",
    }
    assert all(h.get("x-amz-expected-bucket-owner") == "123456789012" for _, h in sent)


def test_client_is_tuned_from_the_options(s3_endpoint: S3Endpoint) -> None:
    with s3_endpoint.store(concurrency=7) as store:
        config = store.client.meta.config
        assert config.max_pool_connections == 7  # the store's concurrency by default
        assert config.connect_timeout == 5.0
        assert config.read_timeout == 60.0
        assert config.retries == {"mode": "standard", "total_max_attempts": 5}
    with s3_endpoint.store(
        concurrency=7,
        max_pool_connections=3,
        connect_timeout=1.5,
        read_timeout=9,
        retry_mode="adaptive",
        max_attempts=2,
        addressing_style="path",
    ) as store:
        config = store.client.meta.config
        assert config.max_pool_connections == 3
        assert (config.connect_timeout, config.read_timeout) == (1.5, 9)
        assert config.retries == {"mode": "adaptive", "total_max_attempts": 2}
        assert config.s3 == {"addressing_style": "path"}
        assert "documee-remote" in (config.user_agent_extra or "")


def test_the_client_is_created_once(s3_store: S3Store) -> None:
    client = s3_store.client
    s3_store.put_many({f"cb/{i}": b"x" for i in range(20)})
    s3_store.get_many([f"cb/{i}" for i in range(20)])
    assert s3_store.client is client


def test_options_can_come_as_a_model(s3_endpoint: S3Endpoint) -> None:
    options = S3Options(endpoint_url=s3_endpoint.endpoint_url, max_attempts=2)
    with S3Store.from_url(URL, options=options, region=TEST_REGION) as store:
        assert store.options.max_attempts == 2
        assert store.options.region == TEST_REGION
        store.put("cb/k", b"v")
    with pytest.raises(ConfigurationError, match="sse_kms_key_id"):
        S3Store.from_url(URL, options=options, sse_kms_key_id="k")


def test_invalid_options_raise_configuration_error(aws_credentials: None) -> None:
    with pytest.raises(ConfigurationError, match="retry_mode"):
        S3Store.from_url(URL, retry_mode="sometimes")  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError, match="no_such_option"):
        S3Store.from_url(URL, no_such_option=1)  # type: ignore[call-arg]
    with pytest.raises(ConfigurationError, match="profile"):
        S3Store.from_url(URL, profile="no-such-profile")
    with pytest.raises(ValueError, match="concurrency"):
        S3Store.from_url(URL, concurrency=0)


def test_close_is_idempotent_and_the_context_manager_closes(s3_endpoint: S3Endpoint) -> None:
    store = s3_endpoint.store()
    closed: list[int] = []
    original = store.client.close
    store.client.close = lambda: closed.append(1) or original()  # type: ignore[method-assign]
    with store:
        store.put("cb/k", b"v")
    store.close()
    assert closed == [1]


def test_delete_many_uses_batched_delete_objects(
    s3_endpoint: S3Endpoint, s3_store: S3Store
) -> None:
    keys = [f"cb/file_{i:016x}.json" for i in range(1001)]
    s3_store.put_many(dict.fromkeys(keys[:30], b"{}"))
    before = s3_endpoint.server.faults.requests
    s3_store.delete_many(keys)
    after = s3_endpoint.server.faults.requests
    assert after["POST"] - before["POST"] == 2  # 1000 + 1
    assert after["DELETE"] == before["DELETE"]
    assert list(s3_store.list()) == []


def test_delete_many_with_conditions_keeps_what_changed(
    s3_endpoint: S3Endpoint, s3_store: S3Store
) -> None:
    etags = s3_store.put_many({"cb/a": b"1", "cb/b": b"2", "cb/c": b"3", "cb/d": b"4"})
    s3_store.put("cb/b", b"changed")
    kept = s3_store.delete_many(
        ["cb/a", "cb/b", "cb/c", "cb/d", "cb/gone"],
        if_match={"cb/a": etags["cb/a"], "cb/b": etags["cb/b"], "cb/gone": etags["cb/a"]},
    )
    assert kept == ["cb/b", "cb/gone"]
    assert list(s3_store.list()) == ["cb/b"]
    requests = s3_endpoint.server.faults.requests
    assert requests["POST"] == 1  # cb/c and cb/d in one DeleteObjects
    assert requests["DELETE"] == 3  # the conditional ones, one by one


def test_delete_many_falls_back_when_delete_objects_is_not_implemented(
    s3_endpoint: S3Endpoint, s3_store: S3Store
) -> None:
    s3_store.put_many({"cb/a": b"1", "cb/b": b"2", "cb/c": b"3"})
    s3_endpoint.server.faults.add(Fault.error(501, "NotImplemented"), method="POST")
    s3_store.delete_many(["cb/a", "cb/b"])
    assert list(s3_store.list()) == ["cb/c"]
    assert s3_endpoint.server.faults.requests["DELETE"] == 2


def test_delete_many_reports_per_key_errors(s3_endpoint: S3Endpoint, s3_store: S3Store) -> None:
    original = s3_store.client.delete_objects

    def partly_denied(**kwargs: Any) -> Any:
        response = original(**kwargs)
        first = kwargs["Delete"]["Objects"][0]["Key"]
        response["Errors"] = [{"Key": first, "Code": "AccessDenied", "Message": "no"}]
        return response

    s3_store.client.delete_objects = partly_denied  # type: ignore[method-assign]
    with pytest.raises(PermissionDeniedError) as info:
        s3_store.delete_many(["cb/a", "cb/b"])
    assert info.value.key == "cb/a"


def test_mock_s3_store_fixture_works_without_a_server(mock_s3_store: S3Store) -> None:
    etag = mock_s3_store.put("cb/k", b"v", if_none_match="*")
    assert mock_s3_store.get("cb/k").etag == etag
    assert mock_s3_store.options.endpoint_url is None


# -- assume role ----------------------------------------------------------------------------------


@pytest.fixture
def role_arn(s3_endpoint: S3Endpoint, monkeypatch: pytest.MonkeyPatch) -> str:
    # STS goes through boto3's own endpoint resolution; point it at the server.
    monkeypatch.setenv("AWS_ENDPOINT_URL_STS", s3_endpoint.endpoint_url)
    iam = boto3.client("iam", endpoint_url=s3_endpoint.endpoint_url, region_name=TEST_REGION)
    trust = {
        "Version": "2012-10-17",
        "Statement": [{"Effect": "Allow", "Principal": {"AWS": "*"}, "Action": "sts:AssumeRole"}],
    }
    role = iam.create_role(RoleName="documee-writer", AssumeRolePolicyDocument=json.dumps(trust))
    iam.close()
    return role["Role"]["Arn"]


def test_assumed_role_credentials_are_used_and_refreshed(
    s3_endpoint: S3Endpoint, role_arn: str
) -> None:
    with s3_endpoint.store(role_arn=role_arn, role_session_name="batch-7") as store:
        sent = _capture_headers(store)
        store.put("cb/k", b"v")
        credentials = store.client._request_signer._credentials  # the client's own
        first = credentials.get_frozen_credentials()
        assert first.access_key.startswith("ASIA")  # from STS, not the "testing" env keys
        assert credentials.method == "assume-role"
        # Make the credentials look expired: the next request must refresh them.
        credentials._expiry_time = datetime.now(UTC) - timedelta(seconds=1)
        store.get("cb/k")
        second = credentials.get_frozen_credentials()
        assert second.access_key != first.access_key
        assert credentials._expiry_time > datetime.now(UTC) + timedelta(minutes=30)
    auth = [h["authorization"] for _, h in sent]
    assert f"Credential={first.access_key}/" in auth[0]
    assert f"Credential={second.access_key}/" in auth[-1]


def test_assumed_role_session_name_reaches_sts(s3_endpoint: S3Endpoint, role_arn: str) -> None:
    from documee_remote.config import build_session

    session = build_session(
        S3Options(role_arn=role_arn, role_session_name="batch-7", external_id="ext-123")
    )
    sts = session.client("sts", region_name=TEST_REGION)
    identity = sts.get_caller_identity()
    sts.close()
    assert identity["Arn"].endswith("assumed-role/documee-writer/batch-7")


# -- secrets --------------------------------------------------------------------------------------

SECRET_KEY = "wJalrXUtnFEMI-secret-K7MDENG"
SESSION_TOKEN = "FwoGZXIvYXdzE-session-token-value"
EXTERNAL_ID = "external-id-shared-secret"


def test_credentials_never_appear_in_reprs_errors_or_our_logs(
    s3_endpoint: S3Endpoint, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    session = boto3.Session(
        aws_access_key_id="AKIAEXAMPLEKEYID",
        aws_secret_access_key=SECRET_KEY,
        aws_session_token=SESSION_TOKEN,
        region_name=TEST_REGION,
    )
    with S3Store.from_url(
        URL,
        session=session,
        endpoint_url=s3_endpoint.endpoint_url,
        role_arn="arn:aws:iam::123456789012:role/r",
        external_id=EXTERNAL_ID,
    ) as store:
        texts = [repr(store), str(store), repr(store.options), str(store.options)]
    with S3Store.from_url(URL, session=session, endpoint_url=s3_endpoint.endpoint_url) as store:
        store.put("cb/k", b"v", if_none_match="*")
        s3_endpoint.server.faults.add(ACCESS_DENIED, method="GET")
        with pytest.raises(PermissionDeniedError) as info:
            store.get("cb/k")
        with pytest.raises(AlreadyExistsError) as exists:
            store.put("cb/k", b"v", if_none_match="*")
        texts += [str(info.value), repr(info.value), str(exists.value)]
    for text in texts:
        for secret in (SECRET_KEY, SESSION_TOKEN, EXTERNAL_ID):
            assert secret not in text, text
    ours = [r for r in caplog.records if r.name.startswith("documee_remote")]
    assert ours  # the store does log (so this test could catch a leak)
    for record in ours:
        message = record.getMessage()
        for secret in (SECRET_KEY, SESSION_TOKEN, EXTERNAL_ID, "AKIAEXAMPLEKEYID"):
            assert secret not in message
    # botocore never logs the secret key itself (its DEBUG logs do show the session
    # token in request headers, which is why botocore DEBUG logging stays off in prod).
    assert SECRET_KEY not in caplog.text


# -- imports --------------------------------------------------------------------------------------


def _run_python(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_opening_an_s3_url_imports_neither_s3fs_nor_aiobotocore(aws_credentials: None) -> None:
    result = _run_python(
        """
        import sys
        import documee_remote
        from documee_remote import open_store
        store = open_store("s3://bkt/prefix", endpoint_url="http://127.0.0.1:9", region="us-east-1")
        assert type(store).__name__ == "S3Store", type(store)
        store.close()
        heavy = sorted(m for m in ("s3fs", "aiobotocore", "aiohttp", "fsspec") if m in sys.modules)
        print("HEAVY", heavy)
        """
    )
    assert result.returncode == 0, result.stderr
    assert "HEAVY []" in result.stdout


def test_importing_documee_remote_does_not_import_boto3() -> None:
    result = _run_python(
        """
        import sys
        import documee_remote, documee_remote.config, documee_remote.stores
        print("BOTO", sorted(m for m in ("boto3", "botocore") if m in sys.modules))
        """
    )
    assert result.returncode == 0, result.stderr
    assert "BOTO []" in result.stdout


def test_missing_boto3_raises_missing_dependency_with_the_install_hint() -> None:
    result = _run_python(
        """
        import sys
        sys.modules["boto3"] = None  # as if it were not installed
        from documee_remote import open_store
        from documee_remote.errors import MissingDependencyError
        try:
            open_store("s3://bkt/prefix")
        except MissingDependencyError as exc:
            assert isinstance(exc, ImportError)
            print("HINT", exc)
        """
    )
    assert result.returncode == 0, result.stderr
    assert "pip install 'documee-remote[s3]'" in result.stdout
