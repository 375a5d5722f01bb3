"""The s3fs driver: S3's own conditional headers through the aiobotocore client s3fs configured."""

from __future__ import annotations

import itertools
import logging
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from ...errors import (
    ConfigurationError,
    DocumeeRemoteError,
    InvalidKeyError,
    NotFoundError,
    ObjectTooLargeError,
    PreconditionFailedError,
    UnsupportedOperationError,
)
from .. import _s3common as s3c
from .._keys import validate_key
from .._s3common import DELETE_BATCH, S3Answer
from ..base import (
    Capabilities,
    ObjectMeta,
    StoredObject,
    normalize_etag,
)
from .drivers import _Driver, _to_datetime
from .errors import _s3_answer

if TYPE_CHECKING:
    from .store import FsspecStore

logger = logging.getLogger("documee_remote.stores.fsspec")


class _S3Driver(_Driver):
    """s3fs: S3's own conditional headers, native ETags, bulk requests gathered on s3fs's loop."""

    capabilities = Capabilities(
        atomic_conditional_writes=True, conditional_delete=True, native_etags=True
    )

    def __init__(self, store: FsspecStore) -> None:
        super().__init__(store)
        if getattr(self.fs, "asynchronous", False):
            raise ConfigurationError(
                "FsspecStore needs a synchronous S3FileSystem (asynchronous=False)"
            )
        bucket, prefix, _ = self.fs.split_path(store._root)
        if not bucket:
            raise ConfigurationError(f"{store.url}: an s3 URL needs a bucket")
        self.bucket: str = bucket
        self.prefix: str = prefix.strip("/") + "/" if prefix.strip("/") else ""

    # -- plumbing -----------------------------------------------------------------

    async def call(self, method: str, **kwargs: Any) -> Any:
        """Call the aiobotocore client s3fs configured, with no retry layer of s3fs's own.

        s3fs's ``s3_additional_kwargs`` (SSE, ExpectedBucketOwner) are added
        and filtered to what the operation accepts, as s3fs itself does.
        """
        await self.fs.set_session()
        client = await self.fs.get_s3(kwargs.get("Bucket"))
        bound = getattr(client, method)
        final = self.fs._get_s3_method_kwargs(bound, **kwargs)
        for condition in ("IfMatch", "IfNoneMatch"):
            # s3fs drops parameters the client does not know; an old botocore
            # must not turn a conditional request into an unconditional one.
            if condition in kwargs and condition not in final:
                raise UnsupportedOperationError(
                    f"this botocore does not know {condition} for {method}; upgrade botocore"
                )
        return await bound(**final)

    def s3_key(self, key: str) -> str:
        return self.prefix + key

    async def answer(
        self, exc: BaseException, key: str | None, operation: str, if_match: str | None
    ) -> S3Answer | None:
        """S3's answer behind ``exc``; a 403 a prefix listing shows to hide a 404 becomes one."""
        answer = _s3_answer(exc)
        if answer is None or key is None:
            return answer
        if s3c.may_hide_missing_key(answer, operation, key, if_match):
            full = self.s3_key(key)
            try:
                listing = await self.call(
                    "list_objects_v2", Bucket=self.bucket, Prefix=full, MaxKeys=1
                )
            except Exception:  # noqa: BLE001 - cannot tell: keep the permission error
                return answer
            if s3c.listing_shows_absent(listing, full):
                return s3c.missing_key(answer)
        return answer

    async def s3_error(
        self,
        exc: BaseException,
        key: str | None,
        operation: str,
        *,
        if_match: str | None = None,
        create_only: bool = False,
    ) -> DocumeeRemoteError:
        """``translate_error``, plus telling a 403 that hides a 404 from a real one."""
        answer = await self.answer(exc, key, operation, if_match)
        if answer is None:
            return self.error(exc, key, operation, if_match=if_match, create_only=create_only)
        url = self.store.url
        return s3c.translate(
            answer, url, operation, key, if_match=if_match, create_only=create_only
        )

    # -- single objects -----------------------------------------------------------------

    async def aget(self, key: str, condition: dict[str, Any] | None = None) -> StoredObject:
        # One GetObject: the ETag comes with exactly the bytes it describes.
        # ``condition``: {"IfNoneMatch": etag}, S3's conditional GET through s3fs's
        # own client (s3fs's cat_file has no way to send it); 304 -> NotModifiedError.
        try:
            response = await self.call(
                "get_object", Bucket=self.bucket, Key=self.s3_key(key), **(condition or {})
            )
            body = response["Body"]
            try:
                size = int(response.get("ContentLength") or 0)
                limit = self.store.max_object_size
                if limit is not None and size > limit:
                    raise ObjectTooLargeError(
                        f"{key!r} is {size} bytes, over this store's limit of {limit}", key=key
                    )
                data = bytes(await body.read())
            finally:
                body.close()
        except DocumeeRemoteError:
            raise
        except Exception as exc:
            raise await self.s3_error(exc, key, "get") from exc
        return StoredObject(data=data, etag=normalize_etag(response["ETag"]))

    async def aget_or_none(self, key: str) -> StoredObject | None:
        try:
            return await self.aget(key)
        except NotFoundError:
            return None

    async def ahead(self, key: str) -> ObjectMeta:
        try:
            response = await self.call("head_object", Bucket=self.bucket, Key=self.s3_key(key))
        except DocumeeRemoteError:
            raise
        except Exception as exc:
            raise await self.s3_error(exc, key, "head") from exc
        return ObjectMeta(
            key=key,
            etag=normalize_etag(response["ETag"]),
            size=int(response["ContentLength"]),
            last_modified=_to_datetime(response["LastModified"]) or datetime.now(UTC),
        )

    async def aput(self, key: str, data: bytes, if_match: str | None, create_only: bool) -> str:
        # put_object rather than s3fs's _pipe_file: _pipe_file switches to a
        # multipart upload for large bodies, which drops IfMatch and returns no ETag.
        extra, token = s3c.put_parameters(key, if_match=if_match, create_only=create_only)
        if token is not None:  # keep s3_additional_kwargs' metadata: ours would replace it
            extra["Metadata"] = {
                **self.fs.s3_additional_kwargs.get("Metadata", {}),
                **extra["Metadata"],
            }
        try:
            response = await self.call(
                "put_object", Bucket=self.bucket, Key=self.s3_key(key), Body=data, **extra
            )
        except DocumeeRemoteError:
            raise
        except Exception as exc:
            error = await self.s3_error(exc, key, "put", if_match=if_match, create_only=create_only)
            # resent=True: besides botocore's counted retries, aiohttp silently resends
            # an idempotent request (PUT is one) when a reused connection drops, so any
            # copy may have been sent twice; each such failure costs one HEAD.
            if token is not None and s3c.may_have_landed(error, resent=True):
                landed = await self._landed_etag(key, token)
                if landed is not None:
                    logger.info(s3c.LANDED_MESSAGE, key, self.store.url)
                    return landed
            raise error from exc
        return normalize_etag(response["ETag"])

    async def _landed_etag(self, key: str, token: str) -> str | None:
        try:
            response = await self.call("head_object", Bucket=self.bucket, Key=self.s3_key(key))
        except Exception:  # noqa: BLE001 - the original 412 is the error to report
            return None
        return s3c.landed_etag(response, token)

    async def adelete(self, key: str, if_match: str | None) -> None:
        conditions = {"IfMatch": if_match} if if_match is not None else {}
        try:
            await self.call("delete_object", Bucket=self.bucket, Key=self.s3_key(key), **conditions)
        except DocumeeRemoteError:
            raise
        except Exception as exc:
            answer = await self.answer(exc, key, "delete", if_match)
            if answer is None:
                raise self.error(exc, key, "delete", if_match=if_match) from exc
            if s3c.delete_landed(answer, if_match=if_match):
                logger.info("conditional delete of %r in %s landed on a retry", key, self.store.url)
                return
            raise s3c.translate(answer, self.store.url, "delete", key, if_match=if_match) from exc

    def get(self, key: str) -> StoredObject:
        return self.run(self.aget, key)

    def get_if_none_match(self, key: str, etag: str) -> StoredObject:
        return self.run(self.aget, key, {"IfNoneMatch": etag})

    def head(self, key: str) -> ObjectMeta:
        return self.run(self.ahead, key)

    def put(self, key: str, data: bytes, if_match: str | None, create_only: bool) -> str:
        return self.run(self.aput, key, data, if_match, create_only)

    def delete(self, key: str, if_match: str | None) -> None:
        self.run(self.adelete, key, if_match)

    # -- listing ------------------------------------------------------------------------

    async def alist(self, prefix: str) -> list[ObjectMeta]:
        found: list[ObjectMeta] = []
        kwargs: dict[str, Any] = {"Bucket": self.bucket, "Prefix": self.prefix + prefix}
        try:
            while True:
                page = await self.call("list_objects_v2", **kwargs)
                for item in page.get("Contents", ()):
                    key = item["Key"][len(self.prefix) :]
                    try:
                        validate_key(key)
                    except InvalidKeyError:
                        # Directory markers ("x/"), temporary files (".x") and other
                        # tools' odd names are not objects of this store.
                        continue
                    found.append(
                        ObjectMeta(
                            key=key,
                            etag=normalize_etag(item["ETag"]),
                            size=int(item["Size"]),
                            last_modified=_to_datetime(item["LastModified"]) or datetime.now(UTC),
                        )
                    )
                token = page.get("NextContinuationToken")
                if not page.get("IsTruncated") or not token:
                    break
                kwargs["ContinuationToken"] = token
        except DocumeeRemoteError:
            raise
        except Exception as exc:
            raise self.error(exc, None, "list") from exc
        found.sort(key=lambda meta: meta.key)  # S3 lists in this order; S3-compatibles may not
        return found

    def list_keys(self, prefix: str) -> list[str]:
        return [meta.key for meta in self.run(self.alist, prefix)]

    def list_meta(self, prefix: str) -> list[ObjectMeta] | None:
        # ListObjectsV2 returns ETag, size and time with each key: no HEAD per object.
        return self.run(self.alist, prefix)

    # -- bulk ---------------------------------------------------------------------------

    def get_many(self, keys: list[str]) -> dict[str, StoredObject | None]:
        return dict(zip(keys, self.gather(self.aget_or_none(k) for k in keys), strict=True))

    def put_many(self, items: dict[str, bytes]) -> dict[str, str]:
        etags = self.gather(self.aput(k, v, None, False) for k, v in items.items())
        return dict(zip(items, etags, strict=True))

    def delete_many(self, keys: list[str], conditions: dict[str, str]) -> list[str] | None:
        plain = [k for k in keys if k not in conditions]
        batches = [plain[i : i + DELETE_BATCH] for i in range(0, len(plain), DELETE_BATCH)]
        conditional = [k for k in keys if k in conditions]

        async def conditional_delete(key: str) -> str | None:
            try:
                await self.adelete(key, conditions[key])
            except PreconditionFailedError:
                return key  # changed or vanished: kept, and reported to the caller
            return None

        results = self.gather(
            itertools.chain(
                (self._delete_batch(b) for b in batches),
                (conditional_delete(k) for k in conditional),
            )
        )
        return [r for r in results if r is not None]

    async def _delete_batch(self, batch: list[str]) -> None:
        objects = [{"Key": self.s3_key(k)} for k in batch]
        try:
            response = await self.call(
                "delete_objects", Bucket=self.bucket, Delete={"Objects": objects, "Quiet": True}
            )
        except DocumeeRemoteError:
            raise
        except Exception as exc:
            answer = _s3_answer(exc)
            if answer is not None and answer.code in s3c.DELETE_OBJECTS_UNSUPPORTED:
                for key in batch:
                    await self.adelete(key, None)
                return
            raise self.error(exc, None, "delete") from exc
        errors = response.get("Errors", ())
        url = self.store.url
        error = s3c.delete_objects_error(
            errors, batch=len(batch), prefix=self.prefix, store_url=url
        )
        if error is not None:
            raise error

    def close(self) -> None:
        if not self.store._owns_fs:
            return
        creator = getattr(self.fs, "_s3creator", None)
        if getattr(self.fs, "_s3", None) is not None and creator is not None:
            # Close the connection pool now rather than at garbage collection.
            try:
                self.fs.close_session(self.fs.loop, creator)
            finally:
                self.fs._s3 = None
