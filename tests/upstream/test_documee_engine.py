"""Documee's real AnalysisEngine persisting through documee-remote, on disk and on S3.

The engine is Documee's unmodified source from ``../shared``; documee-remote
is its ``src.analysis.persistence`` by the one-line swap a user makes
(``plugin/documee_remote_swap.py``). Each test runs, beside it, the same
codebase through Documee's own ``PersistenceManager`` (loaded from its
original file), and compares what both store.

The codebase has an import cycle (``a`` <-> ``b``). Upstream cannot read back
the ``severity`` its own circular dependencies carry, so its incremental run
finds no previous analysis and keeps only the re-analysed files; through
documee-remote every file is kept. Both are asserted: the difference is why.
"""

from __future__ import annotations

import asyncio
import importlib.util
import json
import logging
import os
import re
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from tests.upstream._documee import DOCUMEE_DIR, PLUGIN_DIR, require_documee

require_documee()

sys.path.insert(0, str(PLUGIN_DIR))
import documee_remote_swap  # noqa: E402

documee_remote_swap.swap(str(DOCUMEE_DIR))

from src.analysis import engine as documee_engine  # noqa: E402
from src.analysis.config import AnalysisConfig  # noqa: E402
from src.cache.unified_cache import UnifiedCacheManager  # noqa: E402

from documee_remote import PersistenceManager  # noqa: E402
from documee_remote.testing.fixtures import S3Endpoint  # noqa: E402

pytestmark = [
    # tree-sitter 0.21's own deprecation, raised inside tree_sitter_languages.
    pytest.mark.filterwarnings("ignore:Language\\(path, name\\) is deprecated:FutureWarning"),
]

CODEBASE_ID = "engine-cycle"

#: Six files; a.py and b.py import each other.
FILES = {
    "pkg/__init__.py": '"""The package."""\n',
    "pkg/a.py": (
        "from pkg import b\n\n\ndef fa(x):\n"
        '    """Walk down through b."""\n    return b.fb(x) + 1\n'
    ),
    "pkg/b.py": (
        "from pkg import a\n\n\ndef fb(x):\n    if x > 1:\n"
        "        return a.fa(x - 1)\n    return x\n"
    ),
    "pkg/c.py": (
        "import os\n\n\nclass Config:\n"
        '    """Where things are."""\n\n    def cwd(self):\n        return os.getcwd()\n'
    ),
    "pkg/d.py": "import json\n\n\ndef dump(obj):\n    return json.dumps(obj, indent=2)\n",
    "main.py": "from pkg.a import fa\n\nif __name__ == '__main__':\n    print(fa(3))\n",
}


def _change_codebase(root: Path) -> tuple[set[str], set[str], set[str]]:
    """2 files changed, 1 added, 1 deleted; returns (changed, added, deleted) paths."""
    with open(root / "pkg/c.py", "a") as f:
        f.write("\n\nDEFAULT = Config()\n")
    with open(root / "pkg/d.py", "a") as f:
        f.write("\n\ndef load(text):\n    return json.loads(text)\n")
    (root / "pkg/e.py").write_text("def e():\n    return 1\n")
    (root / "main.py").unlink()
    return (
        {str(root / "pkg/c.py"), str(root / "pkg/d.py")},
        {str(root / "pkg/e.py")},
        {str(root / "main.py")},
    )


def _original_persistence() -> ModuleType:
    """Documee's own persistence module, from its file, under a name of its own."""
    name = "documee_original_persistence"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(
            name, DOCUMEE_DIR / "src" / "analysis" / "persistence.py"
        )
        assert spec is not None
        assert spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        sys.modules[name] = module
    return sys.modules[name]


@dataclass
class Run:
    """One engine run: what it analysed, saved, logged."""

    analysed: list[str]
    saved: Any  # the object the engine handed save_analysis
    persist_ms: float
    logs: list[logging.LogRecord] = field(repr=False)
    seconds: float = 0.0

    def messages(self) -> list[str]:
        return [r.getMessage() for r in self.logs]


class _Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@pytest.fixture
def capture_logs() -> Iterator[_Records]:
    """Every log record of the engine, both persistence classes and documee-remote."""
    handler = _Records()
    loggers = [logging.getLogger(n) for n in ("src", "documee_original_persistence")]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.addHandler(handler)
        lg.setLevel(logging.INFO)
    try:
        yield handler
    finally:
        for lg, level in zip(loggers, levels, strict=True):
            lg.removeHandler(handler)
            lg.setLevel(level)


def _run_engine(
    root: Path,
    persistence_path: str,
    *,
    incremental: bool,
    cache_dir: Path,
    logs: _Records,
    persistence_class: type | None = None,
) -> Run:
    """Run Documee's engine once, with a fresh cache: reuse can only come from persistence."""
    if persistence_class is not None:
        # Documee's own class, where the engine module looks its name up.
        saved_class = documee_engine.PersistenceManager
        documee_engine.PersistenceManager = persistence_class  # type: ignore[attr-defined,misc]
    first = len(logs.records)

    async def go() -> Run:
        cache = UnifiedCacheManager(sqlite_path=str(cache_dir / f"cache-{time.monotonic_ns()}.db"))
        await cache.initialize()
        try:
            await cache.set_analysis(f"scan:{CODEBASE_ID}", {"path": str(root)})
            engine = documee_engine.AnalysisEngine(
                cache, AnalysisConfig(persistence_path=persistence_path, enable_linters=False)
            )
            analysed: list[str] = []
            saved: list[Any] = []
            analyse_file = engine.analyze_file
            save = engine.persistence.save_analysis

            async def counting_analyse(path: str, *args: Any, **kwargs: Any) -> Any:
                analysed.append(path)
                return await analyse_file(path, *args, **kwargs)

            def capturing_save(codebase_id: str, analysis: Any) -> Any:
                saved.append(analysis)
                return save(codebase_id, analysis)

            engine.analyze_file = counting_analyse  # type: ignore[method-assign]
            engine.persistence.save_analysis = capturing_save  # type: ignore[method-assign]
            started = time.perf_counter()
            await engine.analyze_codebase(CODEBASE_ID, incremental=incremental)
            seconds = time.perf_counter() - started
            if isinstance(engine.persistence, PersistenceManager):
                engine.persistence.close()
        finally:
            await cache.close()
        messages = [r.getMessage() for r in logs.records[first:]]
        persisted = [m for m in messages if m.startswith("Analysis persisted to disk in ")]
        assert saved, messages
        return Run(
            analysed=analysed,
            saved=saved[-1],
            persist_ms=float(re.findall(r"in (\d+)ms", persisted[-1])[0]) if persisted else -1,
            logs=logs.records[first:],
            seconds=seconds,
        )

    try:
        return asyncio.run(go())
    finally:
        if persistence_class is not None:
            documee_engine.PersistenceManager = saved_class  # type: ignore[attr-defined,misc]


def _normalised(data: bytes) -> Any:
    """The JSON with every ``analyzed_at`` and ``analysis_time_ms`` blanked."""

    def walk(value: Any) -> Any:
        if isinstance(value, dict):
            return {
                k: ("*" if k in ("analyzed_at", "analysis_time_ms") else walk(v))
                for k, v in value.items()
            }
        if isinstance(value, list):
            return [walk(v) for v in value]
        return value

    # Normalise the parsed JSON, then write it back the way Documee does: key order,
    # int/float and every other byte-level detail still count.
    return json.dumps(walk(json.loads(data)), indent=2, ensure_ascii=False)


def _documee_bytes(obj: Any) -> bytes:
    """What Documee's own class writes for ``obj``."""
    return json.dumps(obj.to_dict(), indent=2, ensure_ascii=False).encode("utf-8")


class _Reader:
    """Raw stored bytes under a codebase, on disk or through an S3 backdoor."""

    def __init__(self, local: Path | None = None, endpoint: S3Endpoint | None = None) -> None:
        self.local = local
        self.backdoor = endpoint.backdoor("team/") if endpoint is not None else None

    def read(self, name: str) -> bytes | None:
        key = f"{CODEBASE_ID}/{name}"
        if self.backdoor is not None:
            return self.backdoor.read(key)
        assert self.local is not None
        path = self.local / key
        return path.read_bytes() if path.is_file() else None

    def names(self) -> set[str]:
        if self.backdoor is not None:
            client, bucket = self.backdoor.client, self.backdoor.bucket
            prefix = f"team/{CODEBASE_ID}/"
            listed = client.list_objects_v2(Bucket=bucket, Prefix=prefix).get("Contents", [])
            return {obj["Key"][len(prefix) :] for obj in listed}
        assert self.local is not None
        return {p.name for p in (self.local / CODEBASE_ID).iterdir()}


def _per_file_name(path: str) -> str:
    from documee_remote import layout

    return layout.file_analysis_key(CODEBASE_ID, path).split("/", 1)[1]


def _no_persistence_failures(run: Run) -> None:
    bad = [m for m in run.messages() if "Failed to persist" in m or "Failed to load" in m]
    assert bad == [], bad


@pytest.mark.parametrize("backend", ["local", "s3"])
def test_documee_engine_persists_through_documee_remote(
    backend: str,
    tmp_path: Path,
    capture_logs: _Records,
    request: pytest.FixtureRequest,
    monkeypatch: pytest.MonkeyPatch,
    record_property: Any,
) -> None:
    root = tmp_path / "codebase"
    for name, text in FILES.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)
    original_dir = tmp_path / "documee-own"
    cache_dir = tmp_path / "cache"
    cache_dir.mkdir()
    monkeypatch.delenv("DOCUMEE_STORE_URL", raising=False)
    endpoint: S3Endpoint | None = None
    if backend == "s3":
        endpoint = request.getfixturevalue("s3_endpoint")
        # What a Documee user sets: config.yaml's persistence_path is an s3:// URL, the
        # endpoint comes from the environment (AWS's standard variable for S3).
        monkeypatch.setenv("AWS_ENDPOINT_URL_S3", endpoint.endpoint_url)
        ours_path = endpoint.url("team/")
        reader = _Reader(endpoint=endpoint)
    else:
        ours_path = str(tmp_path / "documee-remote")
        reader = _Reader(local=Path(ours_path))
    own = _Reader(local=original_dir)
    original_class = _original_persistence().PersistenceManager

    def run(path: str, *, incremental: bool, cls: type | None = None) -> Run:
        return _run_engine(
            root,
            path,
            incremental=incremental,
            cache_dir=cache_dir,
            logs=capture_logs,
            persistence_class=cls,
        )

    requests_before = sum(endpoint.server.faults.requests.values()) if endpoint else 0
    # -- full runs ------------------------------------------------------------------------
    own_full = run(str(original_dir), incremental=False, cls=original_class)
    full = run(ours_path, incremental=False)
    full_requests = (sum(endpoint.server.faults.requests.values()) if endpoint else 0) - (
        requests_before
    )
    _no_persistence_failures(full)
    all_files = {str(root / name) for name in FILES}
    assert set(full.analysed) == all_files
    # Everything persisted, byte for byte what Documee's own class wrote.
    stored = reader.read("analysis.json")
    assert stored is not None
    assert _normalised(stored) == _normalised(own.read("analysis.json") or b"")
    assert stored == _documee_bytes(full.saved)
    assert set(json.loads(stored)["file_analyses"]) == all_files
    assert reader.read("file_hashes.json") == own.read("file_hashes.json")
    for path in all_files:
        name = _per_file_name(path)
        mine = reader.read(name)
        assert mine is not None, path
        assert _normalised(mine) == _normalised(own.read(name) or b""), path
    assert reader.names() == own.names()
    # The cycle is stored with the severity upstream's own reader cannot read back.
    cycles = json.loads(stored)["dependency_graph"]["circular_dependencies"]
    assert cycles
    assert all(c.get("severity") == "warning" for c in cycles)

    # -- incremental runs: 2 changed, 1 added, 1 deleted ----------------------------------
    changed, added, deleted = _change_codebase(root)
    existing = (all_files - deleted) | added
    own_incr = run(str(original_dir), incremental=True, cls=original_class)
    before_incr = sum(endpoint.server.faults.requests.values()) if endpoint else 0
    incr = run(ours_path, incremental=True)
    incr_requests = (sum(endpoint.server.faults.requests.values()) if endpoint else 0) - (
        before_incr
    )
    _no_persistence_failures(incr)
    # Only what changed was analysed again; the rest came back from the store.
    assert sorted(incr.analysed) == sorted(changed | added)
    assert any(m.startswith("Reusing 3 unchanged file analyses") for m in incr.messages())
    stored = reader.read("analysis.json")
    assert stored is not None
    assert set(json.loads(stored)["file_analyses"]) == existing
    # The engine's mixed tree (its CodebaseAnalysis holding documee-remote's reused
    # FileAnalysis objects) is written as Documee's own class writes it.
    assert stored == _documee_bytes(incr.saved)
    full_entries = json.loads(_documee_bytes(full.saved))["file_analyses"]
    incr_entries = json.loads(stored)["file_analyses"]
    for path in existing - changed - added:
        # Reused as they were, analyzed_at included.
        assert incr_entries[path] == full_entries[path], path
    for path in existing:
        mine = reader.read(_per_file_name(path))
        assert mine is not None, path
        assert json.loads(mine) == incr_entries[path], path
    assert reader.read(_per_file_name(next(iter(deleted)))) is None
    assert set(json.loads(reader.read("file_hashes.json") or b"{}")) == existing

    # Upstream, beside it: it cannot load its own analysis of this codebase back
    # ("Failed to load", severity), so its incremental run keeps only what it re-analysed.
    assert any("Failed to load analysis" in m for m in own_incr.messages())
    own_kept = set(json.loads(own.read("analysis.json") or b"{}")["file_analyses"])
    assert own_kept == changed | added
    # The files both analysed again are equal, byte for byte once normalised.
    own_entries = json.loads(own.read("analysis.json") or b"{}")["file_analyses"]
    for path in changed | added:
        assert _normalised(json.dumps(incr_entries[path]).encode()) == _normalised(
            json.dumps(own_entries[path]).encode()
        )

    figures = {
        "backend": backend,
        "files_persisted": len(existing),
        "full_persist_ms": full.persist_ms,
        "documee_own_full_persist_ms": own_full.persist_ms,
        "incremental_persist_ms": incr.persist_ms,
        "documee_own_incremental_persist_ms": own_incr.persist_ms,
        "s3_requests_full_run": full_requests,
        "s3_requests_incremental_run": incr_requests,
    }
    record_property("documee_engine_figures", json.dumps(figures))
    print("documee engine figures:", json.dumps(figures))
    assert os.environ.get("DOCUMEE_STORE_URL") is None


def test_documee_server_default_config_reaches_s3_through_the_environment(
    tmp_path: Path,
    s3_endpoint: S3Endpoint,
    capture_logs: _Records,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """As Documee's server builds it: ``AnalysisConfig()``, so the default path.

    Documee's server never reads ``persistence_path`` from config.yaml, so a user
    points it at a bucket with ``DOCUMEE_STORE_URL``, through
    ``from documee_remote.documee import PersistenceManager``.
    """
    from documee_remote.documee import PersistenceManager as ForDocumee

    root = tmp_path / "codebase"
    for name, text in FILES.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("DOCUMEE_STORE_URL", s3_endpoint.url("team/"))
    monkeypatch.setenv("DOCUMEE_S3_ENDPOINT_URL", s3_endpoint.endpoint_url)
    assert AnalysisConfig().persistence_path == ".documee/analysis"
    run = _run_engine(
        root,
        AnalysisConfig().persistence_path,
        incremental=False,
        cache_dir=tmp_path,
        logs=capture_logs,
        persistence_class=ForDocumee,
    )
    _no_persistence_failures(run)
    stored = _Reader(endpoint=s3_endpoint).read("analysis.json")
    assert stored == _documee_bytes(run.saved)
    assert not (tmp_path / ".documee").exists()  # nothing went to local disk


def test_loaded_analysis_works_in_documee_components_as_its_own_objects(
    tmp_path: Path, capture_logs: _Records
) -> None:
    """Each engine component gives the same result on what load_analysis returns as on
    Documee's own ``from_dict`` objects of the same bytes."""
    from src.analysis.dependency_analyzer import DependencyAnalyzer
    from src.analysis.pattern_detector import PatternDetector
    from src.analysis.teaching_value_scorer import TeachingValueScorer
    from src.models.analysis_models import CodebaseAnalysis as DocumeeCodebase
    from src.models.analysis_models import FileAnalysis as DocumeeFile

    root = tmp_path / "codebase"
    for name, text in FILES.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)
    store = tmp_path / "store"
    run = _run_engine(root, str(store), incremental=False, cache_dir=tmp_path, logs=capture_logs)
    _no_persistence_failures(run)
    with PersistenceManager(str(store)) as pm:
        loaded = pm.load_analysis(CODEBASE_ID)
    assert loaded is not None
    raw = json.loads((store / CODEBASE_ID / "analysis.json").read_bytes())
    # Documee's own reader: per file (its CodebaseAnalysis.from_dict cannot read the
    # severity its dependency graph writes).
    theirs = {k: DocumeeFile.from_dict(v) for k, v in raw["file_analyses"].items()}
    ours = loaded.file_analyses
    assert list(ours) == list(theirs)
    for path in ours:
        assert ours[path].to_dict() == theirs[path].to_dict()
    # Every model has upstream's to_dict(), and Documee's own from_dict reads it.
    assert DocumeeFile.from_dict(ours[str(root / "pkg/a.py")].to_dict()).to_dict() == (
        theirs[str(root / "pkg/a.py")].to_dict()
    )
    with pytest.raises(TypeError, match="severity"):
        DocumeeCodebase.from_dict(raw)

    analyser = DependencyAnalyzer()
    graph_ours = analyser.analyze_dependencies(CODEBASE_ID, dict(ours))
    graph_theirs = analyser.analyze_dependencies(CODEBASE_ID, theirs)
    assert graph_ours.to_dict() == graph_theirs.to_dict()
    assert graph_ours.circular_dependencies
    assert graph_ours.to_dict() == loaded.dependency_graph.to_dict()

    detector = PatternDetector()
    assert [p.to_dict() for p in detector.detect_global_patterns(dict(ours))] == [
        p.to_dict() for p in detector.detect_global_patterns(theirs)
    ]

    engine = documee_engine.AnalysisEngine.__new__(documee_engine.AnalysisEngine)
    engine.metrics = {"total_cache_hits": 0, "total_cache_misses": 0, "errors": []}
    started = documee_engine.datetime.now()
    metrics_ours = engine._calculate_codebase_metrics(dict(ours), started).to_dict()
    metrics_theirs = engine._calculate_codebase_metrics(theirs, started).to_dict()
    for m in (metrics_ours, metrics_theirs):
        m.pop("analysis_time_ms")
    assert metrics_ours == metrics_theirs

    scorer = TeachingValueScorer(AnalysisConfig())
    for path in ours:
        assert scorer._score_patterns(ours[path].patterns) == scorer._score_patterns(
            theirs[path].patterns
        )
        assert scorer._score_structure(ours[path].symbol_info) == scorer._score_structure(
            theirs[path].symbol_info
        )
    ranking = sorted(
        [(fp, fa.teaching_value.total_score) for fp, fa in ours.items()],
        key=lambda x: x[1],
        reverse=True,
    )[:20]
    assert [list(pair) for pair in ranking] == raw["top_teaching_files"]


def test_every_model_has_documee_attribute_names_in_documee_order() -> None:
    """Same class names, same attributes, same order (the order is the key order on disk)."""
    import dataclasses

    import src.analysis.dependency_analyzer as documee_graph
    import src.models.analysis_models as documee_models

    from documee_remote import models

    checked = 0
    for name in models.__all__:
        ours = getattr(models, name)
        theirs = getattr(documee_models, name, None)
        if theirs is None or not dataclasses.is_dataclass(theirs):
            continue
        names = [f.name for f in dataclasses.fields(theirs)]
        assert list(ours.model_fields) == names, name
        assert callable(ours.to_dict)
        assert callable(ours.from_dict)
        checked += 1
    assert checked == 15
    # The dependency analyser's own graph classes: the same, plus severity, which is
    # kept as an unknown field (upstream's reader cannot read it back).
    for name in ("FileNode", "DependencyEdge", "DependencyGraph"):
        fields = [f.name for f in dataclasses.fields(getattr(documee_graph, name))]
        assert list(getattr(models, name).model_fields) == fields, name
    assert [f.name for f in dataclasses.fields(documee_graph.CircularDependency)] == [
        *models.CircularDependency.model_fields,
        "severity",
    ]
