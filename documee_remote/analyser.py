"""Alias of :mod:`documee_remote.analysis`, under the name the package had before.

Kept because users name it: ``--analyser documee_remote.analyser:reference_analyser``
(the CLI's and :func:`~documee_remote.analysis.load_analyser`'s examples), the Lambda's
``DOCUMEE_ANALYSER`` default and ``from documee_remote.analyser import ...`` in user code.
"""

from __future__ import annotations

from .analysis.files import (
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
from .analysis.reference import (
    cyclomatic_complexity,
    reference_analyser,
)
from .analysis.runner import (
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
