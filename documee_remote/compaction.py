"""Compaction: when merges fold the journal into ``analysis.json``, and what a fold did."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import asdict, dataclass, replace
from typing import Any, Literal

from .errors import ConfigurationError

__all__ = ["ORPHAN_GRACE_SECONDS", "CompactReport", "CompactionPolicy"]

#: Per-file objects younger than this may belong to a merge in flight (a merge
#: writes them before it commits analysis.json), so gc and verify leave them be.
#: ``integrity.DEFAULT_GRACE_SECONDS``; defined here, among the other periods, so
#: that the manager's signatures need no import of integrity (and pydantic).
ORPHAN_GRACE_SECONDS = 3600.0


@dataclass(frozen=True, slots=True)
class CompactionPolicy:
    """When merges fold the journal into ``analysis.json``.

    ``"eager"`` (the default) compacts after every merge, so ``analysis.json``
    is always complete for readers that know only the original format.
    ``"deferred"`` leaves deltas for readers of this library to fold until
    ``max_deltas`` of them or ``max_bytes`` of them are pending, or a scheduled
    ``compact`` runs: a small merge then costs a few small requests instead of
    a rewrite of ``analysis.json``.
    """

    mode: Literal["eager", "deferred"] = "eager"
    #: Deferred: compact when this many deltas are pending.
    max_deltas: int = 64
    #: Deferred: or when the pending deltas hold this many bytes.
    max_bytes: int = 32 * 1024 * 1024
    #: Folded deltas younger than this are kept (see the module doc); a
    #: writer whose seq pick is older than a quarter of it picks again.
    grace_seconds: float = 1800.0
    #: Eager merges (group commit): how long the folding writer keeps folding
    #: for others after its own delta, and how long a folder may go without
    #: progress before a waiting writer takes over (see ``_engine.folder``).
    group_wait_seconds: float = 10.0

    def __post_init__(self) -> None:
        if self.mode not in ("eager", "deferred"):
            raise ConfigurationError(
                f"compaction mode must be 'eager' or 'deferred', not {self.mode!r}"
            )
        if self.max_deltas < 1 or self.max_bytes < 1:
            raise ConfigurationError("compaction thresholds must be at least 1")
        if self.grace_seconds < 0 or self.group_wait_seconds < 0:
            raise ConfigurationError("journal grace and wait periods cannot be negative")

    @classmethod
    def of(cls, value: CompactionPolicy | str | None) -> CompactionPolicy:
        """A policy from a policy (used as it is), a mode name (the environment's
        thresholds fill in the rest) or ``None`` (the environment's, see
        :meth:`from_environment`): explicit values win, the environment fills in."""
        if isinstance(value, CompactionPolicy):
            return value
        policy = cls.from_environment()
        if value is None:
            return policy
        return replace(policy, mode=value)  # type: ignore[arg-type]  # checked in __post_init__

    @classmethod
    def from_environment(cls, environ: Mapping[str, str] | None = None) -> CompactionPolicy:
        """The policy ``DOCUMEE_COMPACTION`` (``eager``/``deferred``),
        ``DOCUMEE_COMPACTION_MAX_DELTAS``, ``DOCUMEE_COMPACTION_MAX_BYTES``,
        ``DOCUMEE_JOURNAL_GRACE_SECONDS`` and ``DOCUMEE_COMPACTION_GROUP_WAIT_SECONDS``
        describe; the defaults where unset (or empty).

        Raises
        ------
        ConfigurationError
            A value that is not a mode or not a number in range, naming the variable.
        """
        env = os.environ if environ is None else environ
        fields: dict[str, Any] = {}
        mode = (env.get("DOCUMEE_COMPACTION") or "").strip().lower()
        if mode:
            if mode not in ("eager", "deferred"):
                raise ConfigurationError("DOCUMEE_COMPACTION must be 'eager' or 'deferred'")
            fields["mode"] = mode
        for name, key, kind, least in (
            ("DOCUMEE_COMPACTION_MAX_DELTAS", "max_deltas", int, 1),
            ("DOCUMEE_COMPACTION_MAX_BYTES", "max_bytes", int, 1),
            ("DOCUMEE_JOURNAL_GRACE_SECONDS", "grace_seconds", float, 0),
            ("DOCUMEE_COMPACTION_GROUP_WAIT_SECONDS", "group_wait_seconds", float, 0),
        ):
            raw = (env.get(name) or "").strip()
            if not raw:
                continue
            what = "a whole number" if kind is int else "a number"
            try:
                value = kind(raw)
            except ValueError:
                raise ConfigurationError(f"{name} must be {what}") from None
            if not least <= value < float("inf"):  # also refuses NaN
                raise ConfigurationError(f"{name} must be {what} of at least {least}")
            fields[key] = value
        return cls(**fields)

    def due(self, pending: int, pending_bytes: int) -> bool:
        """Whether a merge leaving ``pending`` deltas should compact now."""
        if self.mode == "eager":
            return pending > 0
        return pending >= self.max_deltas or pending_bytes >= self.max_bytes


@dataclass(slots=True)
class CompactReport:
    """What :meth:`~documee_remote.PersistenceManager.compact` did."""

    codebase_id: str
    #: Deltas this call folded into ``analysis.json`` (0: nothing was pending).
    folded: int = 0
    #: The legacy journal's watermark after the call: the highest legacy seq
    #: ``analysis.json`` holds (journals written before named deltas).
    watermark: int = 0
    #: The number of the newest commit that folded named deltas, after the call.
    commit: int = 0
    #: Whether this call wrote ``analysis.json``.
    analysis_written: bool = False
    #: Folded deltas and markers deleted (those past the grace period).
    deleted: int = 0
    #: Folded deltas kept because they are younger than the grace period.
    kept_young: int = 0
    attempts: int = 0
    conflicts: int = 0

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return asdict(self)
