"""The one error tree of documee-remote.

Every backend translates its own failures (``OSError``, botocore's
``ClientError``, fsspec's exceptions) into these types at its boundary, with
``raise ... from exc`` so the original stays attached as ``__cause__``.
Callers catch these and never a dependency's exception::

    DocumeeRemoteError
    ├── NotFoundError                 (also FileNotFoundError)
    ├── NotModifiedError              a conditional GET found the ETag it named: keep your copy
    ├── PreconditionFailedError       a conditional write or delete lost: stale If-Match
    │   └── AlreadyExistsError        If-None-Match="*" on an existing key (also FileExistsError)
    ├── ConflictError                 concurrent writers collided
    │   ├── ConditionalRequestConflictError   S3's 409; retryable (also TransientError)
    │   └── TooManyConflictsError     a transaction gave up; carries .attempts
    ├── InvalidKeyError               a bad codebase id, file path or key (also ValueError)
    ├── CorruptObjectError            bytes that do not parse or validate (also ValueError)
    ├── ObjectTooLargeError           refused before the body was read
    ├── PermissionDeniedError         the store said no (also PermissionError)
    ├── StorageFullError              the disk or quota is full; nothing was half-written
    ├── ReadOnlyError                 a write on a store opened read-only (also PermissionError)
    ├── ReadOnlyAnalysisError         a change to an analysis the read cache shares (also TypeError)
    ├── UnsupportedOperationError     the backend cannot do this safely (see Store.capabilities)
    ├── StoreClosedError              the store was used after close() (also ValueError)
    ├── ConfigurationError            a bad URL, option or environment variable (also ValueError)
    │   └── MissingDependencyError    an optional extra is not installed (also ImportError)
    └── TransientError                worth retrying; raised once the backend's own retries ran out
        ├── ThrottledError            503 SlowDown and friends
        ├── ServiceUnavailableError   500/502/503/504, dropped connections
        └── StorageTimeoutError       connect or read timeouts (also TimeoutError)

Messages name the key and, where the key belongs to a codebase, the codebase,
and never contain credentials or object bodies.
"""

from __future__ import annotations

__all__ = [
    "AlreadyExistsError",
    "ConditionalRequestConflictError",
    "ConfigurationError",
    "ConflictError",
    "CorruptObjectError",
    "DocumeeRemoteError",
    "InvalidKeyError",
    "MissingDependencyError",
    "NotFoundError",
    "NotModifiedError",
    "ObjectTooLargeError",
    "PermissionDeniedError",
    "PreconditionFailedError",
    "ReadOnlyAnalysisError",
    "ReadOnlyError",
    "ServiceUnavailableError",
    "StorageFullError",
    "StorageTimeoutError",
    "StoreClosedError",
    "ThrottledError",
    "TooManyConflictsError",
    "TransientError",
    "UnsupportedOperationError",
]


class DocumeeRemoteError(Exception):
    """Base of every error documee-remote raises.

    Parameters
    ----------
    message:
        What went wrong, in words a user can act on.
    key:
        The store key involved, relative to the store root, if any.
    codebase_id:
        The codebase involved; derived from ``key`` when not given.
    """

    def __init__(
        self,
        message: str,
        *,
        key: str | None = None,
        codebase_id: str | None = None,
    ) -> None:
        if codebase_id is None and key is not None and "/" in key:
            codebase_id = key.split("/", 1)[0]
        self.key = key
        self.codebase_id = codebase_id
        super().__init__(message)

    def __reduce__(self) -> tuple[object, ...]:
        # Keep key/codebase_id across pickling (multiprocessing workers send errors back).
        return (_rebuild, (type(self), self.args, self.__dict__))


def _rebuild(
    cls: type[DocumeeRemoteError], args: tuple[object, ...], state: dict[str, object]
) -> DocumeeRemoteError:
    err = cls.__new__(cls)
    Exception.__init__(err, *args)
    err.__dict__.update(state)
    return err


class NotFoundError(DocumeeRemoteError, FileNotFoundError):
    """The key does not exist."""


class NotModifiedError(DocumeeRemoteError):
    """``get(key, if_none_match=etag)`` found the object still at ``etag`` (S3's 304).

    An outcome more than a failure: the caller's copy of those bytes is current,
    and no body was sent. Only a conditional ``get`` raises it; each backend
    translates its client's form of the answer (botocore's 304 ``ClientError``,
    obstore's ``NotModifiedError``) into this one type.
    """


class PreconditionFailedError(DocumeeRemoteError):
    """A conditional write or delete found another version than the one it named."""


class AlreadyExistsError(PreconditionFailedError, FileExistsError):
    """A create-only write (``if_none_match="*"``) found the key already there."""


class ConflictError(DocumeeRemoteError):
    """Concurrent writers collided."""


class TransientError(DocumeeRemoteError):
    """A failure worth retrying later; raised once the backend's own retries ran out."""


class ConditionalRequestConflictError(ConflictError, TransientError):
    """S3 answered 409 ConditionalRequestConflict: another conditional write was in flight."""


class TooManyConflictsError(ConflictError):
    """A transaction kept losing to other writers and gave up.

    ``attempts`` says how many times it tried.
    """

    def __init__(
        self,
        message: str,
        *,
        attempts: int,
        key: str | None = None,
        codebase_id: str | None = None,
    ) -> None:
        super().__init__(message, key=key, codebase_id=codebase_id)
        self.attempts = attempts


class InvalidKeyError(DocumeeRemoteError, ValueError):
    """A codebase id, file path or key failed validation before reaching a backend."""


class CorruptObjectError(DocumeeRemoteError, ValueError):
    """A stored object does not parse, or parses into the wrong shape."""


class ObjectTooLargeError(DocumeeRemoteError):
    """An object is larger than the store's ``max_object_size``; its body was not read."""


class PermissionDeniedError(DocumeeRemoteError, PermissionError):
    """The storage service refused the request (HTTP 403, EACCES)."""


class StorageFullError(DocumeeRemoteError):
    """No space left (ENOSPC, EDQUOT). The write did not happen; nothing was half-written."""


class ReadOnlyError(DocumeeRemoteError, PermissionError):
    """A write or delete on a store opened with ``read_only=True``."""


class ReadOnlyAnalysisError(DocumeeRemoteError, TypeError):
    """An analysis shared through the read cache was about to be changed.

    ``load_analysis(codebase_id, copy=True)`` gives one that may be changed.
    """


class UnsupportedOperationError(DocumeeRemoteError):
    """The backend cannot perform this operation safely (see ``Store.capabilities``)."""


class StoreClosedError(DocumeeRemoteError, ValueError):
    """A store was used after ``close()``; open a new one."""


class ConfigurationError(DocumeeRemoteError, ValueError):
    """A store URL, option or environment variable is invalid."""


class MissingDependencyError(ConfigurationError, ImportError):
    """An optional dependency is needed; the message says which extra to install."""


class ThrottledError(TransientError):
    """The service asked us to slow down (503 SlowDown, 429) and retries ran out."""


class ServiceUnavailableError(TransientError):
    """The service failed (5xx, dropped connection) and retries ran out."""


class StorageTimeoutError(TransientError, TimeoutError):
    """Connecting or reading timed out and retries ran out."""
