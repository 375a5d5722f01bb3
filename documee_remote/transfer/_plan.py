"""Planning one-way copies, and refusing those that would lose or hide data."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING

from .. import codec, journal, layout
from ..bookkeeping import Folded
from ..errors import (
    CorruptObjectError,
    NotFoundError,
)
from ..stores import ObjectMeta, Store

if TYPE_CHECKING:
    pass
from ._listing import (
    _batches,
    _by_codebase,
    _check_selected,
    _delta_seq,
    _differing,
    _folded_of,
    _listing,
    _select,
)
from .report import Conflict, Direction, PlannedAction, TransferReport, _Plan

# -- one-way copies ---------------------------------------------------------------------------


def _plan_one_way(
    src: Store,
    dst: Store,
    direction: Direction,
    *,
    src_meta: Mapping[str, ObjectMeta],
    dst_meta: Mapping[str, ObjectMeta],
    codebases: Iterable[str],
    delete: bool,
) -> tuple[_Plan, int]:
    """Per codebase, the actions that make ``dst`` hold ``src``'s objects."""
    src_groups = _by_codebase(src_meta)
    dst_groups = _by_codebase(dst_meta)
    plan: _Plan = {}
    same = 0
    for codebase_id in sorted(set(codebases)):
        keys = src_groups.get(codebase_id, {})
        differ, n_same = _differing(src, dst, src_meta, dst_meta, keys)
        same += n_same
        actions = [
            PlannedAction(
                "put",
                key,
                direction,
                src_meta[key].size,
                src_meta[key].etag,
                dst_meta[key].etag if key in dst_meta else None,
            )
            for key in differ
        ]
        if delete:
            actions.extend(
                PlannedAction("delete", key, direction, 0, None, dst_meta[key].etag)
                for key in sorted(dst_groups.get(codebase_id, {}))
                if key not in keys
            )
        plan[codebase_id] = actions
    return plan, same


def _unreadable(key: str, data: bytes) -> str | None:
    """Why ``data`` is not a readable object for ``key`` (None: it is, or it is not parsed)."""
    codebase_id, _, name = key.partition("/")
    try:
        if name == layout.ANALYSIS_NAME:
            codec.load_codebase_analysis(data, key=key, codebase_id=codebase_id)
        elif name == layout.FILE_HASHES_NAME:
            codec.load_file_hashes(data, key=key, codebase_id=codebase_id)
        elif layout.is_file_analysis_name(name):
            codec.load_file_analysis(data, key=key, codebase_id=codebase_id)
    except CorruptObjectError as exc:
        return str(exc)
    return None


def _refuse_diverged_journals(
    src: Store,
    dst: Store,
    plan: _Plan,
    report: TransferReport,
    *,
    dst_meta: Mapping[str, ObjectMeta],
) -> None:
    """Take out of ``plan`` every codebase where a pending merge would be overwritten.

    A delta is one merge, immutable once created. A destination delta above
    the destination's watermark is a merge not yet folded into its
    ``analysis.json``; a different source delta at the same seq (the two
    journals diverged) must not replace it, or the merge is gone. Deltas at
    or below the watermark are folded history, which readers skip. Not even
    ``force`` overwrites a pending merge.

    Named deltas never share a name, so none is overwritten; one pending at
    the destination stays pending and is folded on top of a copied
    ``analysis.json`` (unless the copy's folded map would hide it, which
    the copy refuses before it writes anything). But a mirror's deletion
    of one would lose its merge: a plan that deletes a named delta pending
    at the destination (not in its folded map) that the source does not
    hold is refused.
    """
    for codebase_id, actions in plan.items():
        seqs = sorted(
            seq
            for a in actions
            if a.op == "put" and a.dst_etag and (seq := _delta_seq(a.key)) is not None
        )
        pending_named = _deleted_pending(src, dst, codebase_id, actions, dst_meta)
        if pending_named:
            plan[codebase_id] = []
            report.conflicts.append(
                Conflict(
                    codebase_id,
                    journal.named_key(codebase_id, pending_named[0]),
                    f"the journals diverged: {len(pending_named)} merge(s) pending at "
                    f"{dst.url} (e.g. delta {pending_named[0]}) are not in the source, and "
                    f"deleting them would lose them; run `documee-remote compact "
                    f"{codebase_id}` there and pull before pushing",
                )
            )
            report.codebases[codebase_id] = "conflict"
            continue
        if not seqs:
            continue
        try:
            mark = journal.peek_watermark(dst.get(layout.analysis_key(codebase_id)).data)
        except NotFoundError:
            mark = 0
        pending = [seq for seq in seqs if seq > mark]
        if not pending:
            continue
        plan[codebase_id] = []
        report.conflicts.append(
            Conflict(
                codebase_id,
                journal.delta_key(codebase_id, pending[0]),
                f"the journals diverged: {len(pending)} merge(s) pending at {dst.url} "
                f"(seq {pending[0]}..{pending[-1]}) differ from the source's deltas at the "
                f"same seqs; run `documee-remote compact {codebase_id}` there and pull "
                "before pushing",
            )
        )
        report.codebases[codebase_id] = "conflict"


def _deleted_pending(
    src: Store,
    dst: Store,
    codebase_id: str,
    actions: Iterable[PlannedAction],
    dst_meta: Mapping[str, ObjectMeta],
) -> list[str]:
    """The named deltas pending at ``dst`` that ``actions`` delete and the source's
    ``analysis.json`` does not hold (merges a mirror would lose)."""
    prefix = layout.journal_prefix(codebase_id)
    listing = journal.parse_listing(
        codebase_id, (m for k, m in dst_meta.items() if k.startswith(prefix))
    )
    names = {journal.named_key(codebase_id, n): n for n in listing.named}
    deleting = {names[a.key] for a in actions if a.op == "delete" and a.key in names}
    if not deleting:
        return []
    a_key = layout.analysis_key(codebase_id)
    held: list[Folded] = []
    for store in (dst, src):
        try:
            held.append(_folded_of(store.get(a_key).data, a_key))
        except NotFoundError:
            held.append(Folded())
    return [n for n in sorted(deleting) if not any(f.holds(n, journal.name_ms(n)) for f in held)]


def _refuse_corrupt_overwrites(
    src: Store, dst: Store, plan: _Plan, report: TransferReport, *, force: bool
) -> None:
    """Take out of ``plan`` every codebase where an unreadable source object would
    replace a readable one (upstream ships 0-byte ``analysis.json`` files), unless ``force``.

    Only overwrites are looked at, and the destination is read only when the
    source's object is unreadable; an unreadable object over an absent or
    equally unreadable one is copied as it is (a migration stays byte for byte).
    """
    if force:
        return
    overwrites = [a for actions in plan.values() for a in actions if a.op == "put" and a.dst_etag]
    refused: dict[str, Conflict] = {}
    for batch in _batches(overwrites, lambda action: action.size):
        ours = src.get_many([a.key for a in batch])
        for action in batch:
            obj = ours[action.key]
            problem = None if obj is None else _unreadable(action.key, obj.data)
            if problem is None or action.codebase_id in refused:
                continue
            try:
                theirs = dst.get(action.key)
            except NotFoundError:
                continue
            if _unreadable(action.key, theirs.data) is not None:
                continue
            refused[action.codebase_id] = Conflict(
                action.codebase_id,
                action.key,
                f"not replacing the readable {action.key!r} at {dst.url} with an unreadable "
                f"one ({problem}); nothing of codebase {action.codebase_id!r} was written "
                "(--force / force=True copies it anyway)",
                corrupt=True,
            )
    for codebase_id, conflict in refused.items():
        plan[codebase_id] = []
        report.conflicts.append(conflict)
        report.codebases[codebase_id] = "conflict"


def _plan_copy(
    operation: str,
    src: Store,
    dst: Store,
    direction: Direction,
    codebase_ids: Iterable[str] | None,
    *,
    dry_run: bool,
    delete: bool,
    force: bool,
) -> tuple[TransferReport, _Plan, dict[str, ObjectMeta], dict[str, ObjectMeta]]:
    """List both sides and plan a one-way copy of ``src``'s codebases.

    Returns the report (codebases marked ``direction`` or ``"same"``), the
    plan, and the listings of the source and the destination.
    """
    selected = _select(codebase_ids)
    src_meta = _listing(src, selected)
    codebases = sorted(_by_codebase(src_meta))
    _check_selected(selected, codebases, f"not found in {src.url}")
    # Only the source's codebases are looked at: even with ``delete``, a codebase
    # the source lacks entirely is never touched (in a shared store it is
    # somebody else's).
    dst_meta = _listing(dst, codebases) if codebases else {}
    report = TransferReport(operation, src.url, dst.url, dry_run=dry_run)
    plan, report.skipped_same = _plan_one_way(
        src,
        dst,
        direction,
        src_meta=src_meta,
        dst_meta=dst_meta,
        codebases=codebases,
        delete=delete,
    )
    for codebase_id, actions in plan.items():
        report.codebases[codebase_id] = direction if actions else "same"
    _refuse_diverged_journals(src, dst, plan, report, dst_meta=dst_meta)
    _refuse_corrupt_overwrites(src, dst, plan, report, force=force)
    return report, plan, src_meta, dst_meta
