#!/usr/bin/env python3
"""Build the AWS Lambda deployment zip of documee-remote.

Usage::

    python scripts/build_lambda.py --out dist/documee-remote-lambda.zip
    python scripts/build_lambda.py --out dist/lambda-arm.zip --arch arm64
    python scripts/build_lambda.py --out dist/lambda.zip --with-fsspec
    python scripts/build_lambda.py --out dist/local.zip --native   # this interpreter

Handler: ``documee_remote.aws_lambda.handler``.

What goes in
------------
The project (without its ``testing`` helpers) and the runtime dependencies of
``documee-remote[s3]``, resolved by pip: pydantic, pydantic-core, orjson
and what they need (annotated-types, typing-extensions, typing-inspection).

What stays out
--------------
boto3, botocore, s3transfer, jmespath, urllib3, python-dateutil and six: the
Lambda Python runtime ships them, and they are 80 % of the size. The
resolution is pip's own (``pip install --dry-run --report``), and then those
packages are dropped and the rest installed with ``--no-deps``, so nothing
else changes. The trade-off is that the runtime's boto3 version is used;
``--include-boto3`` bundles them instead (pinning the version, +~25 MB).
With ``--with-fsspec``, s3fs and aiobotocore are added and boto3/botocore
are bundled whatever the flag says, because aiobotocore pins botocore to a
narrow range the runtime's copy will not match. Never included: moto, pytest,
tests, ``__pycache__``, console scripts, and the CLI with its own dependencies
(click, rich), which the handler never imports.

By default the zip targets the Lambda runtime, not this machine: Python 3.12
on ``manylinux2014_x86_64`` (``--arch arm64`` for Graviton), binary wheels
only (``--platform``, ``--python-version``, ``--only-binary=:all:``), so a
zip built on macOS or with another Python still runs there. ``--native``
builds for the running interpreter instead (local smoke tests).

The zip is deterministic: entries sorted, timestamps fixed at 1980-01-01,
permissions normalised, and no build paths inside (pip's ``direct_url.json``
is dropped), so the same inputs give the same bytes and the same sha256.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Iterable, Sequence
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parents[1]
PACKAGE = "documee_remote"
HANDLER = "documee_remote.aws_lambda.handler"

#: Provided by the Lambda Python runtime (normalised distribution names).
RUNTIME_PROVIDED = frozenset(
    {"boto3", "botocore", "s3transfer", "jmespath", "urllib3", "python-dateutil", "six"}
)
#: The command line's own dependencies: core dependencies of the package, but the
#: handler never imports the CLI (a test checks it), so the zip leaves them out.
CLI_ONLY = frozenset({"click", "rich", "markdown-it-py", "mdurl", "pygments"})
#: Never shipped: test tooling. The build fails if the resolution pulls one in.
FORBIDDEN = frozenset({"moto", "pytest", "hypothesis"})
#: Paths (relative to the zip root) left out of the zip.
_SKIP_DIRS = frozenset({"__pycache__", "bin"})
_SKIP_PREFIXES = (f"{PACKAGE}/testing/", f"{PACKAGE}/cli/")
#: The CLI's modules, whose dependencies are left out.
_SKIP_FILES = frozenset({f"{PACKAGE}/cli.py", f"{PACKAGE}/__main__.py", f"{PACKAGE}/demo.py"})

LAMBDA_PYTHON = "3.12"
PLATFORMS = {"x86_64": "manylinux2014_x86_64", "arm64": "manylinux2014_aarch64"}
#: Lambda refuses directly uploaded zips larger than this.
DIRECT_UPLOAD_LIMIT = 50 * 1024 * 1024
_FIXED_TIME = (1980, 1, 1, 0, 0, 0)


def normalise(name: str) -> str:
    """PEP 503 normalised distribution name."""
    return re.sub(r"[-_.]+", "-", name).lower()


def _pip(args: Sequence[str], *, quiet: bool) -> None:
    command = [sys.executable, "-m", "pip", *args]
    if quiet:
        command.append("--quiet")
    subprocess.run(command, check=True)


def build_wheel(work: Path, *, quiet: bool) -> Path:
    """Build the project's wheel (pure Python) into ``work/wheelhouse``."""
    wheelhouse = work / "wheelhouse"
    _pip(
        ["wheel", "--no-deps", "--wheel-dir", os.fspath(wheelhouse), os.fspath(PROJECT_ROOT)],
        quiet=quiet,
    )
    wheels = sorted(wheelhouse.glob(f"{PACKAGE}-*.whl"))
    if len(wheels) != 1:
        raise SystemExit(f"expected one {PACKAGE} wheel, found {[w.name for w in wheels]}")
    return wheels[0]


def target_args(args: argparse.Namespace) -> list[str]:
    """pip options that select the Lambda platform (none with ``--native``)."""
    if args.native:
        return []
    return [
        "--platform",
        args.platform or PLATFORMS[args.arch],
        "--python-version",
        args.python_version,
        "--implementation",
        "cp",
        "--only-binary=:all:",
    ]


def resolve(requirement: str, args: argparse.Namespace, work: Path) -> dict[str, str]:
    """``{normalised name: version}`` of everything pip would install for ``requirement``."""
    report = work / "resolution.json"
    command = [
        "install",
        "--dry-run",
        "--ignore-installed",
        "--report",
        os.fspath(report),
        *target_args(args),
        *(["--target", os.fspath(work / "dry-run")] if not args.native else []),
        *(["--constraint", os.fspath(args.constraint)] if args.constraint else []),
        requirement,
    ]
    _pip(command, quiet=True)
    data = json.loads(report.read_text(encoding="utf-8"))
    return {
        normalise(item["metadata"]["name"]): item["metadata"]["version"] for item in data["install"]
    }


def install(wheel: Path, pins: dict[str, str], args: argparse.Namespace, target: Path) -> None:
    """Install the wheel and the pinned packages, without dependencies, into ``target``."""
    requirements = [f"{name}=={version}" for name, version in sorted(pins.items())]
    _pip(
        [
            "install",
            "--no-deps",
            "--no-compile",
            "--target",
            os.fspath(target),
            *target_args(args),
            os.fspath(wheel),
            *requirements,
        ],
        quiet=args.quiet,
    )


def clean(target: Path) -> None:
    """Drop what a deployment does not need and what would make the zip depend on the build."""
    for direct_url in target.glob("*.dist-info/direct_url.json"):
        # Holds the temporary path of the wheel: different on every build.
        record = direct_url.parent / "RECORD"
        direct_url.unlink()
        if record.exists():
            lines = record.read_text(encoding="utf-8").splitlines(keepends=True)
            record.write_text(
                "".join(line for line in lines if "direct_url.json" not in line),
                encoding="utf-8",
            )
    for path in sorted(target.rglob("__pycache__"), reverse=True):
        shutil.rmtree(path, ignore_errors=True)


def included(rel: str) -> bool:
    """Whether a path (relative, posix) goes into the zip."""
    parts = rel.split("/")
    if any(part in _SKIP_DIRS for part in parts[:-1]):
        return False
    if rel.endswith((".pyc", ".pyo")):
        return False
    return not rel.startswith(_SKIP_PREFIXES) and rel not in _SKIP_FILES


def write_zip(source: Path, out: Path) -> list[str]:
    """Zip ``source`` into ``out`` deterministically; returns the entry names."""
    names = sorted(
        rel
        for rel in (p.relative_to(source).as_posix() for p in source.rglob("*") if p.is_file())
        if included(rel)
    )
    out.parent.mkdir(parents=True, exist_ok=True)
    partial = out.with_name(out.name + ".partial")
    with zipfile.ZipFile(partial, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as zf:
        for name in names:
            info = zipfile.ZipInfo(name, date_time=_FIXED_TIME)
            info.compress_type = zipfile.ZIP_DEFLATED
            info.create_system = 3  # unix, so the permissions below are honoured
            mode = 0o755 if os.access(source / name, os.X_OK) and name.endswith(".so") else 0o644
            info.external_attr = (0o100000 | mode) << 16
            zf.writestr(info, (source / name).read_bytes(), compresslevel=9)
    partial.replace(out)
    return names


def top_level_names(names: Iterable[str]) -> set[str]:
    """The first path component of every entry."""
    return {name.split("/", 1)[0] for name in names}


def build(args: argparse.Namespace) -> Path:
    """Build the zip described by ``args``; returns its path."""
    extras = ["s3", "fsspec"] if args.with_fsspec else ["s3"]
    with tempfile.TemporaryDirectory(prefix="documee-lambda-") as tmp:
        work = Path(tmp)
        wheel = build_wheel(work, quiet=args.quiet)
        resolved = resolve(
            f"{PACKAGE.replace('_', '-')}[{','.join(extras)}] @ {wheel.as_uri()}", args, work
        )
        resolved.pop(normalise(PACKAGE), None)
        forbidden = sorted(set(resolved) & FORBIDDEN)
        if forbidden:
            raise SystemExit(f"refusing to bundle {forbidden}: check the project's dependencies")
        drop = set(CLI_ONLY)
        if not (args.include_boto3 or args.with_fsspec):
            drop |= RUNTIME_PROVIDED
        pins = {name: v for name, v in resolved.items() if name not in drop}
        target = work / "package"
        install(wheel, pins, args, target)
        clean(target)
        names = write_zip(target, args.out)

    size = args.out.stat().st_size
    digest = hashlib.sha256(args.out.read_bytes()).hexdigest()
    bundled = ", ".join(f"{n}=={v}" for n, v in sorted(pins.items()))
    left_out = ", ".join(sorted(set(resolved) - set(pins))) or "nothing"
    print(f"built {args.out}: {size / 1e6:.1f} MB, {len(names)} files, sha256 {digest}")
    print(f"  handler: {HANDLER}")
    print(f"  target: {'this interpreter' if args.native else ' '.join(target_args(args)[:4])}")
    print(f"  bundled: {bundled}")
    print(f"  left to the runtime: {left_out}")
    if size > DIRECT_UPLOAD_LIMIT:
        print(f"  warning: over {DIRECT_UPLOAD_LIMIT >> 20} MB; upload it through S3")
    out: Path = args.out
    return out


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """The command line."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument(
        "--out",
        type=Path,
        default=Path("dist/documee-remote-lambda.zip"),
        help="the zip to write (default: %(default)s)",
    )
    parser.add_argument(
        "--with-fsspec",
        action="store_true",
        help="also bundle s3fs (and the botocore aiobotocore pins)",
    )
    parser.add_argument(
        "--include-boto3",
        action="store_true",
        help="bundle boto3/botocore instead of using the runtime's",
    )
    parser.add_argument(
        "--python-version",
        default=LAMBDA_PYTHON,
        help="Lambda runtime's Python (default: %(default)s)",
    )
    parser.add_argument(
        "--arch",
        choices=sorted(PLATFORMS),
        default="x86_64",
        help="Lambda architecture (default: %(default)s)",
    )
    parser.add_argument("--platform", help=f"pip platform tag (default: from --arch, {PLATFORMS})")
    parser.add_argument(
        "--native",
        action="store_true",
        help="build for this interpreter and platform instead of Lambda's",
    )
    parser.add_argument("--constraint", type=Path, help="pip constraints file pinning versions")
    parser.add_argument("--quiet", action="store_true", help="less pip output")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point."""
    build(parse_args(argv))
    return 0


if __name__ == "__main__":
    sys.exit(main())
