"""Isolation: a store on ``team-a/`` never reads, lists, writes or deletes under ``team-b/``.

Checked three ways: every request the S3 store sends is spied on at the
harness server while Hypothesis throws escape attempts at it; the Terraform
policies (rendered as ``tests/infra`` renders them) are enforced by moto's IAM
and the library must surface PermissionDeniedError cleanly; and on local disk,
symbolic links inside the root cannot lead out of it.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError
from hypothesis import HealthCheck, given, settings

from documee_remote import PersistenceManager
from documee_remote.errors import (
    ConfigurationError,
    DocumeeRemoteError,
    InvalidKeyError,
    PermissionDeniedError,
)
from documee_remote.stores import LocalStore
from documee_remote.stores.s3 import S3Store
from documee_remote.testing.fixtures import S3Endpoint
from documee_remote.testing.moto_server import DROP, RequestInfo

from ._helpers import versioned
from ._strategies import keys
from .conftest import FaultLedger

TEAM_B = {
    "team-b/cb/analysis.json": b'{"team": "b"}',
    "team-b/cb/file_hashes.json": b"{}",
    "team-a-other/cb/analysis.json": b'{"team": "a-other"}',  # shares a string prefix
    "team-a.json": b"{}",
}
ESCAPES = [
    "../team-b/cb/analysis.json",
    "..%2Fteam-b/cb/analysis.json",
    "%2e%2e/team-b/cb/analysis.json",
    "/team-b/cb/analysis.json",
    "team-a/../team-b/cb/analysis.json",
    "cb/../../team-b/cb/analysis.json",
    "..\\team-b\\cb\\analysis.json",
    "\u2025/team-b/cb/analysis.json",
    "\uff0e\uff0e/team-b/cb/analysis.json",
    "./../team-b/cb/analysis.json",
    "cb/\x00/../../team-b",
]


class Spy:
    """Records the object key or listing prefix of every S3 request the server sees."""

    def __init__(self) -> None:
        self.keys: list[str] = []
        self.prefixes: list[str] = []

    def __call__(self, info: RequestInfo) -> bool:
        if info.key is not None:
            self.keys.append(info.key)
        elif info.method == "GET" and "list-type" in info.query:
            self.prefixes.append(info.query.get("prefix", [""])[0])
        return False  # never fault: only watch

    def outside(self, prefix: str) -> list[str]:
        return [k for k in self.keys + self.prefixes if not k.startswith(prefix)]


@pytest.fixture
def team_a(s3_endpoint: S3Endpoint) -> Iterator[tuple[S3Store, Spy]]:
    client = s3_endpoint.client()
    for key, body in TEAM_B.items():
        client.put_object(Bucket=s3_endpoint.bucket, Key=key, Body=body)
    spy = Spy()
    s3_endpoint.server.faults.add(DROP, key=spy, times=None)
    with s3_endpoint.store("team-a/") as store:
        yield store, spy


def _others_intact(endpoint: S3Endpoint) -> None:
    client = endpoint.client()
    listing = client.list_objects_v2(Bucket=endpoint.bucket)
    outside = {o["Key"] for o in listing.get("Contents", []) if not o["Key"].startswith("team-a/")}
    assert outside == set(TEAM_B)
    for key, body in TEAM_B.items():
        assert client.get_object(Bucket=endpoint.bucket, Key=key)["Body"].read() == body


def _every_operation(store: S3Store, key: str) -> None:
    for op in (
        lambda: store.put(key, b"intruder"),
        lambda: store.put(key, b"intruder", if_none_match="*"),
        lambda: store.get(key),
        lambda: store.head(key),
        lambda: list(store.list(key)),
        lambda: list(store.list_meta(key)),
        lambda: store.get_many([key]),
        lambda: store.put_many({key: b"intruder"}),
        lambda: store.delete(key),
        lambda: store.delete_many([key]),
        lambda: store.delete_many([key], if_match={key: '"0"'}),
    ):
        with contextlib.suppress(DocumeeRemoteError):  # refusals are fine; escapes are not
            op()


def test_escape_attempts_stay_inside_the_prefix(
    team_a: tuple[S3Store, Spy], s3_endpoint: S3Endpoint
) -> None:
    store, spy = team_a
    for key in ESCAPES:
        _every_operation(store, key)
    assert spy.keys  # the spy saw the accepted ones (so the check below can fail)
    # Whatever was accepted went under team-a/ (literally: "%2e%2e" is three characters).
    assert spy.outside("team-a/") == []
    _others_intact(s3_endpoint)  # (its own reads are not the store's: checked after)


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(key=keys)
def test_fuzzed_keys_stay_inside_the_prefix(
    key: str, team_a: tuple[S3Store, Spy], s3_endpoint: S3Endpoint, fast_retries: None
) -> None:
    store, spy = team_a
    _every_operation(store, key)
    assert spy.outside("team-a/") == []
    for stray in store.list():  # clean up for the next example
        store.delete(stray)


@pytest.mark.parametrize(
    "url",
    [
        "s3://documee-test/team-a/../team-b/",
        "s3://documee-test/team-a/./../team-b",
        "s3://documee-test/../team-b/",
        "s3://documee-test/team-a//team-b",
        "s3://documee-test/team-a/\x00/",
        "s3://documee-test/team-a\\..\\team-b",
        "s3://documee-test/team-a/%2e%2e/team-b/",
        "s3://documee-test/team-a/.hidden/",
    ],
)
def test_store_prefixes_cannot_name_another_team(url: str, s3_endpoint: S3Endpoint) -> None:
    try:
        store = S3Store.from_url(url, endpoint_url=s3_endpoint.endpoint_url, region="us-east-1")
    except ConfigurationError:
        return
    with store:
        assert store.prefix.startswith("team-a/")
        assert ".." not in store.prefix.split("/")


def test_a_prefix_is_not_a_string_prefix_of_its_neighbour(
    team_a: tuple[S3Store, Spy], s3_endpoint: S3Endpoint
) -> None:
    store, spy = team_a
    store.put("cb/analysis.json", b'{"team": "a"}')
    # team-a/ must not see team-a-other/ or team-a.json (same leading characters).
    assert list(store.list()) == ["cb/analysis.json"]
    assert list(store.list("c")) == ["cb/analysis.json"]
    assert PersistenceManager(store).list_codebases() == ["cb"]
    assert spy.outside("team-a/") == []
    _others_intact(s3_endpoint)


# -- the Terraform policies under moto's IAM -----------------------------------------------------


@pytest.fixture
def policy_world(aws_credentials: None) -> Iterator[dict[str, Any]]:
    try:
        from ..infra.conftest import render_policy
    except Exception as exc:
        pytest.skip(f"tests/infra helpers unavailable: {exc}")
    from moto import mock_aws
    from moto.core import enable_iam_authentication

    bucket, region = "documee-policy-test", "us-east-1"
    bucket_arn = f"arn:aws:s3:::{bucket}"
    trust = {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Effect": "Allow",
                "Principal": {"AWS": "arn:aws:iam::123456789012:root"},
                "Action": "sts:AssumeRole",
            }
        ],
    }
    with mock_aws():
        seeder = boto3.client("s3", region_name=region)
        seeder.create_bucket(Bucket=bucket)
        seeder.put_object(Bucket=bucket, Key="team-b/cb/analysis.json", Body=b'{"team": "b"}')
        iam = boto3.client("iam", region_name=region)
        sts = boto3.client("sts", region_name=region)
        sessions = {}
        for kind in ("analyser", "reader"):
            name = f"documee-faults-team-a-{kind}"
            policy = iam.create_policy(
                PolicyName=name,
                PolicyDocument=render_policy(kind, bucket_arn=bucket_arn, prefix="team-a/"),
            )
            iam.create_role(RoleName=name, AssumeRolePolicyDocument=json.dumps(trust))
            iam.attach_role_policy(RoleName=name, PolicyArn=policy["Policy"]["Arn"])
            creds = sts.assume_role(
                RoleArn=f"arn:aws:iam::123456789012:role/{name}", RoleSessionName="faults"
            )["Credentials"]
            sessions[kind] = (
                boto3.Session(
                    aws_access_key_id=creds["AccessKeyId"],
                    aws_secret_access_key=creds["SecretAccessKey"],
                    aws_session_token=creds["SessionToken"],
                    region_name=region,
                ),
                creds,
            )
        with enable_iam_authentication():
            yield {"bucket": bucket, "sessions": sessions, "seeder": seeder}


def _clean_denial(error: DocumeeRemoteError, creds: dict[str, Any]) -> None:
    text = f"{error} {error!r}"
    for secret in (creds["SecretAccessKey"], creds["SessionToken"], creds["AccessKeyId"]):
        assert secret not in text
    assert error.key is not None
    assert error.key in str(error)
    assert isinstance(error.__cause__, ClientError)  # the botocore error stays attached


def test_rendered_policies_surface_permission_denied_cleanly(
    policy_world: dict[str, Any], fault_ledger: FaultLedger
) -> None:
    bucket = policy_world["bucket"]
    analyser, analyser_creds = policy_world["sessions"]["analyser"]
    reader, reader_creds = policy_world["sessions"]["reader"]
    denials = 0

    def store(session: boto3.Session, prefix: str) -> S3Store:
        return S3Store.from_url(f"s3://{bucket}/{prefix}", session=session, region="us-east-1")

    # Its own prefix: the analyser merges, reads and verifies.
    with store(analyser, "team-a/") as own:
        pm = PersistenceManager(own)
        pm.merge_file_analyses("cb", {"/a.py": versioned("/a.py", 1)}, {"/a.py": "h"})
        assert pm.verify("cb").findings == []
    # The other team's prefix: every read and write is refused with the typed error.
    with store(analyser, "team-b/") as other:
        pm = PersistenceManager(other)
        for op in (
            lambda: pm.load_analysis("cb"),
            lambda: pm.merge_file_analyses("cb", {"/x.py": versioned("/x.py", 1)}, {}),
            lambda: other.put("cb/analysis.json", b"{}"),
            lambda: other.delete("cb/analysis.json"),
        ):
            with pytest.raises(PermissionDeniedError) as info:
                op()
            _clean_denial(info.value, analyser_creds)
            denials += 1
    # The reader reads its prefix and cannot change it.
    with store(reader, "team-a/") as ro:
        pm = PersistenceManager(ro)
        assert pm.load_analysis("cb") is not None
        with pytest.raises(PermissionDeniedError) as info:
            pm.merge_file_analyses("cb", {"/b.py": versioned("/b.py", 1)}, {})
        _clean_denial(info.value, reader_creds)
        with pytest.raises(PermissionDeniedError):
            pm.delete_analysis("cb")
        denials += 2
        loaded = pm.load_analysis("cb")
        assert loaded is not None
        assert list(loaded.file_analyses) == ["/a.py"]  # nothing the reader tried landed
    fault_ledger.record(
        "isolation",
        "iam-policy-denials",
        "s3-iam",
        injected=denials,
        survived=denials,
        surfaced=denials,
    )


# -- local disk: symbolic links ------------------------------------------------------------------


def test_symbolic_links_cannot_lead_a_local_store_out_of_its_root(tmp_path: Path) -> None:
    team_b = tmp_path / "team-b"
    (team_b / "cb").mkdir(parents=True)
    secret = team_b / "cb" / "analysis.json"
    secret.write_bytes(b'{"team": "b"}')
    root = tmp_path / "team-a"
    root.mkdir()
    os.symlink(team_b / "cb", root / "linked")  # a directory link
    (root / "own").mkdir()
    os.symlink(secret, root / "own" / "analysis.json")  # a file link
    store = LocalStore(root)
    for key in ("linked/analysis.json", "linked/new.json", "own/analysis.json"):
        for op in (
            lambda: store.get(key),
            lambda: store.head(key),
            lambda: store.put(key, b"intruder"),
            lambda: store.delete(key),
        ):
            with pytest.raises(InvalidKeyError, match="outside"):
                op()
    assert list(store.list()) == []  # links are not followed by listings
    assert secret.read_bytes() == b'{"team": "b"}'
    assert sorted(p.name for p in (team_b / "cb").iterdir()) == ["analysis.json"]
