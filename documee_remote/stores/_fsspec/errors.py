"""How every filesystem's failure becomes an error of the library's tree."""

from __future__ import annotations

import errno
import sys

from ...errors import (
    DocumeeRemoteError,
    InvalidKeyError,
    MissingDependencyError,
    NotFoundError,
    PermissionDeniedError,
    PreconditionFailedError,
    ServiceUnavailableError,
    StorageFullError,
    StorageTimeoutError,
)
from .. import _s3common as s3c
from .._s3common import S3Answer

#: What to run when fsspec is missing.
FSSPEC_INSTALL_HINT = "pip install 'documee-remote[fsspec]'"

try:
    import fsspec
except ImportError as _exc:  # pragma: no cover - exercised only without the extra
    raise MissingDependencyError(f"FsspecStore needs fsspec: {FSSPEC_INSTALL_HINT}") from _exc

# -- error translation ---------------------------------------------------------------------------


def _s3_answer(exc: BaseException) -> S3Answer | None:
    """S3's answer behind ``exc``, if there is one.

    s3fs (and fsspec wrappers around it) re-raise S3's answers as OSError
    subclasses with the original ClientError as ``__cause__``; follow the
    chain so that the status code, not the collapsed errno, decides.
    """
    botocore_exceptions = sys.modules.get("botocore.exceptions")
    if botocore_exceptions is None:
        return None
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, botocore_exceptions.ClientError):
            call = str(getattr(current, "operation_name", "") or "")
            return s3c.answer_from_response(getattr(current, "response", None) or {}, call)
        current = current.__cause__ or current.__context__
    return None


def translate_error(
    exc: BaseException,
    *,
    store_url: str,
    operation: str,
    key: str | None = None,
    if_match: str | None = None,
    create_only: bool = False,
) -> DocumeeRemoteError:
    """Turn any filesystem's failure into the library's error tree.

    Every driver of :class:`FsspecStore` sends its exceptions here and raises
    the result ``from exc``; the arguments are those of
    ``documee_remote.stores.s3.translate_error``. S3's answers and botocore's
    exceptions are translated by :mod:`._s3common` exactly as for ``S3Store``;
    aiohttp's, timeouts and other filesystems' ``OSError`` are mapped by type.
    The result never contains object bodies or credentials.
    """
    if isinstance(exc, DocumeeRemoteError):
        return exc
    answer = _s3_answer(exc)
    if answer is not None:
        return s3c.translate(
            answer, store_url, operation, key, if_match=if_match, create_only=create_only
        )
    error = s3c.botocore_error(exc, store_url=store_url, operation=operation, key=key)
    if error is not None:
        return error
    at = s3c.where(store_url, key)
    if isinstance(exc, TimeoutError | fsspec.exceptions.FSTimeoutError):
        return StorageTimeoutError(f"timed out {s3c.doing(operation)} {at}", key=key)
    aiohttp = sys.modules.get("aiohttp")
    if aiohttp is not None and isinstance(exc, aiohttp.ClientError):
        # Dropped connections and truncated bodies while streaming a response.
        return ServiceUnavailableError(
            f"connection to the store failed on {at} ({type(exc).__name__})", key=key
        )
    if isinstance(exc, FileNotFoundError):
        if operation in ("put", "delete") and if_match is not None:
            return PreconditionFailedError(f"{at} does not exist (If-Match)", key=key)
        return NotFoundError(f"{at} not found", key=key)
    if isinstance(exc, PermissionError):
        return PermissionDeniedError(f"permission denied for {at}", key=key)
    if isinstance(exc, FileExistsError | IsADirectoryError | NotADirectoryError):
        # Filesystems with real directories cannot hold both "cb/a" and "cb/a/b".
        return InvalidKeyError(
            f"{at} cannot be stored on this filesystem: a key and a directory of the "
            "same name cannot both exist",
            key=key,
        )
    if isinstance(exc, ConnectionError):
        return ServiceUnavailableError(f"connection to the store failed on {at}: {exc}", key=key)
    if isinstance(exc, OSError):
        if exc.errno in (errno.ENOSPC, errno.EDQUOT):
            return StorageFullError(f"no space left for {at}", key=key)
        return DocumeeRemoteError(f"storage failed for {at}: {exc}", key=key)
    return DocumeeRemoteError(f"storage failed for {at}: {type(exc).__name__}: {exc}", key=key)
