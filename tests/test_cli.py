"""The documee-remote command line: through click's runner and as a real process."""

from __future__ import annotations

import io
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

from documee_remote import codec, errors
from documee_remote.cli import cli, exit_code_for
from documee_remote.journal import CompactionPolicy
from documee_remote.manager import PersistenceManager
from documee_remote.merge import new_analysis
from documee_remote.stores import LocalStore
from documee_remote.testing.factories import make_file_analysis
from documee_remote.testing.fixtures import S3Endpoint
from documee_remote.testing.moto_server import ACCESS_DENIED, SLOW_DOWN
from documee_remote.transfer import migrate

from .conftest import QUIRK_FIXTURES, SHARED_FIXTURES

REQUESTS_INCREMENTAL = SHARED_FIXTURES / "requests-incremental"
ANSI = re.compile(r"\x1b\[")
MARKUP = re.compile(r"\[/?(bold|red|green|yellow|dim|cyan)[^\]]*\]")


def codebase_of(folder: str) -> str:
    (codebase,) = [p.name for p in (QUIRK_FIXTURES / folder).iterdir() if p.is_dir()]
    return codebase


FLOATS = codebase_of("floats")
STALE = codebase_of("incremental-stale")
EMPTY = codebase_of("empty-analysis")
NAN = codebase_of("nan-infinity")
WINDOWS = codebase_of("windows-paths")


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """No DOCUMEE_* setting of the developer's shell leaks into a test."""
    for name in list(os.environ):
        if name.startswith("DOCUMEE_"):
            monkeypatch.delenv(name)


@pytest.fixture
def store_url(tmp_path: Path) -> str:
    """A local store holding every quirk fixture, migrated byte for byte."""
    root = tmp_path / "store"
    with LocalStore(root) as store:
        for folder in sorted(QUIRK_FIXTURES.iterdir()):
            if folder.is_dir():
                migrate(folder, store)
    return root.as_uri()


def run(*args: str, env: dict[str, str] | None = None) -> Result:
    return CliRunner().invoke(cli, list(args), env=env, catch_exceptions=False)


def run_json(*args: str, code: int = 0) -> Any:
    result = run(*args, "--json")
    assert result.exit_code == code, result.output
    return json.loads(result.stdout)


def assert_plain(result: Result) -> None:
    """Off a terminal: no colour codes and no unrendered rich markup."""
    for text in (result.stdout, result.stderr):
        assert not ANSI.search(text), text
        assert not MARKUP.search(text), text


# -- options, store URL and errors -----------------------------------------------------------------


def test_help_documents_every_command_and_the_exit_codes() -> None:
    result = run("--help")
    assert result.exit_code == 0
    for command in ("ls", "show", "push", "pull", "sync", "migrate", "verify", "gc", "compact"):
        assert command in result.stdout
    assert "8  configuration" in result.stdout
    for command in ("push", "analyze", "doctor"):
        sub = run(command, "--help")
        assert sub.exit_code == 0
        assert "--store URL" in sub.stdout
        assert "Exit codes" in sub.stdout


def test_store_option_works_before_and_after_the_command(store_url: str) -> None:
    before = run("--store", store_url, "ls", "--json")
    after = run("ls", "--store", store_url, "--json")
    assert before.exit_code == after.exit_code == 0
    assert json.loads(before.stdout) == json.loads(after.stdout)
    assert json.loads(before.stdout)["store"].startswith("file://")


def test_store_url_from_the_environment(store_url: str) -> None:
    result = run("ls", "--json", env={"DOCUMEE_STORE_URL": store_url})
    assert result.exit_code == 0
    assert FLOATS in {c["codebase_id"] for c in json.loads(result.stdout)["codebases"]}


def test_command_option_overrides_the_group_option(store_url: str, tmp_path: Path) -> None:
    empty = (tmp_path / "empty").as_uri()
    data = json.loads(run("--store", empty, "ls", "--store", store_url, "--json").stdout)
    assert data["store"] == store_url


def test_no_store_is_a_configuration_error_with_a_hint() -> None:
    result = run("ls")
    assert result.exit_code == 8
    assert result.stderr.startswith("error: no store given")
    assert "DOCUMEE_STORE_URL" in result.stderr
    assert result.stdout == ""


def test_bad_urls_exit_8_without_echoing_credentials(aws_credentials: None) -> None:
    result = run("ls", "--store", "s3://AKIAEXAMPLE:hunter2secret@bucket/x")
    assert result.exit_code == 8
    assert "hunter2secret" not in result.output
    assert "error:" in result.stderr
    assert run("ls", "--store", "file://remotehost/x").exit_code == 8


def test_bad_environment_exits_8() -> None:
    result = run("ls", env={"DOCUMEE_STORE_URL": "memory://", "DOCUMEE_CONCURRENCY": "zero"})
    assert result.exit_code == 8
    assert "DOCUMEE_CONCURRENCY" in result.stderr


def test_json_errors_are_one_document_on_stdout(store_url: str) -> None:
    result = run("show", "nope", "--store", store_url, "--json")
    assert result.exit_code == 3
    doc = json.loads(result.stdout)
    assert doc["ok"] is False
    assert doc["error"]["exit_code"] == 3
    assert "error:" in result.stderr


@pytest.mark.parametrize(
    ("error", "code"),
    [
        (errors.InvalidKeyError("x"), 2),
        (errors.NotFoundError("x"), 3),
        (errors.PermissionDeniedError("x"), 4),
        (errors.ReadOnlyError("x"), 4),
        (errors.TooManyConflictsError("x", attempts=3), 5),
        (errors.PreconditionFailedError("x"), 5),
        # S3's 409 is retryable: transient, as the Lambda handler answers it (503).
        (errors.ConditionalRequestConflictError("x"), 7),
        (errors.CorruptObjectError("x"), 6),
        (errors.ThrottledError("x"), 7),
        (errors.StorageTimeoutError("x"), 7),
        (errors.ConfigurationError("x"), 8),
        (errors.MissingDependencyError("x"), 8),
        (errors.StorageFullError("x"), 9),
        (errors.UnsupportedOperationError("x"), 9),
        (RuntimeError("x"), 9),
        (ValueError("x"), 9),
        (PermissionError("x"), 4),
        (FileNotFoundError("x"), 3),
        (ImportError("x"), 8),
    ],
)
def test_exit_codes_map_the_error_tree(error: BaseException, code: int) -> None:
    assert exit_code_for(error) == code


def test_tracebacks_only_with_debug(store_url: str) -> None:
    quiet = run("show", EMPTY, "--store", store_url)
    assert quiet.exit_code == 6
    assert "Traceback" not in quiet.stderr
    loud = run("show", EMPTY, "--store", store_url, "--debug")
    assert loud.exit_code == 6
    assert "Traceback" in loud.stderr


# -- ls and show -----------------------------------------------------------------------------------


def test_ls_lists_every_codebase_and_flags_empty_analyses(store_url: str) -> None:
    data = run_json("ls", "--store", store_url)
    rows = {c["codebase_id"]: c for c in data["codebases"]}
    assert set(rows) == {codebase_of(p.name) for p in QUIRK_FIXTURES.iterdir() if p.is_dir()}
    assert rows[STALE]["files"] == 4  # per-file objects, counted from the listing
    assert rows[STALE]["objects"] == 6
    stale_dir = QUIRK_FIXTURES / "incremental-stale" / STALE
    assert rows[STALE]["size"] == sum(p.stat().st_size for p in stale_dir.iterdir())
    assert rows[STALE]["status"] == "ok"
    assert rows[EMPTY]["status"] == "empty analysis.json"
    assert rows[EMPTY]["analysis_size"] == 0
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", rows[FLOATS]["last_modified"])


def test_ls_deep_reads_the_analyses(store_url: str) -> None:
    rows = {
        c["codebase_id"]: c for c in run_json("ls", "--deep", "--store", store_url)["codebases"]
    }
    assert rows[STALE]["total_files"] == 1
    assert rows[FLOATS]["total_files"] == 2


def test_ls_table_is_plain_text_off_a_terminal(store_url: str) -> None:
    result = run("ls", "--store", store_url)
    assert result.exit_code == 0
    assert STALE in result.stdout
    assert "empty analysis.json" in result.stdout
    assert_plain(result)


def test_ls_of_an_empty_store(tmp_path: Path) -> None:
    # An empty directory is an empty store; a missing one is an error (issue 12, item 10).
    (tmp_path / "empty").mkdir()
    assert run_json("ls", "--store", (tmp_path / "empty").as_uri())["codebases"] == []


def test_show_summarises_a_codebase(store_url: str) -> None:
    data = run_json("show", FLOATS, "--store", store_url)
    assert data["metrics"]["total_files"] == 2
    assert data["counts"]["files_in_analysis"] == 2
    assert data["counts"]["per_file_objects"] == 2
    assert data["top_teaching_files"]
    assert all(set(t) == {"file_path", "score"} for t in data["top_teaching_files"])
    human = run("show", FLOATS, "--store", store_url)
    assert human.exit_code == 0
    assert "total_files" in human.stdout
    assert "teaching files" in human.stdout
    assert_plain(human)


def test_show_file_reads_the_per_file_object(store_url: str) -> None:
    pm = PersistenceManager(store_url)
    analysis = pm.load_analysis(FLOATS)
    assert analysis is not None
    path = next(iter(analysis.file_analyses))
    data = run_json("show", FLOATS, "--file", path, "--store", store_url)
    assert data["source"] == "per-file object"
    assert data["analysis"]["file_path"] == path
    human = run("show", FLOATS, "--file", path, "--store", store_url)
    assert human.exit_code == 0
    assert "teaching value" in human.stdout


def test_show_file_falls_back_on_the_embedded_entry(store_url: str) -> None:
    pm = PersistenceManager(store_url)
    analysis = pm.load_analysis(WINDOWS)
    assert analysis is not None
    path = next(iter(analysis.file_analyses))
    pm.store.delete(
        f"{WINDOWS}/{__import__('documee_remote.layout').layout.file_analysis_name(path)}"
    )
    data = run_json("show", WINDOWS, "--file", path, "--store", store_url)
    assert data["source"] == "analysis.json"
    assert data["analysis"]["file_path"] == path


def test_show_json_is_standard_json_even_with_nan(store_url: str) -> None:
    pm = PersistenceManager(store_url)
    analysis = pm.load_analysis(NAN)
    assert analysis is not None
    path = next(iter(analysis.file_analyses))
    result = run("show", NAN, "--file", path, "--store", store_url, "--json")
    assert result.exit_code == 0

    def refuse(token: str) -> None:
        raise AssertionError(f"non-standard JSON token {token}")

    data = json.loads(result.stdout, parse_constant=refuse)
    assert "NaN" in json.dumps(data) or "Infinity" in json.dumps(data)


@pytest.mark.parametrize(
    ("args", "code"),
    [
        (["show", "no-such-codebase"], 3),
        (["show", FLOATS, "--file", "/no/such/file.py"], 3),
        (["show", "../escape"], 2),
        (["show", "bad id"], 2),
        (["show", EMPTY], 6),
        (["verify", "no-such-codebase"], 3),
        (["gc", "no-such-codebase"], 3),
        (["push", "/no/such/dir"], 3),
        (["show"], 2),
        (["ls", "--backend", "ftp"], 2),
    ],
)
def test_exit_codes(store_url: str, args: list[str], code: int) -> None:
    result = run(*args, "--store", store_url)
    assert result.exit_code == code, result.output
    if code != 2:
        assert result.stderr.startswith("error: ")
    assert "Traceback" not in result.output


# -- transfers -------------------------------------------------------------------------------------


def test_migrate_pull_round_trip_is_byte_exact(tmp_path: Path) -> None:
    source = QUIRK_FIXTURES / "non-ascii"
    url = (tmp_path / "store").as_uri()
    data = run_json("migrate", str(source), "--store", url)
    expected = {p.name: p.read_bytes() for p in (source / codebase_of("non-ascii")).iterdir()}
    assert data["ok"] is True
    assert data["verified"] == len(expected)
    out = tmp_path / "out"
    pulled = run_json("pull", str(out), "--store", url)
    assert pulled["copied"] == len(expected)
    got = {p.name: p.read_bytes() for p in (out / codebase_of("non-ascii")).iterdir()}
    assert got == expected


def test_push_dry_run_then_push_then_nothing_left(tmp_path: Path) -> None:
    local = tmp_path / "local"
    shutil.copytree(QUIRK_FIXTURES / "floats", local)
    url = (tmp_path / "store").as_uri()
    plan = run_json("push", str(local), "--dry-run", "--store", url)
    assert plan["dry_run"] is True
    assert plan["copied"] == 4
    assert not (tmp_path / "store").exists()
    assert run_json("push", str(local), "--store", url)["copied"] == 4
    again = run_json("push", str(local), "--store", url)
    assert again["copied"] == 0
    assert again["skipped_same"] == 4
    human = run("push", str(local), "--store", url)
    assert "0 object(s)" in human.stdout
    assert_plain(human)


def test_push_codebase_selection(tmp_path: Path) -> None:
    local = tmp_path / "local"
    for folder in ("floats", "timestamps"):
        shutil.copytree(QUIRK_FIXTURES / folder, local, dirs_exist_ok=True)
    url = (tmp_path / "store").as_uri()
    data = run_json("push", str(local), "--codebase", FLOATS, "--store", url)
    assert list(data["codebases"]) == [FLOATS]
    assert run("push", str(local), "--codebase", "missing", "--store", url).exit_code == 3


def test_sync_conflict_exits_5_and_prefer_settles_it(tmp_path: Path) -> None:
    local = tmp_path / "local"
    shutil.copytree(QUIRK_FIXTURES / "floats", local)
    url = (tmp_path / "store").as_uri()
    assert run_json("sync", str(local), "--store", url)["codebases"] == {FLOATS: "push"}
    (local / FLOATS / "file_hashes.json").write_bytes(b'{"a": "1"}')
    LocalStore(tmp_path / "store").put(f"{FLOATS}/file_hashes.json", b'{"b": "2"}')
    conflict = run("sync", str(local), "--store", url)
    assert conflict.exit_code == 5
    assert "conflict" in conflict.stdout
    assert "--prefer" in conflict.stdout
    settled = run_json("sync", str(local), "--prefer", "local", "--store", url)
    assert settled["codebases"] == {FLOATS: "push"}
    assert (tmp_path / "store" / FLOATS / "file_hashes.json").read_bytes() == b'{"a": "1"}'


def test_migrate_refuses_different_remote_data_with_exit_5(tmp_path: Path) -> None:
    url = (tmp_path / "store").as_uri()
    LocalStore(tmp_path / "store").put(f"{FLOATS}/analysis.json", b"{}")
    refused = run("migrate", str(QUIRK_FIXTURES / "floats"), "--store", url)
    assert refused.exit_code == 5
    assert "--force" in refused.stdout
    assert (tmp_path / "store" / FLOATS / "analysis.json").read_bytes() == b"{}"
    forced = run_json("migrate", str(QUIRK_FIXTURES / "floats"), "--force", "--store", url)
    assert forced["verified"] == 4


def test_writes_with_read_only_exit_4(tmp_path: Path) -> None:
    url = (tmp_path / "store").as_uri()
    result = run("push", str(QUIRK_FIXTURES / "floats"), "--read-only", "--store", url)
    assert result.exit_code == 4
    assert "read-only" in result.stderr


# -- verify, gc, compact ---------------------------------------------------------------------------


def test_verify_reports_the_stale_directory_and_repair_fixes_it(store_url: str) -> None:
    result = run("verify", STALE, "--store", store_url, "--json")
    assert result.exit_code == 1
    (report,) = json.loads(result.stdout)["codebases"]
    kinds = {f["kind"] for f in report["findings"]}
    assert {"per_file_orphan", "hash_without_entry"} <= kinds
    human = run("verify", STALE, "--store", store_url)
    assert human.exit_code == 1
    assert "PROBLEMS" in human.stdout
    assert_plain(human)
    repaired = run("verify", STALE, "--repair", "--grace-seconds", "0", "--store", store_url)
    assert repaired.exit_code == 0, repaired.output
    assert run("verify", STALE, "--store", store_url).exit_code == 0


def test_verify_every_codebase_reports_the_empty_analysis(store_url: str) -> None:
    data = run_json("verify", "--store", store_url, code=1)
    reports = {r["codebase_id"]: r for r in data["codebases"]}
    assert reports[FLOATS]["ok"] is True
    assert reports[EMPTY]["ok"] is False
    assert {f["kind"] for f in reports[EMPTY]["findings"]} == {"analysis_unreadable"}


@pytest.mark.skipif(not REQUESTS_INCREMENTAL.is_dir(), reason="shared fixtures absent")
def test_verify_diagnoses_the_real_requests_incremental(tmp_path: Path) -> None:
    url = (tmp_path / "store").as_uri()
    assert run("migrate", str(REQUESTS_INCREMENTAL), "--store", url).exit_code == 0
    data = run_json("verify", "--store", url, code=1)
    (report,) = data["codebases"]
    orphans = [f for f in report["findings"] if f["kind"] == "per_file_orphan"]
    claims = [f for f in report["findings"] if f["kind"] == "hash_without_entry"]
    assert len(orphans) == 32
    assert len(claims) == 32
    fixed = run_json("verify", "--repair", "--grace-seconds", "0", "--store", url)
    assert fixed["ok"] is True
    assert run("verify", "--store", url).exit_code == 0
    listing = run_json("ls", "--store", url)["codebases"]
    assert listing[0]["files"] == 2


def test_gc_removes_orphans_older_than_the_grace_period(store_url: str) -> None:
    young = run_json("gc", STALE, "--store", store_url)
    (report,) = young["codebases"]
    assert report["removed"] == []
    assert len(report["kept_young"]) == 3
    dry = run_json("gc", STALE, "--grace-seconds", "0", "--dry-run", "--store", store_url)
    assert len(dry["codebases"][0]["removed"]) == 3
    done = run_json("gc", STALE, "--grace-seconds", "0", "--store", store_url)
    assert len(done["codebases"][0]["removed"]) == 3
    listing = {c["codebase_id"]: c for c in run_json("ls", "--store", store_url)["codebases"]}
    assert listing[STALE]["files"] == 1


def test_gc_of_every_codebase_skips_unreadable_ones_with_exit_6(store_url: str) -> None:
    result = run("gc", "--store", store_url, "--json")
    assert result.exit_code == 6
    data = json.loads(result.stdout)
    assert [e["codebase_id"] for e in data["errors"]] == [EMPTY]
    assert FLOATS in {c["codebase_id"] for c in data["codebases"]}


def test_compact_folds_a_deferred_journal_and_reports_it(store_url: str) -> None:
    with PersistenceManager(store_url, compaction="deferred") as pm:
        before = pm.store.get(f"{FLOATS}/analysis.json").data
        for n in range(3):
            path = f"/new{n}.py"
            pm.append_file_analyses(FLOATS, {path: make_file_analysis(path)}, {path: "d" * 64})
        assert pm.store.get(f"{FLOATS}/analysis.json").data == before
    data = run_json("compact", FLOATS, "--store", store_url)
    assert data["ok"] is True
    [report] = data["codebases"]
    assert report["codebase_id"] == FLOATS
    # Named deltas: the legacy watermark stays 0, the first commit that folds them is 1.
    assert (report["folded"], report["watermark"], report["commit"]) == (3, 0, 1)
    assert report["analysis_written"] is True
    with PersistenceManager(store_url) as pm:
        stored = codec.load_codebase_analysis(pm.store.get(f"{FLOATS}/analysis.json").data)
        assert {"/new0.py", "/new1.py", "/new2.py"} <= set(stored.file_analyses)
    # Nothing pending: a second run writes nothing; every codebase is compacted without ID.
    again = run_json("compact", FLOATS, "--store", store_url)["codebases"][0]
    assert (again["folded"], again["analysis_written"], again["commit"]) == (0, False, 1)
    human = run("compact", "--store", store_url)
    assert human.exit_code == 6  # the fixture's unreadable codebase is skipped, and said so
    assert FLOATS in human.stdout
    assert EMPTY in human.stderr


# -- doctor ----------------------------------------------------------------------------------------


def test_doctor_on_a_local_store_passes(tmp_path: Path) -> None:
    data = run_json("doctor", "--store", (tmp_path / "store").as_uri())
    checks = {c["name"]: c for c in data["checks"]}
    assert data["ok"] is True
    assert checks["conditional writes"]["status"] == "pass"
    assert checks["locking"]["status"] == "pass"
    assert checks["directory"]["status"] == "pass"
    assert list((tmp_path / "store").rglob("*.probe")) == []


def test_doctor_read_only_skips_the_probe(tmp_path: Path) -> None:
    data = run_json("doctor", "--read-only", "--store", tmp_path.as_uri())
    checks = {c["name"]: c for c in data["checks"]}
    assert checks["conditional writes"]["status"] == "skip"


def test_doctor_without_a_store_fails_its_first_check() -> None:
    result = run("doctor")
    assert result.exit_code == 1
    assert "FAIL" in result.stdout
    assert "DOCUMEE_STORE_URL" in result.stdout


def configure_bucket(client: Any, bucket: str) -> None:
    client.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
    client.put_bucket_encryption(
        Bucket=bucket,
        ServerSideEncryptionConfiguration={
            "Rules": [{"ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "AES256"}}]
        },
    )
    client.put_public_access_block(
        Bucket=bucket,
        PublicAccessBlockConfiguration={
            "BlockPublicAcls": True,
            "IgnorePublicAcls": True,
            "BlockPublicPolicy": True,
            "RestrictPublicBuckets": True,
        },
    )


def test_doctor_on_s3_fails_until_the_bucket_is_configured(
    s3_endpoint: S3Endpoint, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DOCUMEE_S3_ENDPOINT_URL", s3_endpoint.endpoint_url)
    url = s3_endpoint.url("team/")
    bare = run("doctor", "--store", url, "--json")
    assert bare.exit_code == 1
    checks = {c["name"]: c["status"] for c in json.loads(bare.stdout)["checks"]}
    assert checks["versioning"] == "fail"
    assert checks["public access block"] == "fail"
    assert checks["credentials"] == "pass"
    assert checks["bucket reachable"] == "pass"
    assert checks["conditional writes"] == "pass"
    configure_bucket(s3_endpoint.client(), s3_endpoint.bucket)
    good = run("doctor", "--store", url)
    assert good.exit_code == 0, good.output
    assert "all checks passed" in good.stdout
    assert "testing" not in good.output  # the dummy secret never shows
    assert_plain(good)


# -- analyze ---------------------------------------------------------------------------------------


@pytest.fixture
def source_tree(tmp_path: Path) -> Path:
    root = tmp_path / "src"
    root.mkdir()
    (root / "a.py").write_text('"""A."""\n\ndef f(x):\n    """Double."""\n    return 2 * x\n')
    (root / "b.py").write_text("class B:\n    pass\n")
    (root / "c.py").write_text("import os\n")
    return root


def test_analyze_merges_a_tree_and_reports(source_tree: Path, tmp_path: Path) -> None:
    url = (tmp_path / "store").as_uri()
    report = run_json("analyze", str(source_tree), "--codebase-id", "cb1", "--store", url)
    assert report["analysed"] == 3
    assert report["errors"] == []
    shown = run_json("show", "cb1", "--store", url)
    assert shown["metrics"]["total_files"] == 3
    again = run_json("analyze", str(source_tree), "--codebase-id", "cb1", "--store", url)
    assert again["analysed"] == 0
    assert again["unchanged"] == 3
    assert run("verify", "cb1", "--store", url).exit_code == 0


def test_analyze_shards_cover_the_tree(source_tree: Path, tmp_path: Path) -> None:
    url = (tmp_path / "store").as_uri()
    total = 0
    for k in (1, 2):
        report = run_json(
            "analyze", str(source_tree), "--codebase-id", "cb2", "--shard", f"{k}/2", "--store", url
        )
        total += report["analysed"]
    assert total == 3
    assert run_json("show", "cb2", "--store", url)["metrics"]["total_files"] == 3


def test_analyze_events_are_json_lines_on_stderr(source_tree: Path, tmp_path: Path) -> None:
    url = (tmp_path / "store").as_uri()
    result = run(
        "analyze", str(source_tree), "--codebase-id", "cb3", "--events", "--json", "--store", url
    )
    assert result.exit_code == 0
    events = [json.loads(line) for line in result.stderr.splitlines()]
    kinds = [e["kind"] for e in events]
    assert kinds[0] == "discovered"
    assert kinds[-1] == "done"
    assert "merged" in kinds
    assert json.loads(result.stdout)["analysed"] == 3


@pytest.mark.parametrize(
    ("extra", "code"),
    [
        (["--shard", "0/4"], 2),
        (["--shard", "nonsense"], 2),
        (["--analyser", "no_such_module_xyz:f"], 8),
        (["--analyser", "missing-colon"], 8),
        (["--workers", "0"], 2),
    ],
)
def test_analyze_usage_errors(
    source_tree: Path, tmp_path: Path, extra: list[str], code: int
) -> None:
    url = (tmp_path / "store").as_uri()
    result = run("analyze", str(source_tree), "--codebase-id", "cb", *extra, "--store", url)
    assert result.exit_code == code, result.output


# -- --json everywhere -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "args",
    [
        ["ls"],
        ["ls", "--deep"],
        ["show", FLOATS],
        ["verify", FLOATS],
        ["gc", FLOATS, "--dry-run"],
        ["doctor"],
        ["push", str(QUIRK_FIXTURES / "floats"), "--dry-run"],
        ["pull", "{tmp}/pulled", "--dry-run"],
        ["sync", "{tmp}/synced", "--dry-run"],
        ["migrate", str(QUIRK_FIXTURES / "timestamps"), "--dry-run"],
    ],
)
def test_every_command_prints_exactly_one_json_document(
    store_url: str, tmp_path: Path, args: list[str]
) -> None:
    args = [a.replace("{tmp}", str(tmp_path)) for a in args]
    result = run(*args, "--store", store_url, "--json")
    assert result.exit_code == 0, result.output
    decoder = json.JSONDecoder()
    doc, end = decoder.raw_decode(result.stdout)
    assert isinstance(doc, dict)
    assert result.stdout[end:].strip() == ""
    assert_plain(result)


# -- S3 through the S3 backend ---------------------------------------------------------------------


def test_transient_errors_exit_7(
    s3_endpoint: S3Endpoint, monkeypatch: pytest.MonkeyPatch, fast_retries: None
) -> None:
    monkeypatch.setenv("DOCUMEE_S3_ENDPOINT_URL", s3_endpoint.endpoint_url)
    s3_endpoint.server.faults.add(SLOW_DOWN, method="GET", times=None)
    result = run("ls", "--store", s3_endpoint.url("p/"))
    assert result.exit_code == 7, result.output


def test_access_denied_exits_4(s3_endpoint: S3Endpoint, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DOCUMEE_S3_ENDPOINT_URL", s3_endpoint.endpoint_url)
    with s3_endpoint.store("p/") as store:
        store.put(
            f"{FLOATS}/analysis.json",
            (QUIRK_FIXTURES / "floats" / FLOATS / "analysis.json").read_bytes(),
        )
    s3_endpoint.server.faults.add(ACCESS_DENIED, method="GET", key="analysis", times=None)
    result = run("show", FLOATS, "--store", s3_endpoint.url("p/"))
    assert result.exit_code == 4, result.output


# -- the real entry point, as a process ------------------------------------------------------------


def cli_process(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "documee_remote", *args],
        capture_output=True,
        text=True,
        encoding="utf-8",
        env={**os.environ, **(env or {})},
        timeout=120,
        check=False,
    )


def test_python_m_documee_remote_version_and_help() -> None:
    version = cli_process("--version")
    assert version.returncode == 0
    assert "documee-remote" in version.stdout
    assert cli_process("nope").returncode == 2


def test_process_against_moto_s3(s3_endpoint: S3Endpoint, tmp_path: Path) -> None:
    env = {
        "DOCUMEE_S3_ENDPOINT_URL": s3_endpoint.endpoint_url,
        "DOCUMEE_STORE_URL": s3_endpoint.url("cli/"),
    }
    source = (
        REQUESTS_INCREMENTAL
        if REQUESTS_INCREMENTAL.is_dir()
        else QUIRK_FIXTURES / "incremental-stale"
    )
    migrated = cli_process("migrate", str(source), "--json", env=env)
    assert migrated.returncode == 0, migrated.stderr
    assert json.loads(migrated.stdout)["ok"] is True
    listing = cli_process("ls", "--json", env=env)
    assert listing.returncode == 0, listing.stderr
    (row,) = json.loads(listing.stdout)["codebases"]
    shown = cli_process("show", row["codebase_id"], env=env)
    assert shown.returncode == 0, shown.stderr
    assert not ANSI.search(shown.stdout)
    verify = cli_process("verify", row["codebase_id"], "--json", env=env)
    assert verify.returncode == 1
    assert json.loads(verify.stdout)["ok"] is False
    out = tmp_path / "pulled"
    pulled = cli_process("pull", str(out), "--json", env=env)
    assert pulled.returncode == 0, pulled.stderr
    for path in source.rglob("*"):
        if path.is_file():
            assert (out / path.relative_to(source)).read_bytes() == path.read_bytes()
    # Pulling again moves nothing: ETags match across S3 and local disk.
    assert json.loads(cli_process("pull", str(out), "--json", env=env).stdout)["copied"] == 0
    missing = cli_process("show", "not-there", env=env)
    assert missing.returncode == 3
    assert missing.stderr.startswith("error: ")


def test_process_with_a_local_store_and_no_store_configured(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DOCUMEE_")}
    result = subprocess.run(
        [sys.executable, "-m", "documee_remote", "ls"],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )
    assert result.returncode == 8
    assert "--store" in result.stderr
    url = (tmp_path / "s").as_uri()
    pushed = cli_process("push", str(QUIRK_FIXTURES / "floats"), "--store", url)
    assert pushed.returncode == 0, pushed.stderr
    assert "copied 4 object(s)" in pushed.stdout
    assert not ANSI.search(pushed.stdout + pushed.stderr)


# -- progress bars on a terminal ------------------------------------------------------------------


@pytest.fixture
def terminal_stderr(monkeypatch: pytest.MonkeyPatch) -> io.StringIO:
    """Make the CLI believe stderr is a terminal; capture what it draws there."""
    from rich.console import Console

    from documee_remote.cli import _app as cli_module

    buffer = io.StringIO()
    original = cli_module._console

    def console(stream: Any) -> Console:
        if stream is sys.stderr:
            return Console(file=buffer, force_terminal=True, width=120)
        return original(stream)

    monkeypatch.setattr(cli_module, "_console", console)
    return buffer


def test_transfers_draw_a_progress_bar_on_a_terminal(
    terminal_stderr: io.StringIO, tmp_path: Path
) -> None:
    url = (tmp_path / "store").as_uri()
    result = run("push", str(QUIRK_FIXTURES / "floats"), "--store", url)
    assert result.exit_code == 0
    drawn = terminal_stderr.getvalue()
    assert "push" in drawn
    assert "4/4" in drawn  # objects done of objects planned
    assert "\x1b[" in drawn
    assert not ANSI.search(result.stdout)


def test_json_and_quiet_never_draw(terminal_stderr: io.StringIO, tmp_path: Path) -> None:
    url = (tmp_path / "store").as_uri()
    assert run("push", str(QUIRK_FIXTURES / "floats"), "--store", url, "--json").exit_code == 0
    assert run("pull", str(tmp_path / "out"), "--store", url, "--quiet").exit_code == 0
    assert terminal_stderr.getvalue() == ""


def test_analyze_draws_a_progress_bar_on_a_terminal(
    terminal_stderr: io.StringIO, source_tree: Path, tmp_path: Path
) -> None:
    url = (tmp_path / "store").as_uri()
    result = run("analyze", str(source_tree), "--codebase-id", "cb", "--store", url)
    assert result.exit_code == 0
    assert "analysing" in terminal_stderr.getvalue()
    assert "3/3" in terminal_stderr.getvalue()


# -- issue 12: analyze's exit code when files fail, SIGTERM ----------------------------------------


def failing_analyser(path: str, data: bytes) -> Any:
    """An analyser that cannot analyse anything (``--analyser tests.test_cli:...``)."""
    raise RuntimeError("this analyser always fails")


def failing_on_b(path: str, data: bytes) -> Any:
    """The reference analyser, except that it fails on ``b.py``."""
    from documee_remote.analyser import reference_analyser

    if path.endswith("/b.py"):
        raise RuntimeError("b.py defeats this analyser")
    return reference_analyser(path, data)


def test_analyze_exits_11_when_every_file_failed(source_tree: Path, tmp_path: Path) -> None:
    # issue 12, defect 5: exited 0 although nothing was written.
    url = (tmp_path / "store").as_uri()
    spec = "tests.test_cli:failing_analyser"
    report = run_json(
        "analyze", str(source_tree), "--codebase-id", "cb", "--analyser", spec, "--store", url,
        code=11,
    )  # fmt: skip
    assert report["analysed"] == 0
    assert len(report["errors"]) == 3
    args = ("analyze", str(source_tree), "--codebase-id", "cb", "--analyser", spec, "--store", url)
    plain = run(*args)
    assert plain.exit_code == 11
    assert "3 file(s) failed; nothing was merged" in plain.stderr
    assert run("show", "cb", "--store", url).exit_code == 3  # indeed nothing was written


def test_analyze_exits_10_when_some_files_failed(source_tree: Path, tmp_path: Path) -> None:
    url = (tmp_path / "store").as_uri()
    spec = "tests.test_cli:failing_on_b"
    report = run_json(
        "analyze", str(source_tree), "--codebase-id", "cb", "--analyser", spec, "--store", url,
        code=10,
    )  # fmt: skip
    assert report["analysed"] == 2
    assert [e["path"].rsplit("/", 1)[-1] for e in report["errors"]] == ["b.py"]
    assert run_json("show", "cb", "--store", url)["metrics"]["total_files"] == 2


def test_exit_codes_of_analyze_are_in_the_readme_and_the_help() -> None:
    readme = (Path(__file__).parents[1] / "README.md").read_text()
    line = next(x for x in readme.split("\n\n") if x.startswith("Exit codes:"))
    assert "10 analyze: some files failed" in " ".join(line.split())
    assert "11 analyze: no file could be analysed" in " ".join(line.split())
    help_text = run("analyze", "--help").stdout
    assert "10  analyze: some files failed" in help_text
    assert "143" in help_text


def slow_analyser(path: str, data: bytes) -> Any:
    """Signals that it started (a file named by $SLOW_ANALYSER_MARKER), then hangs."""
    import time

    Path(os.environ["SLOW_ANALYSER_MARKER"]).touch()
    time.sleep(60)
    raise RuntimeError("not reached")


@pytest.mark.parametrize(
    ("signal_name", "code", "message"),
    [("SIGTERM", 143, "error: terminated (SIGTERM)"), ("SIGINT", 130, "error: interrupted")],
)
def test_a_signal_mid_command_exits_with_a_message(
    source_tree: Path, tmp_path: Path, signal_name: str, code: int, message: str
) -> None:
    # issue 12: SIGTERM exited 143 without a word, where SIGINT said it was interrupted.
    import signal
    import time

    marker = tmp_path / "started"
    command = [sys.executable, "-m", "documee_remote", "analyze", str(source_tree)]
    command += ["--codebase-id", "cb", "--workers", "1", "--store", (tmp_path / "store").as_uri()]
    process = subprocess.Popen(
        [*command, "--analyser", "tests.test_cli:slow_analyser"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "SLOW_ANALYSER_MARKER": str(marker)},
        cwd=Path(__file__).parents[1],
    )
    try:
        deadline = time.monotonic() + 60  # a slow interpreter start on a busy machine
        while not marker.exists() and process.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert marker.exists(), "the command never reached the analyser"
        process.send_signal(getattr(signal, signal_name))
        _, stderr = process.communicate(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    assert process.returncode == code, stderr
    assert message in stderr
    assert "Traceback" not in stderr


# -- issue 12, item 10: the smaller ones --------------------------------------------------------


def _two_codebases(tmp_path: Path) -> tuple[str, int]:
    """A store with a small codebase and a big one; returns its URL and a limit between them."""
    root = tmp_path / "store"
    with PersistenceManager(LocalStore(root)) as pm:
        pm.merge_file_analyses("small", {"/a.py": make_file_analysis("/a.py", functions=1)}, {})
        big = {f"/f{i}.py": make_file_analysis(f"/f{i}.py", functions=20) for i in range(8)}
        pm.merge_file_analyses("big", big, {})
        small_size = pm.store.head("small/analysis.json").size
        big_size = pm.store.head("big/analysis.json").size
    limit = (small_size + big_size) // 2
    assert small_size * 4 < big_size, "the per-file objects of big must fit the limit"
    return root.as_uri(), limit


def test_verify_reports_an_object_over_the_limit_and_goes_on(tmp_path: Path) -> None:
    # issue 12: verify aborted everything at the first object over max_object_size.
    url, limit = _two_codebases(tmp_path)
    env = {"DOCUMEE_MAX_OBJECT_SIZE": str(limit)}
    result = run("verify", "--store", url, "--json", env=env)
    assert result.exit_code == 1, result.output  # a problem found, per the README
    reports = {r["codebase_id"]: r for r in json.loads(result.stdout)["codebases"]}
    assert reports["small"]["ok"] is True
    assert reports["small"]["files_checked"] == 1
    (finding,) = reports["big"]["findings"]
    assert finding["kind"] == "object_too_large"
    assert finding["key"] == "big/analysis.json"
    assert f"over this store's max_object_size of {limit} bytes" in finding["detail"]
    assert "DOCUMEE_MAX_OBJECT_SIZE" in finding["detail"]
    size = LocalStore(tmp_path / "store").head("big/analysis.json").size
    assert finding["detail"].startswith(f"{size} bytes")
    human = run("verify", "--store", url, env=env)
    assert human.exit_code == 1
    assert "small: ok" in human.stdout
    assert "object_too_large" in human.stdout


def test_ls_deep_reports_an_object_over_the_limit_and_goes_on(tmp_path: Path) -> None:
    url, limit = _two_codebases(tmp_path)
    env = {"DOCUMEE_MAX_OBJECT_SIZE": str(limit)}
    result = run("ls", "--deep", "--store", url, "--json", env=env)
    assert result.exit_code == 0, result.output
    rows = {c["codebase_id"]: c for c in json.loads(result.stdout)["codebases"]}
    assert rows["small"]["total_files"] == 1
    assert rows["small"]["status"] == "ok"
    status = rows["big"]["status"]
    assert status.startswith("too large: big/analysis.json: ")
    assert f"max_object_size of {limit} bytes" in status
    assert "DOCUMEE_MAX_OBJECT_SIZE" in status
    shown = run("show", "big", "--store", url, env=env)
    assert shown.exit_code == 9
    assert "hint: raise the limit with DOCUMEE_MAX_OBJECT_SIZE" in shown.stderr


def test_show_survives_a_corrupt_file_hashes_json(tmp_path: Path) -> None:
    # issue 12: show failed entirely although it needs only a count.
    root = tmp_path / "store"
    with PersistenceManager(LocalStore(root)) as pm:
        pm.merge_file_analyses("cb", {"/a.py": make_file_analysis("/a.py")}, {"/a.py": "0" * 64})
        pm.store.put("cb/file_hashes.json", b"{not json")
    data = run_json("show", "cb", "--store", root.as_uri())
    assert data["counts"]["files_in_analysis"] == 1
    assert data["counts"]["file_hashes"] is None
    assert "verify cb --repair" in data["file_hashes_error"]
    human = run("show", "cb", "--store", root.as_uri())
    assert human.exit_code == 0, human.output
    assert "unreadable" in human.stdout
    assert "note: file_hashes.json was not read" in human.stdout


def test_show_refuses_a_negative_top(store_url: str) -> None:
    result = run("show", FLOATS, "--top", "-1", "--store", store_url)
    assert result.exit_code == 2
    assert "--top" in result.stderr


def test_gc_dry_run_help_speaks_of_removing() -> None:
    text = " ".join(run("gc", "--help").stdout.split())
    assert "--dry-run Only report what would be removed; delete nothing." in text
    assert "copied" not in text


def test_compact_prints_a_table_not_raw_dicts(tmp_path: Path) -> None:
    root = tmp_path / "store"
    deferred = CompactionPolicy(mode="deferred")
    with PersistenceManager(LocalStore(root), compaction=deferred) as pm:
        pm.save_analysis("cb", new_analysis("cb"))
        pm.append_file_analyses("cb", {"/a.py": make_file_analysis("/a.py")}, {})
    result = run("compact", "cb", "--store", root.as_uri())
    assert result.exit_code == 0, result.output
    assert "{" not in result.stdout
    assert "'" not in result.stdout
    header = " ".join(result.stdout.split())
    assert "folded" in header
    assert "watermark" in header
    assert "commit" in header
    assert "written" in header
    cells = [line.replace("│", " ").split() for line in result.stdout.splitlines()]
    assert any(c[:4] == ["cb", "1", "0", "1"] for c in cells), result.stdout


def test_verify_reports_a_per_file_object_or_hashes_over_the_limit(tmp_path: Path) -> None:
    root = tmp_path / "store"
    with PersistenceManager(LocalStore(root)) as pm:
        pm.merge_file_analyses("cb", {"/a.py": make_file_analysis("/a.py")}, {"/a.py": "0" * 64})
        limit = pm.store.head("cb/analysis.json").size + 100
        (per_file,) = [
            k for k in pm.store.list("cb/") if k.startswith("cb/file_") and "hash" not in k
        ]
        pm.store.put(per_file, b" " * (limit + 1))
        hashes = {f"/gone{i}.py": "0" * 64 for i in range(limit // 40)}
        pm.store.put("cb/file_hashes.json", json.dumps(hashes).encode())
    env = {"DOCUMEE_MAX_OBJECT_SIZE": str(limit)}
    result = run("verify", "cb", "--store", root.as_uri(), "--json", env=env)
    assert result.exit_code == 1, result.output
    (report,) = json.loads(result.stdout)["codebases"]
    found = {(f["kind"], f["file_path"], f["key"]) for f in report["findings"]}
    assert found == {
        ("object_too_large", "/a.py", per_file),
        ("object_too_large", None, "cb/file_hashes.json"),
    }
    assert all("DOCUMEE_MAX_OBJECT_SIZE" in f["detail"] for f in report["findings"])
    repaired = run("verify", "cb", "--repair", "--json", "--store", root.as_uri(), env=env)
    assert repaired.exit_code == 1  # the hashes: not read, so not judged
    (report,) = json.loads(repaired.stdout)["codebases"]
    assert {f["key"]: f["repaired"] for f in report["findings"]} == {
        per_file: True,  # its ETag says it differs from the entry: rewritten from it
        "cb/file_hashes.json": False,
    }
    assert len(LocalStore(root).get(per_file).data) < limit


# -- transfers: issue 12 (defect 4, item 10) ------------------------------------------------------


def test_push_of_an_empty_analysis_json_over_a_readable_one_exits_6(tmp_path: Path) -> None:
    local = tmp_path / "local"
    shutil.copytree(QUIRK_FIXTURES / "floats", local)
    url = (tmp_path / "store").as_uri()
    assert run("push", str(local), "--store", url).exit_code == 0
    stored = tmp_path / "store" / FLOATS / "analysis.json"
    good = stored.read_bytes()
    (local / FLOATS / "analysis.json").write_bytes(b"")
    for command in (["push"], ["migrate"], ["sync", "--prefer", "local"]):
        refused = run(*command, str(local), "--store", url)
        assert refused.exit_code == 6, (command, refused.output)
        assert f"{FLOATS}/analysis.json" in refused.stdout
        assert "--force" in refused.stdout
        assert stored.read_bytes() == good
    data = run_json("push", str(local), "--store", url, code=6)
    assert data["conflicts"][0]["corrupt"] is True
    assert data["conflicts"][0]["codebase_id"] == FLOATS
    assert run("push", str(local), "--force", "--store", url).exit_code == 0
    assert stored.read_bytes() == b""


def test_pull_of_a_corrupt_object_over_a_readable_local_one_exits_6(tmp_path: Path) -> None:
    local = tmp_path / "local"
    url = (tmp_path / "store").as_uri()
    run_json("migrate", str(QUIRK_FIXTURES / "floats"), "--store", url)
    run_json("pull", str(local), "--store", url)
    (tmp_path / "store" / FLOATS / "file_hashes.json").write_bytes(b'{"cut')
    refused = run("pull", str(local), "--store", url)
    assert refused.exit_code == 6
    assert f"{FLOATS}/file_hashes.json" in refused.stdout
    assert (local / FLOATS / "file_hashes.json").read_bytes() != b'{"cut'
    assert run("pull", str(local), "--force", "--store", url).exit_code == 0
    assert (local / FLOATS / "file_hashes.json").read_bytes() == b'{"cut'


def test_a_store_that_is_a_file_is_an_error_for_ls_verify_and_push(tmp_path: Path) -> None:
    a_file = tmp_path / "store.json"
    a_file.write_text("{}")
    for command in (["ls"], ["verify"], ["push", str(QUIRK_FIXTURES / "floats")]):
        result = run(*command, "--store", a_file.as_uri())
        assert result.exit_code == 8, (command, result.output)
        assert "is a file, not a directory" in result.stderr


def test_a_missing_store_is_an_error_to_read_but_created_by_push(tmp_path: Path) -> None:
    missing = tmp_path / "typo"
    for command in (["ls"], ["verify"], ["pull", str(tmp_path / "out")]):
        result = run(*command, "--store", missing.as_uri())
        assert result.exit_code == 3, (command, result.output)
        assert "does not exist" in result.stderr
        assert "no codebases" not in result.stdout
    assert not missing.exists()
    assert run("push", str(QUIRK_FIXTURES / "floats"), "--store", missing.as_uri()).exit_code == 0
    assert (missing / FLOATS / "analysis.json").is_file()


def test_push_or_migrate_of_a_codebase_folder_is_a_usage_error(tmp_path: Path) -> None:
    url = (tmp_path / "store").as_uri()
    folder = QUIRK_FIXTURES / "floats" / FLOATS
    for command in ("push", "migrate"):
        result = run(command, str(folder), "--store", url)
        assert result.exit_code == 2, result.output
        assert "looks like a codebase folder; point at its parent" in result.stderr
    assert not (tmp_path / "store").exists()


def test_transfer_progress_counts_in_mib() -> None:
    from rich.console import Console
    from rich.progress import Task, TaskID, TransferSpeedColumn

    from documee_remote.cli._app import CliState
    from documee_remote.cli.transfer import _TransferProgress
    from documee_remote.transfer import TransferEvent

    stream = io.StringIO()
    state = CliState(_err=Console(file=stream, force_terminal=True, width=200))
    with _TransferProgress(state) as progress:
        progress(TransferEvent("plan", "push", total_objects=1, total_bytes=3 << 20))
        progress(TransferEvent("put", "push", key="a/file_x.json", size=3 << 20))
    shown = ANSI.sub("", stream.getvalue())
    assert "3.0/3.0 MiB" in shown
    assert " MB" not in shown
    # The speed column too (rich's own says "3.1 MB/s" for this).
    speed_column = next(c for c in progress.progress.columns if isinstance(c, TransferSpeedColumn))
    task = Task(TaskID(0), "push", 3.0, 3.0, _get_time=lambda: 0.0)
    task.finished_speed = float(3 << 20)
    assert speed_column.render(task).plain == "3.0 MiB/s"
