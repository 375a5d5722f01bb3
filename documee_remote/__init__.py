"""documee-remote: share Documee codebase analyses through object storage.

The public API::

    from documee_remote import PersistenceManager, open_store

    pm = PersistenceManager("s3://bucket/team-a/")       # or a path, file://, memory://
    pm.save_analysis(codebase_id, analysis)              # upstream's methods, same bytes
    pm.merge_file_analyses(codebase_id, analyses, hashes)  # safe beside other analysers

Errors are in :mod:`documee_remote.errors`, the Documee models in
:mod:`documee_remote.models`, the store backends in :mod:`documee_remote.stores`.
"""

from __future__ import annotations

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
    ObjectTooLargeError,
    PermissionDeniedError,
    PreconditionFailedError,
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
from .manager import PersistenceManager, Transaction
from .models import CodebaseAnalysis, FileAnalysis
from .retry import RetryPolicy, TransactionStats
from .stores import Store, open_store

__all__ = [
    "AlreadyExistsError",
    "CodebaseAnalysis",
    "ConditionalRequestConflictError",
    "ConfigurationError",
    "ConflictError",
    "CorruptObjectError",
    "DocumeeRemoteError",
    "FileAnalysis",
    "InvalidKeyError",
    "MissingDependencyError",
    "NotFoundError",
    "ObjectTooLargeError",
    "PermissionDeniedError",
    "PersistenceManager",
    "PreconditionFailedError",
    "ReadOnlyError",
    "RetryPolicy",
    "ServiceUnavailableError",
    "StorageFullError",
    "StorageTimeoutError",
    "Store",
    "StoreClosedError",
    "ThrottledError",
    "TooManyConflictsError",
    "Transaction",
    "TransactionStats",
    "TransientError",
    "UnsupportedOperationError",
    "open_store",
]
__version__ = "0.1.0"
