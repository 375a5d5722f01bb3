"""What S3 does under least-privilege policies, which moto does not emulate.

With s3:ListBucket granted only under a prefix (the Terraform policies),
real S3 answers 403 instead of 404 for a missing key. The fault injector
plays that part here.
"""

from __future__ import annotations

import pytest

from documee_remote import PermissionDeniedError, PersistenceManager
from documee_remote.errors import NotFoundError, PreconditionFailedError
from documee_remote.stores import etag_of
from documee_remote.testing.fixtures import S3Endpoint
from documee_remote.testing.moto_server import ACCESS_DENIED

pytestmark = pytest.mark.usefixtures("aws_credentials")


def test_403_on_a_missing_key_is_not_found(s3_endpoint: S3Endpoint) -> None:
    store = s3_endpoint.store()
    s3_endpoint.server.faults.add(ACCESS_DENIED, method="GET", key=r"missing", times=None)
    s3_endpoint.server.faults.add(ACCESS_DENIED, method="HEAD", key=r"missing", times=None)
    with pytest.raises(NotFoundError):
        store.get("cb1/missing.json")
    with pytest.raises(NotFoundError):
        store.head("cb1/missing.json")
    assert PersistenceManager(store).load_analysis("missing") is None


def test_403_on_an_existing_key_stays_permission_denied(s3_endpoint: S3Endpoint) -> None:
    store = s3_endpoint.store()
    store.put("cb1/secret.json", b"{}")
    s3_endpoint.server.faults.add(ACCESS_DENIED, method="GET", key=r"secret", times=None)
    with pytest.raises(PermissionDeniedError) as info:
        store.get("cb1/secret.json")
    assert info.value.key == "cb1/secret.json"


def test_403_on_if_match_of_a_missing_key_is_a_precondition_failure(
    s3_endpoint: S3Endpoint,
) -> None:
    store = s3_endpoint.store()
    s3_endpoint.server.faults.add(ACCESS_DENIED, method="PUT", key=r"gone", times=None)
    with pytest.raises(PreconditionFailedError):
        store.put("cb1/gone.json", b"{}", if_match=etag_of(b"old"))


def test_leases_and_deltas_carry_the_lifecycle_tag(s3_endpoint: S3Endpoint) -> None:
    store = s3_endpoint.store()
    store.put("cb1/_lease.json", b"{}")
    store.put("cb1/_journal/00000000000000000001.json", b"{}")
    store.put("cb1/analysis.json", b"{}")
    client = s3_endpoint.client()

    def tags(key: str) -> dict[str, str]:
        response = client.get_object_tagging(Bucket=s3_endpoint.bucket, Key="store-root/" + key)
        return {t["Key"]: t["Value"] for t in response["TagSet"]}

    assert tags("cb1/_lease.json") == {"documee-remote-kind": "lease"}
    assert tags("cb1/_journal/00000000000000000001.json") == {"documee-remote-kind": "delta"}
    assert tags("cb1/analysis.json") == {}
