"""The public operations: push, pull, migrate and sync."""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING

from ..stores import Store

if TYPE_CHECKING:
    pass
from ._executor import _CodebaseOutcome, _Copier, _execute
from ._listing import (
    _by_codebase,
    _check_selected,
    _differing,
    _etags,
    _listing,
    _open_local,
    _select,
    _src_dst,
    check_store_location,
)
from ._plan import _plan_copy, _plan_one_way, _refuse_corrupt_overwrites, _refuse_diverged_journals
from ._sync import _apply, _decide, _deletions, _record_after_copy, _SyncState
from .report import (
    Conflict,
    Direction,
    Prefer,
    ProgressCallback,
    TransferReport,
    _codebase_of,
    _Plan,
)


def _push_or_pull(
    direction: Direction,
    local_dir: str | os.PathLike[str],
    store: Store,
    codebase_ids: Iterable[str] | None,
    *,
    dry_run: bool,
    delete: bool,
    force: bool,
    progress: ProgressCallback | None,
) -> TransferReport:
    pushing = direction == "push"
    check_store_location(store, must_exist=not pushing)
    with _open_local(local_dir, must_exist=pushing, read_only=pushing or dry_run) as local:
        src, dst = _src_dst(direction, local, store)
        report, plan, src_meta, dst_meta = _plan_copy(
            direction,
            src,
            dst,
            direction,
            codebase_ids,
            dry_run=dry_run,
            delete=delete,
            force=force,
        )
        outcomes = _execute(_Copier(src, dst, direction, progress), plan, report, dry_run=dry_run)
        if not dry_run:
            _record_after_copy(
                Path(local_dir),
                store,
                direction,
                src_meta=src_meta,
                dst_meta=dst_meta,
                plan=plan,
                outcomes=outcomes,
            )
        return report


# -- the public operations ---------------------------------------------------------------------


def push(
    local_dir: str | os.PathLike[str],
    store: Store,
    codebase_ids: Iterable[str] | None = None,
    *,
    dry_run: bool = False,
    delete: bool = False,
    force: bool = False,
    progress: ProgressCallback | None = None,
) -> TransferReport:
    """Copy a local directory's codebases to ``store``: only objects that differ.

    Parameters
    ----------
    codebase_ids:
        Only these codebases (default: every codebase in ``local_dir``).
    dry_run:
        Plan only; the report lists what would be copied.
    delete:
        Also delete objects of the pushed codebases that ``local_dir`` lacks
        (a codebase ``local_dir`` lacks entirely is never touched).
    force:
        Copy an unreadable object over a readable one. Without it such a
        codebase is left untouched and reported (``Conflict.corrupt``).

    Raises
    ------
    NotFoundError
        ``local_dir`` does not exist, or a selected codebase is not in it.
    """
    return _push_or_pull(
        "push",
        local_dir,
        store,
        codebase_ids,
        dry_run=dry_run,
        delete=delete,
        force=force,
        progress=progress,
    )


def pull(
    store: Store,
    local_dir: str | os.PathLike[str],
    codebase_ids: Iterable[str] | None = None,
    *,
    dry_run: bool = False,
    delete: bool = False,
    force: bool = False,
    progress: ProgressCallback | None = None,
) -> TransferReport:
    """Copy ``store``'s codebases into a local directory (created if missing).

    The mirror image of :func:`push`; ``delete`` removes local objects of the
    pulled codebases that the store lacks, and an unreadable object in the
    store never replaces a readable local one without ``force``.
    """
    return _push_or_pull(
        "pull",
        local_dir,
        store,
        codebase_ids,
        dry_run=dry_run,
        delete=delete,
        force=force,
        progress=progress,
    )


def migrate(
    local_dir: str | os.PathLike[str],
    store: Store,
    codebase_ids: Iterable[str] | None = None,
    *,
    dry_run: bool = False,
    force: bool = False,
    progress: ProgressCallback | None = None,
) -> TransferReport:
    """Move an existing upstream Documee directory into ``store``, unchanged and verified.

    A push that refuses to overwrite: if any object already in the store
    differs from the local one, nothing at all is written and the report has
    ``refused=True`` and the conflicts, unless ``force``; an unreadable local
    object over a readable one is refused as in :func:`push` (``force`` too). After the copy every
    object is looked up again in the store and its ETag compared with the
    local file's (the contents, for non-MD5 ETags); ``verified`` counts them
    and ``mismatched`` lists failures.
    """
    check_store_location(store, must_exist=False)
    with _open_local(local_dir, must_exist=True, read_only=True) as local:
        report, plan, src_meta, _ = _plan_copy(
            "migrate",
            local,
            store,
            "push",
            codebase_ids,
            dry_run=dry_run,
            delete=False,
            force=force,
        )
        overwrites = [a for actions in plan.values() for a in actions if a.dst_etag is not None]
        if overwrites and not force:
            report.refused = True
            for action in overwrites:
                report.conflicts.append(
                    Conflict(
                        action.codebase_id,
                        action.key,
                        "differs from the object already in the store",
                    )
                )
                report.codebases[action.codebase_id] = "conflict"
            report.actions.extend(a for actions in plan.values() for a in actions)
            return report
        _execute(_Copier(local, store, "push", progress), plan, report, dry_run=dry_run)
        if dry_run:
            return report
        # Unlike push, no sync state is recorded: the upstream directory is left
        # exactly as it was.
        # Codebases refused or lost to another writer were not (all) copied.
        copied = {
            k: m
            for k, m in src_meta.items()
            if report.codebases.get(_codebase_of(k)) != "conflict" and k not in report.rebased
        }
        after = _listing(store, sorted(_by_codebase(copied))) if copied else {}
        report.mismatched, report.verified = _differing(local, store, copied, after, copied)
        return report


def sync(
    local_dir: str | os.PathLike[str],
    store: Store,
    codebase_ids: Iterable[str] | None = None,
    *,
    dry_run: bool = False,
    delete: bool = False,
    prefer: Prefer | None = None,
    force: bool = False,
    progress: ProgressCallback | None = None,
) -> TransferReport:
    """Two-way sync, codebase by codebase; see the module docstring for the rules.

    Parameters
    ----------
    prefer:
        How to settle a codebase changed on both sides: ``"local"``,
        ``"remote"`` or ``"newer"``. ``None`` (default) leaves it untouched
        and reports a conflict.
    delete:
        Propagate deletions made on the winning side since the last sync.
    force:
        Copy an unreadable object over a readable one (as :func:`push`).
    """
    if prefer not in (None, "local", "remote", "newer"):
        raise ValueError(f"prefer must be 'local', 'remote' or 'newer', not {prefer!r}")
    check_store_location(store, must_exist=False)
    with _open_local(local_dir, must_exist=False, read_only=dry_run) as local:
        selected = _select(codebase_ids)
        local_groups = _by_codebase(_listing(local, selected))
        remote_groups = _by_codebase(_listing(store, selected))
        codebases = sorted(set(local_groups) | set(remote_groups))
        _check_selected(selected, codebases, f"is neither in {local.url} nor in {store.url}")
        state = _SyncState.load(Path(local_dir), store.url)
        report = TransferReport("sync", local.url, store.url, dry_run=dry_run)
        plans: dict[Direction, _Plan] = {"push": {}, "pull": {}}
        for codebase_id in codebases:
            ours = local_groups.get(codebase_id, {})
            theirs = remote_groups.get(codebase_id, {})
            decision = _decide(
                local, store, codebase_id, ours=ours, theirs=theirs, state=state, prefer=prefer
            )
            report.codebases[codebase_id] = decision
            if decision == "conflict":
                report.conflicts.append(
                    Conflict(
                        codebase_id,
                        None,
                        "changed on both sides since the last sync"
                        if state.has(codebase_id)
                        else "differs on both sides and was never synced",
                    )
                )
                continue
            if decision == "same":
                report.skipped_same += len(ours)
                continue
            src, dst = _src_dst(decision, local, store)
            src_meta, dst_meta = _src_dst(decision, ours, theirs)
            plan, same = _plan_one_way(
                src,
                dst,
                decision,
                src_meta=src_meta,
                dst_meta=dst_meta,
                codebases=[codebase_id],
                delete=False,
            )
            _refuse_diverged_journals(src, dst, plan, report, dst_meta=dst_meta)
            _refuse_corrupt_overwrites(src, dst, plan, report, force=force)
            if report.codebases[codebase_id] == "conflict":
                continue
            # Deletions are propagated only with the base state that proves them.
            if delete and state.has(codebase_id):
                _, dst_base = _src_dst(
                    decision, state.local(codebase_id), state.remote(codebase_id)
                )
                plan[codebase_id] += _deletions(dst_meta, src_meta, dst_base, decision)
            plans[decision].update(plan)
            report.skipped_same += same
        outcomes: dict[Direction, dict[str, _CodebaseOutcome]] = {}
        for direction, plan in plans.items():
            src, dst = _src_dst(direction, local, store)
            outcomes[direction] = _execute(
                _Copier(src, dst, direction, progress), plan, report, dry_run=dry_run
            )
        if dry_run:
            return report
        for codebase_id in codebases:
            settled = report.codebases[codebase_id]  # a failed copy made it a conflict
            if settled == "conflict":
                continue
            local_etags = _etags(local_groups.get(codebase_id, {}))
            remote_etags = _etags(remote_groups.get(codebase_id, {}))
            if settled == "push":
                _apply(remote_etags, outcomes["push"].get(codebase_id))
            elif settled == "pull":
                _apply(local_etags, outcomes["pull"].get(codebase_id))
            state.set(codebase_id, local_etags, remote_etags)
        state.save()
        return report
