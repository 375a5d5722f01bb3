"""Checking and repairing a codebase's invariants, and collecting its garbage.

The invariants (``PersistenceManager`` keeps them; ``verify`` checks them):

1. No lost update: merges never overwrite each other (compare-and-swap on
   ``analysis.json``; checked by the race tests, not here).
2. ``analysis.json`` is the commit point: it parses, and a reader never sees a
   partial one (atomic writes in every backend).
3. ``file_hashes.json`` never claims a file that ``analysis.json`` lacks, so a
   crash can only cause a re-analysis, never a skipped file.
4. Every per-file object equals the embedded entry for its path, or is
   repaired by the next merge of that path: ``verify`` reports each one that
   differs, is missing, does not parse, or belongs to no entry.

Comparisons use ETags from one listing, so checking 3,000 per-file objects
costs a listing, not 3,000 downloads: the expected bytes of each entry are
serialised locally and their MD5 compared with the stored ETag.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any, Protocol

from . import codec, journal, layout
from ._engine.context import Engine
from ._engine.hashes import cas_hashes
from ._engine.journal_io import prune_journal
from ._engine.reads import read_view
from .bookkeeping import BOOKKEEPING_KEY, Folded, peek_book, recorded_folded
from .compaction import ORPHAN_GRACE_SECONDS
from .errors import (
    CorruptObjectError,
    NotFoundError,
    ObjectTooLargeError,
    PreconditionFailedError,
)
from .models import CodebaseAnalysis
from .retry import TransactionStats
from .stores.base import ObjectMeta, Store, etag_of

__all__ = [
    "Finding",
    "FindingKind",
    "GcReport",
    "VerifyReport",
    "gc",
    "too_large_detail",
    "verify",
]


class Checked(Protocol):
    """What verify and gc need of a :class:`~documee_remote.PersistenceManager`."""

    @property
    def store(self) -> Store: ...

    @property
    def engine(self) -> Engine: ...

    def load_analysis(self, codebase_id: str) -> CodebaseAnalysis | None: ...

    def get_file_hashes(self, codebase_id: str) -> dict[str, str]: ...


#: Per-file objects younger than this may belong to a merge in flight: a merge
#: writes them before it commits analysis.json.
DEFAULT_GRACE_SECONDS = ORPHAN_GRACE_SECONDS


class FindingKind(StrEnum):
    """What ``verify`` can find wrong."""

    ANALYSIS_UNREADABLE = "analysis_unreadable"
    ANALYSIS_MISSING = "analysis_missing"
    PER_FILE_MISSING = "per_file_missing"
    PER_FILE_DIFFERS = "per_file_differs"
    PER_FILE_UNREADABLE = "per_file_unreadable"
    PER_FILE_ORPHAN = "per_file_orphan"
    DELTA_UNREADABLE = "delta_unreadable"
    HASHES_UNREADABLE = "hashes_unreadable"
    HASH_WITHOUT_ENTRY = "hash_without_entry"
    #: Over the store's ``max_object_size``: not read, so not judged (not repairable).
    OBJECT_TOO_LARGE = "object_too_large"


@dataclass(slots=True)
class Finding:
    """One broken invariant, and whether ``repair`` fixed it."""

    kind: FindingKind
    key: str
    file_path: str | None
    detail: str
    repaired: bool = False

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        data = asdict(self)
        data["kind"] = str(self.kind)
        return data


@dataclass(slots=True)
class VerifyReport:
    """What ``verify`` checked and found."""

    codebase_id: str
    findings: list[Finding] = field(default_factory=list)
    files_checked: int = 0
    objects_listed: int = 0

    @property
    def ok(self) -> bool:
        """True when nothing is wrong any more (no findings, or all repaired)."""
        return all(f.repaired for f in self.findings)

    @property
    def repaired(self) -> int:
        """How many findings ``repair`` fixed."""
        return sum(1 for f in self.findings if f.repaired)

    def count(self, kind: FindingKind) -> int:
        """How many findings of one kind."""
        return sum(1 for f in self.findings if f.kind == kind)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return {
            "codebase_id": self.codebase_id,
            "ok": self.ok,
            "files_checked": self.files_checked,
            "objects_listed": self.objects_listed,
            "repaired": self.repaired,
            "findings": [f.to_dict() for f in self.findings],
        }


@dataclass(slots=True)
class GcReport:
    """What ``gc`` removed, and what it left because it was too young."""

    codebase_id: str
    removed: list[str] = field(default_factory=list)
    kept_young: list[str] = field(default_factory=list)
    dry_run: bool = False

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return asdict(self)


def too_large_detail(limit: int | None, size: int | None) -> str:
    """What to say about an object over ``max_object_size``, and how to raise the limit."""
    what = f"{size} bytes" if size is not None else "larger than the limit"
    return (
        f"{what}, over this store's max_object_size of {limit} bytes: not read; "
        "raise the limit with DOCUMEE_MAX_OBJECT_SIZE=<bytes> (max_object_size= in Python)"
    )


def _too_large(
    pm: Checked, exc: ObjectTooLargeError, fallback: str, listing: dict[str, ObjectMeta]
) -> Finding:
    key = exc.key or fallback
    meta = listing.get(key)
    detail = too_large_detail(pm.store.max_object_size, meta.size if meta else None)
    return Finding(FindingKind.OBJECT_TOO_LARGE, key, None, detail)


def _listing(pm: Checked, codebase_id: str) -> dict[str, ObjectMeta]:
    prefix = layout.codebase_prefix(codebase_id)
    return {meta.key: meta for meta in pm.store.list_meta(prefix)}


def _per_file_keys(listing: dict[str, ObjectMeta], codebase_id: str) -> Iterator[str]:
    prefix = layout.codebase_prefix(codebase_id)
    for key in listing:
        name = key[len(prefix) :]
        if layout.is_file_analysis_name(name):
            yield key


def verify(
    pm: Checked,
    codebase_id: str,
    *,
    repair: bool = False,
    grace_seconds: float = DEFAULT_GRACE_SECONDS,
) -> VerifyReport:
    """Check every invariant of one codebase; with ``repair``, fix what ``analysis.json`` can.

    Repairs rewrite per-file objects from their ``analysis.json`` entries,
    withdraw hashes of files the analysis lacks, and delete orphaned per-file
    objects older than ``grace_seconds`` (younger ones may belong to a merge
    in flight). Every repair is a conditional write against the version
    verify saw, so it never overwrites a concurrent merge.
    """
    report = VerifyReport(codebase_id)
    listing = _listing(pm, codebase_id)
    report.objects_listed = len(listing)
    cb_key = layout.analysis_key(codebase_id)
    now = datetime.now(UTC)
    grace = timedelta(seconds=grace_seconds)

    analysis = None
    if cb_key in listing or any(layout.lifecycle_kind(k) == "delta" for k in listing):
        try:
            analysis = pm.load_analysis(codebase_id)
        except CorruptObjectError as exc:
            # A corrupt pending delta stops every reader just the same. It is
            # not repaired: it is the only copy of a merge.
            kind = (
                FindingKind.ANALYSIS_UNREADABLE
                if exc.key in (None, cb_key)
                else FindingKind.DELTA_UNREADABLE
            )
            report.findings.append(Finding(kind, exc.key or cb_key, None, str(exc)))
            return report  # nothing else can be judged without the commit point
        except ObjectTooLargeError as exc:
            # Reported, so that verifying every codebase goes on to the others.
            report.findings.append(_too_large(pm, exc, cb_key, listing))
            return report
    if cb_key not in listing and analysis is None and listing:
        report.findings.append(
            Finding(
                FindingKind.ANALYSIS_MISSING,
                cb_key,
                None,
                f"{len(listing)} object(s) but no analysis.json",
            )
        )
    entries = analysis.file_analyses if analysis is not None else {}
    report.files_checked = len(entries)

    # Invariant 4: per-file objects equal their entries.
    expected_keys: dict[str, str] = {}
    for path, fa in entries.items():
        key = layout.file_analysis_key(codebase_id, path)
        expected_keys[key] = path
        body = codec.dump_file_analysis(fa)
        meta = listing.get(key)
        if meta is not None and meta.etag == etag_of(body):
            continue
        if meta is None:
            finding = Finding(FindingKind.PER_FILE_MISSING, key, path, "no per-file object")
        else:
            try:
                kind, detail = _classify_per_file(pm, key, codebase_id)
            except ObjectTooLargeError as exc:
                # Its ETag already says it differs from the entry: repairable alike.
                finding = _too_large(pm, exc, key, listing)
                finding.file_path = path
            else:
                finding = Finding(kind, key, path, detail)
        if repair:
            finding.repaired = _rewrite(pm, key, body, meta)
        report.findings.append(finding)

    deletable: dict[str, Finding] = {}
    for key in _per_file_keys(listing, codebase_id):
        if key in expected_keys:
            continue
        meta = listing[key]
        young = now - meta.last_modified < grace
        finding = Finding(
            FindingKind.PER_FILE_ORPHAN,
            key,
            None,
            "belongs to no entry of analysis.json"
            + (" (younger than the grace period: may be a merge in flight)" if young else ""),
        )
        if not young:
            deletable[key] = finding
        report.findings.append(finding)
    if repair and deletable:
        kept = set(_delete_unchanged(pm, deletable, listing))
        for key, finding in deletable.items():
            finding.repaired = key not in kept

    # Invariant 3: hashes only for files the analysis has.
    hashes_key = layout.file_hashes_key(codebase_id)
    if hashes_key in listing:
        try:
            hashes = pm.get_file_hashes(codebase_id)
        except CorruptObjectError as exc:
            finding = Finding(FindingKind.HASHES_UNREADABLE, hashes_key, None, str(exc))
            if repair:
                # Without hashes every file is simply analysed again: safe.
                finding.repaired = not _delete_unchanged(pm, [hashes_key], listing)
            report.findings.append(finding)
        except ObjectTooLargeError as exc:
            report.findings.append(_too_large(pm, exc, hashes_key, listing))
        else:
            stray = [p for p in hashes if p not in entries]
            findings = [
                Finding(
                    FindingKind.HASH_WITHOUT_ENTRY,
                    hashes_key,
                    p,
                    "file_hashes.json claims a file analysis.json lacks",
                )
                for p in stray
            ]
            if repair and stray:
                gone = set(stray)
                cas_hashes(
                    pm.engine,
                    codebase_id,
                    lambda current: {p: h for p, h in current.items() if p not in gone},
                    retry=None,
                    stats=TransactionStats(),
                )
                for f in findings:
                    f.repaired = True
            report.findings.extend(findings)
    return report


def _classify_per_file(pm: Checked, key: str, codebase_id: str) -> tuple[FindingKind, str]:
    try:
        obj = pm.store.get(key)
    except NotFoundError:
        return FindingKind.PER_FILE_MISSING, "no per-file object"
    try:
        codec.load_file_analysis(obj.data, key=key, codebase_id=codebase_id)
    except CorruptObjectError as exc:
        return FindingKind.PER_FILE_UNREADABLE, str(exc)
    return FindingKind.PER_FILE_DIFFERS, "differs from the entry in analysis.json"


def _rewrite(pm: Checked, key: str, body: bytes, meta: ObjectMeta | None) -> bool:
    try:
        if meta is None:
            pm.store.put(key, body, if_none_match="*")
        else:
            pm.store.put(key, body, if_match=meta.etag)
    except PreconditionFailedError:
        return False  # changed since the listing: a merge got there; verify again
    return True


def _delete_unchanged(
    pm: Checked, keys: Iterable[str], listing: dict[str, ObjectMeta]
) -> list[str]:
    """Delete ``keys`` concurrently, each only if still at its listed ETag; return those kept."""
    keys = list(keys)
    return pm.store.delete_many(keys, if_match={k: listing[k].etag for k in keys})


def _stored_folded(raw: bytes | None, codebase_id: str) -> Folded:
    """The folded map of ``analysis.json`` as stored (``raw``), not as a read folded it."""
    if raw is None:
        return Folded()
    book = peek_book(raw)
    if not book:
        # Not where this library writes it (another tool's layout): parse it all.
        doc = codec.loads(raw, key=layout.analysis_key(codebase_id), codebase_id=codebase_id)
        return recorded_folded(doc if isinstance(doc, dict) else None)
    return recorded_folded({BOOKKEEPING_KEY: book})


def gc(
    pm: Checked,
    codebase_id: str,
    *,
    grace_seconds: float = DEFAULT_GRACE_SECONDS,
    dry_run: bool = False,
) -> GcReport:
    """Remove per-file objects no ``analysis.json`` entry refers to, and folded journal deltas.

    Objects younger than ``grace_seconds`` are kept: a merge writes its
    per-file objects before it commits ``analysis.json``, and removing them
    in between would break invariant 4. Each removal is conditional on the
    ETag seen in the listing. Without an ``analysis.json`` nothing is removed
    (the codebase may be in its first merge, or its analysis lost; either way
    the per-file objects are the only copy left). Journal deltas go once the
    stored ``analysis.json`` has held them for ``grace_seconds`` (a pending
    delta is never removed), and markers once a newer one stands in for them.
    """
    report = GcReport(codebase_id, dry_run=dry_run)
    listing = _listing(pm, codebase_id)
    view = read_view(pm.engine, codebase_id)
    analysis = view.analysis
    if analysis is None:
        return report
    stored = _stored_folded(view.raw, codebase_id)
    if not dry_run and (view.watermark or stored.commit):
        # Folded deltas older than the grace period (legacy ones up to the
        # stored watermark, named ones by the stored folded map: never pending
        # ones), and markers a newer marker replaces. The stored record, not
        # view.analysis's: that one has the pending deltas folded in memory,
        # under a commit dated now, and would have them deleted as folded.
        whole = journal.parse_listing(codebase_id, listing.values())  # not from a floor
        pruned, _ = prune_journal(
            pm.engine,
            codebase_id,
            whole,
            view.watermark,
            grace_seconds=grace_seconds,
            folded=stored,
        )
        report.removed.extend(sorted(pruned))
    referenced = {layout.file_analysis_key(codebase_id, p) for p in analysis.file_analyses}
    cutoff = datetime.now(UTC) - timedelta(seconds=grace_seconds)
    old: list[str] = []
    for key in _per_file_keys(listing, codebase_id):
        if key in referenced:
            continue
        if listing[key].last_modified > cutoff:
            report.kept_young.append(key)
        else:
            old.append(key)
    kept = set() if dry_run else set(_delete_unchanged(pm, old, listing))
    report.removed[:0] = [key for key in old if key not in kept]
    return report
