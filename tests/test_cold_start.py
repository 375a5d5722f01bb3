"""Cold start: what `import documee_remote` and opening an s3:// store import.

Not a timing test (timings are in ``benchmarks/coldstart.py``): these pin down
which optional or heavy modules each step is allowed to import, in a fresh
interpreter each.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest

AWS_ENV = {
    "AWS_ACCESS_KEY_ID": "x",
    "AWS_SECRET_ACCESS_KEY": "x",
    "AWS_EC2_METADATA_DISABLED": "true",
    "AWS_CONFIG_FILE": os.devnull,
    "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
}


def imported_after(code: str, watched: list[str]) -> list[str]:
    """Run ``code`` in a fresh interpreter; the ``watched`` modules it left imported."""
    script = textwrap.dedent(code) + (
        f"\nimport json, sys; print(json.dumps([m for m in {watched!r} if m in sys.modules]))\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "DOCUMEE_"))}
    result = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        timeout=120,
        env={**env, **AWS_ENV},
        check=True,
    )
    found: list[str] = json.loads(result.stdout.strip().splitlines()[-1])
    return found


#: Optional extras (fsspec/s3fs, the CLI's click/rich, obstore) and pydantic, which
#: only the Documee models need: none of them on the way to an open s3:// store.
NOT_AT_START_UP = [
    "pydantic",
    "pydantic_core",
    "pydantic_settings",
    "s3fs",
    "fsspec",
    "aiobotocore",
    "aiohttp",
    "obstore",
    "rich",
    "click",
]


def test_import_documee_remote_imports_nothing_heavy() -> None:
    watched = [
        *NOT_AT_START_UP,
        "boto3",
        "botocore",
        "documee_remote.manager",
        "documee_remote.codec",
        "documee_remote.models",
        "documee_remote.config",
    ]
    assert imported_after("import documee_remote", watched) == []


OPEN_PATH_WATCHED = [
    *NOT_AT_START_UP,
    "documee_remote.manager",
    "documee_remote.codec",
    "documee_remote.models",
    "documee_remote.leases",
    "documee_remote.integrity",
    "documee_remote.config._model",
]


def test_opening_an_s3_store_imports_only_what_it_needs() -> None:
    code = """
        import documee_remote
        store = documee_remote.open_store("s3://bucket/prefix/", region="us-east-1")
        assert type(store).__name__ == "S3Store"
    """
    assert imported_after(code, OPEN_PATH_WATCHED) == []


def test_every_s3_option_is_validated_without_pydantic() -> None:
    # Options of each kind (str, literal, int, float given as an int, a role with its
    # external id) from keyword arguments, and the region from the environment as a
    # Lambda has it: the hand-written validation must accept them all by itself.
    code = """
        import os
        os.environ["AWS_REGION"] = "eu-west-1"
        import documee_remote
        store = documee_remote.open_store(
            "s3://bucket/prefix/",
            endpoint_url="https://s3.eu-west-1.amazonaws.com",
            role_arn="arn:aws:iam::123456789012:role/analyser",
            external_id="ext",
            role_session_name="lambda-1",
            sse="aws:kms",
            sse_kms_key_id="alias/documee",
            expected_bucket_owner="123456789012",
            max_pool_connections=8,
            connect_timeout=2,
            read_timeout=30.0,
            retry_mode="adaptive",
            max_attempts=3,
            addressing_style="virtual",
            concurrency=8,
            read_only=True,
        )
        assert store.options.connect_timeout == 2.0
    """
    assert imported_after(code, OPEN_PATH_WATCHED) == []


def test_invalid_options_still_fail_as_before() -> None:
    # The slow path: pydantic is imported only to name what is wrong.
    code = """
        import documee_remote
        from documee_remote.errors import ConfigurationError
        try:
            documee_remote.open_store("s3://bucket/prefix/", max_attempts=0)
        except ConfigurationError as exc:
            assert "max_attempts" in str(exc), exc
        else:
            raise AssertionError("max_attempts=0 accepted")
    """
    assert imported_after(code, ["pydantic", "documee_remote.config._model"]) == [
        "pydantic",
        "documee_remote.config._model",
    ]


def test_a_persistence_manager_imports_no_optional_extra() -> None:
    # PersistenceManager needs the Documee models, hence pydantic; the extras, never.
    code = """
        import documee_remote
        pm = documee_remote.PersistenceManager("s3://bucket/prefix/", region="us-east-1")
        assert type(pm.store).__name__ == "S3Store"
    """
    extras = [m for m in NOT_AT_START_UP if not m.startswith("pydantic")]
    assert imported_after(code, [*extras, "pydantic_settings"]) == []


def test_lazy_names_resolve_to_the_real_objects() -> None:
    import documee_remote
    from documee_remote import config, manager, models, retry, stores

    assert documee_remote.PersistenceManager is manager.PersistenceManager
    assert documee_remote.Transaction is manager.Transaction
    assert documee_remote.CodebaseAnalysis is models.CodebaseAnalysis
    assert documee_remote.FileAnalysis is models.FileAnalysis
    assert documee_remote.RetryPolicy is retry.RetryPolicy
    assert documee_remote.TransactionStats is retry.TransactionStats
    assert documee_remote.Store is stores.Store
    assert documee_remote.open_store is stores.open_store
    assert set(documee_remote.__all__) <= set(dir(documee_remote))
    from documee_remote.config.settings import Settings

    assert config.Settings is Settings
    with pytest.raises(AttributeError):
        _ = documee_remote.no_such_name
    with pytest.raises(AttributeError):
        _ = config.no_such_name


def test_models_still_validate_after_deferred_build() -> None:
    # The models build their validators on first use: a fresh interpreter checks
    # that first use validates (and rejects) as before.
    code = """
        import pydantic
        from documee_remote.models import FunctionInfo
        try:
            FunctionInfo.model_validate({"name": 1})
        except pydantic.ValidationError:
            print("rejected")
    """
    result = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert result.stdout.strip() == "rejected"
