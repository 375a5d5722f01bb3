"""The asyncio face of :class:`~documee_remote.PersistenceManager`.

``AsyncPersistenceManager`` gives the manager's verbs as coroutines for asyncio
services (Documee's MCP server calls ``load_analysis``/``save_analysis`` from
inside ``async def analyze_codebase``). It is a thin layer, not a second copy
of the logic: every verb runs the synchronous manager's own method in a worker
thread, so the commit protocol, its retries and its invariants exist once.

Why threads and not the native async clients of obstore and s3fs: the core is
synchronous (compare-and-swap loops, journal folding, group commit), and an
async core would be that logic written twice. The I/O inside a verb already
releases the GIL (and bulk transfers already run concurrently inside the
stores, s3fs and obstore on their own event loop), so a worker thread costs a
thread per verb in flight, not per request. What stalls an event loop is not
the I/O but CPU held under the GIL: parsing, validating and serializing a
52 MB analysis. :mod:`documee_remote.codec` does that in bounded pieces, so the
loop gets the GIL back every few milliseconds even while a worker decodes.

Single flight
-------------
Concurrent identical reads (same verb, same arguments) share one call of the
manager: 16 concurrent ``load_analysis(cid)`` issue one GET of
``analysis.json``. The callers then share **one result object**, as a cache's
fast path would: copying a 52 MB analysis for every caller costs more than the
read it saved. Treat what a read returns as read-only, or pass
``private=True`` for a result of one's own (its own read, joined by nobody).
A read that starts after a shared one finished reads again, and a write through
this object ends every flight in progress for later readers, so a caller reads
its own writes; otherwise a read that joins one in flight gets a state no older
than the moment that read began, as with any single flight.

Cancellation
------------
A Python thread cannot be stopped, and a verb stopped halfway would be the
only way to leave half a merge. So cancelling an awaiting coroutine cancels
the *await*, never the work: the worker runs the verb to its end, as a
synchronous caller would. The invariants (README, "How concurrent writers stay
safe") then hold exactly as for a synchronous call: a merge either commits
``analysis.json`` (its commit point) or leaves only per-file objects and a
journal delta that the next merge or ``verify --repair`` folds or tidies. A
cancelled write is simply unacknowledged, like a write whose response was
lost: it may have landed. :meth:`AsyncPersistenceManager.drain` (and
:meth:`~AsyncPersistenceManager.aclose`) wait for such writes, and the worker
threads are not daemons, so even a process whose event loop has ended lets
them finish before it exits. Only a killed process stops a merge midway, which
is the crash the invariants were designed for.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import os
from collections.abc import AsyncIterator, Callable, Hashable, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from types import TracebackType
from typing import TYPE_CHECKING, Any, Self, TypeVar

if TYPE_CHECKING:
    from ._engine.merging import GraphMerge
    from .compaction import CompactionPolicy, CompactReport
    from .integrity import GcReport, VerifyReport
    from .interop import AnalysisInput, FileAnalysisInput
    from .leases import Lease
    from .manager import AppendReport, PersistenceManager, SaveReport, Transaction
    from .merge import GraphUpdate
    from .models import CodebaseAnalysis, FileAnalysis
    from .retry import RetryPolicy, TransactionStats
    from .sharing import Checkout, Sharing
    from .stores import Store

__all__ = ["AsyncPersistenceManager"]

logger = logging.getLogger(__name__)

_T = TypeVar("_T")

#: Worker threads by default: verbs in flight at once (each may use the store's own
#: pool for bulk transfers inside it).
DEFAULT_WORKERS = 8


class AsyncPersistenceManager:
    """A :class:`~documee_remote.PersistenceManager` whose verbs are coroutines.

    ``AsyncPersistenceManager(url, **options)`` opens a manager as
    ``PersistenceManager(url, **options)`` does; ``AsyncPersistenceManager(manager=pm)``
    wraps an existing one (which stays the caller's to close). The verbs take
    the synchronous ones' arguments and return their results; each runs in a
    worker thread, so the event loop keeps serving while it runs.

    Examples
    --------
    >>> import asyncio
    >>> async def main() -> list[str]:
    ...     async with AsyncPersistenceManager("memory://") as apm:
    ...         return await apm.list_codebases()
    >>> asyncio.run(main())
    []
    """

    def __init__(
        self,
        base_path: Store | str | os.PathLike[str] | None = None,
        *,
        manager: PersistenceManager | None = None,
        workers: int = DEFAULT_WORKERS,
        retry: RetryPolicy | None = None,
        compaction: CompactionPolicy | str | None = None,
        checkout: Checkout | Sharing | None = None,
        **options: Any,
    ) -> None:
        if workers < 1:
            raise ValueError("workers must be at least 1")
        if manager is not None:
            if base_path is not None or options or retry or compaction or checkout:
                raise TypeError("pass either manager= or the arguments to open one, not both")
            self._owns_manager = False
            self.sync = manager
        else:
            from .manager import PersistenceManager

            self._owns_manager = True
            self.sync = PersistenceManager(
                base_path, retry=retry, compaction=compaction, checkout=checkout, **options
            )
        self._executor = ThreadPoolExecutor(workers, thread_name_prefix="documee-aio")
        # Reads in flight, by (verb, arguments): joiners await the same future.
        self._flights: dict[Hashable, asyncio.Future[Any]] = {}
        # Writes in flight, including those whose awaiting coroutine was cancelled.
        self._writes: set[asyncio.Future[Any]] = set()
        self._closed = False

    def __repr__(self) -> str:
        return f"AsyncPersistenceManager({self.sync.store!r})"

    # -- the two ways a verb runs ----------------------------------------------------------

    def _submit(self, fn: Callable[..., _T], *args: Any, **kwargs: Any) -> asyncio.Future[_T]:
        if self._closed:
            from .errors import StoreClosedError

            raise StoreClosedError(f"{self!r} is closed")
        loop = asyncio.get_running_loop()
        return loop.run_in_executor(self._executor, functools.partial(fn, *args, **kwargs))

    async def _read(
        self, key: Hashable, private: bool, fn: Callable[..., _T], *args: Any, **kwargs: Any
    ) -> _T:
        """Run a read in a worker; identical concurrent reads share one run."""
        if private:
            work = self._submit(fn, *args, **kwargs)
            work.add_done_callback(_retrieve)
            return await asyncio.shield(work)
        flight = self._flights.get(key)
        if flight is None:
            flight = self._submit(fn, *args, **kwargs)
            self._flights[key] = flight

            def land(done: asyncio.Future[Any], key: Hashable = key) -> None:
                if self._flights.get(key) is done:
                    del self._flights[key]
                _retrieve(done)

            flight.add_done_callback(land)
        # shield: a joiner that is cancelled leaves; the others keep the flight.
        return await asyncio.shield(flight)

    async def _write(self, fn: Callable[..., _T], *args: Any, **kwargs: Any) -> _T:
        """Run a write in a worker; cancelling the await never stops the write (see module)."""
        work = self._submit(fn, *args, **kwargs)
        self._writes.add(work)

        def land(done: asyncio.Future[Any]) -> None:
            self._writes.discard(done)
            # Reads in flight may predate this write: later reads must not join them
            # (a caller that awaited this write then reads what it wrote). Runs before
            # the writer is resumed: this callback precedes the shield's.
            self._flights.clear()
            if not done.cancelled() and done.exception() is not None:
                logger.debug("a write finished with %r", done.exception())

        work.add_done_callback(land)
        try:
            return await asyncio.shield(work)
        except asyncio.CancelledError:
            if not work.done():
                logger.info(
                    "cancelled while writing: %s runs to its end in its worker "
                    "(a commit or nothing; drain() waits for it)",
                    getattr(fn, "__name__", fn),
                )
            raise

    async def drain(self) -> None:
        """Wait for every write in flight, those whose caller was cancelled included.

        Their outcomes (results or errors) went to their callers, or nowhere
        for cancelled ones; this only waits.
        """
        while self._writes:
            await asyncio.wait(list(self._writes))

    # -- the upstream API ----------------------------------------------------------------

    async def save_analysis(self, codebase_id: str, analysis: AnalysisInput) -> SaveReport:
        """:meth:`PersistenceManager.save_analysis <documee_remote.PersistenceManager.save_analysis>`."""  # noqa: E501
        return await self._write(self.sync.save_analysis, codebase_id, analysis)

    async def load_analysis(
        self, codebase_id: str, *, private: bool = False
    ) -> CodebaseAnalysis | None:
        """:meth:`PersistenceManager.load_analysis <documee_remote.PersistenceManager.load_analysis>`.

        Concurrent loads of one codebase share one read and one result object
        (treat it as read-only); ``private=True`` reads for this caller alone, a
        result it may change (with the read cache on too: ``copy=True``).
        """  # noqa: E501
        return await self._read(
            ("load_analysis", codebase_id),
            private,
            self.sync.load_analysis,
            codebase_id,
            copy=private,
        )

    async def get_file_hashes(self, codebase_id: str, *, private: bool = False) -> dict[str, str]:
        """:meth:`PersistenceManager.get_file_hashes <documee_remote.PersistenceManager.get_file_hashes>`; shared as :meth:`load_analysis`."""  # noqa: E501
        return await self._read(
            ("get_file_hashes", codebase_id), private, self.sync.get_file_hashes, codebase_id
        )

    async def save_file_hashes(self, codebase_id: str, hashes: Mapping[str, str]) -> None:
        """:meth:`PersistenceManager.save_file_hashes <documee_remote.PersistenceManager.save_file_hashes>`."""  # noqa: E501
        await self._write(self.sync.save_file_hashes, codebase_id, hashes)

    async def delete_analysis(self, codebase_id: str) -> bool:
        """:meth:`PersistenceManager.delete_analysis <documee_remote.PersistenceManager.delete_analysis>`."""  # noqa: E501
        return await self._write(self.sync.delete_analysis, codebase_id)

    async def list_codebases(self) -> list[str]:
        """:meth:`PersistenceManager.list_codebases <documee_remote.PersistenceManager.list_codebases>` (a private list per caller)."""  # noqa: E501
        found = await self._read(("list_codebases",), False, self.sync.list_codebases)
        return list(found)

    async def load_analysis_etag(self, codebase_id: str) -> str | None:
        """:meth:`PersistenceManager.load_analysis_etag <documee_remote.PersistenceManager.load_analysis_etag>`."""  # noqa: E501
        return await self._read(
            ("load_analysis_etag", codebase_id), False, self.sync.load_analysis_etag, codebase_id
        )

    # -- per-file objects ------------------------------------------------------------------

    async def load_file_analysis(
        self, codebase_id: str, file_path: str, *, private: bool = False
    ) -> FileAnalysis | None:
        """:meth:`PersistenceManager.load_file_analysis <documee_remote.PersistenceManager.load_file_analysis>`; shared as :meth:`load_analysis`."""  # noqa: E501
        return await self._read(
            ("load_file_analysis", codebase_id, file_path),
            private,
            self.sync.load_file_analysis,
            codebase_id,
            file_path,
        )

    async def load_file_analyses(
        self, codebase_id: str, file_paths: Iterable[str]
    ) -> dict[str, FileAnalysis | None]:
        """:meth:`PersistenceManager.load_file_analyses <documee_remote.PersistenceManager.load_file_analyses>` (not shared)."""  # noqa: E501
        paths = list(file_paths)
        return await self._read(None, True, self.sync.load_file_analyses, codebase_id, paths)

    # -- writes that merge -----------------------------------------------------------------

    async def update_analysis(
        self,
        codebase_id: str,
        fn: Callable[[CodebaseAnalysis], AnalysisInput | None],
        *,
        retry: RetryPolicy | None = None,
        stats: TransactionStats | None = None,
        fencing_token: int | None = None,
    ) -> CodebaseAnalysis:
        """:meth:`PersistenceManager.update_analysis <documee_remote.PersistenceManager.update_analysis>`.

        ``fn`` runs in the worker thread (possibly more than once, as there),
        so it must not touch the event loop's objects without locking.
        """  # noqa: E501
        return await self._write(
            self.sync.update_analysis,
            codebase_id,
            fn,
            retry=retry,
            stats=stats,
            fencing_token=fencing_token,
        )

    async def merge_file_analyses(
        self,
        codebase_id: str,
        analyses: Mapping[str, FileAnalysisInput],
        file_hashes: Mapping[str, str],
        *,
        removed: Iterable[str] = (),
        graph: GraphUpdate | None = None,
        merge: GraphMerge | None = None,
        analysis_time_ms: float = 0.0,
        retry: RetryPolicy | None = None,
        stats: TransactionStats | None = None,
        fencing_token: int | None = None,
    ) -> CodebaseAnalysis:
        """:meth:`PersistenceManager.merge_file_analyses <documee_remote.PersistenceManager.merge_file_analyses>`."""  # noqa: E501
        return await self._write(
            self.sync.merge_file_analyses,
            codebase_id,
            analyses,
            file_hashes,
            removed=list(removed),
            graph=graph,
            merge=merge,
            analysis_time_ms=analysis_time_ms,
            retry=retry,
            stats=stats,
            fencing_token=fencing_token,
        )

    async def append_file_analyses(
        self,
        codebase_id: str,
        analyses: Mapping[str, FileAnalysisInput],
        file_hashes: Mapping[str, str],
        *,
        removed: Iterable[str] = (),
        graph: GraphUpdate | None = None,
        analysis_time_ms: float = 0.0,
        retry: RetryPolicy | None = None,
    ) -> AppendReport:
        """:meth:`PersistenceManager.append_file_analyses <documee_remote.PersistenceManager.append_file_analyses>`."""  # noqa: E501
        return await self._write(
            self.sync.append_file_analyses,
            codebase_id,
            analyses,
            file_hashes,
            removed=list(removed),
            graph=graph,
            analysis_time_ms=analysis_time_ms,
            retry=retry,
        )

    async def compact(self, codebase_id: str, *, retry: RetryPolicy | None = None) -> CompactReport:
        """:meth:`PersistenceManager.compact <documee_remote.PersistenceManager.compact>`."""
        return await self._write(self.sync.compact, codebase_id, retry=retry)

    @contextlib.asynccontextmanager
    async def transaction(
        self,
        codebase_id: str,
        *,
        retry: RetryPolicy | None = None,
        fencing_token: int | None = None,
    ) -> AsyncIterator[Transaction]:
        """:meth:`PersistenceManager.transaction <documee_remote.PersistenceManager.transaction>` as ``async with``.

        The read happens in a worker on entry, the block runs on the loop, and
        the commit (compare-and-swap, replayed after lost races) in a worker on
        exit. A block that raises, or is cancelled, writes nothing; once the
        commit has started, cancelling lets it finish (see the module).
        """  # noqa: E501
        cm = self.sync.transaction(codebase_id, retry=retry, fencing_token=fencing_token)
        entering = self._submit(cm.__enter__)
        entering.add_done_callback(_retrieve)
        txn = await asyncio.shield(entering)
        try:
            yield txn
        except BaseException as exc:
            # Nothing to write: let the generator see the exception (it writes nothing).
            with contextlib.suppress(BaseException):
                cm.__exit__(type(exc), exc, exc.__traceback__)
            raise
        await self._write(cm.__exit__, None, None, None)

    # -- leases and checks -----------------------------------------------------------------

    @contextlib.asynccontextmanager
    async def lease(
        self,
        codebase_id: str,
        *,
        ttl: float = 60.0,
        owner: str | None = None,
        wait: float = 0.0,
        clock_skew: float = 5.0,
        auto_renew: bool = True,
    ) -> AsyncIterator[Lease]:
        """:meth:`PersistenceManager.lease <documee_remote.PersistenceManager.lease>` as ``async with``.

        Acquiring (which may wait up to ``wait`` seconds) and releasing run in
        workers; renewal runs in the lease's own background thread, as there.
        """  # noqa: E501
        lease = self.sync.lease(
            codebase_id,
            ttl=ttl,
            owner=owner,
            wait=wait,
            clock_skew=clock_skew,
            auto_renew=auto_renew,
        )
        await self._write(lease.acquire)
        try:
            yield lease
        finally:
            await self._write(lease.release)

    async def verify(
        self, codebase_id: str, *, repair: bool = False, grace_seconds: float | None = None
    ) -> VerifyReport:
        """:meth:`PersistenceManager.verify <documee_remote.PersistenceManager.verify>`."""
        kwargs: dict[str, Any] = {"repair": repair}
        if grace_seconds is not None:
            kwargs["grace_seconds"] = grace_seconds
        run = self._write if repair else functools.partial(self._read, None, True)
        return await run(self.sync.verify, codebase_id, **kwargs)

    async def gc(
        self, codebase_id: str, *, grace_seconds: float | None = None, dry_run: bool = False
    ) -> GcReport:
        """:meth:`PersistenceManager.gc <documee_remote.PersistenceManager.gc>`."""
        kwargs: dict[str, Any] = {"dry_run": dry_run}
        if grace_seconds is not None:
            kwargs["grace_seconds"] = grace_seconds
        return await self._write(self.sync.gc, codebase_id, **kwargs)

    # -- lifecycle -------------------------------------------------------------------------

    async def aclose(self) -> None:
        """Wait for writes in flight (cancelled ones too), then close.

        Closes the manager if this object opened it. Reads in flight are
        waited for by the worker pool's shutdown.
        """
        if self._closed:
            return
        await self.drain()
        self._closed = True
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(None, functools.partial(self._executor.shutdown, wait=True))
        if self._owns_manager:
            self.sync.close()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()


def _retrieve(done: asyncio.Future[Any]) -> None:
    """Mark a worker's outcome as seen: its awaiting caller may have been cancelled,
    and asyncio would otherwise log the error as "never retrieved"."""
    if not done.cancelled():
        done.exception()
