"""PersistenceManager: upstream Documee's class, on any store.

A drop-in for ``src.analysis.persistence.PersistenceManager``: the same
methods, the same key layout and the same JSON bytes, so a directory written
by upstream can be read here and the other way round. Where upstream logged
and returned ``None`` or ``{}`` on any failure, this raises the library's
typed errors instead (a corrupt object is not an absent one); ``None`` and
``{}`` mean only "not there".

Writes keep one rule: ``analysis.json`` is the commit point. Per-file objects
are written first and ``analysis.json`` last, so a reader that finds an
``analysis.json`` finds everything it refers to. Merges go through the delta
journal (:mod:`documee_remote.journal`): each records one immutable delta,
which this class's readers fold onto ``analysis.json`` and which compaction
(after every merge, by default) folds into it.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, Self

from . import layout
from ._engine.context import Engine, require_atomic_writes
from ._lazy import deferred
from .compaction import ORPHAN_GRACE_SECONDS, CompactionPolicy, CompactReport
from .config import DEFAULT_STORE_URL
from .errors import (
    ConfigurationError,
    NotFoundError,
    PermissionDeniedError,
)
from .retry import RetryPolicy, TransactionStats
from .sharing import Checkout, Sharing, resolve
from .stores import Store, open_store
from .stores.local import LocalStore

# A manager's construction needs only the store, policies and checkouts; pydantic, the
# models, codec and engine are imported at the first verb (a service's cold start).
if TYPE_CHECKING:
    from . import codec, integrity, interop, leases
    from . import merge as merging_rules
    from ._engine import append as appending
    from ._engine import commit as committing
    from ._engine import compact as compacting
    from ._engine import hashes as hash_index
    from ._engine import journal_io, merging, publish
    from ._engine import reads as reading
    from ._engine import save as saving
    from ._engine.append import AppendReport
    from ._engine.commit import Transaction
    from ._engine.merging import GraphMerge
    from ._engine.save import SaveReport
    from .interop import AnalysisInput, FileAnalysisInput
    from .leases import Lease
    from .merge import GraphUpdate
    from .models import CodebaseAnalysis, FileAnalysis
else:  # the same modules, each imported at its first attribute read
    codec, integrity, interop, leases, merging_rules = map(
        deferred, ["codec", "integrity", "interop", "leases", "merge"]
    )
    appending, committing, compacting, hash_index = map(
        deferred, ["_engine.append", "_engine.commit", "_engine.compact", "_engine.hashes"]
    )
    journal_io, merging, publish = map(
        deferred, ["_engine.journal_io", "_engine.merging", "_engine.publish"]
    )
    reading, saving = deferred("_engine.reads"), deferred("_engine.save")

#: Names this module has always exported, resolved on first use (PEP 562).
_REEXPORTED = {"AppendReport": "append", "SaveReport": "save", "Transaction": "commit"}


def __getattr__(name: str) -> Any:
    if name not in _REEXPORTED:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(deferred(f"_engine.{_REEXPORTED[name]}"), name)
    globals()[name] = value
    return value


__all__ = [
    "DEFAULT_LOCAL_ROOT",
    "AppendReport",
    "PersistenceManager",
    "SaveReport",
    "Transaction",
]

logger = logging.getLogger("documee_remote.manager")


#: Upstream's default base path, used when neither an argument nor DOCUMEE_STORE_URL is given.
DEFAULT_LOCAL_ROOT = DEFAULT_STORE_URL


class PersistenceManager:
    """Keep Documee analyses in a store: upstream's API on local disk, memory or S3.

    A drop-in for Documee's own class: ``PersistenceManager(base_path)``, by
    position or by keyword as upstream's ``PersistenceManager(base_path=...)``,
    where ``base_path`` may also be any store URL. Every method that takes
    analyses accepts Documee's own objects too (see :mod:`documee_remote.interop`).

    Parameters
    ----------
    base_path:
        A :class:`~documee_remote.stores.Store`, a store URL (``s3://bucket/prefix``,
        ``file:///path``, a plain path, ``memory://``), or ``None`` for the
        ``DOCUMEE_STORE_URL`` environment variable and, failing that,
        ``.documee/analysis`` on local disk as upstream. A local directory is
        created here, as upstream does (unless the store is read-only).
    retry:
        How merges and transactions retry after losing a race (a
        :class:`~documee_remote.RetryPolicy`).
    compaction:
        When merges fold the journal into ``analysis.json``: ``"eager"``
        (after every merge, the default), ``"deferred"``, or a
        :class:`~documee_remote.CompactionPolicy` with thresholds.
    checkout:
        A :class:`~documee_remote.sharing.Checkout` (or a
        :class:`~documee_remote.sharing.Sharing` of several) mapping local
        checkouts to shared codebases; default: the environment's
        (``DOCUMEE_SHARE_CONFIG``, ``DOCUMEE_CHECKOUT_ROOT``...).
    **options:
        Store options (see :func:`~documee_remote.open_store`); the ``DOCUMEE_*``
        variables fill in those not given, whether a URL is given or not.
        ``cache=`` reads through the ETag-validated read cache
        (:mod:`documee_remote.cache`), also around a :class:`Store` passed in.

    Examples
    --------
    >>> pm = PersistenceManager("memory://")
    >>> pm.list_codebases()
    []
    """

    def __init__(
        self,
        base_path: Store | str | os.PathLike[str] | None = None,
        *,
        retry: RetryPolicy | None = None,
        compaction: CompactionPolicy | str | None = None,
        checkout: Checkout | Sharing | None = None,
        **options: Any,
    ):
        store_or_url = base_path  # upstream's name for what is here any store or URL
        retry = retry or RetryPolicy()
        #: Local checkouts mapped to shared codebases (default: the environment's).
        self.sharing = resolve(checkout)
        compaction = CompactionPolicy.of(compaction)
        self._owns_store = not isinstance(store_or_url, Store)
        # The one way to a store: the DOCUMEE_* settings fill in what is not given here.
        self.store = open_store(store_or_url, **options)
        #: The commit protocol this manager's verbs delegate to (internal: see
        #: :mod:`documee_remote._engine`; :mod:`documee_remote.integrity` uses it).
        self.engine = Engine(self.store, retry, compaction)
        if self._owns_store:
            # As upstream, a path given here is a directory to create; a Store
            # passed in is its opener's (the CLI's dry runs must create nothing).
            _create_local_root(self.store)
        logger.debug("persistence manager on %s", self.store.url)

    @property
    def retry(self) -> RetryPolicy:
        """How merges and transactions retry after losing a race."""
        return self.engine.retry

    @retry.setter
    def retry(self, policy: RetryPolicy) -> None:
        self.engine.retry = policy

    @property
    def compaction(self) -> CompactionPolicy:
        """When merges fold the journal into ``analysis.json``."""
        return self.engine.compaction

    @compaction.setter
    def compaction(self, policy: CompactionPolicy) -> None:
        self.engine.compaction = policy

    @property
    def base_path(self) -> Path:
        """The root directory, as upstream's attribute, when the store is on local disk.

        An absolute :class:`pathlib.Path` (upstream's tests and tools join
        paths onto it). A remote or in-memory store has no such directory, and
        code that joined paths onto one would silently read and write a local
        directory nobody else sees; so there this raises ``AttributeError``
        (``hasattr(pm, "base_path")`` is false) naming the store. Use
        ``pm.store.url`` to say where analyses live on any store.
        """
        if isinstance(self.store, LocalStore):
            return self.store.root
        raise AttributeError(
            f"base_path: {self.store.url} is not a local directory "
            "(only local stores have one; pm.store.url names any store)",
            name="base_path",
            obj=self,
        )

    def __repr__(self) -> str:
        return f"PersistenceManager({self.store!r})"

    # -- the upstream API ---------------------------------------------------------------

    def save_analysis(self, codebase_id: str, analysis: AnalysisInput) -> SaveReport:
        """Save a whole analysis, writing only what changed.

        ``analysis`` is this library's :class:`CodebaseAnalysis`, Documee's own
        (anything with ``to_dict()``, also holding this library's file
        analyses) or a dict; what is written is byte for byte what Documee's
        own class writes for it.

        Per-file objects go first and ``analysis.json`` last (the commit
        point), as upstream orders them. One listing gives the stored ETags
        (the MD5 of the bytes), so objects whose bytes are unchanged are not
        uploaded again, and an unchanged ``analysis.json`` is not rewritten:
        saving 2 changed files out of 3,000 costs a listing and 3 PUTs, not
        3,001. After the commit, per-file objects of files the analysis no
        longer has are deleted, each only if unchanged since the listing.

        Like upstream, this replaces the stored analysis unconditionally
        (including merges still pending in the journal); use
        :meth:`merge_file_analyses` when several analysers write at once.
        """
        analysis = interop.as_codebase_analysis(analysis, codebase_id=codebase_id)
        codebase_id, analysis = self.sharing.analysis_out(codebase_id, analysis)
        return saving.save(self.engine, codebase_id, analysis)

    def load_analysis(self, codebase_id: str, *, copy: bool = False) -> CodebaseAnalysis | None:
        """Load a codebase's analysis, or ``None`` when it has none.

        Merges still pending in the journal are folded in, so the result is
        what the next compaction will write.

        With the read cache on (``cache=``), an unchanged analysis is one
        parsed result shared by every caller and read-only (changing it raises
        ``ReadOnlyAnalysisError``); ``copy=True`` gives a private one you may
        change, parsed from the cached bytes (see :mod:`documee_remote.cache`).
        Without the cache every result is private.

        Raises
        ------
        CorruptObjectError
            ``analysis.json`` (or a pending journal delta) exists but does not
            parse (upstream ships empty ones).
        """
        stored_id = self.sharing.stored_id(codebase_id)
        listing = None
        if not copy and stored_id == codebase_id and self.store.reads_through_cache:
            from .cache import Miss, load_shared  # only with the cache on

            shared = load_shared(self.store, stored_id)
            if not isinstance(shared, Miss):
                return shared
            listing = shared.listing  # the full read below need not list again
        stored = reading.read_view(self.engine, stored_id, listing=listing).analysis
        return self.sharing.analysis_in(codebase_id, stored)

    def get_file_hashes(self, codebase_id: str) -> dict[str, str]:
        """The ``{file path: sha256}`` map, or ``{}`` when there is none.

        The stored ``file_hashes.json`` describes the compacted analysis; the
        hashes of merges that may still be pending in the journal are laid
        over it, so a path re-analysed since the last compaction is claimed
        with its new hash, never its old one.
        """
        local_id = codebase_id
        codebase_id = self.sharing.stored_id(codebase_id)
        return self.sharing.hashes_in(local_id, hash_index.claimed(self.engine, codebase_id))

    def save_file_hashes(self, codebase_id: str, hashes: Mapping[str, str]) -> None:
        """Store the ``{file path: sha256}`` map."""
        codebase_id, hashes = self.sharing.hashes_out(codebase_id, hashes)
        for path in hashes:
            layout.validate_file_path(path)
        hash_index.check_hashes(hashes, codebase_id)
        self.store.put(layout.file_hashes_key(codebase_id), codec.dump_file_hashes(dict(hashes)))

    def delete_analysis(self, codebase_id: str) -> bool:
        """Delete everything stored for a codebase; ``False`` when there was nothing.

        ``analysis.json`` goes first, deleted only if it is still the version
        this call saw (``If-Match``): a delete racing a merge either fails
        with :class:`~documee_remote.errors.PreconditionFailedError` and
        deletes nothing, or deletes exactly the analysis it saw. The other
        objects are then deleted only if unchanged since the listing, so
        per-file objects a new merge has just written survive.
        """
        codebase_id = self.sharing.stored_id(codebase_id)
        return saving.delete(self.engine, codebase_id)

    def list_codebases(self) -> list[str]:
        """Ids of every codebase that has an ``analysis.json`` (even an unreadable one)
        or merges in its journal (a deferred codebase not yet compacted)."""
        found: dict[str, None] = {}
        journal_dir = layout.JOURNAL_DIR + "/"
        for key in self.store.list():
            codebase_id, _, name = key.partition("/")
            if name == layout.ANALYSIS_NAME or (
                name.startswith(journal_dir) and name.endswith(".json")
            ):
                found[codebase_id] = None
        return list(found)

    # -- per-file objects -------------------------------------------------------------------

    def load_file_analysis(self, codebase_id: str, file_path: str) -> FileAnalysis | None:
        """Read one file's analysis from its per-file object, or ``None`` when absent."""
        local_id = codebase_id
        codebase_id, file_path = self.sharing.path_out(codebase_id, file_path)
        key = layout.file_analysis_key(codebase_id, file_path)
        try:
            obj = self.store.get(key)
        except NotFoundError:
            return None
        fa = codec.load_file_analysis(obj.data, key=key, codebase_id=codebase_id)
        return self.sharing.file_in(local_id, fa)

    def load_file_analyses(
        self, codebase_id: str, file_paths: Iterable[str]
    ) -> dict[str, FileAnalysis | None]:
        """Read many per-file objects at once (concurrently); absent ones map to ``None``."""
        local_id = codebase_id
        codebase_id, local = self.sharing.paths_out(codebase_id, file_paths)
        keys = {path: layout.file_analysis_key(codebase_id, path) for path in local}
        found = self.store.get_many(keys.values())
        result: dict[str, FileAnalysis | None] = {}
        for path, key in keys.items():
            obj = found[key]
            result[path] = (
                None
                if obj is None
                else codec.load_file_analysis(obj.data, key=key, codebase_id=codebase_id)
            )
        return self.sharing.files_in(local_id, result, local)

    # -- optimistic transactions ---------------------------------------------------------

    def update_analysis(
        self,
        codebase_id: str,
        fn: Callable[[CodebaseAnalysis], AnalysisInput | None],
        *,
        retry: RetryPolicy | None = None,
        stats: TransactionStats | None = None,
        fencing_token: int | None = None,
    ) -> CodebaseAnalysis:
        """Read ``analysis.json``, apply ``fn``, and commit with compare-and-swap.

        ``fn`` gets the current analysis (a new, empty one when the codebase
        has none) and mutates it in place or returns a replacement (this
        library's model, Documee's own or a dict: it is converted). When
        another writer commits first, the analysis is read again and ``fn``
        applied again, with backoff, within ``retry``; ``fn`` must therefore
        be safe to call more than once.

        Raises
        ------
        TooManyConflictsError
            The policy ran out; ``.attempts`` says how many were made.
        FencedError
            ``fencing_token`` is older than one already recorded (the lease
            it came from was taken over).
        CorruptObjectError
            The stored ``analysis.json`` is unreadable; it is left untouched.
        UnsupportedOperationError
            The store cannot write conditionally, so this would race.
        """
        local_id = codebase_id
        codebase_id, fn = self.sharing.update_fn(codebase_id, fn)
        txn = compacting.update(self.engine, codebase_id, fn, retry, fencing_token)
        if stats is not None:
            stats.add(txn.stats)
        return self.sharing.analysis_in(local_id, txn.analysis)

    @contextlib.contextmanager
    def transaction(
        self,
        codebase_id: str,
        *,
        retry: RetryPolicy | None = None,
        fencing_token: int | None = None,
    ) -> Iterator[Transaction]:
        """A read-modify-write of ``analysis.json`` as a ``with`` block.

        The block's changes (made through the :class:`Transaction` methods)
        are committed with compare-and-swap when it ends, and replayed onto a
        fresh read when another writer committed first. Nothing is written if
        the block raises. A shared checkout's id opens the shared codebase,
        whose paths the block sees as stored (under the shared root).
        """
        codebase_id = self.sharing.stored_id(codebase_id)
        txn = committing.begin(self.engine, codebase_id, fencing_token)
        yield txn
        publish.commit_published(self.engine, txn, retry or self.retry, fresh=False)

    def load_analysis_etag(self, codebase_id: str) -> str | None:
        """The ETag of ``analysis.json`` (``None`` when absent), without reading it."""
        codebase_id = self.sharing.stored_id(codebase_id)
        try:
            return self.store.head(layout.analysis_key(codebase_id)).etag
        except NotFoundError:
            return None

    # -- merging analysers' results -----------------------------------------------------------

    def merge_file_analyses(
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
        """Merge one analyser's results into a codebase, safely alongside other analysers.

        1. Each analysis is written to its per-file object.
        2. One journal delta records the merge, under a name no other writer
           takes, so concurrent merges never wait for each other to append.
        3. ``analysis.json`` is updated by compare-and-swap: with the eager
           policy (the default) before this returns, by this writer or by the
           one folding the journal for everybody (group commit); with the
           deferred one when the journal has grown past its thresholds or
           ``compact`` runs. These
           analyses replace older ones of the same paths, ``removed`` paths
           go away, metrics and top teaching files are recomputed; the
           dependency graph and global patterns are kept. A codebase without
           an analysis gets a new one.
        4. Per-file objects of removed paths are deleted.
        5. ``file_hashes.json`` is merged the same way, after the commit, so
           it never claims a file that ``analysis.json`` lacks: a crash in
           between costs a re-analysis, never a skipped file.

        ``graph`` (a :class:`~documee_remote.GraphUpdate`) brings this
        merge's part of the dependency graph and global patterns as data,
        which a delta can hold. ``merge`` (a function merging them) and
        ``fencing_token`` (from :meth:`lease`: the commit is refused with
        :class:`~documee_remote.leases.FencedError` once a newer lease holder
        has recorded a higher token) cannot live in a delta: with either, the
        merge commits ``analysis.json`` directly.

        ``analyses`` values may be Documee's own objects or dicts (converted).

        Returns the committed analysis (deferred: the analysis as readers of
        this library see it, which costs a read of ``analysis.json``; use
        :meth:`append_file_analyses` to skip that).
        """
        ours = interop.as_file_analyses(analyses, codebase_id=codebase_id)
        local_id = codebase_id
        codebase_id, ours, file_hashes, removed, graph = self.sharing.merge_out(
            codebase_id, ours, file_hashes, removed, graph
        )
        removed = frozenset(removed)
        merging.check_merge(codebase_id, ours, file_hashes, removed)
        require_atomic_writes(self.engine, codebase_id)
        if merge is None and fencing_token is None:
            appended = appending.append(
                self.engine,
                codebase_id,
                ours,
                file_hashes,
                removed,
                analysis_time_ms=analysis_time_ms,
                retry=retry,
                graph=graph,
            )
            if stats is not None:
                stats.add(appended.report.stats)
            committed = appended.committed
            if committed is None and appended.report.folded:
                # Another writer folded the merge: analysis.json alone holds it.
                committed = reading.read_analysis(self.engine, codebase_id)[0]
            if committed is None:
                # Deferred and not yet due: the journal holds the merge, and
                # the analysis returned is the one readers see.
                # A private copy: the caller owns what a merge returns (the read cache's
                # shared, read-only result is for loads).
                committed = self.load_analysis(codebase_id, copy=True)
                if committed is None:
                    committed = merging_rules.new_analysis(codebase_id)
            return self.sharing.analysis_in(local_id, committed)
        committed = merging.merge_directly(
            self.engine,
            codebase_id,
            ours,
            file_hashes,
            removed,
            graph=graph,
            merge=merge,
            analysis_time_ms=analysis_time_ms,
            retry=retry,
            stats=stats,
            fencing_token=fencing_token,
        )
        return self.sharing.analysis_in(local_id, committed)

    def append_file_analyses(
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
        """Record a merge in the journal; compact as the policy says; return no analysis.

        :meth:`merge_file_analyses` for writers that do not need the merged
        analysis back. Deferred: per-file objects and one delta, a handful of
        requests whatever the codebase's size; readers of this library see
        the merge at once, ``analysis.json`` after the next compaction. Eager:
        returns once ``analysis.json`` holds the merge, with **group commit**:
        of many writers appending at once, one (the folder) reads, folds and
        rewrites ``analysis.json`` for all, and the others wait for its fold
        (a folder that stops making progress for the policy's
        ``group_wait_seconds`` is taken over). ``analyses`` values may be
        Documee's own objects or dicts (converted).
        """
        ours = interop.as_file_analyses(analyses, codebase_id=codebase_id)
        codebase_id, ours, file_hashes, removed, graph = self.sharing.merge_out(
            codebase_id, ours, file_hashes, removed, graph
        )
        merging.check_merge(codebase_id, ours, file_hashes, removed)
        require_atomic_writes(self.engine, codebase_id)
        return appending.append(
            self.engine,
            codebase_id,
            ours,
            file_hashes,
            frozenset(removed),
            analysis_time_ms=analysis_time_ms,
            retry=retry,
            graph=graph,
        ).report

    def compact(self, codebase_id: str, *, retry: RetryPolicy | None = None) -> CompactReport:
        """Fold the journal's pending deltas into ``analysis.json`` and prune folded ones.

        Commits with ``If-Match`` (re-reading and folding again after losing
        a race, within ``retry``), then records a marker, publishes the
        folded deltas' hashes to ``file_hashes.json``, deletes per-file
        objects of removed files, and deletes folded deltas older than the
        policy's grace period. Safe to run at any time, from anywhere, as
        often as wanted: with nothing pending it writes nothing.
        """
        codebase_id = self.sharing.stored_id(codebase_id)
        require_atomic_writes(self.engine, codebase_id)
        txn = compacting.compact(self.engine, codebase_id, retry or self.retry)
        report = compacting.compact_report(txn, codebase_id)
        logger.info(
            "compacted %s: folded %d delta(s) up to %d, deleted %d",
            codebase_id,
            report.folded,
            report.watermark,
            report.deleted,
        )
        return report

    # -- hash claims of raw copies (documee_remote.transfer) ---------------------------------

    def withdraw_hash_claims(self, codebase_id: str, keep: Callable[[str, str], bool]) -> None:
        """Withdraw, with compare-and-swap, every claim ``keep(path, sha256)`` rejects.

        For writers that replace ``analysis.json`` wholesale (transfers): the
        step a merge takes before its commit (invariant 3).
        """
        hash_index.cas_hashes(
            self.engine,
            codebase_id,
            lambda current: {p: h for p, h in current.items() if keep(p, h)},
            retry=self.retry,
            stats=TransactionStats(),
        )

    def claim_hashes_after_commit(
        self,
        codebase_id: str,
        committed_etag: str | None,
        analyses: Mapping[str, FileAnalysis],
        hashes: Mapping[str, str],
        *,
        merge: bool = True,
    ) -> None:
        """After committing ``analyses``: merge ``hashes`` in (unless the caller already
        wrote them), then withdraw those another writer's later commit overtook, as a
        merge does after its commit."""
        if merge:
            hash_index.merge_hashes(
                self.engine,
                codebase_id,
                hashes,
                frozenset(),
                retry=self.retry,
                stats=TransactionStats(),
            )
        hash_index.withdraw_overtaken_hashes(
            self.engine, codebase_id, committed_etag, analyses, hashes
        )

    def mark_hashes_published(self, codebase_id: str, seq: int) -> None:
        """Write the journal marker "deltas up to ``seq`` folded, hashes published".

        For writers that replace ``analysis.json`` wholesale: the deltas up to
        its watermark are no longer in it, so no compaction may publish their
        hashes as unfinished work (a marker early only costs a re-analysis).
        """
        journal_io.put_marker(self.engine, codebase_id, seq)

    # -- exclusive work ---------------------------------------------------------------------

    def lease(
        self,
        codebase_id: str,
        *,
        ttl: float = 60.0,
        owner: str | None = None,
        wait: float = 0.0,
        clock_skew: float = 5.0,
        auto_renew: bool = True,
    ) -> Lease:
        """A lease for exclusive work on a codebase; use it with ``with``.

        ``with pm.lease(cid, ttl=60) as lease:`` acquires it (waiting up to
        ``wait`` seconds), renews it every ``ttl / 3`` seconds in the
        background, and releases it at the end. Pass
        ``fencing_token=lease.token`` to merges so that they are refused if
        the lease is taken over. See :mod:`documee_remote.leases`.
        """
        codebase_id = self.sharing.stored_id(codebase_id)
        require_atomic_writes(self.engine, codebase_id)
        return leases.Lease(
            self,
            codebase_id,
            ttl=ttl,
            owner=owner,
            wait=wait,
            clock_skew=clock_skew,
            auto_renew=auto_renew,
        )

    # -- checking and cleaning up ----------------------------------------------------------

    def verify(
        self,
        codebase_id: str,
        *,
        repair: bool = False,
        grace_seconds: float = ORPHAN_GRACE_SECONDS,
    ) -> integrity.VerifyReport:
        """Check the codebase's invariants; with ``repair``, fix what ``analysis.json`` can.

        See :func:`documee_remote.integrity.verify`.
        """
        codebase_id = self.sharing.stored_id(codebase_id)
        return integrity.verify(self, codebase_id, repair=repair, grace_seconds=grace_seconds)

    def gc(
        self,
        codebase_id: str,
        *,
        grace_seconds: float = ORPHAN_GRACE_SECONDS,
        dry_run: bool = False,
    ) -> integrity.GcReport:
        """Remove per-file objects no entry refers to, older than ``grace_seconds``.

        See :func:`documee_remote.integrity.gc`.
        """
        codebase_id = self.sharing.stored_id(codebase_id)
        return integrity.gc(self, codebase_id, grace_seconds=grace_seconds, dry_run=dry_run)

    # -- lifecycle ---------------------------------------------------------------------------

    def close(self) -> None:
        """Close the store if this manager opened it."""
        self.engine.close()
        if self._owns_store:
            self.store.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def _create_local_root(store: Store) -> None:
    """Create a local store's directory now, as upstream's constructor does.

    Upstream's users (and its tests) look at the directory before anything is
    saved. A read-only store is left alone: creating it would be a write.
    """
    if not isinstance(store, LocalStore) or store.read_only:
        return
    try:
        store.root.mkdir(parents=True, exist_ok=True)
    except PermissionError as exc:
        raise PermissionDeniedError(f"cannot create {store.url}: {exc.strerror}") from exc
    except FileExistsError as exc:
        raise ConfigurationError(f"{store.url} exists and is not a directory") from exc
