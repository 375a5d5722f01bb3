"""``terraform apply`` of the module against a local moto server, checked with boto3.

Uses infra/terraform/examples/moto (the module behind a provider whose every
endpoint is the moto server), with the compaction Lambda and its schedule:
moto creates Lambda functions without docker (it only needs docker to invoke
them, which this test doesn't). The apply takes about a minute, most of it the
AWS provider waiting for the lifecycle configuration to read back the same
several times in a row.
"""

from __future__ import annotations

import json
import uuid
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from documee_remote.aws_lambda import CompactEvent, parse_event

from .conftest import EXAMPLES_REL, Terraform, render_policy, set_fake_aws_env

boto3 = pytest.importorskip("boto3")
moto_server = pytest.importorskip("moto.server")

pytestmark = [pytest.mark.infra, pytest.mark.slow]

REGION = "us-east-1"
TEAMS = {"team-a": "team-a/", "team-b": "team-b/"}


@pytest.fixture(scope="module")
def endpoint() -> Iterator[str]:
    server = moto_server.ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    try:
        host, port = server.get_host_and_port()
        yield f"http://{host}:{port}"
    finally:
        server.stop()


def _lambda_zip(directory: Path) -> Path:
    path = directory / "compactor.zip"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("documee_remote/__init__.py", "")
        archive.writestr(
            "documee_remote/aws_lambda.py",
            "def handler(event, context):\n    return {'ok': True}\n",
        )
    return path


@pytest.fixture(scope="module")
def applied(terraform: Terraform, endpoint: str) -> Iterator[dict[str, Any]]:
    """Apply the moto example; destroy it afterwards whatever happened."""
    workdir = terraform.workdir(EXAMPLES_REL / "moto")
    terraform.init(workdir)
    bucket = f"documee-apply-{uuid.uuid4().hex[:12]}"
    variables = [
        f"-var=endpoint={endpoint}",
        f"-var=bucket_name={bucket}",
        f"-var=lambda_zip_path={_lambda_zip(terraform.root)}",
        "-var=compaction_schedule_expression=rate(1 hour)",
    ]
    aws_env = {"AWS_ACCESS_KEY_ID": "test", "AWS_SECRET_ACCESS_KEY": "test", "AWS_REGION": REGION}
    try:
        terraform.run(
            ["apply", "-auto-approve", "-input=false", "-no-color", *variables],
            workdir,
            timeout=420,
            extra_env=aws_env,
        )
        # A second plan must find nothing to do: no perpetual diff (policy JSON
        # normalisation, lifecycle filters, ...). Exit code 2 would mean changes.
        replan = terraform.run(
            ["plan", "-detailed-exitcode", "-input=false", "-no-color", *variables],
            workdir,
            timeout=300,
            check=False,
            extra_env=aws_env,
        )
        assert replan.returncode == 0, (
            f"plan after apply is not empty:\n{replan.stdout}{replan.stderr}"
        )
        outputs = json.loads(
            terraform.run(["output", "-json", "-no-color"], workdir, extra_env=aws_env).stdout
        )
        yield {name: value["value"] for name, value in outputs.items()}
    finally:
        terraform.run(
            ["destroy", "-auto-approve", "-input=false", "-no-color", *variables],
            workdir,
            timeout=420,
            extra_env=aws_env,
        )
        # Checked here so that a leak fails the module's last test's teardown.
        with pytest.MonkeyPatch.context() as monkeypatch:
            set_fake_aws_env(monkeypatch)
            s3 = boto3.client("s3", endpoint_url=endpoint, region_name=REGION)
            assert bucket not in {b["Name"] for b in s3.list_buckets()["Buckets"]}


@pytest.fixture
def client(endpoint: str, monkeypatch: pytest.MonkeyPatch) -> Any:
    set_fake_aws_env(monkeypatch)

    def make(service: str) -> Any:
        return boto3.client(service, endpoint_url=endpoint, region_name=REGION)

    return make


def test_bucket_is_versioned(applied: dict[str, Any], client: Any) -> None:
    s3 = client("s3")
    assert s3.get_bucket_versioning(Bucket=applied["bucket_name"])["Status"] == "Enabled"


def test_bucket_is_encrypted_with_sse_s3(applied: dict[str, Any], client: Any) -> None:
    rules = client("s3").get_bucket_encryption(Bucket=applied["bucket_name"])[
        "ServerSideEncryptionConfiguration"
    ]["Rules"]
    assert [r["ApplyServerSideEncryptionByDefault"]["SSEAlgorithm"] for r in rules] == ["AES256"]


def test_public_access_is_blocked(applied: dict[str, Any], client: Any) -> None:
    config = client("s3").get_public_access_block(Bucket=applied["bucket_name"])[
        "PublicAccessBlockConfiguration"
    ]
    assert config == {
        "BlockPublicAcls": True,
        "IgnorePublicAcls": True,
        "BlockPublicPolicy": True,
        "RestrictPublicBuckets": True,
    }


def test_acls_are_disabled(applied: dict[str, Any], client: Any) -> None:
    rules = client("s3").get_bucket_ownership_controls(Bucket=applied["bucket_name"])[
        "OwnershipControls"
    ]["Rules"]
    assert rules == [{"ObjectOwnership": "BucketOwnerEnforced"}]


def test_lifecycle_rules(applied: dict[str, Any], client: Any) -> None:
    rules = {
        r["ID"]: r
        for r in client("s3").get_bucket_lifecycle_configuration(Bucket=applied["bucket_name"])[
            "Rules"
        ]
    }
    assert set(rules) == {
        "expire-noncurrent-versions",
        "expire-stale-journal-deltas",
        "expire-stale-leases",
    }
    assert all(r["Status"] == "Enabled" for r in rules.values())
    noncurrent = rules["expire-noncurrent-versions"]
    assert noncurrent["NoncurrentVersionExpiration"]["NoncurrentDays"] == 30
    assert noncurrent["Expiration"] == {"ExpiredObjectDeleteMarker": True}
    assert noncurrent["AbortIncompleteMultipartUpload"] == {"DaysAfterInitiation": 7}
    assert noncurrent["Filter"].get("Prefix", "") == ""  # the whole bucket
    for rule_id, kind, days in [
        ("expire-stale-journal-deltas", "delta", 30),
        ("expire-stale-leases", "lease", 2),
    ]:
        assert rules[rule_id]["Filter"] == {"Tag": {"Key": "documee-remote-kind", "Value": kind}}
        assert rules[rule_id]["Expiration"] == {"Days": days}


def test_bucket_policy_denies_requests_without_tls(applied: dict[str, Any], client: Any) -> None:
    bucket = applied["bucket_name"]
    policy = json.loads(client("s3").get_bucket_policy(Bucket=bucket)["Policy"])
    assert policy == json.loads(render_policy("bucket", bucket_arn=f"arn:aws:s3:::{bucket}"))
    (no_tls,) = [s for s in policy["Statement"] if s["Sid"] == "DenyRequestsWithoutTLS"]
    assert no_tls["Effect"] == "Deny"
    assert no_tls["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}
    # moto can't tell TLS from plain HTTP (nor evaluate Bool conditions), so the
    # denial itself is not exercised; see test_iam_moto.py.


def test_team_policies_are_the_rendered_templates(applied: dict[str, Any], client: Any) -> None:
    """The module passes each template the bucket ARN and the right team's prefix."""
    iam = client("iam")
    bucket_arn = f"arn:aws:s3:::{applied['bucket_name']}"
    for team, prefix in TEAMS.items():
        for kind in ("reader", "analyser", "admin"):
            name = f"documee-remote-{team}-{kind}"
            policy_arn = f"arn:aws:iam::123456789012:policy/{name}"
            version = iam.get_policy(PolicyArn=policy_arn)["Policy"]["DefaultVersionId"]
            document = iam.get_policy_version(PolicyArn=policy_arn, VersionId=version)[
                "PolicyVersion"
            ]["Document"]
            if isinstance(document, str):
                document = json.loads(document)
            expected = json.loads(render_policy(kind, bucket_arn=bucket_arn, prefix=prefix))
            assert document == expected, name
            assert json.loads(applied["policy_documents"][team][kind]) == expected, name

            role = applied["role_arns"][team][kind]
            attached = iam.list_attached_role_policies(RoleName=role.rsplit("/", 1)[1])
            assert [p["PolicyArn"] for p in attached["AttachedPolicies"]] == [policy_arn]


def test_compaction_lambda_and_schedule(applied: dict[str, Any], client: Any) -> None:
    lam = client("lambda")
    events = client("events")
    assert set(applied["lambda_function_arns"]) == set(TEAMS)
    for team, prefix in TEAMS.items():
        config = lam.get_function_configuration(FunctionName=f"documee-remote-{team}-compactor")
        assert config["Handler"] == "documee_remote.aws_lambda.handler"
        assert config["Runtime"] == "python3.12"
        assert config["Environment"]["Variables"]["DOCUMEE_STORE_URL"] == (
            f"s3://{applied['bucket_name']}/{prefix}"
        )
        assert config["Role"].endswith(f"role/documee-remote-{team}-compactor")

        rule = events.describe_rule(Name=f"documee-remote-{team}-compaction")
        assert rule["ScheduleExpression"] == "rate(1 hour)"
        targets = events.list_targets_by_rule(Rule=rule["Name"])["Targets"]
        assert [t["Arn"] for t in targets] == [applied["lambda_function_arns"][team]]
        assert json.loads(targets[0]["Input"]) == {"action": "compact"}
        # ... which the handler takes as "compact every codebase" (it once refused it).
        parsed = parse_event(json.loads(targets[0]["Input"]))
        assert isinstance(parsed, CompactEvent)
        assert parsed.codebase_id is None
