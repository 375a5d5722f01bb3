"""Documee's own tests/test_persistence.py, unmodified, against documee-remote.

They run in a separate pytest process straight from ``../shared`` (nothing of
upstream is copied here), with ``src.analysis.persistence`` swapped for the
one line a Documee user writes, ``from documee_remote import PersistenceManager``
(see ``plugin/documee_remote_swap.py``).
"""

from __future__ import annotations

import os
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

from tests.upstream._documee import DOCUMEE_DIR, PLUGIN_DIR, require_documee

require_documee()

UPSTREAM_TESTS = DOCUMEE_DIR / "tests" / "test_persistence.py"
#: Upstream's suite has 19 tests; all pass against its original class.
UPSTREAM_COUNT = 19


def test_upstream_persistence_suite_passes_19_of_19(tmp_path: Path) -> None:
    ini = tmp_path / "pytest.ini"
    ini.write_text("[pytest]\n")  # not this repo's settings: upstream's tests as they are
    junit = tmp_path / "junit.xml"
    env = {
        **os.environ,
        "DOCUMEE_MCP_DIR": str(DOCUMEE_DIR),
        "PYTHONPATH": str(PLUGIN_DIR),
        # Nothing may be written into ../shared (no bytecode, no pytest cache).
        "PYTHONDONTWRITEBYTECODE": "1",
    }
    env.pop("DOCUMEE_STORE_URL", None)
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-p",
            "documee_remote_swap",
            "-p",
            "no:cacheprovider",
            "-c",
            str(ini),
            "--rootdir",
            str(tmp_path),
            f"--junitxml={junit}",
            str(UPSTREAM_TESTS),
        ],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    out = proc.stdout + proc.stderr
    # The swap really happened: upstream's tests got documee-remote's class.
    assert (
        "src.analysis.persistence.PersistenceManager is "
        "documee_remote.manager.PersistenceManager" in out
    ), out
    suite = ET.parse(junit).getroot()
    suite = suite if suite.tag == "testsuite" else suite.find("testsuite")
    assert suite is not None, out
    counts = {k: int(suite.get(k, "0")) for k in ("tests", "failures", "errors", "skipped")}
    assert counts == {"tests": UPSTREAM_COUNT, "failures": 0, "errors": 0, "skipped": 0}, out
    assert proc.returncode == 0, out
