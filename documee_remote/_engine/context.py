"""What every step of the engine needs: the store, the policies, the watermarks seen."""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from typing import TypeVar

from ..compaction import CompactionPolicy
from ..errors import TransientError, UnsupportedOperationError
from ..retry import Backoff, RetryPolicy
from ..stores import Store

_T = TypeVar("_T")


class Engine:
    """The state one manager's commits share (one per :class:`PersistenceManager`)."""

    def __init__(self, store: Store, retry: RetryPolicy, compaction: CompactionPolicy) -> None:
        self.store = store
        self.retry = retry
        self.compaction = compaction
        # Per codebase, a watermark this engine has seen: journal listings start
        # there, so they stay short however many folded deltas the grace period
        # keeps (see reads.list_journal).
        self.floors: dict[str, int] = {}
        # Folder records this engine's writers held and failed to free: known dead,
        # so the next writer here takes them over without waiting them out.
        self.dead_folders: set[str] = set()
        self._side: ThreadPoolExecutor | None = None

    def side(self) -> ThreadPoolExecutor:
        """The one thread that lists the journal while the caller reads (made on first use)."""
        if self._side is None:
            self._side = ThreadPoolExecutor(1, thread_name_prefix="documee-journal")
        return self._side

    def close(self) -> None:
        """Stop the side thread (the store is its opener's to close)."""
        if self._side is not None:
            self._side.shutdown(wait=True)
            self._side = None


def retrying(eng: Engine, fn: Callable[[], _T], retry: RetryPolicy | None) -> _T:
    """Run an idempotent step again on transient errors, within the retry policy."""
    backoff = Backoff(retry or eng.retry)
    while True:
        backoff.next_attempt()
        try:
            return fn()
        except TransientError:
            if backoff.exhausted():
                raise


def require_atomic_writes(eng: Engine, codebase_id: str) -> None:
    if not eng.store.capabilities.atomic_conditional_writes:
        raise UnsupportedOperationError(
            f"{eng.store.url} cannot write conditionally, so concurrent merges into "
            f"{codebase_id!r} would lose updates; use a backend that can (local disk, "
            "S3, s3fs) or save_analysis from a single writer",
            codebase_id=codebase_id,
        )


def utcnow() -> datetime:
    return datetime.now(UTC)
