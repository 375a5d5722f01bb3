"""The policy templates: well-formed, least-privilege, and rendered here exactly as Terraform does.

``infra/policies/*.json.tftpl`` are rendered by the module with ``templatefile()``
and by these tests with :func:`conftest.render_template`; the comparison with
Terraform's own rendering (when terraform is installed) keeps the two identical.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from .conftest import POLICY_DIR, TemplateError, Terraform, render_policy, render_template

BUCKET_ARN = "arn:aws:s3:::documee-shared"
KMS_KEY_ARN = "arn:aws:kms:eu-west-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab"

# Each template with the variables the module passes to it (names must match
# infra/terraform/modules/documee-remote/*.tf).
SAMPLE_VARS: dict[str, dict[str, str]] = {
    "reader": {"bucket_arn": BUCKET_ARN, "prefix": "team-a/"},
    "analyser": {"bucket_arn": BUCKET_ARN, "prefix": "team-a/"},
    "admin": {"bucket_arn": BUCKET_ARN, "prefix": "team-a/"},
    "bucket": {"bucket_arn": BUCKET_ARN},
    "list_bucket": {"bucket_arn": BUCKET_ARN},
    "kms_read": {"kms_key_arn": KMS_KEY_ARN, "region": "eu-west-1", "dns_suffix": "amazonaws.com"},
    "kms_write": {"kms_key_arn": KMS_KEY_ARN, "region": "eu-west-1", "dns_suffix": "amazonaws.com"},
    "lambda_logs": {
        "log_group_arn": "arn:aws:logs:eu-west-1:123456789012:log-group:/aws/lambda/x-compactor"
    },
}
TEAM_TEMPLATES = ("reader", "analyser", "admin")
IDENTITY_TEMPLATES = tuple(name for name in SAMPLE_VARS if name != "bucket")


def _doc(name: str, **overrides: str) -> dict:
    return json.loads(render_policy(name, **{**SAMPLE_VARS[name], **overrides}))


def _statements(doc: dict) -> list[dict]:
    return doc["Statement"]


def _as_list(value: str | list[str]) -> list[str]:
    return [value] if isinstance(value, str) else list(value)


def _actions(doc: dict) -> set[str]:
    return {a for s in _statements(doc) for a in _as_list(s["Action"])}


def test_every_template_is_covered() -> None:
    on_disk = {p.name.removesuffix(".json.tftpl") for p in POLICY_DIR.glob("*.json.tftpl")}
    assert on_disk == set(SAMPLE_VARS)


@pytest.mark.parametrize("name", sorted(SAMPLE_VARS))
def test_template_renders_to_a_valid_policy(name: str) -> None:
    doc = _doc(name)
    assert doc["Version"] == "2012-10-17"
    sids = [s["Sid"] for s in _statements(doc)]
    assert len(sids) == len(set(sids)), "Sids must be unique"
    for statement in _statements(doc):
        # IAM accepts only [A-Za-z0-9] in an identity policy's Sid.
        assert re.fullmatch(r"[A-Za-z0-9]+", statement["Sid"]), statement["Sid"]
        assert statement["Effect"] in {"Allow", "Deny"}
        assert "NotAction" not in statement
        assert "NotResource" not in statement
        for action in _as_list(statement["Action"]):
            assert "*" not in action or name == "bucket", f"wildcard action {action} in {name}"


@pytest.mark.parametrize("name", IDENTITY_TEMPLATES)
def test_identity_policies_only_allow_and_name_no_principal(name: str) -> None:
    for statement in _statements(_doc(name)):
        assert statement["Effect"] == "Allow"
        assert "Principal" not in statement


def test_bucket_policy_denies_every_request_without_tls() -> None:
    statements = _statements(_doc("bucket"))
    by_sid = {s["Sid"]: s for s in statements}
    no_tls = by_sid["DenyRequestsWithoutTLS"]
    assert no_tls["Effect"] == "Deny"
    assert no_tls["Principal"] == "*"
    assert no_tls["Action"] == "s3:*"
    assert set(no_tls["Resource"]) == {BUCKET_ARN, f"{BUCKET_ARN}/*"}
    assert no_tls["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}
    old_tls = by_sid["DenyTLSOlderThan12"]
    assert old_tls["Condition"] == {"NumericLessThan": {"s3:TlsVersion": "1.2"}}
    # Every statement is a conditional Deny: the bucket policy never grants anything.
    assert all(s["Effect"] == "Deny" and s.get("Condition") for s in statements)


@pytest.mark.parametrize("kind", TEAM_TEMPLATES)
@pytest.mark.parametrize("prefix", ["team-a/", "org.x/team_b-1/"])
def test_team_policies_are_scoped_to_the_prefix(kind: str, prefix: str) -> None:
    doc = _doc(kind, prefix=prefix)
    object_arn = f"{BUCKET_ARN}/{prefix}*"
    for statement in _statements(doc):
        actions = set(_as_list(statement["Action"]))
        resources = set(_as_list(statement["Resource"]))
        if actions == {"s3:ListBucket"}:
            assert resources == {BUCKET_ARN}
            assert statement["Condition"] == {"StringLike": {"s3:prefix": f"{prefix}*"}}
        elif all(
            a.startswith(("s3:GetBucket", "s3:GetEncryption", "s3:GetLifecycle")) for a in actions
        ):
            # Read-only bucket configuration (admin only).
            assert kind == "admin"
            assert resources == {BUCKET_ARN}
            assert "Condition" not in statement
        else:
            assert resources == {object_arn}, statement


def test_role_actions_are_least_privilege() -> None:
    reader = _actions(_doc("reader"))
    analyser = _actions(_doc("analyser"))
    admin = _actions(_doc("admin"))
    assert reader == {"s3:ListBucket", "s3:GetObject"}
    # Conditional writes (If-None-Match / If-Match) need GetObject and PutObject;
    # PutObject with a Tagging header needs PutObjectTagging too.
    assert analyser == reader | {
        "s3:PutObject",
        "s3:PutObjectTagging",
        "s3:DeleteObject",
        "s3:AbortMultipartUpload",
    }
    assert admin - analyser == {
        "s3:GetBucketLocation",
        "s3:GetBucketVersioning",
        "s3:GetEncryptionConfiguration",
        "s3:GetBucketPublicAccessBlock",
        "s3:GetBucketOwnershipControls",
        "s3:GetBucketPolicy",
        "s3:GetLifecycleConfiguration",
    }
    dangerous = {
        "s3:DeleteObjectVersion",  # would destroy the history versioning keeps
        "s3:GetObjectVersion",
        "s3:ListBucketVersions",
        "s3:PutBucketPolicy",
        "s3:DeleteBucketPolicy",
        "s3:PutBucketVersioning",
        "s3:PutLifecycleConfiguration",
        "s3:PutEncryptionConfiguration",
        "s3:DeleteBucket",
        "s3:PutObjectAcl",
        "s3:BypassGovernanceRetention",
    }
    assert not (admin & dangerous)


def test_kms_policies_use_the_key_through_s3_only() -> None:
    for name, actions in {
        "kms_read": {"kms:Decrypt"},
        "kms_write": {"kms:Decrypt", "kms:GenerateDataKey"},
    }.items():
        doc = _doc(name)
        assert _actions(doc) == actions
        for statement in _statements(doc):
            assert statement["Resource"] == KMS_KEY_ARN
            assert statement["Condition"] == {
                "StringEquals": {"kms:ViaService": "s3.eu-west-1.amazonaws.com"}
            }


def _string_like(pattern: str, value: str) -> bool:
    """IAM StringLike: '*' is any run of characters, '?' any one character."""
    regex = "".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in pattern)
    return re.fullmatch(regex, value, flags=re.DOTALL) is not None


@pytest.mark.parametrize(
    ("requested_prefix", "allowed"),
    [
        ("team-a/", True),
        ("team-a/f894e86523a62387/", True),
        ("team-a/f894e86523a62387/_journal/", True),
        ("team-a/f89", True),
        ("", False),  # the whole bucket
        ("team-a", False),  # would also list team-ab/
        ("team-ab/", False),
        ("team-b/", False),
        ("team-b/team-a/", False),
        ("/team-a/", False),
    ],
)
def test_list_bucket_condition_admits_only_the_own_prefix(
    requested_prefix: str, allowed: bool
) -> None:
    """What moto cannot check: the s3:prefix condition on ListBucket (see test_iam_moto.py)."""
    (statement,) = [s for s in _statements(_doc("analyser")) if s["Action"] == "s3:ListBucket"]
    (pattern,) = _as_list(statement["Condition"]["StringLike"]["s3:prefix"])
    assert _string_like(pattern, requested_prefix) is allowed


# ---------------------------------------------------------------------------
# The Python renderer itself
# ---------------------------------------------------------------------------


def test_renderer_handles_escapes_and_spaces(tmp_path: Path) -> None:
    template = tmp_path / "t.tftpl"
    template.write_text(
        '{"a": "${ x }", "b": "$${aws:username}", "c": "%%{ if }", "d": "${x}${y}"}\n'
    )
    assert render_template(template, {"x": "1", "y": "2"}) == (
        '{"a": "1", "b": "${aws:username}", "c": "%{ if }", "d": "12"}\n'
    )


@pytest.mark.parametrize(
    "body",
    ["%{ if x }y%{ endif }", "${~ x}", "${x ~}", '${upper("x")}', "${var.x}", "${x[0]}", "${y}"],
)
def test_renderer_refuses_what_it_does_not_implement(tmp_path: Path, body: str) -> None:
    template = tmp_path / "t.tftpl"
    template.write_text(body)
    with pytest.raises(TemplateError):
        render_template(template, {"x": "1"})


# Cases compared with Terraform: every template with its sample variables, the
# team templates with an unusual (valid) prefix and a non-default partition,
# and raw text that is not JSON-safe (the renderer must not escape anything).
def _comparison_cases() -> dict[str, tuple[Path, dict[str, str]]]:
    cases = {name: (POLICY_DIR / f"{name}.json.tftpl", dict(v)) for name, v in SAMPLE_VARS.items()}
    for kind in TEAM_TEMPLATES:
        cases[f"{kind}-govcloud"] = (
            POLICY_DIR / f"{kind}.json.tftpl",
            {"bucket_arn": "arn:aws-us-gov:s3:::b.with.dots", "prefix": "org.x/team_b-1/"},
        )
    cases["raw-text"] = (
        POLICY_DIR / "reader.json.tftpl",
        {"bucket_arn": 'we"ird\\ $ {} %', "prefix": "ünï/\t"},
    )
    return cases


@pytest.mark.infra
def test_python_rendering_equals_terraform_templatefile(terraform_bare: Terraform) -> None:
    cases = _comparison_cases()
    workdir = terraform_bare.root / "render-policies"
    workdir.mkdir()
    (workdir / "main.tf").write_text(
        """
variable "cases" {
  type = map(object({ template = string, vars = map(string) }))
}

output "rendered" {
  value = { for name, c in var.cases : name => templatefile(c.template, c.vars) }
}
"""
    )
    (workdir / "terraform.tfvars.json").write_text(
        json.dumps(
            {"cases": {k: {"template": str(path), "vars": v} for k, (path, v) in cases.items()}}
        )
    )
    terraform_bare.init(workdir)
    terraform_bare.run(["apply", "-auto-approve", "-input=false", "-no-color"], workdir)
    output = terraform_bare.run(["output", "-json", "rendered"], workdir)
    rendered_by_terraform = json.loads(output.stdout)

    assert set(rendered_by_terraform) == set(cases)
    for name, (path, variables) in cases.items():
        assert render_template(path, variables) == rendered_by_terraform[name], name
