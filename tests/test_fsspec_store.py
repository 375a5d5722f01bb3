"""FsspecStore: the store contract on fsspec's memory and local filesystems and on s3fs.

Plus what only the fsspec backend has: the S3 option mapping, the error
translation table, S3's conditional headers through s3fs, batched bulk
transfers, filesystems without conditional writes, and no shared state.
"""

from __future__ import annotations

import asyncio
import errno
import functools
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import botocore.exceptions
import fsspec
import pytest
from fsspec.implementations.dirfs import DirFileSystem
from fsspec.implementations.memory import MemoryFileSystem

from documee_remote import open_store
from documee_remote.errors import (
    AlreadyExistsError,
    ConditionalRequestConflictError,
    ConfigurationError,
    DocumeeRemoteError,
    InvalidKeyError,
    MissingDependencyError,
    NotFoundError,
    ObjectTooLargeError,
    PermissionDeniedError,
    PreconditionFailedError,
    ServiceUnavailableError,
    StorageTimeoutError,
    ThrottledError,
    UnsupportedOperationError,
)
from documee_remote.stores import FsspecStore, LocalStore, Store, etag_of
from documee_remote.stores._fsspec import S3_OPTION_NAMES, translate_error
from documee_remote.stores._fsspec import s3driver as fsspec_module
from documee_remote.testing.contract import DirectoryBackdoor, StoreContract
from documee_remote.testing.fixtures import TEST_REGION, S3Endpoint
from documee_remote.testing.moto_server import (
    CONDITIONAL_CONFLICT,
    DROP,
    INTERNAL_ERROR,
    SLOW_DOWN,
    Fault,
    MotoServer,
)

REGION = TEST_REGION


# -- the shared moto harness (documee_remote.testing.fixtures, via conftest) -----------------------


@pytest.fixture
def moto(s3_endpoint: S3Endpoint) -> MotoServer:
    """The session's harness server, reset, with the test bucket and no fault rules."""
    return s3_endpoint.server


@pytest.fixture
def bucket(s3_endpoint: S3Endpoint) -> str:
    return s3_endpoint.bucket


@pytest.fixture
def s3(s3_endpoint: S3Endpoint) -> Any:
    """A plain boto3 client, for looking behind the store's back."""
    return s3_endpoint.client()


def s3_store(moto: MotoServer, bucket: str, prefix: str = "pre/fix", **options: Any) -> FsspecStore:
    return FsspecStore.from_url(
        f"s3://{bucket}/{prefix}", endpoint_url=moto.endpoint_url, region=REGION, **options
    )


# -- backdoors -----------------------------------------------------------------------------------


class MemoryBackdoor:
    def __init__(self, root: str) -> None:
        self.fs = MemoryFileSystem(skip_instance_cache=True)
        self.root = root

    def read(self, key: str) -> bytes | None:
        path = f"{self.root}/{key}"
        return bytes(self.fs.cat_file(path)) if self.fs.isfile(path) else None

    def write(self, key: str, data: bytes) -> None:
        self.fs.pipe_file(f"{self.root}/{key}", data)


class S3Backdoor:
    def __init__(self, client: Any, bucket: str, prefix: str) -> None:
        self.client = client
        self.bucket = bucket
        self.prefix = prefix

    def read(self, key: str) -> bytes | None:
        try:
            response = self.client.get_object(Bucket=self.bucket, Key=self.prefix + key)
        except self.client.exceptions.NoSuchKey:
            return None
        data: bytes = response["Body"].read()
        return data

    def write(self, key: str, data: bytes) -> None:
        self.client.put_object(Bucket=self.bucket, Key=self.prefix + key, Body=data)


# -- the contract on three filesystems -------------------------------------------------------------


class TestFsspecMemory(StoreContract):
    @pytest.fixture
    def root(self) -> str:
        # fsspec's memory filesystem is one process-wide dict: a root per test.
        return f"/t-{uuid.uuid4().hex}"

    @pytest.fixture
    def store_factory(self, root: str) -> Callable[..., Store]:
        return functools.partial(FsspecStore.from_url, f"memory://{root}")

    @pytest.fixture
    def backdoor(self, root: str) -> MemoryBackdoor:
        return MemoryBackdoor(root)


class TestFsspecLocal(StoreContract):
    race_increments = 50  # 8 processes x 50 = 400

    @pytest.fixture
    def store_factory(self, tmp_path: Path) -> Callable[..., Store]:
        return functools.partial(FsspecStore.from_url, (tmp_path / "root").as_uri())

    @pytest.fixture
    def backdoor(self, tmp_path: Path) -> DirectoryBackdoor:
        return DirectoryBackdoor(tmp_path / "root")

    @pytest.fixture
    def process_store_factory(self, tmp_path: Path) -> Callable[[], Store]:
        return functools.partial(open_store, (tmp_path / "root").as_uri(), backend="fsspec")


class TestFsspecS3(StoreContract):
    race_increments = 50  # 8 processes x 50 = 400

    @pytest.fixture
    def store_factory(self, moto: MotoServer, bucket: str) -> Callable[..., Store]:
        return functools.partial(
            FsspecStore.from_url,
            f"s3://{bucket}/pre/fix",
            endpoint_url=moto.endpoint_url,
            region=REGION,
        )

    @pytest.fixture
    def backdoor(self, s3: Any, bucket: str) -> S3Backdoor:
        return S3Backdoor(s3, bucket, "pre/fix/")

    @pytest.fixture
    def process_store_factory(self, moto: MotoServer, bucket: str) -> Callable[[], Store]:
        return functools.partial(
            open_store,
            f"s3://{bucket}/pre/fix",
            backend="fsspec",
            endpoint_url=moto.endpoint_url,
            region=REGION,
        )


# -- construction ------------------------------------------------------------------------------


def test_open_store_routes_to_fsspec(tmp_path: Path, moto: MotoServer, bucket: str) -> None:
    with open_store("memory://routing", backend="fsspec") as mem:
        assert isinstance(mem, FsspecStore)
        assert mem.url == "memory:///routing"
    with open_store(tmp_path.as_uri(), backend="fsspec") as local:
        assert isinstance(local, FsspecStore)
        assert local.url == tmp_path.as_uri()
        assert local.capabilities == LocalStore(tmp_path).capabilities
    with open_store(
        f"s3://{bucket}/p", backend="fsspec", endpoint_url=moto.endpoint_url, region=REGION
    ) as remote:
        assert isinstance(remote, FsspecStore)
        assert remote.url == f"s3://{bucket}/p"
        assert remote.capabilities.native_etags


def test_wraps_a_filesystem_object(tmp_path: Path) -> None:
    fs = MemoryFileSystem(skip_instance_cache=True, global_store=False)
    store = FsspecStore(fs, "/data", read_only=False, concurrency=4)
    store.put("cb/k", b"v")
    assert fs.cat_file("/data/cb/k") == b"v"
    assert store.concurrency == 4


def test_store_options_pass_through(tmp_path: Path) -> None:
    store = FsspecStore.from_url("memory://opts", read_only=True, concurrency=3, max_object_size=10)
    assert store.read_only
    assert (store.concurrency, store.max_object_size) == (3, 10)


def test_unknown_and_misplaced_options_are_refused() -> None:
    with pytest.raises(ConfigurationError, match="unknown option"):
        FsspecStore.from_url("memory://x", endpoint=1)
    with pytest.raises(ConfigurationError, match="do not apply"):
        FsspecStore.from_url("memory://x", region="eu-west-1")
    with pytest.raises(ConfigurationError, match="sse"):
        FsspecStore.from_url("s3://bucket/x", sse="DES")
    with pytest.raises(ConfigurationError):
        FsspecStore.from_url("no-scheme-here")


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("s3://bkt", "s3://bkt"),
        ("s3://bkt/", "s3://bkt"),
        ("s3://bkt/a/b/", "s3://bkt/a/b"),
        ("s3a://bkt/x", "s3://bkt/x"),
    ],
)
def test_s3_url_forms(url: str, expected: str) -> None:
    with FsspecStore.from_url(url, region=REGION) as store:
        assert store.url == expected


def test_urls_with_credentials_are_refused_without_echoing_them() -> None:
    with pytest.raises(ConfigurationError) as info:
        FsspecStore.from_url("s3://AKIDEXAMPLE:s3cr3t@bkt/x")
    assert "s3cr3t" not in str(info.value)
    with pytest.raises(ConfigurationError, match="Protocol not known"):
        FsspecStore.from_url("nosuchproto://x")


def test_missing_bucket_is_a_configuration_error(moto: MotoServer) -> None:
    with FsspecStore.from_url(
        "s3://no-such-bucket/p", endpoint_url=moto.endpoint_url, region=REGION
    ) as store:
        with pytest.raises(ConfigurationError, match="NoSuchBucket"):
            store.get("cb/k")
        with pytest.raises(ConfigurationError):
            store.put("cb/k", b"v")


def test_option_names_match_the_native_s3_backend() -> None:
    from documee_remote.config import S3Options

    assert set(S3_OPTION_NAMES) == set(S3Options.model_fields)


# -- the S3 option mapping ---------------------------------------------------------------------


def test_s3_options_map_onto_s3fs(moto: MotoServer, bucket: str) -> None:
    store = s3_store(
        moto,
        bucket,
        sse="aws:kms",
        sse_kms_key_id="alias/documee",
        expected_bucket_owner="123456789012",
        max_pool_connections=7,
        connect_timeout=3.5,
        read_timeout=12,
        retry_mode="adaptive",
        max_attempts=2,
        addressing_style="path",
        storage_options={"config_kwargs": {"tcp_keepalive": True}, "requester_pays": False},
    )
    fs = store.fs
    assert fs.client_kwargs == {"endpoint_url": moto.endpoint_url, "region_name": REGION}
    assert fs.config_kwargs == {
        "max_pool_connections": 7,
        "connect_timeout": 3.5,
        "read_timeout": 12,
        "retries": {"mode": "adaptive", "total_max_attempts": 2},
        "user_agent_extra": "documee-remote",
        "s3": {"addressing_style": "path"},
        "tcp_keepalive": True,  # merged from storage_options
    }
    assert fs.s3_additional_kwargs == {
        "ServerSideEncryption": "aws:kms",
        "SSEKMSKeyId": "alias/documee",
        "ExpectedBucketOwner": "123456789012",
    }
    # The client s3fs builds really carries the configuration.
    client = fs.s3
    assert client.meta.region_name == REGION
    assert client.meta.endpoint_url == moto.endpoint_url
    assert client.meta.config.retries == {"mode": "adaptive", "total_max_attempts": 2}
    assert client.meta.config.max_pool_connections == 7
    store.close()


def test_pool_defaults_to_concurrency(moto: MotoServer, bucket: str) -> None:
    with s3_store(moto, bucket, concurrency=48) as store:
        assert store.fs.config_kwargs["max_pool_connections"] == 48


def test_sse_aes256_is_really_sent(moto: MotoServer, bucket: str, s3: Any) -> None:
    with s3_store(moto, bucket, prefix="enc", sse="AES256") as store:
        store.put("cb/a.json", b"{}")
        store.put("cb/b.json", b"{}", if_none_match="*")
        store.put_many({"cb/c.json": b"{}"})
    for name in ("a", "b", "c"):
        head = s3.head_object(Bucket=bucket, Key=f"enc/cb/{name}.json")
        assert head["ServerSideEncryption"] == "AES256"


def test_sse_kms_and_bucket_owner_are_sent(moto: MotoServer, bucket: str, s3: Any) -> None:
    sent: list[dict[str, Any]] = []
    with s3_store(
        moto,
        bucket,
        prefix="kms",
        sse="aws:kms",
        sse_kms_key_id="my-key",
        expected_bucket_owner="123456789012",
    ) as store:
        store.fs.s3.meta.events.register(
            "before-parameter-build.s3.*", lambda params, **_: sent.append(dict(params))
        )
        store.put("cb/a.json", b"{}")
        store.get("cb/a.json")
    head = s3.head_object(Bucket=bucket, Key="kms/cb/a.json")
    assert head["ServerSideEncryption"] == "aws:kms"
    assert "my-key" in head["SSEKMSKeyId"]
    put, get = sent
    assert put["ExpectedBucketOwner"] == get["ExpectedBucketOwner"] == "123456789012"
    assert put["ServerSideEncryption"] == "aws:kms"
    assert "ServerSideEncryption" not in get  # filtered to what GetObject accepts


def test_role_arn_assumes_the_role_with_refreshing_credentials(
    moto: MotoServer, bucket: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # STS is found the way botocore finds it (never at the S3 endpoint_url).
    monkeypatch.setenv("AWS_ENDPOINT_URL_STS", moto.endpoint_url)
    role = "arn:aws:iam::123456789012:role/documee-writer"
    with s3_store(
        moto, bucket, role_arn=role, external_id="xyz-secret", role_session_name="ci-run"
    ) as store:
        store.put("cb/a.json", b"{}")
        assert store.get("cb/a.json").data == b"{}"
        credentials = asyncio.run_coroutine_threadsafe(
            store.fs.session.get_credentials(), store.fs.loop
        ).result()
        assert credentials.method == "assume-role"
        assert credentials.refresh_needed() is False
        frozen = asyncio.run_coroutine_threadsafe(
            credentials.get_frozen_credentials(), store.fs.loop
        ).result()
        assert frozen.access_key != "testing"  # moto's assumed-role key, not the source's
        assert frozen.token not in (None, "", "testing")


# -- error translation ------------------------------------------------------------------------


def client_error(code: str, status: int, *, retries: int = 0, op: str = "PutObject") -> Any:
    response = {
        "Error": {"Code": code, "Message": f"message for {code}"},
        "ResponseMetadata": {"HTTPStatusCode": status, "RetryAttempts": retries},
    }
    return botocore.exceptions.ClientError(response, op)  # type: ignore[arg-type]


# The S3 tables and their completeness: tests/test_s3_common.py, through both backends.


def test_translation_sees_through_s3fs_collapsed_oserrors() -> None:
    # s3fs turns a failed If-Match into OSError(EINVAL) with the ClientError as cause.
    collapsed = OSError(errno.EINVAL, "At least one of the pre-conditions ...")
    collapsed.__cause__ = client_error("PreconditionFailed", 412)
    error = translate_error(
        collapsed, key="cb/k", store_url="s3://b", operation="put", if_match='"e"'
    )
    assert type(error) is PreconditionFailedError
    busy = OSError(errno.EBUSY, "busy")
    busy.__cause__ = client_error("ConditionalRequestConflict", 409)
    assert type(translate_error(busy, key="k", store_url="s3://b", operation="put")) is (
        ConditionalRequestConflictError
    )


@pytest.mark.parametrize(
    ("exc", "expected"),
    [
        (botocore.exceptions.ReadTimeoutError(endpoint_url="http://x"), StorageTimeoutError),
        (botocore.exceptions.ConnectTimeoutError(endpoint_url="http://x"), StorageTimeoutError),
        (
            botocore.exceptions.EndpointConnectionError(endpoint_url="http://x"),
            ServiceUnavailableError,
        ),
        (
            botocore.exceptions.ConnectionClosedError(endpoint_url="http://x"),
            ServiceUnavailableError,
        ),
        (botocore.exceptions.NoCredentialsError(), ConfigurationError),
        (botocore.exceptions.NoRegionError(), ConfigurationError),
        (fsspec.exceptions.FSTimeoutError(), StorageTimeoutError),
        (TimeoutError(), StorageTimeoutError),
        (FileNotFoundError(errno.ENOENT, "gone"), NotFoundError),
        (PermissionError(errno.EACCES, "no"), PermissionDeniedError),
        (IsADirectoryError(errno.EISDIR, "dir"), InvalidKeyError),
        (ConnectionResetError(), ServiceUnavailableError),
        (OSError(errno.EIO, "io"), DocumeeRemoteError),
    ],
    ids=lambda v: type(v).__name__,
)
def test_non_http_failures_translate(exc: BaseException, expected: type) -> None:
    assert type(translate_error(exc, key="cb/k", store_url="x://", operation="get")) is expected


def test_aiohttp_failures_translate() -> None:
    aiohttp = pytest.importorskip("aiohttp")
    error = translate_error(
        aiohttp.ClientPayloadError("cut"), key="k", store_url="s3://b", operation="get"
    )
    assert type(error) is ServiceUnavailableError


# -- conditional writes against moto ---------------------------------------------------------------


def test_conditional_put_and_delete_semantics(moto: MotoServer, bucket: str, s3: Any) -> None:
    with s3_store(moto, bucket) as store:
        first = store.put("cb/lease", b"one", if_none_match="*")
        assert first == etag_of(b"one")
        with pytest.raises(AlreadyExistsError) as exists:
            store.put("cb/lease", b"two", if_none_match="*")
        assert isinstance(exists.value.__cause__, botocore.exceptions.ClientError)
        second = store.put("cb/lease", b"two", if_match=first)
        with pytest.raises(PreconditionFailedError) as stale:
            store.put("cb/lease", b"three", if_match=first)
        assert not isinstance(stale.value, AlreadyExistsError)
        with pytest.raises(PreconditionFailedError):
            store.put("cb/none", b"x", if_match=first)  # S3: 404 -> precondition failed
        with pytest.raises(PreconditionFailedError):
            store.delete("cb/lease", if_match=first)
        store.delete("cb/lease", if_match=second)
        with pytest.raises(PreconditionFailedError):
            store.delete("cb/lease", if_match=second)
        assert s3.list_objects_v2(Bucket=bucket).get("KeyCount") == 0


def test_put_etag_comes_from_the_put_response(moto: MotoServer, bucket: str) -> None:
    with s3_store(moto, bucket) as store:
        before = moto.faults.requests
        store.put("cb/a", b"a")
        store.put("cb/a", b"b", if_match=etag_of(b"a"))
        store.put_many({f"cb/{i}": b"x" for i in range(10)})
        after = moto.faults.requests
    assert after["PUT"] - before["PUT"] == 12
    assert after["HEAD"] == before["HEAD"]  # no HEAD after a PUT
    assert after["GET"] == before["GET"]


def test_get_is_one_request(moto: MotoServer, bucket: str) -> None:
    with s3_store(moto, bucket) as store:
        store.put("cb/a", b"a")
        before = moto.faults.requests
        assert store.get("cb/a").etag == etag_of(b"a")
        after = moto.faults.requests
    assert after - before == {"GET": 1}


def test_conflict_409_is_a_retryable_conflict(moto: MotoServer, bucket: str) -> None:
    with s3_store(moto, bucket) as store:
        etag = store.put("cb/k", b"v1")
        moto.faults.add(CONDITIONAL_CONFLICT, method="PUT", key="cb/k")
        with pytest.raises(ConditionalRequestConflictError):
            store.put("cb/k", b"v2", if_match=etag)
        assert store.get("cb/k").data == b"v1"


@pytest.mark.parametrize("fault", [DROP, INTERNAL_ERROR], ids=["dropped", "500"])
def test_lost_response_of_a_conditional_put_is_recognised(
    moto: MotoServer, bucket: str, fault: Any, fast_retries: None
) -> None:
    # The PUT lands, its response is lost, the request is sent again (by
    # aiohttp for a dropped connection, by botocore for a 500) and the second
    # copy gets 412: the store must recognise its own write, not report a loss.
    with s3_store(moto, bucket) as store:
        etag = store.put("cb/k", b"v1")
        moto.faults.add(fault, method="PUT", key="cb/k", after=True)
        assert store.put("cb/k", b"v2", if_match=etag) == etag_of(b"v2")
        moto.faults.add(fault, method="PUT", key="cb/new", after=True)
        assert store.put("cb/new", b"n", if_none_match="*") == etag_of(b"n")
        assert moto.faults.faults[fault.name] == 2
        assert store.get("cb/k").data == b"v2"


def test_same_bytes_from_another_writer_are_still_a_loss(moto: MotoServer, bucket: str) -> None:
    # Two writers read v1 and both write "v2": the second must lose, even though
    # the stored bytes equal its own (the lost-response check uses a write id).
    with s3_store(moto, bucket) as a, s3_store(moto, bucket) as b:
        etag = a.put("cb/k", b"v1")
        a.put("cb/k", b"v2", if_match=etag)
        with pytest.raises(PreconditionFailedError):
            b.put("cb/k", b"v2", if_match=etag)
        with pytest.raises(AlreadyExistsError):
            b.put("cb/k", b"v2", if_none_match="*")


def test_lost_response_of_a_conditional_delete(
    moto: MotoServer, bucket: str, fast_retries: None
) -> None:
    with s3_store(moto, bucket) as store:
        etag = store.put("cb/k", b"v")
        # botocore retries the 500; the retry finds the key gone: that is success.
        moto.faults.add(INTERNAL_ERROR, method="DELETE", key="cb/k", after=True)
        store.delete("cb/k", if_match=etag)
        assert not store.exists("cb/k")


def test_a_real_loss_after_a_retry_is_still_reported(
    moto: MotoServer, bucket: str, fast_retries: None
) -> None:
    with s3_store(moto, bucket) as store:
        stale = store.put("cb/k", b"v1")
        store.put("cb/k", b"v2")
        moto.faults.add(INTERNAL_ERROR, method="PUT", key="cb/k")  # retried, then 412
        with pytest.raises(PreconditionFailedError):
            store.put("cb/k", b"v3", if_match=stale)
        assert store.get("cb/k").data == b"v2"


def test_failures_after_retries_are_typed(
    moto: MotoServer, bucket: str, fast_retries: None
) -> None:
    with s3_store(moto, bucket, max_attempts=2) as store:
        moto.faults.add(SLOW_DOWN, method="GET", times=None)
        with pytest.raises(ThrottledError) as throttled:
            store.get("cb/k")
        assert throttled.value.key == "cb/k"
        moto.faults.clear()
        moto.faults.add(INTERNAL_ERROR, method="PUT", times=None)
        with pytest.raises(ServiceUnavailableError):
            store.put("cb/k", b"v")


# -- bulk transfers --------------------------------------------------------------------------------


def test_bulk_round_trip_with_missing_keys(
    moto: MotoServer, bucket: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # DeleteObjects takes 1,000 keys; a batch of 10 shows the splitting without
    # writing 1,001 objects.
    monkeypatch.setattr(fsspec_module, "DELETE_BATCH", 10)
    items = {f"cb/file_{i:016x}.json": f'{{"i": {i}}}'.encode() for i in range(95)}
    with s3_store(moto, bucket, concurrency=32) as store:
        etags = store.put_many(items)
        assert etags == {k: etag_of(v) for k, v in items.items()}
        got = store.get_many([*items, "cb/missing-1", "other/missing-2"])
        assert got["cb/missing-1"] is None
        assert got["other/missing-2"] is None
        for key, data in items.items():
            found = got[key]
            assert found is not None
            assert (found.data, found.etag) == (data, etags[key])
        assert len(list(store.list("cb/"))) == 95
        before = moto.faults.requests
        store.delete_many([*items, "cb/never-existed"])
        assert moto.faults.requests["POST"] - before["POST"] == 10  # 96 keys, 10 per request
        assert moto.faults.requests["DELETE"] == before["DELETE"]
        assert list(store.list()) == []


def test_conditional_delete_many_keeps_changed_keys(moto: MotoServer, bucket: str) -> None:
    with s3_store(moto, bucket) as store:
        etags = store.put_many({"cb/a": b"a", "cb/b": b"b", "cb/c": b"c", "cb/d": b"d"})
        store.put("cb/b", b"b2")  # changed since we read it
        kept = store.delete_many(
            ["cb/a", "cb/b", "cb/c", "cb/gone"],
            if_match={"cb/a": etags["cb/a"], "cb/b": etags["cb/b"], "cb/gone": etags["cb/a"]},
        )
        assert sorted(kept) == ["cb/b", "cb/gone"]
        assert list(store.list()) == ["cb/b", "cb/d"]  # cb/c went unconditionally
        assert store.delete_many(["cb/b", "cb/d"]) == []


def test_conditional_delete_many_on_memory() -> None:
    store = FsspecStore(MemoryFileSystem(skip_instance_cache=True, global_store=False), "/r")
    old = store.put("cb/a", b"1")
    store.put("cb/a", b"2")
    current = store.put("cb/b", b"1")
    assert store.delete_many(["cb/a", "cb/b"], if_match={"cb/a": old, "cb/b": current}) == ["cb/a"]
    assert list(store.list()) == ["cb/a"]


def test_list_meta_comes_with_the_listing(moto: MotoServer, bucket: str) -> None:
    with s3_store(moto, bucket) as store:
        etags = store.put_many({"cb/a": b"1", "cb/b": b"22", "cc/c": b"333"})
        before = moto.faults.requests
        metas = list(store.list_meta("cb/"))
        after = moto.faults.requests
    assert [(m.key, m.etag, m.size) for m in metas] == [
        ("cb/a", etags["cb/a"], 1),
        ("cb/b", etags["cb/b"], 2),
    ]
    assert all(m.last_modified.tzinfo is not None for m in metas)
    assert after - before == {"GET": 1}  # one ListObjectsV2, no HEAD per key


def test_delete_many_falls_back_without_delete_objects(moto: MotoServer, bucket: str) -> None:
    with s3_store(moto, bucket) as store:
        store.put_many({f"cb/{i}": b"x" for i in range(5)})
        moto.faults.add(Fault.error(501, "NotImplemented"), method="POST", times=None)
        assert store.delete_many([f"cb/{i}" for i in range(5)]) == []
        assert moto.faults.requests["DELETE"] == 5
        assert list(store.list()) == []


def test_bulk_errors_are_raised_after_all_requests(moto: MotoServer, bucket: str) -> None:
    with s3_store(moto, bucket, max_attempts=1) as store:
        store.put_many({f"cb/{i}": b"x" for i in range(20)})
        moto.faults.add(INTERNAL_ERROR, method="GET", key="cb/7$")
        with pytest.raises(ServiceUnavailableError) as info:
            store.get_many([f"cb/{i}" for i in range(20)])
        assert info.value.key == "cb/7"
        assert moto.faults.requests["GET"] == 20


def test_bulk_is_concurrent(moto: MotoServer, bucket: str) -> None:
    latency, n = 0.1, 64
    moto.faults.latency_ms = latency * 1000
    items = {f"cb/{i:04d}": b"x" for i in range(n)}
    with s3_store(moto, bucket, concurrency=16) as store:
        start = time.perf_counter()
        store.put_many(items)
        puts = time.perf_counter() - start
        start = time.perf_counter()
        store.get_many(list(items))
        gets = time.perf_counter() - start
    # One at a time would take at least n * latency = 6.4 s; 16 in flight ~0.4 s
    # plus CPU (client and server share this process), so half of it is a safe bound.
    assert puts < n * latency / 2
    assert gets < n * latency / 2


# -- other filesystems ----------------------------------------------------------------------------


def test_filesystem_without_conditional_writes_refuses_them() -> None:
    inner = MemoryFileSystem(skip_instance_cache=True, global_store=False)
    fs = DirFileSystem(path="/base", fs=inner)
    store = FsspecStore(fs, "data")
    assert store.capabilities.atomic_conditional_writes is False
    assert store.capabilities.conditional_delete is False
    etag = store.put("cb/k", b"v")
    assert store.get("cb/k").etag == etag == store.head("cb/k").etag
    with pytest.raises(UnsupportedOperationError, match="atomically"):
        store.put("cb/k", b"w", if_match=etag)
    with pytest.raises(UnsupportedOperationError):
        store.put("cb/new", b"w", if_none_match="*")
    with pytest.raises(UnsupportedOperationError):
        store.delete("cb/k", if_match=etag)
    assert store.get("cb/k").data == b"v"
    assert not store.exists("cb/new")
    # Unconditional operations work, bulk ones included.
    store.put_many({"cb/a": b"1", "cb/b": b"2"})
    assert list(store.list()) == ["cb/a", "cb/b", "cb/k"]
    assert store.get_many(["cb/a", "cb/zz"])["cb/zz"] is None
    store.delete_many(["cb/a", "cb/b", "cb/zz"])
    store.delete("cb/k")
    assert list(store.list()) == []
    assert inner.find("/") == []


def test_async_generic_filesystem_batches_over_s3(moto: MotoServer, bucket: str) -> None:
    # DirFileSystem over s3fs is an async filesystem FsspecStore knows nothing
    # about: no conditional writes, bulk operations gathered on its loop.
    with s3_store(moto, bucket) as s3_backed:
        fs = DirFileSystem(path=bucket, fs=s3_backed.fs)
        store = FsspecStore(fs, "generic")
        assert not store.capabilities.atomic_conditional_writes
        items = {f"cb/{i}": str(i).encode() for i in range(30)}
        assert store.put_many(items) == {k: etag_of(v) for k, v in items.items()}
        got = store.get_many([*items, "cb/missing"])
        assert got["cb/missing"] is None
        found = got["cb/3"]
        assert found is not None
        assert found.data == b"3"
        store.delete_many(list(items))
        assert list(store.list()) == []


def test_listing_skips_hidden_files_and_directory_markers(
    moto: MotoServer, bucket: str, s3: Any
) -> None:
    with s3_store(moto, bucket, prefix="p") as store:
        store.put("cb/a.json", b"1")
        s3.put_object(Bucket=bucket, Key="p/cb/", Body=b"")  # a console "folder"
        s3.put_object(Bucket=bucket, Key="p/cb/.tmp-123", Body=b"partial")
        s3.put_object(Bucket=bucket, Key="p/.hidden/x.json", Body=b"x")
        s3.put_object(Bucket=bucket, Key="pother/cb/b.json", Body=b"x")  # outside the root
        assert list(store.list()) == ["cb/a.json"]
    fs = MemoryFileSystem(skip_instance_cache=True, global_store=False)
    fs.pipe_file("/r/cb/.tmp-1", b"x")
    fs.pipe_file("/r/cb/a.json", b"x")
    fs.mkdir("/r/empty")
    assert list(FsspecStore(fs, "/r").list()) == ["cb/a.json"]


def test_memory_filesystem_lock_is_shared_per_store_dict() -> None:
    shared_a = FsspecStore(MemoryFileSystem(skip_instance_cache=True), "/lock-test")
    shared_b = FsspecStore(MemoryFileSystem(skip_instance_cache=True), "/lock-test")
    private = FsspecStore(
        MemoryFileSystem(skip_instance_cache=True, global_store=False), "/lock-test"
    )
    assert shared_a._driver.lock is shared_b._driver.lock  # type: ignore[attr-defined]
    assert private._driver.lock is not shared_a._driver.lock  # type: ignore[attr-defined]
    shared_a.put("cb/k", b"v", if_none_match="*")
    with pytest.raises(AlreadyExistsError):
        shared_b.put("cb/k", b"w", if_none_match="*")
    private.put("cb/k", b"w", if_none_match="*")  # another key space
    shared_a.delete("cb/k")


def test_no_instance_cache_sharing(moto: MotoServer, bucket: str, s3: Any) -> None:
    from s3fs import S3FileSystem

    a = s3_store(moto, bucket)
    b = s3_store(moto, bucket)
    assert a.fs is not b.fs
    assert a.fs not in S3FileSystem._cache.values()
    assert b.fs not in S3FileSystem._cache.values()
    # No listing cache: a write by one store (or anyone) is listed by the other at once.
    assert list(b.list()) == []
    a.put("cb/k", b"v")
    assert list(b.list()) == ["cb/k"]
    s3.put_object(Bucket=bucket, Key="pre/fix/cb/z", Body=b"z")
    assert list(b.list()) == ["cb/k", "cb/z"]
    a.close()
    assert b.get("cb/k").data == b"v"  # closing one store leaves the other working
    b.close()
    m1 = FsspecStore.from_url("memory://cache-check")
    m2 = FsspecStore.from_url("memory://cache-check")
    assert m1.fs is not m2.fs
    assert m1.fs not in MemoryFileSystem._cache.values()


def test_close_is_idempotent_and_keeps_foreign_filesystems_open(
    moto: MotoServer, bucket: str
) -> None:
    owner = s3_store(moto, bucket)
    owner.put("cb/k", b"v")
    borrower = FsspecStore(owner.fs, f"{bucket}/pre/fix")
    borrower.close()
    borrower.close()
    assert owner.get("cb/k").data == b"v"  # the borrower did not close owner's client
    owner.close()
    owner.close()


def test_max_object_size_on_s3_reads_no_body(moto: MotoServer, bucket: str) -> None:
    with s3_store(moto, bucket, max_object_size=100) as store:
        store.put("cb/big", b"x" * 5000)
        with pytest.raises(ObjectTooLargeError):
            store.get("cb/big")
        with pytest.raises(ObjectTooLargeError):
            store.get_many(["cb/big"])


# -- lazy imports --------------------------------------------------------------------------------


def run_python(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False
    )


def test_s3fs_is_imported_only_for_s3() -> None:
    result = run_python(
        "import sys\n"
        "import documee_remote.stores._fsspec as m\n"
        "assert 's3fs' not in sys.modules, 'imported at import time'\n"
        "m.FsspecStore.from_url('memory://lazy').put('cb/k', b'v')\n"
        "assert 's3fs' not in sys.modules, 'imported for memory://'\n"
        "assert 'boto3' not in sys.modules\n"
        "m.FsspecStore.from_url('s3://bucket/p', region='us-east-1')\n"
        "assert 's3fs' in sys.modules\n"
    )
    assert result.returncode == 0, result.stderr


def test_missing_s3fs_names_the_extra() -> None:
    result = run_python(
        "import sys\n"
        "sys.modules['s3fs'] = None\n"
        "from documee_remote.errors import MissingDependencyError\n"
        "from documee_remote import open_store\n"
        "try:\n"
        "    open_store('s3://bucket/p', backend='fsspec')\n"
        "except MissingDependencyError as exc:\n"
        "    print(exc)\n"
    )
    assert result.returncode == 0, result.stderr
    assert "pip install 'documee-remote[fsspec]'" in result.stdout


def test_missing_fsspec_names_the_extra() -> None:
    result = run_python(
        "import sys\n"
        "sys.modules['fsspec'] = None\n"
        "from documee_remote.errors import MissingDependencyError\n"
        "try:\n"
        "    import documee_remote.stores.fsspec\n"
        "except MissingDependencyError as exc:\n"
        "    print(exc)\n"
    )
    assert result.returncode == 0, result.stderr
    assert "pip install 'documee-remote[fsspec]'" in result.stdout
    assert issubclass(MissingDependencyError, ImportError)
