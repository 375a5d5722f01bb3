"""The Lambda handler, in process against moto's S3."""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from documee_remote import aws_lambda
from documee_remote.aws_lambda import clear_caches, get_manager, handler, status_for
from documee_remote.errors import (
    ConditionalRequestConflictError,
    ConfigurationError,
    CorruptObjectError,
    DocumeeRemoteError,
    InvalidKeyError,
    NotFoundError,
    ObjectTooLargeError,
    PermissionDeniedError,
    PreconditionFailedError,
    ReadOnlyError,
    ServiceUnavailableError,
    StorageFullError,
    ThrottledError,
    TooManyConflictsError,
    UnsupportedOperationError,
)
from documee_remote.manager import PersistenceManager
from documee_remote.models import FileAnalysis
from documee_remote.testing.factories import make_file_analysis
from documee_remote.testing.fixtures import TEST_REGION, atomic_mock_aws

STORE_BUCKET = "documee-store"
SOURCE_BUCKET = "source-bundles"
SECRET_CONTENT = "TOP_SECRET_SOURCE_CODE_9f3a"

PY_A = "def alpha(x):\n    '''Alpha does the first thing well.'''\n    return x if x else 0\n"
PY_B = "class Beta:\n    def m(self):\n        return 1\n"


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@dataclass
class FakeContext:
    """What the Lambda runtime passes as ``context`` (the parts the handler reads)."""

    aws_request_id: str = "req-1"
    remaining_ms: int = 60_000

    def get_remaining_time_in_millis(self) -> int:
        return self.remaining_ms


@pytest.fixture
def s3(aws_credentials: None, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """moto S3 with a store bucket and a source bucket; the handler configured for it."""
    for name in ("DOCUMEE_LAMBDA_ANALYSERS", "DOCUMEE_LAMBDA_MAX_FILE_BYTES"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("DOCUMEE_STORE_URL", f"s3://{STORE_BUCKET}/team-a/")
    monkeypatch.setenv("DOCUMEE_S3_REGION", TEST_REGION)
    clear_caches()
    with atomic_mock_aws():
        import boto3

        client = boto3.client("s3", region_name=TEST_REGION)
        client.create_bucket(Bucket=STORE_BUCKET)
        client.create_bucket(Bucket=SOURCE_BUCKET)
        try:
            yield client
        finally:
            clear_caches()
            client.close()


def invoke(event: Any, context: Any = None) -> dict[str, Any]:
    response = handler(event, context or FakeContext())
    json.dumps(response)  # always serialisable
    return response


# =========================================================================================
# Actions
# =========================================================================================


def test_analyse_inline_files(s3: Any) -> None:
    raw = "x = 'caf\u00e9'\n".encode("latin-1")
    response = invoke(
        {
            "action": "analyse",
            "codebase_id": "myrepo",
            "files": [
                {"path": "/srv/code/myrepo/a.py", "content": PY_A},
                {
                    "path": "/srv/code/myrepo/b.py",
                    "content_base64": base64.b64encode(PY_B.encode()).decode(),
                },
                {"path": "/srv/code/myrepo/c.py", "content_base64": base64.b64encode(raw).decode()},
            ],
        }
    )
    assert response["ok"] is True
    assert response["status"] == 200
    assert response["action"] == "analyse"
    assert response["codebase_id"] == "myrepo"
    assert response["files"] == 3
    assert response["attempts"] >= 1
    assert response["errors"] == []
    assert response["elapsed_ms"] >= 0
    # What landed in S3, read back independently of the handler's store.
    body = s3.get_object(Bucket=STORE_BUCKET, Key="team-a/myrepo/analysis.json")["Body"].read()
    analysis = json.loads(body)
    assert list(analysis["file_analyses"]) == [
        "/srv/code/myrepo/a.py",
        "/srv/code/myrepo/b.py",
        "/srv/code/myrepo/c.py",
    ]
    alpha = analysis["file_analyses"]["/srv/code/myrepo/a.py"]["symbol_info"]["functions"][0]
    assert alpha["name"] == "alpha"
    assert alpha["complexity"] == 1
    hashes = json.loads(
        s3.get_object(Bucket=STORE_BUCKET, Key="team-a/myrepo/file_hashes.json")["Body"].read()
    )
    assert hashes == {
        "/srv/code/myrepo/a.py": sha(PY_A.encode()),
        "/srv/code/myrepo/b.py": sha(PY_B.encode()),
        "/srv/code/myrepo/c.py": sha(raw),
    }
    # Latin-1 bytes without a cookie: analysed as broken, not an error of the invocation.
    assert analysis["file_analyses"]["/srv/code/myrepo/c.py"]["has_errors"] is True


def test_analyse_then_remove_and_the_analyze_spelling(s3: Any) -> None:
    first = invoke(
        {
            "action": "analyze",
            "codebase_id": "cb",
            "files": [
                {"path": "/srv/a.py", "content": PY_A},
                {"path": "/srv/b.py", "content": PY_B},
            ],
        }
    )
    assert first["action"] == "analyse"
    assert first["files"] == 2
    second = invoke({"action": "analyse", "codebase_id": "cb", "removed": ["/srv/a.py"]})
    assert second["ok"] is True
    assert (second["files"], second["removed"]) == (0, 1)
    pm = get_manager()
    analysis = pm.load_analysis("cb")
    assert analysis is not None
    assert list(analysis.file_analyses) == ["/srv/b.py"]
    assert pm.get_file_hashes("cb") == {"/srv/b.py": sha(PY_B.encode())}
    assert pm.load_file_analysis("cb", "/srv/a.py") is None


def test_analyse_a_source_bundle(s3: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DOCUMEE_LAMBDA_MAX_FILE_BYTES", "200")
    s3.put_object(Bucket=SOURCE_BUCKET, Key="src-bundle/pkg/a.py", Body=PY_A.encode())
    s3.put_object(Bucket=SOURCE_BUCKET, Key="src-bundle/pkg/b.py", Body=PY_B.encode())
    s3.put_object(Bucket=SOURCE_BUCKET, Key="src-bundle/big.py", Body=b"#" * 201)
    response = invoke(
        {
            "action": "analyse",
            "codebase_id": "bundle",
            "source": {
                "bucket": SOURCE_BUCKET,
                "keys": [
                    "src-bundle/pkg/a.py",
                    "src-bundle/pkg/b.py",
                    "src-bundle/big.py",
                    "src-bundle/missing.py",
                ],
                "prefix_map": {"strip": "src-bundle/", "prepend": "/srv/code/repo/"},
            },
        }
    )
    assert response["ok"] is True
    assert response["files"] == 2
    errors = {e["path"]: e["error"] for e in response["errors"]}
    assert set(errors) == {"/srv/code/repo/big.py", "/srv/code/repo/missing.py"}
    assert "over the limit of 200" in errors["/srv/code/repo/big.py"]
    assert "not found" in errors["/srv/code/repo/missing.py"]
    hashes = get_manager().get_file_hashes("bundle")
    assert hashes == {
        "/srv/code/repo/pkg/a.py": sha(PY_A.encode()),
        "/srv/code/repo/pkg/b.py": sha(PY_B.encode()),
    }
    # The S3 client for bundles is created once and reused.
    client = aws_lambda._source_clients.copy()
    invoke(
        {
            "action": "analyse",
            "codebase_id": "bundle",
            "source": {"bucket": SOURCE_BUCKET, "keys": ["src-bundle/pkg/a.py"]},
        }
    )
    assert len(client) == 1
    assert aws_lambda._source_clients == client
    assert "src-bundle/pkg/a.py" in get_manager().get_file_hashes("bundle")  # no prefix map


def test_source_bundle_in_a_missing_bucket_is_a_configuration_error(s3: Any) -> None:
    response = invoke(
        {
            "action": "analyse",
            "codebase_id": "cb",
            "source": {"bucket": "no-such-bucket", "keys": ["a.py"]},
        }
    )
    assert response["ok"] is False
    assert response["status"] == 500
    assert response["error_type"] == "ConfigurationError"
    assert "does not exist" in response["error"]


def test_every_file_failing_is_422(s3: Any) -> None:
    response = invoke(
        {
            "action": "analyse",
            "codebase_id": "cb",
            "source": {"bucket": SOURCE_BUCKET, "keys": ["gone.py"]},
        }
    )
    assert response["status"] == 422
    assert response["details"] == ["gone.py: source key 'gone.py' not found"]
    assert get_manager().load_analysis("cb") is None


def test_merge_analyses_computed_elsewhere(s3: Any) -> None:
    fa = make_file_analysis("/srv/code/x.py", functions=2)
    event = {
        "action": "merge",
        "codebase_id": "merged",
        "file_analyses": {"/srv/code/x.py": fa.to_dict()},
        "file_hashes": {"/srv/code/x.py": "ab" * 32},
    }
    response = invoke(json.loads(json.dumps(event)))  # as Lambda delivers it: parsed JSON
    assert response["ok"] is True
    assert response["files"] == 1
    pm = get_manager()
    assert pm.load_file_analysis("merged", "/srv/code/x.py") == fa
    assert pm.get_file_hashes("merged") == {"/srv/code/x.py": "ab" * 32}
    removed = invoke({"action": "merge", "codebase_id": "merged", "removed": ["/srv/code/x.py"]})
    assert removed["removed"] == 1
    analysis = pm.load_analysis("merged")
    assert analysis is not None
    assert analysis.file_analyses == {}


def test_merge_with_a_hash_but_no_analysis_is_400(s3: Any) -> None:
    fa = make_file_analysis("/srv/x.py")
    response = invoke(
        {
            "action": "merge",
            "codebase_id": "m",
            "file_analyses": {"/srv/x.py": fa.to_dict()},
            "file_hashes": {"/srv/x.py": "0" * 64, "/srv/y.py": "1" * 64},
        }
    )
    assert response["status"] == 400
    assert response["error_type"] == "InvalidKeyError"
    assert "/srv/y.py" in response["error"]


def test_verify(s3: Any) -> None:
    invoke({"action": "analyse", "codebase_id": "v", "files": [{"path": "/a.py", "content": PY_A}]})
    response = invoke({"action": "verify", "codebase_id": "v"})
    if not hasattr(PersistenceManager, "verify"):  # pragma: no cover - older builds
        assert response["status"] == 501
        return
    assert response["ok"] is True
    assert response["result"]["ok"] is True
    assert response["result"]["files_checked"] == 1


def test_compact_folds_what_deferred_merges_left_in_the_journal(
    s3: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The scheduled compaction's event: deferred merges (set by DOCUMEE_COMPACTION, as a
    team's analyser Lambdas would be) leave analysis.json alone; compact folds them."""
    monkeypatch.setenv("DOCUMEE_COMPACTION", "deferred")
    clear_caches()
    for path in ("/a.py", "/b.py"):
        fa = make_file_analysis(path).to_dict()
        response = invoke(
            {"action": "merge", "codebase_id": "c", "file_analyses": {path: fa}, "file_hashes": {}}
        )
        assert response["ok"] is True, response
    pm = get_manager()
    assert pm.compaction.mode == "deferred"
    assert not pm.store.exists("c/analysis.json")
    response = invoke({"action": "compact", "codebase_id": "c"})
    assert response["ok"] is True, response
    assert response["result"]["codebase_id"] == "c"
    result = response["result"]
    assert (result["folded"], result["watermark"], result["commit"]) == (2, 0, 1)
    stored = s3.get_object(Bucket=STORE_BUCKET, Key="team-a/c/analysis.json")["Body"].read()
    assert set(json.loads(stored)["file_analyses"]) == {"/a.py", "/b.py"}
    again = invoke({"action": "compact", "codebase_id": "c"})
    assert again["result"]["analysis_written"] is False


def test_the_scheduled_compaction_event_compacts_every_codebase(
    s3: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The Terraform schedule sends {"action": "compact"}: every codebase, one corrupt
    codebase reported without stopping the others, and none started without time left."""
    monkeypatch.setenv("DOCUMEE_COMPACTION", "deferred")
    clear_caches()
    pm = get_manager()
    for cid in ("one", "two"):
        pm.append_file_analyses(cid, {"/a.py": make_file_analysis("/a.py")}, {})
    s3.put_object(Bucket=STORE_BUCKET, Key="team-a/bad/analysis.json", Body=b"")
    response = invoke({"action": "compact"})
    assert response["status"] == 207
    assert response["ok"] is False
    assert sorted(r["codebase_id"] for r in response["results"]) == ["one", "two"]
    assert all(r["folded"] == 1 for r in response["results"])
    assert [f["codebase_id"] for f in response["failed"]] == ["bad"]
    assert response["failed"][0]["error_type"] == "CorruptObjectError"
    late = invoke({"action": "compact"}, FakeContext(remaining_ms=10_000))
    assert late["results"] == []
    assert late["not_reached"] == ["bad", "one", "two"]


def test_compact_on_a_build_without_it_is_501(s3: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delattr(PersistenceManager, "compact")
    missing = invoke({"action": "compact", "codebase_id": "c"})
    assert missing["ok"] is False
    assert missing["status"] == 501
    assert "no PersistenceManager.compact" in missing["error"]


# =========================================================================================
# Analysers named by events
# =========================================================================================


def shouting_analyser(file_path: str, content: bytes) -> FileAnalysis:
    """A custom analyser for the tests: the reference one, with another language."""
    from documee_remote.analyser import reference_analyser

    return reference_analyser(file_path, content).model_copy(update={"language": "SHOUTING"})


def test_custom_analyser_must_be_allowed(s3: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    spec = "tests.test_aws_lambda:shouting_analyser"
    event = {
        "action": "analyse",
        "codebase_id": "custom",
        "files": [{"path": "/a.py", "content": PY_A}],
        "analyser": spec,
    }
    refused = invoke(event)
    assert refused["status"] == 400
    assert "DOCUMEE_LAMBDA_ANALYSERS" in refused["error"]
    monkeypatch.setenv("DOCUMEE_LAMBDA_ANALYSERS", f"other:thing, {spec}")
    allowed = invoke(event)
    assert allowed["ok"] is True
    fa = get_manager().load_file_analysis("custom", "/a.py")
    assert fa is not None
    assert fa.language == "SHOUTING"
    monkeypatch.setenv("DOCUMEE_LAMBDA_ANALYSERS", "tests.test_aws_lambda:nope")
    broken = invoke({**event, "analyser": "tests.test_aws_lambda:nope"})
    assert broken["status"] == 400
    assert "has no attribute 'nope'" in broken["error"]


# =========================================================================================
# Bad events
# =========================================================================================


@pytest.mark.parametrize(
    ("event", "expected"),
    [
        ([1, 2], "(event)"),
        ({}, "Unable to extract tag using discriminator 'action'"),
        ({"action": "explode", "codebase_id": "x"}, "'explode'"),
        (
            {"action": "analyse", "files": [{"path": "/a.py", "content": "x"}]},
            "codebase_id: Field required",
        ),
        (
            {"action": "analyse", "codebase_id": "../etc", "removed": ["/a.py"]},
            "invalid codebase id",
        ),
        ({"action": "analyse", "codebase_id": "x"}, "nothing to do"),
        (
            {"action": "analyse", "codebase_id": "x", "files": [{"path": "/a.py"}]},
            "either 'content' or 'content_base64'",
        ),
        (
            {
                "action": "analyse",
                "codebase_id": "x",
                "files": [{"path": "/a.py", "content_base64": "!!"}],
            },
            "not valid base64",
        ),
        (
            {"action": "analyse", "codebase_id": "x", "files": [{"path": "", "content": "x"}]},
            "file path is empty",
        ),
        (
            {
                "action": "analyse",
                "codebase_id": "x",
                "files": [{"path": "/a.py", "content": "1"}, {"path": "/a.py", "content": "2"}],
            },
            "given twice",
        ),
        (
            {
                "action": "analyse",
                "codebase_id": "x",
                "source": {"bucket": "bk1", "keys": ["a/x.py"], "prefix_map": {"strip": "b/"}},
            },
            "does not start with strip",
        ),
        (
            {"action": "analyse", "codebase_id": "x", "source": {"bucket": "bk1", "keys": []}},
            "source.keys",
        ),
        ({"action": "merge", "codebase_id": "x"}, "nothing to merge"),
        (
            {
                "action": "merge",
                "codebase_id": "x",
                "file_analyses": {"/a.py": {"file_path": "/a.py"}},
            },
            "file_analyses./a.py.language: Field required",
        ),
        ({"action": "verify", "codebase_id": "x", "repair": "maybe"}, "repair"),
        (
            {"action": "compact", "codebase_id": "x", "extra": 1},
            "extra: Extra inputs are not permitted",
        ),
    ],
)
def test_bad_events_are_400_with_useful_details(s3: Any, event: Any, expected: str) -> None:
    response = invoke(event)
    assert response["ok"] is False
    assert response["status"] == 400
    assert response["error"].startswith("invalid event")
    assert any(expected in d for d in response["details"]), response["details"]


def test_unknown_actions_and_bad_ids_are_not_echoed(s3: Any) -> None:
    response = invoke({"action": "explode" * 100, "codebase_id": "../../etc"})
    assert response["status"] == 400
    assert response["action"] is None
    assert response["codebase_id"] is None
    assert all(len(d) <= 303 for d in response["details"])
    valid = invoke({"action": "analyze", "codebase_id": "ok-id"})
    assert (valid["action"], valid["codebase_id"]) == ("analyse", "ok-id")


def test_errors_never_echo_file_contents(s3: Any, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="documee_remote.aws_lambda")
    events = [
        {
            "action": "analyse",
            "codebase_id": "x",
            "files": [{"path": "/a.py", "content": SECRET_CONTENT, "mode": SECRET_CONTENT}],
        },
        {
            "action": "analyse",
            "codebase_id": "x",
            "files": [{"path": "/a.py", "content": 12345, "note": SECRET_CONTENT}],
        },
        {
            "action": "merge",
            "codebase_id": "x",
            "file_analyses": {"/a.py": {"file_path": SECRET_CONTENT, "language": 3}},
        },
        {
            "action": SECRET_CONTENT[:10],
            "codebase_id": "x",
            "files": [{"path": "/a.py", "content": SECRET_CONTENT}],
        },
    ]
    for event in events:
        response = invoke(event)
        assert response["status"] == 400
        assert SECRET_CONTENT not in json.dumps(response)
    good = invoke(
        {
            "action": "analyse",
            "codebase_id": "x",
            "files": [{"path": "/a.py", "content": f"X = '{SECRET_CONTENT}'\n"}],
        }
    )
    assert good["ok"] is True
    assert SECRET_CONTENT not in caplog.text
    assert "testing" not in caplog.text  # the dummy AWS secret


def test_too_many_errors_are_summarised(s3: Any) -> None:
    files = [{"path": f"/f{i}.py"} for i in range(30)]
    response = invoke({"action": "analyse", "codebase_id": "x", "files": files})
    assert response["status"] == 400
    assert len(response["details"]) == aws_lambda.MAX_DETAILS + 1
    assert response["details"][-1] == "... and 10 more"


# =========================================================================================
# Library errors, transient errors
# =========================================================================================


@pytest.mark.parametrize(
    ("error", "status"),
    [
        (InvalidKeyError("k"), 400),
        (CorruptObjectError("c"), 422),
        (PermissionDeniedError("p"), 403),
        (ReadOnlyError("r"), 403),
        (NotFoundError("n"), 404),
        (TooManyConflictsError("t", attempts=20), 409),
        (ConditionalRequestConflictError("s3 409"), 503),
        (ThrottledError("slow down"), 503),
        (ServiceUnavailableError("5xx"), 503),
        (ObjectTooLargeError("big"), 413),
        (StorageFullError("full"), 507),
        (UnsupportedOperationError("no"), 501),
        (ConfigurationError("cfg"), 500),
        (DocumeeRemoteError("other"), 500),
    ],
)
def test_status_mapping(error: DocumeeRemoteError, status: int) -> None:
    assert status_for(error) == status


def _failing_merge(error: Exception) -> Any:
    def merge(self: PersistenceManager, *args: Any, **kwargs: Any) -> Any:
        raise error

    return merge


def test_conflicts_answer_409(s3: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(
        PersistenceManager,
        "merge_file_analyses",
        _failing_merge(TooManyConflictsError("gave up after 20 attempts", attempts=20)),
    )
    response = invoke(
        {"action": "analyse", "codebase_id": "c", "files": [{"path": "/a.py", "content": PY_A}]}
    )
    assert response["status"] == 409
    assert response["error_type"] == "TooManyConflictsError"
    assert "gave up" in response["error"]


def test_transient_errors_are_raised_for_lambda_to_retry(
    s3: Any, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="documee_remote.aws_lambda")
    monkeypatch.setattr(
        PersistenceManager, "merge_file_analyses", _failing_merge(ThrottledError("SlowDown"))
    )
    event = {"action": "analyse", "codebase_id": "c", "files": [{"path": "/a.py", "content": PY_A}]}
    with pytest.raises(ThrottledError):
        handler(event, FakeContext())
    logged = [json.loads(r.getMessage()) for r in caplog.records if r.getMessage().startswith("{")]
    assert logged[-1]["status"] == 503
    assert logged[-1]["error_type"] == "ThrottledError"
    monkeypatch.setenv("DOCUMEE_LAMBDA_RAISE_TRANSIENT", "false")
    response = invoke(event)
    assert response["status"] == 503
    assert response["error_type"] == "ThrottledError"


def test_bugs_are_reraised(s3: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(PersistenceManager, "merge_file_analyses", _failing_merge(KeyError("bug")))
    with pytest.raises(KeyError):
        handler({"action": "merge", "codebase_id": "c", "removed": ["/a.py"]}, FakeContext())


def test_missing_store_url_is_500(s3: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DOCUMEE_STORE_URL")
    response = invoke({"action": "verify", "codebase_id": "x"})
    assert response["status"] == 500
    assert "DOCUMEE_STORE_URL" in response["error"]


def test_retry_deadline_follows_the_time_left() -> None:
    assert aws_lambda._retry_policy(FakeContext(remaining_ms=30_000)).deadline == 25.0
    assert aws_lambda._retry_policy(FakeContext(remaining_ms=3_000)).deadline == 1.0
    assert aws_lambda._retry_policy(FakeContext(remaining_ms=900_000)).deadline == 120.0
    assert aws_lambda._retry_policy(None).deadline == 120.0


# =========================================================================================
# Warm containers, logging, cold start
# =========================================================================================


def test_warm_invocations_reuse_the_store(s3: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    opened: list[str] = []
    real_init = PersistenceManager.__init__

    def counting_init(self: PersistenceManager, *args: Any, **kwargs: Any) -> None:
        opened.append(str(args[0]) if args else "")
        real_init(self, *args, **kwargs)

    monkeypatch.setattr(PersistenceManager, "__init__", counting_init)
    for i in range(3):
        response = invoke(
            {
                "action": "analyse",
                "codebase_id": "warm",
                "files": [{"path": f"/f{i}.py", "content": PY_A}],
            }
        )
        assert response["ok"] is True
    assert opened == [f"s3://{STORE_BUCKET}/team-a/"]
    first = get_manager()
    assert get_manager() is first
    assert get_manager().store is first.store
    # Another configuration (another prefix) gets its own store; the old one is closed.
    monkeypatch.setenv("DOCUMEE_STORE_URL", f"s3://{STORE_BUCKET}/team-b/")
    other = get_manager()
    assert other is not first
    assert other.store.url == f"s3://{STORE_BUCKET}/team-b/"
    assert len(opened) == 2


def test_one_json_summary_line_per_invocation(s3: Any, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="documee_remote.aws_lambda")
    get_manager()  # the store_opened line is logged before
    caplog.clear()
    invoke(
        {"action": "analyse", "codebase_id": "logs", "files": [{"path": "/a.py", "content": PY_A}]},
        FakeContext("req-42"),
    )
    invoke({"action": "nope"}, FakeContext("req-43"))
    lines = [r for r in caplog.records if r.name == "documee_remote.aws_lambda"]
    assert len(lines) == 2
    assert all(r.levelno == logging.INFO for r in lines)
    first, second = (json.loads(r.getMessage()) for r in lines)
    assert first["request_id"] == "req-42"
    assert first["action"] == "analyse"
    assert first["codebase_id"] == "logs"
    assert first["ok"] is True
    assert first["files"] == 1
    assert "\n" not in lines[0].getMessage()
    assert PY_A.splitlines()[0] not in caplog.text
    assert (second["request_id"], second["status"]) == ("req-43", 400)


def test_cold_start_imports_nothing_heavy() -> None:
    code = (
        "import sys, json, documee_remote.aws_lambda\n"
        "heavy = {'s3fs', 'aiobotocore', 'aiohttp', 'moto', 'click', 'rich', 'fsspec',"
        " 'boto3', 'botocore'}\n"
        "print(json.dumps(sorted({m.split('.')[0] for m in sys.modules} & heavy)))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True)
    assert json.loads(out.stdout) == []


def _error_tree() -> list[type[DocumeeRemoteError]]:
    """Every subclass of DocumeeRemoteError in the package (every module imported first)."""
    import importlib
    import pkgutil

    import documee_remote

    for module in pkgutil.walk_packages(documee_remote.__path__, "documee_remote."):
        importlib.import_module(module.name)
    found: list[type[DocumeeRemoteError]] = []
    todo: list[type[DocumeeRemoteError]] = [DocumeeRemoteError]
    while todo:
        cls = todo.pop()
        found.append(cls)
        todo += cls.__subclasses__()
    return found


def test_one_table_maps_every_error_of_the_tree_for_the_cli_and_the_lambda() -> None:
    # issue 12, defect 7: the CLI answered S3's 409 with exit 5 (conflict) while
    # the handler answered 503 (transient); PreconditionFailedError was 5 vs 500.
    from documee_remote import cli, error_codes

    tree = _error_tree()
    assert len(tree) >= 24  # the tree of errors.py and the lease errors
    missing = [cls.__qualname__ for cls in tree if cls not in error_codes.ERROR_CODES]
    assert missing == []
    for cls in tree:
        error = cls.__new__(cls)  # no __init__: some take keyword-only extras
        codes = error_codes.ERROR_CODES[cls]
        assert cli.exit_code_for(error) == codes.exit_code, cls
        assert status_for(error) == codes.http_status, cls
    # The entries that used to differ between the two.
    assert error_codes.codes_for(ConditionalRequestConflictError("409")) == (7, 503)
    assert error_codes.codes_for(PreconditionFailedError("stale")) == (5, 409)


def test_the_handler_answers_with_the_tables_status(
    s3: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DOCUMEE_LAMBDA_RAISE_TRANSIENT", "false")
    monkeypatch.setattr(
        PersistenceManager,
        "merge_file_analyses",
        _failing_merge(PreconditionFailedError("stale If-Match", key="c/analysis.json")),
    )
    response = invoke(
        {"action": "analyse", "codebase_id": "c", "files": [{"path": "/a.py", "content": PY_A}]}
    )
    assert response["status"] == 409  # was 500: the handler's table lacked it
    assert response["error_type"] == "PreconditionFailedError"


@pytest.mark.parametrize("action", ["verify", "compact"])
def test_maintenance_of_a_missing_codebase_answers_404(s3: Any, action: str) -> None:
    # issue 12, defect 6: both answered 200 where the CLI exits 3.
    response = invoke({"action": action, "codebase_id": "nosuch"})
    assert response["status"] == 404
    assert response["ok"] is False
    assert response["error_type"] == "NotFoundError"
    assert "nosuch" in response["error"]
