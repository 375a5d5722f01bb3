"""Secrets: credentials, session tokens and object bodies never reach logs, errors or reprs.

The main test runs a full S3 job (merges with faults, loads, verify and
repair, a lease, gc, refusals, a corrupt object) in its own process with all
logging at DEBUG, then greps everything that process printed for every
credential it held (static keys, a session token, the assumed role's keys and
token, an external id, a password in a URL) and for a marker string that only
appears inside object bodies. A control run without :func:`install_redaction`
shows that the grep does catch botocore's own leaks.
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import logging
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import boto3
import pytest

from documee_remote import PersistenceManager, redact
from documee_remote.errors import CorruptObjectError
from documee_remote.redact import (
    REDACTED,
    RedactingFilter,
    install_redaction,
    redact_text,
    uninstall_redaction,
)
from documee_remote.stores import MemoryStore
from documee_remote.testing.fixtures import TEST_REGION, S3Endpoint
from documee_remote.testing.moto_server import ACCESS_DENIED, DROP, SLOW_DOWN

from ._helpers import versioned
from ._secret_job import EXTERNAL_ID, MARKER, PASSWORD
from .conftest import FaultLedger

REPO = Path(__file__).resolve().parents[2]
ACCESS_KEY = "AKIAQX7DUMMYKEY4TEST"
SECRET_KEY = base64.b64encode(hashlib.sha256(b"documee-dummy-secret").digest()[:30]).decode()
SESSION_TOKEN = "IQoJb3JpZ2luX2Vj" + base64.b64encode(hashlib.sha512(b"tok").digest() * 3).decode()


@pytest.fixture
def clean_logging() -> Iterator[None]:
    """Start without redaction installed; put back whatever was installed before."""
    was_installed = logging.getLogRecordFactory() is redact._redacting_factory
    uninstall_redaction()
    try:
        yield
    finally:
        uninstall_redaction()
        if was_installed:
            install_redaction()


@pytest.fixture
def redaction(clean_logging: None) -> RedactingFilter:
    return install_redaction()


# -- the filter ---------------------------------------------------------------------------------

SAMPLES = {
    "canonical request": f"x-amz-date:20250101T000000Z\nx-amz-security-token:{SESSION_TOKEN}\n",
    "prepared request": (
        "<AWSPreparedRequest stream_output=False, method=PUT, url=http://h/b/k, headers={"
        f"'X-Amz-Security-Token': b'{SESSION_TOKEN}', 'Authorization': b'AWS4-HMAC-SHA256 "
        f"Credential={ACCESS_KEY}/20250101/us-east-1/s3/aws4_request, SignedHeaders=host, "
        "Signature=0123abcd'}>"
    ),
    "sts xml": (
        f"<Credentials><AccessKeyId>ASIAXXXXXXXXXXXXXXXX</AccessKeyId><SecretAccessKey>"
        f"{SECRET_KEY}</SecretAccessKey><SessionToken>{SESSION_TOKEN}</SessionToken>"
    ),
    "json": json.dumps({"AccessKeyId": ACCESS_KEY, "SecretAccessKey": SECRET_KEY}),
    "presigned url": (
        f"https://b.s3.amazonaws.com/k?X-Amz-Credential={ACCESS_KEY}%2F20250101&"
        f"X-Amz-Security-Token={SESSION_TOKEN}&X-Amz-Signature=abc123"
    ),
    "env style": f"aws_secret_access_key={SECRET_KEY} aws_session_token = {SESSION_TOKEN}",
    "bare": f"key {ACCESS_KEY} secret {SECRET_KEY} token {SESSION_TOKEN}.",
}


@pytest.mark.parametrize("name", sorted(SAMPLES))
def test_redact_text_scrubs_every_form(name: str) -> None:
    text = redact_text(SAMPLES[name])
    for secret in (ACCESS_KEY, SECRET_KEY, SESSION_TOKEN, "ASIAXXXXXXXXXXXXXXXX"):
        assert secret not in text
    assert REDACTED in text


def test_redact_text_keeps_what_is_not_a_secret() -> None:
    ordinary = (
        "PUT /documee-test/store-root/f894e86523a62387/file_0123456789abcdef.json 200; "
        'etag "d41d8cd98f00b204e9800998ecf8427e" sha256 '
        "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855 "
        "/home/user/src/documee_remote/stores/local.py line 42 analysis.json"
    )
    assert redact_text(ordinary) == ordinary


def test_the_filter_formats_scrubs_and_drops_bodies() -> None:
    record = logging.LogRecord(
        "botocore.endpoint",
        logging.DEBUG,
        __file__,
        1,
        "Making request for %s with params: %s",
        (
            "OperationModel(name=PutObject)",
            {"headers": {"X-Amz-Security-Token": SESSION_TOKEN}, "body": MARKER.encode() * 3},
        ),
        None,
    )
    assert RedactingFilter().filter(record) is True
    message = record.getMessage()
    assert SESSION_TOKEN not in message
    assert MARKER not in message
    assert f"<{len(MARKER) * 3} bytes redacted>" in message
    assert record.args is None
    body = logging.LogRecord(
        "botocore.parsers",
        logging.DEBUG,
        __file__,
        1,
        "Response body:\n%r",
        (json.dumps({"x": MARKER}).encode(),),
        None,
    )
    RedactingFilter().filter(body)
    assert MARKER not in body.getMessage()
    xml = logging.LogRecord(
        "botocore.parsers",
        logging.DEBUG,
        __file__,
        1,
        "Response body:\n%r",
        (f"<Error><Code>AccessDenied</Code><Token>{SESSION_TOKEN}</Token></Error>".encode(),),
        None,
    )
    RedactingFilter().filter(xml)
    assert "AccessDenied" in xml.getMessage()  # protocol XML is kept for debugging ...
    assert SESSION_TOKEN not in xml.getMessage()  # ... scrubbed


def test_the_filter_scrubs_tracebacks_and_registered_secrets() -> None:
    try:
        raise RuntimeError(f"boom {SESSION_TOKEN} {EXTERNAL_ID}")
    except RuntimeError:
        record = logging.LogRecord(
            "documee_remote.x", logging.ERROR, __file__, 1, "failed: %s", ("x",), sys.exc_info()
        )
    RedactingFilter(secrets=[EXTERNAL_ID]).filter(record)
    assert record.exc_text is not None
    assert "RuntimeError" in record.exc_text
    assert SESSION_TOKEN not in record.exc_text
    assert EXTERNAL_ID not in record.exc_text


def test_install_covers_child_loggers_made_before_and_after(redaction: RedactingFilter) -> None:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    root = logging.getLogger()
    old_level = root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    try:
        logging.getLogger("botocore.endpoint").debug("token %s", SESSION_TOKEN)
        logging.getLogger("s3fs.brand.new.child").debug("secret=%s", SECRET_KEY)
        logging.getLogger("botocore").debug("key %s", ACCESS_KEY)
        logging.getLogger("someone.else").debug("untouched %s", "AKIA-looking-but-not-ours")
    finally:
        root.removeHandler(handler)
        root.setLevel(old_level)
    output = stream.getvalue()
    assert output.count(REDACTED) == 3
    for secret in (SESSION_TOKEN, SECRET_KEY, ACCESS_KEY):
        assert secret not in output
    assert "untouched AKIA-looking-but-not-ours" in output
    assert install_redaction() is redaction  # idempotent: one filter per process


def test_uninstall_restores_the_record_factory(clean_logging: None) -> None:
    before = logging.getLogRecordFactory()
    install_redaction()
    assert logging.getLogRecordFactory() is not before
    uninstall_redaction()
    assert logging.getLogRecordFactory() is before
    assert not logging.getLogger("botocore").filters


# -- a full job at DEBUG --------------------------------------------------------------------------


@pytest.fixture
def role_arn(s3_endpoint: S3Endpoint) -> str:
    iam = boto3.client("iam", endpoint_url=s3_endpoint.endpoint_url, region_name=TEST_REGION)
    trust = {
        "Version": "2012-10-17",
        "Statement": [{"Effect": "Allow", "Principal": {"AWS": "*"}, "Action": "sts:AssumeRole"}],
    }
    role = iam.create_role(RoleName="documee-secrets", AssumeRolePolicyDocument=json.dumps(trust))
    iam.close()
    return str(role["Role"]["Arn"])


def run_job(
    endpoint: S3Endpoint, role_arn: str, tmp_path: Path, *, redact: bool
) -> tuple[str, str, dict[str, str]]:
    faults = endpoint.server.faults
    faults.clear()
    faults.add(SLOW_DOWN, method="PUT", nth=2)
    faults.add(DROP, method="PUT", after=True, nth=5)
    faults.add(ACCESS_DENIED, key=r"denied", times=None)
    creds_path = tmp_path / f"creds-{redact}.json"
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env.update(
        AWS_ACCESS_KEY_ID=ACCESS_KEY,
        AWS_SECRET_ACCESS_KEY=SECRET_KEY,
        AWS_SESSION_TOKEN=SESSION_TOKEN,
        AWS_DEFAULT_REGION=TEST_REGION,
        AWS_CONFIG_FILE=os.devnull,
        AWS_SHARED_CREDENTIALS_FILE=os.devnull,
        AWS_EC2_METADATA_DISABLED="true",
        AWS_ENDPOINT_URL_STS=endpoint.endpoint_url,
    )
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "tests.faults._secret_job",
            endpoint.endpoint_url,
            role_arn,
            str(creds_path),
            *([] if redact else ["--no-redaction"]),
        ],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "JOB-DONE" in result.stdout
    assert faults.faults["SlowDown"] == 1
    assert faults.faults["drop"] == 1
    return result.stdout, result.stderr, json.loads(creds_path.read_text())


def secrets_of(role: dict[str, str]) -> dict[str, str]:
    return {
        "access key id": ACCESS_KEY,
        "secret access key": SECRET_KEY,
        "session token": SESSION_TOKEN,
        "role access key id": role["access_key"],
        "role secret access key": role["secret_key"],
        "role session token": role["token"],
        "external id": EXTERNAL_ID,
        "password in a URL": PASSWORD,
        "object body marker": MARKER,
    }


def test_a_full_debug_run_leaks_no_secret_and_no_body(
    s3_endpoint: S3Endpoint, role_arn: str, tmp_path: Path, fault_ledger: FaultLedger
) -> None:
    stdout, stderr, role = run_job(s3_endpoint, role_arn, tmp_path, redact=True)
    assert role["access_key"].startswith("ASIA")
    lines = stderr.count("\n")
    assert lines > 500  # botocore really logged at DEBUG ...
    assert "x-amz-security-token:***" in stderr  # ... and its headers were scrubbed
    assert "PermissionDeniedError" in stdout  # the refusals were met and printed
    assert "CorruptObjectError" in stdout
    leaks = {
        name: [
            where for where, text in (("logs", stderr), ("errors/reprs", stdout)) if value in text
        ]
        for name, value in secrets_of(role).items()
    }
    fault_ledger.figure("secrets: DEBUG log lines grepped", lines)
    assert {name: where for name, where in leaks.items() if where} == {}


def test_without_redaction_the_grep_does_catch_botocores_leaks(
    s3_endpoint: S3Endpoint, role_arn: str, tmp_path: Path
) -> None:
    stdout, stderr, role = run_job(s3_endpoint, role_arn, tmp_path, redact=False)
    assert SESSION_TOKEN in stderr  # botocore prints X-Amz-Security-Token
    assert role["token"] in stderr
    # The library's own errors and reprs are clean even without the filter.
    assert not [n for n, v in secrets_of(role).items() if v in stdout]


# -- the library's own texts ----------------------------------------------------------------------


def test_a_corrupt_lease_error_does_not_quote_the_body() -> None:
    pm = PersistenceManager(MemoryStore())
    body = {
        "owner": "o",
        "token": MARKER,
        "ttl": 1,
        "acquired_at": "",
        "expires_at": "x",
        "released": False,
    }
    pm.store.put("cb/_lease.json", json.dumps(body).encode())
    with pytest.raises(CorruptObjectError) as info:
        pm.lease("cb", ttl=5).acquire()
    assert MARKER not in str(info.value)


def test_a_transaction_repr_does_not_print_the_analysis() -> None:
    pm = PersistenceManager(MemoryStore())
    with pm.transaction("cb") as txn:
        txn.put_file(versioned("/a.py", 1, marker=MARKER))
        text = repr(txn)
    assert MARKER not in text
