"""Executing a plan in the order merges keep (invariant 3), racing other writers safely."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal

from .. import codec, layout
from .._engine.journal_io import put_commit_marker
from ..bookkeeping import (
    Folded,
    record_fence,
    set_folded,
    set_watermark,
)
from ..errors import (
    ConflictError,
    CorruptObjectError,
    NotFoundError,
    PreconditionFailedError,
    TransientError,
)
from ..models import CodebaseAnalysis, FileAnalysis
from ..stores import Store, etag_of

if TYPE_CHECKING:
    from ..manager import PersistenceManager
from ._journal import _Book, _book_of, _union, hidden_merges
from ._listing import _batches, _delta_name, _delta_seq, _plain_md5
from .report import (
    Conflict,
    Direction,
    PlannedAction,
    ProgressCallback,
    TransferEvent,
    TransferReport,
)

logger = logging.getLogger("documee_remote.transfer")

# -- the executor -----------------------------------------------------------------------


def _role(key: str) -> Literal["commit", "hashes", "object"]:
    """What a key is to the ordering: the commit point, the hash claims, or anything else."""
    _, _, name = key.partition("/")
    if name == layout.ANALYSIS_NAME:
        return "commit"
    if name == layout.FILE_HASHES_NAME:
        return "hashes"
    return "object"


def _name_of(key: str) -> str:
    return key.partition("/")[2] or key


class _Claims:
    """What the source's ``file_hashes.json`` claims, and the analysis it stands beside.

    The source's ``analysis.json`` is validated (parsed into models) only
    when needed: to rewrite its bookkeeping, or to compare entries after
    another writer's commit overtook this one.
    """

    def __init__(
        self,
        codebase_id: str,
        hashes: dict[str, str],
        raw: bytes | None,
        analysis_raw: bytes | None,
        dst_etag: str | None,
    ) -> None:
        self.codebase_id = codebase_id
        self.hashes = hashes
        self.raw = raw  # the source's file_hashes.json bytes (None: it has none)
        self.analysis_raw = analysis_raw  # the source's analysis.json bytes (None: absent)
        self.analysis_etag = None if analysis_raw is None else etag_of(analysis_raw)
        self.dst_etag = dst_etag  # the destination's analysis.json ETag before the copy
        key = layout.analysis_key(codebase_id)
        self.book = None if analysis_raw is None else _book_of(analysis_raw, key)
        self._model: CodebaseAnalysis | None = None
        self._modelled = False

    @property
    def paths(self) -> frozenset[str]:
        """The files the source's ``analysis.json`` lists."""
        return self.book.paths if self.book is not None else frozenset()

    @property
    def watermark(self) -> int:
        """The journal seq the source's ``analysis.json`` says it has folded."""
        return self.book.watermark if self.book is not None else 0

    def model(self) -> CodebaseAnalysis | None:
        """The source's ``analysis.json``, validated (None: absent or unreadable)."""
        if not self._modelled and self.analysis_raw is not None:
            key = layout.analysis_key(self.codebase_id)
            with contextlib.suppress(CorruptObjectError):  # copied as it is, vouches for nothing
                self._model = codec.load_codebase_analysis(
                    self.analysis_raw, key=key, codebase_id=self.codebase_id
                )
        self._modelled = True
        return self._model

    @property
    def analyses(self) -> Mapping[str, FileAnalysis]:
        """The source's file analyses, validated on first use."""
        return _LazyFiles(self)


class _LazyFiles(Mapping[str, FileAnalysis]):
    """``claims.model().file_analyses``, parsed only if something looks inside."""

    def __init__(self, claims: _Claims) -> None:
        self._claims = claims

    def _files(self) -> Mapping[str, FileAnalysis]:
        model = self._claims.model()
        return model.file_analyses if model is not None else {}

    def __getitem__(self, path: str) -> FileAnalysis:
        return self._files()[path]

    def __iter__(self) -> Iterator[str]:
        return iter(self._files())

    def __len__(self) -> int:
        return len(self._files())


@dataclass
class _CodebaseOutcome:
    """What executing one codebase's actions produced."""

    written: dict[str, str] = field(default_factory=dict)  # key -> new destination ETag
    deleted: list[str] = field(default_factory=list)
    conflicts: list[Conflict] = field(default_factory=list)
    bytes: int = 0
    rebased: list[str] = field(default_factory=list)


class _Copier:
    """Writes planned actions from ``src`` to ``dst``, a codebase at a time."""

    def __init__(
        self, src: Store, dst: Store, direction: Direction, progress: ProgressCallback | None
    ) -> None:
        self.src = src
        self.dst = dst
        self.direction = direction
        self.progress = progress
        self.conditional = dst.capabilities.atomic_conditional_writes
        self._pm: PersistenceManager | None = None
        #: Bodies written instead of the source's bytes (see _rebase).
        self._bodies: dict[str, bytes] = {}
        #: Per codebase, the destination's analysis.json a commit replaces.
        self._replaced: dict[str, _Book] = {}

    def _emit(self, event: TransferEvent) -> None:
        if self.progress is not None:
            self.progress(event)

    def announce(self, actions: Sequence[PlannedAction]) -> None:
        """Tell the progress callback what is coming."""
        self._emit(
            TransferEvent(
                "plan",
                self.direction,
                total_objects=len(actions),
                total_bytes=sum(a.size for a in actions if a.op == "put"),
            )
        )

    def run_codebase(self, codebase_id: str, actions: Sequence[PlannedAction]) -> _CodebaseOutcome:
        """Copy one codebase in the order merges keep (invariant 3 of the README).

        Per-file objects first; then the destination's hash claims the source
        does not make are withdrawn; then ``analysis.json`` (the commit
        point); then the source's ``file_hashes.json``, and the claims another
        writer's later commit overtook are withdrawn again; deletions last.
        So at no point, interrupted or raced, does ``file_hashes.json`` claim
        a file that neither the committed ``analysis.json`` nor the source's
        own ``file_hashes.json`` vouches for (the hashes steps are the
        manager's own, through :meth:`PersistenceManager.withdraw_hash_claims`
        and :meth:`PersistenceManager.claim_hashes_after_commit`).
        """
        out = _CodebaseOutcome()
        puts = [a for a in actions if a.op == "put" and _role(a.key) == "object"]
        # Named deltas go after the commit: one the destination's folded map
        # does not hold is a pending merge there, so if the commit failed it
        # would be folded into the analysis this copy did not replace (and it
        # is folded history once the copy's folded map names it).
        named = [a for a in puts if _delta_name(a.key) is not None]
        puts = [a for a in puts if _delta_name(a.key) is None]
        commit = [a for a in actions if a.op == "put" and _role(a.key) == "commit"]
        hashes_put = [a for a in actions if a.op == "put" and _role(a.key) == "hashes"]
        deletes = [a for a in actions if a.op == "delete"]
        delete_commit = [a for a in deletes if _role(a.key) == "commit"]
        delete_hashes = [a for a in deletes if _role(a.key) == "hashes"]
        other_deletes = [a for a in deletes if _role(a.key) == "object"]
        claims = None
        if commit or hashes_put or delete_commit or delete_hashes:
            claims = self._source_claims(codebase_id)

        replaced: set[str] | None = set()
        if commit and claims is not None:
            replaced = self._read_replaced(commit[0])
            body = self._rebase(claims, commit[0])
            if body is not None and etag_of(body) == commit[0].dst_etag:
                commit = []  # the destination already holds exactly this
            elif body is not None:
                self._bodies[commit[0].key] = body
                out.rebased.append(commit[0].key)
            elif claims.analysis_raw is not None and claims.analysis_etag == commit[0].src_etag:
                self._bodies[commit[0].key] = claims.analysis_raw  # read once, not twice
            coming = max((_delta_seq(a.key) or 0 for a in puts), default=0)
            hidden = self._hidden_merges(codebase_id, claims, coming=coming)
            if hidden:
                for action in [*commit, *hashes_put]:
                    self._conflict(out, codebase_id, action.key, hidden)
                return out
        # A codebase whose analysis.json goes away loses its claims, then it, first.
        if delete_commit:
            self._withdraw(codebase_id, lambda _p, _h: False)
            for action in delete_commit:
                if not self._delete(action, out):
                    return out
        for batch in _batches(puts, lambda action: action.size):
            self._put_batch(batch, out)
        if out.conflicts:
            for action in [*commit, *hashes_put]:
                self._conflict(
                    out,
                    codebase_id,
                    action.key,
                    f"{_name_of(action.key)} not written: an object of this codebase conflicted",
                )
            return out
        if commit and claims is not None:
            hidden = self._hidden_merges(codebase_id, claims)
            if hidden:
                for action in [*commit, *hashes_put]:
                    self._conflict(out, codebase_id, action.key, hidden)
                return out
        if claims is not None and not delete_commit:
            wanted = claims.hashes
            # Withdraw first: every claim the source does not make goes before the
            # commit, so no interruption leaves one beside an analysis.json that
            # lacks its file (a re-analysis at worst, never a skipped file).
            self._withdraw(codebase_id, lambda path, digest: wanted.get(path) == digest)
        if commit and claims is not None:
            replaced_book = self._replaced.get(codebase_id)
            mark = max(claims.watermark, replaced_book.watermark if replaced_book else 0)
            if mark and self.conditional:
                # Deltas up to the watermark this commit writes are not (all) in it:
                # no compaction may publish their hashes as a dead compactor's work.
                # (A store without conditional writes has no merges, so no journal.)
                self._hashes().mark_hashes_published(codebase_id, mark)
            counter = max(
                claims.book.folded.commit if claims.book is not None else 0,
                replaced_book.folded.commit if replaced_book else 0,
            )
            if counter and self.conditional:
                # Likewise the named deltas of the folded map it writes (the
                # destination's among them, whose merges this copy replaces).
                put_commit_marker(self._hashes().engine, codebase_id, counter)
        for action in commit:
            self._put_batch([action], out)
        if out.conflicts:
            for action in hashes_put:
                self._conflict(
                    out,
                    codebase_id,
                    action.key,
                    "file_hashes.json not written: analysis.json was not committed",
                )
            return out
        for batch in _batches(named, lambda action: action.size):
            self._put_batch(batch, out)
        if claims is not None and (commit or hashes_put) and not delete_commit:
            committed = out.written.get(commit[0].key) if commit else claims.dst_etag
            try:
                self._publish_claims(
                    codebase_id,
                    claims,
                    hashes_put=hashes_put,
                    committed=committed,
                    replaced=replaced,
                    out=out,
                )
            except (TransientError, ConflictError, CorruptObjectError) as exc:
                # analysis.json is committed; hashes missing only cost a re-analysis.
                self._conflict(
                    out,
                    codebase_id,
                    layout.file_hashes_key(codebase_id),
                    f"analysis.json was copied, but file_hashes.json was not ({exc}); "
                    "the files it lacks will be analysed again",
                )
                return out
        for action in delete_hashes:
            # Its claims were withdrawn before the commit; a claim added since by
            # another writer only costs a re-analysis.
            with contextlib.suppress(NotFoundError):
                self.dst.delete(action.key)
            out.deleted.append(action.key)
            self._emit(TransferEvent("delete", self.direction, key=action.key))
        for action in other_deletes:
            self._delete(action, out)
        return out

    def _hashes(self) -> PersistenceManager:
        """A manager on the destination, for the hash steps merges take."""
        if self._pm is None:
            from ..manager import PersistenceManager

            self._pm = PersistenceManager(self.dst)
        return self._pm

    def _withdraw(
        self, codebase_id: str, keep: Callable[[str, str], bool], *, before: bool = True
    ) -> None:
        """Withdraw the destination's claims ``keep`` rejects. An unreadable
        ``file_hashes.json`` claims nothing anyone can use: before the commit it
        goes entirely; after it, it is the source's own, copied with ``force``."""
        try:
            if self.conditional:
                self._hashes().withdraw_hash_claims(codebase_id, keep)
            else:
                self._withdraw_plainly(codebase_id, keep)
        except CorruptObjectError:
            if not before:
                return
            key = layout.file_hashes_key(codebase_id)
            with contextlib.suppress(NotFoundError):
                self.dst.delete(key)

    def _withdraw_plainly(self, codebase_id: str, keep: Callable[[str, str], bool]) -> None:
        """The withdrawal on a store that cannot write conditionally: same order, plain
        writes (such a store races any concurrent writer; the manager refuses merges)."""
        key = layout.file_hashes_key(codebase_id)
        try:
            held = self.dst.get(key)
        except NotFoundError:
            return
        current = codec.load_file_hashes(held.data, key=key, codebase_id=codebase_id)
        kept = {p: h for p, h in current.items() if keep(p, h)}
        if kept != current:
            self.dst.put(key, codec.dump_file_hashes(kept))

    def _source_claims(self, codebase_id: str) -> _Claims:
        """The source's ``file_hashes.json`` and ``analysis.json`` of one codebase."""
        a_key, h_key = layout.analysis_key(codebase_id), layout.file_hashes_key(codebase_id)
        found = self.src.get_many([a_key, h_key])
        hashes_obj, analysis_obj = found[h_key], found[a_key]
        hashes: dict[str, str] = {}
        if hashes_obj is not None:
            try:
                hashes = codec.load_file_hashes(hashes_obj.data, key=h_key, codebase_id=codebase_id)
            except CorruptObjectError:
                hashes = {}  # claims nothing: the destination's claims are all withdrawn
        try:
            dst_etag: str | None = self.dst.head(a_key).etag
        except NotFoundError:
            dst_etag = None
        claims = _Claims(
            codebase_id,
            hashes,
            raw=None if hashes_obj is None else hashes_obj.data,
            analysis_raw=None if analysis_obj is None else analysis_obj.data,
            dst_etag=dst_etag,
        )
        stray = [p for p in hashes if p not in claims.paths]
        if stray and claims.paths:
            logger.warning(
                "%s: the source's file_hashes.json claims %d file(s) its analysis.json lacks; "
                "copied as they are (`documee-remote verify --repair` withdraws them)",
                codebase_id,
                len(stray),
            )
        return claims

    def _read_replaced(self, action: PlannedAction) -> set[str] | None:
        """Read the ``analysis.json`` the commit ``action`` replaces (kept for _rebase);
        its file paths, or None when they are unknown (unreadable, or changed since
        the plan, in which case the commit fails anyway)."""
        if action.dst_etag is None:
            return set()
        try:
            theirs = self.dst.get(action.key)
        except NotFoundError:
            return None
        current = _book_of(theirs.data, action.key)
        if theirs.etag != action.dst_etag or current is None:
            return None
        self._replaced[action.codebase_id] = current
        return set(current.paths)

    def _rebase(self, claims: _Claims, action: PlannedAction) -> bytes | None:
        """The source's ``analysis.json`` with the destination's journal bookkeeping
        (watermark, fence, folded map) when it is ahead of its own; None to copy
        the bytes as they are.

        The copy replaces the destination's ``analysis.json`` (the version the
        plan saw, by ``If-Match``), and with it the merges folded into it. Left
        at a lower watermark (upstream's files have none), or without the
        destination's folded deltas in its folded map, readers would fold
        those merges' deltas again on top of the copy, and their removals would
        leave ``file_hashes.json`` claiming files the result lacks; a lower
        fence would let a lease holder that was taken over merge again.
        Merges still pending at the destination stay pending.
        """
        current = self._replaced.get(action.codebase_id)
        if claims.book is None or current is None or claims.analysis_etag != action.src_etag:
            return None  # unreadable (copied as it is), or changed since the plan: caught later
        mark = max(claims.book.watermark, current.watermark)
        fence = max(claims.book.fence, current.fence)
        folded = _union(claims.book.folded, current.folded)
        if (mark, fence, folded) == (claims.book.watermark, claims.book.fence, claims.book.folded):
            return None
        ours = claims.model()
        if ours is None:
            return None
        rebased = ours.model_copy()
        set_watermark(rebased, mark)
        if fence:
            record_fence(rebased, fence)
        if folded != claims.book.folded:
            set_folded(rebased, folded)
        logger.info(
            "%s: writing analysis.json with the destination's journal watermark %d, "
            "commit %d (%d folded deltas) and fence %d",
            action.codebase_id,
            mark,
            folded.commit,
            len(folded.names),
            fence,
        )
        return codec.dump_codebase_analysis(rebased)

    def _hidden_merges(self, codebase_id: str, claims: _Claims, *, coming: int = 0) -> str | None:
        """Why committing the source's ``analysis.json`` would hide merges (see
        :func:`._journal.hidden_merges`)."""
        return hidden_merges(
            self.src,
            self.dst,
            codebase_id,
            watermark=claims.watermark,
            ours=claims.book.folded if claims.book is not None else Folded(),
            replaced=self._replaced.get(codebase_id),
            coming=coming,
        )

    def _publish_claims(
        self,
        codebase_id: str,
        claims: _Claims,
        *,
        hashes_put: Sequence[PlannedAction],
        committed: str | None,
        replaced: set[str] | None,
        out: _CodebaseOutcome,
    ) -> None:
        """After the commit: the source's ``file_hashes.json``, byte for byte when the
        destination's has not changed since the withdrawal, else merged in.

        Then, as a merge removes its removed paths' claims after its commit as
        well as before: a writer whose commit this one ``replaced`` may have
        published its claims after the withdrawal and before the commit. Every
        claim the source does not make is withdrawn again, except for paths
        neither the replaced analysis nor this one has (a later writer's, on
        top of this commit). ``replaced`` None: unknown, so all of them.
        """
        key = layout.file_hashes_key(codebase_id)
        wrote = False
        if hashes_put and claims.raw is not None:
            try:
                if not self.conditional:
                    etag = self.dst.put(key, claims.raw)
                else:
                    try:
                        held = self.dst.get(key)
                    except NotFoundError:
                        etag = self.dst.put(key, claims.raw, if_none_match="*")
                    else:
                        # Byte for byte only over claims the source makes too (what
                        # the withdrawal left); anything else is another writer's.
                        mine = codec.load_file_hashes(held.data, key=key, codebase_id=codebase_id)
                        if any(claims.hashes.get(p) != h for p, h in mine.items()):
                            raise PreconditionFailedError(f"{key!r} changed since the withdrawal")
                        etag = self.dst.put(key, claims.raw, if_match=held.etag)
            except (PreconditionFailedError, ConflictError, CorruptObjectError):
                pass  # another writer touched it meanwhile: merge the claims in instead
            else:
                wrote = True
                out.written[key] = etag
                out.bytes += len(claims.raw)
                self._emit(TransferEvent("put", self.direction, key=key, size=len(claims.raw)))
        if self.conditional:
            self._hashes().claim_hashes_after_commit(
                codebase_id, committed, claims.analyses, claims.hashes, merge=not wrote
            )
        ours = claims.paths

        def keep(path: str, digest: str) -> bool:
            if claims.hashes.get(path) == digest:
                return True
            return replaced is not None and path not in ours and path not in replaced

        self._withdraw(codebase_id, keep, before=False)
        if hashes_put and not wrote:
            # Merged into the destination's claims: record what is there now.
            with contextlib.suppress(NotFoundError):
                out.written[key] = self.dst.head(key).etag

    def close(self) -> None:
        """Close the manager made for the hash steps (not the stores)."""
        if self._pm is not None:
            self._pm.close()
            self._pm = None

    def _conflict(
        self, out: _CodebaseOutcome, codebase_id: str, key: str | None, reason: str
    ) -> None:
        out.conflicts.append(Conflict(codebase_id, key, reason))
        self._emit(TransferEvent("conflict", self.direction, key=key, detail=reason))

    def _put_batch(self, batch: Sequence[PlannedAction], out: _CodebaseOutcome) -> None:
        found = self.src.get_many([a.key for a in batch])
        ready: list[tuple[PlannedAction, bytes]] = []
        for action in batch:
            body = self._bodies.get(action.key)
            if body is not None:
                ready.append((action, body))
                continue
            obj = found[action.key]
            if obj is None:
                self._conflict(out, action.codebase_id, action.key, "the source object disappeared")
                continue
            if _plain_md5(action.src_etag) and etag_of(obj.data) != action.src_etag:
                self._conflict(
                    out, action.codebase_id, action.key, "the source object changed during the copy"
                )
                continue
            ready.append((action, obj.data))
        if not ready:
            return

        def write(item: tuple[PlannedAction, bytes]) -> str | Exception:
            action, data = item
            try:
                if not self.conditional:
                    return self.dst.put(action.key, data)
                if action.dst_etag is None:
                    return self.dst.put(action.key, data, if_none_match="*")
                return self.dst.put(action.key, data, if_match=action.dst_etag)
            except (PreconditionFailedError, ConflictError) as exc:
                return exc

        workers = max(1, min(self.dst.concurrency, len(ready)))
        if workers == 1:
            results = [write(item) for item in ready]
        else:
            with ThreadPoolExecutor(max_workers=workers) as pool:
                results = list(pool.map(write, ready))
        for (action, data), result in zip(ready, results, strict=True):
            if isinstance(result, Exception):
                self._conflict(
                    out,
                    action.codebase_id,
                    action.key,
                    "changed at the destination since the plan (another writer?): "
                    f"{type(result).__name__}",
                )
                continue
            out.written[action.key] = result
            out.bytes += len(data)
            self._emit(TransferEvent("put", self.direction, key=action.key, size=len(data)))

    def _delete(self, action: PlannedAction, out: _CodebaseOutcome) -> bool:
        try:
            if self.conditional and self.dst.capabilities.conditional_delete and action.dst_etag:
                self.dst.delete(action.key, if_match=action.dst_etag)
            else:
                self.dst.delete(action.key)
        except PreconditionFailedError as exc:
            self._conflict(
                out,
                action.codebase_id,
                action.key,
                f"changed at the destination since the plan: {type(exc).__name__}",
            )
            return False
        out.deleted.append(action.key)
        self._emit(TransferEvent("delete", self.direction, key=action.key))
        return True


def _execute(
    copier: _Copier,
    plan: Mapping[str, Sequence[PlannedAction]],
    report: TransferReport,
    *,
    dry_run: bool,
) -> dict[str, _CodebaseOutcome]:
    """Carry out ``plan`` into ``report`` (a dry run only reports it); the outcome per codebase."""
    outcomes: dict[str, _CodebaseOutcome] = {}
    all_actions = [a for actions in plan.values() for a in actions]
    report.actions.extend(all_actions)
    if dry_run:
        for action in all_actions:
            if action.op == "put":
                report.copied.append(action.key)
                report.bytes += action.size
            else:
                report.deleted.append(action.key)
        return outcomes
    copier.announce(all_actions)
    try:
        for codebase_id, actions in plan.items():
            if not actions:
                continue
            outcome = copier.run_codebase(codebase_id, actions)
            outcomes[codebase_id] = outcome
            report.copied.extend(outcome.written)
            report.deleted.extend(outcome.deleted)
            report.bytes += outcome.bytes
            report.conflicts.extend(outcome.conflicts)
            report.rebased.extend(k for k in outcome.rebased if k in outcome.written)
            if outcome.conflicts:
                report.codebases[codebase_id] = "conflict"
    finally:
        copier.close()
    return outcomes
