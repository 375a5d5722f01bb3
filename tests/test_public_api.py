"""The public surface: what `import documee_remote` promises, and what it must not import."""

from __future__ import annotations

import subprocess
import sys

import documee_remote
from documee_remote import errors, stores


def test_all_names_resolve_and_nothing_is_missing() -> None:
    for name in documee_remote.__all__:
        assert getattr(documee_remote, name) is not None, name
    # Every error type is importable from the top level.
    assert set(errors.__all__) <= set(documee_remote.__all__)
    assert documee_remote.__all__ == sorted(documee_remote.__all__)


def test_store_package_exports_every_backend() -> None:
    for name in stores.__all__:
        assert getattr(stores, name) is not None, name


def test_error_tree_has_one_root() -> None:
    for name in errors.__all__:
        cls = getattr(errors, name)
        assert issubclass(cls, errors.DocumeeRemoteError)
    assert issubclass(errors.NotFoundError, FileNotFoundError)
    assert issubclass(errors.AlreadyExistsError, errors.PreconditionFailedError)
    assert issubclass(errors.AlreadyExistsError, FileExistsError)
    assert issubclass(errors.ConditionalRequestConflictError, errors.TransientError)


def test_import_is_light() -> None:
    # A Lambda cold start pays for every import: nothing optional at start-up.
    code = (
        "import sys, documee_remote; "
        "heavy = [m for m in ('boto3', 'botocore', 's3fs', 'fsspec', 'aiobotocore', 'aiohttp', "
        "'moto', 'click', 'rich', 'pytest') if m in sys.modules]; print(heavy)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout.strip()
    assert out == "[]"
