"""Every ``DOCUMEE_*`` option on every way in: the rule of issue 11, item 4.

Each option fills in what the call does not pass, whether the store comes
from ``PersistenceManager(url)``, ``PersistenceManager()``, ``open_store(url)``,
``open_store()``, the CLI or the Lambda handler; explicit arguments win; and
every bad value is a ``ConfigurationError`` naming the variable, on every path.

What each path built is seen by recording the PersistenceManager it made (the
CLI and the handler make theirs inside), never by replacing the code that
builds the store. The S3 options run against the moto server, whose endpoint
always comes from ``DOCUMEE_S3_ENDPOINT_URL`` (so a test that ignored it
would go to AWS, and fail for want of credentials, not pass).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from documee_remote import aws_lambda
from documee_remote.cli import cli
from documee_remote.config import DEFAULT_STORE_URL, Settings
from documee_remote.errors import (
    ConfigurationError,
    DocumeeRemoteError,
    ReadOnlyError,
    ServiceUnavailableError,
)
from documee_remote.journal import CompactionPolicy
from documee_remote.manager import PersistenceManager
from documee_remote.stores import LocalStore, MemoryStore, Store, open_store
from documee_remote.testing.fixtures import S3Endpoint

PATHS = ["manager(url)", "manager()", "open_store(url)", "open_store()", "cli", "lambda"]
PYTHON_PATHS = PATHS[:4]


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> Iterator[pytest.MonkeyPatch]:
    """No DOCUMEE_* setting of the developer's shell leaks in; no cached Lambda store."""
    for name in list(os.environ):
        if name.startswith("DOCUMEE_"):
            monkeypatch.delenv(name)
    aws_lambda.clear_caches()
    yield monkeypatch
    aws_lambda.clear_caches()


@dataclass
class Opened:
    """What one path built: its store and, where a manager was made, its policy."""

    store: Store
    compaction: CompactionPolicy | None = None
    output: str = ""


@dataclass
class Recorder:
    """Records every PersistenceManager made while it is installed."""

    made: list[PersistenceManager] = field(default_factory=list)


@pytest.fixture
def recorder(monkeypatch: pytest.MonkeyPatch) -> Recorder:
    recorded = Recorder()
    real_init = PersistenceManager.__init__

    def init(self: PersistenceManager, *args: Any, **kwargs: Any) -> None:
        real_init(self, *args, **kwargs)
        recorded.made.append(self)

    monkeypatch.setattr(PersistenceManager, "__init__", init)
    return recorded


def open_via(
    path: str,
    url: str,
    monkeypatch: pytest.MonkeyPatch,
    recorder: Recorder,
    **explicit: Any,
) -> Opened:
    """Open ``url`` the way ``path`` does, with ``explicit`` arguments (Python paths only)."""
    if path == "manager(url)":
        pm = PersistenceManager(url, **explicit)
        pm.close()
        return Opened(pm.store, pm.compaction)
    if path == "manager()":
        monkeypatch.setenv("DOCUMEE_STORE_URL", url)
        pm = PersistenceManager(**explicit)
        pm.close()
        return Opened(pm.store, pm.compaction)
    if path == "open_store(url)":
        store = open_store(url, **explicit)
        store.close()
        return Opened(store)
    if path == "open_store()":
        monkeypatch.setenv("DOCUMEE_STORE_URL", url)
        store = open_store(**explicit)
        store.close()
        return Opened(store)
    assert not explicit, "the CLI and the handler take no keyword arguments"
    if path == "cli":
        result = CliRunner().invoke(cli, ["--store", url, "ls", "--json"], catch_exceptions=False)
        assert recorder.made, result.output
        pm = recorder.made[-1]
        return Opened(pm.store, pm.compaction, result.output)
    assert path == "lambda"
    monkeypatch.setenv("DOCUMEE_STORE_URL", url)
    response = aws_lambda.handler({"action": "verify", "codebase_id": "nothing-here"}, None)
    assert recorder.made, response
    pm = recorder.made[-1]
    return Opened(pm.store, pm.compaction, str(response))


def fail_via(path: str, url: str, monkeypatch: pytest.MonkeyPatch) -> str:
    """The configuration error ``path`` reports for the environment as it is."""
    if path == "cli":
        result = CliRunner().invoke(cli, ["--store", url, "ls", "--json"], catch_exceptions=False)
        assert result.exit_code == 8, result.output
        return result.output
    if path == "lambda":
        monkeypatch.setenv("DOCUMEE_STORE_URL", url)
        response = aws_lambda.handler({"action": "verify", "codebase_id": "nothing-here"}, None)
        assert (response["status"], response["error_type"]) == (500, "ConfigurationError")
        return str(response["error"])
    with pytest.raises(ConfigurationError) as info:
        open_via(path, url, monkeypatch, Recorder())
    return str(info.value)


# -- the options every backend takes -----------------------------------------------------------


@dataclass(frozen=True)
class Case:
    """One option: its variable and value, what the store shows, and an explicit override."""

    variable: str
    value: str
    seen: Callable[[Opened], Any]
    expected: Any
    explicit: dict[str, Any]
    explicit_expected: Any
    also: dict[str, str] = field(default_factory=dict)  # variables it needs beside it


COMMON_CASES = [
    Case(
        "DOCUMEE_READ_ONLY", "true", lambda o: o.store.read_only, True, {"read_only": False}, False
    ),
    Case("DOCUMEE_CONCURRENCY", "3", lambda o: o.store.concurrency, 3, {"concurrency": 5}, 5),
    Case(
        "DOCUMEE_MAX_OBJECT_SIZE",
        "1234",
        lambda o: o.store.max_object_size,
        1234,
        {"max_object_size": None},  # an explicit None (no limit) wins too
        None,
    ),
    Case(
        "DOCUMEE_BACKEND",
        "fsspec",
        lambda o: type(o.store).__name__,
        "FsspecStore",
        {"backend": "memory"},
        "MemoryStore",
    ),
]

MANAGER_CASES = [
    Case(
        "DOCUMEE_COMPACTION",
        "deferred",
        lambda o: o.compaction and o.compaction.mode,
        "deferred",
        {"compaction": "eager"},
        "eager",
    ),
    Case(
        "DOCUMEE_COMPACTION_MAX_DELTAS",
        "5",
        lambda o: o.compaction and o.compaction.max_deltas,
        5,
        # A mode given as a string takes the environment's thresholds; a policy is whole.
        {"compaction": CompactionPolicy("deferred", max_deltas=9)},
        9,
    ),
    Case(
        "DOCUMEE_COMPACTION_MAX_BYTES",
        "4096",
        lambda o: o.compaction and o.compaction.max_bytes,
        4096,
        {"compaction": CompactionPolicy(max_bytes=100)},
        100,
    ),
    Case(
        "DOCUMEE_JOURNAL_GRACE_SECONDS",
        "60",
        lambda o: o.compaction and o.compaction.grace_seconds,
        60.0,
        {"compaction": CompactionPolicy(grace_seconds=5)},
        5,
    ),
    Case(
        "DOCUMEE_COMPACTION_GROUP_WAIT_SECONDS",
        "0.5",
        lambda o: o.compaction and o.compaction.group_wait_seconds,
        0.5,
        {"compaction": CompactionPolicy(group_wait_seconds=2)},
        2,
    ),
]


def case_id(case: Case) -> str:
    return case.variable


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("case", COMMON_CASES, ids=case_id)
def test_each_common_option_is_honoured_on_every_path(
    case: Case, path: str, clean_env: pytest.MonkeyPatch, recorder: Recorder
) -> None:
    clean_env.setenv(case.variable, case.value)
    opened = open_via(path, "memory://config-paths", clean_env, recorder)
    assert case.seen(opened) == case.expected, opened.output


@pytest.mark.parametrize("path", ["manager(url)", "manager()", "cli", "lambda"])
@pytest.mark.parametrize("case", MANAGER_CASES, ids=case_id)
def test_each_manager_option_is_honoured_on_every_path(
    case: Case, path: str, clean_env: pytest.MonkeyPatch, recorder: Recorder
) -> None:
    clean_env.setenv(case.variable, case.value)
    opened = open_via(path, "memory://config-paths", clean_env, recorder)
    assert case.seen(opened) == case.expected, opened.output


@pytest.mark.parametrize("path", PYTHON_PATHS)
@pytest.mark.parametrize("case", COMMON_CASES, ids=case_id)
def test_explicit_common_options_win(
    case: Case, path: str, clean_env: pytest.MonkeyPatch, recorder: Recorder
) -> None:
    clean_env.setenv(case.variable, case.value)
    opened = open_via(path, "memory://config-paths", clean_env, recorder, **case.explicit)
    assert case.seen(opened) == case.explicit_expected


@pytest.mark.parametrize("path", ["manager(url)", "manager()"])
@pytest.mark.parametrize("case", MANAGER_CASES, ids=case_id)
def test_explicit_manager_options_win(
    case: Case, path: str, clean_env: pytest.MonkeyPatch, recorder: Recorder
) -> None:
    clean_env.setenv(case.variable, case.value)
    opened = open_via(path, "memory://config-paths", clean_env, recorder, **case.explicit)
    assert case.seen(opened) == case.explicit_expected


def test_a_mode_given_as_a_string_takes_the_environments_thresholds(
    clean_env: pytest.MonkeyPatch,
) -> None:
    clean_env.setenv("DOCUMEE_COMPACTION", "eager")
    clean_env.setenv("DOCUMEE_COMPACTION_MAX_DELTAS", "7")
    with PersistenceManager("memory://", compaction="deferred") as pm:
        assert (pm.compaction.mode, pm.compaction.max_deltas) == ("deferred", 7)


def test_the_cli_flags_and_store_win_over_the_environment(
    clean_env: pytest.MonkeyPatch, recorder: Recorder, tmp_path: Path
) -> None:
    clean_env.setenv("DOCUMEE_STORE_URL", "memory://from-the-environment")
    clean_env.setenv("DOCUMEE_READ_ONLY", "false")
    opened = open_via("cli", (tmp_path / "flag").as_uri(), clean_env, recorder)
    assert isinstance(opened.store, LocalStore)
    assert not opened.store.read_only
    result = CliRunner().invoke(cli, ["--read-only", "ls", "--json"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert recorder.made[-1].store.url == "memory://from-the-environment"
    assert recorder.made[-1].store.read_only


# -- the store URL ------------------------------------------------------------------------------


def test_without_a_url_the_default_is_upstreams_directory(
    clean_env: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    clean_env.chdir(tmp_path)
    clean_env.setenv("DOCUMEE_CONCURRENCY", "2")
    with open_store() as store:
        assert isinstance(store, LocalStore)
        assert store.root == tmp_path / DEFAULT_STORE_URL
        assert store.concurrency == 2


def test_an_explicit_url_wins_over_the_environment(
    clean_env: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    clean_env.setenv("DOCUMEE_STORE_URL", "memory://not-this-one")
    with PersistenceManager(tmp_path) as pm:  # a path-like, as upstream passes
        assert isinstance(pm.store, LocalStore)
        assert pm.store.root == tmp_path
    with open_store(tmp_path.as_uri()) as store:
        assert isinstance(store, LocalStore)


def test_an_open_store_is_used_as_it_is(clean_env: pytest.MonkeyPatch) -> None:
    store = MemoryStore("given")
    clean_env.setenv("DOCUMEE_READ_ONLY", "true")
    clean_env.setenv("DOCUMEE_CONCURRENCY", "2")
    assert open_store(store) is store
    with PersistenceManager(store) as pm:
        assert pm.store is store
        assert not store.read_only
        assert store.concurrency != 2
    with pytest.raises(ConfigurationError, match="already open"):
        open_store(store, read_only=True)


# -- where an option does not apply ----------------------------------------------------------


def test_environment_options_that_do_not_apply_are_ignored(
    clean_env: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    clean_env.setenv("DOCUMEE_S3_REGION", "eu-west-1")
    clean_env.setenv("DOCUMEE_S3_ENDPOINT_URL", "http://127.0.0.1:9")
    clean_env.setenv("DOCUMEE_BACKEND", "obstore")  # cannot open a local directory
    with open_store(tmp_path.as_uri()) as store:
        assert isinstance(store, LocalStore)
    with PersistenceManager("memory://") as pm:
        assert isinstance(pm.store, MemoryStore)


@pytest.mark.parametrize("url", ["memory://", "file:///tmp/documee-config-paths"])
def test_explicit_options_that_do_not_apply_are_refused(url: str) -> None:
    with pytest.raises(ConfigurationError, match="region"):
        open_store(url, region="eu-west-1")
    with pytest.raises(ConfigurationError, match="obstore"):
        open_store(url, backend="obstore")


@pytest.mark.parametrize(
    ("options", "name"), [({"concurrency": 0}, "concurrency"), ({"max_object_size": -1}, "max_")]
)
def test_explicit_bad_values_are_configuration_errors(options: dict[str, Any], name: str) -> None:
    with pytest.raises(ConfigurationError, match=name):
        open_store("memory://", **options)


# -- unsupported URLs ------------------------------------------------------------------------------


@pytest.mark.parametrize("path", PATHS)
def test_an_unsupported_scheme_is_refused_before_any_network_access(
    path: str, clean_env: pytest.MonkeyPatch, recorder: Recorder
) -> None:
    started = time.monotonic()
    message = fail_via(path, "ftp://user:hunter2@x/documee", clean_env)
    assert "ftp://" in message
    for scheme in ("s3://", "memory://", "file://"):
        assert scheme in message
    assert "hunter2" not in message
    assert "Errno" not in message
    assert time.monotonic() - started < 5


# -- bad values ----------------------------------------------------------------------------------

BAD_VALUES = [
    ("DOCUMEE_CONCURRENCY", "lots"),
    ("DOCUMEE_CONCURRENCY", "0"),
    ("DOCUMEE_READ_ONLY", "perhaps"),
    ("DOCUMEE_MAX_OBJECT_SIZE", "-1"),
    ("DOCUMEE_MAX_OBJECT_SIZE", "1GB"),
    ("DOCUMEE_BACKEND", "ftp"),
    ("DOCUMEE_S3_ENDPOINT_URL", "localhost:9000"),
    ("DOCUMEE_S3_ROLE_SESSION_NAME", "has space"),
    ("DOCUMEE_S3_SSE", "rot13"),
    ("DOCUMEE_S3_MAX_POOL_CONNECTIONS", "0"),
    ("DOCUMEE_S3_CONNECT_TIMEOUT", "soon"),
    ("DOCUMEE_S3_READ_TIMEOUT", "-1"),
    ("DOCUMEE_S3_RETRY_MODE", "never"),
    ("DOCUMEE_S3_MAX_ATTEMPTS", "0"),
    ("DOCUMEE_S3_ADDRESSING_STYLE", "dns"),
]

MANAGER_BAD_VALUES = [
    ("DOCUMEE_COMPACTION", "lazy"),
    ("DOCUMEE_COMPACTION_MAX_DELTAS", "lots"),
    ("DOCUMEE_COMPACTION_MAX_BYTES", "0"),
    ("DOCUMEE_JOURNAL_GRACE_SECONDS", "-1"),
    ("DOCUMEE_COMPACTION_GROUP_WAIT_SECONDS", "nan"),
]


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize(("variable", "value"), BAD_VALUES)
def test_every_bad_value_names_its_variable_on_every_path(
    variable: str, value: str, path: str, clean_env: pytest.MonkeyPatch
) -> None:
    # A memory store: the S3 variables are checked even where they would not apply.
    clean_env.setenv(variable, value)
    message = fail_via(path, "memory://config-paths", clean_env)
    assert variable in message
    assert f"'{value}'" not in message


@pytest.mark.parametrize("path", ["manager(url)", "manager()", "cli", "lambda"])
@pytest.mark.parametrize(("variable", "value"), MANAGER_BAD_VALUES)
def test_every_bad_manager_value_names_its_variable_on_every_path(
    variable: str, value: str, path: str, clean_env: pytest.MonkeyPatch
) -> None:
    clean_env.setenv(variable, value)
    message = fail_via(path, "memory://config-paths", clean_env)
    assert variable in message
    assert f"'{value}'" not in message


@pytest.mark.parametrize("path", PATHS)
def test_a_bad_value_is_a_configuration_error_with_an_explicit_url(
    path: str, clean_env: pytest.MonkeyPatch
) -> None:
    # The measured defect: with DOCUMEE_STORE_URL set, pydantic's ValidationError escaped.
    clean_env.setenv("DOCUMEE_STORE_URL", "memory://set")
    clean_env.setenv("DOCUMEE_CONCURRENCY", "lots")
    assert "DOCUMEE_CONCURRENCY" in fail_via(path, "memory://config-paths", clean_env)


# -- the S3 options, on the moto server ----------------------------------------------------------


@pytest.fixture
def aws_profiles(aws_credentials: None, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Two profiles with the dummy keys (a profile set explicitly ignores AWS_* keys)."""
    profiles = "".join(
        f"[{name}]\naws_access_key_id = testing\naws_secret_access_key = testing\n"
        for name in ("team", "other")
    )
    (tmp_path / "credentials").write_text(profiles)
    (tmp_path / "config").write_text("[profile team]\n[profile other]\n")
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "credentials"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "config"))


ROLE = "arn:aws:iam::123456789012:role/analyser"

# name: (variable value, expected option, explicit value, variables it needs beside it)
S3_CASES: dict[str, tuple[str, Any, Any, dict[str, str]]] = {
    "endpoint_url": ("", None, "http://127.0.0.1:9", {}),  # the moto server's, see below
    "region": ("eu-west-3", "eu-west-3", "ap-south-1", {}),
    "profile": ("team", "team", "other", {}),
    "role_arn": (ROLE, ROLE, ROLE + "-2", {}),
    "external_id": ("ext-1", "ext-1", "ext-2", {"DOCUMEE_S3_ROLE_ARN": ROLE}),
    "role_session_name": ("job-1", "job-1", "job-2", {}),
    "sse": ("AES256", "AES256", "aws:kms", {}),
    "sse_kms_key_id": ("alias/a", "alias/a", "alias/b", {"DOCUMEE_S3_SSE": "aws:kms"}),
    "expected_bucket_owner": ("123456789012", "123456789012", "210987654321", {}),
    "max_pool_connections": ("7", 7, 9, {}),
    "connect_timeout": ("2.5", 2.5, 1.5, {}),
    "read_timeout": ("30", 30.0, 20.0, {}),
    "retry_mode": ("adaptive", "adaptive", "legacy", {}),
    "max_attempts": ("3", 3, 2, {}),
    "addressing_style": ("path", "path", "virtual", {}),
}


def s3_environment(
    monkeypatch: pytest.MonkeyPatch, s3_endpoint: S3Endpoint, name: str
) -> tuple[str, Any]:
    """Set DOCUMEE_S3_<NAME> (and what it needs); the value the store should show."""
    raw, expected, _, also = S3_CASES[name]
    monkeypatch.setenv("DOCUMEE_S3_ENDPOINT_URL", s3_endpoint.endpoint_url)
    monkeypatch.setenv("AWS_ENDPOINT_URL_STS", s3_endpoint.endpoint_url)  # role_arn: moto's STS
    if name == "endpoint_url":
        return name, s3_endpoint.endpoint_url
    monkeypatch.setenv(f"DOCUMEE_S3_{name.upper()}", raw)
    for variable, value in also.items():
        monkeypatch.setenv(variable, value)
    return name, expected


@pytest.mark.usefixtures("aws_profiles")
@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("name", list(S3_CASES))
def test_each_s3_option_is_honoured_on_every_path(
    name: str,
    path: str,
    s3_endpoint: S3Endpoint,
    clean_env: pytest.MonkeyPatch,
    recorder: Recorder,
) -> None:
    option, expected = s3_environment(clean_env, s3_endpoint, name)
    opened = open_via(path, s3_endpoint.url("config-paths/"), clean_env, recorder)
    assert type(opened.store).__name__ == "S3Store"
    assert getattr(opened.store.options, option) == expected, opened.output  # type: ignore[attr-defined]


@pytest.mark.usefixtures("aws_profiles")
@pytest.mark.parametrize("path", PYTHON_PATHS)
@pytest.mark.parametrize("name", list(S3_CASES))
def test_explicit_s3_options_win(
    name: str,
    path: str,
    s3_endpoint: S3Endpoint,
    clean_env: pytest.MonkeyPatch,
    recorder: Recorder,
) -> None:
    option, _ = s3_environment(clean_env, s3_endpoint, name)
    explicit = S3_CASES[name][2]
    opened = open_via(
        path, s3_endpoint.url("config-paths/"), clean_env, recorder, **{option: explicit}
    )
    assert getattr(opened.store.options, option) == explicit  # type: ignore[attr-defined]


def test_the_endpoint_from_the_environment_is_used_with_an_explicit_url(
    s3_endpoint: S3Endpoint, clean_env: pytest.MonkeyPatch
) -> None:
    """The measured defect: an explicit URL went to real AWS, and a read-only job wrote."""
    clean_env.setenv("DOCUMEE_S3_ENDPOINT_URL", s3_endpoint.endpoint_url)
    with PersistenceManager(s3_endpoint.url("config-paths/")) as pm:
        pm.save_file_hashes("cb", {"/a.py": "ab" * 32})
    assert "config-paths/cb/file_hashes.json" in {
        item["Key"]
        for item in s3_endpoint.client().list_objects_v2(Bucket=s3_endpoint.bucket)["Contents"]
    }
    clean_env.setenv("DOCUMEE_READ_ONLY", "true")
    with PersistenceManager(s3_endpoint.url("config-paths/")) as pm:
        assert pm.store.read_only
        assert pm.get_file_hashes("cb") == {"/a.py": "ab" * 32}
        with pytest.raises(ReadOnlyError):
            pm.save_file_hashes("cb", {})


def test_s3_options_given_as_an_object_count_as_explicit(
    s3_endpoint: S3Endpoint, clean_env: pytest.MonkeyPatch
) -> None:
    from documee_remote.config import S3Options

    clean_env.setenv("DOCUMEE_S3_ENDPOINT_URL", s3_endpoint.endpoint_url)
    clean_env.setenv("DOCUMEE_S3_MAX_ATTEMPTS", "3")
    clean_env.setenv("DOCUMEE_S3_REGION", "eu-west-3")
    given = S3Options(max_attempts=1)
    with open_store(s3_endpoint.url("p/"), options=given) as store:
        assert store.options.max_attempts == 1  # type: ignore[attr-defined]
        assert store.options.region == "eu-west-3"  # type: ignore[attr-defined]


@pytest.mark.usefixtures("aws_profiles")
def test_an_explicit_session_stands_for_the_profile(
    s3_endpoint: S3Endpoint, clean_env: pytest.MonkeyPatch
) -> None:
    import boto3

    clean_env.setenv("DOCUMEE_S3_ENDPOINT_URL", s3_endpoint.endpoint_url)
    clean_env.setenv("DOCUMEE_S3_PROFILE", "team")
    session = boto3.Session(region_name=s3_endpoint.region)
    # boto3 takes a session or a profile, not both: the profile does not fill in.
    with open_store(s3_endpoint.url("p/"), session=session) as store:
        assert store.options.profile is None  # type: ignore[attr-defined]
        store.put("cb/k", b"v")


def test_a_bad_combination_names_the_variables(clean_env: pytest.MonkeyPatch) -> None:
    clean_env.setenv("DOCUMEE_S3_SSE_KMS_KEY_ID", "alias/k")
    with pytest.raises(ConfigurationError, match="DOCUMEE_S3_SSE_KMS_KEY_ID"):
        open_store("s3://bucket/p/", sse="AES256", region="us-east-1")


def test_settings_open_their_own_store(clean_env: pytest.MonkeyPatch) -> None:
    clean_env.setenv("DOCUMEE_CONCURRENCY", "9")
    settings = Settings.load(store_url="memory://mine", read_only=True)
    with settings.open_store() as store:
        assert (store.url, store.read_only, store.concurrency) == ("memory://mine", True, 9)


# -- a closed endpoint port ------------------------------------------------------------------


def closed_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.mark.parametrize("path", ["open_store(url)", "cli"])
def test_a_closed_endpoint_fails_at_once_naming_it(
    path: str, aws_credentials: None, clean_env: pytest.MonkeyPatch
) -> None:
    endpoint = f"http://127.0.0.1:{closed_port()}"
    clean_env.setenv("DOCUMEE_S3_ENDPOINT_URL", endpoint)
    started = time.monotonic()
    if path == "cli":
        result = CliRunner().invoke(cli, ["--store", "s3://bkt/p/", "ls"], catch_exceptions=False)
        assert result.exit_code != 0
        message = result.output
    else:
        with open_store("s3://bkt/p/") as store, pytest.raises(ServiceUnavailableError) as info:
            store.get("cb/analysis.json")
        message = str(info.value)
    elapsed = time.monotonic() - started
    assert endpoint in message
    assert "DOCUMEE_S3_ENDPOINT_URL" in message
    assert "connection refused" in message
    assert elapsed < 3, elapsed  # botocore's 5 attempts took 6-11 s


def test_a_refusal_after_the_endpoint_answered_is_still_retried(
    aws_credentials: None, clean_env: pytest.MonkeyPatch
) -> None:
    """Failing fast is for endpoints that never answered: a restart mid-job is retried."""
    import http.server
    import threading

    class NotFound(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(404)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), NotFound)
    port = server.server_address[1]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    store = open_store("s3://bkt/p/", endpoint_url=f"http://127.0.0.1:{port}", max_attempts=2)
    sends: list[str] = []
    store.client.meta.events.register("before-send.s3", lambda **_: sends.append("x"))  # type: ignore[attr-defined]
    try:
        with pytest.raises(DocumeeRemoteError):  # any answer will do: the endpoint answered
            store.get("cb/analysis.json")
        assert sends == ["x"]
        server.shutdown()
        server.server_close()
        thread.join()
        sends.clear()
        with pytest.raises(ServiceUnavailableError, match="after retries"):
            store.get("cb/analysis.json")
        assert len(sends) == 2  # every attempt, as configured
    finally:
        store.close()
