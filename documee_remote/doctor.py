"""The checks behind ``documee-remote doctor``.

:func:`run_checks` opens the store and returns one :class:`CheckResult` per
check, each passed (``ok=True``), failed (``ok=False``) or skipped
(``ok=None``, with the reason in ``detail``):

==========================  ===========================================================
check                       what it looks at
==========================  ===========================================================
configuration               the store URL and ``DOCUMEE_*`` environment parse
store opens                 the backend is installed and accepts the options
credentials (S3)            credentials resolve (their source, never their value) and,
                            where STS answers, whose they are (``GetCallerIdentity``)
bucket reachable (S3)       ``HeadBucket``
versioning (S3)             ``GetBucketVersioning`` says ``Enabled``
default encryption (S3)     ``GetBucketEncryption`` has a rule (or every write asks for
                            SSE through ``DOCUMEE_S3_SSE``)
public access block (S3)    ``GetPublicAccessBlock``: all four settings true
directory (local)           the root exists, or can be created; it is writable
locking (local)             ``fcntl.flock`` is available (cross-process compare-and-swap)
listing                     the store can be listed (read permission)
conditional writes          :meth:`Store.probe`: ``If-None-Match``, ``If-Match`` and
                            conditional deletes are honoured, not silently ignored;
                            writes and deletes one scratch object under ``_probe/``;
                            skipped on read-only stores
==========================  ===========================================================

A bucket setting the caller may not read (AccessDenied on ``GetBucket*``) is
reported as skipped, not failed: least-privilege roles often cannot. So is a
setting the server does not implement (``NotImplemented``/501: SeaweedFS has no
public access block), as "not supported by this server", which is no failure
of the bucket's configuration. Nothing printed contains a secret: credentials
are described by where they came from.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from .errors import DocumeeRemoteError, PermissionDeniedError, ReadOnlyError
from .stores import LocalStore, Store

__all__ = ["CheckResult", "all_passed", "check_store", "run_checks"]


@dataclass(frozen=True, slots=True)
class CheckResult:
    """One check: ``ok`` is True (pass), False (fail) or None (skipped)."""

    name: str
    ok: bool | None
    detail: str = ""

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form; ``status`` is ``"pass"``, ``"fail"`` or ``"skip"``."""
        status = {True: "pass", False: "fail", None: "skip"}[self.ok]
        return {"name": self.name, "ok": self.ok, "status": status, "detail": self.detail}


def all_passed(results: Sequence[CheckResult]) -> bool:
    """True when no check failed (skipped ones do not count)."""
    return not any(r.ok is False for r in results)


def run_checks(
    url: str | None,
    options: Mapping[str, Any] | None = None,
    *,
    probe: bool = True,
    config_error: str | None = None,
) -> list[CheckResult]:
    """Open the store at ``url`` with ``options`` and run every check that applies.

    ``config_error`` is a configuration problem found before (the URL or
    environment did not parse); it is reported as the failing first check.
    """
    if config_error is not None or not url:
        detail = config_error or "no store URL: pass --store or set DOCUMEE_STORE_URL"
        return [CheckResult("configuration", False, detail)]
    results = [CheckResult("configuration", True, "store URL and environment parse")]
    from .stores import open_store

    try:
        store = open_store(url, **dict(options or {}))
    except (DocumeeRemoteError, ImportError, ValueError, TypeError) as exc:
        results.append(CheckResult("store opens", False, _message(exc)))
        return results
    with store:
        results.append(CheckResult("store opens", True, f"{type(store).__name__} on {store.url}"))
        results.extend(check_store(store, probe=probe))
    return results


def check_store(store: Store, *, probe: bool = True) -> list[CheckResult]:
    """The checks of an open store (see the module docstring)."""
    results: list[CheckResult] = []
    if type(store).__name__ == "S3Store":
        results.extend(_s3_checks(store))
        if any(r.name == "bucket reachable" and r.ok is False for r in results):
            return results
    elif isinstance(store, LocalStore):
        results.extend(_local_checks(store))
    results.append(_listing_check(store))
    results.append(_probe_check(store, enabled=probe))
    return results


def _message(exc: BaseException) -> str:
    return str(exc) or type(exc).__name__


# -- every store ----------------------------------------------------------------------------------


def _listing_check(store: Store) -> CheckResult:
    try:
        count = 0
        for _ in store.list():
            count += 1
            if count >= 1000:
                break
    except DocumeeRemoteError as exc:
        return CheckResult("listing", False, _message(exc))
    shown = "1000+" if count >= 1000 else str(count)
    return CheckResult("listing", True, f"{shown} object(s)")


def _probe_check(store: Store, *, enabled: bool) -> CheckResult:
    name = "conditional writes"
    if not enabled:
        return CheckResult(name, None, "skipped (--no-probe)")
    if store.read_only:
        return CheckResult(name, None, "skipped: the store is open read-only")
    if not store.capabilities.atomic_conditional_writes:
        return CheckResult(
            name,
            False,
            f"{type(store).__name__} cannot write conditionally here: concurrent merges "
            "would be refused",
        )
    try:
        result = store.probe()
    except (PermissionDeniedError, ReadOnlyError) as exc:
        return CheckResult(name, False, f"no write permission for the probe: {_message(exc)}")
    except DocumeeRemoteError as exc:
        return CheckResult(name, False, _message(exc))
    if result.ok:
        return CheckResult(
            name, True, "If-None-Match, If-Match and conditional DELETE are honoured"
        )
    if not (result.if_none_match and result.if_match):
        consequence = "concurrent merges would lose updates on this endpoint"
    elif not result.if_match_current:
        consequence = "merges would fail on this endpoint (every compare-and-swap refused)"
    else:
        consequence = (
            "deletes that must not remove another writer's new objects (save's cleanup, "
            "deleting a codebase) are not safe on this endpoint"
        )
    detail = result.detail or "a conditional operation was not honoured"
    return CheckResult(name, False, f"{detail}: {consequence}")


# -- local disk -----------------------------------------------------------------------------------


def _local_checks(store: LocalStore) -> list[CheckResult]:
    root = store.root
    results: list[CheckResult] = []
    if root.is_dir():
        writable = os.access(root, os.W_OK | os.X_OK)
        if store.read_only:
            results.append(CheckResult("directory", True, f"{root} exists (read-only mode)"))
        elif writable:
            results.append(CheckResult("directory", True, f"{root} exists and is writable"))
        else:
            results.append(CheckResult("directory", False, f"{root} is not writable"))
    elif root.exists():
        results.append(CheckResult("directory", False, f"{root} is not a directory"))
    else:
        parent = root.parent
        while not parent.exists() and parent != parent.parent:
            parent = parent.parent
        if os.access(parent, os.W_OK | os.X_OK):
            results.append(
                CheckResult("directory", True, f"{root} will be created on the first write")
            )
        else:
            results.append(
                CheckResult("directory", False, f"{root} does not exist and {parent} is read-only")
            )
    if store.capabilities.atomic_conditional_writes:
        results.append(CheckResult("locking", True, "fcntl.flock available"))
    else:  # pragma: no cover - Windows
        results.append(
            CheckResult("locking", False, "no fcntl: concurrent merges cannot be made safe")
        )
    return results


# -- S3 ------------------------------------------------------------------------------------------


def _s3_checks(store: Any) -> list[CheckResult]:
    from botocore.exceptions import BotoCoreError, ClientError

    client = store.client
    bucket: str = store.bucket
    owner: dict[str, Any] = (
        {"ExpectedBucketOwner": store.options.expected_bucket_owner}
        if store.options.expected_bucket_owner
        else {}
    )
    results = [_credentials_check(store)]

    def call(fn: Callable[..., Any]) -> tuple[Any, str | None, str | None]:
        """(response, error code, message)."""
        try:
            return fn(Bucket=bucket, **owner), None, None
        except ClientError as exc:
            error = exc.response.get("Error", {})
            code = str(error.get("Code") or "")
            status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
            return None, code or str(status), str(error.get("Message") or code)
        except BotoCoreError as exc:
            return None, "connection", _message(exc)

    _, code, message = call(client.head_bucket)
    if code is not None:
        if code in ("404", "NoSuchBucket", "NotFound"):
            detail = f"bucket {bucket!r} does not exist"
        elif code in ("403", "AccessDenied", "Forbidden"):
            detail = f"access denied to bucket {bucket!r} (or it belongs to another account)"
        else:
            detail = f"{code}: {message}"
        results.append(CheckResult("bucket reachable", False, detail))
        return results
    results.append(CheckResult("bucket reachable", True, f"s3://{bucket} (HeadBucket)"))

    denied = ("AccessDenied", "403", "Forbidden")
    # A server without the API at all (S3-compatible servers implement subsets of S3).
    unsupported = ("NotImplemented", "501")

    def not_supported(name: str, code: str) -> CheckResult:
        return CheckResult(name, None, f"not supported by this server ({code})")

    response, code, message = call(client.get_bucket_versioning)
    if code is None:
        status = response.get("Status")
        if status == "Enabled":
            results.append(CheckResult("versioning", True, "enabled"))
        else:
            results.append(
                CheckResult(
                    "versioning",
                    False,
                    f"{(status or 'never enabled').lower()}: overwritten analyses cannot "
                    "be recovered",
                )
            )
    elif code in denied:
        results.append(CheckResult("versioning", None, "no permission (s3:GetBucketVersioning)"))
    elif code in unsupported:
        results.append(not_supported("versioning", code))
    else:
        results.append(CheckResult("versioning", False, f"{code}: {message}"))

    response, code, message = call(client.get_bucket_encryption)
    sse = store.options.sse
    if code is None:
        rules = response.get("ServerSideEncryptionConfiguration", {}).get("Rules", [])
        algorithms = sorted(
            {
                r.get("ApplyServerSideEncryptionByDefault", {}).get("SSEAlgorithm", "?")
                for r in rules
            }
        )
        if rules:
            results.append(CheckResult("default encryption", True, ", ".join(algorithms)))
        else:
            results.append(CheckResult("default encryption", False, "no rule configured"))
    elif code == "ServerSideEncryptionConfigurationNotFoundError":
        if sse:
            results.append(
                CheckResult(
                    "default encryption",
                    True,
                    f"no bucket default, but every write asks for {sse} (DOCUMEE_S3_SSE)",
                )
            )
        else:
            results.append(
                CheckResult("default encryption", False, "no default encryption configured")
            )
    elif code in denied:
        results.append(
            CheckResult("default encryption", None, "no permission (s3:GetEncryptionConfiguration)")
        )
    elif code in unsupported:
        results.append(not_supported("default encryption", code))
    else:
        results.append(CheckResult("default encryption", False, f"{code}: {message}"))

    response, code, message = call(client.get_public_access_block)
    names = ("BlockPublicAcls", "IgnorePublicAcls", "BlockPublicPolicy", "RestrictPublicBuckets")
    if code is None:
        config = response.get("PublicAccessBlockConfiguration", {})
        off = [n for n in names if not config.get(n)]
        if off:
            results.append(CheckResult("public access block", False, "not set: " + ", ".join(off)))
        else:
            results.append(CheckResult("public access block", True, "all four settings on"))
    elif code == "NoSuchPublicAccessBlockConfiguration":
        results.append(
            CheckResult(
                "public access block",
                False,
                "none on the bucket (an account-wide block may still apply)",
            )
        )
    elif code in denied:
        results.append(
            CheckResult(
                "public access block", None, "no permission (s3:GetBucketPublicAccessBlock)"
            )
        )
    elif code in unsupported:
        results.append(not_supported("public access block", code))
    else:
        results.append(CheckResult("public access block", False, f"{code}: {message}"))
    return results


def _credentials_check(store: Any) -> CheckResult:
    """Credentials resolve; describe their source and, where STS answers, the caller."""
    from botocore.config import Config
    from botocore.exceptions import BotoCoreError, ClientError

    from .config import build_session

    name = "credentials"
    try:
        session = build_session(store.options)
        credentials = session.get_credentials()
    except (DocumeeRemoteError, BotoCoreError) as exc:
        return CheckResult(name, False, _message(exc))
    if credentials is None:
        return CheckResult(
            name,
            False,
            "none found: set AWS_PROFILE / DOCUMEE_S3_PROFILE, AWS_ACCESS_KEY_ID, or "
            "DOCUMEE_S3_ROLE_ARN",
        )
    method = getattr(credentials, "method", None) or "unknown source"
    endpoint = os.environ.get("AWS_ENDPOINT_URL_STS") or store.options.endpoint_url
    try:
        sts = session.client(
            "sts",
            region_name=store.options.region or session.region_name or "us-east-1",
            endpoint_url=endpoint,
            config=Config(connect_timeout=3, read_timeout=5, retries={"total_max_attempts": 1}),
        )
        try:
            identity = sts.get_caller_identity()
        finally:
            sts.close()
    except (ClientError, BotoCoreError) as exc:
        if isinstance(exc, ClientError):
            code = str(exc.response.get("Error", {}).get("Code") or "error")
        else:
            code = type(exc).__name__
        if store.options.endpoint_url and not os.environ.get("AWS_ENDPOINT_URL_STS"):
            return CheckResult(
                name, True, f"from {method}; caller identity not available here ({code})"
            )
        return CheckResult(name, False, f"from {method}, but STS refused them ({code})")
    return CheckResult(name, True, f"{identity.get('Arn', '?')} (from {method})")
