"""Where the stores are and what they hold: location checks, listings, what differs."""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

from .. import codec, layout
from ..bookkeeping import BOOKKEEPING_KEY, Folded, peek_book, recorded_folded
from ..errors import (
    ConfigurationError,
    CorruptObjectError,
    InvalidKeyError,
    NotFoundError,
)
from ..stores import LocalStore, ObjectMeta, Store, etag_of

if TYPE_CHECKING:
    pass
from .report import Direction, _codebase_of

logger = logging.getLogger("documee_remote.transfer")

_PLAIN_MD5 = re.compile(r'"[0-9a-f]{32}"\Z')
_NAMED = re.compile(r"w[0-9]{13}-[0-9a-f]{16}\Z")
#: Objects read (and then written) per batch, and the bytes a batch may hold.
_BATCH_OBJECTS = 64
_BATCH_BYTES = 64 << 20

_T = TypeVar("_T")


# -- helpers ------------------------------------------------------------------------------


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


def _delta_seq(key: str) -> int | None:
    """The seq of a journal delta's key (None: not a delta)."""
    parts = key.split("/")
    if len(parts) != 3 or parts[1] != layout.JOURNAL_DIR or not parts[2].endswith(".json"):
        return None
    digits = parts[2].removesuffix(".json")
    return int(digits) if digits.isdigit() else None


def _delta_name(key: str) -> str | None:
    """The name of a named journal delta's key (None: not one)."""
    parts = key.split("/")
    if len(parts) != 3 or parts[1] != layout.JOURNAL_DIR or not parts[2].endswith(".json"):
        return None
    name = parts[2].removesuffix(".json")
    return name if _NAMED.match(name) else None


def _folded_of(data: bytes, key: str) -> Folded:
    """The folded map of ``analysis.json`` bytes: peeked, or parsed in full when the
    bookkeeping is not where this library writes it (empty when there is none)."""
    book = peek_book(data)
    if book:
        return recorded_folded({BOOKKEEPING_KEY: book})
    try:
        doc = codec.loads(data, key=key)
    except CorruptObjectError:
        return Folded()
    return recorded_folded(doc if isinstance(doc, dict) else None)
