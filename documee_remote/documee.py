"""The way in for Documee: its ``src/analysis/persistence.py`` becomes one line.

::

    from documee_remote.documee import PersistenceManager

Documee's MCP server builds its engine with ``AnalysisConfig()``, so the engine
always asks for upstream's default ``PersistenceManager(".documee/analysis")``:
``persistence_path`` in Documee's ``config.yaml`` is never read by the server
(only ``AnalysisConfig.from_dict`` reads it). This class therefore treats that
default as "not configured": ``DOCUMEE_STORE_URL`` (and the other
``DOCUMEE_*`` settings) decide, and without it the store is upstream's local
``.documee/analysis``, as before. Any other path or URL, from a config that is
read or from code, is used as given. Everything else is
:class:`documee_remote.PersistenceManager`.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

from .manager import DEFAULT_LOCAL_ROOT
from .manager import PersistenceManager as _PersistenceManager
from .stores import Store

if TYPE_CHECKING:
    from .models import CodebaseAnalysis

__all__ = ["PersistenceManager"]


class PersistenceManager(_PersistenceManager):
    """documee-remote's manager, where Documee's default path defers to ``DOCUMEE_STORE_URL``."""

    def __init__(
        self,
        base_path: Store | str | os.PathLike[str] | None = DEFAULT_LOCAL_ROOT,
        **options: Any,
    ) -> None:
        if not isinstance(base_path, Store) and (
            base_path is None or os.fspath(base_path) == DEFAULT_LOCAL_ROOT
        ):
            base_path = None  # the environment decides; upstream's directory otherwise
        super().__init__(base_path, **options)

    def load_analysis(self, codebase_id: str, *, copy: bool = True) -> CodebaseAnalysis | None:
        """As documee-remote's, but private by default even with the read cache on.

        Documee's engine puts the file analyses it loads into the new analysis it
        builds and goes on working on that tree; it is not written to expect
        read-only objects, so it gets its own copy (no body moves on a cache
        hit; the parse is the cost).
        """
        return super().load_analysis(codebase_id, copy=copy)
