"""S3Store: Amazon S3 (and S3-compatible services) through boto3.

Every key lives under ``s3://<bucket>/<prefix>``; the prefix is added on the
way in and stripped from listings, so a store on ``s3://b/team-a/`` cannot
name anything under ``team-b/``.

Conditional writes are S3's own (``If-Match`` / ``If-None-Match: *`` on
PutObject, ``If-Match`` on DeleteObject): a real compare-and-swap. Two things
make them safe over a network that loses responses:

* Every conditional PUT carries a random token in its metadata
  (``x-amz-meta-documee-write-token``). When a PUT that botocore retried
  fails with 412 or 409 (or fails with a connection error, timeout or 5xx once
  retries ran out), the store reads the object's metadata back: if the token
  is ours, an earlier attempt of this very call landed and only its response
  was lost, so the write is reported as a success with the stored ETag instead
  of as a lost race.
* botocore's retries (``max_attempts``, ``retry_mode``) cover 5xx, throttling
  and dropped connections; errors are translated only once they ran out.

What S3's answers mean (the error tables, the 403 that hides a 404, the write
token) is shared with the fsspec backend in :mod:`._s3common`; this module only
reads botocore's exceptions (:func:`translate_error`).
"""

from __future__ import annotations

import functools
import logging
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, Unpack

from ..config import S3_INSTALL_HINT, S3Options, S3OptionsDict, build_s3_client
from ..errors import (
    ConfigurationError,
    DocumeeRemoteError,
    InvalidKeyError,
    MissingDependencyError,
    ObjectTooLargeError,
    PreconditionFailedError,
)
from . import _s3common as s3c
from ._keys import validate_key
from ._s3common import (
    ERROR_CODES,
    STATUS_FALLBACK,
    WRITE_TOKEN_METADATA,
    S3Answer,
    error_class,
)
from .base import (
    DEFAULT_CONCURRENCY,
    DEFAULT_MAX_OBJECT_SIZE,
    Capabilities,
    ObjectMeta,
    Store,
    StoredObject,
    normalize_etag,
)

try:
    import boto3
    from botocore import exceptions as bce
    from botocore.utils import determine_content_length
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

# Creating a client from a session the caller handed us: boto3 sessions are not
# thread-safe, and a caller may open several stores from one session at once.
_CLIENT_LOCK = threading.Lock()

#: botocore's own exceptions and what each becomes (shared with the fsspec backend).
EXCEPTION_TYPES = s3c.botocore_exception_types()


def _answer(exc: bce.ClientError) -> S3Answer:
    return s3c.answer_from_response(exc.response, exc.operation_name)


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

    ``exc`` is a ``ClientError`` (translated by :func:`._s3common.translate`)
    or a ``BotoCoreError``; ``operation`` is ``get``, ``head``, ``put``,
    ``delete`` or ``list``; ``if_match`` and ``create_only`` are the write's
    condition. Messages name the key and the store and never contain
    credentials, header values or object bodies; the botocore exception stays
    attached by the caller's ``raise ... from exc``.
    """
    if isinstance(exc, bce.ClientError):
        answer = _answer(exc)
        return s3c.translate(
            answer, store_url, operation, key, if_match=if_match, create_only=create_only
        )
    error = s3c.botocore_error(exc, store_url=store_url, operation=operation, key=key)
    if error is not None:
        return error
    doing = s3c.doing(operation)
    return DocumeeRemoteError(
        f"{doing} {s3c.where(store_url, key)} failed ({type(exc).__name__})", key=key
    )


#: Below this size a PUT goes without ``Expect: 100-continue`` (see below).
EXPECT_CONTINUE_MIN_BYTES = 1 << 20


def _no_expect_for_small_bodies(params: dict[str, Any], **_: Any) -> None:
    """Take botocore's ``Expect: 100-continue`` off PUTs of small bodies.

    botocore turns every PutObject body into a file object, and then every one
    waits for the server's ``100 Continue`` before its body is sent: one more
    round trip per PUT (a whole second where a proxy never answers 100), for
    per-file objects of a few KB where being refused before the body is sent
    saves nothing. Large bodies (a big ``analysis.json``, whose conditional PUT
    may well be refused with 412) keep it. The body is sent as before, with its
    Content-Length and payload checksums, so nothing about integrity changes.
    """
    headers = params.get("headers")
    if not headers or "Expect" not in headers:
        return
    size = determine_content_length(params.get("body"))
    if size is not None and size < EXPECT_CONTINUE_MIN_BYTES:
        del headers["Expect"]


# Read failures of a GetObject body: botocore's retries stop at the response
# headers, so the store retries these itself (a GET is idempotent).
_BODY_ERRORS = (
    bce.IncompleteReadError,
    bce.ResponseStreamingError,
    bce.ReadTimeoutError,
    bce.FlexibleChecksumError,
    bce.ChecksumError,
)


class S3Store(s3c.S3Location, Store):
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
        max_object_size: int | None = DEFAULT_MAX_OBJECT_SIZE,
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
        # Last, so that it runs after botocore's own handler has added the header.
        self._client.meta.events.register_last("before-call.s3", _no_expect_for_small_bodies)
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
        max_object_size: int | None = DEFAULT_MAX_OBJECT_SIZE,
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
    def _translating(self, operation: str, key: str | None) -> Iterator[None]:
        try:
            yield
        except (bce.ClientError, bce.BotoCoreError) as exc:
            raise self._translate(exc, operation, key) from exc

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
        if not isinstance(exc, bce.ClientError):
            return translate_error(exc, store_url=self.url, operation=operation, key=key)
        answer = self._answer(exc, operation, key, if_match)
        return s3c.translate(
            answer, self.url, operation, key, if_match=if_match, create_only=create_only
        )

    def _answer(
        self, exc: bce.ClientError, operation: str, key: str | None, if_match: str | None
    ) -> S3Answer:
        """S3's answer; a 403 that a prefix-scoped listing shows to hide a 404 becomes one."""
        answer = _answer(exc)
        if key is not None and s3c.may_hide_missing_key(answer, operation, key, if_match):
            full = self._prefix + key
            try:
                listing = self._client.list_objects_v2(
                    Bucket=self._bucket, Prefix=full, MaxKeys=1, **self._owner
                )
            except (bce.ClientError, bce.BotoCoreError):
                return answer  # cannot tell: keep the permission error
            if s3c.listing_shows_absent(listing, full):
                return s3c.missing_key(answer)
        return answer

    def _get_if_none_match(self, key: str, etag: str) -> StoredObject:
        # S3 answers 304 without a body; the error table turns it into NotModifiedError.
        return self._get(key, {"IfNoneMatch": etag})

    def _get(self, key: str, condition: dict[str, Any] | None = None) -> StoredObject:
        attempts = self.options.max_attempts
        for attempt in range(1, attempts + 1):
            with self._translating("get", key):
                response = self._client.get_object(
                    Bucket=self._bucket, Key=self._prefix + key, **self._owner, **(condition or {})
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
        extra, token = s3c.put_parameters(key, if_match=if_match, create_only=create_only)
        try:
            response = self._client.put_object(
                Bucket=self._bucket,
                Key=self._prefix + key,
                Body=data,
                **extra,
                **self._sse,
                **self._owner,
            )
        except (bce.ClientError, bce.BotoCoreError) as exc:
            error = self._translate(exc, "put", key, if_match=if_match, create_only=create_only)
            resent = isinstance(exc, bce.ClientError) and _answer(exc).retries > 0
            if token is not None and s3c.may_have_landed(error, resent=resent):
                landed = self._landed_etag(key, token)
                if landed is not None:
                    logger.info(s3c.LANDED_MESSAGE, key, self.url)
                    return landed
            raise error from exc
        return normalize_etag(response["ETag"])

    def _landed_etag(self, key: str, token: str) -> str | None:
        """The stored ETag if the object at ``key`` was written with ``token``, else None."""
        try:
            response = self._client.head_object(
                Bucket=self._bucket, Key=self._prefix + key, **self._owner
            )
        except (bce.ClientError, bce.BotoCoreError):
            return None
        return s3c.landed_etag(response, token)

    def _delete(self, key: str, *, if_match: str | None) -> None:
        params: dict[str, Any] = {"Bucket": self._bucket, "Key": self._prefix + key, **self._owner}
        if if_match is not None:
            params["IfMatch"] = if_match
        try:
            self._client.delete_object(**params)
        except bce.ClientError as exc:
            answer = self._answer(exc, "delete", key, if_match)
            if s3c.delete_landed(answer, if_match=if_match):
                logger.info("conditional delete of %r in %s landed on a retry", key, self.url)
                return
            raise s3c.translate(answer, self.url, "delete", key, if_match=if_match) from exc
        except bce.BotoCoreError as exc:
            raise self._translate(exc, "delete", key, if_match=if_match) from exc

    def _list(self, prefix: str) -> Iterator[str]:
        return (meta.key for meta in self._list_meta(prefix))

    def _list_meta(self, prefix: str) -> Iterator[ObjectMeta]:
        return self._list_meta_after(prefix, None)

    def _list_meta_after(self, prefix: str, start_after: str | None) -> Iterator[ObjectMeta]:
        # ListObjectsV2 returns each key's ETag, size and time: no HEAD per key.
        paginator = self._client.get_paginator("list_objects_v2")
        pages = iter(
            paginator.paginate(
                Bucket=self._bucket,
                Prefix=self._prefix + prefix,
                StartAfter=self._prefix + start_after if start_after else "",
                **self._owner,
            )
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
            functools.partial(self._delete_batch, plain[i : i + s3c.DELETE_BATCH])
            for i in range(0, len(plain), s3c.DELETE_BATCH)
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
            if _answer(exc).code in s3c.DELETE_OBJECTS_UNSUPPORTED:
                logger.debug("DeleteObjects unsupported by %s; deleting one by one", self.url)
                for key in keys:
                    self._delete(key, if_match=None)
                return []
            raise translate_error(exc, store_url=self.url, operation="delete") from exc
        except bce.BotoCoreError as exc:
            raise translate_error(exc, store_url=self.url, operation="delete") from exc
        error = s3c.delete_objects_error(
            response.get("Errors", []), batch=len(keys), prefix=self._prefix, store_url=self.url
        )
        if error is not None:
            raise error
        return []

    # -- lifecycle --------------------------------------------------------------------------

    def close(self) -> None:
        """Close the client's connection pool. Safe to call twice."""
        if not self._closed:
            self._client.close()
        super().close()


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
