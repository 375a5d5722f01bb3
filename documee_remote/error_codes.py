"""The one table that maps every error type to a CLI exit code and an HTTP-style status.

The CLI (:func:`exit_code_for`) and the Lambda handler (:func:`http_status_for`)
both read :data:`ERROR_CODES`, so an error cannot mean "conflict" to one and
"try again later" to the other. Every class of the error tree has its own
entry (a test walks the subclasses of
:class:`~documee_remote.errors.DocumeeRemoteError`); an error is looked up
along its MRO, so a class's own entry wins over its bases', which matters for
the classes with two parents: S3's 409 ``ConditionalRequestConflictError`` is
a ``ConflictError`` *and* a ``TransientError``, and is answered as transient
(retryable: the Lambda handler re-raises it so that Lambda retries the event).

A few builtin types are mapped too, for the failures the CLI reports without
a traceback that do not come from the library (a local directory that cannot
be read, an analyser module that fails to import).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import NamedTuple

from .errors import (
    AlreadyExistsError,
    ConditionalRequestConflictError,
    ConfigurationError,
    ConflictError,
    CorruptObjectError,
    DocumeeRemoteError,
    InvalidKeyError,
    MissingDependencyError,
    NotFoundError,
    NotModifiedError,
    ObjectTooLargeError,
    PermissionDeniedError,
    PreconditionFailedError,
    ReadOnlyAnalysisError,
    ReadOnlyError,
    ServiceUnavailableError,
    StorageFullError,
    StorageTimeoutError,
    StoreClosedError,
    ThrottledError,
    TooManyConflictsError,
    TransientError,
    UnsupportedOperationError,
)
from .leases import FencedError, LeaseHeldError, LeaseLostError

__all__ = [
    "ERROR_CODES",
    "EXIT_CONFIG",
    "EXIT_CONFLICT",
    "EXIT_CORRUPT",
    "EXIT_ERROR",
    "EXIT_FILES_FAILED",
    "EXIT_NOTHING_ANALYSED",
    "EXIT_NOT_FOUND",
    "EXIT_OK",
    "EXIT_PERMISSION",
    "EXIT_PROBLEMS",
    "EXIT_UNAVAILABLE",
    "EXIT_USAGE",
    "Codes",
    "codes_for",
    "exit_code_for",
    "http_status_for",
]

EXIT_OK = 0
#: verify found problems, doctor a failing check.
EXIT_PROBLEMS = 1
EXIT_USAGE = 2
EXIT_NOT_FOUND = 3
EXIT_PERMISSION = 4
EXIT_CONFLICT = 5
EXIT_CORRUPT = 6
EXIT_UNAVAILABLE = 7
EXIT_CONFIG = 8
EXIT_ERROR = 9
#: analyze: some files could not be read or analysed; the others were merged.
EXIT_FILES_FAILED = 10
#: analyze: files failed and nothing was merged (the Lambda handler's 422).
EXIT_NOTHING_ANALYSED = 11


class Codes(NamedTuple):
    """How one error type is reported: the CLI's exit code and the Lambda's status."""

    exit_code: int
    http_status: int


#: Every error type -> (exit code, HTTP status). Looked up along the error's MRO.
ERROR_CODES: Mapping[type[BaseException], Codes] = {
    DocumeeRemoteError: Codes(EXIT_ERROR, 500),
    NotFoundError: Codes(EXIT_NOT_FOUND, 404),
    # Raised only to the cache that asked; never reaches a user unless a caller lets it.
    NotModifiedError: Codes(EXIT_ERROR, 304),
    PreconditionFailedError: Codes(EXIT_CONFLICT, 409),
    AlreadyExistsError: Codes(EXIT_CONFLICT, 409),
    ConflictError: Codes(EXIT_CONFLICT, 409),
    # S3's 409 ConditionalRequestConflict: another write was in flight; retry later.
    ConditionalRequestConflictError: Codes(EXIT_UNAVAILABLE, 503),
    TooManyConflictsError: Codes(EXIT_CONFLICT, 409),
    LeaseHeldError: Codes(EXIT_CONFLICT, 409),
    LeaseLostError: Codes(EXIT_CONFLICT, 409),
    FencedError: Codes(EXIT_CONFLICT, 409),
    InvalidKeyError: Codes(EXIT_USAGE, 400),
    CorruptObjectError: Codes(EXIT_CORRUPT, 422),
    ObjectTooLargeError: Codes(EXIT_ERROR, 413),
    PermissionDeniedError: Codes(EXIT_PERMISSION, 403),
    ReadOnlyError: Codes(EXIT_PERMISSION, 403),
    # A caller's bug (changing a shared analysis), not the store's refusal.
    ReadOnlyAnalysisError: Codes(EXIT_ERROR, 500),
    StorageFullError: Codes(EXIT_ERROR, 507),
    UnsupportedOperationError: Codes(EXIT_ERROR, 501),
    StoreClosedError: Codes(EXIT_ERROR, 500),
    ConfigurationError: Codes(EXIT_CONFIG, 500),
    MissingDependencyError: Codes(EXIT_CONFIG, 500),
    TransientError: Codes(EXIT_UNAVAILABLE, 503),
    ThrottledError: Codes(EXIT_UNAVAILABLE, 503),
    ServiceUnavailableError: Codes(EXIT_UNAVAILABLE, 503),
    StorageTimeoutError: Codes(EXIT_UNAVAILABLE, 503),
    # Not the library's: what the CLI reports without a traceback.
    ImportError: Codes(EXIT_CONFIG, 500),
    FileNotFoundError: Codes(EXIT_NOT_FOUND, 404),
    PermissionError: Codes(EXIT_PERMISSION, 403),
}

_DEFAULT = Codes(EXIT_ERROR, 500)


def codes_for(exc: BaseException) -> Codes:
    """The codes of ``exc``: its own class's entry, else its nearest base's in MRO order."""
    for cls in type(exc).__mro__:
        found = ERROR_CODES.get(cls)
        if found is not None:
            return found
    return _DEFAULT


def exit_code_for(exc: BaseException) -> int:
    """The CLI's exit code for an error."""
    return codes_for(exc).exit_code


def http_status_for(exc: BaseException) -> int:
    """The Lambda handler's status for an error."""
    return codes_for(exc).http_status
