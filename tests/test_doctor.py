"""doctor: the checks of a store's configuration, one by one."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from documee_remote.doctor import CheckResult, all_passed, check_store, run_checks
from documee_remote.stores import LocalStore, MemoryStore
from documee_remote.testing.fixtures import S3Endpoint
from documee_remote.testing.moto_server import ACCESS_DENIED, Fault, RequestInfo


def by_name(results: list[CheckResult]) -> dict[str, CheckResult]:
    return {r.name: r for r in results}


def s3_checks(endpoint: S3Endpoint, prefix: str = "doc/", **options: Any) -> dict[str, CheckResult]:
    options.setdefault("endpoint_url", endpoint.endpoint_url)
    return by_name(run_checks(endpoint.url(prefix), options))


def test_results_serialise_and_skips_do_not_fail() -> None:
    results = [CheckResult("a", True), CheckResult("b", None, "why"), CheckResult("c", False)]
    assert [r.to_dict()["status"] for r in results] == ["pass", "skip", "fail"]
    assert not all_passed(results)
    assert all_passed(results[:2])


def test_configuration_errors_are_the_one_failing_check() -> None:
    (result,) = run_checks(None)
    assert result.name == "configuration"
    assert result.ok is False
    assert "DOCUMEE_STORE_URL" in result.detail
    (result,) = run_checks("s3://b/x", config_error="invalid environment: DOCUMEE_S3_SSE")
    assert result.detail == "invalid environment: DOCUMEE_S3_SSE"


def test_a_store_that_cannot_open_fails_that_check() -> None:
    results = by_name(run_checks("memory://", {"concurrency": 0}))
    assert results["configuration"].ok is True
    assert results["store opens"].ok is False
    assert "listing" not in results


def test_local_store_checks(tmp_path: Path) -> None:
    results = by_name(run_checks((tmp_path / "new" / "store").as_uri()))
    assert results["directory"].ok is True
    assert "created on the first write" in results["directory"].detail
    assert results["locking"].ok is True
    assert results["listing"].ok is True
    assert results["conditional writes"].ok is True
    assert all_passed(list(results.values()))
    # The probe cleaned up after itself.
    assert [p for p in (tmp_path / "new").rglob("*") if p.is_file()] == []


def test_a_file_where_the_directory_should_be_fails(tmp_path: Path) -> None:
    (tmp_path / "file").write_bytes(b"x")
    results = by_name(run_checks((tmp_path / "file").as_uri()))
    assert results["directory"].ok is False


@pytest.mark.skipif(os.geteuid() == 0, reason="root may write anywhere")
def test_an_unwritable_directory_fails(tmp_path: Path) -> None:
    root = tmp_path / "ro"
    root.mkdir()
    root.chmod(0o555)
    try:
        results = by_name(run_checks(root.as_uri()))
    finally:
        root.chmod(0o755)
    assert results["directory"].ok is False
    assert results["conditional writes"].ok is False


def test_read_only_and_no_probe_skip_the_probe(tmp_path: Path) -> None:
    with LocalStore(tmp_path, read_only=True) as store:
        assert by_name(check_store(store))["conditional writes"].ok is None
    with MemoryStore() as store:
        assert by_name(check_store(store, probe=False))["conditional writes"].ok is None
        assert by_name(check_store(store))["conditional writes"].ok is True


def test_s3_unconfigured_bucket_fails_the_bucket_settings(s3_endpoint: S3Endpoint) -> None:
    results = s3_checks(s3_endpoint)
    assert results["credentials"].ok is True
    assert "from env" in results["credentials"].detail
    assert "testing" not in " ".join(r.detail for r in results.values())
    assert results["bucket reachable"].ok is True
    assert results["versioning"].ok is False
    assert results["default encryption"].ok is False
    assert results["public access block"].ok is False
    assert results["conditional writes"].ok is True


def test_s3_configured_bucket_passes(s3_endpoint: S3Endpoint) -> None:
    client = s3_endpoint.client()
    client.put_bucket_versioning(
        Bucket=s3_endpoint.bucket, VersioningConfiguration={"Status": "Enabled"}
    )
    client.put_bucket_encryption(
        Bucket=s3_endpoint.bucket,
        ServerSideEncryptionConfiguration={
            "Rules": [{"ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "aws:kms"}}]
        },
    )
    client.put_public_access_block(
        Bucket=s3_endpoint.bucket,
        PublicAccessBlockConfiguration={
            "BlockPublicAcls": True,
            "IgnorePublicAcls": True,
            "BlockPublicPolicy": True,
            "RestrictPublicBuckets": False,
        },
    )
    results = s3_checks(s3_endpoint)
    assert results["versioning"].ok is True
    assert results["default encryption"].ok is True
    assert "aws:kms" in results["default encryption"].detail
    assert results["public access block"].ok is False
    assert "RestrictPublicBuckets" in results["public access block"].detail


def test_s3_sse_on_every_write_counts_as_encryption(s3_endpoint: S3Endpoint) -> None:
    results = s3_checks(s3_endpoint, sse="AES256")
    assert results["default encryption"].ok is True
    assert "DOCUMEE_S3_SSE" in results["default encryption"].detail


def test_s3_missing_bucket_stops_at_reachability(s3_endpoint: S3Endpoint) -> None:
    results = by_name(
        run_checks("s3://no-such-bucket-here/x", {"endpoint_url": s3_endpoint.endpoint_url})
    )
    assert results["bucket reachable"].ok is False
    assert "does not exist" in results["bucket reachable"].detail
    assert "versioning" not in results
    assert "conditional writes" not in results


def test_s3_endpoint_ignoring_conditional_headers_fails_the_probe(
    s3_endpoint: S3Endpoint,
) -> None:
    s3_endpoint.server.faults.strip_conditional_headers = True
    results = s3_checks(s3_endpoint)
    assert results["conditional writes"].ok is False
    assert "ignored" in results["conditional writes"].detail


def test_s3_settings_the_caller_may_not_read_are_skipped(s3_endpoint: S3Endpoint) -> None:
    def versioning(info: RequestInfo) -> bool:
        return "versioning" in info.query

    s3_endpoint.server.faults.add(ACCESS_DENIED, key=versioning, times=None)
    results = s3_checks(s3_endpoint)
    assert results["versioning"].ok is None
    assert "permission" in results["versioning"].detail


def test_s3_settings_the_server_does_not_implement_are_not_failures(
    s3_endpoint: S3Endpoint,
) -> None:
    """SeaweedFS answers NotImplemented (501) to GetPublicAccessBlock: not supported, not failed."""

    def public_access_block(info: RequestInfo) -> bool:
        return "publicAccessBlock" in info.query

    not_implemented = Fault.error(501, "NotImplemented", "not implemented")
    s3_endpoint.server.faults.add(not_implemented, key=public_access_block, times=None)
    results = s3_checks(s3_endpoint)
    assert results["public access block"].ok is None
    assert results["public access block"].detail == "not supported by this server (NotImplemented)"
    assert results["versioning"].ok is False  # what the server has is still judged
    assert results["conditional writes"].ok is True


def test_s3_without_credentials_fails_the_credentials_check(
    s3_endpoint: S3Endpoint, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.delenv("AWS_SECURITY_TOKEN", raising=False)
    results = s3_checks(s3_endpoint, max_attempts=1)
    assert results["credentials"].ok is False
    assert "none found" in results["credentials"].detail
    assert not all_passed(list(results.values()))
