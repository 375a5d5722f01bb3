"""Modules imported on first use, for a fast cold start.

A service's first request pays for every import before it: a
``PersistenceManager`` that imported pydantic, the analysis models, the codec
and the commit engine at construction cost ~100 ms more than boto3 and an S3
client, though opening a store needs none of them. A module that uses such
modules only inside functions binds them to :func:`deferred` proxies (and
imports them for real under ``TYPE_CHECKING``, so the type checker sees the
modules themselves).
"""

from __future__ import annotations

import importlib
from types import ModuleType
from typing import Any

__all__ = ["deferred"]


class _Deferred:
    """Stands for a module; imports it at the first attribute read."""

    __slots__ = ("_module", "_name")

    def __init__(self, name: str) -> None:
        self._name = name
        self._module: ModuleType | None = None

    def __getattr__(self, attr: str) -> Any:
        module = self._module
        if module is None:
            # The import system's own locks make concurrent first uses safe:
            # every thread gets the one module object.
            module = self._module = importlib.import_module("." + self._name, __package__)
        return getattr(module, attr)

    def __repr__(self) -> str:
        state = "imported" if self._module is not None else "not yet imported"
        return f"<deferred module {__package__}.{self._name}, {state}>"


def deferred(name: str) -> Any:
    """A stand-in for ``documee_remote.<name>`` that imports it on first attribute access."""
    return _Deferred(name)
