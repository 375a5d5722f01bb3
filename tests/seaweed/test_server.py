"""What the contract does not cover on SeaweedFS: the merge race, probe, doctor, the demo."""

from __future__ import annotations

import functools
import os
import subprocess
import sys
from pathlib import Path

import pytest

from documee_remote import PersistenceManager
from documee_remote.demo import _demo_codebase_id
from documee_remote.doctor import run_checks
from documee_remote.journal import listing_start_after
from documee_remote.stores import open_store as open_any_store
from documee_remote.testing.seaweed import SeaweedServer

from ..test_merge import check_merge_race
from .conftest import OPENERS, SeaweedPrefix, open_store


def test_the_server_starts_quickly_on_loopback(seaweed: SeaweedServer) -> None:
    assert seaweed.endpoint_url.startswith("http://127.0.0.1:")
    assert seaweed.startup_seconds is not None
    assert seaweed.startup_seconds < 30
    print(f"\nSeaweedFS ready in {seaweed.startup_seconds:.2f} s")


def test_seaweedfs_answers_keys_before_a_start_after_ending_in_slash(sw: SeaweedPrefix) -> None:
    """Why Store.list_meta filters on the client (issue 12, defect 9)."""
    client = sw.server.client()
    keys = [
        f"{sw.prefix}cb/_journal/{n:020d}.{kind}" for n in (1, 2) for kind in ("folded", "json")
    ]
    for key in keys:
        client.put_object(Bucket=sw.server.bucket, Key=key, Body=b"{}")
    after = sw.prefix + listing_start_after("cb", 2)
    listed = client.list_objects_v2(
        Bucket=sw.server.bucket, Prefix=sw.prefix + "cb/_journal/", StartAfter=after
    )
    raw = [o["Key"] for o in listed.get("Contents", [])]
    client.close()
    if raw == keys[2:]:
        pytest.skip("this SeaweedFS honours StartAfter exactly; the client filter is moot")
    assert raw == keys  # the two keys of seq 1 come back although they sort before
    for backend in OPENERS:
        with open_store(sw, backend) as store:
            metas = store.list_meta("cb/_journal/", start_after=listing_start_after("cb", 2))
            assert [m.key for m in metas] == [k[len(sw.prefix) :] for k in keys[2:]], backend


@pytest.mark.parametrize("backend", sorted(OPENERS))
def test_probe_finds_every_condition_honoured(sw: SeaweedPrefix, backend: str) -> None:
    with open_store(sw, backend) as store:
        result = store.probe()
        assert result.ok, result.detail
        assert result.if_match_current
        assert list(store.list()) == []


def test_doctor_says_the_public_access_block_is_not_supported(sw: SeaweedPrefix) -> None:
    results = {r.name: r for r in run_checks(sw.url("doc/"), {"endpoint_url": sw.endpoint_url})}
    assert results["bucket reachable"].ok is True
    assert results["public access block"].ok is None
    assert "not supported by this server" in results["public access block"].detail
    assert results["conditional writes"].ok is True, results["conditional writes"].detail
    assert results["listing"].ok is True


@pytest.mark.slow
def test_eight_processes_merging_lose_nothing(sw: SeaweedPrefix) -> None:
    """The multi-process merge race of tests/test_merge_s3.py, on a real server.

    boto3 only: the contract's process race already runs each backend's
    compare-and-swap from eight processes, and this costs ~15 s a backend.
    """
    factory = functools.partial(
        open_any_store,
        sw.url("race/"),
        endpoint_url=sw.endpoint_url,
        region=sw.server.region,
    )
    check_merge_race(factory, factory(), workers=8, merges=25)


def test_the_demo_passes(sw: SeaweedPrefix, tmp_path: Path) -> None:
    """``python -m documee_remote.demo --store s3://...`` with DOCUMEE_S3_ENDPOINT_URL set."""
    source = tmp_path / "src"
    source.mkdir()
    for i in range(8):
        (source / f"mod{i}.py").write_text(
            f'"""Module {i}."""\n\n\ndef f{i}(x):\n    """Add {i}."""\n    return x + {i}\n'
        )
    url = sw.url("demo/")
    result = subprocess.run(
        [sys.executable, "-m", "documee_remote.demo", "--store", url, "--source", str(source)],
        capture_output=True,
        text=True,
        encoding="utf-8",
        env=os.environ.copy(),  # the server's keys and DOCUMEE_S3_ENDPOINT_URL (seaweed_env)
        timeout=170,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    print("\n" + result.stdout.strip().splitlines()[-1])
    assert "demo passed" in result.stdout
    assert ": ok (" in result.stdout  # verify's verdict
    pm = PersistenceManager(url, endpoint_url=sw.endpoint_url, region=sw.server.region)
    analysis = pm.load_analysis(_demo_codebase_id())
    assert analysis is not None
    assert len(analysis.file_analyses) == 8
    assert pm.verify(_demo_codebase_id()).ok
