"""Keys: the original on-disk layout, and the validation every key passes.

The layout is the original Documee ``PersistenceManager``'s, relative to a
store root (a directory, or a bucket prefix)::

    <codebase_id>/analysis.json        the whole CodebaseAnalysis: the commit point
    <codebase_id>/file_hashes.json     {file path: sha256 of its content}
    <codebase_id>/file_<h16>.json      one FileAnalysis, h16 = sha256(file path)[:16]

documee-remote adds, under the same codebase directory::

    <codebase_id>/_journal/<seq>.json  immutable deltas, ``seq`` zero-padded so that
                                       lexicographic order is commit order
    <codebase_id>/_lease.json          the exclusive-work lease

Every key is checked before any backend sees it, by the key grammar of
:mod:`documee_remote.stores._keys` (the storage layer's own rule, re-exported
here): relative, ``/``-separated, no empty, ``.`` or ``..`` segment, no
segment starting with ``.``, no control character, bounded in length. A store
rooted at ``team-a/`` therefore cannot be made to touch ``team-b/``.
"""

from __future__ import annotations

import hashlib
import re

from .errors import InvalidKeyError
from .stores._keys import (
    JOURNAL_DIR,
    LEASE_NAME,
    LIFECYCLE_TAG_KEY,
    MAX_KEY_BYTES,
    MAX_SEGMENT_BYTES,
    lifecycle_kind,
    validate_key,
    validate_prefix,
)

__all__ = [
    "ANALYSIS_NAME",
    "FILE_HASHES_NAME",
    "JOURNAL_DIR",
    "LEASE_NAME",
    "LIFECYCLE_TAG_KEY",
    "MAX_CODEBASE_ID_LENGTH",
    "MAX_FILE_PATH_BYTES",
    "MAX_KEY_BYTES",
    "MAX_SEGMENT_BYTES",
    "analysis_key",
    "codebase_prefix",
    "file_analysis_key",
    "file_analysis_name",
    "file_hashes_key",
    "is_file_analysis_name",
    "journal_prefix",
    "lease_key",
    "lifecycle_kind",
    "validate_codebase_id",
    "validate_file_path",
    "validate_key",
    "validate_prefix",
]

ANALYSIS_NAME = "analysis.json"
FILE_HASHES_NAME = "file_hashes.json"

MAX_CODEBASE_ID_LENGTH = 128
#: A source file path is data inside JSON, never a key, but absurd lengths are refused.
MAX_FILE_PATH_BYTES = 4096

# Real ids: "f894e86523a62387" (sha256 of the codebase path, upstream's choice)
# or "test_codebase_123". The first character must be alphanumeric, which also
# keeps "." and ".." out and keeps ids clear of our "_journal"-style names.
_CODEBASE_ID_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*\Z")
_FILE_ANALYSIS_RE = re.compile(r"file_[0-9a-f]{16}\.json\Z")
# Device names Windows refuses as file names, whatever the extension.
_WINDOWS_RESERVED = frozenset(
    ["CON", "PRN", "AUX", "NUL"]
    + [f"COM{i}" for i in range(1, 10)]
    + [f"LPT{i}" for i in range(1, 10)]
)


def validate_codebase_id(codebase_id: object) -> str:
    """Return ``codebase_id`` if it is a valid codebase id, else raise InvalidKeyError."""
    if not isinstance(codebase_id, str):
        raise InvalidKeyError(f"codebase id must be a string, not {type(codebase_id).__name__}")
    if not codebase_id:
        raise InvalidKeyError("codebase id is empty")
    if len(codebase_id) > MAX_CODEBASE_ID_LENGTH:
        raise InvalidKeyError(
            f"codebase id is {len(codebase_id)} characters long; "
            f"the limit is {MAX_CODEBASE_ID_LENGTH}"
        )
    if not _CODEBASE_ID_RE.match(codebase_id):
        raise InvalidKeyError(
            f"invalid codebase id {codebase_id!r}: use letters, digits, '.', '_' and '-', "
            "starting with a letter or digit",
        )
    if codebase_id.split(".", 1)[0].upper() in _WINDOWS_RESERVED:
        raise InvalidKeyError(f"invalid codebase id {codebase_id!r}: a reserved device name")
    return codebase_id


def validate_file_path(file_path: object) -> str:
    """Validate a source file path as it appears inside an analysis.

    File paths are data, not keys: POSIX (``/srv/code/x.py``) and Windows
    (``C:\\Users\\x.py``) paths are both legitimate. They only need to be text
    that JSON can carry and that hashes to a per-file key.
    """
    if not isinstance(file_path, str):
        raise InvalidKeyError(f"file path must be a string, not {type(file_path).__name__}")
    if not file_path:
        raise InvalidKeyError("file path is empty")
    if "\x00" in file_path:
        raise InvalidKeyError(f"file path {file_path!r} contains a NUL character")
    try:
        encoded = file_path.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise InvalidKeyError(f"file path {file_path!r} is not valid Unicode text") from exc
    if len(encoded) > MAX_FILE_PATH_BYTES:
        raise InvalidKeyError(f"file path is longer than {MAX_FILE_PATH_BYTES} bytes")
    return file_path


def codebase_prefix(codebase_id: str) -> str:
    """``<codebase_id>/``: the prefix every key of a codebase starts with."""
    return validate_codebase_id(codebase_id) + "/"


def analysis_key(codebase_id: str) -> str:
    """Key of the codebase's ``analysis.json``."""
    return codebase_prefix(codebase_id) + ANALYSIS_NAME


def file_hashes_key(codebase_id: str) -> str:
    """Key of the codebase's ``file_hashes.json``."""
    return codebase_prefix(codebase_id) + FILE_HASHES_NAME


def file_analysis_name(file_path: str) -> str:
    """``file_<h16>.json`` for a source file path, exactly as upstream names it."""
    validate_file_path(file_path)
    return "file_" + hashlib.sha256(file_path.encode("utf-8")).hexdigest()[:16] + ".json"


def file_analysis_key(codebase_id: str, file_path: str) -> str:
    """Key of the per-file object holding ``file_path``'s FileAnalysis."""
    return codebase_prefix(codebase_id) + file_analysis_name(file_path)


def is_file_analysis_name(name: str) -> bool:
    """True for names of the form ``file_<16 hex digits>.json``."""
    return _FILE_ANALYSIS_RE.match(name) is not None


def journal_prefix(codebase_id: str) -> str:
    """Prefix of the codebase's delta journal."""
    return codebase_prefix(codebase_id) + JOURNAL_DIR + "/"


def lease_key(codebase_id: str) -> str:
    """Key of the codebase's lease object."""
    return codebase_prefix(codebase_id) + LEASE_NAME
