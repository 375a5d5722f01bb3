"""What every S3 backend means by S3's answers: one table, one translation, one set of rules.

:class:`~documee_remote.stores.s3.S3Store` (boto3), the s3fs driver of
:class:`~documee_remote.stores._fsspec.FsspecStore` (aiobotocore) and
:class:`~documee_remote.stores._obstore.ObstoreStore` (obstore) each turn their
own client's exceptions into an :class:`S3Answer` (error code, HTTP status,
retries) and map their own transport failures. What S3 *means* is decided here,
once, so that switching ``backend="fsspec"`` or ``"obstore"`` changes nothing else:

* :data:`ERROR_CODES` and :data:`STATUS_FALLBACK`: S3 error -> library error;
  :func:`translate` adds what depends on the request (If-Match on a missing key,
  412 on a create-only write) and writes a message without credentials or bodies.
* The 403 that hides a 404 (:func:`may_hide_missing_key`): S3 answers 403 for a
  missing key unless the caller may list the whole bucket; a listing under the
  key's own prefix (:func:`listing_shows_absent`), allowed by least-privilege
  policies, tells the two apart.
* Conditional writes whose response was lost: the write token
  (:data:`WRITE_TOKEN_METADATA`, :func:`put_parameters`), when to look for it
  (:func:`may_have_landed`) and how (:func:`landed_etag`); a retried conditional
  delete that finds the key gone (:func:`delete_landed`).
* botocore's exceptions (:func:`botocore_error`): aiobotocore raises botocore's
  classes, so both backends share the table; botocore is imported only once an
  exception of its own is being translated (the fsspec backend works without it).
"""

from __future__ import annotations

import functools
import sys
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from ..config.sessions import connection_refused
from ..errors import (
    AlreadyExistsError,
    ConditionalRequestConflictError,
    ConfigurationError,
    ConflictError,
    DocumeeRemoteError,
    InvalidKeyError,
    NotFoundError,
    NotModifiedError,
    ObjectTooLargeError,
    PermissionDeniedError,
    PreconditionFailedError,
    ServiceUnavailableError,
    StorageFullError,
    StorageTimeoutError,
    ThrottledError,
    UnsupportedOperationError,
)
from ._keys import LIFECYCLE_TAG_KEY, lifecycle_kind
from .base import normalize_etag

__all__ = [
    "DELETE_BATCH",
    "DELETE_OBJECTS_UNSUPPORTED",
    "ERROR_CODES",
    "LANDED_MESSAGE",
    "STATUS_FALLBACK",
    "WRITE_TOKEN_METADATA",
    "S3Answer",
    "S3Location",
    "answer_from_response",
    "botocore_error",
    "botocore_exception_types",
    "delete_landed",
    "delete_objects_error",
    "doing",
    "error_class",
    "landed_etag",
    "lifecycle_tagging",
    "listing_shows_absent",
    "may_have_landed",
    "may_hide_missing_key",
    "missing_key",
    "put_parameters",
    "translate",
    "where",
]

#: User metadata (``x-amz-meta-<this>``) carrying a conditional PUT's random token.
WRITE_TOKEN_METADATA = "documee-write-token"  # noqa: S105 - a metadata name, not a secret

#: DeleteObjects takes at most this many keys.
DELETE_BATCH = 1000

#: DeleteObjects answers of S3-compatible services without it (or that want a
#: Content-MD5 botocore no longer sends): delete one key at a time instead.
DELETE_OBJECTS_UNSUPPORTED = frozenset({"NotImplemented", "MissingContentMD5", "MethodNotAllowed"})

#: S3 error codes (``Error.Code``; for HEAD, which has no body, the status as text).
ERROR_CODES: Mapping[str, type[DocumeeRemoteError]] = {
    # missing
    "NoSuchKey": NotFoundError,
    "NotFound": NotFoundError,
    "NoSuchVersion": NotFoundError,
    "NoSuchUpload": NotFoundError,
    "NoSuchBucketPolicy": NotFoundError,
    "NoSuchLifecycleConfiguration": NotFoundError,
    "404": NotFoundError,
    # a GET's If-None-Match that matched (304, no body was sent)
    "304": NotModifiedError,
    "NotModified": NotModifiedError,
    # conditional requests; AlreadyExistsError when the write was create-only
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
    "NotSignedUp": PermissionDeniedError,
    "InvalidPayer": PermissionDeniedError,
    "InvalidSecurity": PermissionDeniedError,
    "CrossLocationLoggingProhibited": PermissionDeniedError,
    "KMS.AccessDeniedException": PermissionDeniedError,
    # slow down
    "SlowDown": ThrottledError,
    "Throttling": ThrottledError,
    "ThrottlingException": ThrottledError,
    "ThrottledException": ThrottledError,
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
    # limits and the request itself
    "EntityTooLarge": ObjectTooLargeError,
    "KeyTooLongError": InvalidKeyError,
    "QuotaExceeded": StorageFullError,
    "XMinioStorageFull": StorageFullError,
    # the service cannot do it (S3-compatible services without conditional writes)
    "NotImplemented": UnsupportedOperationError,
    "501": UnsupportedOperationError,
    "MethodNotAllowed": UnsupportedOperationError,
    # wrong bucket, region, encryption key or option
    "NoSuchBucket": ConfigurationError,
    "InvalidBucketName": ConfigurationError,
    "PermanentRedirect": ConfigurationError,
    "TemporaryRedirect": ConfigurationError,
    "Redirect": ConfigurationError,
    "301": ConfigurationError,
    "307": ConfigurationError,
    "AuthorizationHeaderMalformed": ConfigurationError,
    "IllegalLocationConstraintException": ConfigurationError,
    "InvalidArgument": ConfigurationError,
    "InvalidEncryptionAlgorithmError": ConfigurationError,
    "KMS.NotFoundException": ConfigurationError,
    "KMS.DisabledException": ConfigurationError,
}

#: By HTTP status, for codes the table does not know. Other 5xx are
#: :class:`ServiceUnavailableError`, anything else the base :class:`DocumeeRemoteError`.
#: A 409 without a known code is a plain :class:`ConflictError`: only the codes
#: S3 documents as "try again" (ConditionalRequestConflict, OperationAborted) are
#: known to be transient.
STATUS_FALLBACK: Mapping[int, type[DocumeeRemoteError]] = {
    301: ConfigurationError,
    304: NotModifiedError,
    307: ConfigurationError,
    403: PermissionDeniedError,
    404: NotFoundError,
    405: UnsupportedOperationError,
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

_DOING = {
    "get": "reading",
    "head": "reading the metadata of",
    "put": "writing",
    "delete": "deleting",
    "list": "listing",
}


@dataclass(frozen=True, slots=True)
class S3Answer:
    """An S3 error response, as a backend extracts it from its client's exception.

    ``message`` is S3's ``Error.Message`` (it names no credential and no body);
    ``call`` the API call that failed (``"AssumeRole"`` for a role's credentials).
    """

    code: str
    status: int | None
    retries: int = 0
    message: str = ""
    call: str = ""


def answer_from_response(response: Mapping[str, Any], call: str = "") -> S3Answer:
    """The answer in a botocore ``ClientError.response`` (boto3's and aiobotocore's alike)."""
    meta = response.get("ResponseMetadata") or {}
    error = response.get("Error") or {}
    status = meta.get("HTTPStatusCode")
    return S3Answer(
        code=str(error.get("Code") or ""),
        status=int(status) if status else None,
        retries=int(meta.get("RetryAttempts") or 0),
        message=str(error.get("Message") or ""),
        call=call,
    )


def error_class(code: str, status: int | None) -> type[DocumeeRemoteError]:
    """The error type for an S3 error ``code`` and HTTP ``status``."""
    found = ERROR_CODES.get(code)
    if found is None and status:
        found = STATUS_FALLBACK.get(status)
        if found is None and 500 <= status < 600:
            found = ServiceUnavailableError
    return found or DocumeeRemoteError


def where(store_url: str, key: str | None) -> str:
    """``'key' in s3://bucket/prefix/``, or the store alone."""
    return f"{key!r} in {store_url}" if key is not None else store_url


def doing(operation: str) -> str:
    """``reading``, ``writing``, ... for an operation, in messages."""
    return _DOING.get(operation, operation)


def translate(
    answer: S3Answer,
    store_url: str,
    operation: str,
    key: str | None = None,
    *,
    if_match: str | None = None,
    create_only: bool = False,
) -> DocumeeRemoteError:
    """Turn S3's ``answer`` to a request into one of documee-remote's errors.

    ``operation`` is ``get``, ``head``, ``put``, ``delete`` or ``list``;
    ``if_match`` and ``create_only`` are the write's condition: a 412 on a
    create-only write is an :class:`AlreadyExistsError`, and S3's 404 to
    If-Match on a missing key a :class:`PreconditionFailedError`. The message
    names the key and the store, never a credential, header value or body.
    """
    at = where(store_url, key)
    cls = error_class(answer.code, answer.status)
    if cls is NotFoundError and operation in ("put", "delete") and if_match is not None:
        cls = PreconditionFailedError  # S3 answers 404 to If-Match on a missing key
    if issubclass(cls, PreconditionFailedError) and create_only:
        return AlreadyExistsError(f"{at} already exists", key=key)
    if cls is PreconditionFailedError:
        return PreconditionFailedError(
            f"{at} is not at version {if_match} (changed or deleted by another writer)"
            if if_match is not None
            else f"a precondition failed {doing(operation)} {at}",
            key=key,
        )
    if cls is NotFoundError:
        return NotFoundError(f"{at} not found", key=key)
    if cls is NotModifiedError:
        return NotModifiedError(f"{at} is unchanged (304 Not Modified)", key=key)
    detail = answer.code or (f"HTTP {answer.status}" if answer.status else "error")
    if answer.message and answer.message != answer.code:
        detail += f": {answer.message[:200]}"
    if answer.code == "NoSuchBucket":
        return ConfigurationError(f"the bucket of {store_url} does not exist ({detail})", key=key)
    text = f"{doing(operation)} {at} failed ({detail})"
    if answer.call == "AssumeRole":
        text = f"assuming the role failed while {text}"
    elif cls is ConditionalRequestConflictError:
        text += "; another conditional write was in flight, retry"
    elif cls is UnsupportedOperationError:
        text += "; some S3-compatible services lack conditional writes or batch deletes"
    return cls(text, key=key)


# -- a 403 that hides a 404 ----------------------------------------------------------------


def may_hide_missing_key(
    answer: S3Answer, operation: str, key: str | None, if_match: str | None
) -> bool:
    """Could this 403 be S3 hiding that ``key`` does not exist?

    S3 answers 403 instead of 404 for a missing key unless the caller may list
    the whole bucket, and least-privilege policies grant listing under a prefix
    only. It matters where a missing key has a meaning of its own: reads, and
    writes or deletes conditional on a version. The backend then lists the
    key's own prefix once (:func:`listing_shows_absent`) and, if the key is
    absent, goes on with :func:`missing_key` instead.
    """
    return (
        error_class(answer.code, answer.status) is PermissionDeniedError
        and key is not None
        and (operation in ("get", "head") or if_match is not None)
    )


def listing_shows_absent(response: Mapping[str, Any], full_key: str) -> bool:
    """Does a ListObjectsV2 page for ``Prefix=full_key, MaxKeys=1`` show the key absent?

    The key itself, if it exists, sorts before every other key it prefixes.
    """
    return not any(item.get("Key") == full_key for item in response.get("Contents") or ())


def missing_key(answer: S3Answer) -> S3Answer:
    """``answer`` (a 403) as the 404 it hid."""
    return S3Answer("NoSuchKey", 404, answer.retries, "the key does not exist", answer.call)


# -- conditional writes whose response was lost ---------------------------------------------


def lifecycle_tagging(key: str) -> str | None:
    """The ``Tagging`` bucket lifecycle rules select stale deltas and leases by."""
    kind = lifecycle_kind(key)
    return f"{LIFECYCLE_TAG_KEY}={kind}" if kind is not None else None


def put_parameters(
    key: str, *, if_match: str | None, create_only: bool
) -> tuple[dict[str, Any], str | None]:
    """PutObject's parameters beyond bucket, key and body, and the write's token (or None).

    A conditional PUT carries a random token in its metadata: when a PUT that
    may have been sent twice fails its condition, :func:`landed_etag` tells
    our own landed write from another writer's (comparing bytes would not do:
    another writer may have written the same bytes).
    """
    params: dict[str, Any] = {
        "ContentType": "application/json" if key.endswith(".json") else "application/octet-stream"
    }
    tagging = lifecycle_tagging(key)
    if tagging is not None:
        params["Tagging"] = tagging
    if if_match is None and not create_only:
        return params, None
    token = uuid.uuid4().hex
    params["Metadata"] = {WRITE_TOKEN_METADATA: token}
    if if_match is not None:
        params["IfMatch"] = if_match
    else:
        params["IfNoneMatch"] = "*"
    return params, token


def may_have_landed(error: DocumeeRemoteError, *, resent: bool) -> bool:
    """After ``error``, could an attempt of this conditional PUT have been written after all?

    A failed connection, timeout or 5xx: the last attempt may have been applied
    before its answer was lost. A failed condition (412, 409) only if the
    request was ``resent``: it may then have failed against our own earlier
    copy; on a first attempt it cannot, and not checking saves a HEAD per lost
    race, which under contention adds up.
    """
    if isinstance(error, ServiceUnavailableError | StorageTimeoutError):
        return True
    return resent and isinstance(error, PreconditionFailedError | ConflictError)


#: What a backend logs (``%r`` the key, ``%s`` the store) when :func:`landed_etag` found its write.
LANDED_MESSAGE = (
    "conditional write of %r in %s had landed on an earlier attempt whose response was lost; "
    "reporting it as written"
)


def landed_etag(head: Mapping[str, Any], token: str) -> str | None:
    """The ETag of a HEAD response if the object is the write that carried ``token``.

    If another writer replaced our landed write before this HEAD, we cannot
    tell and report the failure; the caller then re-reads a state that includes
    our write (a rare double-apply risk only when a response is lost *and* a
    writer slips in between).
    """
    if (head.get("Metadata") or {}).get(WRITE_TOKEN_METADATA) == token:
        return normalize_etag(head["ETag"])
    return None


def delete_landed(answer: S3Answer, *, if_match: str | None) -> bool:
    """Is this the answer to a retried conditional DELETE whose earlier attempt landed?

    The retry finds the key gone; S3 reports any delete of a missing key as a
    success, and so does the store. Without a retry it is a failed condition.
    """
    return (
        if_match is not None
        and answer.retries > 0
        and error_class(answer.code, answer.status) is NotFoundError
    )


def delete_objects_error(
    errors: Iterable[Mapping[str, Any]], *, batch: int, prefix: str, store_url: str
) -> DocumeeRemoteError | None:
    """The error for DeleteObjects' per-key ``Errors``; NoSuchKey is a success."""
    failures = [e for e in errors if e.get("Code") != "NoSuchKey"]
    if not failures:
        return None
    code = str(failures[0].get("Code") or "")
    failed = str(failures[0].get("Key") or "")[len(prefix) :] or None
    return error_class(code, None)(
        f"deleting {failed!r} in {store_url} failed ({code or 'error'}); "
        f"{len(failures)} of {batch} keys in the batch were not deleted",
        key=failed,
    )


# -- botocore's own exceptions --------------------------------------------------------------


@functools.cache
def botocore_exception_types() -> tuple[tuple[type[Exception], type[DocumeeRemoteError]], ...]:
    """botocore's exceptions and what each becomes; first match wins (subclasses first)."""
    from botocore import exceptions as bce

    return (
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
        # Parameters we validated ourselves are fine: the rest came from options.
        (bce.ParamValidationError, ConfigurationError),
        (bce.BotoCoreError, DocumeeRemoteError),
    )


def _safe_messages() -> tuple[type[Exception], ...]:
    # Only these botocore messages go into ours: they name a profile, path or region,
    # never a credential, a header value or a body (ParamValidationError would).
    from botocore import exceptions as bce

    return (
        bce.ProfileNotFound,
        bce.ConfigNotFound,
        bce.NoRegionError,
        bce.NoCredentialsError,
        bce.InvalidS3AddressingStyleError,
    )


def botocore_error(
    exc: BaseException, *, store_url: str, operation: str, key: str | None = None
) -> DocumeeRemoteError | None:
    """Translate one of botocore's own exceptions (not a ``ClientError``); None for others."""
    bce = sys.modules.get("botocore.exceptions")
    if bce is None or not isinstance(exc, bce.BotoCoreError):
        return None  # botocore cannot have raised it if nobody imported botocore
    for botocore_type, cls in botocore_exception_types():
        if isinstance(exc, botocore_type):
            detail = str(exc) if isinstance(exc, _safe_messages()) else type(exc).__name__
            connecting = isinstance(exc, bce.EndpointConnectionError)
            if connecting:
                detail = connection_detail(exc)
            if issubclass(cls, ServiceUnavailableError | StorageTimeoutError):
                vetoed = getattr(exc, "kwargs", {}).get("not_retried")
                detail += ", not retried as it never answered" if vetoed else " after retries"
            if connecting:
                detail += "; check endpoint_url / DOCUMEE_S3_ENDPOINT_URL"
            return cls(f"{doing(operation)} {where(store_url, key)} failed ({detail})", key=key)
    raise AssertionError("unreachable: BotoCoreError ends the table")  # pragma: no cover


def connection_detail(exc: Any) -> str:
    """What a connection error says: the endpoint (scheme, host and port only) and why."""

    parts = urlsplit(str(exc.kwargs.get("endpoint_url") or ""))
    port = f":{parts.port}" if parts.port else ""
    endpoint = f"{parts.scheme}://{parts.hostname}{port}" if parts.hostname else "the endpoint"
    why = "connection refused" if connection_refused(exc) else type(exc).__name__
    return f"cannot connect to {endpoint}: {why}"


class S3Location:
    """The bucket and prefix an S3 backend points at, and its URL (one copy for all)."""

    _bucket: str
    _prefix: str

    @property
    def url(self) -> str:
        """``s3://bucket/prefix``: where this store points, without credentials."""
        return f"s3://{self._bucket}/{self._prefix}"

    @property
    def bucket(self) -> str:
        """The bucket name."""
        return self._bucket

    @property
    def prefix(self) -> str:
        """The store root inside the bucket: ``""`` or ending with ``/``."""
        return self._prefix
