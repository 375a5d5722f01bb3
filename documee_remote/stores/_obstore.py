"""ObstoreStore: Amazon S3 (and S3-compatible services) through obstore, for bulk throughput.

obstore wraps the Rust ``object_store`` crate: requests are built, signed and
sent by native code on its own runtime, so one PUT costs the client about a
quarter of the CPU it costs through botocore. Where the client shares a machine
with other work (or the store is a local S3-compatible server, as in this
project's benchmarks) that is the difference in a full save of thousands of
per-file objects. Everything else behaves as :class:`~.s3.S3Store` does: same
keys under ``s3://<bucket>/<prefix>``, same ETags (single-part PUTs: the MD5 of
the bytes), same errors, through the same S3 error table (:mod:`._s3common`).

What obstore does not offer, and how this store makes up for it:

* **Conditional DELETE** (``If-Match``): obstore has no such option. The store
  asks obstore for a presigned DELETE URL (obstore's credentials, signed for a
  few minutes) and sends it with an ``If-Match`` header from the standard
  library's HTTP client: S3's own atomic conditional delete, so
  ``capabilities.conditional_delete`` is true.
* **Retries it cannot report**: obstore retries 5xx, 409 and dropped
  connections itself and says how often only in its error text; the store reads
  that count (:func:`_retries`) so that a conditional PUT that failed after a
  retry is checked for having landed, exactly as :class:`~.s3.S3Store` does.
* **Profiles, SSO, ``~/.aws`` files and roles**: obstore reads ``AWS_*``
  keys, web identity, container and instance credentials itself, but none of
  these. With ``profile`` or ``role_arn``, or without keys in the environment
  when boto3 is installed, credentials come from boto3's chain through
  obstore's credential-provider hook (:class:`Boto3Credentials`), so both S3
  backends use the same credentials.
* ``expected_bucket_owner`` cannot be sent (obstore signs no extra headers), so
  it is refused rather than silently ignored; use ``backend="s3"`` for it.

``import documee_remote`` and the default ``s3://`` backend never import this
module or obstore; ``open_store(url, backend="obstore")`` does.
"""

from __future__ import annotations

import asyncio
import http.client
import importlib.util
import logging
import os
import random
import re
import ssl
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Awaitable, Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, TypeVar, Unpack

from ..config import S3Options, S3OptionsDict, build_session
from ..errors import (
    ConfigurationError,
    DocumeeRemoteError,
    InvalidKeyError,
    MissingDependencyError,
    NotFoundError,
    ObjectTooLargeError,
    ServiceUnavailableError,
    StorageTimeoutError,
    TransientError,
)
from . import _s3common as s3c
from ._aio import gather_bounded, run_sync
from ._keys import LIFECYCLE_TAG_KEY, lifecycle_kind, validate_key
from ._s3common import WRITE_TOKEN_METADATA, S3Answer
from .base import (
    DEFAULT_CONCURRENCY,
    DEFAULT_MAX_OBJECT_SIZE,
    Capabilities,
    ObjectMeta,
    Store,
    StoredObject,
    etag_of,
    normalize_etag,
)
from .s3 import parse_s3_url

#: What to run when obstore is missing.
OBSTORE_INSTALL_HINT = "pip install 'documee-remote[obstore]'"

try:
    import obstore
    from obstore import exceptions as oe
    from obstore.store import S3Store as _ObstoreS3
except ImportError as _exc:  # pragma: no cover - exercised in a subprocess test
    raise MissingDependencyError(
        f"the obstore backend needs obstore: {OBSTORE_INSTALL_HINT}"
    ) from _exc

if TYPE_CHECKING:
    import boto3
    from botocore.credentials import Credentials
    from obstore import GetResult, PutMode
    from obstore import ObjectMeta as ObstoreMeta
    from obstore.store import ClientConfig, RetryConfig, S3Config, S3Credential

__all__ = [
    "OBSTORE_INSTALL_HINT",
    "Boto3Credentials",
    "ObstoreStore",
    "answer_of",
    "translate_error",
]

logger = logging.getLogger("documee_remote.stores.obstore")

_T = TypeVar("_T")

#: How long a presigned conditional DELETE stays valid: long enough for retries
#: and clock skew, short enough to be useless if it leaked (it never is logged).
_PRESIGN_FOR = timedelta(minutes=15)

#: obstore limits one request to this overall; a stalled transfer is caught earlier
#: by ``read_timeout``. object_store's own default (30 s) would cut a 70 MB
#: analysis.json short on a slow link, where boto3 has no overall limit at all.
_REQUEST_TIMEOUT = timedelta(minutes=15)

#: Answers of a presigned DELETE retried here, as botocore's standard mode retries them.
_RETRY_STATUS = frozenset({429, 500, 502, 503, 504})

# What obstore's error text tells (it has no structured fields): the HTTP status,
# S3's error code and message, and how many times obstore retried.
_STATUS_RE = re.compile(r"status code: (\d{3})|\bstatus: (\d{3})\b")
_CODE_RE = re.compile(r"<Code>([^<]{1,128})</Code>")
_MESSAGE_RE = re.compile(r"<Message>([^<]{0,300})</Message>")
_RETRIES_RE = re.compile(r"after (\d+) retries|\bretries: (\d+)\b")
_TIMEOUT_RE = re.compile(r"timed out|\bTimedOut\b|kind: Timeout\b", re.IGNORECASE)

#: obstore's typed exceptions and the status S3 answered for each; GenericError's
#: status is read from its text.
_STATUS_OF: tuple[tuple[type[BaseException], int], ...] = (
    (FileNotFoundError, 404),
    (oe.NotFoundError, 404),
    (oe.AlreadyExistsError, 412),
    (oe.PreconditionError, 412),
    (oe.PermissionDeniedError, 403),
    (oe.NotSupportedError, 501),
    (oe.NotModifiedError, 304),
)


def _first_int(match: re.Match[str] | None) -> int | None:
    if match is None:
        return None
    return int(next(group for group in match.groups() if group is not None))


def _retries(text: str) -> int | None:
    """How often obstore retried the request, from its error text; None if it does not say."""
    return _first_int(_RETRIES_RE.search(text))


def answer_of(exc: BaseException, call: str = "") -> S3Answer | None:
    """S3's answer inside an obstore exception; None when no answer came (a transport error).

    Only the status, S3's error code, S3's ``Message`` and the retry count are
    taken from obstore's text; the rest of it (request URLs, debug dumps) never
    reaches our messages.
    """
    text = str(exc)
    status = _first_int(_STATUS_RE.search(text))
    if status is None:
        status = next((s for cls, s in _STATUS_OF if isinstance(exc, cls)), None)
    if status is None:
        return None
    code = _CODE_RE.search(text)
    message = _MESSAGE_RE.search(text)
    return S3Answer(
        code=code.group(1) if code else "",
        status=status,
        retries=_retries(text) or 0,
        message=message.group(1) if message else "",
        call=call,
    )


def translate_error(
    exc: BaseException,
    *,
    store_url: str,
    operation: str,
    key: str | None = None,
    if_match: str | None = None,
    create_only: bool = False,
) -> DocumeeRemoteError:
    """Turn an obstore exception into one of documee-remote's errors.

    An S3 answer goes through :func:`._s3common.translate`, the table both other
    S3 backends use; a request that got no answer (connection refused or
    dropped, a timeout) after obstore's retries is a
    :class:`~documee_remote.errors.ServiceUnavailableError` or
    :class:`~documee_remote.errors.StorageTimeoutError`. Messages never carry
    obstore's text, which includes request URLs.
    """
    where = s3c.where(store_url, key)
    doing = s3c.doing(operation)
    if isinstance(exc, oe.InvalidPathError):
        return InvalidKeyError(f"obstore refused the key of {where}", key=key)
    if isinstance(exc, oe.UnknownConfigurationKeyError | ValueError):
        return ConfigurationError(f"{doing} {where} failed: obstore refused its configuration")
    answer = answer_of(exc)
    if answer is not None:
        return s3c.translate(
            answer, store_url, operation, key, if_match=if_match, create_only=create_only
        )
    if isinstance(exc, oe.UnauthenticatedError):
        # No status: the request was never sent, for want of credentials.
        return ConfigurationError(f"{doing} {where} failed: no usable AWS credentials", key=key)
    if isinstance(exc, oe.BaseError | OSError):
        cls: type[DocumeeRemoteError] = (
            StorageTimeoutError if _TIMEOUT_RE.search(str(exc)) else ServiceUnavailableError
        )
        return cls(f"{doing} {where} failed (no answer from the service, after retries)", key=key)
    return DocumeeRemoteError(f"{doing} {where} failed ({type(exc).__name__})", key=key)


def _duration(seconds: float) -> timedelta:
    return timedelta(seconds=seconds)


def _backoff(attempt: int) -> float:
    """Seconds before retry ``attempt`` (1, 2, ...): full jitter, as botocore's standard mode."""
    return random.uniform(0, min(20.0, 0.1 * 2**attempt))


#: How long obstore may cache credentials from a refreshing boto3 source. botocore
#: refreshes them 10-15 minutes before they expire, so what it hands out is always
#: good for longer than this.
_REFRESHING_CREDENTIALS_TTL = timedelta(minutes=5)


class Boto3Credentials:
    """obstore's credential provider over a boto3 session: boto3's chain, resolved lazily.

    The same resolution as :class:`~.s3.S3Store` (profiles, SSO, ``~/.aws``
    files, assumed roles, containers, instance metadata), looked up on the
    first request rather than when the store opens, as boto3 does. Credentials
    that refresh themselves (roles, SSO, instance metadata) are re-read from
    botocore every few minutes, which refreshes them when they near expiry.
    """

    def __init__(self, session: boto3.Session, what: str) -> None:
        self._session = session
        self._what = what
        self._lock = threading.Lock()
        self._credentials: Credentials | None = None

    def __call__(self) -> S3Credential:
        with self._lock:
            if self._credentials is None:
                found = self._session.get_credentials()
                if found is None:
                    # obstore reports it as an UnauthenticatedError naming no status.
                    raise ConfigurationError(f"no AWS credentials found for {self._what}")
                self._credentials = found
            credentials = self._credentials
        from botocore.credentials import RefreshableCredentials

        frozen = credentials.get_frozen_credentials()
        if frozen.access_key is None or frozen.secret_key is None:
            raise ConfigurationError(f"incomplete AWS credentials for {self._what}")
        refreshing = isinstance(credentials, RefreshableCredentials)
        return {
            "access_key_id": frozen.access_key,
            "secret_access_key": frozen.secret_key,
            "token": frozen.token,
            "expires_at": datetime.now(UTC) + _REFRESHING_CREDENTIALS_TTL if refreshing else None,
        }

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self._what})"  # never the credentials


class ObstoreStore(s3c.S3Location, Store):
    """A bucket prefix on Amazon S3 or an S3-compatible service, through obstore.

    Takes the same arguments as :class:`~documee_remote.stores.s3.S3Store`
    (except ``session``) and behaves the same; open it with
    ``open_store("s3://bucket/prefix", backend="obstore", ...)``. Bulk
    operations run ``concurrency`` requests at once on an asyncio loop of
    their own (on a helper thread when called from inside a running loop).

    Parameters
    ----------
    bucket, prefix:
        As for :class:`~documee_remote.stores.s3.S3Store`.
    options:
        An :class:`~documee_remote.config.S3Options`; keyword arguments
        (``**s3_options``) override its fields. ``retry_mode`` is boto3's
        notion: obstore always retries with exponential backoff and jitter,
        ``max_attempts`` times in all. ``expected_bucket_owner`` is refused
        (see the module docstring).
    read_only, concurrency, max_object_size:
        See :class:`~documee_remote.stores.base.Store`.

    Raises
    ------
    ConfigurationError
        An option is invalid or cannot be honoured by obstore.
    """

    capabilities = Capabilities(
        atomic_conditional_writes=True, conditional_delete=True, native_etags=True
    )

    def __init__(
        self,
        bucket: str,
        prefix: str = "",
        *,
        options: S3Options | None = None,
        read_only: bool = False,
        concurrency: int = DEFAULT_CONCURRENCY,
        max_object_size: int | None = DEFAULT_MAX_OBJECT_SIZE,
        **s3_options: Unpack[S3OptionsDict],
    ) -> None:
        super().__init__(
            read_only=read_only, concurrency=concurrency, max_object_size=max_object_size
        )
        self._bucket, self._prefix = parse_s3_url(f"s3://{bucket}/{prefix}")
        merged: dict[str, Any] = options.model_dump(exclude_unset=True) if options else {}
        merged.update(s3_options)
        self.options = S3Options.from_options(merged)
        if self.options.expected_bucket_owner is not None:
            raise ConfigurationError(
                "the obstore backend cannot send ExpectedBucketOwner on its requests; "
                "use backend='s3' (boto3) to have the bucket's owner checked"
            )
        self._endpoint = (
            self.options.endpoint_url
            or os.environ.get("AWS_ENDPOINT_URL_S3")
            or os.environ.get("AWS_ENDPOINT_URL")
        )
        session = self._boto3_session()
        try:
            self._store = _ObstoreS3(
                self._bucket,
                config=self._config(session),
                client_options=self._client_options(),
                retry_config=self._retry_config(),
                credential_provider=Boto3Credentials(session, self.url) if session else None,
            )
        except (oe.BaseError, ValueError) as exc:
            # obstore's text may echo configuration values; name the type only.
            raise ConfigurationError(
                f"cannot open {self.url} with obstore ({type(exc).__name__})"
            ) from exc
        # For conditional deletes (see _send_delete), made on the first one.
        self._opener: urllib.request.OpenerDirector | None = None
        logger.debug("opened %r", self)

    # -- configuration ----------------------------------------------------------------------

    def _config(self, session: boto3.Session | None) -> S3Config:
        opts = self.options
        config: S3Config = {
            # Explicit, so that AWS_CONDITIONAL_PUT=disabled in the environment cannot
            # turn compare-and-swap into a plain overwrite behind the manager's back.
            "conditional_put": "etag",
            # Signed payloads: S3 checks the body's SHA-256 against the signature and
            # refuses a body damaged on the way (obstore sends no other checksum).
            "unsigned_payload": False,
        }
        if self._endpoint is not None:
            config["endpoint"] = self._endpoint
        region = opts.region or (session.region_name if session is not None else None)
        if region is not None:
            config["region"] = region  # else obstore's: AWS_REGION, AWS_DEFAULT_REGION
        style = opts.addressing_style
        if style is None or style == "auto":
            # boto3's "auto": virtual-hosted on AWS unless the bucket name has dots (they
            # break the TLS wildcard certificate), path-style on other endpoints.
            on_aws = self._endpoint is None
            config["virtual_hosted_style_request"] = on_aws and "." not in self._bucket
        else:
            config["virtual_hosted_style_request"] = style == "virtual"
        if opts.sse is not None:
            config["server_side_encryption"] = opts.sse
            if opts.sse_kms_key_id is not None:
                config["sse_kms_key_id"] = opts.sse_kms_key_id
        return config

    def _client_options(self) -> ClientConfig:
        opts = self.options
        return {
            "allow_http": bool(self._endpoint and self._endpoint.lower().startswith("http://")),
            "connect_timeout": _duration(opts.connect_timeout),
            "read_timeout": _duration(opts.read_timeout),
            "timeout": _REQUEST_TIMEOUT,
            "pool_max_idle_per_host": str(opts.max_pool_connections or self.concurrency),
            "user_agent": f"documee-remote obstore/{obstore.__version__}",
        }

    def _retry_config(self) -> RetryConfig:
        return {"max_retries": self.options.max_attempts - 1}

    def _boto3_session(self) -> boto3.Session | None:
        """The boto3 session credentials come from, or None to leave them to obstore.

        obstore finds ``AWS_ACCESS_KEY_ID`` and friends, web identity, container
        and instance credentials itself, but no profiles, SSO or ``~/.aws``
        files, and assumes no roles. So, as :class:`~.s3.S3Store` would, boto3
        resolves them whenever ``profile`` or ``role_arn`` is given, or the
        environment holds no keys and boto3 is installed.
        """
        opts = self.options
        explicit = opts.profile is not None or opts.role_arn is not None
        if not explicit and (
            os.environ.get("AWS_ACCESS_KEY_ID") or importlib.util.find_spec("boto3") is None
        ):
            return None
        return build_session(opts)  # imports boto3; MissingDependencyError without

    @classmethod
    def from_url(
        cls,
        url: str,
        *,
        options: S3Options | None = None,
        read_only: bool = False,
        concurrency: int = DEFAULT_CONCURRENCY,
        max_object_size: int | None = DEFAULT_MAX_OBJECT_SIZE,
        **s3_options: Unpack[S3OptionsDict],
    ) -> ObstoreStore:
        """Open ``s3://bucket/prefix`` (``s3a://`` too); keyword arguments as the constructor's."""
        bucket, prefix = parse_s3_url(url)
        return cls(
            bucket,
            prefix,
            options=options,
            read_only=read_only,
            concurrency=concurrency,
            max_object_size=max_object_size,
            **s3_options,
        )

    # -- identity -------------------------------------------------------------------------

    def __repr__(self) -> str:
        extra = f", endpoint_url={self._endpoint!r}" if self._endpoint else ""
        if self._read_only:
            extra += ", read_only=True"
        return f"{type(self).__name__}({self.url!r}{extra})"

    # -- translating ----------------------------------------------------------------------

    def _error(
        self,
        exc: BaseException,
        operation: str,
        key: str | None,
        *,
        if_match: str | None = None,
        create_only: bool = False,
    ) -> DocumeeRemoteError:
        """:func:`translate_error`, plus telling a 403 that hides a 404 from a real one."""
        answer = answer_of(exc)
        if answer is None:
            return translate_error(
                exc,
                store_url=self.url,
                operation=operation,
                key=key,
                if_match=if_match,
                create_only=create_only,
            )
        return s3c.translate(
            self._unmask(answer, operation, key, if_match),
            self.url,
            operation,
            key,
            if_match=if_match,
            create_only=create_only,
        )

    def _unmask(
        self, answer: S3Answer, operation: str, key: str | None, if_match: str | None
    ) -> S3Answer:
        """S3's answer; a 403 that a prefix-scoped listing shows to hide a 404 becomes one."""
        if key is None or not s3c.may_hide_missing_key(answer, operation, key, if_match):
            return answer
        full = self._prefix + key
        try:
            present = any(meta["path"] == full for meta in self._raw_list(full))
        except (oe.BaseError, OSError):
            return answer  # cannot tell: keep the permission error
        return answer if present else s3c.missing_key(answer)

    # -- the operations ---------------------------------------------------------------------

    def _check_size(self, key: str, size: int) -> None:
        if self.max_object_size is not None and size > self.max_object_size:
            raise ObjectTooLargeError(
                f"{key!r} in {self.url} is {size} bytes, over this store's limit "
                f"of {self.max_object_size}",
                key=key,
            )

    def _stored(self, key: str, result: GetResult, data: bytes) -> StoredObject:
        etag = result.meta["e_tag"]
        return StoredObject(data=data, etag=normalize_etag(etag) if etag else etag_of(data))

    def _get_if_none_match(self, key: str, etag: str) -> StoredObject:
        # S3's 304 comes back as obstore's NotModifiedError: translated by _STATUS_OF.
        return self._get(key, {"if_none_match": etag})

    def _get(self, key: str, condition: dict[str, Any] | None = None) -> StoredObject:
        attempts = self.options.max_attempts
        for attempt in range(1, attempts + 1):
            try:
                result = obstore.get(self._store, self._prefix + key, options=condition)  # type: ignore[arg-type]
            except (oe.BaseError, OSError) as exc:
                raise self._error(exc, "get", key) from exc
            # The size is known from the response headers: refuse before reading the body.
            self._check_size(key, result.meta["size"])
            try:
                data = result.bytes().to_bytes()
            except (oe.BaseError, OSError) as exc:
                # The body broke off after the headers: a GET is idempotent, so read again.
                error = translate_error(exc, store_url=self.url, operation="get", key=key)
                if attempt == attempts or not isinstance(error, TransientError):
                    raise error from exc
                logger.debug("reading %r failed (%s); retrying", key, type(error).__name__)
                continue
            return self._stored(key, result, data)
        raise AssertionError("unreachable")  # pragma: no cover

    def _head(self, key: str) -> ObjectMeta:
        try:
            meta = obstore.head(self._store, self._prefix + key)
        except (oe.BaseError, OSError) as exc:
            raise self._error(exc, "head", key) from exc
        return self._meta(key, meta)

    @staticmethod
    def _meta(key: str, meta: ObstoreMeta) -> ObjectMeta:
        etag = meta["e_tag"]
        if etag is None:  # pragma: no cover - S3 always sends one
            raise ServiceUnavailableError(f"no ETag in the answer for {key!r}", key=key)
        return ObjectMeta(
            key=key,
            etag=normalize_etag(etag),
            size=meta["size"],
            last_modified=meta["last_modified"],
        )

    def _put_arguments(self, key: str, token: str | None) -> dict[str, Any]:
        """obstore's ``put`` arguments beyond the path, body and mode (cf. ``put_parameters``)."""
        attributes: dict[str, str] = {
            "Content-Type": "application/json"
            if key.endswith(".json")
            else "application/octet-stream"
        }
        if token is not None:
            attributes[WRITE_TOKEN_METADATA] = token  # any other name is user metadata
        arguments: dict[str, Any] = {
            "attributes": attributes,
            # One PUT, never a multipart upload: its ETag must be the MD5 of the bytes.
            "use_multipart": False,
        }
        kind = lifecycle_kind(key)
        if kind is not None:
            arguments["tags"] = {LIFECYCLE_TAG_KEY: kind}
        return arguments

    def _put(self, key: str, data: bytes, *, if_match: str | None, create_only: bool) -> str:
        token = uuid.uuid4().hex if if_match is not None or create_only else None
        mode: PutMode = (
            {"e_tag": if_match}
            if if_match is not None
            else "create"
            if create_only
            else "overwrite"
        )
        try:
            result = obstore.put(
                self._store, self._prefix + key, data, mode=mode, **self._put_arguments(key, token)
            )
        except (oe.BaseError, OSError) as exc:
            error = self._error(exc, "put", key, if_match=if_match, create_only=create_only)
            # obstore retries 5xx, 409 and dropped connections on its own; its text says
            # how often (unknown: assume it did, which costs one look and is always safe).
            retries = _retries(str(exc))
            resent = retries is None or retries > 0
            if token is not None and s3c.may_have_landed(error, resent=resent):
                landed = self._landed_etag(key, token)
                if landed is not None:
                    logger.info(s3c.LANDED_MESSAGE, key, self.url)
                    return landed
            raise error from exc
        etag = result["e_tag"]
        return normalize_etag(etag) if etag else etag_of(data)

    def _landed_etag(self, key: str, token: str) -> str | None:
        """The stored ETag if the object at ``key`` was written with ``token``, else None."""
        try:
            # A HEAD request (the "head" option) that, unlike obstore.head, returns the
            # object's user metadata.
            result = obstore.get(self._store, self._prefix + key, options={"head": True})
        except (oe.BaseError, OSError):
            return None
        etag = result.meta["e_tag"]
        if result.attributes.get(WRITE_TOKEN_METADATA) == token and etag:
            return normalize_etag(etag)
        return None

    def _delete(self, key: str, *, if_match: str | None) -> None:
        if if_match is not None:
            self._delete_if_match(key, if_match)
            return
        try:
            obstore.delete(self._store, self._prefix + key)
        except FileNotFoundError:
            return  # deleting a missing key is a no-op, as on S3
        except (oe.BaseError, OSError) as exc:
            raise self._error(exc, "delete", key) from exc

    def _delete_if_match(self, key: str, if_match: str) -> None:
        """S3's conditional DeleteObject, sent as a presigned request with ``If-Match``.

        obstore has no conditional delete, but it signs URLs with its own
        credentials; ``If-Match`` is a standard header, which S3 accepts on a
        presigned request without it being signed. Retried here as botocore
        would (5xx, 429, no answer), and a retry that finds the key gone is our
        own earlier attempt that landed (:func:`._s3common.delete_landed`).
        """
        attempts = self.options.max_attempts
        answer: S3Answer | None = None
        for attempt in range(attempts):
            if attempt:
                time.sleep(_backoff(attempt))
            try:
                url = obstore.sign(self._store, "DELETE", self._prefix + key, _PRESIGN_FOR)
            except (oe.BaseError, ValueError) as exc:
                raise self._error(exc, "delete", key, if_match=if_match) from exc
            try:
                status, body = self._send_delete(url, if_match)
            except (OSError, http.client.HTTPException) as exc:  # URLError is an OSError
                if attempt + 1 < attempts:
                    logger.debug("conditional delete of %r got no answer; retrying", key)
                    continue
                timed_out = isinstance(exc, TimeoutError) or isinstance(
                    getattr(exc, "reason", None), TimeoutError
                )
                cls = StorageTimeoutError if timed_out else ServiceUnavailableError
                raise cls(
                    f"deleting {s3c.where(self.url, key)} failed ({type(exc).__name__} "
                    "after retries)",
                    key=key,
                ) from exc
            if 200 <= status < 300:
                return
            code = _CODE_RE.search(body)
            message = _MESSAGE_RE.search(body)
            answer = S3Answer(
                code=code.group(1) if code else "",
                status=status,
                retries=attempt,
                message=message.group(1) if message else "",
            )
            if status not in _RETRY_STATUS or attempt + 1 == attempts:
                break
            logger.debug("conditional delete of %r answered %d; retrying", key, status)
        assert answer is not None
        answer = self._unmask(answer, "delete", key, if_match)
        if s3c.delete_landed(answer, if_match=if_match):
            logger.info("conditional delete of %r in %s landed on a retry", key, self.url)
            return
        raise s3c.translate(answer, self.url, "delete", key, if_match=if_match)

    def _send_delete(self, url: str, if_match: str) -> tuple[int, str]:
        """Send one presigned DELETE; (status, the start of the body as text).

        Through urllib, so that ``HTTPS_PROXY``/``NO_PROXY`` apply as they do
        to obstore's own requests; redirects are not followed (a DELETE is
        never redirected by urllib), S3's 301/307 then says "wrong region".
        """
        if self._opener is None:
            cafile = os.environ.get("AWS_CA_BUNDLE") or None  # boto3's variable, honoured too
            context = ssl.create_default_context(cafile=cafile)  # loading CAs costs ms: once
            self._opener = urllib.request.build_opener(urllib.request.HTTPSHandler(context=context))
        if not url.startswith(("https://", "http://")):  # pragma: no cover - obstore's own URL
            raise ConfigurationError(f"obstore signed a URL that is not http(s) for {self.url}")
        # S310: checked just above to be an http(s) URL, of the store's own endpoint.
        request = urllib.request.Request(  # noqa: S310
            url, method="DELETE", headers={"If-Match": if_match}
        )
        timeout = self.options.connect_timeout + self.options.read_timeout
        try:
            with self._opener.open(request, timeout=timeout) as response:
                # S3's answers here are small; never read an unbounded body.
                return response.status, response.read(65536).decode("utf-8", "replace")
        except urllib.error.HTTPError as exc:
            with exc:
                return exc.code, exc.read(65536).decode("utf-8", "replace")

    def _raw_list(self, full_prefix: str, offset: str | None = None) -> Iterator[ObstoreMeta]:
        """obstore's listing of every key starting with ``full_prefix`` (prefix included).

        obstore lists by directory (``a/b`` means ``a/b/...``); S3 prefixes are
        plain strings. List the deepest directory the prefix names completely
        and keep what starts with it; S3 answers in key order, so the listing
        stops at the first key past the prefix.
        """
        directory = full_prefix.rpartition("/")[0]
        started = False
        for chunk in obstore.list(self._store, directory or None, offset=offset, chunk_size=1000):
            for meta in chunk:
                path = meta["path"]
                if path.startswith(full_prefix):
                    started = True
                    yield meta
                elif started and path > full_prefix:
                    return

    def _list(self, prefix: str) -> Iterator[str]:
        return (meta.key for meta in self._list_meta(prefix))

    def _list_meta(self, prefix: str) -> Iterator[ObjectMeta]:
        return self._list_meta_after(prefix, None)

    def _list_meta_after(self, prefix: str, start_after: str | None) -> Iterator[ObjectMeta]:
        strip = len(self._prefix)
        offset = self._prefix + start_after if start_after else None
        listing = self._raw_list(self._prefix + prefix, offset)
        while True:
            try:
                meta = next(listing, None)
            except (oe.BaseError, OSError) as exc:
                raise self._error(exc, "list", None) from exc
            if meta is None:
                return
            key = meta["path"][strip:]
            # obstore normalises the offset as a path (a trailing "/" goes), so this
            # can start a little early: Store.list_meta drops what precedes start_after.
            try:
                validate_key(key)
            except InvalidKeyError:
                # "folder/" markers made by consoles and other tools' names: not ours.
                logger.debug("listing %s skips %r: not a valid key", self.url, key)
                continue
            yield self._meta(key, meta)

    # -- bulk -------------------------------------------------------------------------------

    def _run(self, make: Callable[[], Awaitable[_T]]) -> _T:
        """Run a coroutine to completion from synchronous code, on a loop of its own."""
        return run_sync(make, thread_name="documee-obstore")

    async def _gather(self, jobs: list[Callable[[], Awaitable[_T]]]) -> list[_T]:
        """Await every job, ``concurrency`` at a time; then raise the first error."""
        return await gather_bounded((job() for job in jobs), self.concurrency)

    def _put_many(self, items: dict[str, bytes]) -> dict[str, str]:
        keys = list(items)
        if len(keys) <= 1:
            return super()._put_many(items)

        def job(key: str) -> Callable[[], Awaitable[str]]:
            async def put() -> str:
                data = items[key]
                try:
                    result = await obstore.put_async(
                        self._store, self._prefix + key, data, **self._put_arguments(key, None)
                    )
                except (oe.BaseError, OSError) as exc:
                    raise self._error(exc, "put", key) from exc
                etag = result["e_tag"]
                return normalize_etag(etag) if etag else etag_of(data)

            return put

        etags = self._run(lambda: self._gather([job(k) for k in keys]))
        return dict(zip(keys, etags, strict=True))

    def _get_many(self, keys: list[str]) -> dict[str, StoredObject | None]:
        if len(keys) <= 1:
            return super()._get_many(keys)

        def job(key: str) -> Callable[[], Awaitable[StoredObject | None]]:
            async def get() -> StoredObject | None:
                try:
                    result = await obstore.get_async(self._store, self._prefix + key)
                except (oe.BaseError, OSError) as exc:
                    error = self._error(exc, "get", key)
                    if isinstance(error, NotFoundError):
                        return None
                    raise error from exc
                self._check_size(key, result.meta["size"])
                try:
                    data = (await result.bytes_async()).to_bytes()
                except (oe.BaseError, OSError):
                    # The body broke off after the headers: the synchronous path reads
                    # the object again, with its retries (a GET is idempotent).
                    return await asyncio.to_thread(self._get_or_none, key)
                return self._stored(key, result, data)

            return get

        found = self._run(lambda: self._gather([job(k) for k in keys]))
        return dict(zip(keys, found, strict=True))

    def _get_or_none(self, key: str) -> StoredObject | None:
        try:
            return self._get(key)
        except NotFoundError:
            return None

    def _delete_many(self, keys: list[str], conditions: dict[str, str]) -> list[str]:
        """Unconditional deletes in DeleteObjects batches; conditional ones one by one."""
        plain = [self._prefix + k for k in keys if k not in conditions]
        if plain:
            try:
                # obstore batches these into DeleteObjects requests of up to 1,000 keys.
                obstore.delete(self._store, plain)
            except (oe.BaseError, OSError) as exc:
                raise self._error(exc, "delete", None) from exc
        conditional = [k for k in keys if k in conditions]
        return super()._delete_many(conditional, conditions) if conditional else []

    # -- lifecycle --------------------------------------------------------------------------

    def close(self) -> None:
        """Forget the client; obstore's connections close when it is dropped. Safe twice."""
        super().close()
