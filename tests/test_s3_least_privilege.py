"""What S3 does under least-privilege policies, which moto does not emulate.

With s3:ListBucket granted only under a prefix (the Terraform policies),
real S3 answers 403 instead of 404 for a missing key. The fault injector
plays that part here. Every test runs on both S3 backends, S3Store and
FsspecStore's s3fs driver, which must behave the same.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from documee_remote import PermissionDeniedError, PersistenceManager
from documee_remote.errors import NotFoundError, PreconditionFailedError
from documee_remote.stores import FsspecStore, Store, etag_of
from documee_remote.testing.fixtures import STORE_PREFIX, S3Endpoint
from documee_remote.testing.moto_server import ACCESS_DENIED, INTERNAL_ERROR

pytestmark = pytest.mark.usefixtures("aws_credentials")


@pytest.fixture(params=["s3store", "fsspec"])
def store(request: pytest.FixtureRequest, s3_endpoint: S3Endpoint) -> Iterator[Store]:
    """A store on ``s3://<bucket>/store-root/`` through each S3 backend."""
    opened: Store
    if request.param == "s3store":
        opened = s3_endpoint.store()
    else:
        opened = FsspecStore.from_url(
            s3_endpoint.url(STORE_PREFIX),
            endpoint_url=s3_endpoint.endpoint_url,
            region=s3_endpoint.region,
        )
    with opened:
        yield opened


def test_403_on_a_missing_key_is_not_found(store: Store, s3_endpoint: S3Endpoint) -> None:
    s3_endpoint.server.faults.add(ACCESS_DENIED, method="GET", key=r"missing", times=None)
    s3_endpoint.server.faults.add(ACCESS_DENIED, method="HEAD", key=r"missing", times=None)
    with pytest.raises(NotFoundError):
        store.get("cb1/missing.json")
    with pytest.raises(NotFoundError):
        store.head("cb1/missing.json")
    assert not store.exists("cb1/missing.json")
    assert store.get_many(["cb1/missing.json"]) == {"cb1/missing.json": None}
    assert PersistenceManager(store).load_analysis("missing") is None


def test_403_on_an_existing_key_stays_permission_denied(
    store: Store, s3_endpoint: S3Endpoint
) -> None:
    store.put("cb1/secret.json", b"{}")
    s3_endpoint.server.faults.add(ACCESS_DENIED, method="GET", key=r"secret", times=None)
    with pytest.raises(PermissionDeniedError) as info:
        store.get("cb1/secret.json")
    assert info.value.key == "cb1/secret.json"


def test_403_stays_permission_denied_when_listing_is_refused_too(
    store: Store, s3_endpoint: S3Endpoint
) -> None:
    s3_endpoint.server.faults.add(ACCESS_DENIED, method="GET", times=None)  # listings too
    with pytest.raises(PermissionDeniedError):
        store.get("cb1/missing.json")


def test_403_on_if_match_of_a_missing_key_is_a_precondition_failure(
    store: Store, s3_endpoint: S3Endpoint
) -> None:
    s3_endpoint.server.faults.add(ACCESS_DENIED, method="PUT", key=r"gone", times=None)
    with pytest.raises(PreconditionFailedError):
        store.put("cb1/gone.json", b"{}", if_match=etag_of(b"old"))
    s3_endpoint.server.faults.add(ACCESS_DENIED, method="DELETE", key=r"gone", times=None)
    with pytest.raises(PreconditionFailedError):
        store.delete("cb1/gone.json", if_match=etag_of(b"old"))


def test_403_on_an_unconditional_write_is_not_checked_by_listing(
    store: Store, s3_endpoint: S3Endpoint
) -> None:
    faults = s3_endpoint.server.faults
    faults.add(ACCESS_DENIED, method="PUT", times=None)
    faults.add(ACCESS_DENIED, method="DELETE", times=None)
    with pytest.raises(PermissionDeniedError):
        store.put("cb1/k.json", b"{}")
    with pytest.raises(PermissionDeniedError):
        store.delete("cb1/k.json")
    assert faults.requests["GET"] == 0


def test_a_retried_conditional_delete_meeting_a_hidden_404_landed(
    store: Store, s3_endpoint: S3Endpoint, fast_retries: None
) -> None:
    # The first DELETE lands but answers 500; botocore retries, and the retry of
    # a delete of a now missing key meets the 403 that hides S3's 404.
    etag = store.put("cb1/k.json", b"{}")
    faults = s3_endpoint.server.faults
    faults.add(INTERNAL_ERROR, method="DELETE", key=r"cb1/k", after=True)
    faults.add(ACCESS_DENIED, method="DELETE", key=r"cb1/k", nth=2, times=None)
    store.delete("cb1/k.json", if_match=etag)
    assert not store.exists("cb1/k.json")


def test_leases_and_deltas_carry_the_lifecycle_tag(store: Store, s3_endpoint: S3Endpoint) -> None:
    store.put("cb1/_lease.json", b"{}")
    store.put("cb1/_journal/00000000000000000001.json", b"{}")
    store.put("cb1/analysis.json", b"{}")
    client = s3_endpoint.client()

    def tags(key: str) -> dict[str, str]:
        response = client.get_object_tagging(Bucket=s3_endpoint.bucket, Key=STORE_PREFIX + key)
        return {t["Key"]: t["Value"] for t in response["TagSet"]}

    assert tags("cb1/_lease.json") == {"documee-remote-kind": "lease"}
    assert tags("cb1/_journal/00000000000000000001.json") == {"documee-remote-kind": "delta"}
    assert tags("cb1/analysis.json") == {}
