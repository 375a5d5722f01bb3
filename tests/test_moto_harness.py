"""The moto harness: server lifecycle, per-key serialisation, fault injection, counters."""

from __future__ import annotations

import io
import socket
import subprocess
import sys
import textwrap
import threading
import time
import urllib.request
from collections.abc import Iterable
from typing import Any

import boto3
import botocore.exceptions as bce
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

from documee_remote.testing.fixtures import TEST_BUCKET, TEST_REGION, S3Endpoint
from documee_remote.testing.moto_server import (
    ACCESS_DENIED,
    CONDITIONAL_CONFLICT,
    DROP,
    INTERNAL_ERROR,
    SLOW_DOWN,
    Fault,
    FaultInjector,
    HarnessApp,
    MotoServer,
    RequestInfo,
)


def _client(endpoint: S3Endpoint, *, attempts: int = 1) -> Any:
    client = boto3.client(
        "s3",
        endpoint_url=endpoint.endpoint_url,
        region_name=TEST_REGION,
        config=Config(retries={"mode": "standard", "total_max_attempts": attempts}),
    )
    endpoint._clients.append(client)  # closed by the fixture
    return client


def _read(client: Any, key: str) -> bytes | None:
    try:
        body = client.get_object(Bucket=TEST_BUCKET, Key=key)["Body"]
    except client.exceptions.NoSuchKey:
        return None
    with body:
        return bytes(body.read())


# -- lifecycle ------------------------------------------------------------------------------------


def test_server_binds_a_free_port_resets_and_stops(aws_credentials: None) -> None:
    server = MotoServer()
    assert repr(server) == "MotoServer(stopped)"
    with pytest.raises(RuntimeError):
        _ = server.endpoint_url
    with server:
        assert server.port > 0
        assert server.endpoint_url == f"http://127.0.0.1:{server.port}"
        assert server.start() is server  # idempotent
        client = boto3.client("s3", endpoint_url=server.endpoint_url, region_name=TEST_REGION)
        client.create_bucket(Bucket="lifecycle")
        assert "lifecycle" in [b["Name"] for b in client.list_buckets()["Buckets"]]
        server.reset()
        # moto's state is per process: this also resets the session's server, which
        # the s3_endpoint fixture resets before every test anyway.
        assert client.list_buckets()["Buckets"] == []
        client.close()
        port = server.port
    server.stop()  # idempotent
    with socket.socket() as sock:
        sock.settimeout(2)
        with pytest.raises(OSError):
            sock.connect(("127.0.0.1", port))


def test_two_servers_run_side_by_side(moto_server: MotoServer) -> None:
    with MotoServer() as other:
        assert other.port != moto_server.port
        with urllib.request.urlopen(other.endpoint_url + "/moto-api/data.json", timeout=10) as r:
            assert r.status == 200


def test_another_process_can_use_the_server(s3_endpoint: S3Endpoint) -> None:
    code = f"""
        import boto3
        client = boto3.client("s3", endpoint_url={s3_endpoint.endpoint_url!r})
        client.put_object(Bucket={TEST_BUCKET!r}, Key="from-child", Body=b"hello")
    """
    result = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert _read(s3_endpoint.client(), "from-child") == b"hello"
    assert s3_endpoint.server.faults.requests["PUT"] == 1


def test_the_command_line_prints_the_endpoint() -> None:
    process = subprocess.Popen(
        [sys.executable, "-m", "documee_remote.testing.moto_server", "--port", "0"],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        line = process.stdout.readline().strip()
        assert line.startswith("http://127.0.0.1:")
        with urllib.request.urlopen(line + "/moto-api/data.json", timeout=10) as response:
            assert response.status == 200
    finally:
        process.terminate()
        process.wait(timeout=30)
        if process.stdout is not None:
            process.stdout.close()


# -- per-key serialisation ------------------------------------------------------------------------


class _ConcurrencyProbe:
    """A stand-in WSGI app that records how many calls overlap, per key."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.active: dict[str, int] = {}
        self.peak: dict[str, int] = {}
        self.total_peak = 0
        self.together: list[set[str]] = []  # paths in flight at each entry

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
        key = environ["PATH_INFO"]
        with self.lock:
            self.active[key] = self.active.get(key, 0) + 1
            self.peak[key] = max(self.peak.get(key, 0), self.active[key])
            self.total_peak = max(self.total_peak, sum(self.active.values()))
            self.together.append({k for k, n in self.active.items() if n})
        time.sleep(0.02)
        with self.lock:
            self.active[key] -= 1
        start_response("200 OK", [("Content-Length", "0")])
        return [b""]


def _environ(method: str, path: str, body: bytes = b"", query: str = "") -> dict[str, Any]:
    return {
        "REQUEST_METHOD": method,
        "PATH_INFO": path,
        "QUERY_STRING": query,
        "HTTP_HOST": "127.0.0.1:5000",
        "HTTP_AUTHORIZATION": "AWS4-HMAC-SHA256 Credential=AKID/20250101/us-east-1/s3/aws4_request",
        "CONTENT_LENGTH": str(len(body)),
        "wsgi.input": io.BytesIO(body),
    }


def _hammer(app: HarnessApp, environs: list[dict[str, Any]]) -> None:
    threads = [threading.Thread(target=lambda e=e: list(app(e, lambda *a: None))) for e in environs]
    for t in threads:
        t.start()
    for t in threads:
        t.join()


def test_requests_on_one_key_never_overlap() -> None:
    probe = _ConcurrencyProbe()
    app = HarnessApp(probe, FaultInjector())
    methods = ["GET", "HEAD", "PUT", "POST", "DELETE"] * 2
    _hammer(app, [_environ(m, "/bkt/cb/counter") for m in methods])
    assert probe.peak["/bkt/cb/counter"] == 1


def test_requests_on_different_keys_run_in_parallel() -> None:
    probe = _ConcurrencyProbe()
    app = HarnessApp(probe, FaultInjector())
    _hammer(app, [_environ("PUT", f"/bkt/cb/key-{i}") for i in range(8)])
    assert probe.total_peak > 1


def test_delete_objects_locks_every_key_it_names() -> None:
    probe = _ConcurrencyProbe()
    app = HarnessApp(probe, FaultInjector())
    body = (
        b"<Delete><Object><Key>cb/a</Key></Object><Object><Key>cb/b&amp;c</Key></Object></Delete>"
    )
    environs = [_environ("POST", "/bkt", body, "delete=")]
    environs += [_environ("PUT", "/bkt/cb/b&c") for _ in range(3)]
    _hammer(app, environs)
    # Every request overlapped with no other: the batch held cb/b&c's lock.
    assert probe.total_peak == 1


def test_a_listing_excludes_writes_to_its_bucket() -> None:
    probe = _ConcurrencyProbe()
    app = HarnessApp(probe, FaultInjector())
    environs = [_environ("PUT", f"/bkt/k{i}") for i in range(6)]
    environs[3:3] = [_environ("GET", "/bkt", query="list-type=2") for _ in range(2)]
    _hammer(app, environs)
    with_listing = [paths for paths in probe.together if "/bkt" in paths]
    assert with_listing
    assert all(paths == {"/bkt"} for paths in with_listing)  # no write ran beside it
    assert probe.peak["/bkt"] == 1
    assert any(len(paths) > 1 for paths in probe.together)  # the writes overlapped


def test_racing_conditional_increments_through_the_harness_lose_nothing(
    s3_endpoint: S3Endpoint,
) -> None:
    # The scenario in which bare moto loses updates: threads doing If-Match writes.
    client = _client(s3_endpoint)
    client.put_object(Bucket=TEST_BUCKET, Key="n", Body=b"0")
    wins: list[int] = []
    codes: set[str] = set()

    def worker() -> None:
        done = 0
        while done < 15:
            response = client.get_object(Bucket=TEST_BUCKET, Key="n")
            with response["Body"] as body:
                value = int(body.read())
            try:
                client.put_object(
                    Bucket=TEST_BUCKET,
                    Key="n",
                    Body=str(value + 1).encode(),
                    IfMatch=response["ETag"],
                )
                done += 1
            except ClientError as exc:
                codes.add(exc.response["Error"]["Code"])
        wins.append(done)

    threads = [threading.Thread(target=worker) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sum(wins) == 90
    assert _read(client, "n") == b"90"
    assert codes <= {"PreconditionFailed"}  # and no 500 from a GET racing a PUT


# -- faults ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fault", "status", "code"),
    [
        (SLOW_DOWN, 503, "SlowDown"),
        (INTERNAL_ERROR, 500, "InternalError"),
        (CONDITIONAL_CONFLICT, 409, "ConditionalRequestConflict"),
        (ACCESS_DENIED, 403, "AccessDenied"),
        (Fault.error(501, "NotImplemented", "nope"), 501, "NotImplemented"),
    ],
)
def test_error_faults_answer_s3_errors(
    s3_endpoint: S3Endpoint, fault: Fault, status: int, code: str
) -> None:
    client = _client(s3_endpoint)
    s3_endpoint.server.faults.add(fault, method="PUT", key="^k$")
    with pytest.raises(ClientError) as info:
        client.put_object(Bucket=TEST_BUCKET, Key="k", Body=b"v")
    assert info.value.response["Error"]["Code"] == code
    assert info.value.response["ResponseMetadata"]["HTTPStatusCode"] == status
    assert _read(client, "k") is None  # "before": moto never saw the write
    client.put_object(Bucket=TEST_BUCKET, Key="k", Body=b"v")  # the rule fired once
    assert s3_endpoint.server.faults.faults == {fault.name: 1}


def test_head_faults_carry_only_the_status(s3_endpoint: S3Endpoint) -> None:
    client = _client(s3_endpoint)
    client.put_object(Bucket=TEST_BUCKET, Key="k", Body=b"v")
    s3_endpoint.server.faults.add(ACCESS_DENIED, method="HEAD")
    with pytest.raises(ClientError) as info:
        client.head_object(Bucket=TEST_BUCKET, Key="k")
    assert info.value.response["Error"]["Code"] == "403"


def test_an_error_after_the_write_means_it_landed(s3_endpoint: S3Endpoint) -> None:
    client = _client(s3_endpoint)
    s3_endpoint.server.faults.add(INTERNAL_ERROR, method="PUT", key="^k$", after=True)
    with pytest.raises(ClientError):
        client.put_object(Bucket=TEST_BUCKET, Key="k", Body=b"landed")
    assert _read(client, "k") == b"landed"


def test_a_drop_before_is_a_connection_error_and_nothing_is_written(
    s3_endpoint: S3Endpoint,
) -> None:
    client = _client(s3_endpoint)
    s3_endpoint.server.faults.add(DROP, method="PUT")
    started = time.monotonic()
    with pytest.raises(bce.ConnectionClosedError):
        client.put_object(Bucket=TEST_BUCKET, Key="k", Body=b"x" * 100_000)
    assert time.monotonic() - started < 5  # closed at once, not left to time out
    assert _read(client, "k") is None


def test_a_drop_after_loses_the_response_of_a_write_that_landed(s3_endpoint: S3Endpoint) -> None:
    client = _client(s3_endpoint)
    s3_endpoint.server.faults.add(DROP, method="PUT", after=True)
    with pytest.raises(bce.ConnectionClosedError):
        client.put_object(Bucket=TEST_BUCKET, Key="k", Body=b"landed")
    assert _read(client, "k") == b"landed"


def test_botocore_retries_a_dropped_connection(s3_endpoint: S3Endpoint, fast_retries: None) -> None:
    client = _client(s3_endpoint, attempts=3)
    faults = s3_endpoint.server.faults
    faults.add(DROP, method="PUT", times=2)
    response = client.put_object(Bucket=TEST_BUCKET, Key="k", Body=b"v")
    assert response["ResponseMetadata"]["RetryAttempts"] == 2
    assert faults.requests["PUT"] == 3
    assert faults.faults["drop"] == 2


def test_nth_times_and_counters(s3_endpoint: S3Endpoint) -> None:
    client = _client(s3_endpoint)
    faults = s3_endpoint.server.faults
    rule = faults.add(SLOW_DOWN, method="GET", key="^k$", nth=2, times=2)
    client.put_object(Bucket=TEST_BUCKET, Key="k", Body=b"v")
    outcomes = []
    for _ in range(5):
        try:
            _read(client, "k")
            outcomes.append("ok")
        except ClientError:
            outcomes.append("fault")
    assert outcomes == ["ok", "fault", "fault", "ok", "ok"]
    assert (rule.seen, rule.fired) == (5, 2)
    assert faults.requests == {"PUT": 1, "GET": 5}
    assert faults.faults == {"SlowDown": 2}
    faults.clear()
    assert faults.requests == {}
    _read(client, "k")  # the rule is gone
    assert faults.faults == {}


def test_unlimited_rules_and_removal(s3_endpoint: S3Endpoint) -> None:
    client = _client(s3_endpoint)
    faults = s3_endpoint.server.faults
    rule = faults.add(ACCESS_DENIED, method="GET", times=None)
    for _ in range(3):
        with pytest.raises(ClientError):
            client.list_objects_v2(Bucket=TEST_BUCKET)
    faults.remove(rule)
    client.list_objects_v2(Bucket=TEST_BUCKET)
    assert rule.fired == 3


def test_probability_zero_never_fires_and_one_always_does(s3_endpoint: S3Endpoint) -> None:
    client = _client(s3_endpoint)
    faults = s3_endpoint.server.faults
    never = faults.add(SLOW_DOWN, method="PUT", times=None, probability=0.0)
    for i in range(5):
        client.put_object(Bucket=TEST_BUCKET, Key=f"p{i}", Body=b"v")
    assert (never.seen, never.fired) == (5, 0)
    faults.add(SLOW_DOWN, method="PUT", times=None, probability=1.0)
    with pytest.raises(ClientError):
        client.put_object(Bucket=TEST_BUCKET, Key="p9", Body=b"v")


def test_a_predicate_can_choose_requests(s3_endpoint: S3Endpoint) -> None:
    client = _client(s3_endpoint)
    seen: list[RequestInfo] = []

    def conditional_puts(info: RequestInfo) -> bool:
        seen.append(info)
        return info.method == "PUT" and "if-none-match" in info.headers

    s3_endpoint.server.faults.add(CONDITIONAL_CONFLICT, key=conditional_puts, times=None)
    client.put_object(Bucket=TEST_BUCKET, Key="a/b", Body=b"v")
    with pytest.raises(ClientError):
        client.put_object(Bucket=TEST_BUCKET, Key="a/c", Body=b"v", IfNoneMatch="*")
    assert [(i.bucket, i.key, i.service) for i in seen] == [
        (TEST_BUCKET, "a/b", "s3"),
        (TEST_BUCKET, "a/c", "s3"),
    ]


def test_a_key_regex_never_matches_bucket_requests(s3_endpoint: S3Endpoint) -> None:
    client = _client(s3_endpoint)
    s3_endpoint.server.faults.add(SLOW_DOWN, key=".*", times=None)
    client.list_objects_v2(Bucket=TEST_BUCKET)  # bucket-level: untouched
    with pytest.raises(ClientError):
        client.get_object(Bucket=TEST_BUCKET, Key="x")


def test_s3_rules_leave_sts_alone_and_sts_rules_catch_it(s3_endpoint: S3Endpoint) -> None:
    faults = s3_endpoint.server.faults
    faults.add(ACCESS_DENIED, method="POST", times=None)  # service="s3" by default
    sts = boto3.client("sts", endpoint_url=s3_endpoint.endpoint_url, region_name=TEST_REGION)
    try:
        assert sts.get_caller_identity()["Account"]
        faults.add(ACCESS_DENIED, service="sts")
        with pytest.raises(ClientError) as info:
            sts.get_caller_identity()
        assert info.value.response["Error"]["Code"] == "AccessDenied"
    finally:
        sts.close()
    assert "POST" not in faults.requests  # STS requests are not counted as S3 ones


def test_utf8_keys_are_matched(s3_endpoint: S3Endpoint) -> None:
    client = _client(s3_endpoint)
    s3_endpoint.server.faults.add(ACCESS_DENIED, key="café/ü")
    with pytest.raises(ClientError):
        client.put_object(Bucket=TEST_BUCKET, Key="café/ü.json", Body=b"v")


@pytest.mark.parametrize(
    "kwargs", [{"nth": 0}, {"times": 0}, {"probability": 1.5}, {"probability": -0.1}]
)
def test_invalid_rules_are_refused(kwargs: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        FaultInjector().add(SLOW_DOWN, **kwargs)


# -- switches -------------------------------------------------------------------------------------


def test_stripping_conditional_headers_imitates_a_service_that_ignores_them(
    s3_endpoint: S3Endpoint,
) -> None:
    client = _client(s3_endpoint)
    client.put_object(Bucket=TEST_BUCKET, Key="k", Body=b"1")
    with pytest.raises(ClientError):
        client.put_object(Bucket=TEST_BUCKET, Key="k", Body=b"2", IfNoneMatch="*")
    s3_endpoint.server.faults.strip_conditional_headers = True
    client.put_object(Bucket=TEST_BUCKET, Key="k", Body=b"2", IfNoneMatch="*")
    client.put_object(Bucket=TEST_BUCKET, Key="k", Body=b"3", IfMatch='"stale"')
    assert _read(client, "k") == b"3"
    s3_endpoint.server.faults.clear()
    assert s3_endpoint.server.faults.strip_conditional_headers is False


def test_latency_is_added_to_every_request(s3_endpoint: S3Endpoint) -> None:
    client = _client(s3_endpoint)
    client.put_object(Bucket=TEST_BUCKET, Key="k", Body=b"v")
    s3_endpoint.server.faults.latency_ms = 150
    started = time.monotonic()
    client.head_object(Bucket=TEST_BUCKET, Key="k")
    assert time.monotonic() - started >= 0.15
    s3_endpoint.server.faults.clear()
    assert s3_endpoint.server.faults.latency_ms == 0


def test_latency_is_not_serialised_by_the_key_locks(s3_endpoint: S3Endpoint) -> None:
    client = _client(s3_endpoint)
    client.put_object(Bucket=TEST_BUCKET, Key="k", Body=b"v")
    s3_endpoint.server.faults.latency_ms = 200
    started = time.monotonic()
    threads = [
        threading.Thread(target=lambda: client.head_object(Bucket=TEST_BUCKET, Key="k"))
        for _ in range(5)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert time.monotonic() - started < 0.8  # 5 x 200 ms overlapped, not 1 s in a row


def test_moto_api_requests_bypass_the_harness(s3_endpoint: S3Endpoint) -> None:
    s3_endpoint.server.faults.add(DROP, times=None, service=None)
    s3_endpoint.server.reset()  # /moto-api/reset still answers
    assert s3_endpoint.server.faults.requests == {}
