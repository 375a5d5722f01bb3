"""scripts/build_lambda.py: the deployment zip's contents, determinism, and that it imports."""

from __future__ import annotations

import importlib.util
import json
import os
import platform
import subprocess
import sys
import zipfile
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "scripts" / "build_lambda.py"
#: Top-level names that must never be in the zip (by default).
ABSENT = {"moto", "s3fs", "aiobotocore", "aiohttp", "fsspec", "click", "rich", "pytest", "tests"}
RUNTIME = {"boto3", "botocore", "s3transfer", "jmespath", "urllib3", "dateutil", "six.py"}


def load_script() -> ModuleType:
    spec = importlib.util.spec_from_file_location("build_lambda", SCRIPT)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


build_lambda = load_script()


def test_zip_is_deterministic_and_filtered(tmp_path: Path) -> None:
    src = tmp_path / "src"
    files = {
        "documee_remote/aws_lambda.py": b"x = 1\n",
        "documee_remote/__pycache__/aws_lambda.cpython-312.pyc": b"\0",
        "documee_remote/testing/fixtures.py": b"import pytest\n",
        "bin/dotenv": b"#!/bin/sh\n",
        "pydantic_core/_pydantic_core.so": b"\x7fELF",
        "a_first.py": b"",
        "z/deep/er.py": b"y = 2\n",
    }
    for rel, data in files.items():
        path = src / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    one, two = tmp_path / "one.zip", tmp_path / "two.zip"
    names = build_lambda.write_zip(src, one)
    for path in src.rglob("*"):
        if path.is_file():
            os.utime(path, (1_700_000_000, 1_700_000_000))  # other mtimes, same zip
    build_lambda.write_zip(src, two)
    assert one.read_bytes() == two.read_bytes()
    assert names == [
        "a_first.py",
        "documee_remote/aws_lambda.py",
        "pydantic_core/_pydantic_core.so",
        "z/deep/er.py",
    ]
    with zipfile.ZipFile(one) as zf:
        infos = zf.infolist()
        assert [i.filename for i in infos] == names
        assert {i.date_time for i in infos} == {(1980, 1, 1, 0, 0, 0)}
        assert {(i.external_attr >> 16) & 0o777 for i in infos} == {0o644}
        assert zf.read("z/deep/er.py") == b"y = 2\n"
    assert not (tmp_path / "one.zip.partial").exists()


def test_filter_and_names() -> None:
    assert build_lambda.normalise("Python_Dateutil") == "python-dateutil"
    assert build_lambda.included("pydantic/main.py")
    assert not build_lambda.included("pydantic/__pycache__/main.cpython-312.pyc")
    assert not build_lambda.included("documee_remote/testing/moto_server.py")
    assert not build_lambda.included("bin/dotenv")
    assert not build_lambda.included("x/stale.pyc")
    assert {"boto3", "botocore", "s3transfer", "jmespath", "urllib3", "python-dateutil"} <= (
        build_lambda.RUNTIME_PROVIDED
    )
    assert "moto" in build_lambda.FORBIDDEN
    # The CLI ships with the package but not in the zip, nor do its dependencies.
    assert {"click", "rich"} <= build_lambda.CLI_ONLY
    assert not build_lambda.included("documee_remote/cli.py")
    assert not build_lambda.included("documee_remote/cli/__init__.py")
    assert build_lambda.included("documee_remote/aws_lambda.py")


def build(out: Path, *args: str) -> str:
    result = subprocess.run(
        [sys.executable, os.fspath(SCRIPT), "--out", os.fspath(out), "--quiet", *args],
        check=True,
        capture_output=True,
        text=True,
        timeout=600,
    )
    return result.stdout


def check_contents(zip_path: Path) -> list[str]:
    with zipfile.ZipFile(zip_path) as zf:
        names = zf.namelist()
    top = {n.split("/", 1)[0] for n in names}
    assert "documee_remote/aws_lambda.py" in names
    assert "documee_remote/analyser.py" in names
    assert any(n.startswith("pydantic_core/_pydantic_core") for n in names)
    assert {"pydantic", "orjson", "typing_extensions.py"} <= top
    # The environment is read by hand: pydantic-settings and python-dotenv are no dependency.
    assert not top & {"pydantic_settings", "dotenv"}, top
    assert not top & ABSENT, top & ABSENT
    assert not top & RUNTIME, top & RUNTIME  # left to the Lambda runtime
    assert not [n for n in names if "__pycache__" in n or n.endswith(".pyc")]
    assert not [n for n in names if n.startswith("documee_remote/testing/")]
    assert not [n for n in names if n.endswith("direct_url.json")]
    assert names == sorted(names)
    return names


@pytest.mark.slow
def test_native_zip_contents_and_it_runs_without_site_packages(tmp_path: Path) -> None:
    out = tmp_path / "dist" / "native.zip"
    stdout = build(out, "--native")
    assert "built" in stdout
    assert "left to the runtime: boto3" in stdout
    names = check_contents(out)
    tag = f"cpython-{sys.version_info.major}{sys.version_info.minor}"
    assert any(n.startswith("pydantic_core/") and tag in n for n in names)

    unpacked = tmp_path / "task"
    with zipfile.ZipFile(out) as zf:
        zf.extractall(unpacked)
    # -S: no site-packages, so everything but the standard library comes from the zip,
    # as in /var/task. A memory store needs no boto3.
    code = (
        "import json, sys, documee_remote.aws_lambda as m\n"
        "assert m.__file__.startswith(sys.argv[1]), m.__file__\n"
        "r = m.handler({'action': 'analyse', 'codebase_id': 'z',"
        " 'files': [{'path': '/a.py', 'content': 'def f():\\n    return 1\\n'}]}, None)\n"
        "print(json.dumps(r))\n"
        "try:\n    import boto3\nexcept ImportError:\n    print('no boto3')\n"
    )
    env = {
        "PATH": os.environ.get("PATH", ""),
        "PYTHONPATH": os.fspath(unpacked),
        "DOCUMEE_STORE_URL": "memory://",
    }
    result = subprocess.run(
        [sys.executable, "-S", "-c", code, os.fspath(unpacked)],
        check=False,
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,  # not the repository: "-c" puts the working directory on sys.path
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    response = json.loads(lines[0])
    assert response["ok"] is True
    assert response["files"] == 1
    assert lines[1] == "no boto3"


@pytest.mark.slow
def test_lambda_target_zip_has_python312_manylinux_wheels(tmp_path: Path) -> None:
    out = tmp_path / "lambda.zip"
    stdout = build(out)
    assert "--platform manylinux2014_x86_64 --python-version 3.12" in stdout
    names = check_contents(out)
    binaries = [n for n in names if n.endswith(".so")]
    assert binaries
    assert all("cpython-312-x86_64-linux-gnu" in n for n in binaries), binaries
    assert out.stat().st_size < build_lambda.DIRECT_UPLOAD_LIMIT
    if sys.version_info[:2] != (3, 12) or platform.machine() != "x86_64":
        pytest.skip("importing a 3.12 x86_64 zip needs that interpreter")
    unpacked = tmp_path / "task"
    with zipfile.ZipFile(out) as zf:
        zf.extractall(unpacked)
    subprocess.run(
        [sys.executable, "-S", "-c", "import documee_remote.aws_lambda"],
        check=True,
        env={"PYTHONPATH": os.fspath(unpacked)},
        cwd=tmp_path,
        timeout=120,
    )
