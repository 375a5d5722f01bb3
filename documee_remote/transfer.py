"""Copy analyses between a local ``.documee/analysis`` directory and a store.

The engine behind ``documee-remote push``, ``pull``, ``sync`` and ``migrate``,
usable as a library::

    from documee_remote.transfer import push, pull, sync, migrate

    report = push(".documee/analysis", store)            # local -> store
    report = pull(store, ".documee/analysis")            # store -> local
    report = sync(".documee/analysis", store)            # both ways, see below
    report = migrate("/old/.documee/analysis", store)    # upstream dir -> store, verified

Every function returns a :class:`TransferReport`; with ``dry_run=True``
nothing is written and the report lists what would be.

What is copied
--------------
Only what differs. Both sides are listed with ``list_meta`` and objects are
compared by ETag, which is the quoted MD5 of the bytes on every backend here
and on S3 for single-part uploads. An ETag that is not a plain MD5 (S3's
multipart ETags contain ``-``; some fsspec services use other schemes) cannot
be compared: both objects are then read and their contents compared. Objects
are copied as raw bytes, never parsed and re-serialised, so what arrives is
exactly what left ("unchanged": upstream's empty ``analysis.json`` files
included). Hidden names (``.tmp-*`` files of interrupted writes, editors'
``.swp``) are never listed, so never copied.

Order and races
---------------
Per codebase, a copy keeps the order merges keep (the README's invariant 3:
``file_hashes.json`` never claims a file ``analysis.json`` lacks), whether it
is interrupted or races other writers:

1. per-file objects (and journal deltas) first;
2. the destination's hash claims that the source does not make are withdrawn
   (compare-and-swap), so no claim outlives the commit that drops its file;
3. ``analysis.json``, the commit point: a reader never sees an
   ``analysis.json`` whose per-file objects are not there yet;
4. the source's ``file_hashes.json``: byte for byte when the destination's
   has not moved since step 2, else its claims merged in; then claims that
   another writer's later commit overtook are withdrawn, as a merge does;
5. deletions (only with ``delete=True``); when ``analysis.json`` itself is
   deleted, every claim is withdrawn and it goes first.

Steps 2 and 4 are the manager's own (``withdraw_hash_claims``,
``claim_hashes_after_commit``). Every write of steps 1 and 3 is conditional on
what the plan saw at the destination (``If-Match`` its ETag, or
``If-None-Match: *`` when it was absent), so a transfer racing another writer
(an analyser merging into the remote) fails clearly for that codebase instead
of clobbering the other writer's work: the conflict is reported, that
codebase's ``analysis.json`` and hashes are not written, and other codebases
proceed. Stores without atomic conditional writes (see
``Store.capabilities``) get plain writes. A source ``file_hashes.json`` that
itself claims files its ``analysis.json`` lacks (upstream leaves such files)
is copied as it is, with a warning: ``verify --repair`` withdraws them.

Pending merges at the destination: a journal delta above the destination's
watermark is a merge not yet folded into its ``analysis.json``. A copy
replaces the ``analysis.json`` the plan saw, merges folded into it included;
when the destination's journal watermark (or lease fence) is ahead of the
copied file's (upstream's files have none), ``analysis.json`` is written with
the destination's, so readers do not fold those merges again on top of the
copy (``TransferReport.rebased``; the only case where a copy is not byte for
byte). Pending deltas stay pending and are folded on top of it, so nothing is
lost. A codebase is refused (reported as a conflict,
nothing of it written) when a different source delta would overwrite a
pending one (the journals diverged), when the copied watermark would hide a
pending delta the source does not hold, or when it is above the
destination's newest seq (merges appended next would be hidden): compact and
pull first.

Unreadable objects: an object of the source that does not parse (upstream
ships 0-byte ``analysis.json`` files) never replaces a readable one at the
destination without ``force``: the codebase is left untouched and reported
(``Conflict.corrupt``; the CLI exits 6). Over nothing, or over an object just
as unreadable, it is copied as it is, so a migration stays byte for byte.

Where the store is: :func:`check_store_location` refuses a local store that is
a file or a codebase folder; a missing directory is fine as a destination
(push, migrate and sync create it) and an error for ``pull``.

Sync
----
:func:`sync` is a three-way sync per codebase, a codebase being one unit
(its ``analysis.json`` embeds its file analyses, so mixing one side's
per-file objects with the other side's ``analysis.json`` would make an
inconsistent codebase). A state file in the local directory,
``.documee-remote-sync.json`` (hidden, so never transferred), records for
each store URL and codebase the ETags of both sides when they last agreed
(after a sync, push or pull). Then, per codebase:

* only on one side: copied to the other;
* identical on both sides: nothing;
* changed since the last agreement on one side only: that side wins (a push
  or a pull of the codebase);
* changed on both sides, or never synced and different: a **conflict**,
  left untouched and reported (the CLI exits 5), unless ``prefer`` says
  ``"local"``, ``"remote"`` or ``"newer"`` (the side whose newest object has
  the later ``last_modified``; mind clock skew between machines).

Sync never deletes unless ``delete=True``: without it an object missing on
one side is left alone (a codebase that exists only on one side is copied
over). With it, an object deleted on the winning side since the last
agreement is deleted on the other side too.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import tempfile
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, TypeVar

from . import codec, journal, layout
from .bookkeeping import BOOKKEEPING_KEY, recorded_fence
from .errors import (
    ConfigurationError,
    ConflictError,
    CorruptObjectError,
    DocumeeRemoteError,
    InvalidKeyError,
    NotFoundError,
    PreconditionFailedError,
    TransientError,
)
from .models import CodebaseAnalysis, FileAnalysis
from .stores import LocalStore, ObjectMeta, Store, etag_of

if TYPE_CHECKING:
    from .manager import PersistenceManager

__all__ = [
    "SYNC_STATE_NAME",
    "Conflict",
    "Direction",
    "PlannedAction",
    "Prefer",
    "TransferEvent",
    "TransferReport",
    "check_store_location",
    "migrate",
    "pull",
    "push",
    "sync",
]

logger = logging.getLogger("documee_remote.transfer")

#: The sync state file inside the local directory (hidden: never listed or copied).
SYNC_STATE_NAME = ".documee-remote-sync.json"

Direction = Literal["push", "pull"]
Prefer = Literal["local", "remote", "newer"]

_PLAIN_MD5 = re.compile(r'"[0-9a-f]{32}"\Z')
#: Objects read (and then written) per batch, and the bytes a batch may hold.
_BATCH_OBJECTS = 64
_BATCH_BYTES = 64 << 20

_T = TypeVar("_T")


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
        ``analysis.json`` keys written with the destination's journal watermark
        and lease fence, which were ahead of the source's (so not byte for
        byte; see "Pending merges" above).
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


# -- helpers ------------------------------------------------------------------------------


def _codebase_of(key: str) -> str:
    head, sep, _ = key.partition("/")
    return head if sep else ""


def _is_commit_key(key: str) -> bool:
    _, sep, rest = key.partition("/")
    return bool(sep) and rest == layout.ANALYSIS_NAME


def _plain_md5(etag: str | None) -> bool:
    return etag is not None and _PLAIN_MD5.match(etag) is not None


def _src_dst(direction: Direction, local: _T, remote: _T) -> tuple[_T, _T]:
    """A transfer's ``(source, destination)`` from its ``(local, remote)`` ends.

    The swap is its own inverse, so it also turns a push's or a pull's
    ``(source, destination)`` back into ``(local, remote)``.
    """
    return (local, remote) if direction == "push" else (remote, local)


def _open_local(local_dir: str | os.PathLike[str], *, must_exist: bool, read_only: bool) -> Store:
    path = Path(local_dir)
    if must_exist and not path.is_dir():
        raise NotFoundError(f"local directory {os.fspath(path)!r} does not exist")
    if path.exists() and not path.is_dir():
        raise InvalidKeyError(f"{os.fspath(path)!r} is not a directory")
    if path.is_dir():
        _check_not_a_codebase(path, os.fspath(path))
        _check_not_a_parent(path)
    return LocalStore(path, read_only=read_only)


def _check_not_a_codebase(path: Path, shown: str) -> None:
    """Refuse a codebase folder (one that holds ``analysis.json`` itself) given for its parent.

    Its objects would sit at the root, outside any codebase: nothing would be
    copied, or everything would land one level too deep.
    """
    if (path / layout.ANALYSIS_NAME).is_file():
        raise InvalidKeyError(
            f"{shown!r} holds analysis.json itself: this looks like a codebase folder; "
            f"point at its parent DIR ({os.fspath(path.parent)!r}), which holds the "
            "<codebase_id>/analysis.json folders"
        )


def check_store_location(store: Store, *, must_exist: bool) -> None:
    """Refuse a local store whose root is a file, a codebase folder, or (``must_exist``) absent.

    Only local stores are checked (an S3 bucket that does not exist fails on
    its own, naming the bucket). A missing directory is fine where the store
    is only written to: a push or a migration creates it. Commands that read
    the store (``ls``, ``verify``, ``pull``) pass ``must_exist``, so a typo in
    the URL is not reported as an empty store.

    Raises
    ------
    ConfigurationError
        The root is a file.
    NotFoundError
        ``must_exist`` and the directory does not exist.
    InvalidKeyError
        The root is a codebase folder (it holds ``analysis.json`` itself).
    """
    root = getattr(store, "root", None)
    if not isinstance(store, LocalStore) or not isinstance(root, Path):
        return
    if root.exists() and not root.is_dir():
        raise ConfigurationError(
            f"store {store.url} is a file, not a directory: give the directory that holds "
            "the <codebase_id>/analysis.json folders"
        )
    if not root.exists():
        if must_exist:
            raise NotFoundError(
                f"store directory {os.fspath(root)!r} does not exist (check --store or "
                "DOCUMEE_STORE_URL; `documee-remote doctor` diagnoses it)"
            )
        return
    _check_not_a_codebase(root, store.url)


def _check_not_a_parent(path: Path) -> None:
    """Refuse a directory *above* the analyses (``.documee`` instead of ``.documee/analysis``).

    Its codebases would be copied one level too deep, under ``analysis/``.
    """
    if any(path.glob(f"*/{layout.ANALYSIS_NAME}")):
        return
    nested = next(iter(path.glob(f"*/*/{layout.ANALYSIS_NAME}")), None)
    if nested is not None:
        inner = nested.parent.parent
        raise ConfigurationError(
            f"{os.fspath(path)!r} holds no codebase directories, but {os.fspath(inner)!r} "
            "does: give the directory that contains the <codebase_id>/analysis.json "
            "folders (upstream's .documee/analysis)"
        )


def _select(codebase_ids: Iterable[str] | None) -> list[str] | None:
    if codebase_ids is None:
        return None
    ids = [layout.validate_codebase_id(c) for c in codebase_ids]
    return list(dict.fromkeys(ids)) or None


def _check_selected(selected: list[str] | None, found: Iterable[str], where: str) -> None:
    """Raise NotFoundError for the first selected codebase not ``found`` ("codebase X <where>")."""
    if selected is None:
        return
    present = set(found)
    missing = [c for c in selected if c not in present]
    if missing:
        raise NotFoundError(f"codebase {missing[0]!r} {where}", codebase_id=missing[0])


def _listing(store: Store, codebase_ids: Iterable[str] | None) -> dict[str, ObjectMeta]:
    """``{key: meta}`` of the codebases' objects (every codebase's, for ``None``).

    Keys outside any codebase (at the store root, or under a name that is not a
    codebase id, such as an interrupted probe's ``_probe/``) are left out.
    """
    wanted = None if codebase_ids is None else set(codebase_ids)
    if wanted is not None and len(wanted) <= 8:
        prefixes = [layout.codebase_prefix(c) for c in sorted(wanted)]
    else:
        prefixes = [""]  # one listing, filtered, beats a request per codebase
    found: dict[str, ObjectMeta] = {}
    for prefix in prefixes:
        for meta in store.list_meta(prefix):
            codebase_id = _codebase_of(meta.key)
            if wanted is not None and codebase_id not in wanted:
                continue
            try:
                layout.validate_codebase_id(codebase_id)
                layout.validate_key(meta.key)
            except InvalidKeyError:
                logger.info("skipping %r in %s: not a codebase's object", meta.key, store.url)
                continue
            found[meta.key] = meta
    return found


def _by_codebase(metas: Mapping[str, ObjectMeta]) -> dict[str, dict[str, ObjectMeta]]:
    """``{codebase_id: {key: meta}}``."""
    groups: dict[str, dict[str, ObjectMeta]] = {}
    for key, meta in metas.items():
        groups.setdefault(_codebase_of(key), {})[key] = meta
    return groups


def _etags(metas: Mapping[str, ObjectMeta]) -> dict[str, str]:
    return {key: meta.etag for key, meta in metas.items()}


def _batches(items: Iterable[_T], size_of: Callable[[_T], int]) -> Iterator[list[_T]]:
    """``items`` in lists of at most ``_BATCH_OBJECTS`` items and ``_BATCH_BYTES`` bytes.

    An item larger than ``_BATCH_BYTES`` makes a batch of its own.
    """
    batch: list[_T] = []
    size = 0
    for item in items:
        item_size = size_of(item)
        if batch and (len(batch) >= _BATCH_OBJECTS or size + item_size > _BATCH_BYTES):
            yield batch
            batch, size = [], 0
        batch.append(item)
        size += item_size
    if batch:
        yield batch


def _content_equal(
    src: Store, dst: Store, keys: Sequence[str], src_meta: Mapping[str, ObjectMeta]
) -> set[str]:
    """Keys among ``keys`` whose bytes are the same on both sides (reads them)."""
    same: set[str] = set()
    for batch in _batches(keys, lambda key: src_meta[key].size):
        theirs = dst.get_many(batch)
        ours = src.get_many(batch)
        for key in batch:
            a, b = ours[key], theirs[key]
            if a is not None and b is not None and etag_of(a.data) == etag_of(b.data):
                same.add(key)
    return same


def _differing(
    src: Store,
    dst: Store,
    src_meta: Mapping[str, ObjectMeta],
    dst_meta: Mapping[str, ObjectMeta],
    keys: Iterable[str],
) -> tuple[list[str], int]:
    """Which of ``keys`` (all in ``src_meta``) differ at ``dst``; and how many are the same."""
    differ: list[str] = []
    unsure: list[str] = []
    same = 0
    for key in keys:
        theirs = dst_meta.get(key)
        ours = src_meta[key]
        if theirs is None or theirs.size != ours.size:
            differ.append(key)
        elif _plain_md5(ours.etag) and _plain_md5(theirs.etag):
            if ours.etag == theirs.etag:
                same += 1
            else:
                differ.append(key)
        else:
            unsure.append(key)  # multipart or foreign ETags: compare the bytes
    equal = _content_equal(src, dst, unsure, src_meta)
    same += len(equal)
    differ.extend(k for k in unsure if k not in equal)
    return sorted(differ), same


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


@dataclass(frozen=True, slots=True)
class _Book:
    """What a copy needs of an ``analysis.json``, read as plain JSON (fast, unvalidated):
    its file paths and its bookkeeping (the README's ``"documee_remote"`` key)."""

    paths: frozenset[str]
    watermark: int
    fence: int


def _book_of(data: bytes, key: str) -> _Book | None:
    """``data``'s :class:`_Book`, or None when it is not a JSON object."""
    try:
        doc = codec.loads(data, key=key)
    except CorruptObjectError:
        return None
    if not isinstance(doc, dict):
        return None
    files = doc.get("file_analyses")
    paths = frozenset(files) if isinstance(files, dict) else frozenset()
    book = doc.get(BOOKKEEPING_KEY)
    mark = book.get("journal", 0) if isinstance(book, dict) else 0
    if not isinstance(mark, int) or isinstance(mark, bool) or mark < 0:
        mark = 0
    return _Book(paths, mark, recorded_fence(doc))


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
class _Outcome:
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

    def run_codebase(self, codebase_id: str, actions: Sequence[PlannedAction]) -> _Outcome:
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
        out = _Outcome()
        puts = [a for a in actions if a.op == "put" and _role(a.key) == "object"]
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
            from .manager import PersistenceManager

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
        """The source's ``analysis.json`` with the destination's journal watermark and
        fence, when those are ahead of its own; None to copy the bytes as they are.

        The copy replaces the destination's ``analysis.json`` (the version the
        plan saw, by ``If-Match``), and with it the merges folded into it. Left
        at a lower watermark (upstream's files have none), readers would fold
        those merges' deltas again on top of the copy, and their removals would
        leave ``file_hashes.json`` claiming files the result lacks; a lower
        fence would let a lease holder that was taken over merge again.
        Merges still pending above the destination's watermark stay pending.
        """
        current = self._replaced.get(action.codebase_id)
        if claims.book is None or current is None or claims.analysis_etag != action.src_etag:
            return None  # unreadable (copied as it is), or changed since the plan: caught later
        mark = max(claims.book.watermark, current.watermark)
        fence = max(claims.book.fence, current.fence)
        if mark == claims.book.watermark and fence == claims.book.fence:
            return None
        ours = claims.model()
        if ours is None:
            return None
        rebased = ours.model_copy()
        journal.set_watermark(rebased, mark)
        if fence:
            book = dict((rebased.__pydantic_extra__ or {}).get(BOOKKEEPING_KEY) or {})
            book["fence"] = fence
            setattr(rebased, BOOKKEEPING_KEY, book)
        logger.info(
            "%s: writing analysis.json with the destination's journal watermark %d and fence %d",
            action.codebase_id,
            mark,
            fence,
        )
        return codec.dump_codebase_analysis(rebased)

    def _hidden_merges(self, codebase_id: str, claims: _Claims, *, coming: int = 0) -> str | None:
        """Why committing the source's ``analysis.json`` would hide merges from readers.

        Readers fold the destination's journal deltas above the watermark of
        ``analysis.json`` and skip those at or below it. Deltas pending at the
        destination above the copied watermark stay pending and are folded on
        top of the copy: nothing is lost. But a copied watermark above a
        pending delta the source does not hold would hide it, and one above
        the destination's newest seq would hide the merges appended next.
        Checked before anything of the codebase is written (``coming``: the
        highest source delta about to be copied), and again just before the
        commit, when the source's deltas are there, for merges appended meanwhile.
        """
        if claims.watermark == 0:
            return None
        prefix = layout.journal_prefix(codebase_id)
        listing = journal.parse_listing(codebase_id, self.dst.list_meta(prefix))
        if max(listing.max_seq, coming) < claims.watermark:
            return (
                f"analysis.json records journal seq {claims.watermark} as folded, but the "
                f"journal at {self.dst.url} ends at seq {listing.max_seq}: merges appended "
                "after this copy would be hidden from readers; copy the codebase's _journal "
                "too, or run `documee-remote compact` where it came from"
            )
        candidates = [s for s in listing.deltas if s <= claims.watermark]
        if not candidates:
            return None
        try:
            dst_mark = journal.peek_watermark(self.dst.get(layout.analysis_key(codebase_id)).data)
        except NotFoundError:
            dst_mark = 0
        hidden = []
        for seq in sorted(s for s in candidates if s > dst_mark):
            key = journal.delta_key(codebase_id, seq)
            try:
                same = self.src.head(key).etag == listing.deltas[seq].etag
            except NotFoundError:
                same = False
            if not same:
                hidden.append(seq)
        if not hidden:
            return None
        return (
            f"{len(hidden)} merge(s) pending in the journal at {self.dst.url} (seq "
            f"{hidden[0]}..{hidden[-1]}) are not in this analysis.json, whose watermark "
            f"{claims.watermark} would hide them: run `documee-remote compact "
            f"{codebase_id}` there and pull before pushing"
        )

    def _publish_claims(
        self,
        codebase_id: str,
        claims: _Claims,
        *,
        hashes_put: Sequence[PlannedAction],
        committed: str | None,
        replaced: set[str] | None,
        out: _Outcome,
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

    def _conflict(self, out: _Outcome, codebase_id: str, key: str | None, reason: str) -> None:
        out.conflicts.append(Conflict(codebase_id, key, reason))
        self._emit(TransferEvent("conflict", self.direction, key=key, detail=reason))

    def _put_batch(self, batch: Sequence[PlannedAction], out: _Outcome) -> None:
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

    def _delete(self, action: PlannedAction, out: _Outcome) -> bool:
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
) -> dict[str, _Outcome]:
    """Carry out ``plan`` into ``report`` (a dry run only reports it); the outcome per codebase."""
    outcomes: dict[str, _Outcome] = {}
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


def _delta_seq(key: str) -> int | None:
    """The seq of a journal delta's key (None: not a delta)."""
    parts = key.split("/")
    if len(parts) != 3 or parts[1] != layout.JOURNAL_DIR or not parts[2].endswith(".json"):
        return None
    digits = parts[2].removesuffix(".json")
    return int(digits) if digits.isdigit() else None


def _refuse_diverged_journals(dst: Store, plan: _Plan, report: TransferReport) -> None:
    """Take out of ``plan`` every codebase where a pending merge would be overwritten.

    A delta is one merge, immutable once created. A destination delta above
    the destination's watermark is a merge not yet folded into its
    ``analysis.json``; a different source delta at the same seq (the two
    journals diverged) must not replace it, or the merge is gone. Deltas at
    or below the watermark are folded history, which readers skip. Not even
    ``force`` overwrites a pending merge.
    """
    for codebase_id, actions in plan.items():
        seqs = sorted(
            seq
            for a in actions
            if a.op == "put" and a.dst_etag and (seq := _delta_seq(a.key)) is not None
        )
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
    _refuse_diverged_journals(dst, plan, report)
    _refuse_corrupt_overwrites(src, dst, plan, report, force=force)
    return report, plan, src_meta, dst_meta


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
            _refuse_diverged_journals(dst, plan, report)
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
        outcomes: dict[Direction, dict[str, _Outcome]] = {}
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


def _apply(etags: dict[str, str], outcome: _Outcome | None) -> None:
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
    outcomes: Mapping[str, _Outcome],
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
