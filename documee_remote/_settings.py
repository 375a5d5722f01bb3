"""The :class:`~documee_remote.config.Settings` class, kept apart from :mod:`.config`.

Settings needs pydantic_settings, which opening a store does not; :mod:`.config`
re-exports it lazily, so ``from documee_remote.config import Settings`` works
and ``open_store("s3://...")`` does not pay for the import.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal
from urllib.parse import urlsplit

from pydantic import Field, ValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict

from .config import S3Options, describe_validation_error
from .errors import ConfigurationError

if TYPE_CHECKING:
    from .stores.base import Store

__all__ = ["Settings"]


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
    backend: Literal["s3", "fsspec", "obstore", "local", "memory"] | None = None
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
