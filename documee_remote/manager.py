"""PersistenceManager: upstream Documee's class, on any store.

A drop-in for ``src.analysis.persistence.PersistenceManager``: the same
methods, the same key layout and the same JSON bytes, so a directory written
by upstream can be read here and the other way round. Where upstream logged
and returned ``None`` or ``{}`` on any failure, this raises the library's
typed errors instead (a corrupt object is not an absent one); ``None`` and
``{}`` mean only "not there".

Writes keep one rule: ``analysis.json`` is the commit point. Per-file objects
are written first and ``analysis.json`` last, so a reader that finds an
``analysis.json`` finds everything it refers to.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, Self, TypeVar

from . import codec, integrity, layout
from .errors import (
    ConflictError,
    InvalidKeyError,
    NotFoundError,
    PreconditionFailedError,
    TooManyConflictsError,
    TransientError,
    UnsupportedOperationError,
)
from .leases import BOOKKEEPING_KEY, FencedError, Lease, recorded_fence
from .merge import apply_file_changes, new_analysis, refresh_derived
from .models import CodebaseAnalysis, FileAnalysis
from .retry import Backoff, RetryPolicy, TransactionStats
from .stores import Store, etag_of, open_store

__all__ = ["DEFAULT_LOCAL_ROOT", "PersistenceManager", "SaveReport", "Transaction"]

#: A caller's merge of what a merge cannot recompute: called with the committed
#: analysis (already holding the new file analyses) and the merged paths.
GraphMerge = Callable[[CodebaseAnalysis, Mapping[str, FileAnalysis], frozenset[str]], None]

logger = logging.getLogger("documee_remote.manager")

_T = TypeVar("_T")

#: Upstream's default base path, used when neither an argument nor DOCUMEE_STORE_URL is given.
DEFAULT_LOCAL_ROOT = ".documee/analysis"


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
    _ops: list[Callable[[CodebaseAnalysis], CodebaseAnalysis | None]] = field(
        default_factory=list, repr=False
    )

    @property
    def existed(self) -> bool:
        """Whether ``analysis.json`` existed when this attempt read it."""
        return self.etag is not None

    def apply(self, fn: Callable[[CodebaseAnalysis], CodebaseAnalysis | None]) -> None:
        """Record a change: ``fn`` mutates the analysis in place or returns a new one."""
        self._ops.append(fn)
        self.analysis = fn(self.analysis) or self.analysis

    def put_file(self, analysis: FileAnalysis) -> None:
        """Add or replace one file's analysis."""
        self.apply(lambda a: apply_file_changes(a, {analysis.file_path: analysis}))

    def remove_file(self, file_path: str) -> None:
        """Drop one file's analysis."""
        self.apply(lambda a: apply_file_changes(a, {}, [file_path]))

    def _replay(self, fresh: CodebaseAnalysis) -> CodebaseAnalysis:
        for fn in self._ops:
            fresh = fn(fresh) or fresh
        return fresh


class PersistenceManager:
    """Keep Documee analyses in a store: upstream's API on local disk, memory or S3.

    Parameters
    ----------
    store_or_url:
        A :class:`~documee_remote.stores.Store`, a store URL (``s3://bucket/prefix``,
        ``file:///path``, a plain path, ``memory://``), or ``None`` for the
        ``DOCUMEE_STORE_URL`` environment variable and, failing that,
        ``.documee/analysis`` on local disk as upstream.
    **options:
        Store options when a URL is given (see :func:`~documee_remote.open_store`).

    Examples
    --------
    >>> pm = PersistenceManager("memory://")
    >>> pm.list_codebases()
    []
    """

    def __init__(
        self,
        store_or_url: Store | str | os.PathLike[str] | None = None,
        *,
        retry: RetryPolicy | None = None,
        **options: Any,
    ):
        self.retry = retry or RetryPolicy()
        self._owns_store = not isinstance(store_or_url, Store)
        if isinstance(store_or_url, Store):
            self.store = open_store(store_or_url, **options)
        elif store_or_url is None:
            self.store = _store_from_environment(options)
        else:
            self.store = open_store(os.fspath(store_or_url), **options)
        logger.debug("persistence manager on %s", self.store.url)

    def __repr__(self) -> str:
        return f"PersistenceManager({self.store!r})"

    # -- the upstream API ---------------------------------------------------------------

    def save_analysis(self, codebase_id: str, analysis: CodebaseAnalysis) -> SaveReport:
        """Save a whole analysis, writing only what changed.

        Per-file objects go first and ``analysis.json`` last (the commit
        point), as upstream orders them. One listing gives the stored ETags
        (the MD5 of the bytes), so objects whose bytes are unchanged are not
        uploaded again, and an unchanged ``analysis.json`` is not rewritten:
        saving 2 changed files out of 3,000 costs a listing and 3 PUTs, not
        3,001. After the commit, per-file objects of files the analysis no
        longer has are deleted, each only if unchanged since the listing.

        Like upstream, this replaces the stored analysis unconditionally; use
        :meth:`merge_file_analyses` when several analysers write at once.
        """
        cb_key = layout.analysis_key(codebase_id)
        prefix = layout.codebase_prefix(codebase_id)
        stored = {meta.key: meta.etag for meta in self.store.list_meta(prefix)}
        per_file = {
            layout.file_analysis_key(codebase_id, path): codec.dump_file_analysis(fa)
            for path, fa in analysis.file_analyses.items()
        }
        changed = {k: v for k, v in per_file.items() if stored.get(k) != etag_of(v)}
        body = codec.dump_codebase_analysis(analysis)
        self.store.put_many(changed)
        wrote_analysis = stored.get(cb_key) != etag_of(body)
        if wrote_analysis:
            self.store.put(cb_key, body)
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

    def load_analysis(self, codebase_id: str) -> CodebaseAnalysis | None:
        """Load a codebase's analysis, or ``None`` when it has none.

        Raises
        ------
        CorruptObjectError
            ``analysis.json`` exists but does not parse (upstream ships empty ones).
        """
        key = layout.analysis_key(codebase_id)
        try:
            obj = self.store.get(key)
        except NotFoundError:
            return None
        return codec.load_codebase_analysis(obj.data, key=key, codebase_id=codebase_id)

    def get_file_hashes(self, codebase_id: str) -> dict[str, str]:
        """The stored ``{file path: sha256}`` map, or ``{}`` when there is none."""
        key = layout.file_hashes_key(codebase_id)
        try:
            obj = self.store.get(key)
        except NotFoundError:
            return {}
        return codec.load_file_hashes(obj.data, key=key, codebase_id=codebase_id)

    def save_file_hashes(self, codebase_id: str, hashes: Mapping[str, str]) -> None:
        """Store the ``{file path: sha256}`` map."""
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
        """Ids of every codebase that has an ``analysis.json`` (even an unreadable one)."""
        found = []
        for key in self.store.list():
            codebase_id, _, name = key.partition("/")
            if name == layout.ANALYSIS_NAME:
                found.append(codebase_id)
        return found

    # -- per-file objects -------------------------------------------------------------------

    def load_file_analysis(self, codebase_id: str, file_path: str) -> FileAnalysis | None:
        """Read one file's analysis from its per-file object, or ``None`` when absent."""
        key = layout.file_analysis_key(codebase_id, file_path)
        try:
            obj = self.store.get(key)
        except NotFoundError:
            return None
        return codec.load_file_analysis(obj.data, key=key, codebase_id=codebase_id)

    def load_file_analyses(
        self, codebase_id: str, file_paths: Iterable[str]
    ) -> dict[str, FileAnalysis | None]:
        """Read many per-file objects at once (concurrently); absent ones map to ``None``."""
        keys = {path: layout.file_analysis_key(codebase_id, path) for path in file_paths}
        found = self.store.get_many(keys.values())
        result: dict[str, FileAnalysis | None] = {}
        for path, key in keys.items():
            obj = found[key]
            result[path] = (
                None
                if obj is None
                else codec.load_file_analysis(obj.data, key=key, codebase_id=codebase_id)
            )
        return result

    # -- optimistic transactions ---------------------------------------------------------

    def update_analysis(
        self,
        codebase_id: str,
        fn: Callable[[CodebaseAnalysis], CodebaseAnalysis | None],
        *,
        retry: RetryPolicy | None = None,
        stats: TransactionStats | None = None,
        fencing_token: int | None = None,
    ) -> CodebaseAnalysis:
        """Read ``analysis.json``, apply ``fn``, and commit with compare-and-swap.

        ``fn`` gets the current analysis (a new, empty one when the codebase
        has none) and mutates it in place or returns a replacement. When
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
        txn = self._update(codebase_id, fn, retry, fencing_token)
        if stats is not None:
            stats.add(txn.stats)
        return txn.analysis

    def _update(
        self,
        codebase_id: str,
        fn: Callable[[CodebaseAnalysis], CodebaseAnalysis | None],
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
        the block raises.
        """
        self._require_atomic_writes(codebase_id)
        current, etag, raw = self._read_analysis(codebase_id)
        txn = Transaction(
            codebase_id,
            current or new_analysis(codebase_id),
            etag,
            fencing_token=fencing_token,
            _raw=raw,
        )
        yield txn
        self._commit(txn, retry or self.retry, fresh=False)

    def _commit(self, txn: Transaction, policy: RetryPolicy, *, fresh: bool) -> None:
        """Write ``txn`` with If-Match / If-None-Match, replaying it after each lost race."""
        self._require_atomic_writes(txn.codebase_id)
        key = layout.analysis_key(txn.codebase_id)
        backoff = Backoff(policy, stats=txn.stats)
        first = not fresh
        last_error: Exception | None = None
        sent: bytes | None = None  # a body whose PUT failed transiently: it may have landed
        while backoff.next_attempt():
            if not first:
                try:
                    current, txn.etag, txn._raw = self._read_analysis(txn.codebase_id)
                except TransientError as exc:
                    last_error = exc
                    continue
                if sent is not None and current is not None and txn._raw == sent:
                    txn.analysis = current  # our write landed; only its response was lost
                    return
                sent = None
                txn.analysis = txn._replay(current or new_analysis(txn.codebase_id))
            first = False
            txn.analysis.codebase_id = txn.codebase_id
            if txn.fencing_token is not None:
                self._fence(txn)
            body = codec.dump_codebase_analysis(txn.analysis)
            if body == txn._raw:
                return  # nothing changed: no write, no conflict possible
            try:
                if txn.etag is None:
                    txn.etag = self.store.put(key, body, if_none_match="*")
                else:
                    txn.etag = self.store.put(key, body, if_match=txn.etag)
                txn._raw = body
                return
            except (PreconditionFailedError, ConflictError) as exc:
                txn.stats.conflicts += 1
                last_error = exc
            except TransientError as exc:
                # The store already retried; a transaction re-reads anyway, so
                # a write that did land is seen on the next attempt.
                last_error = exc
                sent = body
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

    def _read_analysis(
        self, codebase_id: str
    ) -> tuple[CodebaseAnalysis | None, str | None, bytes | None]:
        key = layout.analysis_key(codebase_id)
        try:
            obj = self.store.get(key)
        except NotFoundError:
            return None, None, None
        analysis = codec.load_codebase_analysis(obj.data, key=key, codebase_id=codebase_id)
        return analysis, obj.etag, obj.data

    def load_analysis_etag(self, codebase_id: str) -> str | None:
        """The ETag of ``analysis.json`` (``None`` when absent), without reading it."""
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
        analyses: Mapping[str, FileAnalysis],
        file_hashes: Mapping[str, str],
        *,
        removed: Iterable[str] = (),
        merge: GraphMerge | None = None,
        analysis_time_ms: float = 0.0,
        retry: RetryPolicy | None = None,
        stats: TransactionStats | None = None,
        fencing_token: int | None = None,
    ) -> CodebaseAnalysis:
        """Merge one analyser's results into a codebase, safely alongside other analysers.

        1. Each analysis is written to its per-file object.
        2. ``analysis.json`` is updated by compare-and-swap: these analyses
           replace older ones of the same paths, ``removed`` paths go away,
           metrics and top teaching files are recomputed, and ``merge`` (if
           given) merges the dependency graph and global patterns, which are
           otherwise kept. A codebase without an analysis gets a new one.
        3. Per-file objects of removed paths are deleted.
        4. ``file_hashes.json`` is merged the same way, after the commit, so
           it never claims a file that ``analysis.json`` lacks: a crash in
           between costs a re-analysis, never a skipped file.

        With ``fencing_token`` (from :meth:`lease`), the commit is refused
        with :class:`~documee_remote.leases.FencedError` once a newer lease
        holder has recorded a higher token.

        Returns the committed analysis.
        """
        removed = frozenset(removed)
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
        self._require_atomic_writes(codebase_id)
        per_file = {
            layout.file_analysis_key(codebase_id, path): codec.dump_file_analysis(fa)
            for path, fa in analyses.items()
        }
        self._retrying(lambda: self.store.put_many(per_file), retry)
        merged = frozenset(analyses)

        def change(analysis: CodebaseAnalysis) -> None:
            apply_file_changes(analysis, analyses, removed)
            if merge is not None:
                merge(analysis, analyses, removed)
            refresh_derived(analysis, add_analysis_time_ms=analysis_time_ms)

        txn = self._update(codebase_id, change, retry, fencing_token)
        txn_stats = txn.stats
        committed = txn.analysis
        gone = [p for p in removed if p not in committed.file_analyses]
        if gone:
            self.store.delete_many([layout.file_analysis_key(codebase_id, p) for p in gone])
        self._merge_hashes(codebase_id, file_hashes, removed, retry=retry, stats=txn_stats)
        self._withdraw_overtaken_hashes(codebase_id, txn, analyses, file_hashes)
        if stats is not None:
            stats.add(txn_stats)
        logger.info(
            "merged %d file(s), removed %d, into %s in %d attempt(s)",
            len(merged),
            len(removed),
            codebase_id,
            txn_stats.attempts,
        )
        return committed

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
        while backoff.next_attempt():
            try:
                try:
                    obj = self.store.get(key)
                    current = codec.load_file_hashes(obj.data, key=key, codebase_id=codebase_id)
                    etag: str | None = obj.etag
                except NotFoundError:
                    current, etag = {}, None
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
        return integrity.gc(self, codebase_id, grace_seconds=grace_seconds, dry_run=dry_run)

    # -- lifecycle ---------------------------------------------------------------------------

    def close(self) -> None:
        """Close the store if this manager opened it."""
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


def _check_hashes(hashes: Mapping[str, object], codebase_id: str) -> None:
    for path, digest in hashes.items():
        if not isinstance(digest, str):
            raise InvalidKeyError(
                f"the hash of {path!r} must be a string, not {type(digest).__name__}",
                codebase_id=codebase_id,
            )


def _store_from_environment(options: dict[str, Any]) -> Store:
    url = os.environ.get("DOCUMEE_STORE_URL")
    if not url:
        return open_store(DEFAULT_LOCAL_ROOT, **options)
    from .config import Settings

    settings = Settings()
    return open_store(url, **{**settings.store_options(), **options})
