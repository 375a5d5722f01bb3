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
from pydantic_settings import BaseSettings, SettingsConfigDict

from .errors import ConfigurationError, MissingDependencyError

if TYPE_CHECKING:
    import boto3
    from botocore.config import Config
    from botocore.credentials import DeferredRefreshableCredentials
    from mypy_boto3_s3 import S3Client

    from .stores.base import Store

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

    model_config = ConfigDict(frozen=True, extra="forbid", use_attribute_docstrings=True)

    endpoint_url: str | None = None
    """An S3-compatible endpoint URL (MinIO, R2, LocalStack, moto server)."""
    region: str | None = None
    """The bucket's region; boto3's resolution when unset."""
    profile: str | None = None
    """A profile of the AWS config files."""
    role_arn: str | None = None
    """An IAM role to assume, with automatically refreshed credentials."""
    external_id: str | None = Field(default=None, repr=False)
    """The ExternalId of the role's trust policy (secret: never shown)."""
    role_session_name: str = "documee-remote"
    """The session name of the assumed role."""
    sse: Literal["AES256", "aws:kms"] | None = None
    """Server-side encryption for writes: AES256 or aws:kms."""
    sse_kms_key_id: str | None = None
    """The KMS key id or ARN for sse=aws:kms."""
    expected_bucket_owner: str | None = None
    """The account id that must own the bucket (ExpectedBucketOwner)."""
    max_pool_connections: int | None = Field(default=None, ge=1)
    """Connection pool size; the store's concurrency when unset."""
    connect_timeout: float = Field(default=5.0, gt=0)
    """Seconds to wait for a connection."""
    read_timeout: float = Field(default=60.0, gt=0)
    """Seconds to wait for a response."""
    retry_mode: Literal["standard", "adaptive", "legacy"] = "standard"
    """botocore's retry mode."""
    max_attempts: int = Field(default=5, ge=1)
    """Attempts per request, including the first."""
    addressing_style: Literal["auto", "path", "virtual"] | None = None
    """S3 addressing style: path, virtual or auto."""

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


class Settings(BaseSettings):
    """documee-remote's configuration from the environment.

    Every field is read from ``DOCUMEE_<FIELD NAME IN UPPER CASE>``; unset
    variables leave the option to the backend's default (and, for the S3
    options, to boto3's own resolution of the ``AWS_*`` variables).

    ==============================  ============================================
    variable                        meaning
    ==============================  ============================================
    ``DOCUMEE_STORE_URL``           where analyses live (``s3://bucket/prefix``,
                                    ``file:///path``, ``memory://``)
    ``DOCUMEE_BACKEND``             ``s3`` (boto3), ``fsspec``, ``local``, ``memory``
    ``DOCUMEE_CONCURRENCY``         parallel requests of bulk operations
    ``DOCUMEE_READ_ONLY``           ``true`` to refuse every write
    ``DOCUMEE_MAX_OBJECT_SIZE``     refuse to read objects larger than this (bytes)
    ``DOCUMEE_S3_<OPTION>``         each field of :class:`S3Options`, e.g.
                                    ``DOCUMEE_S3_ENDPOINT_URL``, ``DOCUMEE_S3_REGION``,
                                    ``DOCUMEE_S3_ROLE_ARN``, ``DOCUMEE_S3_SSE``
    ==============================  ============================================

    Use :meth:`load` rather than the constructor to get a
    :class:`~documee_remote.errors.ConfigurationError` (naming the variable,
    never its value) for invalid values, and :meth:`store_options` or
    :meth:`open_store` to use them::

        settings = Settings.load()
        store = open_store(settings.store_url, **settings.store_options())
    """

    model_config = SettingsConfigDict(
        env_prefix="DOCUMEE_",
        extra="ignore",
        frozen=True,
        use_attribute_docstrings=True,
    )

    store_url: str | None = None
    """DOCUMEE_STORE_URL: the store URL (s3://bucket/prefix, file:///path, memory://)."""
    backend: Literal["s3", "fsspec", "local", "memory"] | None = None
    """DOCUMEE_BACKEND: force a backend (s3 = boto3, the default for s3:// URLs; fsspec)."""
    concurrency: int | None = Field(default=None, ge=1)
    """DOCUMEE_CONCURRENCY: requests kept in flight by bulk operations (default 16)."""
    read_only: bool | None = None
    """DOCUMEE_READ_ONLY: true to open the store read-only."""
    max_object_size: int | None = Field(default=None, ge=0)
    """DOCUMEE_MAX_OBJECT_SIZE: refuse to read objects larger than this many bytes."""

    s3_endpoint_url: str | None = None
    """DOCUMEE_S3_ENDPOINT_URL: S3-compatible endpoint (MinIO, R2, LocalStack, moto)."""
    s3_region: str | None = None
    """DOCUMEE_S3_REGION: the bucket's region (default: AWS_REGION / AWS_DEFAULT_REGION)."""
    s3_profile: str | None = None
    """DOCUMEE_S3_PROFILE: AWS config profile (default: AWS_PROFILE)."""
    s3_role_arn: str | None = None
    """DOCUMEE_S3_ROLE_ARN: IAM role to assume, credentials refreshed automatically."""
    s3_external_id: str | None = Field(default=None, repr=False)
    """DOCUMEE_S3_EXTERNAL_ID: ExternalId for the role's trust policy (kept secret)."""
    s3_role_session_name: str | None = None
    """DOCUMEE_S3_ROLE_SESSION_NAME: session name of the assumed role (documee-remote)."""
    s3_sse: Literal["AES256", "aws:kms"] | None = None
    """DOCUMEE_S3_SSE: server-side encryption of writes, AES256 or aws:kms."""
    s3_sse_kms_key_id: str | None = None
    """DOCUMEE_S3_SSE_KMS_KEY_ID: KMS key id or ARN for DOCUMEE_S3_SSE=aws:kms."""
    s3_expected_bucket_owner: str | None = None
    """DOCUMEE_S3_EXPECTED_BUCKET_OWNER: account id that must own the bucket."""
    s3_max_pool_connections: int | None = Field(default=None, ge=1)
    """DOCUMEE_S3_MAX_POOL_CONNECTIONS: HTTP connection pool size (default: concurrency)."""
    s3_connect_timeout: float | None = Field(default=None, gt=0)
    """DOCUMEE_S3_CONNECT_TIMEOUT: seconds to wait for a connection (5)."""
    s3_read_timeout: float | None = Field(default=None, gt=0)
    """DOCUMEE_S3_READ_TIMEOUT: seconds to wait for a response (60)."""
    s3_retry_mode: Literal["standard", "adaptive", "legacy"] | None = None
    """DOCUMEE_S3_RETRY_MODE: botocore retry mode, standard, adaptive or legacy (standard)."""
    s3_max_attempts: int | None = Field(default=None, ge=1)
    """DOCUMEE_S3_MAX_ATTEMPTS: attempts per request including the first (5)."""
    s3_addressing_style: Literal["auto", "path", "virtual"] | None = None
    """DOCUMEE_S3_ADDRESSING_STYLE: path, virtual or auto."""

    @classmethod
    def load(cls, **overrides: Any) -> Settings:
        """Read the environment; invalid values raise ConfigurationError naming the variable."""
        try:
            return cls(**overrides)
        except ValidationError as exc:
            raise ConfigurationError(
                "invalid environment: " + describe_validation_error(exc, env_prefix="DOCUMEE_")
            ) from None

    def s3_options(self) -> dict[str, Any]:
        """The ``DOCUMEE_S3_*`` values that are set, keyed by :class:`S3Options` field."""
        values = {name: getattr(self, "s3_" + name) for name in S3Options.model_fields}
        return {name: value for name, value in values.items() if value is not None}

    def store_options(self) -> dict[str, Any]:
        """Keyword arguments for ``open_store(self.store_url, **options)``.

        Only options that are set are included, so backends keep their
        defaults. The S3 options are included only for ``s3://`` URLs (or when
        no URL is set), so ``DOCUMEE_S3_REGION`` in a shell profile does not
        break a local store.
        """
        options: dict[str, Any] = {}
        if self.backend is not None:
            options["backend"] = self.backend
        for name in ("read_only", "concurrency", "max_object_size"):
            value = getattr(self, name)
            if value is not None:
                options[name] = value
        scheme = urlsplit(self.store_url).scheme.lower() if self.store_url else ""
        if self.store_url is None or scheme in ("s3", "s3a"):
            s3 = self.s3_options()
            if s3:
                # Validate here so a bad combination names the variables, not kwargs.
                try:
                    S3Options.model_validate(s3)
                except ValidationError as exc:
                    raise ConfigurationError(
                        "invalid environment: "
                        + describe_validation_error(exc, env_prefix="DOCUMEE_S3_")
                    ) from None
                options.update(s3)
        return options

    def open_store(self) -> Store:
        """Open the store named by ``DOCUMEE_STORE_URL`` with these options."""
        if not self.store_url:
            raise ConfigurationError("DOCUMEE_STORE_URL is not set")
        from .stores import open_store

        return open_store(self.store_url, **self.store_options())


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
