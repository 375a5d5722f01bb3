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

import importlib
from typing import TYPE_CHECKING, Any

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

if TYPE_CHECKING:
    from .compaction import CompactionPolicy, CompactReport
    from .manager import AppendReport, PersistenceManager, Transaction
    from .merge import GraphUpdate
    from .models import CodebaseAnalysis, FileAnalysis
    from .retry import RetryPolicy, TransactionStats
    from .stores import Store, open_store

# name -> module: imported on first use (PEP 562), so ``import documee_remote`` stays
# cheap (no pydantic, no codec) for a cold start that only opens a store.
_LAZY = {
    "AppendReport": ".manager",
    "CompactReport": ".compaction",
    "CompactionPolicy": ".compaction",
    "GraphUpdate": ".merge",
    "CodebaseAnalysis": ".models",
    "FileAnalysis": ".models",
    "PersistenceManager": ".manager",
    "RetryPolicy": ".retry",
    "Store": ".stores",
    "Transaction": ".manager",
    "TransactionStats": ".retry",
    "open_store": ".stores",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module, __name__), name)
    globals()[name] = value  # later lookups skip __getattr__
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))


__all__ = [
    "AlreadyExistsError",
    "AppendReport",
    "CodebaseAnalysis",
    "CompactReport",
    "CompactionPolicy",
    "ConditionalRequestConflictError",
    "ConfigurationError",
    "ConflictError",
    "CorruptObjectError",
    "DocumeeRemoteError",
    "FileAnalysis",
    "GraphUpdate",
    "InvalidKeyError",
    "MissingDependencyError",
    "NotFoundError",
    "NotModifiedError",
    "ObjectTooLargeError",
    "PermissionDeniedError",
    "PersistenceManager",
    "PreconditionFailedError",
    "ReadOnlyAnalysisError",
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
