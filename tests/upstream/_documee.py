"""Where Documee's real source is, and the skip for a clone without it."""

from __future__ import annotations

from pathlib import Path

import pytest

#: ``../shared`` beside the repository, as CI has it.
SHARED = Path(__file__).resolve().parents[2].parent / "shared"
#: Documee's unmodified source (``src/``, its ``tests/test_persistence.py``).
DOCUMEE_DIR = SHARED / "upstream" / "documee-MCP"
#: The plugin that makes documee-remote Documee's ``src.analysis.persistence``.
PLUGIN_DIR = Path(__file__).resolve().parent / "plugin"


def require_documee() -> None:
    """Skip the calling test module when Documee's source is not beside the repo.

    Only its absence skips: with the folder present, a missing dependency or a
    broken import fails, as it must in CI.
    """
    if not (DOCUMEE_DIR / "src" / "analysis" / "engine.py").is_file():
        pytest.skip(
            f"Documee's source is not at {DOCUMEE_DIR} (CI checks out ../shared beside the repo)",
            allow_module_level=True,
        )
