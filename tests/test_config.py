"""S3Options, Settings and the boto3 helpers of documee_remote.config."""

from __future__ import annotations

import copy
import json
import math
import pickle
import subprocess
import sys
import textwrap
from datetime import UTC, datetime, timedelta
from typing import Any, get_type_hints

import boto3
import pytest
from botocore.credentials import DeferredRefreshableCredentials
from hypothesis import given
from hypothesis import strategies as st
from pydantic import BaseModel, ValidationError

from documee_remote.config import (
    S3Options,
    S3OptionsDict,
    S3OptionsModel,
    Settings,
    assume_role_credentials,
    build_client_config,
    build_s3_client,
    build_session,
)
from documee_remote.errors import ConfigurationError
from documee_remote.stores import MemoryStore
from documee_remote.testing.fixtures import TEST_REGION, S3Endpoint

EXPECTED_FIELDS = {
    "endpoint_url": None,
    "region": None,
    "profile": None,
    "role_arn": None,
    "external_id": None,
    "role_session_name": "documee-remote",
    "sse": None,
    "sse_kms_key_id": None,
    "expected_bucket_owner": None,
    "max_pool_connections": None,
    "connect_timeout": 5.0,
    "read_timeout": 60.0,
    "retry_mode": "standard",
    "max_attempts": 5,
    "addressing_style": None,
}

SECRET = "ext-id-that-must-stay-secret"


# -- S3Options ------------------------------------------------------------------------------------


def test_s3_options_has_exactly_the_agreed_fields_and_defaults() -> None:
    assert S3Options().model_dump() == EXPECTED_FIELDS
    assert list(S3Options.model_fields) == list(EXPECTED_FIELDS)


def test_the_typed_kwargs_mirror_the_model() -> None:
    # S3OptionsDict and the class annotations are written out for mypy; the field
    # table is what validates: all three must say the same.
    types = {name: info.annotation for name, info in S3Options.model_fields.items()}
    assert get_type_hints(S3OptionsDict) == types
    hints = get_type_hints(S3Options)
    assert {name: hints[name] for name in types} == types


def test_the_pydantic_model_is_the_same_model() -> None:
    assert issubclass(S3OptionsModel, BaseModel)
    assert S3OptionsModel.__name__ == "S3Options"  # the title of its ValidationErrors
    assert list(S3OptionsModel.model_fields) == list(S3Options.model_fields)
    for name, info in S3OptionsModel.model_fields.items():
        spec = S3Options.model_fields[name]
        assert info.annotation == spec.annotation, name
        assert info.default == spec.default, name
        assert info.description == spec.description, name
        assert info.repr == spec.repr, name
    assert S3OptionsModel().model_dump() == EXPECTED_FIELDS
    schema = S3Options.model_json_schema()
    assert schema == S3OptionsModel.model_json_schema()
    assert set(schema["properties"]) == set(EXPECTED_FIELDS)
    assert schema["properties"]["max_attempts"]["minimum"] == 1


def test_every_option_is_documented() -> None:
    for name, info in S3Options.model_fields.items():
        assert info.description, name
        assert name in (S3Options.__doc__ or ""), name


def test_s3_options_are_frozen() -> None:
    options = S3Options(region="eu-west-1")
    with pytest.raises(ValidationError):
        options.region = "us-east-1"  # type: ignore[misc]
    assert hash(options) == hash(S3Options(region="eu-west-1"))


def test_external_id_is_kept_out_of_reprs() -> None:
    options = S3Options(role_arn="arn:aws:iam::123456789012:role/r", external_id=SECRET)
    assert options.external_id == SECRET
    for text in (repr(options), str(options)):
        assert SECRET not in text
        assert "role_arn" in text


@pytest.mark.parametrize(
    ("options", "field"),
    [
        ({"sse": "aes256"}, "sse"),
        ({"sse_kms_key_id": "k"}, "sse_kms_key_id"),
        ({"sse": "AES256", "sse_kms_key_id": "k"}, "sse_kms_key_id"),
        ({"external_id": "x"}, "external_id"),
        ({"retry_mode": "sometimes"}, "retry_mode"),
        ({"addressing_style": "dns"}, "addressing_style"),
        ({"max_attempts": 0}, "max_attempts"),
        ({"max_pool_connections": 0}, "max_pool_connections"),
        ({"connect_timeout": 0}, "connect_timeout"),
        ({"read_timeout": -1}, "read_timeout"),
        ({"endpoint_url": "127.0.0.1:9000"}, "endpoint_url"),
        ({"endpoint_url": "ftp://host"}, "endpoint_url"),
        ({"endpoint_url": "http://host/?x=1"}, "endpoint_url"),
        ({"role_session_name": "has space"}, "role_session_name"),
        ({"role_session_name": "x"}, "role_session_name"),
        ({"regoin": "eu-west-1"}, "regoin"),
    ],
)
def test_invalid_options_are_refused_naming_the_field(options: dict[str, Any], field: str) -> None:
    with pytest.raises(ValidationError):
        S3Options(**options)
    with pytest.raises(ConfigurationError, match=field):
        S3Options.from_options(options)


def test_option_errors_never_echo_the_value() -> None:
    with pytest.raises(ConfigurationError) as info:
        S3Options.from_options({"endpoint_url": f"http://user:{SECRET}@host:9000"})
    assert SECRET not in str(info.value)
    assert "endpoint_url" in str(info.value)
    with pytest.raises(ConfigurationError) as info:
        S3Options.from_options({"external_id": SECRET})  # no role_arn
    assert SECRET not in str(info.value)
    assert info.value.__cause__ is None  # pydantic's error (which repeats inputs) is dropped


def outcome(validate: Any, options: Any) -> tuple[Any, ...]:
    """What validating ``options`` gives: the values with their types and the fields
    set, or the errors (type, location, message)."""
    try:
        result = validate(options)
    except ValidationError as exc:
        errors = exc.errors(include_url=False, include_input=False, include_context=False)
        return ("invalid", exc.title, [(e["type"], e["loc"], e["msg"]) for e in errors])
    values = {
        name: (repr(getattr(result, name)), type(getattr(result, name))) for name in EXPECTED_FIELDS
    }
    return ("valid", values, set(result.model_fields_set))


# Values of every type and edge the hand-written validation must treat as pydantic
# does: accepted as they are, coerced by pydantic ("3", True, 2.0, b"x"), or refused.
PROBES: list[Any] = [
    None,
    "",
    "x",
    "3",
    "2.5",
    "0",
    "-1",
    "1e3",
    " 4 ",
    "AES256",
    "aes256",
    "aws:kms",
    "path",
    "auto",
    "virtual",
    "dns",
    "standard",
    "adaptive",
    "legacy",
    "http://h:9",
    "https://h/p",
    "ftp://h",
    "http://u:p@h",
    "http://h/?q=1",
    "http://h#f",
    "http://",
    "documee-remote",
    "a",
    "has space",
    "x" * 64,
    "x" * 65,
    0,
    1,
    2,
    -1,
    5,
    2**53,
    10**20,
    10**400,
    0.0,
    0.5,
    1.0,
    2.5,
    -0.1,
    math.inf,
    -math.inf,
    math.nan,
    True,
    False,
    b"x",
    b"3",
    bytearray(b"x"),
    [],
    {},
    1 + 0j,
]


@pytest.mark.parametrize("name", list(EXPECTED_FIELDS))
def test_hand_validation_agrees_with_pydantic_for_every_field(name: str) -> None:
    for value in PROBES:
        options = {name: value}
        assert outcome(S3Options.model_validate, options) == outcome(
            S3OptionsModel.model_validate, options
        ), options


@pytest.mark.parametrize(
    "options",
    [
        {},
        {"sse": "aws:kms", "sse_kms_key_id": "k"},
        {"sse": "AES256", "sse_kms_key_id": "k"},
        {"sse_kms_key_id": "k"},
        {"external_id": "e"},
        {"external_id": "e", "role_arn": "arn:aws:iam::1:role/r"},
        {"external_id": None},
        {"regoin": "x"},
        {"regoin": "x", "max_attempts": 0},
        {"max_attempts": 0, "sse_kms_key_id": "k"},  # field errors hide combination errors
        {"region": None, "max_attempts": 5, "connect_timeout": 5.0},  # defaults given: "set"
        {1: "x"},
        ["region"],
        "region=x",
        None,
    ],
)
def test_hand_validation_agrees_with_pydantic_on_combinations(options: Any) -> None:
    assert outcome(S3Options.model_validate, options) == outcome(
        S3OptionsModel.model_validate, options
    )


_ANY_VALUE = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(),
    st.text(max_size=8),
    st.sampled_from(PROBES[:31]),
)


@given(st.dictionaries(st.sampled_from([*EXPECTED_FIELDS, "regoin"]), _ANY_VALUE, max_size=5))
def test_hand_validation_agrees_with_pydantic_on_random_options(options: dict[str, Any]) -> None:
    assert outcome(S3Options.model_validate, options) == outcome(
        S3OptionsModel.model_validate, options
    )


def test_options_behave_as_frozen_values() -> None:
    options = S3Options(region="eu-west-1", max_attempts=5)
    assert options.model_fields_set == {"region", "max_attempts"}
    assert options.model_dump(exclude_unset=True) == {"region": "eu-west-1", "max_attempts": 5}
    assert S3Options.model_validate(options) is options
    for clone in (copy.copy(options), copy.deepcopy(options), pickle.loads(pickle.dumps(options))):
        assert clone == options
        assert hash(clone) == hash(options)
        assert clone.model_fields_set == options.model_fields_set
    assert options != S3Options(region="eu-west-2")
    assert options == S3Options(region="eu-west-1")  # the fields given do not matter
    assert options != object()
    with pytest.raises(ValidationError):
        del options.region
    assert not hasattr(options, "__dict__")  # no room for typos: options.regoin = ...


def test_valid_options_are_validated_without_pydantic() -> None:
    # The store-opening path: valid options of every kind must not need pydantic.
    code = """
        import sys
        from documee_remote.config import S3Options
        options = S3Options.from_options({
            "endpoint_url": "https://minio.example:9000", "region": "eu-west-3",
            "profile": "team", "role_arn": "arn:aws:iam::1:role/r", "external_id": "ext",
            "role_session_name": "job-1", "sse": "aws:kms", "sse_kms_key_id": "alias/k",
            "expected_bucket_owner": "123456789012", "max_pool_connections": 32,
            "connect_timeout": 2, "read_timeout": 30.5, "retry_mode": "adaptive",
            "max_attempts": 3, "addressing_style": "path",
        })
        S3Options(region=None, sse=None)
        assert options.connect_timeout == 2.0 and type(options.connect_timeout) is float
        print(sorted(m for m in sys.modules if m.startswith("pydantic")))
    """
    result = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert result.stdout.strip() == "[]"


def test_valid_options_round_trip() -> None:
    options = S3Options(
        endpoint_url="https://minio.example:9000",
        sse="aws:kms",
        sse_kms_key_id="alias/documee",
        addressing_style="path",
        max_attempts=1,
    )
    assert S3Options.from_options(options.model_dump()) == options


# -- client configuration -------------------------------------------------------------------------


def test_client_config_defaults() -> None:
    config = build_client_config(S3Options(), max_pool_connections=12)
    assert config.max_pool_connections == 12
    assert config.connect_timeout == 5.0
    assert config.read_timeout == 60.0
    # total_max_attempts counts the first attempt, like AWS_MAX_ATTEMPTS.
    assert config.retries == {"mode": "standard", "total_max_attempts": 5}
    assert config.s3 is None
    assert "documee-remote" in (config.user_agent_extra or "")


def test_client_config_from_options() -> None:
    options = S3Options(
        max_pool_connections=3,
        connect_timeout=1,
        read_timeout=2,
        retry_mode="legacy",
        max_attempts=1,
        addressing_style="virtual",
    )
    config = build_client_config(options, max_pool_connections=12)
    assert config.max_pool_connections == 3
    assert (config.connect_timeout, config.read_timeout) == (1, 2)
    assert config.retries == {"mode": "legacy", "total_max_attempts": 1}
    assert config.s3 == {"addressing_style": "virtual"}


def test_build_s3_client_uses_region_and_endpoint(aws_credentials: None) -> None:
    client = build_s3_client(
        S3Options(region="eu-central-1", endpoint_url="http://127.0.0.1:9"),
        max_pool_connections=4,
    )
    try:
        assert client.meta.region_name == "eu-central-1"
        assert client.meta.endpoint_url == "http://127.0.0.1:9"
        assert client.meta.config.max_pool_connections == 4
    finally:
        client.close()


def test_region_falls_back_on_boto3_resolution(
    aws_credentials: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AWS_DEFAULT_REGION", "ap-southeast-2")
    client = build_s3_client(S3Options())
    try:
        assert client.meta.region_name == "ap-southeast-2"
    finally:
        client.close()


# -- sessions and credentials ---------------------------------------------------------------------


def test_an_explicit_session_is_used_as_is(aws_credentials: None) -> None:
    session = boto3.Session(aws_access_key_id="AKIDX", aws_secret_access_key="sx")
    assert build_session(S3Options(), session=session) is session
    with pytest.raises(ConfigurationError, match="not both"):
        build_session(S3Options(profile="p"), session=session)


def test_a_profile_that_does_not_exist_is_a_configuration_error(aws_credentials: None) -> None:
    with pytest.raises(ConfigurationError, match="no-such-profile"):
        build_s3_client(S3Options(profile="no-such-profile"))


def test_a_profile_from_the_config_file_is_used(
    aws_credentials: None, monkeypatch: pytest.MonkeyPatch, tmp_path: Any
) -> None:
    config = tmp_path / "config"
    config.write_text("[profile team]\nregion = eu-north-1\n")
    monkeypatch.setenv("AWS_CONFIG_FILE", str(config))
    monkeypatch.delenv("AWS_DEFAULT_REGION")  # boto3 lets the variable win over the profile
    client = build_s3_client(S3Options(profile="team"))
    try:
        assert client.meta.region_name == "eu-north-1"
    finally:
        client.close()


def test_role_arn_gives_deferred_refreshable_credentials(aws_credentials: None) -> None:
    session = build_session(S3Options(role_arn="arn:aws:iam::123456789012:role/r"))
    credentials = session.get_credentials()
    assert isinstance(credentials, DeferredRefreshableCredentials)
    assert credentials.method == "assume-role"
    assert session.region_name == TEST_REGION  # kept from the base session


@pytest.fixture
def moto_role(s3_endpoint: S3Endpoint) -> str:
    iam = boto3.client("iam", endpoint_url=s3_endpoint.endpoint_url, region_name=TEST_REGION)
    trust = {
        "Version": "2012-10-17",
        "Statement": [{"Effect": "Allow", "Principal": {"AWS": "*"}, "Action": "sts:AssumeRole"}],
    }
    arn = iam.create_role(RoleName="reader", AssumeRolePolicyDocument=json.dumps(trust))["Role"][
        "Arn"
    ]
    iam.close()
    return arn


def test_assume_role_credentials_refresh_when_expired(
    s3_endpoint: S3Endpoint, moto_role: str
) -> None:
    credentials = assume_role_credentials(
        boto3.Session(region_name=TEST_REGION),
        moto_role,
        role_session_name="nightly",
        external_id=SECRET,
        sts_endpoint_url=s3_endpoint.endpoint_url,
        duration_seconds=3600,
    )
    first = credentials.get_frozen_credentials()
    assert first.access_key.startswith("ASIA")
    assert first.token
    again = credentials.get_frozen_credentials()
    assert again.access_key == first.access_key  # not expired: no new call
    credentials._expiry_time = datetime.now(UTC) + timedelta(minutes=5)  # inside the window
    second = credentials.get_frozen_credentials()
    assert second.access_key != first.access_key  # a new AssumeRole call


# -- Settings -------------------------------------------------------------------------------------


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    import os

    for name in list(os.environ):
        if name.startswith("DOCUMEE_"):
            monkeypatch.delenv(name)
    return monkeypatch


S3_ENV_VALUES: dict[str, tuple[str, Any]] = {
    "endpoint_url": ("http://127.0.0.1:9000", "http://127.0.0.1:9000"),
    "region": ("eu-west-3", "eu-west-3"),
    "profile": ("team", "team"),
    "role_arn": ("arn:aws:iam::1:role/r", "arn:aws:iam::1:role/r"),
    "external_id": ("ext", "ext"),
    "role_session_name": ("job-1", "job-1"),
    "sse": ("aws:kms", "aws:kms"),
    "sse_kms_key_id": ("alias/k", "alias/k"),
    "expected_bucket_owner": ("123456789012", "123456789012"),
    "max_pool_connections": ("32", 32),
    "connect_timeout": ("2.5", 2.5),
    "read_timeout": ("30", 30.0),
    "retry_mode": ("adaptive", "adaptive"),
    "max_attempts": ("3", 3),
    "addressing_style": ("path", "path"),
}


def test_every_s3_option_has_an_environment_variable() -> None:
    assert set(S3_ENV_VALUES) == set(S3Options.model_fields)
    for name in S3Options.model_fields:
        field = Settings.model_fields["s3_" + name]
        assert f"DOCUMEE_S3_{name.upper()}" in (field.description or "")


def test_every_setting_documents_its_variable() -> None:
    for name, field in Settings.model_fields.items():
        assert (field.description or "").startswith(f"DOCUMEE_{name.upper()}:"), name
        assert f"DOCUMEE_{name.upper()}" in (Settings.__doc__ or "") or name.startswith("s3_")


@pytest.mark.parametrize("name", list(S3_ENV_VALUES))
def test_s3_variables_are_read(clean_env: pytest.MonkeyPatch, name: str) -> None:
    raw, expected = S3_ENV_VALUES[name]
    clean_env.setenv(f"DOCUMEE_S3_{name.upper()}", raw)
    assert Settings.load().s3_options() == {name: expected}


def test_all_variables_together_make_open_store_options(clean_env: pytest.MonkeyPatch) -> None:
    clean_env.setenv("DOCUMEE_STORE_URL", "s3://bkt/analyses")
    clean_env.setenv("DOCUMEE_BACKEND", "s3")
    clean_env.setenv("DOCUMEE_CONCURRENCY", "8")
    clean_env.setenv("DOCUMEE_READ_ONLY", "true")
    clean_env.setenv("DOCUMEE_MAX_OBJECT_SIZE", "1048576")
    for name, (raw, _) in S3_ENV_VALUES.items():
        clean_env.setenv(f"DOCUMEE_S3_{name.upper()}", raw)
    settings = Settings.load()
    assert settings.store_url == "s3://bkt/analyses"
    options = settings.store_options()
    assert options == {
        "backend": "s3",
        "concurrency": 8,
        "read_only": True,
        "max_object_size": 1048576,
        **{name: value for name, (_, value) in S3_ENV_VALUES.items()},
    }
    S3Options(**{k: v for k, v in options.items() if k in S3Options.model_fields})


def test_unset_variables_leave_the_defaults(clean_env: pytest.MonkeyPatch) -> None:
    settings = Settings.load()
    assert settings.store_url is None
    assert settings.store_options() == {}


def test_aws_variables_are_left_to_boto3(clean_env: pytest.MonkeyPatch) -> None:
    clean_env.setenv("AWS_REGION", "eu-west-1")
    clean_env.setenv("AWS_PROFILE", "someone")
    clean_env.setenv("AWS_ENDPOINT_URL_S3", "http://127.0.0.1:1")
    assert Settings.load().s3_options() == {}


def test_s3_options_are_not_passed_to_local_stores(clean_env: pytest.MonkeyPatch) -> None:
    clean_env.setenv("DOCUMEE_STORE_URL", "memory://x")
    clean_env.setenv("DOCUMEE_S3_REGION", "eu-west-1")
    clean_env.setenv("DOCUMEE_CONCURRENCY", "2")
    settings = Settings.load()
    assert settings.store_options() == {"concurrency": 2}
    with settings.open_store() as store:
        assert isinstance(store, MemoryStore)
        assert store.concurrency == 2


def test_open_store_without_a_url_is_a_configuration_error(clean_env: pytest.MonkeyPatch) -> None:
    with pytest.raises(ConfigurationError, match="DOCUMEE_STORE_URL"):
        Settings.load().open_store()


def test_open_store_from_the_environment_opens_s3(
    clean_env: pytest.MonkeyPatch, s3_endpoint: S3Endpoint
) -> None:
    from documee_remote.stores.s3 import S3Store

    clean_env.setenv("DOCUMEE_STORE_URL", s3_endpoint.url("env-root"))
    clean_env.setenv("DOCUMEE_S3_ENDPOINT_URL", s3_endpoint.endpoint_url)
    clean_env.setenv("DOCUMEE_S3_MAX_ATTEMPTS", "2")
    with Settings.load().open_store() as store:
        assert isinstance(store, S3Store)
        assert store.options.max_attempts == 2
        store.put("cb/k", b"v")
        assert store.get("cb/k").data == b"v"


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("DOCUMEE_CONCURRENCY", "0"),
        ("DOCUMEE_CONCURRENCY", "many"),
        ("DOCUMEE_READ_ONLY", "perhaps"),
        ("DOCUMEE_MAX_OBJECT_SIZE", "-1"),
        ("DOCUMEE_BACKEND", "ftp"),
        ("DOCUMEE_S3_SSE", "rot13"),
        ("DOCUMEE_S3_MAX_ATTEMPTS", "0"),
        ("DOCUMEE_S3_RETRY_MODE", "never"),
    ],
)
def test_invalid_variables_name_the_variable_not_the_value(
    clean_env: pytest.MonkeyPatch, variable: str, value: str
) -> None:
    clean_env.setenv(variable, value)
    with pytest.raises(ConfigurationError) as info:
        Settings.load()
    assert variable in str(info.value)
    assert f"'{value}'" not in str(info.value)


def test_invalid_combinations_name_the_variables(clean_env: pytest.MonkeyPatch) -> None:
    clean_env.setenv("DOCUMEE_S3_EXTERNAL_ID", SECRET)
    settings = Settings.load()
    assert SECRET not in repr(settings)
    with pytest.raises(ConfigurationError) as info:
        settings.store_options()
    assert "external_id" in str(info.value).lower()
    assert SECRET not in str(info.value)


def test_settings_are_read_without_pydantic() -> None:
    # Every store opening reads the environment (a Lambda cold start too): by hand.
    code = """
        import os, sys
        os.environ.update({
            "DOCUMEE_STORE_URL": "s3://bkt/p", "DOCUMEE_BACKEND": "s3",
            "DOCUMEE_CONCURRENCY": "8", "DOCUMEE_READ_ONLY": "yes",
            "DOCUMEE_MAX_OBJECT_SIZE": "1024", "DOCUMEE_S3_CONNECT_TIMEOUT": "2",
            "DOCUMEE_S3_MAX_ATTEMPTS": "3", "DOCUMEE_S3_SSE": "aws:kms",
            "DOCUMEE_S3_SSE_KMS_KEY_ID": "alias/k",
            "DOCUMEE_S3_ENDPOINT_URL": "http://127.0.0.1:9000",
        })
        from documee_remote.config import Settings
        options = Settings.load().store_options()
        assert options["connect_timeout"] == 2.0 and options["read_only"] is True, options
        print(sorted(m for m in sys.modules if m.startswith("pydantic")))
    """
    result = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert result.stdout.strip() == "[]"


@pytest.mark.parametrize(
    ("raw", "expected"),
    [("true", True), ("Yes", True), ("1", True), (" on ", True), ("false", False), ("0", False)],
)
def test_boolean_words(clean_env: pytest.MonkeyPatch, raw: str, expected: bool) -> None:
    clean_env.setenv("DOCUMEE_READ_ONLY", raw)
    assert Settings.load().read_only is expected


def test_an_empty_variable_counts_as_unset(clean_env: pytest.MonkeyPatch) -> None:
    clean_env.setenv("DOCUMEE_CONCURRENCY", "")
    clean_env.setenv("DOCUMEE_S3_ENDPOINT_URL", "")
    assert Settings.load() == Settings.from_environ({})
    assert Settings.load().store_options() == {}


def test_settings_are_immutable_values(clean_env: pytest.MonkeyPatch) -> None:
    settings = Settings.from_environ({"DOCUMEE_CONCURRENCY": "4"}, read_only=True)
    assert (settings.concurrency, settings.read_only) == (4, True)
    assert settings == Settings.from_environ({"DOCUMEE_CONCURRENCY": "4", "DOCUMEE_READ_ONLY": "1"})
    assert hash(settings) == hash(Settings.load(concurrency=4, read_only=True))
    with pytest.raises(AttributeError):
        settings.concurrency = 5  # type: ignore[misc]
    with pytest.raises(ConfigurationError, match="regoin"):
        Settings.load(regoin="x")


def test_every_problem_is_named_at_once(clean_env: pytest.MonkeyPatch) -> None:
    clean_env.setenv("DOCUMEE_CONCURRENCY", "lots")
    clean_env.setenv("DOCUMEE_S3_MAX_ATTEMPTS", "0")
    with pytest.raises(ConfigurationError) as info:
        Settings.load()
    assert "DOCUMEE_CONCURRENCY" in str(info.value)
    assert "DOCUMEE_S3_MAX_ATTEMPTS" in str(info.value)


# -- imports --------------------------------------------------------------------------------------


def test_config_works_without_boto3_until_a_client_is_needed() -> None:
    code = """
        import sys
        sys.modules["boto3"] = None
        from documee_remote.config import S3Options, Settings, build_client_config
        from documee_remote.errors import MissingDependencyError
        options = S3Options(region="eu-west-1")
        Settings()
        try:
            build_client_config(options, max_pool_connections=1)
        except MissingDependencyError as exc:
            print("HINT", exc)
    """
    result = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "pip install 'documee-remote[s3]'" in result.stdout
