"""Sync's decisions and the state it keeps between runs."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import tempfile
from collections.abc import Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from ..errors import (
    DocumeeRemoteError,
)
from ..stores import ObjectMeta, Store

if TYPE_CHECKING:
    pass
from ._executor import _CodebaseOutcome
from ._listing import _by_codebase, _differing, _etags, _src_dst
from .report import Direction, PlannedAction, Prefer

logger = logging.getLogger("documee_remote.transfer")

#: The sync state file inside the local directory (hidden: never listed or copied).
SYNC_STATE_NAME = ".documee-remote-sync.json"


# -- sync decisions and state -----------------------------------------------------------------


def _deletions(
    target: Mapping[str, ObjectMeta],
    winner: Mapping[str, ObjectMeta],
    target_base: Mapping[str, str],
    direction: Direction,
) -> list[PlannedAction]:
    """Objects the winner deleted since the base that the target still holds unchanged."""
    return [
        PlannedAction("delete", key, direction, 0, None, meta.etag)
        for key, meta in sorted(target.items())
        if key not in winner and target_base.get(key) == meta.etag
    ]


def _changed(current: Mapping[str, ObjectMeta], base: Mapping[str, str]) -> bool:
    if set(current) != set(base):
        return True
    return any(meta.etag != base[key] for key, meta in current.items())


def _newest(metas: Mapping[str, ObjectMeta]) -> datetime | None:
    return max((m.last_modified for m in metas.values()), default=None)


def _decide(
    local: Store,
    remote: Store,
    codebase_id: str,
    *,
    ours: Mapping[str, ObjectMeta],
    theirs: Mapping[str, ObjectMeta],
    state: _SyncState,
    prefer: Prefer | None,
) -> Literal["push", "pull", "same", "conflict"]:
    """``"push"``, ``"pull"``, ``"same"`` or ``"conflict"`` for one codebase."""
    if not theirs:
        return "push"
    if not ours:
        return "pull"
    shared = [key for key in ours if key in theirs]
    differ, _ = _differing(local, remote, ours, theirs, shared)
    local_extra = any(key not in theirs for key in ours)
    remote_extra = any(key not in ours for key in theirs)
    if not differ and not local_extra and not remote_extra:
        return "same"
    if state.has(codebase_id):
        local_changed = _changed(ours, state.local(codebase_id))
        remote_changed = _changed(theirs, state.remote(codebase_id))
        if local_changed and not remote_changed:
            return "push"
        if remote_changed and not local_changed:
            return "pull"
        if not local_changed and not remote_changed:
            return "same"  # known differences: objects kept on one side without delete
    elif not differ:
        # The objects both sides hold are identical: copying one side's extras
        # over loses nothing.
        if local_extra and not remote_extra:
            return "push"
        if remote_extra and not local_extra:
            return "pull"
    if prefer == "local":
        return "push"
    if prefer == "remote":
        return "pull"
    if prefer == "newer":
        mine, yours = _newest(ours), _newest(theirs)
        if mine is not None and yours is not None:
            return "push" if mine >= yours else "pull"
    return "conflict"


def _apply(etags: dict[str, str], outcome: _CodebaseOutcome | None) -> None:
    """Update a side's ``{key: etag}`` with what was written to and deleted from it."""
    if outcome is None:
        return
    etags.update(outcome.written)
    for key in outcome.deleted:
        etags.pop(key, None)


class _SyncState:
    """The base of the three-way sync, kept in ``<local_dir>/.documee-remote-sync.json``.

    ``{"version": 1, "stores": {store_url: {codebase_id: {"local": {key: etag},
    "remote": {key: etag}}}}}``
    """

    def __init__(self, path: Path, store_url: str, data: dict[str, Any]) -> None:
        self.path = path
        self.store_url = store_url
        self.data = data
        stores = data.setdefault("stores", {})
        self.codebases: dict[str, Any] = stores.setdefault(store_url, {})

    @classmethod
    def load(cls, local_dir: Path, store_url: str) -> _SyncState:
        path = local_dir / SYNC_STATE_NAME
        data: dict[str, Any] = {"version": 1, "stores": {}}
        try:
            loaded = json.loads(path.read_bytes())
        except FileNotFoundError:
            pass
        except (OSError, ValueError) as exc:
            logger.warning("ignoring unreadable sync state %s: %s", path, exc)
        else:
            if isinstance(loaded, dict) and isinstance(loaded.get("stores"), dict):
                data = loaded
        return cls(path, store_url, data)

    def has(self, codebase_id: str) -> bool:
        return codebase_id in self.codebases

    def local(self, codebase_id: str) -> dict[str, str]:
        return dict(self.codebases.get(codebase_id, {}).get("local", {}))

    def remote(self, codebase_id: str) -> dict[str, str]:
        return dict(self.codebases.get(codebase_id, {}).get("remote", {}))

    def set(self, codebase_id: str, local: Mapping[str, str], remote: Mapping[str, str]) -> None:
        self.codebases[codebase_id] = {"local": dict(local), "remote": dict(remote)}

    def save(self) -> None:
        """Write the state atomically (temp file and rename)."""
        if not self.path.parent.is_dir():
            return
        body = json.dumps(self.data, indent=1, sort_keys=True).encode("utf-8")
        fd, tmp = tempfile.mkstemp(prefix=".tmp-sync-", dir=self.path.parent)
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(body)
            os.replace(tmp, self.path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise


def _record_after_copy(
    state_dir: Path,
    remote: Store,
    direction: Direction,
    *,
    src_meta: Mapping[str, ObjectMeta],
    dst_meta: Mapping[str, ObjectMeta],
    plan: Mapping[str, Sequence[PlannedAction]],
    outcomes: Mapping[str, _CodebaseOutcome],
) -> None:
    """After a push or pull, remember the copied codebases as agreed, for sync.

    A pull writes into the directory anyway; a push only updates a state file
    that ``sync`` already keeps there, so pushing from a directory that never
    took part in a sync (an upstream one, a read-only checkout) leaves it as it was.
    """
    if direction == "push" and not (state_dir / SYNC_STATE_NAME).is_file():
        return
    try:
        state = _SyncState.load(state_dir, remote.url)
        src_groups, dst_groups = _by_codebase(src_meta), _by_codebase(dst_meta)
        for codebase_id in plan:
            outcome = outcomes.get(codebase_id)
            if outcome is not None and outcome.conflicts:
                continue
            src = _etags(src_groups.get(codebase_id, {}))
            dst = _etags(dst_groups.get(codebase_id, {}))
            _apply(dst, outcome)
            state.set(codebase_id, *_src_dst(direction, src, dst))
        state.save()
    except (OSError, DocumeeRemoteError) as exc:
        # The state only saves work: without it, sync compares both sides afresh.
        logger.info("sync state not recorded in %s: %s", state_dir, exc)
