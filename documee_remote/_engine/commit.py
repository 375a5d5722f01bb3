"""Transaction, and the compare-and-swap commit of ``analysis.json``.

A :class:`Transaction` records its changes so that a commit that lost a race
can replay them onto a fresh read. Its attempt state (what the last read saw,
what it folded, what a compaction on its behalf did) is an :class:`Attempt`,
the engine's own; the manager never touches it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from .. import codec, interop, journal, layout
from ..bookkeeping import record_fence, recorded_fence, recorded_folded
from ..errors import (
    ConflictError,
    PreconditionFailedError,
    TooManyConflictsError,
    TransientError,
)
from ..interop import AnalysisInput, FileAnalysisInput
from ..journal import Delta, DeltaRef, JournalListing
from ..leases import FencedError
from ..merge import apply_file_changes, new_analysis
from ..models import CodebaseAnalysis
from ..retry import Again, Backoff, RefusalWatch, RetryPolicy, TransactionStats, cas_loop
from .context import Engine, require_atomic_writes
from .hashes import withdraw_first
from .reads import read_view

#: Work after a commit that folded journal deltas (see publish.publish_folded).
AfterCommit = Callable[["Transaction", RetryPolicy], None]


@dataclass
class Attempt:
    """A transaction's attempt state: the engine's, not the caller's."""

    raw: bytes | None = None
    ops: list[Callable[[CodebaseAnalysis], AnalysisInput | None]] = field(default_factory=list)
    # Journal deltas folded into this attempt's analysis, in fold order.
    folded: list[tuple[DeltaRef, Delta]] = field(default_factory=list)
    listing: JournalListing | None = None
    # Compaction on behalf of one merge: done once analysis.json holds its delta.
    until: DeltaRef | None = None
    known: dict[DeltaRef, Delta] | None = None
    wrote: bool = False
    compaction: bool = False
    # The journal listing of the last read, and what pruning it did: (deleted, kept young).
    listing_seen: JournalListing | None = None
    pruned: tuple[int, int] = (0, 0)


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
    _state: Attempt = field(default_factory=Attempt, repr=False)

    @property
    def existed(self) -> bool:
        """Whether ``analysis.json`` existed when this attempt read it."""
        return self.etag is not None

    def apply(self, fn: Callable[[CodebaseAnalysis], AnalysisInput | None]) -> None:
        """Record a change: ``fn`` mutates the analysis in place or returns a new one.

        The result may be a Documee object or a dict too (see
        :mod:`documee_remote.interop`); it is converted to this library's model.
        """
        self._state.ops.append(fn)
        self.analysis = _applied(fn, self.analysis, self.codebase_id)

    def put_file(self, analysis: FileAnalysisInput) -> None:
        """Add or replace one file's analysis (this library's model, Documee's, or a dict)."""
        fa = interop.as_file_analysis(analysis, codebase_id=self.codebase_id)
        self.apply(lambda a: apply_file_changes(a, {fa.file_path: fa}))

    def remove_file(self, file_path: str) -> None:
        """Drop one file's analysis."""
        self.apply(lambda a: apply_file_changes(a, {}, [file_path]))

    def _replay(self, fresh: CodebaseAnalysis) -> CodebaseAnalysis:
        for fn in self._state.ops:
            fresh = _applied(fn, fresh, self.codebase_id)
        return fresh


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


def begin(eng: Engine, codebase_id: str, fencing_token: int | None) -> Transaction:
    """A transaction on what a reader sees now (pending deltas folded in)."""
    require_atomic_writes(eng, codebase_id)
    view = read_view(eng, codebase_id)
    return Transaction(
        codebase_id,
        view.analysis or new_analysis(codebase_id),
        view.etag,
        fencing_token=fencing_token,
        _state=Attempt(raw=view.raw, folded=view.folded, listing_seen=view.listing),
    )


def fresh(
    codebase_id: str,
    fn: Callable[[CodebaseAnalysis], AnalysisInput | None] | None = None,
    fencing_token: int | None = None,
) -> Transaction:
    """A transaction not read yet (its commit reads first), recording ``fn`` if given."""
    txn = Transaction(codebase_id, new_analysis(codebase_id), None, fencing_token=fencing_token)
    if fn is not None:
        txn._state.ops.append(fn)
    return txn


def commit(
    eng: Engine, txn: Transaction, policy: RetryPolicy, *, fresh: bool, on_folded: AfterCommit
) -> None:
    """Write ``txn`` with If-Match / If-None-Match, replaying it after each lost race.

    Each attempt reads ``analysis.json`` with the journal's pending deltas
    folded in and records them as folded, so every commit is also a
    compaction. Then hands the transaction to ``on_folded`` to publish what
    the folded deltas imply (marker, hashes, removed per-file objects): that
    work lives above this module, so it comes in as a hook.
    """
    require_atomic_writes(eng, txn.codebase_id)
    key = layout.analysis_key(txn.codebase_id)
    backoff = Backoff(policy, stats=txn.stats)
    state = txn._state
    first = not fresh
    sent: bytes | None = None  # a body whose PUT failed transiently: it may have landed
    sent_folded: list[tuple[DeltaRef, Delta]] = []  # the deltas that body folded
    watch = RefusalWatch(eng.store.url, key)

    def attempt() -> bool | Again:
        """One read, replay and conditional write; True when ours is the commit."""
        nonlocal first, sent, sent_folded
        if not first:
            try:
                view = read_view(
                    eng,
                    txn.codebase_id,
                    listing=state.listing,
                    known=state.known,
                    until=state.until,
                    # After a lost race, a merge's compaction need not parse what
                    # it will not write if a rival already folded its delta.
                    stop_early=state.listing is None,
                )
            except TransientError as exc:
                return Again(exc)
            finally:
                state.listing = None  # only the first read may use a caller's listing
            txn.etag, state.raw, state.folded = view.etag, view.raw, view.folded
            state.listing_seen = view.listing
            watch.reread(view.etag)  # raises when the endpoint refuses true conditions
            if sent is not None and state.raw == sent:
                # Our write landed; only its response was lost. txn.analysis is
                # what that body was made from.
                state.wrote, state.folded = True, sent_folded
                return True
            if view.holds_until:
                # Another compaction folded the delta this one is for. Unparsed
                # (stop_early), the result is this attempt's fold: the state with
                # every pending delta folded, which holds this merge.
                if view.analysis is not None:
                    txn.analysis = view.analysis
                return False
            if state.compaction and not view.folded:
                txn.analysis = view.analysis or new_analysis(txn.codebase_id)
                if view.analysis is not None and unpublished(view.listing, txn.analysis):
                    on_folded(txn, policy)  # a compactor died before its marker
                return False  # nothing pending: a compaction writes nothing
            sent = None
            txn.analysis = txn._replay(view.analysis or new_analysis(txn.codebase_id))
        first = False
        txn.analysis.codebase_id = txn.codebase_id
        if txn.fencing_token is not None:
            _fence(txn)
        body = codec.dump_codebase_analysis(txn.analysis)
        if body == state.raw:
            return False  # nothing changed: no write, no conflict possible
        if state.folded:
            gone = journal.fold_hashes(state.folded)[1] - set(txn.analysis.file_analyses)
            try:
                withdraw_first(eng, txn.codebase_id, gone, policy)
            except (TooManyConflictsError, TransientError) as exc:
                return Again(exc)
        try:
            if txn.etag is None:
                txn.etag = eng.store.put(key, body, if_none_match="*")
            else:
                txn.etag = eng.store.put(key, body, if_match=txn.etag)
            state.raw = body
            state.wrote = True
            return True
        except (PreconditionFailedError, ConflictError) as exc:
            if isinstance(exc, PreconditionFailedError):
                watch.refused(txn.etag)
            return Again(exc, lost=True)
        except TransientError as exc:
            # The store already retried; a transaction re-reads anyway, so
            # a write that did land is seen on the next attempt.
            sent, sent_folded = body, state.folded
            return Again(exc)

    def exhausted(last_error: Exception | None) -> Exception:
        # A last error that is transient is raised as it is (by cas_loop): not a
        # contention problem, the storage kept failing.
        return TooManyConflictsError(
            f"gave up committing {key!r} after {txn.stats.attempts} attempts "
            f"({txn.stats.conflicts} lost to other writers): {last_error}",
            attempts=txn.stats.attempts,
            key=key,
        )

    if cas_loop(backoff, attempt, exhausted=exhausted) and state.folded:
        on_folded(txn, policy)


def unpublished(listing: JournalListing, analysis: CodebaseAnalysis) -> bool:
    """Whether a commit folded deltas whose marker the listing lacks (hashes maybe unpublished)."""
    if listing.folded_hint < journal.watermark(analysis):
        return True
    return listing.published < recorded_folded(analysis.__pydantic_extra__).commit


def _fence(txn: Transaction) -> None:
    """Refuse a stale lease holder's commit; record a newer holder's token."""
    token = txn.fencing_token
    assert token is not None
    recorded = recorded_fence(txn.analysis.__pydantic_extra__)
    if token < recorded:
        raise FencedError(
            f"refusing to commit to {txn.codebase_id!r} with fencing token {token}: "
            f"token {recorded} is already recorded (this writer's lease was taken over)",
            key=layout.analysis_key(txn.codebase_id),
        )
    if token > recorded:
        record_fence(txn.analysis, token)
