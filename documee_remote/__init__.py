"""documee-remote: share Documee codebase analyses through object storage."""

from __future__ import annotations

from .stores import open_store

__all__ = ["open_store"]
__version__ = "0.1.0"
