"""S3Store: Amazon S3 (and S3-compatible services) through boto3.

Every key lives under ``s3://<bucket>/<prefix>``; the prefix is added on the
way in and stripped from listings, so a store on ``s3://b/team-a/`` cannot
name anything under ``team-b/``.

Conditional writes are S3's own (``If-Match`` / ``If-None-Match: *`` on
PutObject, ``If-Match`` on DeleteObject): a real compare-and-swap. Two things
make them safe over a network that loses responses:

* Every conditional PUT carries a random token in its metadata
  (``x-amz-meta-documee-write-token``). When a PUT that botocore retried
  fails with 412 or 409 (or fails with a connection error once retries ran
  out), the store reads the object's metadata back: if the token is ours, an
  earlier attempt of this very call landed and only its response was lost, so
  the write is reported as a success with the stored ETag instead of as a
  lost race.
* botocore's retries (``max_attempts``, ``retry_mode``) cover 5xx, throttling
  and dropped connections; errors are translated only once they ran out.

Every botocore failure goes through :func:`translate_error`, driven by the
tables :data:`ERROR_CODES`, :data:`STATUS_FALLBACK` and
:data:`EXCEPTION_TYPES`.
"""

from __future__ import annotations

import functools
import logging
import threading
import uuid
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, Unpack

from ..config import S3_INSTALL_HINT, S3Options, S3OptionsDict, build_s3_client
from ..errors import (
    AlreadyExistsError,
    ConditionalRequestConflictError,
    ConfigurationError,
    ConflictError,
    DocumeeRemoteError,
    InvalidKeyError,
    MissingDependencyError,
    NotFoundError,
    ObjectTooLargeError,
    PermissionDeniedError,
    PreconditionFailedError,
    ServiceUnavailableError,
    StorageFullError,
    StorageTimeoutError,
    ThrottledError,
    UnsupportedOperationError,
)
from ..layout import LIFECYCLE_TAG_KEY, lifecycle_kind, validate_key
from .base import DEFAULT_CONCURRENCY, Capabilities, ObjectMeta, Store, StoredObject, normalize_etag

try:
    import boto3
    from botocore import exceptions as bce
except ImportError as _exc:  # pragma: no cover - exercised in a subprocess test
    raise MissingDependencyError(f"the S3 backend needs boto3: {S3_INSTALL_HINT}") from _exc

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

__all__ = [
    "ERROR_CODES",
    "EXCEPTION_TYPES",
    "STATUS_FALLBACK",
    "WRITE_TOKEN_METADATA",
    "S3Store",
    "error_class",
    "parse_s3_url",
    "translate_error",
]

logger = logging.getLogger("documee_remote.stores.s3")

#: Metadata key (``x-amz-meta-<this>``) carrying a conditional write's token.
WRITE_TOKEN_METADATA = "documee-write-token"  # noqa: S105 - a metadata name, not a secret

#: DeleteObjects takes at most this many keys.
_DELETE_BATCH = 1000

# Creating a client from a session the caller handed us: boto3 sessions are not
# thread-safe, and a caller may open several stores from one session at once.
_CLIENT_LOCK = threading.Lock()

# -- error translation: the one place ------------------------------------------------------

#: S3 error codes (``Error.Code``; for HEAD, which has no body, the status as text).
ERROR_CODES: Mapping[str, type[DocumeeRemoteError]] = {
    # missing
    "NoSuchKey": NotFoundError,
    "NotFound": NotFoundError,
    "404": NotFoundError,
    # conditional writes; AlreadyExistsError when the write was create-only
    "PreconditionFailed": PreconditionFailedError,
    "412": PreconditionFailedError,
    "ConditionalRequestConflict": ConditionalRequestConflictError,
    "OperationAborted": ConditionalRequestConflictError,
    # refused
    "AccessDenied": PermissionDeniedError,
    "403": PermissionDeniedError,
    "Forbidden": PermissionDeniedError,
    "AllAccessDisabled": PermissionDeniedError,
    "AccountProblem": PermissionDeniedError,
    "InvalidAccessKeyId": PermissionDeniedError,
    "SignatureDoesNotMatch": PermissionDeniedError,
    "ExpiredToken": PermissionDeniedError,
    "InvalidToken": PermissionDeniedError,
    "TokenRefreshRequired": PermissionDeniedError,
    "InvalidObjectState": PermissionDeniedError,
    "RequestTimeTooSkewed": PermissionDeniedError,
    # slow down
    "SlowDown": ThrottledError,
    "Throttling": ThrottledError,
    "ThrottlingException": ThrottledError,
    "RequestLimitExceeded": ThrottledError,
    "RequestThrottled": ThrottledError,
    "TooManyRequests": ThrottledError,
    "TooManyRequestsException": ThrottledError,
    "BandwidthLimitExceeded": ThrottledError,
    "429": ThrottledError,
    # failed
    "InternalError": ServiceUnavailableError,
    "ServiceUnavailable": ServiceUnavailableError,
    "500": ServiceUnavailableError,
    "502": ServiceUnavailableError,
    "503": ServiceUnavailableError,
    "504": ServiceUnavailableError,
    "RequestTimeout": StorageTimeoutError,
    "RequestTimeoutException": StorageTimeoutError,
    # limits
    "EntityTooLarge": ObjectTooLargeError,
    "QuotaExceeded": StorageFullError,
    "XMinioStorageFull": StorageFullError,
    # the service cannot do it (S3-compatible services without conditional writes)
    "NotImplemented": UnsupportedOperationError,
    "501": UnsupportedOperationError,
    # wrong bucket, region, encryption key or option
    "NoSuchBucket": ConfigurationError,
    "InvalidBucketName": ConfigurationError,
    "PermanentRedirect": ConfigurationError,
    "301": ConfigurationError,
    "AuthorizationHeaderMalformed": ConfigurationError,
    "IllegalLocationConstraintException": ConfigurationError,
    "InvalidArgument": ConfigurationError,
    "KMS.NotFoundException": ConfigurationError,
    "KMS.DisabledException": ConfigurationError,
}

#: By HTTP status, for codes the table does not know.
STATUS_FALLBACK: Mapping[int, type[DocumeeRemoteError]] = {
    301: ConfigurationError,
    307: ConfigurationError,
    400: DocumeeRemoteError,
    403: PermissionDeniedError,
    404: NotFoundError,
    408: StorageTimeoutError,
    409: ConflictError,
    412: PreconditionFailedError,
    429: ThrottledError,
    500: ServiceUnavailableError,
    501: UnsupportedOperationError,
    502: ServiceUnavailableError,
    503: ServiceUnavailableError,
    504: ServiceUnavailableError,
}

#: botocore's own exceptions, first match wins (subclasses before their bases).
EXCEPTION_TYPES: tuple[tuple[type[Exception], type[DocumeeRemoteError]], ...] = (
    (bce.ConnectTimeoutError, StorageTimeoutError),
    (bce.ReadTimeoutError, StorageTimeoutError),
    (bce.SSLError, ConfigurationError),  # certificate validation: retrying cannot help
    (bce.EndpointConnectionError, ServiceUnavailableError),
    (bce.ProxyConnectionError, ServiceUnavailableError),
    (bce.ConnectionClosedError, ServiceUnavailableError),
    (bce.ResponseStreamingError, ServiceUnavailableError),
    (bce.ConnectionError, ServiceUnavailableError),
    (bce.HTTPClientError, ServiceUnavailableError),
    (bce.IncompleteReadError, ServiceUnavailableError),
    (bce.FlexibleChecksumError, ServiceUnavailableError),  # bytes damaged in transit
    (bce.ChecksumError, ServiceUnavailableError),
    (bce.CapacityNotAvailableError, ThrottledError),  # botocore's retry quota ran dry
    (bce.NoCredentialsError, ConfigurationError),
    (bce.PartialCredentialsError, ConfigurationError),
    (bce.CredentialRetrievalError, ConfigurationError),
    (bce.RefreshWithMFAUnsupportedError, ConfigurationError),
    (bce.SSOError, ConfigurationError),
    (bce.TokenRetrievalError, ConfigurationError),
    (bce.NoAuthTokenError, ConfigurationError),
    (bce.ProfileNotFound, ConfigurationError),
    (bce.ConfigNotFound, ConfigurationError),
    (bce.ConfigParseError, ConfigurationError),
    (bce.NoRegionError, ConfigurationError),
    (bce.BaseEndpointResolverError, ConfigurationError),
    (bce.EndpointProviderError, ConfigurationError),
    (bce.InvalidConfigError, ConfigurationError),
    (bce.InvalidRetryConfigurationError, ConfigurationError),
    (bce.InvalidS3AddressingStyleError, ConfigurationError),
    (bce.InvalidEndpointConfigurationError, ConfigurationError),
    (bce.InvalidDNSNameError, ConfigurationError),
    (bce.BotoCoreError, DocumeeRemoteError),
)

# Only these botocore messages go into ours: they name a profile, path or region,
# never a credential, a header value or a body (ParamValidationError would).
_SAFE_MESSAGES = (
    bce.ProfileNotFound,
    bce.ConfigNotFound,
    bce.NoRegionError,
    bce.NoCredentialsError,
    bce.InvalidS3AddressingStyleError,
)

_DOING = {
    "get": "reading",
    "head": "reading the metadata of",
    "put": "writing",
    "delete": "deleting",
    "list": "listing",
}


def _status(exc: bce.ClientError) -> int | None:
    status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
    return int(status) if status is not None else None


def _code(exc: bce.ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


def _retry_attempts(exc: bce.ClientError) -> int:
    return int(exc.response.get("ResponseMetadata", {}).get("RetryAttempts", 0) or 0)


def error_class(code: str, status: int | None) -> type[DocumeeRemoteError]:
    """The error type for an S3 error ``code`` and HTTP ``status``."""
    found = ERROR_CODES.get(code)
    if found is None and status is not None:
        found = STATUS_FALLBACK.get(status)
        if found is None and 500 <= status < 600:
            found = ServiceUnavailableError
    return found or DocumeeRemoteError


def translate_error(
    exc: BaseException,
    *,
    store_url: str,
    operation: str,
    key: str | None = None,
    if_match: str | None = None,
    create_only: bool = False,
) -> DocumeeRemoteError:
    """Turn a botocore exception into one of documee-remote's errors.

    Parameters
    ----------
    exc:
        A botocore ``ClientError`` or ``BotoCoreError``.
    store_url:
        The store's URL (no credentials), for the message.
    operation:
        ``get``, ``head``, ``put``, ``delete`` or ``list``.
    key:
        The key relative to the store root, if the operation had one.
    if_match, create_only:
        The write's condition: a 412 on a create-only write is an
        :class:`AlreadyExistsError`, and S3's 404 to ``If-Match`` on a missing
        key is a :class:`PreconditionFailedError`.

    Messages name the key and the store and never contain credentials, header
    values or object bodies; the botocore exception stays attached by the
    caller's ``raise ... from exc``.
    """
    where = f"{key!r} in {store_url}" if key is not None else store_url
    doing = _DOING.get(operation, operation)
    if isinstance(exc, bce.ClientError):
        code, status = _code(exc), _status(exc)
        cls = error_class(code, status)
        if cls is NotFoundError and operation in ("put", "delete") and if_match is not None:
            # S3 answers 404 NoSuchKey to If-Match on a missing key: the condition failed.
            cls = PreconditionFailedError
        if issubclass(cls, PreconditionFailedError) and create_only:
            return AlreadyExistsError(f"{where} already exists", key=key)
        if cls is PreconditionFailedError:
            return PreconditionFailedError(
                f"{where} is not at version {if_match} (changed or deleted by another writer)"
                if if_match is not None
                else f"a precondition failed {doing} {where}",
                key=key,
            )
        if cls is NotFoundError:
            return NotFoundError(f"{where} not found", key=key)
        if code == "NoSuchBucket":
            return ConfigurationError(f"the bucket of {store_url} does not exist", key=key)
        server_message = str(exc.response.get("Error", {}).get("Message", ""))[:200]
        detail = code or (f"HTTP {status}" if status else "error")
        if server_message:
            detail += f": {server_message}"
        call = exc.operation_name
        prefix = "assuming the role failed while " if call == "AssumeRole" else ""
        return cls(f"{prefix}{doing} {where} failed ({detail})", key=key)
    for botocore_type, cls in EXCEPTION_TYPES:
        if isinstance(exc, botocore_type):
            detail = str(exc) if isinstance(exc, _SAFE_MESSAGES) else type(exc).__name__
            if issubclass(cls, ServiceUnavailableError | StorageTimeoutError):
                detail += " after retries"
            return cls(f"{doing} {where} failed ({detail})", key=key)
    return DocumeeRemoteError(f"{doing} {where} failed ({type(exc).__name__})", key=key)


# Read failures of a GetObject body: botocore's retries stop at the response
# headers, so the store retries these itself (a GET is idempotent).
_BODY_ERRORS = (
    bce.IncompleteReadError,
    bce.ResponseStreamingError,
    bce.ReadTimeoutError,
    bce.FlexibleChecksumError,
    bce.ChecksumError,
)


class S3Store(Store):
    """A bucket prefix on Amazon S3 or an S3-compatible service, through boto3.

    Parameters
    ----------
    bucket:
        The bucket name.
    prefix:
        The store root inside the bucket (``"team-a/analyses"``); ``""`` for the
        whole bucket. Normalised to end with ``/``.
    session:
        A ``boto3.Session`` to take credentials and configuration from;
        otherwise one is created from ``profile`` and ``region``.
    options:
        An :class:`~documee_remote.config.S3Options`; keyword arguments
        (``**s3_options``) override its fields.
    read_only, concurrency, max_object_size:
        See :class:`~documee_remote.stores.base.Store`. ``concurrency`` also
        sizes the connection pool unless ``max_pool_connections`` is given.
    **s3_options:
        Any field of :class:`~documee_remote.config.S3Options`:
        ``endpoint_url``, ``region``, ``profile``, ``role_arn``,
        ``external_id``, ``role_session_name``, ``sse``, ``sse_kms_key_id``,
        ``expected_bucket_owner``, ``max_pool_connections``,
        ``connect_timeout``, ``read_timeout``, ``retry_mode``,
        ``max_attempts``, ``addressing_style``.

    Notes
    -----
    One boto3 client is created in the constructor and shared by every thread
    (boto3 clients are thread-safe; sessions are not). ``close()`` releases
    its connection pool.

    Examples
    --------
    >>> store = S3Store.from_url("s3://my-bucket/analyses", region="eu-west-1")  # doctest: +SKIP
    >>> store.put("cb/analysis.json", b"{}", if_none_match="*")  # doctest: +SKIP
    '"99914b932bd37a50b983c5e7c90ae93b"'
    """

    capabilities = Capabilities(
        atomic_conditional_writes=True, conditional_delete=True, native_etags=True
    )

    def __init__(
        self,
        bucket: str,
        prefix: str = "",
        *,
        session: boto3.Session | None = None,
        options: S3Options | None = None,
        read_only: bool = False,
        concurrency: int = DEFAULT_CONCURRENCY,
        max_object_size: int | None = None,
        **s3_options: Unpack[S3OptionsDict],
    ) -> None:
        super().__init__(
            read_only=read_only, concurrency=concurrency, max_object_size=max_object_size
        )
        self._bucket = _check_bucket(bucket)
        self._prefix = _normalise_prefix(prefix)
        merged: dict[str, Any] = options.model_dump(exclude_unset=True) if options else {}
        merged.update(s3_options)
        self.options = S3Options.from_options(merged)
        self._owner: dict[str, Any] = (
            {"ExpectedBucketOwner": self.options.expected_bucket_owner}
            if self.options.expected_bucket_owner
            else {}
        )
        self._sse: dict[str, Any] = {}
        if self.options.sse is not None:
            self._sse["ServerSideEncryption"] = self.options.sse
            if self.options.sse_kms_key_id is not None:
                self._sse["SSEKMSKeyId"] = self.options.sse_kms_key_id
        with _CLIENT_LOCK:
            self._client: S3Client = build_s3_client(
                self.options, session=session, max_pool_connections=concurrency
            )
        logger.debug("opened %r", self)

    @classmethod
    def from_url(
        cls,
        url: str,
        *,
        session: boto3.Session | None = None,
        options: S3Options | None = None,
        read_only: bool = False,
        concurrency: int = DEFAULT_CONCURRENCY,
        max_object_size: int | None = None,
        **s3_options: Unpack[S3OptionsDict],
    ) -> S3Store:
        """Open ``s3://bucket/prefix`` (``s3a://`` is accepted too).

        The keyword arguments are the constructor's.

        Raises
        ------
        ConfigurationError
            The URL is not an ``s3://`` URL with a bucket, carries credentials,
            a port, a query or a fragment, or an option is invalid.
        """
        bucket, prefix = parse_s3_url(url)
        return cls(
            bucket,
            prefix,
            session=session,
            options=options,
            read_only=read_only,
            concurrency=concurrency,
            max_object_size=max_object_size,
            **s3_options,
        )

    # -- identity -------------------------------------------------------------------------

    @property
    def url(self) -> str:
        return f"s3://{self._bucket}/{self._prefix}"

    @property
    def bucket(self) -> str:
        """The bucket name."""
        return self._bucket

    @property
    def prefix(self) -> str:
        """The store root inside the bucket: ``""`` or ending with ``/``."""
        return self._prefix

    @property
    def client(self) -> S3Client:
        """The boto3 S3 client (thread-safe), e.g. to register botocore event hooks."""
        return self._client

    def __repr__(self) -> str:
        extra = ""
        if self.options.endpoint_url:
            extra += f", endpoint_url={self.options.endpoint_url!r}"
        if self._read_only:
            extra += ", read_only=True"
        return f"{type(self).__name__}({self.url!r}{extra})"

    # -- the operations ---------------------------------------------------------------------

    @contextmanager
    def _translating(
        self,
        operation: str,
        key: str | None,
        *,
        if_match: str | None = None,
        create_only: bool = False,
    ) -> Iterator[None]:
        try:
            yield
        except (bce.ClientError, bce.BotoCoreError) as exc:
            raise self._translate(
                exc, operation, key, if_match=if_match, create_only=create_only
            ) from exc

    def _translate(
        self,
        exc: Exception,
        operation: str,
        key: str | None,
        *,
        if_match: str | None = None,
        create_only: bool = False,
    ) -> DocumeeRemoteError:
        """``translate_error``, plus telling a 403 that hides a 404 from a real one."""
        error = translate_error(
            exc,
            store_url=self.url,
            operation=operation,
            key=key,
            if_match=if_match,
            create_only=create_only,
        )
        if (
            isinstance(error, PermissionDeniedError)
            and key is not None
            and (operation in ("get", "head") or if_match is not None)
            and self._absent_by_listing(key)
        ):
            # S3 answers 403 instead of 404 for a missing key unless the
            # caller may list the whole bucket; least-privilege policies
            # grant listing under a prefix only. A prefix-scoped listing
            # tells the two apart.
            return (
                self._precondition_failed(key, if_match)
                if if_match is not None
                else self._not_found(key)
            )
        return error

    def _absent_by_listing(self, key: str) -> bool:
        """True when a listing (allowed by prefix-scoped policies) shows ``key`` absent."""
        full = self._prefix + key
        try:
            response = self._client.list_objects_v2(
                Bucket=self._bucket, Prefix=full, MaxKeys=1, **self._owner
            )
        except (bce.ClientError, bce.BotoCoreError):
            return False  # cannot tell: keep the permission error
        return not any(item["Key"] == full for item in response.get("Contents", ()))

    def _get(self, key: str) -> StoredObject:
        attempts = self.options.max_attempts
        for attempt in range(1, attempts + 1):
            with self._translating("get", key):
                response = self._client.get_object(
                    Bucket=self._bucket, Key=self._prefix + key, **self._owner
                )
            body = response["Body"]
            try:
                size = response["ContentLength"]
                if self.max_object_size is not None and size > self.max_object_size:
                    raise ObjectTooLargeError(
                        f"{key!r} in {self.url} is {size} bytes, over this store's limit "
                        f"of {self.max_object_size}",
                        key=key,
                    )
                data = body.read()
            except _BODY_ERRORS as exc:
                if attempt == attempts:
                    raise translate_error(
                        exc, store_url=self.url, operation="get", key=key
                    ) from exc
                logger.debug("reading %r failed (%s); retrying", key, type(exc).__name__)
                continue
            finally:
                # Unread bodies (too large) must not go back to the pool half-read.
                body.close()
            return StoredObject(data=data, etag=normalize_etag(response["ETag"]))
        raise AssertionError("unreachable")  # pragma: no cover

    def _head(self, key: str) -> ObjectMeta:
        with self._translating("head", key):
            response = self._client.head_object(
                Bucket=self._bucket, Key=self._prefix + key, **self._owner
            )
        return ObjectMeta(
            key=key,
            etag=normalize_etag(response["ETag"]),
            size=response["ContentLength"],
            last_modified=response["LastModified"],
        )

    def _put(self, key: str, data: bytes, *, if_match: str | None, create_only: bool) -> str:
        params: dict[str, Any] = {
            "Bucket": self._bucket,
            "Key": self._prefix + key,
            "Body": data,
            "ContentType": "application/json"
            if key.endswith(".json")
            else "application/octet-stream",
            **self._sse,
            **self._owner,
        }
        kind = lifecycle_kind(key)
        if kind is not None:
            # Bucket lifecycle rules select stale deltas and leases by this tag.
            params["Tagging"] = f"{LIFECYCLE_TAG_KEY}={kind}"
        token: str | None = None
        if if_match is not None or create_only:
            token = uuid.uuid4().hex
            params["Metadata"] = {WRITE_TOKEN_METADATA: token}
            if if_match is not None:
                params["IfMatch"] = if_match
            else:
                params["IfNoneMatch"] = "*"
        try:
            response = self._client.put_object(**params)
        except (bce.ClientError, bce.BotoCoreError) as exc:
            if token is not None and _maybe_landed(exc):
                landed = self._landed_etag(key, token)
                if landed is not None:
                    logger.info(
                        "conditional write of %r in %s had landed on an earlier attempt "
                        "whose response was lost; reporting it as written",
                        key,
                        self.url,
                    )
                    return landed
            raise self._translate(
                exc, "put", key, if_match=if_match, create_only=create_only
            ) from exc
        return normalize_etag(response["ETag"])

    def _landed_etag(self, key: str, token: str) -> str | None:
        """The stored ETag if the object at ``key`` was written with ``token``, else None.

        If another writer replaced our landed write between our lost response
        and this HEAD, we cannot tell and report the failure; the caller then
        re-reads and sees a state that includes our write (a rare double-apply
        risk only when a response is lost *and* a writer slips in between).
        """
        try:
            response = self._client.head_object(
                Bucket=self._bucket, Key=self._prefix + key, **self._owner
            )
        except (bce.ClientError, bce.BotoCoreError):
            return None
        if response.get("Metadata", {}).get(WRITE_TOKEN_METADATA) == token:
            return normalize_etag(response["ETag"])
        return None

    def _delete(self, key: str, *, if_match: str | None) -> None:
        params: dict[str, Any] = {"Bucket": self._bucket, "Key": self._prefix + key, **self._owner}
        if if_match is not None:
            params["IfMatch"] = if_match
        try:
            self._client.delete_object(**params)
        except bce.ClientError as exc:
            if (
                if_match is not None
                and error_class(_code(exc), _status(exc)) is NotFoundError
                and _retry_attempts(exc) > 0
            ):
                # A retried conditional delete that finds the key gone: an earlier
                # attempt deleted it and its response was lost. Report what S3
                # reports for any delete of a missing key: success.
                logger.info("conditional delete of %r in %s landed on a retry", key, self.url)
                return
            raise self._translate(exc, "delete", key, if_match=if_match) from exc
        except bce.BotoCoreError as exc:
            raise self._translate(exc, "delete", key, if_match=if_match) from exc

    def _list(self, prefix: str) -> Iterator[str]:
        return (meta.key for meta in self._list_meta(prefix))

    def _list_meta(self, prefix: str) -> Iterator[ObjectMeta]:
        # ListObjectsV2 returns each key's ETag, size and time: no HEAD per key.
        paginator = self._client.get_paginator("list_objects_v2")
        pages = iter(
            paginator.paginate(Bucket=self._bucket, Prefix=self._prefix + prefix, **self._owner)
        )
        strip = len(self._prefix)
        while True:
            with self._translating("list", None):
                page = next(pages, None)
            if page is None:
                return
            for item in page.get("Contents", ()):
                key = item["Key"][strip:]
                try:
                    validate_key(key)
                except InvalidKeyError:
                    # "folder/" markers made by consoles and other tools' names: not ours.
                    logger.debug("listing %s skips %r: not a valid key", self.url, key)
                    continue
                yield ObjectMeta(
                    key=key,
                    etag=normalize_etag(item["ETag"]),
                    size=item["Size"],
                    last_modified=item["LastModified"],
                )

    # -- bulk -------------------------------------------------------------------------------

    def _delete_many(self, keys: list[str], conditions: dict[str, str]) -> list[str]:
        """Unconditional deletes go with DeleteObjects, 1,000 per request.

        Keys with an ETag condition are deleted one by one with S3's
        conditional DeleteObject. Falls back to one DELETE per key on services
        that do not implement DeleteObjects (or want a Content-MD5 that
        botocore no longer sends).
        """
        plain = [k for k in keys if k not in conditions]
        jobs: list[Callable[[], list[str]]] = [
            functools.partial(self._delete_batch, plain[i : i + _DELETE_BATCH])
            for i in range(0, len(plain), _DELETE_BATCH)
        ]
        jobs += [
            functools.partial(self._delete_if, key, conditions[key])
            for key in keys
            if key in conditions
        ]
        kept = {k for result in self._map(lambda job: job(), jobs) for k in result}
        return [k for k in keys if k in kept]

    def _delete_if(self, key: str, etag: str) -> list[str]:
        try:
            self._delete(key, if_match=etag)
        except PreconditionFailedError:
            return [key]
        return []

    def _delete_batch(self, keys: list[str]) -> list[str]:
        try:
            response = self._client.delete_objects(
                Bucket=self._bucket,
                Delete={"Objects": [{"Key": self._prefix + k} for k in keys], "Quiet": True},
                **self._owner,
            )
        except bce.ClientError as exc:
            if _code(exc) in ("NotImplemented", "MissingContentMD5", "MethodNotAllowed"):
                logger.debug("DeleteObjects unsupported by %s; deleting one by one", self.url)
                for key in keys:
                    self._delete(key, if_match=None)
                return []
            raise translate_error(exc, store_url=self.url, operation="delete") from exc
        except bce.BotoCoreError as exc:
            raise translate_error(exc, store_url=self.url, operation="delete") from exc
        errors = response.get("Errors", [])
        if not errors:
            return []
        first = errors[0]
        failed = first.get("Key", "")[len(self._prefix) :] or None
        cls = error_class(first.get("Code", ""), None)
        raise cls(
            f"deleting {failed!r} in {self.url} failed ({first.get('Code', 'error')}); "
            f"{len(errors)} of {len(keys)} keys in the batch were not deleted",
            key=failed,
        )

    # -- lifecycle --------------------------------------------------------------------------

    def close(self) -> None:
        """Close the client's connection pool. Safe to call twice."""
        if not self._closed:
            self._client.close()
        super().close()


def _maybe_landed(exc: BaseException) -> bool:
    """Could an earlier attempt of this conditional PUT have been written after all?"""
    if isinstance(exc, bce.ClientError):
        # A 412/409 on a *retry* may be our own earlier attempt, applied but its
        # response lost. On a first attempt it cannot be: there is no earlier one,
        # and S3's 409 means another writer's request was in flight, not ours. Not
        # checking then saves a HEAD per lost race, which under contention adds up.
        failed_condition = _status(exc) in (409, 412) or _code(exc) in (
            "PreconditionFailed",
            "ConditionalRequestConflict",
        )
        return failed_condition and _retry_attempts(exc) > 0
    # A connection lost once retries ran out: the last attempt may have landed.
    return isinstance(exc, bce.HTTPClientError | bce.ConnectionError)


def parse_s3_url(url: str) -> tuple[str, str]:
    """``s3://bucket/some/prefix`` -> ``("bucket", "some/prefix/")``."""
    scheme, sep, rest = url.partition("://")
    if not sep or scheme.lower() not in ("s3", "s3a"):
        raise ConfigurationError("an S3 store URL must look like s3://bucket/prefix")
    netloc, _, path = rest.partition("/")
    if "@" in netloc:
        # Never echo the URL: the part before "@" would be a credential.
        raise ConfigurationError(
            "S3 URLs must not contain credentials; use a profile, role_arn or the "
            "standard AWS environment variables"
        )
    if ":" in netloc:
        raise ConfigurationError(
            f"{url!r}: S3 URLs take no port; give the endpoint as endpoint_url"
        )
    if "?" in path or "#" in path or "?" in netloc or "#" in netloc:
        raise ConfigurationError(f"{url!r}: S3 URLs take no query or fragment; pass options")
    return _check_bucket(netloc), _normalise_prefix(path)


def _check_bucket(bucket: str) -> str:
    # S3's rules are stricter (3-63 lower-case characters), but legacy buckets and
    # S3-compatible services allow more; refuse only what cannot be a bucket.
    if (
        not bucket
        or len(bucket) > 255
        or not bucket[0].isalnum()
        or not all(c.isascii() and (c.isalnum() or c in "._-") for c in bucket)
    ):
        raise ConfigurationError(f"invalid S3 bucket name {bucket!r}")
    return bucket


def _normalise_prefix(prefix: str) -> str:
    prefix = prefix.strip("/")
    if not prefix:
        return ""
    try:
        validate_key(prefix)
    except InvalidKeyError as exc:
        raise ConfigurationError(f"invalid S3 prefix {prefix!r}: {exc}") from exc
    return prefix + "/"
