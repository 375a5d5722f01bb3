"""Where :class:`~documee_remote.config.Settings` used to live; kept for imports that name it.

Settings was a pydantic-settings model, kept apart so that opening a store did
not import pydantic-settings. It is now validated by hand in :mod:`.config`,
costs nothing to import, and is read by every ``open_store`` call.
"""

from __future__ import annotations

from .config import Settings

__all__ = ["Settings"]
