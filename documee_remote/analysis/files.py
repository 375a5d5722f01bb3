"""Which files an analyser is given: languages, discovery, shards and stored paths."""

from __future__ import annotations

import hashlib
import logging
import os
import stat
from collections.abc import Collection, Mapping, Sequence
from fnmatch import fnmatchcase
from pathlib import Path, PurePosixPath

from ..errors import ConfigurationError

# The name the module had before the analysis package: log filters keep working.
logger = logging.getLogger("documee_remote.analyser")

#: File extension -> Documee language name (upstream's names: ``c_sharp``, ``cpp``).
LANGUAGES: Mapping[str, str] = {
    ".py": "python",
    ".pyi": "python",
    ".js": "javascript",
    ".jsx": "javascript",
    ".mjs": "javascript",
    ".cjs": "javascript",
    ".ts": "typescript",
    ".tsx": "typescript",
    ".mts": "typescript",
    ".cts": "typescript",
    ".java": "java",
    ".go": "go",
    ".rs": "rust",
    ".rb": "ruby",
    ".php": "php",
    ".c": "c",
    ".h": "c",
    ".cc": "cpp",
    ".cpp": "cpp",
    ".cxx": "cpp",
    ".hpp": "cpp",
    ".hh": "cpp",
    ".cs": "c_sharp",
    ".md": "markdown",
}

#: File-name patterns :func:`discover_files` keeps by default: every extension of
#: :data:`LANGUAGES`.
DEFAULT_INCLUDE: tuple[str, ...] = tuple(f"*{ext}" for ext in LANGUAGES)

#: Directory names never descended into (hidden directories are skipped too).
DEFAULT_EXCLUDE_DIRS: frozenset[str] = frozenset(
    {
        ".git",
        ".hg",
        ".svn",
        ".venv",
        "venv",
        "node_modules",
        "__pycache__",
        "build",
        "dist",
        ".documee",
        ".tox",
        ".mypy_cache",
        ".pytest_cache",
        ".ruff_cache",
        "site-packages",
    }
)

#: Files larger than this many bytes are skipped (generated or vendored code).
DEFAULT_MAX_FILE_SIZE = 1 << 20


def language_of(file_path: str) -> str:
    """Documee's language name for a path, from its extension; ``"unknown"`` if unlisted."""
    suffix = PurePosixPath(file_path.replace("\\", "/")).suffix.lower()
    return LANGUAGES.get(suffix, "unknown")


def content_sha256(content: bytes) -> str:
    """The hash recorded in ``file_hashes.json``: sha256 hex of the file's raw bytes."""
    return hashlib.sha256(content).hexdigest()


# Finding, sharding and naming files
# =========================================================================================


def discover_files(
    root: Path,
    *,
    include: Sequence[str] = DEFAULT_INCLUDE,
    exclude_dirs: Collection[str] = DEFAULT_EXCLUDE_DIRS,
    max_file_size: int | None = DEFAULT_MAX_FILE_SIZE,
) -> list[Path]:
    """The source files under ``root``, sorted by their path relative to it.

    A file is kept when its name matches one of ``include`` (``fnmatch``
    patterns, case-sensitive), it is a regular file of at most
    ``max_file_size`` bytes (``None``: no limit), and no directory on its way
    is named in ``exclude_dirs`` or hidden (starts with ``.``). Hidden files
    are skipped too. Symlinked files are kept only when they resolve to a file
    inside ``root``; symlinked directories are never descended into (they
    would either leave the root or list files twice, and may loop).

    Returned paths are ``root / relative path``, with ``root`` made absolute
    (``..`` removed, symlinks in ``root`` itself kept as given).
    """
    base = Path(os.path.abspath(root))
    if not base.is_dir():
        raise ConfigurationError(f"{root} is not a directory")
    real_base = base.resolve()
    found: list[tuple[str, Path]] = []
    for dirpath, dirnames, filenames in os.walk(base, followlinks=False):
        here = Path(dirpath)
        # Pruning dirnames in place stops os.walk descending.
        dirnames[:] = [
            d
            for d in dirnames
            if d not in exclude_dirs and not d.startswith(".") and not (here / d).is_symlink()
        ]
        for name in filenames:
            if name.startswith(".") or not any(fnmatchcase(name, pat) for pat in include):
                continue
            path = here / name
            try:
                if path.is_symlink():
                    target = path.resolve(strict=True)
                    if not target.is_relative_to(real_base):
                        continue
                info = path.stat()
            except (OSError, RuntimeError):  # dangling link, loop, vanished file
                continue
            if not stat.S_ISREG(info.st_mode):
                continue
            if max_file_size is not None and info.st_size > max_file_size:
                logger.debug("skipping %s: %d bytes", path, info.st_size)
                continue
            found.append((path.relative_to(base).as_posix(), path))
    found.sort(key=lambda item: item[0])
    return [path for _, path in found]


def parse_shard(text: str) -> tuple[int, int]:
    """Parse ``"K/N"``: shard K of N, **1-based** (``1 <= K <= N``).

    1-based like ``--shard 1/4`` ... ``--shard 4/4`` read naturally; an AWS
    Batch array job passes ``$((AWS_BATCH_JOB_ARRAY_INDEX + 1))/N`` (the
    array index is 0-based). ``0/N`` is refused, never silently shifted.

    Raises
    ------
    ConfigurationError
        Not of the form ``K/N`` with integers, or K outside ``1..N``.
    """
    k_text, sep, n_text = text.strip().partition("/")
    try:
        if not sep:
            raise ValueError
        k, n = int(k_text), int(n_text)
    except ValueError:
        raise ConfigurationError(
            f"invalid shard {text!r}: expected K/N, e.g. 1/4 (shards are numbered from 1)"
        ) from None
    if n < 1:
        raise ConfigurationError(f"invalid shard {text!r}: N must be at least 1")
    if not 1 <= k <= n:
        hint = " (shards are numbered from 1: use K+1 for a 0-based index)" if k == 0 else ""
        raise ConfigurationError(f"invalid shard {text!r}: K must be between 1 and {n}{hint}")
    return k, n


def in_shard(file_path: str, k: int, n: int) -> bool:
    """Whether the stored path ``file_path`` belongs to shard ``k`` of ``n`` (1-based).

    The shard is ``sha256(file_path as UTF-8) mod n``: every machine agrees on
    it without coordination, as long as they store the same paths (see
    :func:`stored_path` and its ``path_prefix``), and it does not change when
    other files are added or removed.
    """
    if not 1 <= k <= n:
        raise ValueError(f"shard {k}/{n}: K must be between 1 and N")
    digest = hashlib.sha256(file_path.encode("utf-8", "surrogatepass")).digest()
    return int.from_bytes(digest[:8], "big") % n == k - 1


def stored_path(path: Path, root: Path, path_prefix: str | None = None) -> str:
    """The path under which a file's analysis is stored, with ``/`` as separator.

    Upstream stores absolute paths, which differ between machines whose
    checkouts live in different directories. With ``path_prefix`` (e.g.
    ``"/srv/code/myrepo"``) ``root`` is replaced by it, so every machine
    writes (and shards, and skips) the same keys; without it the absolute
    path is stored, as upstream does.

    Raises
    ------
    ValueError
        ``path`` is not under ``root``, or ``path_prefix`` is empty.
    """
    base = Path(os.path.abspath(root))
    full = Path(os.path.abspath(base / path))
    try:
        rel = full.relative_to(base)
    except ValueError:
        raise ValueError(f"{path} is not under {root}") from None
    if path_prefix is None:
        return full.as_posix()
    prefix = path_prefix.replace("\\", "/").rstrip("/")
    if not prefix and not path_prefix.startswith("/"):
        raise ValueError("path_prefix must not be empty")
    rel_text = rel.as_posix()
    return prefix + "/" + rel_text if rel_text != "." else prefix or "/"


# =========================================================================================
# Analysing a codebase
