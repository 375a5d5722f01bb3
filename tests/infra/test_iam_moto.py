"""The rendered team policies, enforced by moto's IAM simulation.

Each (team, kind) gets a role with the policy the module would attach
(infra/policies/<kind>.json.tftpl rendered for the bucket and the team's
prefix); the test assumes the role and calls S3 with its credentials under
``enable_iam_authentication()``.

What moto enforces: the Action (S3 request -> IAM action, e.g. HEAD -> s3:GetObject,
GET ?versionId -> s3:GetObjectVersion) against each statement's Resource ARN,
explicit Deny over Allow, and the default deny.

What moto cannot check, and how it is covered instead:
* Conditions. moto only evaluates StringEquals on values it was handed, and an S3
  request hands it none, so every condition counts as satisfied: the ListBucket
  grant's ``s3:prefix`` condition is not enforced (team A *can* list ``team-b/``
  in moto; on AWS it can't). test_policy_rendering.py evaluates that condition
  with IAM's StringLike rules instead.
* The same makes the bucket policy's conditional Denies (no TLS, TLS < 1.2) deny
  *every* object request in moto, so it is not attached here; its content is
  checked in test_policy_rendering.py and after the moto apply in test_apply_moto.py.
* PutObject with a Tagging header is checked as s3:PutObject only; AWS also
  requires s3:PutObjectTagging, which the analyser and admin policies grant.
* GetBucketEncryption and GetPublicAccessBlock are mapped to s3:ListBucket by
  moto, so only GetBucketVersioning, GetBucketLifecycleConfiguration and
  GetBucketPolicy prove the admin's bucket-level reads.
* DeleteObjects (batch delete) is authorised by moto as s3:DeleteObject on the
  *bucket* ARN, where AWS checks each key's ARN, so moto refuses it to every
  prefix-scoped role; single DeleteObject is tested instead.
* KMS permissions are not evaluated by moto's S3 at all.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from .conftest import render_policy

boto3 = pytest.importorskip("boto3")
moto = pytest.importorskip("moto")
from botocore.exceptions import ClientError  # noqa: E402
from moto.core import enable_iam_authentication  # noqa: E402

BUCKET = "documee-iam-test"
BUCKET_ARN = f"arn:aws:s3:::{BUCKET}"
REGION = "us-east-1"
TEAMS = {"team-a": "team-a/", "team-b": "team-b/"}
KINDS = ("reader", "analyser", "admin")
CODEBASE = "f894e86523a62387"
ROOT_KEYS = ["analysis.json", "other/x.json"]  # objects outside every team prefix
TRUST_ACCOUNT = {
    "Version": "2012-10-17",
    "Statement": [
        {
            "Effect": "Allow",
            "Principal": {"AWS": "arn:aws:iam::123456789012:root"},
            "Action": "sts:AssumeRole",
        }
    ],
}


@dataclass
class World:
    clients: dict[tuple[str, str], Any]  # (team, kind) -> S3 client with the role's credentials
    etags: dict[str, str]  # key -> ETag of the seeded object
    versions: dict[str, str]  # key -> VersionId of the seeded object


def _seed_keys(prefix: str) -> list[str]:
    return [
        f"{prefix}{CODEBASE}/analysis.json",
        f"{prefix}{CODEBASE}/file_hashes.json",
        f"{prefix}{CODEBASE}/file_0123456789abcdef.json",
        f"{prefix}{CODEBASE}/_journal/00000000000000000001.json",
        f"{prefix}{CODEBASE}/_lease.json",
    ]


@dataclass
class Roles:
    clients: dict[tuple[str, str], Any]
    seeder: Any  # unauthenticated client used while authentication is off


@pytest.fixture(scope="module")
def roles(fake_aws_env: None) -> Iterator[Roles]:
    """The bucket, and one assumed role per (team, kind) with the rendered policy."""
    with moto.mock_aws():
        seeder = boto3.client("s3", region_name=REGION)
        iam = boto3.client("iam", region_name=REGION)
        sts = boto3.client("sts", region_name=REGION)

        seeder.create_bucket(Bucket=BUCKET)
        seeder.put_bucket_versioning(Bucket=BUCKET, VersioningConfiguration={"Status": "Enabled"})

        clients = {}
        for team, prefix in TEAMS.items():
            for kind in KINDS:
                name = f"documee-remote-{team}-{kind}"
                policy = iam.create_policy(
                    PolicyName=name,
                    PolicyDocument=render_policy(kind, bucket_arn=BUCKET_ARN, prefix=prefix),
                )
                iam.create_role(RoleName=name, AssumeRolePolicyDocument=json.dumps(TRUST_ACCOUNT))
                iam.attach_role_policy(RoleName=name, PolicyArn=policy["Policy"]["Arn"])
                credentials = sts.assume_role(
                    RoleArn=f"arn:aws:iam::123456789012:role/{name}", RoleSessionName="test"
                )["Credentials"]
                clients[(team, kind)] = boto3.client(
                    "s3",
                    region_name=REGION,
                    aws_access_key_id=credentials["AccessKeyId"],
                    aws_secret_access_key=credentials["SecretAccessKey"],
                    aws_session_token=credentials["SessionToken"],
                )
        yield Roles(clients=clients, seeder=seeder)


@pytest.fixture
def world(roles: Roles) -> Iterator[World]:
    """(Re)seed the objects every test starts from, then turn IAM checks on."""
    etags: dict[str, str] = {}
    versions: dict[str, str] = {}
    for key in [*(k for p in TEAMS.values() for k in _seed_keys(p)), *ROOT_KEYS]:
        response = roles.seeder.put_object(Bucket=BUCKET, Key=key, Body=b"{}")
        etags[key] = response["ETag"]
        versions[key] = response["VersionId"]
    # Seeding was unauthenticated; from here on every request is checked.
    with enable_iam_authentication():
        yield World(clients=roles.clients, etags=etags, versions=versions)


def _denied(call: Callable[[], object]) -> bool:
    """True if S3 refused the call for lack of permission; re-raise any other error."""
    try:
        call()
    except ClientError as exc:
        code = exc.response["Error"]["Code"]
        status = exc.response["ResponseMetadata"]["HTTPStatusCode"]
        if code in {"AccessDenied", "403"} or status == 403:
            return True
        raise
    return False


def _allowed(call: Callable[[], object]) -> bool:
    return not _denied(call)


# ---------------------------------------------------------------------------
# Operations the library performs, by name
# ---------------------------------------------------------------------------


def _object_operations(world: World, s3: Any, prefix: str) -> dict[str, Callable[[], object]]:
    existing = f"{prefix}{CODEBASE}/analysis.json" if prefix else "analysis.json"
    lease = f"{prefix}{CODEBASE}/_lease.json" if prefix else "other/x.json"

    def get() -> bytes:
        body: bytes = s3.get_object(Bucket=BUCKET, Key=existing)["Body"].read()
        return body

    return {
        "get": get,
        "head": lambda: s3.head_object(Bucket=BUCKET, Key=existing),
        # New keys are unique per call: objects persist between tests.
        "put-if-none-match": lambda: s3.put_object(
            Bucket=BUCKET,
            Key=f"{prefix}{CODEBASE}/file_{uuid.uuid4().hex[:16]}.json",
            Body=b"{}",
            IfNoneMatch="*",
            Metadata={"documee-schema": "1"},
        ),
        "put-journal-delta-with-tag": lambda: s3.put_object(
            Bucket=BUCKET,
            Key=f"{prefix}{CODEBASE}/_journal/{uuid.uuid4().int % 10**20:020d}.json",
            Body=b"{}",
            IfNoneMatch="*",
            Tagging="documee-remote-kind=delta",
        ),
        "renew-lease-if-match": lambda: s3.put_object(
            Bucket=BUCKET,
            Key=lease,
            Body=b"{}",
            IfMatch=world.etags[lease],
            Tagging="documee-remote-kind=lease",
        ),
        "delete-if-match": lambda: s3.delete_object(
            Bucket=BUCKET, Key=existing, IfMatch=world.etags[existing]
        ),
    }


READ_OPERATIONS = {"get", "head"}
WRITE_OPERATIONS = {
    "put-if-none-match",
    "put-journal-delta-with-tag",
    "renew-lease-if-match",
    "delete-if-match",
}


@pytest.mark.parametrize("kind", ["analyser", "admin"])
@pytest.mark.parametrize("operation", sorted(READ_OPERATIONS | WRITE_OPERATIONS))
def test_writers_read_and_write_their_own_prefix(world: World, kind: str, operation: str) -> None:
    s3 = world.clients[("team-a", kind)]
    assert _allowed(_object_operations(world, s3, "team-a/")[operation])


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("operation", sorted(READ_OPERATIONS | WRITE_OPERATIONS))
@pytest.mark.parametrize("foreign_prefix", ["team-b/", ""], ids=["other-team", "bucket-root"])
def test_nobody_touches_another_prefix(
    world: World, kind: str, operation: str, foreign_prefix: str
) -> None:
    s3 = world.clients[("team-a", kind)]
    assert _denied(_object_operations(world, s3, foreign_prefix)[operation])


@pytest.mark.parametrize("operation", sorted(READ_OPERATIONS))
def test_reader_reads_its_own_prefix(world: World, operation: str) -> None:
    s3 = world.clients[("team-a", "reader")]
    assert _allowed(_object_operations(world, s3, "team-a/")[operation])


@pytest.mark.parametrize("operation", sorted(WRITE_OPERATIONS))
def test_reader_cannot_write_or_delete(world: World, operation: str) -> None:
    s3 = world.clients[("team-a", "reader")]
    assert _denied(_object_operations(world, s3, "team-a/")[operation])


def test_denied_writes_change_nothing(world: World) -> None:
    reader = world.clients[("team-a", "reader")]
    foreign_writer = world.clients[("team-b", "analyser")]
    key = f"team-a/{CODEBASE}/analysis.json"
    assert _denied(lambda: reader.delete_object(Bucket=BUCKET, Key=key))
    assert _denied(lambda: foreign_writer.put_object(Bucket=BUCKET, Key=key, Body=b"evil"))
    owner = world.clients[("team-a", "analyser")]
    assert owner.get_object(Bucket=BUCKET, Key=key)["Body"].read() == b"{}"


@pytest.mark.parametrize("kind", KINDS)
def test_everyone_lists_their_own_prefix(world: World, kind: str) -> None:
    s3 = world.clients[("team-a", kind)]
    listed = s3.list_objects_v2(Bucket=BUCKET, Prefix=f"team-a/{CODEBASE}/")
    assert {o["Key"] for o in listed["Contents"]} >= set(_seed_keys("team-a/"))
    # Listing goes to the bucket ARN; moto can't evaluate the s3:prefix
    # condition that keeps team A out of team-b/ on AWS (see module docstring).


def test_the_other_team_is_symmetric(world: World) -> None:
    b = world.clients[("team-b", "analyser")]
    assert _allowed(_object_operations(world, b, "team-b/")["put-if-none-match"])
    assert _denied(_object_operations(world, b, "team-a/")["get"])


@pytest.mark.parametrize("kind", KINDS)
def test_nobody_reads_or_deletes_old_versions(world: World, kind: str) -> None:
    """Versioning is the recovery path: no team role can read around or destroy it."""
    s3 = world.clients[("team-a", kind)]
    key = f"team-a/{CODEBASE}/analysis.json"
    version = world.versions[key]
    assert _denied(lambda: s3.get_object(Bucket=BUCKET, Key=key, VersionId=version))
    assert _denied(lambda: s3.delete_object(Bucket=BUCKET, Key=key, VersionId=version))
    assert _denied(lambda: s3.list_object_versions(Bucket=BUCKET, Prefix="team-a/"))


def _bucket_reads(s3: Any) -> dict[str, Callable[[], object]]:
    def get_policy() -> object:
        try:
            return s3.get_bucket_policy(Bucket=BUCKET)
        except ClientError as exc:
            if exc.response["Error"]["Code"] == "NoSuchBucketPolicy":
                return None  # authorised: the bucket simply has no policy here
            raise

    return {
        "versioning": lambda: s3.get_bucket_versioning(Bucket=BUCKET),
        "policy": get_policy,
        "lifecycle": lambda: _ignore_missing_lifecycle(s3),
    }


def _ignore_missing_lifecycle(s3: Any) -> object:
    try:
        return s3.get_bucket_lifecycle_configuration(Bucket=BUCKET)
    except ClientError as exc:
        if exc.response["Error"]["Code"] == "NoSuchLifecycleConfiguration":
            return None
        raise


@pytest.mark.parametrize("read", ["versioning", "policy", "lifecycle"])
def test_admin_reads_bucket_configuration(world: World, read: str) -> None:
    s3 = world.clients[("team-a", "admin")]
    assert _allowed(_bucket_reads(s3)[read])
    if read == "versioning":
        assert s3.get_bucket_versioning(Bucket=BUCKET)["Status"] == "Enabled"


@pytest.mark.parametrize("kind", ["reader", "analyser"])
@pytest.mark.parametrize("read", ["versioning", "policy", "lifecycle"])
def test_only_admin_reads_bucket_configuration(world: World, kind: str, read: str) -> None:
    s3 = world.clients[("team-a", kind)]
    assert _denied(_bucket_reads(s3)[read])


@pytest.mark.parametrize("kind", KINDS)
def test_nobody_changes_the_bucket(world: World, kind: str) -> None:
    s3 = world.clients[("team-a", kind)]
    assert _denied(
        lambda: s3.put_bucket_versioning(
            Bucket=BUCKET, VersioningConfiguration={"Status": "Suspended"}
        )
    )
    assert _denied(lambda: s3.put_bucket_policy(Bucket=BUCKET, Policy=json.dumps({})))
    assert _denied(lambda: s3.delete_bucket_lifecycle(Bucket=BUCKET))
    assert _denied(lambda: s3.delete_bucket(Bucket=BUCKET))
    assert _denied(lambda: s3.create_bucket(Bucket="documee-iam-test-other"))
