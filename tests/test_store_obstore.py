"""ObstoreStore: the store contract on the harness server, then what only this backend does."""

from __future__ import annotations

import asyncio
import functools
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("obstore")

from documee_remote import PersistenceManager, open_store
from documee_remote.errors import (
    AlreadyExistsError,
    ConditionalRequestConflictError,
    ConfigurationError,
    NotFoundError,
    ObjectTooLargeError,
    PermissionDeniedError,
    PreconditionFailedError,
    ServiceUnavailableError,
    StorageTimeoutError,
    ThrottledError,
    TransientError,
)
from documee_remote.layout import LIFECYCLE_TAG_KEY
from documee_remote.stores import Store, etag_of
from documee_remote.stores import _obstore as obstore_backend
from documee_remote.stores._obstore import ObstoreStore, answer_of
from documee_remote.stores.s3 import WRITE_TOKEN_METADATA
from documee_remote.testing.contract import StoreContract
from documee_remote.testing.fixtures import (
    STORE_PREFIX,
    TEST_BUCKET,
    TEST_REGION,
    S3Backdoor,
    S3Endpoint,
)
from documee_remote.testing.moto_server import (
    ACCESS_DENIED,
    CONDITIONAL_CONFLICT,
    DROP,
    INTERNAL_ERROR,
    SLOW_DOWN,
    Fault,
    RequestInfo,
)

from .test_manager import check_round_trip
from .test_merge import check_merge_race

URL = f"s3://{TEST_BUCKET}/{STORE_PREFIX}"


@pytest.fixture
def fast_obstore_retries(monkeypatch: pytest.MonkeyPatch) -> None:
    """obstore's backoff (and the store's own, for conditional deletes) in milliseconds."""

    def retry_config(self: ObstoreStore) -> dict[str, Any]:
        return {
            "max_retries": self.options.max_attempts - 1,
            "backoff": {"init_backoff": timedelta(milliseconds=1), "max_backoff": timedelta(0.01)},
        }

    monkeypatch.setattr(ObstoreStore, "_retry_config", retry_config)
    monkeypatch.setattr(obstore_backend, "_backoff", lambda attempt: 0.001)


def _open(endpoint: S3Endpoint, **options: Any) -> ObstoreStore:
    options.setdefault("endpoint_url", endpoint.endpoint_url)
    options.setdefault("region", TEST_REGION)
    return ObstoreStore.from_url(URL, **options)


@pytest.fixture
def ob_store(s3_endpoint: S3Endpoint, fast_obstore_retries: None) -> Iterator[ObstoreStore]:
    store = _open(s3_endpoint)
    try:
        yield store
    finally:
        store.close()


# -- the contract ---------------------------------------------------------------------------------


class TestObstoreStoreMotoServer(StoreContract):
    """The contract over HTTP against the harness server (atomic per key, like S3)."""

    @pytest.fixture
    def store_factory(self, s3_endpoint: S3Endpoint) -> Callable[..., Store]:
        return functools.partial(
            ObstoreStore.from_url, URL, endpoint_url=s3_endpoint.endpoint_url, region=TEST_REGION
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
        super().test_processes_racing_compare_and_swap_lose_nothing(process_store_factory, store)


# -- opening --------------------------------------------------------------------------------------


def test_open_store_picks_obstore_when_asked(s3_endpoint: S3Endpoint) -> None:
    store = open_store(URL, backend="obstore", endpoint_url=s3_endpoint.endpoint_url, concurrency=4)
    with store:
        assert isinstance(store, ObstoreStore)
        assert store.url == URL
        assert store.concurrency == 4
        assert "ObstoreStore" in repr(store)
    with pytest.raises(ConfigurationError, match="cannot open"):
        open_store("memory://x", backend="obstore")


def test_the_default_backend_never_imports_obstore(aws_credentials: None) -> None:
    code = textwrap.dedent(
        """
        import sys
        import documee_remote
        from documee_remote import open_store
        open_store("s3://bkt/p", endpoint_url="http://127.0.0.1:9").close()
        assert "obstore" not in sys.modules, "obstore was imported"
        assert "documee_remote.stores._obstore" not in sys.modules
        assert "documee_remote.stores.obstore" not in sys.modules
        """
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


def test_expected_bucket_owner_is_refused_not_ignored(s3_endpoint: S3Endpoint) -> None:
    with pytest.raises(ConfigurationError, match="ExpectedBucketOwner"):
        _open(s3_endpoint, expected_bucket_owner="111122223333")


def test_invalid_options_raise_configuration_error(s3_endpoint: S3Endpoint) -> None:
    with pytest.raises(ConfigurationError):
        _open(s3_endpoint, max_attempts=0)


def test_a_store_on_a_prefix_does_not_see_a_sibling_with_a_longer_name(
    s3_endpoint: S3Endpoint,
) -> None:
    s3_endpoint.backdoor("store-root-2/").write("cb/k", b"sibling")
    with _open(s3_endpoint) as store:
        assert list(store.list()) == []
        store.put("cb/k", b"mine")
        assert list(store.list()) == ["cb/k"]
    assert s3_endpoint.backdoor("store-root-2/").read("cb/k") == b"sibling"


def test_listing_a_prefix_that_ends_mid_segment(ob_store: ObstoreStore) -> None:
    for key in ("ab/x", "abc/y", "abd/z", "b/w", "ab"):
        ob_store.put(key, b"1")
    assert list(ob_store.list("ab")) == ["ab", "ab/x", "abc/y", "abd/z"]
    assert list(ob_store.list("abc")) == ["abc/y"]
    assert list(ob_store.list("ab/")) == ["ab/x"]
    metas = list(ob_store.list_meta("ab"))
    assert [m.etag for m in metas] == [etag_of(b"1")] * 4


# -- what is written ------------------------------------------------------------------------------


def test_content_type_token_and_lifecycle_tags(
    ob_store: ObstoreStore, s3_endpoint: S3Endpoint
) -> None:
    backdoor = s3_endpoint.backdoor()
    ob_store.put("cb/k.json", b"{}")
    head = backdoor.head("cb/k.json")
    assert head["ContentType"] == "application/json"
    assert WRITE_TOKEN_METADATA not in head["Metadata"]
    ob_store.put("cb/k.json", b"[]", if_match=etag_of(b"{}"))
    token = backdoor.head("cb/k.json")["Metadata"][WRITE_TOKEN_METADATA]
    assert len(token) == 32
    ob_store.put("cb/_lease.json", b"{}", if_none_match="*")
    tags = backdoor.client.get_object_tagging(
        Bucket=TEST_BUCKET, Key=STORE_PREFIX + "cb/_lease.json"
    )
    assert tags["TagSet"] == [{"Key": LIFECYCLE_TAG_KEY, "Value": "lease"}]


def test_sse_s3_is_requested_and_applied(s3_endpoint: S3Endpoint) -> None:
    with _open(s3_endpoint, sse="AES256") as store:
        store.put("cb/k", b"v")
        store.put_many({"cb/a": b"1", "cb/b": b"2"})
    for key in ("cb/k", "cb/a", "cb/b"):
        assert s3_endpoint.backdoor().head(key)["ServerSideEncryption"] == "AES256"


def test_bulk_puts_and_gets_of_many_objects(ob_store: ObstoreStore) -> None:
    items = {f"cb/file_{i:016x}.json": (f"{i}" * (i % 50 + 1)).encode() for i in range(300)}
    assert ob_store.put_many(items) == {k: etag_of(v) for k, v in items.items()}
    got = ob_store.get_many([*items, "cb/none.json"])
    assert got.pop("cb/none.json") is None
    assert {k: v.data if v else None for k, v in got.items()} == items
    assert ob_store.delete_many(list(items)) == []
    assert list(ob_store.list()) == []


def test_bulk_operations_work_inside_a_running_event_loop(ob_store: ObstoreStore) -> None:
    async def main() -> dict[str, str]:
        return ob_store.put_many({"cb/a": b"1", "cb/b": b"2"})

    assert asyncio.run(main()) == {"cb/a": etag_of(b"1"), "cb/b": etag_of(b"2")}


def test_max_object_size_applies_to_get_many(
    s3_endpoint: S3Endpoint, ob_store: ObstoreStore
) -> None:
    ob_store.put_many({"cb/big": b"x" * 2000, "cb/small": b"y"})
    with _open(s3_endpoint, max_object_size=1000) as limited:
        with pytest.raises(ObjectTooLargeError):
            limited.get_many(["cb/big", "cb/small"])
        assert limited.get_many(["cb/small", "cb/none"])["cb/small"] is not None


def test_fixtures_round_trip_byte_for_byte(s3_endpoint: S3Endpoint, codebase_dir: Path) -> None:
    store = open_store(
        s3_endpoint.url("fixtures/"),
        backend="obstore",
        endpoint_url=s3_endpoint.endpoint_url,
        region=s3_endpoint.region,
    )
    with store:
        check_round_trip(store, codebase_dir)
    analysis = (codebase_dir / "analysis.json").read_bytes()
    if analysis:
        backdoor = s3_endpoint.backdoor("fixtures/")
        assert backdoor.read(f"{codebase_dir.name}/analysis.json") == analysis


def test_full_save_writes_only_what_changed(ob_store: ObstoreStore) -> None:
    from documee_remote.merge import new_analysis, refresh_derived
    from documee_remote.testing.factories import make_file_analysis

    pm = PersistenceManager(ob_store)
    analysis = new_analysis("cb1")
    for i in range(60):
        analysis.file_analyses[f"/src/f{i}.py"] = make_file_analysis(f"/src/f{i}.py")
    refresh_derived(analysis)
    assert pm.save_analysis("cb1", analysis).uploaded == 60
    assert pm.load_analysis("cb1") == analysis
    assert pm.save_analysis("cb1", analysis).uploaded == 0


@pytest.mark.slow
def test_eight_processes_merging_lose_nothing(s3_endpoint: S3Endpoint) -> None:
    factory = functools.partial(
        open_store,
        s3_endpoint.url("race/"),
        backend="obstore",
        endpoint_url=s3_endpoint.endpoint_url,
        region=s3_endpoint.region,
    )
    check_merge_race(factory, factory(), workers=8, merges=25)


# -- errors ---------------------------------------------------------------------------------------


def test_missing_bucket_is_a_configuration_error(
    s3_endpoint: S3Endpoint, fast_obstore_retries: None
) -> None:
    with ObstoreStore.from_url(
        "s3://no-such-bucket/p", endpoint_url=s3_endpoint.endpoint_url
    ) as store:
        with pytest.raises(ConfigurationError, match="does not exist"):
            store.get("cb/k")
        with pytest.raises(ConfigurationError):
            store.put("cb/k", b"v")
        with pytest.raises(ConfigurationError):
            list(store.list())


@pytest.mark.parametrize(
    ("operation", "method"),
    [
        ("get", "GET"),
        ("head", "HEAD"),
        ("put", "PUT"),
        ("delete", "POST"),  # obstore deletes even one key with DeleteObjects
        ("delete_if", "DELETE"),  # the conditional delete is a DeleteObject
        ("list", "GET"),
    ],
)
def test_access_denied_is_permission_denied(
    s3_endpoint: S3Endpoint, ob_store: ObstoreStore, operation: str, method: str
) -> None:
    ob_store.put("cb/k.json", b"v")
    s3_endpoint.server.faults.add(ACCESS_DENIED, method=method, times=None)
    calls: dict[str, Callable[[], object]] = {
        "get": lambda: ob_store.get("cb/k.json"),
        "head": lambda: ob_store.head("cb/k.json"),
        "put": lambda: ob_store.put("cb/k.json", b"w"),
        "delete": lambda: ob_store.delete("cb/k.json"),
        "delete_if": lambda: ob_store.delete("cb/k.json", if_match=etag_of(b"v")),
        "list": lambda: list(ob_store.list()),
    }
    with pytest.raises(PermissionDeniedError) as info:
        calls[operation]()
    assert ob_store.url in str(info.value)
    assert "127.0.0.1" not in str(info.value)  # obstore's text (request URLs) stays out
    if operation not in ("list", "delete"):  # a DeleteObjects failure names no single key
        assert info.value.key == "cb/k.json"


@pytest.mark.parametrize("operation", ["get", "head"])
def test_a_403_that_hides_a_missing_key_is_not_found(
    s3_endpoint: S3Endpoint, ob_store: ObstoreStore, operation: str
) -> None:
    method = "GET" if operation == "get" else "HEAD"
    s3_endpoint.server.faults.add(ACCESS_DENIED, method=method, key="cb/missing")
    with pytest.raises(NotFoundError):
        getattr(ob_store, operation)("cb/missing")


def test_a_403_hiding_a_missing_key_in_get_many_is_none(
    s3_endpoint: S3Endpoint, ob_store: ObstoreStore
) -> None:
    ob_store.put("cb/here", b"1")
    s3_endpoint.server.faults.add(ACCESS_DENIED, method="GET", key="cb/missing")
    got = ob_store.get_many(["cb/here", "cb/missing"])
    assert got["cb/missing"] is None
    assert got["cb/here"] is not None


@pytest.mark.parametrize(
    ("fault", "expected"),
    [
        (SLOW_DOWN, ThrottledError),
        (INTERNAL_ERROR, ServiceUnavailableError),
        (DROP, ServiceUnavailableError),
    ],
)
def test_persistent_failures_raise_transient_errors_after_the_retries(
    s3_endpoint: S3Endpoint, fast_obstore_retries: None, fault: Fault, expected: type
) -> None:
    faults = s3_endpoint.server.faults
    with _open(s3_endpoint, max_attempts=3) as store:
        faults.add(fault, method="GET", times=None)
        with pytest.raises(expected) as info:
            store.get("cb/k")
        assert isinstance(info.value, TransientError)
        assert "'cb/k'" in str(info.value)
        assert faults.requests["GET"] == 3  # every attempt reached the server
        faults.add(fault, method="PUT", times=None)
        with pytest.raises(expected):
            store.put_many({"cb/a": b"1", "cb/b": b"2"})


def test_transient_errors_are_retried_then_succeed(
    s3_endpoint: S3Endpoint, ob_store: ObstoreStore
) -> None:
    faults = s3_endpoint.server.faults
    ob_store.put("cb/k", b"v")
    faults.add(INTERNAL_ERROR, method="GET", key="cb/k", times=2)
    assert ob_store.get("cb/k").data == b"v"
    faults.add(SLOW_DOWN, method="PUT", key="cb/k", times=2)
    assert ob_store.put("cb/k", b"w") == etag_of(b"w")


def test_unreachable_endpoint_is_service_unavailable(
    aws_credentials: None, fast_obstore_retries: None
) -> None:
    import socket

    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with ObstoreStore.from_url(
        "s3://bkt/p", endpoint_url=f"http://127.0.0.1:{port}", max_attempts=1
    ) as store:
        with pytest.raises(ServiceUnavailableError) as info:
            store.get("cb/k")
        assert "s3://bkt/p/" in str(info.value)
        with pytest.raises(ServiceUnavailableError):
            store.delete("cb/k", if_match=etag_of(b"x"))


def test_read_timeout_is_storage_timeout(s3_endpoint: S3Endpoint) -> None:
    faults = s3_endpoint.server.faults
    with _open(s3_endpoint, read_timeout=0.2, max_attempts=1) as store:
        faults.latency_ms = 600
        with pytest.raises(StorageTimeoutError) as info:
            store.head("cb/k")
        assert isinstance(info.value, TimeoutError)
    # Let the abandoned HEAD reach the server before the next test counts requests.
    deadline = time.monotonic() + 10
    while faults.requests["HEAD"] < 1 and time.monotonic() < deadline:
        time.sleep(0.02)


# -- conditional writes and deletes: lost responses and the write token ---------------------------


@pytest.mark.parametrize("fault", [DROP, INTERNAL_ERROR], ids=["drop", "500"])
@pytest.mark.parametrize("condition", ["if_match", "create_only"])
def test_a_retried_conditional_write_whose_first_attempt_landed_succeeds(
    s3_endpoint: S3Endpoint, ob_store: ObstoreStore, fault: Fault, condition: str
) -> None:
    faults = s3_endpoint.server.faults
    if condition == "if_match":
        old = ob_store.put("cb/k", b"old")
        kwargs: dict[str, Any] = {"if_match": old}
    else:
        kwargs = {"if_none_match": "*"}
    # Applied by moto, then the response is lost: obstore retries, and the retry's
    # precondition fails against our own write. The token shows it was ours.
    faults.add(fault, method="PUT", key="cb/k", after=True)
    assert ob_store.put("cb/k", b"new", **kwargs) == etag_of(b"new")
    assert ob_store.get("cb/k").data == b"new"
    assert faults.faults[fault.name] == 1
    assert faults.requests["HEAD"] == 1  # the token check


def test_a_genuine_lost_race_still_fails(s3_endpoint: S3Endpoint, ob_store: ObstoreStore) -> None:
    stale = ob_store.put("cb/k", b"1", if_none_match="*")
    ob_store.put("cb/k", b"2", if_match=stale)
    with pytest.raises(PreconditionFailedError):
        ob_store.put("cb/k", b"3", if_match=stale)
    with pytest.raises(AlreadyExistsError):
        ob_store.put("cb/k", b"3", if_none_match="*")
    assert ob_store.get("cb/k").data == b"2"
    assert s3_endpoint.server.faults.requests["HEAD"] == 0  # no retry: nothing to check


def test_409_conditional_conflict_after_the_retries_is_retryable_error(
    s3_endpoint: S3Endpoint, fast_obstore_retries: None
) -> None:
    with _open(s3_endpoint, max_attempts=1) as store:
        etag = store.put("cb/k", b"1")
        s3_endpoint.server.faults.add(CONDITIONAL_CONFLICT, method="PUT", key="cb/k")
        with pytest.raises(ConditionalRequestConflictError) as info:
            store.put("cb/k", b"2", if_match=etag)
        assert isinstance(info.value, TransientError)
        assert store.get("cb/k").data == b"1"


def test_a_retried_conditional_delete_that_finds_the_key_gone_succeeds(
    s3_endpoint: S3Endpoint, ob_store: ObstoreStore
) -> None:
    etag = ob_store.put("cb/k", b"1")
    s3_endpoint.server.faults.add(DROP, method="DELETE", key="cb/k", after=True)
    ob_store.delete("cb/k", if_match=etag)
    assert not ob_store.exists("cb/k")
    assert s3_endpoint.server.faults.requests["DELETE"] == 2
    with pytest.raises(PreconditionFailedError):  # without a retry, still a failure
        ob_store.delete("cb/k", if_match=etag)


def test_conditional_delete_retries_server_errors(
    s3_endpoint: S3Endpoint, ob_store: ObstoreStore
) -> None:
    etag = ob_store.put("cb/k", b"1")
    s3_endpoint.server.faults.add(SLOW_DOWN, method="DELETE", key="cb/k", times=2)
    ob_store.delete("cb/k", if_match=etag)
    assert not ob_store.exists("cb/k")


def test_conditional_delete_many_keeps_what_changed(ob_store: ObstoreStore) -> None:
    etags = ob_store.put_many({"cb/a": b"1", "cb/b": b"2", "cb/c": b"3"})
    ob_store.put("cb/b", b"changed")
    kept = ob_store.delete_many(["cb/a", "cb/b", "cb/c"], if_match=etags)
    assert kept == ["cb/b"]
    assert list(ob_store.list()) == ["cb/b"]


def test_probe_finds_every_condition_honoured(ob_store: ObstoreStore) -> None:
    assert ob_store.capabilities.conditional_delete
    assert ob_store.probe().ok


def test_probe_fails_when_conditional_headers_are_ignored(
    s3_endpoint: S3Endpoint, ob_store: ObstoreStore
) -> None:
    s3_endpoint.server.faults.strip_conditional_headers = True
    result = ob_store.probe()
    assert not result.ok
    assert not result.conditional_delete


# -- reading obstore's errors ---------------------------------------------------------------------


def test_answer_of_reads_status_code_message_and_retries() -> None:
    from obstore.exceptions import GenericError

    text = (
        "Generic S3 error: Error performing PUT http://h/b/k in 3ms, after 2 retries, "
        "max_retries: 2 - Server returned non-2xx status code: 503 Service Unavailable: "
        "<Error><Code>SlowDown</Code><Message>Please reduce your request rate.</Message></Error>"
    )
    answer = answer_of(GenericError(text))
    assert answer is not None
    assert (answer.status, answer.code, answer.retries) == (503, "SlowDown", 2)
    assert answer.message == "Please reduce your request rate."
    assert answer_of(GenericError("HTTP error: error sending request")) is None


def test_a_failed_put_many_raises_after_every_request_finished(
    s3_endpoint: S3Endpoint, ob_store: ObstoreStore
) -> None:
    s3_endpoint.server.faults.add(Fault.error(403, "AccessDenied"), method="PUT", key="cb/b")
    with pytest.raises(PermissionDeniedError):
        ob_store.put_many({"cb/a": b"1", "cb/b": b"2", "cb/c": b"3"})
    assert sorted(ob_store.list()) == ["cb/a", "cb/c"]


# -- credentials ----------------------------------------------------------------------------------


def _record_access_keys(s3_endpoint: S3Endpoint) -> list[str]:
    """The access key id of every S3 request from now on (a rule that never fires)."""
    seen: list[str] = []

    def record(info: RequestInfo) -> bool:
        auth = info.headers.get("authorization", "")
        if "Credential=" in auth:
            seen.append(auth.split("Credential=", 1)[1].split("/", 1)[0])
        return False

    s3_endpoint.server.faults.add(Fault.error(500, "Never"), key=record, times=None)
    return seen


def test_keys_in_the_environment_are_obstores_own(ob_store: ObstoreStore) -> None:
    assert ob_store._store.credential_provider is None  # no boto3 in the way


def test_without_keys_in_the_environment_boto3_finds_them(
    s3_endpoint: S3Endpoint, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    credentials = tmp_path / "credentials"
    credentials.write_text(
        "[default]\naws_access_key_id = AKIAFROMTHEFILE\naws_secret_access_key = secret\n"
    )
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"):
        monkeypatch.delenv(name)
    monkeypatch.delenv("AWS_SECURITY_TOKEN")
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(credentials))
    seen = _record_access_keys(s3_endpoint)
    with _open(s3_endpoint) as store:
        assert "AKIAFROMTHEFILE" not in repr(store._store.credential_provider)
        store.put("cb/k", b"v")
        store.put_many({"cb/a": b"1", "cb/b": b"2"})
        store.delete("cb/k", if_match=etag_of(b"v"))  # the presigned delete signs with them too
    assert seen
    assert set(seen) == {"AKIAFROMTHEFILE"}


def test_no_credentials_anywhere_is_a_configuration_error(
    s3_endpoint: S3Endpoint, monkeypatch: pytest.MonkeyPatch, fast_obstore_retries: None
) -> None:
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"):
        monkeypatch.delenv(name)
    monkeypatch.delenv("AWS_SECURITY_TOKEN")
    with _open(s3_endpoint) as store:
        with pytest.raises(ConfigurationError, match="credentials"):
            store.get("cb/k")


def test_an_assumed_role_signs_the_requests(
    s3_endpoint: S3Endpoint, monkeypatch: pytest.MonkeyPatch
) -> None:
    import json

    import boto3

    monkeypatch.setenv("AWS_ENDPOINT_URL_STS", s3_endpoint.endpoint_url)
    iam = boto3.client("iam", endpoint_url=s3_endpoint.endpoint_url, region_name=TEST_REGION)
    trust = {
        "Version": "2012-10-17",
        "Statement": [{"Effect": "Allow", "Principal": {"AWS": "*"}, "Action": "sts:AssumeRole"}],
    }
    role = iam.create_role(RoleName="documee-ob", AssumeRolePolicyDocument=json.dumps(trust))
    iam.close()
    seen = _record_access_keys(s3_endpoint)
    with _open(s3_endpoint, role_arn=role["Role"]["Arn"]) as store:
        store.put("cb/k", b"v")
    assert seen
    assert all(key.startswith("ASIA") for key in seen)  # STS's, not the "testing" env keys
