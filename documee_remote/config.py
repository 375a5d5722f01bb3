"""Typed configuration: the S3 options both S3 backends share, and the environment.

:class:`S3Options` is the one model of the S3 options; ``S3Store`` (boto3) and
``FsspecStore`` (s3fs) both take its fields as keyword arguments. The helpers
at the bottom turn it into a boto3 session and client:
:func:`build_session`, :func:`build_client_config`, :func:`build_s3_client`
and :func:`assume_role_credentials`.

:class:`Settings` reads the same options, plus the store URL and the common
store options, from ``DOCUMEE_*`` environment variables. Standard AWS variables
(``AWS_PROFILE``, ``AWS_REGION``, ``AWS_ACCESS_KEY_ID``, ``AWS_MAX_ATTEMPTS``,
``AWS_ENDPOINT_URL_S3``, ...) are left to boto3, which reads them itself; a
``DOCUMEE_S3_*`` variable that is set wins over its AWS counterpart.

This module imports neither boto3 nor botocore at import time, so the fsspec
backend and ``import documee_remote`` do not pay for them.
"""

from __future__ import annotations

import threading
from datetime import datetime
from typing import TYPE_CHECKING, Any, Literal, TypedDict
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from .errors import ConfigurationError, MissingDependencyError

if TYPE_CHECKING:
    import boto3
    from botocore.config import Config
    from botocore.credentials import DeferredRefreshableCredentials
    from mypy_boto3_s3 import S3Client

    from ._settings import Settings

__all__ = [
    "S3_INSTALL_HINT",
    "S3Options",
    "S3OptionsDict",
    "Settings",
    "assume_role_credentials",
    "build_client_config",
    "build_s3_client",
    "build_session",
    "describe_validation_error",
]

#: What to run when boto3 is missing.
S3_INSTALL_HINT = "pip install 'documee-remote[s3]'"

_USER_AGENT = "documee-remote"


class S3Options(BaseModel):
    """The options of an S3 connection, shared by the boto3 and fsspec backends.

    Every field is optional; unset fields fall back to boto3's own resolution
    (environment variables, ``~/.aws/config``, instance roles).

    Attributes
    ----------
    endpoint_url:
        An S3-compatible endpoint (MinIO, Cloudflare R2, LocalStack, a moto
        server), e.g. ``http://127.0.0.1:9000``. Default: AWS, or boto3's
        ``AWS_ENDPOINT_URL_S3`` / ``AWS_ENDPOINT_URL``.
    region:
        The bucket's region. Default: boto3's resolution (``AWS_REGION``,
        ``AWS_DEFAULT_REGION``, the profile's ``region``).
    profile:
        A profile of ``~/.aws/config`` (boto3's ``profile_name``).
    role_arn:
        Assume this IAM role. Its temporary credentials are refreshed
        automatically before they expire, so long batch jobs keep working.
    external_id:
        The ``ExternalId`` the role's trust policy asks for. Treated as a
        secret: never shown in reprs, logs or errors.
    role_session_name:
        The session name of the assumed role (appears in CloudTrail).
    sse:
        Server-side encryption for every write: ``"AES256"`` (SSE-S3) or
        ``"aws:kms"`` (SSE-KMS).
    sse_kms_key_id:
        The KMS key for ``sse="aws:kms"``; the bucket's default key when unset.
    expected_bucket_owner:
        The 12-digit account id that must own the bucket; sent as
        ``ExpectedBucketOwner`` on every request, so a bucket name taken over
        by another account is refused with 403 instead of read or written.
    max_pool_connections:
        Size of the client's connection pool. Default: the store's
        ``concurrency``, so bulk operations never wait for a connection.
    connect_timeout:
        Seconds to wait for a TCP/TLS connection.
    read_timeout:
        Seconds to wait for a response or the next chunk of a body.
    retry_mode:
        botocore's retry mode: ``"standard"`` (exponential backoff with
        jitter and a retry quota), ``"adaptive"`` (also rate-limits the client
        on throttling) or ``"legacy"``.
    max_attempts:
        Attempts per request *including the first one* (the meaning of
        ``AWS_MAX_ATTEMPTS``); 1 disables retries.
    addressing_style:
        ``"path"`` (``endpoint/bucket/key``, what most S3-compatible services
        want), ``"virtual"`` (``bucket.endpoint/key``) or ``"auto"``.
    """

    # Descriptions are given to Field, not as attribute docstrings: pydantic reads
    # those from the source with inspect and ast, which costs a cold start ~10 ms.
    model_config = ConfigDict(frozen=True, extra="forbid")

    endpoint_url: str | None = Field(
        default=None,
        description="An S3-compatible endpoint URL (MinIO, R2, LocalStack, moto server).",
    )
    region: str | None = Field(
        default=None, description="The bucket's region; boto3's resolution when unset."
    )
    profile: str | None = Field(default=None, description="A profile of the AWS config files.")
    role_arn: str | None = Field(
        default=None, description="An IAM role to assume, with automatically refreshed credentials."
    )
    external_id: str | None = Field(
        default=None,
        repr=False,
        description="The ExternalId of the role's trust policy (secret: never shown).",
    )
    role_session_name: str = Field(
        default="documee-remote", description="The session name of the assumed role."
    )
    sse: Literal["AES256", "aws:kms"] | None = Field(
        default=None, description="Server-side encryption for writes: AES256 or aws:kms."
    )
    sse_kms_key_id: str | None = Field(
        default=None, description="The KMS key id or ARN for sse=aws:kms."
    )
    expected_bucket_owner: str | None = Field(
        default=None, description="The account id that must own the bucket (ExpectedBucketOwner)."
    )
    max_pool_connections: int | None = Field(
        default=None, ge=1, description="Connection pool size; the store's concurrency when unset."
    )
    connect_timeout: float = Field(
        default=5.0, gt=0, description="Seconds to wait for a connection."
    )
    read_timeout: float = Field(default=60.0, gt=0, description="Seconds to wait for a response.")
    retry_mode: Literal["standard", "adaptive", "legacy"] = Field(
        default="standard", description="botocore's retry mode."
    )
    max_attempts: int = Field(
        default=5, ge=1, description="Attempts per request, including the first."
    )
    addressing_style: Literal["auto", "path", "virtual"] | None = Field(
        default=None, description="S3 addressing style: path, virtual or auto."
    )

    @field_validator("endpoint_url")
    @classmethod
    def _check_endpoint_url(cls, value: str | None) -> str | None:
        if value is None:
            return None
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError("endpoint_url must be an http:// or https:// URL with a host")
        if parts.username is not None or parts.password is not None:
            # Userinfo would be a credential in every repr and error message; boto3
            # ignores it anyway. Keep the value itself out of the message.
            raise ValueError("endpoint_url must not contain a user name or password")
        if parts.query or parts.fragment:
            raise ValueError("endpoint_url must not have a query or fragment")
        return value

    @field_validator("role_session_name")
    @classmethod
    def _check_session_name(cls, value: str) -> str:
        # STS's own rule; checked here so a typo fails at startup, not at the first refresh.
        if not 2 <= len(value) <= 64 or not all(c.isalnum() or c in "+=,.@-_" for c in value):
            raise ValueError("role_session_name must be 2 to 64 letters, digits or any of +=,.@-_")
        return value

    @model_validator(mode="after")
    def _check_combinations(self) -> S3Options:
        if self.sse_kms_key_id is not None and self.sse != "aws:kms":
            raise ValueError('sse_kms_key_id needs sse="aws:kms"')
        if self.external_id is not None and self.role_arn is None:
            raise ValueError("external_id needs role_arn")
        return self

    @classmethod
    def from_options(cls, options: dict[str, Any]) -> S3Options:
        """Validate a dict of options, raising ConfigurationError (never echoing values)."""
        try:
            return cls.model_validate(options)
        except ValidationError as exc:
            raise ConfigurationError(
                "invalid S3 options: " + describe_validation_error(exc)
            ) from None


class S3OptionsDict(TypedDict, total=False):
    """:class:`S3Options` as keyword arguments (``S3Store(..., **options)`` is type-checked)."""

    endpoint_url: str | None
    region: str | None
    profile: str | None
    role_arn: str | None
    external_id: str | None
    role_session_name: str
    sse: Literal["AES256", "aws:kms"] | None
    sse_kms_key_id: str | None
    expected_bucket_owner: str | None
    max_pool_connections: int | None
    connect_timeout: float
    read_timeout: float
    retry_mode: Literal["standard", "adaptive", "legacy"]
    max_attempts: int
    addressing_style: Literal["auto", "path", "virtual"] | None


def describe_validation_error(exc: ValidationError, *, env_prefix: str = "") -> str:
    """Summarise a pydantic error without the offending input values.

    Pydantic's own message repeats the input, which may be a secret
    (``external_id``) or a URL with credentials; this names fields only.
    """
    parts = []
    for error in exc.errors(include_url=False, include_input=False, include_context=False):
        field = ".".join(str(p) for p in error["loc"]) or "options"
        if env_prefix and error["loc"]:
            field = env_prefix + field.upper()
        parts.append(f"{field}: {error['msg']}")
    return "; ".join(parts)


def __getattr__(name: str) -> Any:
    # Settings needs pydantic_settings (~30 ms), which opening a store does not: it
    # lives in ._settings and is imported on first use (PEP 562).
    if name == "Settings":
        from ._settings import Settings

        return Settings
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


# -- boto3 --------------------------------------------------------------------------------


def _require_boto3() -> None:
    try:
        import boto3  # noqa: F401
    except ImportError as exc:
        raise MissingDependencyError(f"the S3 backend needs boto3: {S3_INSTALL_HINT}") from exc


def build_client_config(options: S3Options, *, max_pool_connections: int) -> Config:
    """botocore's ``Config`` for ``options``.

    ``max_pool_connections`` is used unless ``options.max_pool_connections``
    is set; stores pass their ``concurrency``.
    """
    _require_boto3()
    from botocore.config import Config

    s3: Any = {"addressing_style": options.addressing_style} if options.addressing_style else None
    return Config(
        max_pool_connections=options.max_pool_connections or max_pool_connections,
        connect_timeout=options.connect_timeout,
        read_timeout=options.read_timeout,
        # total_max_attempts counts the first attempt, like AWS_MAX_ATTEMPTS; botocore's
        # "max_attempts" key would count retries only.
        retries={"mode": options.retry_mode, "total_max_attempts": options.max_attempts},
        s3=s3,
        user_agent_extra=_USER_AGENT,
    )


def assume_role_credentials(
    source: boto3.Session,
    role_arn: str,
    *,
    role_session_name: str = "documee-remote",
    external_id: str | None = None,
    region: str | None = None,
    sts_endpoint_url: str | None = None,
    duration_seconds: int | None = None,
) -> DeferredRefreshableCredentials:
    """Credentials of ``role_arn`` that refresh themselves before they expire.

    Nothing is requested until the first use. botocore then calls
    ``sts:AssumeRole`` with ``source``'s credentials, and again whenever the
    credentials come within 15 minutes of expiring (10 minutes: mandatory),
    from whichever thread notices first, under botocore's lock.

    Parameters
    ----------
    source:
        The session whose credentials assume the role.
    sts_endpoint_url:
        STS endpoint; by default boto3's resolution (``AWS_ENDPOINT_URL_STS``,
        regional endpoints), never the S3 ``endpoint_url``.
    duration_seconds:
        Lifetime of each set of credentials; STS's default (1 hour) when None.
    """
    _require_boto3()
    from botocore.credentials import DeferredRefreshableCredentials

    params: dict[str, Any] = {"RoleArn": role_arn, "RoleSessionName": role_session_name}
    if external_id is not None:
        params["ExternalId"] = external_id
    if duration_seconds is not None:
        params["DurationSeconds"] = duration_seconds
    lock = threading.Lock()
    sts_client: list[Any] = []  # created on first refresh, once

    def refresh() -> dict[str, str]:
        # botocore calls this under its own refresh lock; ours covers the one-time
        # client creation, because boto3 sessions are not thread-safe.
        with lock:
            if not sts_client:
                sts_client.append(
                    source.client(
                        "sts",
                        region_name=region or source.region_name,
                        endpoint_url=sts_endpoint_url,
                    )
                )
            client = sts_client[0]
        response = client.assume_role(**params)
        creds = response["Credentials"]
        expiration: datetime = creds["Expiration"]
        return {
            "access_key": creds["AccessKeyId"],
            "secret_key": creds["SecretAccessKey"],
            "token": creds["SessionToken"],
            "expiry_time": expiration.isoformat(),
        }

    return DeferredRefreshableCredentials(refresh_using=refresh, method="assume-role")


# One botocore data loader for every session this module creates. A new session
# otherwise re-reads and re-parses S3's 2 MB service model (~150 ms per store); the
# loader only caches those read-only models, so sharing it leaks nothing between
# stores. boto3.Session appends its own data directory to the loader's search path
# on every construction, hence the de-duplication under the lock.
_LOADER_LOCK = threading.Lock()
_shared_loader: Any = None


def _new_session(profile: str | None, region: str | None) -> boto3.Session:
    import boto3
    import botocore.session

    global _shared_loader  # noqa: PLW0603 - the cache described above
    with _LOADER_LOCK:
        core = botocore.session.Session(profile=profile)
        if _shared_loader is None:
            _shared_loader = core.get_component("data_loader")
        else:
            core.register_component("data_loader", _shared_loader)
        session = boto3.Session(botocore_session=core, region_name=region)
        paths = _shared_loader.search_paths
        paths[:] = list(dict.fromkeys(paths))
    return session


def _config_error(what: str, exc: Exception) -> ConfigurationError:
    from botocore.exceptions import ConfigNotFound, ConfigParseError, ProfileNotFound

    # These name a profile or a file, never a secret; other messages are left out.
    safe = isinstance(exc, ProfileNotFound | ConfigNotFound | ConfigParseError)
    return ConfigurationError(f"{what}: {exc if safe else type(exc).__name__}")


def build_session(
    options: S3Options,
    *,
    session: boto3.Session | None = None,
    sts_endpoint_url: str | None = None,
) -> boto3.Session:
    """A boto3 session for ``options``: the given one, or a new one for ``profile``/``region``.

    With ``role_arn``, the result is a new session whose credentials are
    :func:`assume_role_credentials` of the base session's (``session``, or
    the profile's, or boto3's default chain).
    """
    _require_boto3()
    from botocore.exceptions import BotoCoreError

    if session is not None and options.profile is not None:
        raise ConfigurationError("give either session or profile, not both")
    try:
        base = session or _new_session(options.profile, options.region)
    except BotoCoreError as exc:
        raise _config_error("cannot create an AWS session", exc) from exc
    if options.role_arn is None:
        return base

    from botocore.credentials import CredentialProvider, CredentialResolver

    credentials = assume_role_credentials(
        base,
        options.role_arn,
        role_session_name=options.role_session_name,
        external_id=options.external_id,
        region=options.region,
        sts_endpoint_url=sts_endpoint_url,
    )

    class _AssumedRole(CredentialProvider):
        METHOD = "assume-role"

        def load(self) -> DeferredRefreshableCredentials:
            return credentials

    assumed = _new_session(options.profile if session is None else None, options.region)
    # The resolver is the public way to replace where a session gets credentials.
    assumed._session.register_component("credential_provider", CredentialResolver([_AssumedRole()]))
    if options.region is None and base.region_name is not None:
        assumed._session.set_config_variable("region", base.region_name)
    return assumed


def build_s3_client(
    options: S3Options,
    *,
    session: boto3.Session | None = None,
    max_pool_connections: int = 16,
) -> S3Client:
    """An S3 client for ``options``; thread-safe, unlike the session it comes from.

    ``max_pool_connections`` applies unless ``options.max_pool_connections``
    is set (stores pass their ``concurrency``).

    Raises
    ------
    ConfigurationError
        The profile does not exist, or the client cannot be configured.
    """
    # botocore logs request headers (session tokens, credential scopes) at DEBUG:
    # scrub them before any handler sees them. Idempotent and free unless DEBUG is on.
    from .redact import install_redaction

    install_redaction(secrets=[options.external_id] if options.external_id else ())
    built = build_session(options, session=session)
    from botocore.exceptions import BotoCoreError

    try:
        return built.client(
            "s3",
            region_name=options.region,
            endpoint_url=options.endpoint_url,
            config=build_client_config(options, max_pool_connections=max_pool_connections),
        )
    except BotoCoreError as exc:
        raise _config_error("cannot create an S3 client", exc) from exc
