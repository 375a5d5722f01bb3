"""What a transfer plans, meets and reports: actions, conflicts, events, the report."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    pass


Direction = Literal["push", "pull"]
Prefer = Literal["local", "remote", "newer"]


def _codebase_of(key: str) -> str:
    head, sep, _ = key.partition("/")
    return head if sep else ""


@dataclass(frozen=True, slots=True)
class PlannedAction:
    """One write or delete a transfer makes (or would make, in a dry run).

    ``dst_etag`` is what the plan saw at the destination (None: absent); the
    write is conditional on it.
    """

    op: Literal["put", "delete"]
    key: str
    direction: Direction
    size: int
    src_etag: str | None
    dst_etag: str | None

    @property
    def codebase_id(self) -> str:
        """The codebase the key belongs to (``""`` for a key at the store root)."""
        return _codebase_of(self.key)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {"op": self.op, "key": self.key, "direction": self.direction, "size": self.size}


#: Per codebase, the writes and deletes a transfer makes, in order.
_Plan = dict[str, list[PlannedAction]]


@dataclass(frozen=True, slots=True)
class Conflict:
    """Something the transfer refused to overwrite, or lost to another writer."""

    codebase_id: str
    key: str | None
    reason: str
    #: The source's object is unreadable and the destination's is not: the copy was
    #: refused (without ``force``) rather than replace good data with bad.
    corrupt: bool = False

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {
            "codebase_id": self.codebase_id,
            "key": self.key,
            "reason": self.reason,
            "corrupt": self.corrupt,
        }


@dataclass(frozen=True, slots=True)
class TransferEvent:
    """A progress event for a progress bar.

    ``kind`` is ``"plan"`` (once per direction, with ``total_objects`` and
    ``total_bytes``), ``"put"``, ``"delete"`` (``key``, ``size``) or
    ``"conflict"`` (``key``, ``detail``).
    """

    kind: Literal["plan", "put", "delete", "conflict"]
    direction: Direction
    key: str | None = None
    size: int = 0
    total_objects: int = 0
    total_bytes: int = 0
    detail: str = ""


ProgressCallback = Callable[[TransferEvent], None]


@dataclass
class TransferReport:
    """What a transfer did (or, with ``dry_run``, would do).

    Attributes
    ----------
    operation:
        ``"push"``, ``"pull"``, ``"sync"`` or ``"migrate"``.
    copied:
        Keys written (would be written, in a dry run), in the order written.
    deleted:
        Keys deleted (would be).
    skipped_same:
        Objects already identical on both sides.
    bytes:
        Bytes written (would be).
    conflicts:
        What was refused or lost to another writer; nothing of those
        codebases' ``analysis.json`` was written.
    codebases:
        Per codebase, what happened: ``"push"``, ``"pull"``, ``"same"``,
        ``"conflict"``, ``"delete"``.
    verified:
        Objects whose ETag was checked at the destination after the copy
        (migrate), and ``mismatched`` those that did not match.
    refused:
        Nothing was written because of conflicts (migrate without ``force``).
    rebased:
        ``analysis.json`` keys written with the destination's journal watermark,
        folded map and lease fence, which were ahead of the source's (so not
        byte for byte; see "Pending merges" above).
    """

    operation: str
    source: str
    destination: str
    dry_run: bool = False
    copied: list[str] = field(default_factory=list)
    deleted: list[str] = field(default_factory=list)
    skipped_same: int = 0
    bytes: int = 0
    conflicts: list[Conflict] = field(default_factory=list)
    codebases: dict[str, str] = field(default_factory=dict)
    actions: list[PlannedAction] = field(default_factory=list)
    verified: int = 0
    mismatched: list[str] = field(default_factory=list)
    refused: bool = False
    rebased: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """True when nothing conflicted and every verified object matched."""
        return not self.conflicts and not self.mismatched and not self.refused

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (for ``--json``)."""
        return {
            "operation": self.operation,
            "source": self.source,
            "destination": self.destination,
            "dry_run": self.dry_run,
            "ok": self.ok,
            "copied": len(self.copied),
            "deleted": len(self.deleted),
            "skipped_same": self.skipped_same,
            "bytes": self.bytes,
            "conflicts": [c.to_dict() for c in self.conflicts],
            "codebases": dict(sorted(self.codebases.items())),
            "actions": [a.to_dict() for a in self.actions],
            "verified": self.verified,
            "mismatched": list(self.mismatched),
            "refused": self.refused,
            "rebased": list(self.rebased),
        }
