"""Analysers that share their results: a reference analyser and the machinery around it.

An *analyser* is any function ``(file_path, content) -> FileAnalysis``: it gets
the path under which the result will be stored and the file's bytes, and
returns a Documee :class:`~documee_remote.models.FileAnalysis`.
:func:`analyse_codebase` walks a checkout, analyses the files whose content
changed since the last run (by the sha256 in ``file_hashes.json``), and merges
the results with :meth:`PersistenceManager.merge_file_analyses`, which is safe
beside any number of other analysers writing into the same codebase: other
processes, other shards, other machines.

Splitting the work needs no coordination: ``--shard K/N`` keeps the files
whose stored path hashes into shard K, so N machines given the same checkout
(and the same ``path_prefix``) analyse disjoint sets that together cover every
file, and each removes only its own shard's deleted files.

:func:`reference_analyser` is a small, dependency-free stand-in for Documee's
engine, built on :mod:`ast`. It reads Python only (other files are recorded
with their language and empty symbol information) and fills every field the
way upstream's engine does, so its records are interchangeable with real ones.

Modules: :mod:`.files` (languages, discovery, shards, stored paths),
:mod:`.reference` (the reference analyser) and :mod:`.runner` (loading
analysers, worker processes, merging results); every public name is here.
"""

from __future__ import annotations

from .files import (
    DEFAULT_EXCLUDE_DIRS,
    DEFAULT_INCLUDE,
    DEFAULT_MAX_FILE_SIZE,
    LANGUAGES,
    content_sha256,
    discover_files,
    in_shard,
    language_of,
    parse_shard,
    stored_path,
)
from .reference import (
    cyclomatic_complexity,
    reference_analyser,
)
from .runner import (
    Analyser,
    AnalyseReport,
    ProgressEvent,
    analyse_codebase,
    load_analyser,
)

__all__ = [
    "DEFAULT_EXCLUDE_DIRS",
    "DEFAULT_INCLUDE",
    "DEFAULT_MAX_FILE_SIZE",
    "LANGUAGES",
    "AnalyseReport",
    "Analyser",
    "ProgressEvent",
    "analyse_codebase",
    "content_sha256",
    "cyclomatic_complexity",
    "discover_files",
    "in_shard",
    "language_of",
    "load_analyser",
    "parse_shard",
    "reference_analyser",
    "stored_path",
]
