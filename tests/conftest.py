"""Shared fixtures: the moto harness, and the Documee fixture directories."""

from __future__ import annotations

from pathlib import Path

import pytest

from documee_remote.testing.fixtures import *  # noqa: F403

#: Real results written by the original engine (CI has them beside the repo).
SHARED_FIXTURES = Path(__file__).resolve().parents[1].parent / "shared" / "fixtures" / "documee"
#: Small hand-made fixtures of each quirk, so a plain clone still tests them.
QUIRK_FIXTURES = Path(__file__).resolve().parent / "fixtures" / "quirks"


def codebase_dirs() -> list[Path]:
    """Every ``<codebase_id>`` directory of the shared and the hand-made fixtures."""
    roots = [p for p in (SHARED_FIXTURES, QUIRK_FIXTURES) if p.is_dir()]
    return sorted(
        cb for root in roots for cb in root.glob("*/*") if cb.is_dir() and any(cb.iterdir())
    )


def fixture_id(path: Path) -> str:
    return f"{path.parent.name}/{path.name}"


@pytest.fixture(params=codebase_dirs(), ids=fixture_id)
def codebase_dir(request: pytest.FixtureRequest) -> Path:
    """One fixture codebase directory (parametrised over all of them)."""
    path: Path = request.param
    return path
