"""Make documee-remote Documee's persistence, as the one-line change in a checkout does.

A Documee user replaces the body of ``src/analysis/persistence.py`` with::

    from documee_remote import PersistenceManager

This module does the same without touching the checkout: it registers a module
``src.analysis.persistence`` made of exactly that line before anything of
Documee is imported, so Documee's engine (``from .persistence import
PersistenceManager``) and its tests (``from src.analysis.persistence import
PersistenceManager``) get documee-remote's class.

It is also a pytest plugin (``-p documee_remote_swap`` with this directory on
``PYTHONPATH`` and ``DOCUMEE_MCP_DIR`` naming the checkout), which is how
upstream's own ``tests/test_persistence.py`` runs unmodified against it.
"""

from __future__ import annotations

import os
import sys
import types

#: The whole of the user's new ``src/analysis/persistence.py``.
ONE_LINE = "from documee_remote import PersistenceManager\n"
MODULE = "src.analysis.persistence"


def swap(documee_dir: str) -> types.ModuleType:
    """Put ``documee_dir`` on ``sys.path`` and register the one-line persistence module.

    Must run before ``src.analysis`` is imported (its ``__init__`` imports the
    engine, which binds ``PersistenceManager`` once).
    """
    if "src.analysis.engine" in sys.modules and MODULE not in sys.modules:
        raise RuntimeError("Documee's engine was imported before the swap")
    if documee_dir not in sys.path:
        sys.path.insert(0, documee_dir)
    existing = sys.modules.get(MODULE)
    if existing is not None and getattr(existing, "__documee_remote_swap__", False):
        return existing
    module = types.ModuleType(MODULE)
    module.__file__ = os.path.join(documee_dir, "src", "analysis", "persistence.py")
    module.__documee_remote_swap__ = True  # type: ignore[attr-defined]
    exec(compile(ONE_LINE, module.__file__, "exec"), module.__dict__)
    sys.modules[MODULE] = module
    return module


# As a pytest plugin: swap at import, before any test module is collected.
if os.environ.get("DOCUMEE_MCP_DIR") and __name__ == "documee_remote_swap":
    swap(os.environ["DOCUMEE_MCP_DIR"])


def pytest_report_header() -> str:
    """Say in pytest's header whose PersistenceManager Documee's tests get."""
    cls = sys.modules[MODULE].PersistenceManager
    return f"documee-remote swap: {MODULE}.PersistenceManager is {cls.__module__}.{cls.__name__}"
