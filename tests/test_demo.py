"""The demo (``make demo``), end to end as a process."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from documee_remote import PersistenceManager
from documee_remote.demo import _demo_codebase_id, _describe

REPO = Path(__file__).resolve().parents[1]


def demo(*args: str, timeout: float = 170) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DOCUMEE_")}
    return subprocess.run(
        [sys.executable, "-m", "documee_remote.demo", *args],
        capture_output=True,
        text=True,
        encoding="utf-8",
        env=env,
        timeout=timeout,
        check=False,
    )


@pytest.fixture
def small_tree(tmp_path: Path) -> Path:
    """A few Python files, so the demo's analysers finish in seconds."""
    root = tmp_path / "src"
    root.mkdir()
    for i in range(8):
        (root / f"mod{i}.py").write_text(
            f'"""Module {i}."""\n\n\ndef f{i}(x):\n    """Add {i}."""\n    return x + {i}\n'
        )
    return root


def assert_demo_passed(result: subprocess.CompletedProcess[str], shards: int) -> None:
    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout
    for k in range(1, shards + 1):
        assert f"[analyser {k}/{shards}]" in out
        assert f"[analyser {k}/{shards}] done:" in out
    assert "merged" in out
    for command in ("documee-remote ls", "documee-remote show", "documee-remote verify"):
        assert command in out
    assert ": ok (" in out  # verify's verdict
    assert "demo passed" in out


def test_demo_with_a_file_store(tmp_path: Path, small_tree: Path) -> None:
    store = tmp_path / "store"
    result = demo("--store", store.as_uri(), "--source", str(small_tree))
    assert_demo_passed(result, 4)
    pm = PersistenceManager(store.as_uri())
    analysis = pm.load_analysis(_demo_codebase_id())
    assert analysis is not None
    assert len(analysis.file_analyses) == 8
    assert pm.verify(_demo_codebase_id()).ok
    # A second run replaces the demo codebase and passes again.
    assert_demo_passed(demo("--store", store.as_uri(), "--source", str(small_tree)), 4)


def test_demo_with_the_embedded_s3_server(small_tree: Path) -> None:
    result = demo("--source", str(small_tree), "--shards", "3")
    assert_demo_passed(result, 3)
    assert "embedded moto S3 server at http://127.0.0.1:" in result.stdout
    assert "embedded S3 server stopped" in result.stdout


@pytest.mark.slow
def test_demo_as_make_demo_runs_it() -> None:
    """The real thing: no options, this repository's source, four analysers, moto."""
    result = demo(timeout=300)
    assert_demo_passed(result, 4)
    # The top teaching files are this repository's own modules, under the neutral root.
    shown = re.findall(r"/srv/code/documee-remote/(documee_remote/[\w/]+\.py)", result.stdout)
    assert shown, result.stdout
    assert all((REPO / path).is_file() for path in shown), shown


def test_demo_fails_when_an_analyser_fails(tmp_path: Path) -> None:
    result = demo("--store", (tmp_path / "s").as_uri(), "--source", str(tmp_path / "missing"))
    assert result.returncode == 1
    assert "demo FAILED" in result.stdout


def test_event_descriptions() -> None:
    assert _describe({"kind": "analysed"}) is None
    text, style = _describe({"kind": "conflict", "conflicts": 2, "attempts": 3}) or ("", "")
    assert "lost 2 compare-and-swap race(s)" in text
    assert "retried" in text
    assert style
    merged = _describe({"kind": "merged", "batch": 2, "merged": 6, "conflicts": 1})
    assert merged is not None
    assert "6 so far" in merged[0]
    assert "retried" in merged[0]
