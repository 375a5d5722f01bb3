"""Fan-out (issue 14): many writers, each with its own manager and client, into one codebase.

Threads released together by a barrier against the moto harness (per-key
serialised conditional writes, as S3), each merging one file with
``merge_file_analyses`` under the eager policy and the library's default
retries. Afterwards ``analysis.json`` read alone (a plain boto3 GET and
``json.loads``, as upstream reads it) must hold every file, and so must this
library's readers. The runner is :mod:`documee_remote.testing.fanout`, shared
with ``python -m benchmarks.fanout``.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from documee_remote.testing.fanout import FanoutResult, run_fanout
from documee_remote.testing.fixtures import S3Endpoint

#: Requests per one-file merge (all verbs, amortised over the writers) the 256-writer
#: fan-out must stay within. Measured 8.9-9.3 (the dense-seq journal: 19.9, and 82 of 256
#: merges gave up): 4 per writer (file, listing, delta, its first read of the folder
#: record), its read of the merged analysis, about 4 more reads of the record while it
#: waits, and the folder's share. The issue aims at 6; the record reads are what is left.
MAX_REQUESTS_PER_MERGE = 12.0
#: Added to every request in the 256-writer test: enough that requests overlap as on a
#: network, small enough that a contention-free protocol finishes in well under a minute.
FANOUT_LATENCY_MS = 5.0


def fan_out(s3_endpoint: S3Endpoint, writers: int) -> FanoutResult:
    backdoor = s3_endpoint.backdoor()
    return run_fanout(
        s3_endpoint.store,
        writers,
        api="merge",
        compaction="eager",
        counters=lambda: s3_endpoint.server.faults.requests,
        raw_get=backdoor.read,
        verify=True,
        timeout=600,
    )


def check_complete(result: FanoutResult, writers: int) -> None:
    """Nothing raised, nothing lost, and analysis.json alone holds every file."""
    summary = result.summary()  # every figure, whichever assertion fails
    assert result.failures == {}, summary
    assert result.acknowledged == writers, summary
    assert result.lost == 0, summary
    assert result.missing_from_analysis_json == (), summary
    assert result.files_in_analysis_json == writers, summary
    assert result.files_in_load == writers, summary
    assert result.missing_hashes == (), summary
    assert result.verify_ok is True, summary


def test_sixteen_writers_into_one_codebase_lose_nothing(s3_endpoint: S3Endpoint) -> None:
    result = fan_out(s3_endpoint, 16)
    check_complete(result, 16)
    assert len({o.path for o in result.outcomes}) == 16
    assert result.requests is not None
    assert result.requests > 0  # the counters really saw the merges


@pytest.mark.slow
def test_256_writers_all_succeed_at_a_flat_cost_per_merge(s3_endpoint: S3Endpoint) -> None:
    s3_endpoint.server.faults.latency_ms = FANOUT_LATENCY_MS
    result = fan_out(s3_endpoint, 256)
    check_complete(result, 256)
    per_merge = result.requests_per_merge
    assert per_merge is not None
    assert per_merge <= MAX_REQUESTS_PER_MERGE, result.summary()


def test_the_benchmark_runs_both_designs_and_writes_its_table(tmp_path: Path) -> None:
    """``python -m benchmarks.fanout`` end to end, tiny: 2 writers, HEAD as the baseline."""
    from benchmarks import fanout

    code = fanout.main(
        ["--writers", "2", "--latency-ms", "0", "--baseline-ref", "HEAD", "--out", str(tmp_path)]
    )
    assert code == 0
    data = json.loads((tmp_path / "fanout.json").read_text())
    rows = data["rows"]
    current = next(r for r in rows if r["design"].startswith("current"))
    assert Path(current["library"]).is_relative_to(fanout.REPO)
    if any("skipped" in note for note in data["notes"]):
        # No git or no history here (an sdist): only the baseline is skipped, and said so.
        assert len(rows) == 1, rows
    else:
        assert len(rows) == 2, rows
        baseline = next(r for r in rows if r["design"].startswith("baseline"))
        # The baseline child imported the exported copy, not this checkout.
        assert not Path(baseline["library"]).is_relative_to(fanout.REPO)
    for row in rows:
        assert "error" not in row, row
        assert row["failures"] == {}
        assert row["lost"] == 0
        assert row["requests_per_merge"] > 0
        assert row["bytes_per_merge"] > 0
    assert "| design | writers |" in (tmp_path / "fanout.md").read_text()
