"""The benchmark harness end to end, tiny: every scenario, three contenders, 20 files.

Checks that ``python -m benchmarks.run`` produces results.json with every
expected row and sane numbers; the numbers themselves are not judged.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

pytest.importorskip("moto")
pytest.importorskip("boto3")

from benchmarks import run

CLIENTS = ["documee-remote", "sequential-port", "boto3-threads"]
EXPECTED = {
    ("save", "documee-remote", "save_analysis"),
    ("save", "sequential-port", "save_analysis"),
    ("save", "boto3-threads", "put_all"),
    ("load", "documee-remote", "load_analysis"),
    ("load", "sequential-port", "load_analysis"),
    ("load", "boto3-threads", "get+json.loads"),
    ("incremental", "documee-remote", "save_analysis"),
    ("incremental", "documee-remote", "merge_file_analyses"),
    ("incremental", "documee-remote", "append_file_analyses"),
    ("incremental", "sequential-port", "save_analysis"),
    ("incremental", "boto3-threads", "put_3"),
    ("concurrent", "documee-remote", "append_file_analyses x4"),
    ("concurrent", "sequential-port", "read-modify-write x4 (no CAS)"),
}


def test_tiny_run_writes_every_row(tmp_path: Path) -> None:
    code = run.main(
        [
            "--files",
            "20",
            "--latency",
            "0",
            "--clients",
            ",".join(CLIENTS),
            "--writers",
            "4",
            "--no-plot",
            "--timeout",
            "120",
            "--out",
            str(tmp_path),
        ]
    )
    assert code == 0
    data = json.loads((tmp_path / "results.json").read_text())
    rows = data["rows"]
    found = {(r["scenario"], r["client"], r["op"]) for r in rows}
    assert found == EXPECTED
    for row in rows:
        where = (row["scenario"], row["client"], row["op"])
        assert row["ok"], (where, row.get("error"))
        assert row["files"] == 20
        assert row["latency_ms"] == 0
        assert row["requests"] > 0, where
        assert row["mb"] > 0, where
        assert 0 < row["wall_s"] < 60, where
        assert row["cpu_s"] >= 0, where
        assert row["peak_mb"] >= 0, where
    by = {(r["scenario"], r["client"], r["op"]): r for r in rows}
    # Every contender's full save is one PUT per file plus analysis.json (documee-remote
    # may add a listing); a load is one GET (documee-remote also lists the journal, at the
    # same time, to fold merges that are still pending there).
    for client, op in (("sequential-port", "save_analysis"), ("boto3-threads", "put_all")):
        assert by["save", client, op]["methods"] == {"PUT": 21}
    assert by["save", "documee-remote", "save_analysis"]["methods"].get("PUT") == 21
    assert by["load", "documee-remote", "load_analysis"]["methods"] == {"GET": 2}
    # The deferred merge of 2 files: 2 per-file PUTs, a journal listing, the delta.
    assert by["incremental", "documee-remote", "append_file_analyses"]["methods"] == {
        "PUT": 3,
        "GET": 1,
    }
    merged = by["concurrent", "documee-remote", "append_file_analyses x4"]
    assert merged["lost_updates"] == 0
    assert merged["lost_graph_nodes"] == 0
    assert merged["lost_hashes"] == 0
    assert len(merged["writers"]) == 4
    # The port's read-modify-write without compare-and-swap is measured, not judged.
    assert by["concurrent", "sequential-port", "read-modify-write x4 (no CAS)"]["lost_updates"] >= 0
    assert data["meta"]["datasets"]["20"]["files"] == 20
    markdown = (tmp_path / "results.md").read_text()
    assert "| save | 20 | 0 | documee-remote | save_analysis |" in markdown
    assert "## Targets" in markdown
