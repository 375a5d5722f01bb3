"""S3Store (boto3) and ObstoreStore write the same objects with the same requests."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

pytest.importorskip("obstore")

from documee_remote import open_store
from documee_remote.layout import LIFECYCLE_TAG_KEY
from documee_remote.stores import Store, etag_of
from documee_remote.stores.s3 import EXPECT_CONTINUE_MIN_BYTES, WRITE_TOKEN_METADATA
from documee_remote.testing.fixtures import STORE_PREFIX, TEST_BUCKET, S3Endpoint
from documee_remote.testing.moto_server import Fault, RequestInfo

BACKENDS = ["s3", "obstore"]


@pytest.fixture(params=BACKENDS)
def any_store(request: pytest.FixtureRequest, s3_endpoint: S3Endpoint) -> Iterator[Store]:
    store = open_store(
        s3_endpoint.url(STORE_PREFIX),
        backend=request.param,
        endpoint_url=s3_endpoint.endpoint_url,
        region=s3_endpoint.region,
    )
    with store:
        yield store


def _record_puts(s3_endpoint: S3Endpoint) -> list[RequestInfo]:
    """Every PUT the server sees from now on (a rule that matches nothing records them)."""
    seen: list[RequestInfo] = []

    def record(info: RequestInfo) -> bool:
        if info.method == "PUT":
            seen.append(info)
        return False

    # The predicate never matches, so the fault is never injected.
    s3_endpoint.server.faults.add(Fault.error(500, "Never"), key=record, times=None)
    return seen


def test_small_puts_wait_for_no_100_continue(s3_endpoint: S3Endpoint, any_store: Store) -> None:
    seen = _record_puts(s3_endpoint)
    any_store.put("cb/file_0000000000000001.json", b"{}")
    any_store.put_many({f"cb/file_{i:016x}.json": b"[]" for i in range(2, 6)})
    assert len(seen) == 5
    assert all("expect" not in info.headers for info in seen), [i.headers for i in seen]


def test_large_puts_through_boto3_still_ask_for_100_continue(s3_endpoint: S3Endpoint) -> None:
    seen = _record_puts(s3_endpoint)
    with s3_endpoint.store() as store:
        store.put("cb/analysis.json", b" " * EXPECT_CONTINUE_MIN_BYTES)
    assert seen[0].headers.get("expect") == "100-continue"


def test_both_backends_store_the_same_object(s3_endpoint: S3Endpoint) -> None:
    heads: dict[str, dict[str, Any]] = {}
    for backend in BACKENDS:
        prefix = f"{backend}/"
        store = open_store(
            s3_endpoint.url(prefix),
            backend=backend,
            endpoint_url=s3_endpoint.endpoint_url,
            region=s3_endpoint.region,
            sse="AES256",
        )
        with store:
            assert store.put("cb/_lease.json", b"{}", if_none_match="*") == etag_of(b"{}")
            assert store.put("cb/plain.bin", b"x") == etag_of(b"x")
        backdoor = s3_endpoint.backdoor(prefix)
        lease = backdoor.head("cb/_lease.json")
        plain = backdoor.head("cb/plain.bin")
        tags = backdoor.client.get_object_tagging(Bucket=TEST_BUCKET, Key=prefix + "cb/_lease.json")
        heads[backend] = {
            "lease_type": lease["ContentType"],
            "lease_token": len(lease["Metadata"][WRITE_TOKEN_METADATA]),
            "lease_sse": lease["ServerSideEncryption"],
            "lease_tags": tags["TagSet"],
            "plain_type": plain["ContentType"],
            "plain_metadata": plain["Metadata"],
        }
    assert heads["s3"] == heads["obstore"]
    assert heads["s3"]["lease_tags"] == [{"Key": LIFECYCLE_TAG_KEY, "Value": "lease"}]
