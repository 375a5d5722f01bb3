"""Store keys: the grammar every key passes before a backend sees it, and the reserved names.

Every key is checked here before any backend sees it: relative, ``/``-separated,
no empty, ``.`` or ``..`` segment, no segment starting with ``.`` (backends keep
their temporary files there), no backslash, NUL or other control character,
and bounded in length. A store rooted at ``team-a/`` therefore cannot be made
to touch ``team-b/``.

The storage layer's own rules: :mod:`documee_remote.layout`, which names the
objects of a codebase, builds its keys on these. The two reserved names below
are here too because the S3 backends tag those objects for bucket lifecycle
rules (:func:`lifecycle_kind`), below any knowledge of what they hold.
"""

from __future__ import annotations

import unicodedata

from ..errors import InvalidKeyError

__all__ = [
    "JOURNAL_DIR",
    "LEASE_NAME",
    "LIFECYCLE_TAG_KEY",
    "MAX_KEY_BYTES",
    "MAX_SEGMENT_BYTES",
    "lifecycle_kind",
    "validate_key",
    "validate_prefix",
]

JOURNAL_DIR = "_journal"
LEASE_NAME = "_lease.json"

#: Object tag that bucket lifecycle rules use to expire stale deltas and
#: leases (S3 lifecycle filters match key prefixes, not the ``_journal/``
#: infix, so a tag is the only way to select them).
LIFECYCLE_TAG_KEY = "documee-remote-kind"

#: S3 allows 1,024 bytes for a whole key; leave room for a bucket prefix.
MAX_KEY_BYTES = 900
#: Most local filesystems cap a path component at 255 bytes.
MAX_SEGMENT_BYTES = 255


def _has_control(text: str) -> bool:
    if text.isascii() and text.isprintable():
        return False  # the common case, without a category lookup per character
    return any(unicodedata.category(ch) in ("Cc", "Cf", "Cs") for ch in text)


def validate_key(key: object) -> str:
    """Return ``key`` if it is a valid store key, else raise InvalidKeyError.

    Keys are relative to the store root and use ``/`` as separator.
    """
    if not isinstance(key, str):
        raise InvalidKeyError(f"key must be a string, not {type(key).__name__}")
    if not key:
        raise InvalidKeyError("key is empty")
    _check_text(key, what="key")
    if key.startswith("/"):
        raise InvalidKeyError(f"key {key!r} is absolute; keys are relative to the store root")
    if key.endswith("/"):
        raise InvalidKeyError(f"key {key!r} ends with '/'; that names a directory, not an object")
    for segment in key.split("/"):
        _check_segment(segment, key)
    return key


def validate_prefix(prefix: object) -> str:
    """Validate a listing prefix: ``""``, or a key-like string that may end with ``/``.

    A prefix may stop in the middle of a segment (``"f894"`` lists every codebase
    whose id starts so), as on S3.
    """
    if not isinstance(prefix, str):
        raise InvalidKeyError(f"prefix must be a string, not {type(prefix).__name__}")
    if prefix == "":
        return prefix
    validate_key(prefix[:-1] if prefix.endswith("/") else prefix)
    return prefix


def _check_text(text: str, *, what: str) -> None:
    if len(text.encode("utf-8", "surrogatepass")) > MAX_KEY_BYTES:
        raise InvalidKeyError(f"{what} is longer than {MAX_KEY_BYTES} bytes", key=None)
    if "\\" in text:
        raise InvalidKeyError(f"{what} {text!r} contains a backslash; use '/' as separator")
    if "\ufffe" in text or "\uffff" in text:
        raise InvalidKeyError(
            f"{what} {text!r} contains U+FFFE or U+FFFF, which S3's XML requests cannot carry"
        )
    if _has_control(text):
        raise InvalidKeyError(f"{what} {text!r} contains a control or unpaired surrogate character")


def _check_segment(segment: str, key: str) -> None:
    if segment == "":
        raise InvalidKeyError(f"key {key!r} has an empty segment ('//')")
    if segment in (".", ".."):
        raise InvalidKeyError(f"key {key!r} contains a {segment!r} segment")
    if segment.startswith("."):
        raise InvalidKeyError(
            f"key {key!r} has a segment starting with '.'; those names are reserved "
            "for the backends' temporary files"
        )
    if len(segment.encode("utf-8")) > MAX_SEGMENT_BYTES:
        raise InvalidKeyError(f"key {key!r} has a segment longer than {MAX_SEGMENT_BYTES} bytes")
    if ":" in segment and len(segment) >= 2 and segment[1] == ":" and segment[0].isalpha():
        raise InvalidKeyError(f"key {key!r} looks like a Windows drive path")


def lifecycle_kind(key: str) -> str | None:
    """``"delta"`` or ``"lease"`` for keys a bucket lifecycle rule may expire, else None."""
    parts = key.split("/")
    if len(parts) == 2 and parts[1] == LEASE_NAME:
        return "lease"
    if len(parts) == 3 and parts[1] == JOURNAL_DIR:
        return "delta"
    return None
