"""Two checkouts of one codebase share one analysis, through Documee's real engine.

Documee's ``AnalysisEngine`` (its unmodified source in ``../shared``) builds its
``PersistenceManager(config.persistence_path)`` with that one argument, so each
"machine" here configures sharing the way a user does, through the environment:
Alice with a ``DOCUMEE_SHARE_CONFIG`` file, Bob with ``DOCUMEE_CHECKOUT_ROOT`` /
``DOCUMEE_SHARED_ROOT``. Their checkouts live at different paths, so Documee
gives them different codebase ids and absolute file paths; both reach the same
shared codebase in one store, on local disk and on S3 (the moto server).

Small harness of its own: Documee's ``src.analysis.persistence`` is replaced by
the one line a user writes (``from documee_remote.documee import
PersistenceManager``, see the README) before Documee is imported; the engine's
own dataclasses go to the manager unconverted.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
import shutil
import sys
import time
import types
from pathlib import Path
from typing import Any

import pytest

from documee_remote import PersistenceManager, codec
from documee_remote.documee import PersistenceManager as DocumeePersistenceManager
from documee_remote.sharing import (
    ENV_CHECKOUT_ROOT,
    ENV_SHARE_CONFIG,
    ENV_SHARED_ID,
    ENV_SHARED_ROOT,
)
from documee_remote.testing.fixtures import S3Endpoint

DOCUMEE_DIR = Path(__file__).resolve().parents[2].parent / "shared" / "upstream" / "documee-MCP"

if not (DOCUMEE_DIR / "src" / "analysis" / "engine.py").is_file():
    pytest.skip(
        f"Documee's source is not at {DOCUMEE_DIR} (CI checks out ../shared beside the repo)",
        allow_module_level=True,
    )


def _swap_persistence() -> None:
    """Make ``src.analysis.persistence`` the one-line module a Documee user writes."""
    if str(DOCUMEE_DIR) not in sys.path:
        sys.path.insert(0, str(DOCUMEE_DIR))
    name = "src.analysis.persistence"
    if name in sys.modules:  # another test module already swapped it (or Documee is loaded)
        return
    module = types.ModuleType(name)
    module.__file__ = str(DOCUMEE_DIR / "src" / "analysis" / "persistence.py")
    exec("from documee_remote.documee import PersistenceManager\n", module.__dict__)
    sys.modules[name] = module


_swap_persistence()

from src.analysis import engine as documee_engine  # noqa: E402
from src.analysis.config import AnalysisConfig  # noqa: E402
from src.cache.unified_cache import UnifiedCacheManager  # noqa: E402
from src.utils.file_utils import generate_codebase_id  # noqa: E402

pytestmark = [
    pytest.mark.filterwarnings("ignore:Language\\(path, name\\) is deprecated:FutureWarning"),
]

SHARED_ROOT = "/srv/code/shared-repo"
S3_PREFIX = "team/"
SHARED_ID = "shared-repo"

#: a.py and b.py import each other, so the graph has edges and a cycle.
FILES = {
    "pkg/__init__.py": '"""The package."""\n',
    "pkg/a.py": "from pkg import b\n\n\ndef fa(x):\n    return b.fb(x) + 1\n",
    "pkg/b.py": (
        "from pkg import a\n\n\ndef fb(x):\n"
        "    if x > 1:\n        return a.fa(x - 1)\n    return x\n"
    ),
    "pkg/c.py": "import os\n\n\nclass Config:\n    def cwd(self):\n        return os.getcwd()\n",
    "pkg/d.py": "import json\n\n\ndef dump(obj):\n    return json.dumps(obj)\n",
    "main.py": "from pkg.a import fa\n\nprint(fa(3))\n",
}


def _write(root: Path, files: dict[str, str]) -> None:
    for rel, text in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)


def _run(root: Path, store: Path | None, cache_dir: Path, *, incremental: bool) -> list[str]:
    """One Documee run over the checkout at ``root``; returns the files it analysed."""
    codebase_id = generate_codebase_id(str(root))
    analysed: list[str] = []

    async def go() -> None:
        cache = UnifiedCacheManager(sqlite_path=str(cache_dir / f"{time.monotonic_ns()}.db"))
        await cache.initialize()
        try:
            # What scan_codebase records (the engine needs only the path).
            await cache.set_analysis(f"scan:{codebase_id}", {"path": str(root)})
            # On S3, Documee's default persistence_path: DOCUMEE_STORE_URL decides (README).
            config = AnalysisConfig(enable_linters=False)
            if store is not None:
                config.persistence_path = str(store)
            engine = documee_engine.AnalysisEngine(cache, config)
            analyse = engine.analyze_file

            async def counting(path: str, *args: Any, **kwargs: Any) -> Any:
                analysed.append(path)
                return await analyse(path, *args, **kwargs)

            engine.analyze_file = counting  # type: ignore[method-assign]
            await engine.analyze_codebase(codebase_id, incremental=incremental)
        finally:
            await cache.close()

    asyncio.run(go())
    return analysed


class _Stored:
    """Every object stored, name -> bytes: a directory, or a bucket prefix read raw."""

    def __init__(self, directory: Path | None, endpoint: S3Endpoint | None) -> None:
        self.directory = directory
        self.endpoint = endpoint

    def __call__(self) -> dict[str, bytes]:
        if self.directory is not None:
            return {
                str(p.relative_to(self.directory)): p.read_bytes()
                for p in sorted(self.directory.rglob("*"))
                if p.is_file()
            }
        assert self.endpoint is not None
        backdoor = self.endpoint.backdoor(S3_PREFIX)
        listed = backdoor.client.list_objects_v2(Bucket=backdoor.bucket, Prefix=S3_PREFIX)
        names = [obj["Key"][len(S3_PREFIX) :] for obj in listed.get("Contents", [])]
        return {name: backdoor.read(name) or b"" for name in sorted(names)}


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.mark.parametrize("where", ["local", "s3"])
def test_a_second_checkout_reuses_the_first_ones_analysis(
    where: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    request: pytest.FixtureRequest,
) -> None:
    for name in (ENV_SHARE_CONFIG, ENV_CHECKOUT_ROOT, ENV_SHARED_ROOT, ENV_SHARED_ID):
        monkeypatch.delenv(name, raising=False)
    caplog.set_level(logging.INFO, logger="src")
    # The class of the README's one line, whichever module swapped Documee's first.
    monkeypatch.setattr(documee_engine, "PersistenceManager", DocumeePersistenceManager)
    monkeypatch.chdir(tmp_path)  # Documee's default persistence_path is relative
    cache_dir = tmp_path / "cache"
    cache_dir.mkdir()
    if where == "s3":
        endpoint: S3Endpoint = request.getfixturevalue("s3_endpoint")
        monkeypatch.setenv("DOCUMEE_STORE_URL", endpoint.url(S3_PREFIX))
        monkeypatch.setenv("DOCUMEE_S3_ENDPOINT_URL", endpoint.endpoint_url)
        store, read_store = None, _Stored(None, endpoint)
    else:
        store = tmp_path / "store"
        read_store = _Stored(store, None)
    alice, bob = tmp_path / "home" / "alice" / "repo", tmp_path / "Users" / "bob" / "src" / "repo"
    _write(alice, FILES)
    shutil.copytree(alice, bob)
    # Bob's checkout is a commit later: one file changed, one added, one deleted.
    with open(bob / "pkg/c.py", "a") as f:
        f.write("\n\nDEFAULT = Config()\n")
    _write(bob, {"pkg/e.py": "def e():\n    return 1\n"})
    (bob / "main.py").unlink()
    assert generate_codebase_id(str(alice)) != generate_codebase_id(str(bob))

    # Alice: a config file, once per machine.
    config = tmp_path / "alice-sharing.toml"
    config.write_text(
        f'[[checkout]]\nlocal_root = "{alice}"\nshared_root = "{SHARED_ROOT}"\n'
        f'shared_id = "{SHARED_ID}"\n'
    )
    monkeypatch.setenv(ENV_SHARE_CONFIG, str(config))
    first = _run(alice, store, cache_dir, incremental=False)
    assert sorted(first) == sorted(str(alice / rel) for rel in FILES)
    after_alice = read_store()
    assert {name.split("/")[0] for name in after_alice} == {SHARED_ID}

    # Bob: environment variables, and Documee's incremental run.
    monkeypatch.delenv(ENV_SHARE_CONFIG)
    monkeypatch.setenv(ENV_CHECKOUT_ROOT, str(bob))
    monkeypatch.setenv(ENV_SHARED_ROOT, SHARED_ROOT)
    monkeypatch.setenv(ENV_SHARED_ID, SHARED_ID)
    caplog.clear()
    second = _run(bob, store, cache_dir, incremental=True)
    messages = [r.getMessage() for r in caplog.records]

    # Only what differs from Alice's checkout is analysed again; everything else is reused.
    assert sorted(second) == [str(bob / "pkg/c.py"), str(bob / "pkg/e.py")]
    unchanged = sorted(set(FILES) - {"pkg/c.py", "main.py"})
    assert f"Reusing {len(unchanged)} unchanged file analyses from previous run" in messages
    assert not [m for m in messages if "Failed to persist" in m or "Failed to load" in m]

    # Saved back under the shared id, in the shared root only.
    stored = read_store()
    assert {name.split("/")[0] for name in stored} == {SHARED_ID}
    for data in stored.values():
        assert str(tmp_path).encode() not in data
    analysis = codec.load_codebase_analysis(stored[f"{SHARED_ID}/analysis.json"])
    bob_files = sorted(set(FILES) - {"main.py"} | {"pkg/e.py"})
    assert analysis.codebase_id == SHARED_ID
    assert sorted(analysis.file_analyses) == [f"{SHARED_ROOT}/{rel}" for rel in bob_files]
    hashes = codec.load_file_hashes(stored[f"{SHARED_ID}/file_hashes.json"])
    assert hashes == {f"{SHARED_ROOT}/{rel}": _sha(bob / rel) for rel in bob_files}
    graph = analysis.dependency_graph
    assert graph.edges
    assert all(e.from_file.startswith(SHARED_ROOT + "/") for e in graph.edges)
    assert graph.circular_dependencies
    assert all(
        p.startswith(SHARED_ROOT + "/") for c in graph.circular_dependencies for p in c.cycle
    )
    assert all(p.startswith(SHARED_ROOT + "/") for p, _ in analysis.top_teaching_files)
    # Reused analyses are Alice's, unchanged to the byte (her analyzed_at included).
    for rel in unchanged:
        key = f"{SHARED_ID}/" + _per_file_name(f"{SHARED_ROOT}/{rel}")
        assert stored[key] == after_alice[key], rel

    # And back: Alice's next incremental run re-analyses only what Bob's commit changed.
    for name in (ENV_CHECKOUT_ROOT, ENV_SHARED_ROOT, ENV_SHARED_ID):
        monkeypatch.delenv(name)
    monkeypatch.setenv(ENV_SHARE_CONFIG, str(config))
    third = _run(alice, store, cache_dir, incremental=True)
    assert sorted(third) == [str(alice / "main.py"), str(alice / "pkg/c.py")]
    final = codec.load_codebase_analysis(read_store()[f"{SHARED_ID}/analysis.json"])
    assert sorted(final.file_analyses) == [f"{SHARED_ROOT}/{rel}" for rel in sorted(FILES)]


def _per_file_name(path: str) -> str:
    return "file_" + hashlib.sha256(path.encode("utf-8")).hexdigest()[:16] + ".json"


def test_the_harness_runs_documee_remote() -> None:
    # Guard against the engine silently using Documee's own persistence.
    assert documee_engine.PersistenceManager is PersistenceManager or issubclass(
        documee_engine.PersistenceManager, PersistenceManager
    )
    assert os.path.samefile(
        sys.modules["src.analysis.engine"].__file__ or "", DOCUMEE_DIR / "src/analysis/engine.py"
    )
