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
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import TracebackType
from typing import Any, Self, TypeVar

from . import codec, integrity, interop, journal, layout
from .config import DEFAULT_STORE_URL
from .errors import (
    ConfigurationError,
    ConflictError,
    CorruptObjectError,
    InvalidKeyError,
    NotFoundError,
    PermissionDeniedError,
    PreconditionFailedError,
    TooManyConflictsError,
    TransientError,
    UnsupportedOperationError,
)
from .interop import AnalysisInput, FileAnalysisInput
from .journal import CompactionPolicy, CompactReport, Delta, GraphUpdate, JournalListing
from .leases import BOOKKEEPING_KEY, FencedError, Lease, recorded_fence
from .merge import apply_file_changes, new_analysis, refresh_derived
from .models import CodebaseAnalysis, FileAnalysis
from .retry import Backoff, RefusalWatch, RetryPolicy, TransactionStats
from .sharing import Checkout, Sharing, resolve
from .stores import ObjectMeta, Store, etag_of, open_store
from .stores.local import LocalStore

__all__ = [
    "DEFAULT_LOCAL_ROOT",
    "AppendReport",
    "PersistenceManager",
    "SaveReport",
    "Transaction",
]

#: A caller's merge of what a merge cannot recompute: called with the committed
#: analysis (already holding the new file analyses) and the merged paths.
GraphMerge = Callable[[CodebaseAnalysis, Mapping[str, FileAnalysis], frozenset[str]], None]

logger = logging.getLogger("documee_remote.manager")

_T = TypeVar("_T")

#: A compaction that moves the watermark past a multiple of this lists the whole
#: journal to prune what listings from a watermark no longer show.
_PRUNE_EVERY = 16

#: Upstream's default base path, used when neither an argument nor DOCUMEE_STORE_URL is given.
DEFAULT_LOCAL_ROOT = DEFAULT_STORE_URL


@dataclass(frozen=True, slots=True)
class SaveReport:
    """What :meth:`PersistenceManager.save_analysis` wrote."""

    codebase_id: str
    files: int
    uploaded: int
    unchanged: int
    deleted: int
    analysis_written: bool
    bytes_written: int


@dataclass(frozen=True, slots=True)
class AppendReport:
    """What :meth:`PersistenceManager.append_file_analyses` recorded."""

    codebase_id: str
    #: The journal seq of the delta holding this merge.
    seq: int
    files: int
    removed: int
    #: The compaction this call ran, if any.
    compaction: CompactReport | None
    stats: TransactionStats
    #: Whether ``analysis.json`` holds the merge (eager: always, by this call's
    #: compaction or a concurrent writer's; deferred: once a compaction ran).
    folded: bool = False


@dataclass(frozen=True, slots=True)
class _Appended:
    report: AppendReport
    #: The analysis the merge's compaction committed or found (None: not compacted).
    committed: CodebaseAnalysis | None


@dataclass
class _View:
    """``analysis.json`` as stored, with the journal's pending deltas folded in."""

    analysis: CodebaseAnalysis | None
    etag: str | None
    raw: bytes | None
    #: The watermark of the stored ``analysis.json`` (before folding).
    watermark: int
    folded: list[tuple[int, Delta]]
    listing: JournalListing
    #: Group commit: the listing shows a delta newer than the caller's (unparsed).
    newer: bool = False


@dataclass
class Transaction:
    """One optimistic read-modify-write of a codebase's ``analysis.json``.

    Changes go through the methods, which apply them at once to
    :attr:`analysis` (so the body of a ``with`` block can read its own
    changes) and record them, so that the commit can replay them on a fresh
    read when another writer got there first. Changing :attr:`analysis`
    directly only affects the first attempt; use :meth:`apply` instead.
    """

    codebase_id: str
    analysis: CodebaseAnalysis = field(repr=False)  # its repr would print every body
    etag: str | None
    stats: TransactionStats = field(default_factory=TransactionStats)
    #: A lease's fencing token: the commit is refused if a higher one is recorded.
    fencing_token: int | None = None
    _raw: bytes | None = field(default=None, repr=False)
    _ops: list[Callable[[CodebaseAnalysis], AnalysisInput | None]] = field(
        default_factory=list, repr=False
    )
    # Journal deltas folded into this attempt's analysis, in seq order.
    _folded: list[tuple[int, Delta]] = field(default_factory=list, repr=False)
    _listing: JournalListing | None = field(default=None, repr=False)
    # Compaction on behalf of one merge: done once the watermark reaches it.
    _until: int | None = field(default=None, repr=False)
    _known: dict[int, Delta] | None = field(default=None, repr=False)
    _wrote: bool = field(default=False, repr=False)
    _compaction: bool = field(default=False, repr=False)
    # Group commit: give way to a newer writer's compaction (and whether it did).
    _yield: bool = field(default=False, repr=False)
    _yielded: bool = field(default=False, repr=False)
    # The journal listing of the last read, and what pruning it did: (deleted, kept young).
    _listing_seen: JournalListing | None = field(default=None, repr=False)
    _pruned: tuple[int, int] = (0, 0)

    @property
    def existed(self) -> bool:
        """Whether ``analysis.json`` existed when this attempt read it."""
        return self.etag is not None

    def apply(self, fn: Callable[[CodebaseAnalysis], AnalysisInput | None]) -> None:
        """Record a change: ``fn`` mutates the analysis in place or returns a new one.

        The result may be a Documee object or a dict too (see
        :mod:`documee_remote.interop`); it is converted to this library's model.
        """
        self._ops.append(fn)
        self.analysis = _applied(fn, self.analysis, self.codebase_id)

    def put_file(self, analysis: FileAnalysisInput) -> None:
        """Add or replace one file's analysis (this library's model, Documee's, or a dict)."""
        fa = interop.as_file_analysis(analysis, codebase_id=self.codebase_id)
        self.apply(lambda a: apply_file_changes(a, {fa.file_path: fa}))

    def remove_file(self, file_path: str) -> None:
        """Drop one file's analysis."""
        self.apply(lambda a: apply_file_changes(a, {}, [file_path]))

    def _replay(self, fresh: CodebaseAnalysis) -> CodebaseAnalysis:
        for fn in self._ops:
            fresh = _applied(fn, fresh, self.codebase_id)
        return fresh


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
        :class:`~documee_remote.journal.CompactionPolicy` with thresholds.
    checkout:
        A :class:`~documee_remote.sharing.Checkout` (or a
        :class:`~documee_remote.sharing.Sharing` of several) mapping local
        checkouts to shared codebases; default: the environment's
        (``DOCUMEE_SHARE_CONFIG``, ``DOCUMEE_CHECKOUT_ROOT``...).
    **options:
        Store options (see :func:`~documee_remote.open_store`); the ``DOCUMEE_*``
        variables fill in those not given, whether a URL is given or not.

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
        self.retry = retry or RetryPolicy()
        #: Local checkouts mapped to shared codebases (default: the environment's).
        self.sharing = resolve(checkout)
        self.compaction = CompactionPolicy.of(compaction)
        self._side: ThreadPoolExecutor | None = None
        # Per codebase, a watermark this manager has seen: journal listings start
        # there, so they stay short however many folded deltas the grace period
        # keeps (see _list_journal).
        self._floors: dict[str, int] = {}
        self._owns_store = not isinstance(store_or_url, Store)
        # The one way to a store: the DOCUMEE_* settings fill in what is not given here.
        self.store = open_store(store_or_url, **options)
        if self._owns_store:
            # As upstream, a path given here is a directory to create; a Store
            # passed in is its opener's (the CLI's dry runs must create nothing).
            _create_local_root(self.store)
        logger.debug("persistence manager on %s", self.store.url)

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
        cb_key = layout.analysis_key(codebase_id)
        prefix = layout.codebase_prefix(codebase_id)
        metas = list(self.store.list_meta(prefix))
        stored = {meta.key: meta.etag for meta in metas}
        listed_journal = journal.parse_listing(codebase_id, metas)
        journal_seq = listed_journal.max_seq
        if journal_seq > journal.watermark(analysis):
            # This save replaces everything, deltas pending in the journal
            # included: mark them folded, or readers would replay them on top.
            analysis = analysis.model_copy()
            journal.set_watermark(analysis, journal_seq)
        per_file = {
            layout.file_analysis_key(codebase_id, path): codec.dump_file_analysis(fa)
            for path, fa in analysis.file_analyses.items()
        }
        changed = {k: v for k, v in per_file.items() if stored.get(k) != etag_of(v)}
        # Serialise analysis.json while the per-file objects upload: its PUT
        # still waits for them (it is the commit point), and the block waits
        # for the uploads even when the dump raises.
        with ThreadPoolExecutor(1, thread_name_prefix="documee-save") as uploads:
            uploaded = uploads.submit(self.store.put_many, changed)
            body = codec.dump_codebase_analysis(analysis)
            uploaded.result()
        wrote_analysis = stored.get(cb_key) != etag_of(body)
        if wrote_analysis:
            self.store.put(cb_key, body)
        if journal_seq and journal_seq not in listed_journal.markers:
            # The superseded deltas must not lend their hashes to get_file_hashes.
            self._put_marker(codebase_id, journal_seq)
        stale = {
            key: etag
            for key, etag in stored.items()
            if layout.is_file_analysis_name(key[len(prefix) :]) and key not in per_file
        }
        kept = self.store.delete_many(stale, if_match=stale) if stale else []
        report = SaveReport(
            codebase_id=codebase_id,
            files=len(per_file),
            uploaded=len(changed),
            unchanged=len(per_file) - len(changed),
            deleted=len(stale) - len(kept),
            analysis_written=wrote_analysis,
            bytes_written=sum(len(v) for v in changed.values()) + (len(body) * wrote_analysis),
        )
        logger.info(
            "saved analysis of %s: %d of %d per-file objects uploaded, %d deleted, "
            "analysis.json %s (%d bytes)",
            codebase_id,
            report.uploaded,
            report.files,
            report.deleted,
            "written" if wrote_analysis else "unchanged",
            len(body),
        )
        return report

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
        if not copy and stored_id == codebase_id and type(self.store).__name__ == "CachingStore":
            from .cache import MISS, load_shared  # only with the cache on

            shared = load_shared(self.store, stored_id)
            if shared is not MISS:
                return shared  # type: ignore[return-value]
        stored = self._read_view(stored_id).analysis
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
        key = layout.file_hashes_key(codebase_id)

        def stored() -> dict[str, str]:
            try:
                obj = self.store.get(key)
            except NotFoundError:
                return {}
            return codec.load_file_hashes(obj.data, key=key, codebase_id=codebase_id)

        hashes, listing = self._with_listing(codebase_id, stored)
        seqs = listing.above(listing.folded_hint)
        if not seqs:
            return self.sharing.hashes_in(local_id, hashes)
        deltas = self._get_deltas(codebase_id, seqs, tolerate_missing=True)
        claims, unclaimed = journal.fold_hashes(deltas)
        for path in unclaimed:
            hashes.pop(path, None)
        hashes.update(claims)
        return self.sharing.hashes_in(local_id, hashes)

    def save_file_hashes(self, codebase_id: str, hashes: Mapping[str, str]) -> None:
        """Store the ``{file path: sha256}`` map."""
        codebase_id, hashes = self.sharing.hashes_out(codebase_id, hashes)
        for path in hashes:
            layout.validate_file_path(path)
        _check_hashes(hashes, codebase_id)
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
        self._floors.pop(codebase_id, None)
        listing = {m.key: m for m in self.store.list_meta(layout.codebase_prefix(codebase_id))}
        if not listing:
            return False
        cb_key = layout.analysis_key(codebase_id)
        seen = listing.pop(cb_key, None)
        if seen is not None:
            try:
                self.store.delete(cb_key, if_match=seen.etag)
            except PreconditionFailedError as exc:
                raise PreconditionFailedError(
                    f"not deleting {codebase_id!r}: its analysis.json changed while deleting "
                    "(another writer merged into it); nothing was deleted",
                    key=cb_key,
                ) from exc
        skipped = self.store.delete_many(
            listing, if_match={key: meta.etag for key, meta in listing.items()}
        )
        logger.info(
            "deleted %d objects of %s (%d changed meanwhile and were kept)",
            len(listing) + (seen is not None) - len(skipped),
            codebase_id,
            len(skipped),
        )
        return True

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
        txn = self._update(codebase_id, fn, retry, fencing_token)
        if stats is not None:
            stats.add(txn.stats)
        return self.sharing.analysis_in(local_id, txn.analysis)

    def _update(
        self,
        codebase_id: str,
        fn: Callable[[CodebaseAnalysis], AnalysisInput | None],
        retry: RetryPolicy | None,
        fencing_token: int | None = None,
    ) -> Transaction:
        txn = Transaction(codebase_id, new_analysis(codebase_id), None, fencing_token=fencing_token)
        txn._ops.append(fn)
        self._commit(txn, retry or self.retry, fresh=True)
        return txn

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
        self._require_atomic_writes(codebase_id)
        view = self._read_view(codebase_id)
        txn = Transaction(
            codebase_id,
            view.analysis or new_analysis(codebase_id),
            view.etag,
            fencing_token=fencing_token,
            _raw=view.raw,
            _folded=view.folded,
            _listing_seen=view.listing,
        )
        yield txn
        self._commit(txn, retry or self.retry, fresh=False)

    def _commit(self, txn: Transaction, policy: RetryPolicy, *, fresh: bool) -> None:
        """Write ``txn`` with If-Match / If-None-Match, replaying it after each lost race.

        Each attempt reads ``analysis.json`` with the journal's pending deltas
        folded in and records them as folded, so every commit is also a
        compaction. Then publishes what the folded deltas imply (marker,
        hashes, removed per-file objects).
        """
        self._require_atomic_writes(txn.codebase_id)
        key = layout.analysis_key(txn.codebase_id)
        backoff = Backoff(policy, stats=txn.stats)
        first = not fresh
        last_error: Exception | None = None
        sent: bytes | None = None  # a body whose PUT failed transiently: it may have landed
        sent_folded: list[tuple[int, Delta]] = []  # the deltas that body folded
        watch = RefusalWatch(self.store.url, key)
        while backoff.next_attempt():
            if not first:
                try:
                    view = self._read_view(
                        txn.codebase_id,
                        listing=txn._listing,
                        known=txn._known,
                        # After a lost race, a merge's compaction need not parse what
                        # it will not write if a rival already folded its delta.
                        stop_at=txn._until if txn._listing is None else None,
                        yield_above=txn._until if txn._yield else None,
                    )
                except TransientError as exc:
                    last_error = exc
                    continue
                finally:
                    txn._listing = None  # only the first read may use a caller's listing
                txn.etag, txn._raw, txn._folded = view.etag, view.raw, view.folded
                txn._listing_seen = view.listing
                watch.reread(view.etag)  # raises when the endpoint refuses true conditions
                if sent is not None and txn._raw == sent:
                    # Our write landed; only its response was lost. txn.analysis is
                    # what that body was made from.
                    txn._wrote, txn._folded = True, sent_folded
                    break
                if view.newer:
                    txn._yielded = True  # a newer writer will fold this delta
                    return
                if txn._until is not None and view.watermark >= txn._until:
                    # Another compaction folded the delta this one is for. Unparsed
                    # (stop_at), the result is this attempt's fold: the state at the
                    # highest seq it folded, which holds this merge.
                    if view.analysis is not None:
                        txn.analysis = view.analysis
                    return
                if txn._compaction and not view.folded:
                    txn.analysis = view.analysis or new_analysis(txn.codebase_id)
                    if view.analysis is not None and view.listing.folded_hint < view.watermark:
                        self._publish_folded(txn, policy)  # a compactor died before its marker
                    return  # nothing pending: a compaction writes nothing
                sent = None
                txn.analysis = txn._replay(view.analysis or new_analysis(txn.codebase_id))
            first = False
            txn.analysis.codebase_id = txn.codebase_id
            if txn.fencing_token is not None:
                self._fence(txn)
            body = codec.dump_codebase_analysis(txn.analysis)
            if body == txn._raw:
                return  # nothing changed: no write, no conflict possible
            if txn._folded:
                gone = journal.fold_hashes(txn._folded)[1] - set(txn.analysis.file_analyses)
                try:
                    self._withdraw_first(txn.codebase_id, gone, policy)
                except (TooManyConflictsError, TransientError) as exc:
                    last_error = exc
                    continue
            try:
                if txn.etag is None:
                    txn.etag = self.store.put(key, body, if_none_match="*")
                else:
                    txn.etag = self.store.put(key, body, if_match=txn.etag)
                txn._raw = body
                txn._wrote = True
                break
            except (PreconditionFailedError, ConflictError) as exc:
                txn.stats.conflicts += 1
                last_error = exc
                if isinstance(exc, PreconditionFailedError):
                    watch.refused(txn.etag)
            except TransientError as exc:
                # The store already retried; a transaction re-reads anyway, so
                # a write that did land is seen on the next attempt.
                last_error = exc
                sent, sent_folded = body, txn._folded
        else:
            if isinstance(last_error, TransientError):
                # Not a contention problem: the storage kept failing. Surface its
                # own typed error, now that our policy is exhausted too.
                raise last_error
            raise TooManyConflictsError(
                f"gave up committing {key!r} after {txn.stats.attempts} attempts "
                f"({txn.stats.conflicts} lost to other writers): {last_error}",
                attempts=txn.stats.attempts,
                key=key,
            ) from last_error
        if txn._folded:
            self._publish_folded(txn, policy)

    def _read_analysis(
        self, codebase_id: str
    ) -> tuple[CodebaseAnalysis | None, str | None, bytes | None]:
        """The stored ``analysis.json`` alone: ``(analysis, etag, raw bytes)``."""
        etag, raw = self._read_raw(codebase_id)
        if raw is None:
            return None, None, None
        key = layout.analysis_key(codebase_id)
        analysis = codec.load_codebase_analysis(raw, key=key, codebase_id=codebase_id)
        return analysis, etag, raw

    def _read_raw(self, codebase_id: str) -> tuple[str | None, bytes | None]:
        """The stored ``analysis.json``'s ``(etag, bytes)``, unparsed; Nones when absent."""
        try:
            obj = self.store.get(layout.analysis_key(codebase_id))
        except NotFoundError:
            return None, None
        return obj.etag, obj.data

    # -- the journal -----------------------------------------------------------------------------

    def _list_journal(self, codebase_id: str, *, full: bool = False) -> JournalListing:
        """List the journal from the last watermark seen (all of it with ``full``).

        The delta at the current watermark is never pruned and watermarks only
        grow, so a listing from an older one that still finds that delta is
        complete from there up. When it does not find it (pruned after the
        watermark moved on, or the codebase deleted and begun again), the
        whole journal is listed.
        """
        prefix = layout.journal_prefix(codebase_id)
        floor = 0 if full else self._floors.get(codebase_id, 0)
        if floor > 1:
            after = journal.listing_start_after(codebase_id, floor)
            metas = self.store.list_meta(prefix, start_after=after)
            listing = journal.parse_listing(codebase_id, metas, start=floor)
            if floor in listing.deltas:
                return listing
        return journal.parse_listing(codebase_id, self.store.list_meta(prefix))

    def _saw_watermark(self, codebase_id: str, mark: int) -> None:
        self._floors[codebase_id] = mark

    def _with_listing(self, codebase_id: str, fn: Callable[[], _T]) -> tuple[_T, JournalListing]:
        """Run ``fn`` and list the journal at the same time (one round trip, not two).

        The order does not matter to correctness: a listing older than the
        ``analysis.json`` read shows nothing above its watermark, and one
        that is newer can only show a hole (see :meth:`_read_view`).
        """
        if self._side is None:
            self._side = ThreadPoolExecutor(1, thread_name_prefix="documee-journal")
        listing: Future[JournalListing] = self._side.submit(self._list_journal, codebase_id)
        try:
            result = fn()
        finally:
            found = listing.result()
        return result, found

    def _get_deltas(
        self,
        codebase_id: str,
        seqs: Iterable[int],
        *,
        known: Mapping[int, Delta] | None = None,
        tolerate_missing: bool = False,
    ) -> list[tuple[int, Delta]]:
        """Fetch and decode deltas (concurrently); ``NotFoundError`` if one has gone."""
        seqs = list(seqs)
        known = known or {}
        wanted = {s: journal.delta_key(codebase_id, s) for s in seqs if s not in known}
        got = self.store.get_many(wanted.values()) if wanted else {}
        deltas = []
        for seq in sorted({*wanted, *(s for s in seqs if s in known)}):
            if seq in known:
                deltas.append((seq, known[seq]))
                continue
            obj = got[wanted[seq]]
            if obj is None:
                if tolerate_missing:
                    continue
                raise NotFoundError(
                    f"journal delta {seq} of {codebase_id!r} was folded and removed meanwhile",
                    key=wanted[seq],
                )
            deltas.append((seq, self._decode_once_more(codebase_id, wanted[seq], obj.data)))
        return deltas

    def _decode_once_more(self, codebase_id: str, key: str, data: bytes) -> Delta:
        """Decode a delta; if it does not parse, read it once more before calling it corrupt.

        A delta is immutable and was whole when it was created, so a body that
        does not parse was most likely cut short on its way here; the same
        bytes twice are really corrupt.
        """
        try:
            return journal.decode_delta(data, key=key, codebase_id=codebase_id)
        except CorruptObjectError:
            again = self.store.get(key).data
            if again == data:
                raise
            return journal.decode_delta(again, key=key, codebase_id=codebase_id)

    #: How often a read starts over when the journal moved under it.
    _VIEW_ATTEMPTS = 6

    def _read_view(
        self,
        codebase_id: str,
        *,
        listing: JournalListing | None = None,
        known: Mapping[int, Delta] | None = None,
        stop_at: int | None = None,
        yield_above: int | None = None,
    ) -> _View:
        """``analysis.json`` with every pending delta folded in, in seq order.

        With ``stop_at``, a read that shows deltas up to it folded (by a
        marker, or the watermark found without parsing) returns at once with
        ``analysis`` None; with ``yield_above``, so does one whose listing
        shows a newer delta (``newer``: group commit).

        A hole in the listed seqs above the watermark means the listing saw
        a compaction's deletions that the ``analysis.json`` read predates, and
        a delta that vanished between listing and GET was folded meanwhile:
        either way, read again. A hole that stays while ``analysis.json``
        stays the same is real (deltas deleted by hand, by a bucket lifecycle
        rule, or with the codebase): the deltas that exist are folded, with a
        warning.
        """
        gap_seen_at: str | bool | None = False  # the ETag a hole was first seen with
        for _ in range(self._VIEW_ATTEMPTS):
            if listing is None:
                (etag, raw), found = self._with_listing(
                    codebase_id, lambda: self._read_raw(codebase_id)
                )
            else:
                (etag, raw), found = self._read_raw(codebase_id), listing
            listing = None
            if stop_at is not None and raw is not None:
                done = max(found.folded_hint, journal.peek_watermark(raw))
                if done >= stop_at:
                    return _View(None, etag, raw, done, [], found)
            if yield_above is not None and found.max_seq > yield_above:
                return _View(None, etag, raw, 0, [], found, newer=True)
            analysis = None
            if raw is not None:
                try:
                    analysis = codec.load_codebase_analysis(
                        raw, key=layout.analysis_key(codebase_id), codebase_id=codebase_id
                    )
                except CorruptObjectError:
                    # Once more before calling it corrupt: a read can be cut short.
                    if self._read_raw(codebase_id)[1] == raw:
                        raise
                    continue
            mark = journal.watermark(analysis)
            if found.start > mark + 1:
                # Listed from a watermark newer than this analysis.json's (a
                # stale read, or a codebase begun again): list all of it.
                found = self._list_journal(codebase_id, full=True)
            self._saw_watermark(codebase_id, mark)
            missing = found.missing_above(mark)
            if missing and gap_seen_at != etag:
                gap_seen_at = etag
                continue
            if missing:
                (logger.debug if analysis is None else logger.warning)(
                    "journal of %s lacks %d delta(s) above its watermark %d (e.g. seq %d): "
                    "folding the %d that exist",
                    codebase_id,
                    len(missing),
                    mark,
                    missing[0],
                    len(found.above(mark)),
                )
            try:
                deltas = self._get_deltas(codebase_id, found.above(mark), known=known)
            except NotFoundError:
                continue
            view = analysis
            if deltas:
                view = analysis if analysis is not None else new_analysis(codebase_id)
                journal.fold(view, deltas)
            return _View(view, etag, raw, mark, deltas, found)
        raise ConflictError(
            f"could not read a consistent state of {codebase_id!r}: its journal was "
            f"compacted under every one of {self._VIEW_ATTEMPTS} reads",
            key=layout.analysis_key(codebase_id),
        )

    def load_analysis_etag(self, codebase_id: str) -> str | None:
        """The ETag of ``analysis.json`` (``None`` when absent), without reading it."""
        codebase_id = self.sharing.stored_id(codebase_id)
        try:
            return self.store.head(layout.analysis_key(codebase_id)).etag
        except NotFoundError:
            return None

    @staticmethod
    def _fence(txn: Transaction) -> None:
        """Refuse a stale lease holder's commit; record a newer holder's token."""
        token = txn.fencing_token
        assert token is not None
        extra = txn.analysis.__pydantic_extra__
        recorded = recorded_fence(extra)
        if token < recorded:
            raise FencedError(
                f"refusing to commit to {txn.codebase_id!r} with fencing token {token}: "
                f"token {recorded} is already recorded (this writer's lease was taken over)",
                key=layout.analysis_key(txn.codebase_id),
            )
        if token > recorded:
            found = (extra or {}).get(BOOKKEEPING_KEY)
            book = dict(found) if isinstance(found, dict) else {}
            book["fence"] = token
            setattr(txn.analysis, BOOKKEEPING_KEY, book)

    def _retrying(self, fn: Callable[[], _T], retry: RetryPolicy | None) -> _T:
        """Run an idempotent step again on transient errors, within the retry policy."""
        backoff = Backoff(retry or self.retry)
        while True:
            backoff.next_attempt()
            try:
                return fn()
            except TransientError:
                if backoff.exhausted():
                    raise

    def _require_atomic_writes(self, codebase_id: str) -> None:
        if not self.store.capabilities.atomic_conditional_writes:
            raise UnsupportedOperationError(
                f"{self.store.url} cannot write conditionally, so concurrent merges into "
                f"{codebase_id!r} would lose updates; use a backend that can (local disk, "
                "S3, s3fs) or save_analysis from a single writer",
                codebase_id=codebase_id,
            )

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
        2. One journal delta records the merge (created with
           ``If-None-Match``, so concurrent merges are totally ordered).
        3. ``analysis.json`` is updated by compare-and-swap: with the eager
           policy (the default) right away, with the deferred one when the
           journal has grown past its thresholds or ``compact`` runs. These
           analyses replace older ones of the same paths, ``removed`` paths
           go away, metrics and top teaching files are recomputed; the
           dependency graph and global patterns are kept. A codebase without
           an analysis gets a new one. A concurrent merge's compaction may
           fold this one's delta first, which counts as done.
        4. Per-file objects of removed paths are deleted.
        5. ``file_hashes.json`` is merged the same way, after the commit, so
           it never claims a file that ``analysis.json`` lacks: a crash in
           between costs a re-analysis, never a skipped file.

        ``graph`` (a :class:`~documee_remote.journal.GraphUpdate`) brings this
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
        self._check_merge(codebase_id, ours, file_hashes, removed)
        self._require_atomic_writes(codebase_id)
        if merge is None and fencing_token is None:
            appended = self._append(
                codebase_id,
                ours,
                file_hashes,
                removed,
                analysis_time_ms=analysis_time_ms,
                retry=retry,
                until_folded=self.compaction.mode == "eager",
                graph=graph,
            )
            if stats is not None:
                stats.add(appended.report.stats)
            committed = appended.committed
            if committed is None:
                # Deferred and not yet due: the journal holds the merge, and
                # the analysis returned is the one readers see.
                committed = self.load_analysis(codebase_id) or new_analysis(codebase_id)
            return self.sharing.analysis_in(local_id, committed)
        # A caller's graph merge cannot be stored in a delta, and a fencing
        # token must be checked against the commit point itself: both commit
        # analysis.json directly (folding whatever the journal holds first).
        per_file = {
            layout.file_analysis_key(codebase_id, path): codec.dump_file_analysis(fa)
            for path, fa in ours.items()
        }
        self._retrying(lambda: self.store.put_many(per_file), retry)
        self._withdraw_first(codebase_id, set(removed) - set(ours), retry or self.retry)
        merged = frozenset(ours)

        def change(analysis: CodebaseAnalysis) -> None:
            apply_file_changes(analysis, ours, removed)
            if graph is not None:
                journal.apply_graph_update(analysis, graph, ours, removed)
            if merge is not None:
                merge(analysis, ours, removed)
            refresh_derived(analysis, add_analysis_time_ms=analysis_time_ms)

        txn = self._update(codebase_id, change, retry, fencing_token)
        txn_stats = txn.stats
        committed = txn.analysis
        gone = [p for p in removed if p not in committed.file_analyses]
        if gone:
            self.store.delete_many([layout.file_analysis_key(codebase_id, p) for p in gone])
        self._merge_hashes(codebase_id, file_hashes, removed, retry=retry, stats=txn_stats)
        self._withdraw_overtaken_hashes(codebase_id, txn, ours, file_hashes)
        if stats is not None:
            stats.add(txn_stats)
        logger.info(
            "merged %d file(s), removed %d, into %s in %d attempt(s)",
            len(merged),
            len(removed),
            codebase_id,
            txn_stats.attempts,
        )
        return self.sharing.analysis_in(local_id, committed)

    @staticmethod
    def _check_merge(
        codebase_id: str,
        analyses: Mapping[str, FileAnalysis],
        file_hashes: Mapping[str, str],
        removed: Iterable[str],
    ) -> None:
        for path, fa in analyses.items():
            layout.validate_file_path(path)
            if fa.file_path != path:
                raise InvalidKeyError(
                    f"analysis for {path!r} names another file, {fa.file_path!r}",
                    codebase_id=codebase_id,
                )
        for path in removed:
            layout.validate_file_path(path)
        _check_hashes(file_hashes, codebase_id)
        stray = set(file_hashes) - set(analyses)
        if stray:
            raise InvalidKeyError(
                f"file_hashes names {len(stray)} file(s) with no analysis in this merge, e.g. "
                f"{sorted(stray)[0]!r}: a hash may only be recorded with its analysis",
                codebase_id=codebase_id,
            )

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
        when newer deltas exist, their writer's compaction folds this one too,
        so of many writers appending at once only the newest reads, folds and
        rewrites ``analysis.json`` (waiting at most the policy's
        ``group_wait_seconds`` for it). ``analyses`` values may be Documee's
        own objects or dicts (converted).
        """
        ours = interop.as_file_analyses(analyses, codebase_id=codebase_id)
        codebase_id, ours, file_hashes, removed, graph = self.sharing.merge_out(
            codebase_id, ours, file_hashes, removed, graph
        )
        self._check_merge(codebase_id, ours, file_hashes, removed)
        self._require_atomic_writes(codebase_id)
        return self._append(
            codebase_id,
            ours,
            file_hashes,
            frozenset(removed),
            analysis_time_ms=analysis_time_ms,
            retry=retry,
            until_folded=False,
            graph=graph,
        ).report

    def _append(
        self,
        codebase_id: str,
        analyses: Mapping[str, FileAnalysis],
        file_hashes: Mapping[str, str],
        removed: frozenset[str],
        *,
        analysis_time_ms: float,
        retry: RetryPolicy | None,
        until_folded: bool,
        graph: GraphUpdate | None = None,
    ) -> _Appended:
        policy = retry or self.retry
        bodies = {path: codec.dump_file_analysis(fa) for path, fa in analyses.items()}
        self._retrying(
            lambda: self.store.put_many(
                {layout.file_analysis_key(codebase_id, p): b for p, b in bodies.items()}
            ),
            retry,
        )
        body = journal.encode_delta(
            codebase_id,
            bodies,
            removed=removed,
            file_hashes=file_hashes,
            analysis_time_ms=analysis_time_ms,
            graph=graph,
        )
        stats = TransactionStats()
        seq, listing = self._create_delta(codebase_id, body, policy, stats)
        delta = Delta(
            format=journal.DELTA_FORMAT,
            codebase_id=codebase_id,
            created_at="",
            writer="",
            analysis_time_ms=analysis_time_ms,
            removed=sorted(removed),
            file_hashes=dict(file_hashes),
            file_analyses=dict(analyses),
            graph=graph,
        )
        pending = listing.above(listing.folded_hint)
        pending_bytes = sum(listing.deltas[s].size for s in pending)
        compaction: CompactReport | None = None
        committed: CodebaseAnalysis | None = None
        group = not until_folded and self.compaction.mode == "eager"
        if group or until_folded or self.compaction.due(len(pending), pending_bytes):
            try:
                if group:
                    txn = self._group_commit(codebase_id, seq, delta, policy)
                else:
                    txn = self._compact(
                        codebase_id,
                        policy,
                        until=seq if until_folded else None,
                        listing=listing,
                        known={seq: delta},
                    )
            except Exception as exc:
                exc.add_note(
                    f"the merge itself is recorded as journal delta {seq} of {codebase_id!r}: "
                    "readers of documee-remote see it, and the next compaction folds it into "
                    "analysis.json"
                )
                raise
            if txn is not None:
                stats.add(txn.stats)
                compaction = self._compact_report(txn, codebase_id)
                committed = txn.analysis
        logger.info(
            "merged %d file(s), removed %d, into %s as journal delta %d%s",
            len(analyses),
            len(removed),
            codebase_id,
            seq,
            "" if compaction is None else f" (compacted to {compaction.watermark})",
        )
        report = AppendReport(
            folded=group or compaction is not None,
            codebase_id=codebase_id,
            seq=seq,
            files=len(analyses),
            removed=len(removed),
            compaction=compaction,
            stats=stats,
        )
        return _Appended(report, committed)

    def _group_commit(
        self, codebase_id: str, seq: int, delta: Delta, policy: RetryPolicy
    ) -> Transaction | None:
        """Fold delta ``seq`` into ``analysis.json``, letting a newer writer do it if one exists.

        Every compaction folds every delta below the newest it lists (seqs are
        dense), so when several writers append at once only the newest needs
        to read, fold and rewrite ``analysis.json``. A compaction that finds a
        newer delta, when it has read ``analysis.json`` and before it parses
        it, yields: its writer waits for the marker of a compaction that
        covers its delta instead. Past the policy's ``group_wait_seconds`` (the
        newer writer may be deferred, or dead) it compacts regardless.
        Returns the compaction that did the work here, or None when another
        writer's did.
        """
        deadline = time.monotonic() + self.compaction.group_wait_seconds
        known = {seq: delta}
        pause = 0.02
        while True:
            txn = self._compact(
                codebase_id,
                policy,
                until=seq,
                known=known,
                yield_to_newer=time.monotonic() < deadline,
            )
            if not txn._yielded:
                return txn if txn._wrote else None
            while time.monotonic() < deadline:
                time.sleep(pause)
                pause = min(pause * 2, 0.5)
                try:
                    if self._list_journal(codebase_id).folded_hint >= seq:
                        return None  # folded, and its hashes published
                except TransientError:
                    continue
            logger.info(
                "journal of %s: no newer writer folded delta %d within %.1f s; compacting",
                codebase_id,
                seq,
                self.compaction.group_wait_seconds,
            )

    def _create_delta(
        self, codebase_id: str, body: bytes, policy: RetryPolicy, stats: TransactionStats
    ) -> tuple[int, JournalListing]:
        """Create the next delta with If-None-Match; return its seq and the listing it extends."""
        backoff = Backoff(policy, stats=stats)
        # A pick older than this may collide with a number a compaction
        # folded and deleted meanwhile (see the journal module): list again.
        fresh_for = self.compaction.grace_seconds / 4
        listing: JournalListing | None = None
        listed_at = 0.0
        last_error: Exception | None = None
        while backoff.next_attempt():
            if listing is None or time.monotonic() - listed_at > fresh_for:
                try:
                    listing, listed_at = self._list_journal(codebase_id), time.monotonic()
                except TransientError as exc:
                    last_error = exc
                    continue
            seq = listing.max_seq + 1
            key = journal.delta_key(codebase_id, seq)
            try:
                etag = self.store.put(key, body, if_none_match="*")
            except (PreconditionFailedError, ConflictError) as exc:
                stats.conflicts += 1
                last_error, listing = exc, None
                continue
            except TransientError as exc:
                last_error = exc
                if not self._landed(key, body):
                    continue
                etag = etag_of(body)
            meta = ObjectMeta(key, etag, len(body), _utcnow())
            return seq, listing.with_delta(seq, meta)
        if isinstance(last_error, TransientError):
            raise last_error
        raise TooManyConflictsError(
            f"gave up adding a delta to the journal of {codebase_id!r} after "
            f"{stats.attempts} attempts ({stats.conflicts} seqs taken by other writers)",
            attempts=stats.attempts,
            key=layout.journal_prefix(codebase_id),
        ) from last_error

    def _landed(self, key: str, body: bytes) -> bool:
        """Whether a PUT whose response was lost stored ``body`` (each delta is unique)."""
        try:
            return self.store.head(key).etag == etag_of(body)
        except (NotFoundError, TransientError):
            return False

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
        self._require_atomic_writes(codebase_id)
        txn = self._compact(codebase_id, retry or self.retry)
        report = self._compact_report(txn, codebase_id)
        logger.info(
            "compacted %s: folded %d delta(s) up to %d, deleted %d",
            codebase_id,
            report.folded,
            report.watermark,
            report.deleted,
        )
        return report

    def _compact(
        self,
        codebase_id: str,
        policy: RetryPolicy,
        *,
        until: int | None = None,
        listing: JournalListing | None = None,
        known: dict[int, Delta] | None = None,
        yield_to_newer: bool = False,
    ) -> Transaction:
        txn = Transaction(codebase_id, new_analysis(codebase_id), None)
        txn._until, txn._listing, txn._known = until, listing, known
        txn._compaction, txn._yield = True, yield_to_newer
        self._commit(txn, policy, fresh=True)
        return txn

    def _compact_report(self, txn: Transaction, codebase_id: str) -> CompactReport:
        return CompactReport(
            codebase_id=codebase_id,
            folded=len(txn._folded) if txn._wrote else 0,
            watermark=journal.watermark(txn.analysis),
            analysis_written=txn._wrote,
            deleted=txn._pruned[0],
            kept_young=txn._pruned[1],
            attempts=txn.stats.attempts,
            conflicts=txn.stats.conflicts,
        )

    def _publish_folded(self, txn: Transaction, policy: RetryPolicy) -> None:
        """After a commit that folded deltas: hashes, removed per-file objects, marker, prune.

        The marker goes last, so it means "folded, and the hashes published":
        the hashes of every delta above the newest marker are published here,
        which finishes the work of a compaction that died after its commit.
        The commit has happened, so a storage failure here is logged, not
        raised: the hashes are only late (a re-analysis, never a skip), and
        without a marker the next compaction publishes them again.
        """
        codebase_id = txn.codebase_id
        mark = txn._folded[-1][0] if txn._folded else journal.watermark(txn.analysis)
        self._saw_watermark(codebase_id, mark)
        try:
            self._retrying(lambda: self._publish_hashes(txn, policy, mark), policy)
        except (TransientError, ConflictError, PermissionDeniedError) as exc:
            logger.warning(
                "committed %s up to journal seq %d, but publishing its hashes failed; "
                "the next compaction will: %s",
                codebase_id,
                mark,
                exc,
            )
            return
        listing = txn._listing_seen
        if listing is not None:
            before = txn._folded[0][0] - 1 if txn._folded else mark
            if listing.start > 1 and mark // _PRUNE_EVERY > before // _PRUNE_EVERY:
                # Listings start at the last watermark seen, so deltas folded
                # before it are out of sight: every so many seqs, look at all.
                with contextlib.suppress(TransientError):
                    listing = self._list_journal(codebase_id, full=True)
            pruned, young = self._prune_journal(codebase_id, listing, mark, marked=True)
            txn._pruned = (len(pruned), young)

    def _publish_hashes(self, txn: Transaction, policy: RetryPolicy, mark: int) -> None:
        """Hashes and removals of the deltas above the newest marker, then the marker at
        ``mark``. Idempotent, so it can be retried."""
        codebase_id, listing = txn.codebase_id, txn._listing_seen
        hint = listing.folded_hint if listing is not None else 0
        folded = dict(txn._folded)
        unfinished = [s for s in (listing.deltas if listing else ()) if hint < s <= mark]
        unfinished = [s for s in unfinished if s not in folded]
        if unfinished:
            folded.update(self._get_deltas(codebase_id, unfinished, tolerate_missing=True))
        entries = txn.analysis.file_analyses
        claims, unclaimed = journal.fold_hashes(sorted(folded.items()))
        gone = [p for p in unclaimed if p not in entries]
        if gone:
            self.store.delete_many([layout.file_analysis_key(codebase_id, p) for p in gone])
        self._merge_hashes(
            codebase_id, claims, frozenset(unclaimed), retry=policy, stats=TransactionStats()
        )
        self._withdraw_overtaken_hashes(
            codebase_id, txn, {p: entries[p] for p in claims if p in entries}, claims
        )
        self._put_marker(codebase_id, mark)

    def _put_marker(self, codebase_id: str, seq: int) -> None:
        """Record "deltas up to ``seq`` folded, hashes published" (see the journal module)."""
        with contextlib.suppress(PreconditionFailedError):  # a rival wrote it first
            self.store.put(
                journal.marker_key(codebase_id, seq),
                journal.encode_marker(seq),
                if_none_match="*",
            )

    def _withdraw_first(self, codebase_id: str, paths: set[str], policy: RetryPolicy) -> None:
        """Withdraw hash claims of paths a commit is about to remove, before it commits.

        Withdrawing is always safe (the file is analysed again), and doing it
        first means no crash can leave ``file_hashes.json`` claiming a file
        that ``analysis.json`` no longer has.
        """
        if not paths:
            return
        self._cas_hashes(
            codebase_id,
            lambda current: {p: h for p, h in current.items() if p not in paths},
            retry=policy,
            stats=TransactionStats(),
        )

    def _prune_journal(
        self,
        codebase_id: str,
        listing: JournalListing,
        mark: int,
        *,
        marked: bool = False,
        grace_seconds: float | None = None,
    ) -> tuple[list[str], int]:
        """Delete deltas folded below ``mark`` older than the grace period, and old markers.

        The delta at the watermark is never deleted: it keeps the highest
        seq visible, so the next writer picks a number above it. A marker
        goes once a newer one stands in for it (``marked``: the caller has
        just written the one at ``mark``). Returns the keys deleted and how
        many folded deltas were kept for being young.
        """
        grace = self.compaction.grace_seconds if grace_seconds is None else grace_seconds
        cutoff = _utcnow() - timedelta(seconds=grace)
        old = [s for s in listing.deltas if s < mark and listing.deltas[s].last_modified <= cutoff]
        young = sum(1 for s in listing.deltas if s < mark) - len(old)
        keys = [journal.delta_key(codebase_id, s) for s in old]
        # Markers go with the deltas (one batch, not a DELETE per compaction),
        # and only once a newer marker stands in for them.
        newest = max([*listing.markers, *([mark] if marked else [])], default=0)
        keys += [
            journal.marker_key(codebase_id, s)
            for s, meta in listing.markers.items()
            if s < newest and meta.last_modified <= cutoff
        ]
        if not keys:
            return [], young
        try:
            kept = set(self.store.delete_many(keys))
        except TransientError as exc:
            logger.debug("pruning the journal of %s failed, left for later: %s", codebase_id, exc)
            return [], young + len(old)
        return [k for k in keys if k not in kept], young

    def _merge_hashes(
        self,
        codebase_id: str,
        hashes: Mapping[str, str],
        removed: frozenset[str],
        *,
        retry: RetryPolicy | None,
        stats: TransactionStats,
    ) -> None:
        if not hashes and not removed:
            return

        def merge(current: dict[str, str]) -> dict[str, str]:
            updated = {p: h for p, h in current.items() if p not in removed}
            updated.update(hashes)
            return updated

        self._cas_hashes(codebase_id, merge, retry=retry, stats=stats)

    def _cas_hashes(
        self,
        codebase_id: str,
        change: Callable[[dict[str, str]], dict[str, str]],
        *,
        retry: RetryPolicy | None,
        stats: TransactionStats,
    ) -> None:
        """Read-modify-write ``file_hashes.json`` with compare-and-swap."""
        key = layout.file_hashes_key(codebase_id)
        backoff = Backoff(retry or self.retry, stats=TransactionStats())
        last_error: Exception | None = None
        watch = RefusalWatch(self.store.url, key)
        while backoff.next_attempt():
            etag: str | None = None
            try:
                try:
                    obj = self.store.get(key)
                    current = codec.load_file_hashes(obj.data, key=key, codebase_id=codebase_id)
                    etag = obj.etag
                except NotFoundError:
                    current, etag = {}, None
                watch.reread(etag)  # raises when the endpoint refuses true conditions
                updated = change(dict(current))
                if updated == current:
                    break
                body = codec.dump_file_hashes(updated)
                if etag is None:
                    self.store.put(key, body, if_none_match="*")
                else:
                    self.store.put(key, body, if_match=etag)
                break
            except (PreconditionFailedError, ConflictError) as exc:
                backoff.stats.conflicts += 1
                last_error = exc
                if isinstance(exc, PreconditionFailedError):
                    watch.refused(etag)
            except TransientError as exc:
                last_error = exc
        else:
            if isinstance(last_error, TransientError):
                raise last_error
            raise TooManyConflictsError(
                f"gave up updating {key!r} after {backoff.stats.attempts} attempts; "
                "analysis.json is committed, and files missing from file_hashes.json "
                "will simply be analysed again",
                attempts=backoff.stats.attempts,
                key=key,
            ) from last_error
        stats.add(backoff.stats)

    def _withdraw_overtaken_hashes(
        self,
        codebase_id: str,
        txn: Transaction,
        analyses: Mapping[str, FileAnalysis],
        hashes: Mapping[str, str],
    ) -> None:
        """Undo hash claims for paths another writer re-analysed after our commit.

        Two writers merging the same path commit ``analysis.json`` in one
        order but may write ``file_hashes.json`` in the other; then the hash
        would belong to the analysis that lost. When ``analysis.json`` moved
        on after our commit, read it and withdraw our hash for every path
        whose entry is no longer ours (only where the hash is still ours: the
        other writer's hash, if it landed, is the right one).
        """
        if not hashes:
            return
        key = layout.analysis_key(codebase_id)
        try:
            if self.store.head(key).etag == txn.etag:
                return
        except NotFoundError:
            pass
        current, _, _ = self._read_analysis(codebase_id)
        entries = current.file_analyses if current is not None else {}
        overtaken = {p for p, fa in analyses.items() if p in hashes and entries.get(p) != fa}
        if not overtaken:
            return

        def withdraw(current_hashes: dict[str, str]) -> dict[str, str]:
            return {
                p: h for p, h in current_hashes.items() if not (p in overtaken and h == hashes[p])
            }

        self._cas_hashes(codebase_id, withdraw, retry=None, stats=TransactionStats())
        logger.info(
            "withdrew %d hash claim(s) in %s overtaken by another writer",
            len(overtaken),
            codebase_id,
        )

    # -- hash claims of raw copies (documee_remote.transfer) ---------------------------------

    def withdraw_hash_claims(self, codebase_id: str, keep: Callable[[str, str], bool]) -> None:
        """Withdraw, with compare-and-swap, every claim ``keep(path, sha256)`` rejects.

        For writers that replace ``analysis.json`` wholesale (transfers): the
        step a merge takes before its commit (invariant 3).
        """
        self._cas_hashes(
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
            self._merge_hashes(
                codebase_id, hashes, frozenset(), retry=self.retry, stats=TransactionStats()
            )
        txn = Transaction(codebase_id, new_analysis(codebase_id), committed_etag)
        self._withdraw_overtaken_hashes(codebase_id, txn, analyses, hashes)

    def mark_hashes_published(self, codebase_id: str, seq: int) -> None:
        """Write the journal marker "deltas up to ``seq`` folded, hashes published".

        For writers that replace ``analysis.json`` wholesale: the deltas up to
        its watermark are no longer in it, so no compaction may publish their
        hashes as unfinished work (a marker early only costs a re-analysis).
        """
        self._put_marker(codebase_id, seq)

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
        self._require_atomic_writes(codebase_id)
        return Lease(
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
        grace_seconds: float = integrity.DEFAULT_GRACE_SECONDS,
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
        grace_seconds: float = integrity.DEFAULT_GRACE_SECONDS,
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
        if self._side is not None:
            self._side.shutdown(wait=True)
            self._side = None
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


def _applied(
    fn: Callable[[CodebaseAnalysis], AnalysisInput | None],
    analysis: CodebaseAnalysis,
    codebase_id: str,
) -> CodebaseAnalysis:
    """Run a transaction's change; what it returns or put in place may be Documee's own."""
    result = fn(analysis)
    return interop.as_codebase_analysis(
        analysis if result is None else result, codebase_id=codebase_id
    )


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


def _utcnow() -> datetime:
    return datetime.now(UTC)


def _check_hashes(hashes: Mapping[str, object], codebase_id: str) -> None:
    for path, digest in hashes.items():
        if not isinstance(digest, str):
            raise InvalidKeyError(
                f"the hash of {path!r} must be a string, not {type(digest).__name__}",
                codebase_id=codebase_id,
            )
