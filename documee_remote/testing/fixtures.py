"""pytest fixtures for S3 tests: a moto server per session, a fresh bucket per test.

Use them from a ``conftest.py``::

    from documee_remote.testing.fixtures import *

==========================  ========  ================================================
fixture                     scope     gives
==========================  ========  ================================================
``aws_credentials``         function  dummy ``AWS_*`` credentials and region; every other
                                      ``AWS_*`` variable removed, config files ignored,
                                      instance metadata disabled: nothing reaches AWS
``moto_server``             session   a running :class:`MotoServer` on a free port
``s3_endpoint``             function  :class:`S3Endpoint`: the server reset, its fault
                                      rules cleared, and an empty bucket created
``s3_store``                function  an ``S3Store`` on ``s3://<bucket>/store-root/``
                                      of that server
``mock_s3_store``           function  the same store under moto's in-process
                                      ``mock_aws`` (no HTTP, no server), with
                                      each mocked request atomic (:func:`atomic_mock_aws`)
``fast_retries``            function  botocore's retry backoff shortened to ~0, for
                                      tests that retry on purpose
==========================  ========  ================================================
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import pytest

from .moto_server import MotoServer

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

    from ..stores.s3 import S3Store

__all__ = [
    "STORE_PREFIX",
    "TEST_BUCKET",
    "TEST_REGION",
    "S3Backdoor",
    "S3Endpoint",
    "atomic_mock_aws",
    "aws_credentials",
    "fast_retries",
    "mock_s3_store",
    "moto_server",
    "s3_endpoint",
    "s3_store",
]

TEST_BUCKET = "documee-test"
TEST_REGION = "us-east-1"
#: Where ``s3_store`` and ``mock_s3_store`` are rooted inside the bucket.
STORE_PREFIX = "store-root/"


def _raw_client(*, region: str, endpoint_url: str | None = None) -> S3Client:
    """A default-configured S3 client, bypassing any store.

    Built through the library's shared service-model loader: ``mock_aws``
    resets boto3's default session on every start, and a fresh session spends
    ~0.3 s re-reading S3's service model.
    """
    from ..config import S3Options, build_s3_client

    return build_s3_client(S3Options(endpoint_url=endpoint_url, region=region))


@pytest.fixture
def aws_credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    """Dummy credentials and region; nothing from the real environment leaks in."""
    for name in list(os.environ):
        if name.startswith("AWS_"):  # profiles, roles, endpoints of real accounts
            monkeypatch.delenv(name)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_SECURITY_TOKEN", "testing")
    monkeypatch.setenv("AWS_SESSION_TOKEN", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", TEST_REGION)
    # No ~/.aws files (a developer's profile could set an endpoint or a role) and no
    # instance metadata lookups (a one-second timeout each, off EC2).
    monkeypatch.setenv("AWS_CONFIG_FILE", os.devnull)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", os.devnull)
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")


@pytest.fixture(scope="session")
def moto_server() -> Iterator[MotoServer]:
    """One harness server for the whole test session (port 0: a free port)."""
    with MotoServer() as server:
        yield server


class S3Backdoor:
    """Raw bytes under a bucket prefix, read and written with a plain boto3 client.

    Implements the contract suite's ``Backdoor`` protocol: it checks what is
    really stored without going through the store under test.
    """

    def __init__(self, client: S3Client, bucket: str, prefix: str = STORE_PREFIX) -> None:
        self.client = client
        self.bucket = bucket
        self.prefix = prefix

    def read(self, key: str) -> bytes | None:
        """The bytes stored under ``key``, or None."""
        try:
            response = self.client.get_object(Bucket=self.bucket, Key=self.prefix + key)
        except self.client.exceptions.NoSuchKey:
            return None
        with response["Body"] as body:
            return body.read()

    def write(self, key: str, data: bytes) -> None:
        """Store ``data`` under ``key`` directly."""
        self.client.put_object(Bucket=self.bucket, Key=self.prefix + key, Body=data)

    def head(self, key: str) -> dict[str, Any]:
        """The raw HeadObject response (metadata, encryption, ...)."""
        return dict(self.client.head_object(Bucket=self.bucket, Key=self.prefix + key))


@dataclass
class S3Endpoint:
    """A bucket on the harness server, as the ``s3_endpoint`` fixture gives it."""

    server: MotoServer
    bucket: str = TEST_BUCKET
    region: str = TEST_REGION
    _clients: list[Any] = field(default_factory=list, repr=False)

    @property
    def endpoint_url(self) -> str:
        """The server's ``http://127.0.0.1:<port>``."""
        return self.server.endpoint_url

    def url(self, prefix: str = "") -> str:
        """``s3://<bucket>/<prefix>``."""
        return f"s3://{self.bucket}/{prefix}"

    def client(self) -> S3Client:
        """A plain boto3 S3 client for the server (closed when the test ends)."""
        client = _raw_client(endpoint_url=self.endpoint_url, region=self.region)
        self._clients.append(client)
        return client

    def store(self, prefix: str = STORE_PREFIX, **options: Any) -> S3Store:
        """An ``S3Store`` on ``s3://<bucket>/<prefix>`` of the server; close it yourself."""
        from ..stores.s3 import S3Store

        options.setdefault("endpoint_url", self.endpoint_url)
        options.setdefault("region", self.region)
        return S3Store.from_url(self.url(prefix), **options)

    def backdoor(self, prefix: str = STORE_PREFIX) -> S3Backdoor:
        """An :class:`S3Backdoor` on ``prefix``."""
        return S3Backdoor(self.client(), self.bucket, prefix)

    def close(self) -> None:
        """Close the clients made by :meth:`client`."""
        for client in self._clients:
            client.close()
        self._clients.clear()


@pytest.fixture
def s3_endpoint(moto_server: MotoServer, aws_credentials: None) -> Iterator[S3Endpoint]:
    """A freshly reset server with an empty bucket and no fault rules."""
    moto_server.reset()
    moto_server.faults.clear()
    endpoint = S3Endpoint(moto_server)
    endpoint.client().create_bucket(Bucket=endpoint.bucket)
    moto_server.faults.clear()  # the counters start at zero for the test
    try:
        yield endpoint
    finally:
        moto_server.faults.clear()
        endpoint.close()


@pytest.fixture
def s3_store(s3_endpoint: S3Endpoint) -> Iterator[S3Store]:
    """An ``S3Store`` on ``s3://documee-test/store-root/`` of the harness server."""
    store = s3_endpoint.store()
    try:
        yield store
    finally:
        store.close()


@contextlib.contextmanager
def atomic_mock_aws() -> Iterator[None]:
    """moto's ``mock_aws`` with every mocked request made atomic.

    In-process moto has the same flaw as its server: a conditional write's
    check and store are separate steps, so threads racing through it lose
    updates. Real S3 is atomic per key; this holds one lock around each
    mocked request (in-process moto is CPU-bound under the GIL anyway, so
    the lock costs nothing measurable).
    """
    from moto import mock_aws
    from moto.core.botocore_stubber import BotocoreStubber

    original = BotocoreStubber.process_request
    lock = threading.Lock()

    def process_request(self: BotocoreStubber, request: Any) -> Any:
        with lock:
            return original(self, request)

    BotocoreStubber.process_request = process_request  # type: ignore[method-assign]
    try:
        with mock_aws():
            yield
    finally:
        BotocoreStubber.process_request = original  # type: ignore[method-assign]


@pytest.fixture
def mock_s3_store(aws_credentials: None) -> Iterator[S3Store]:
    """An ``S3Store`` on ``s3://documee-test/store-root/`` under :func:`atomic_mock_aws`."""
    from ..stores.s3 import S3Store

    with atomic_mock_aws():
        client = _raw_client(region=TEST_REGION)
        client.create_bucket(Bucket=TEST_BUCKET)
        client.close()
        store = S3Store.from_url(f"s3://{TEST_BUCKET}/{STORE_PREFIX}", region=TEST_REGION)
        try:
            yield store
        finally:
            store.close()


@pytest.fixture
def fast_retries(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make botocore's retry backoff (standard and adaptive modes) about 1 ms.

    For tests that inject retryable faults on purpose: the retries still
    happen, only the sleeping between them is skipped.
    """
    from botocore.retries import standard

    monkeypatch.setattr(standard.ExponentialBackoff, "delay_amount", lambda self, ctx: 0.001)
