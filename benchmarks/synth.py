"""Synthetic codebase analyses shaped like real ones.

Per-file sizes
    Fitted to the real Documee fixtures (``/work/shared/fixtures/documee``, or
    ``$DOCUMEE_FIXTURES``): every distinct ``file_<h16>.json`` plus the file
    analyses embedded in analysis.json files that have no per-file objects,
    serialized the way upstream writes them. The fit is a log-normal (median
    and sigma of the log sizes), clipped to the range the issue reports for
    real codebases (1.5 to 200 KB). Without the fixtures, the issue's own
    numbers are used: median 4 KB, and sigma 1.13 (which gives Django's mean
    of 7.6 KB per file: 22 MB of file analyses for 2,899 files).
    Sizes are drawn by stratified quantiles, not at random, so 100 files and
    3,000 files have the same shape and a run is reproducible.

Dependency graph
    Sized relative to the file analyses: Django's analysis.json is 52 MB of
    which 30 MB is the dependency graph, so the graph is 30/22 = 1.36x the
    bytes of the file analyses by default (``graph_ratio``). The small
    fixture codebases have far smaller graphs (4-7% of analysis.json); the
    issue is about big codebases, so the Django ratio is the default.

Each file analysis comes from :func:`documee_remote.testing.factories.make_file_analysis`,
with ``functions`` and ``docstring_bytes`` chosen to hit its target size
(within a few percent, except the smallest files).
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import pickle
import random
import statistics
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from documee_remote import codec, layout
from documee_remote.merge import compute_metrics, now_iso, rank_teaching_files
from documee_remote.models import (
    CodebaseAnalysis,
    DependencyGraph,
    DetectedPattern,
    FileAnalysis,
)
from documee_remote.testing.factories import content_hash, make_file_analysis

__all__ = [
    "DJANGO_GRAPH_RATIO",
    "Dataset",
    "SizeModel",
    "build_dataset",
    "changed_version",
    "fit_sizes",
    "load_dataset",
]

#: Django 5.1 per the issue: 30 MB of graph next to 52 - 30 = 22 MB of file analyses.
DJANGO_GRAPH_RATIO = 30 / 22

#: The range of per-file object sizes the issue reports for real codebases.
MIN_FILE_BYTES = 1_500
MAX_FILE_BYTES = 200_000

#: The issue's figures, used when the fixtures are absent.
ISSUE_MEDIAN = 4_000
ISSUE_SIGMA = math.sqrt(2 * math.log(7_600 / 4_000))

CODEBASE_ROOT = "/srv/code/django"

_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_FIXTURES = _ROOT.parent / "shared" / "fixtures" / "documee"

_PACKAGES = [
    "db/models",
    "db/models/fields",
    "db/backends/postgresql",
    "db/migrations",
    "contrib/admin",
    "contrib/admin/views",
    "contrib/auth",
    "contrib/gis/db",
    "contrib/postgres",
    "core/management/commands",
    "core/handlers",
    "forms",
    "template/backends",
    "utils",
    "http",
    "views/generic",
    "middleware",
    "urls",
    "test",
    "conf",
]
_WORDS = ["base", "models", "utils", "fields", "views", "options", "query", "signals", "forms"]
_EXTERNAL = [
    "os",
    "sys",
    "re",
    "json",
    "typing",
    "collections",
    "functools",
    "itertools",
    "datetime",
    "decimal",
    "logging",
    "pathlib",
    "warnings",
    "inspect",
    "copy",
    "operator",
    "threading",
    "asyncio",
    "contextlib",
    "enum",
    "hashlib",
    "uuid",
    "zoneinfo",
    "urllib.parse",
    "email.utils",
    "http.client",
    "sqlparse",
    "asgiref.sync",
    "psycopg",
    "jinja2",
]


# ----------------------------------------------------------------------------- sizes


@dataclass(frozen=True)
class SizeModel:
    """A clipped log-normal distribution of per-file object sizes (bytes)."""

    median: float
    sigma: float
    low: int
    high: int
    source: str
    samples: int = 0
    observed: dict[str, float] = field(default_factory=dict)

    def sizes(self, n: int, seed: int = 1234) -> list[int]:
        """``n`` sizes at stratified quantiles, deterministically shuffled."""
        normal = statistics.NormalDist()
        quantiles = (normal.inv_cdf((i + 0.5) / n) for i in range(n))
        out = [
            int(min(self.high, max(self.low, self.median * math.exp(self.sigma * z))))
            for z in quantiles
        ]
        random.Random(seed).shuffle(out)
        return out


def _fixture_sizes(root: Path) -> list[int]:
    """Sizes of the distinct real per-file objects under ``root``."""
    seen: set[bytes] = set()
    sizes: list[int] = []
    for path in sorted(root.glob("*/*/file_*.json")):
        raw = path.read_bytes()
        digest = hashlib.sha256(raw).digest()
        if raw and digest not in seen:
            seen.add(digest)
            sizes.append(len(raw))
    # Analyses shipped without per-file objects still describe real files.
    for path in sorted(root.glob("*/*/analysis.json")):
        if any(path.parent.glob("file_*.json")):
            continue
        raw = path.read_bytes()
        if not raw:
            continue
        for fa in json.loads(raw).get("file_analyses", {}).values():
            sizes.append(len(codec.dumps(fa)))
    return sizes


def fit_sizes(fixtures: Path | None = None) -> SizeModel:
    """Fit the size model to the real fixtures, or fall back to the issue's numbers."""
    root = Path(os.environ.get("DOCUMEE_FIXTURES", fixtures or DEFAULT_FIXTURES))
    sizes = _fixture_sizes(root) if root.is_dir() else []
    if len(sizes) < 20:
        return SizeModel(
            ISSUE_MEDIAN, ISSUE_SIGMA, MIN_FILE_BYTES, MAX_FILE_BYTES, "issue (fixtures absent)"
        )
    logs = [math.log(s) for s in sizes]
    ordered = sorted(sizes)
    return SizeModel(
        median=math.exp(statistics.fmean(logs)),
        sigma=statistics.stdev(logs),
        low=MIN_FILE_BYTES,
        high=MAX_FILE_BYTES,
        source=f"fit to {len(sizes)} real per-file objects in {root}",
        samples=len(sizes),
        observed={
            "min": ordered[0],
            "median": statistics.median(ordered),
            "mean": statistics.fmean(ordered),
            "p95": ordered[int(0.95 * (len(ordered) - 1))],
            "max": ordered[-1],
        },
    )


# ----------------------------------------------------------------------------- files


def _file_path(i: int) -> str:
    pkg = _PACKAGES[i % len(_PACKAGES)]
    word = _WORDS[(i // len(_PACKAGES)) % len(_WORDS)]
    return f"{CODEBASE_ROOT}/django/{pkg}/{word}_{i:05d}.py"


def _shape_for(target: int) -> int:
    """How many functions a file analysis of ``target`` bytes gets."""
    return max(0, round((target - 1_400) / 600))


def _make(path: str, functions: int, docstring_bytes: int, seed: str) -> FileAnalysis:
    return make_file_analysis(
        path, functions=functions, docstring_bytes=docstring_bytes, seed=_seed(seed)
    )


def _seed(text: str) -> int:
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "big")


def sized_file_analysis(path: str, target: int, seed: str) -> tuple[FileAnalysis, int, int]:
    """A file analysis of about ``target`` bytes, and the (functions, docstring_bytes) used."""
    functions = _shape_for(target)
    first = _make(path, functions, 0, seed)
    size0 = len(codec.dump_file_analysis(first))
    documented = sum(1 for f in first.symbol_info.functions if f.docstring is not None)
    if documented == 0 or size0 >= target:
        return first, functions, 0
    # The docstring flags come from the seeded RNG, so a second build with longer
    # docstrings has the same documented functions.
    doc = round((target - size0) / documented)
    return _make(path, functions, doc, seed), functions, doc


def changed_version(path: str, functions: int, docstring_bytes: int, version: int) -> FileAnalysis:
    """Version ``version`` of a file's analysis: same size class, different bytes."""
    return _make(path, functions, docstring_bytes, f"{path}#v{version}")


# ----------------------------------------------------------------------------- graph


def _graph(paths: list[str], mean_degree: float, rng: random.Random) -> dict[str, Any]:
    n = len(paths)
    nodes: dict[str, dict[str, Any]] = {
        p: {"file_path": p, "imports": [], "imported_by": [], "external_imports": []} for p in paths
    }
    edges: list[dict[str, Any]] = []
    external: dict[str, int] = {}
    for i, p in enumerate(paths):
        degree = min(n - 1, round(rng.expovariate(1 / mean_degree))) if mean_degree > 0 else 0
        for j in rng.sample(range(n), degree + 1):
            if j == i or len(nodes[p]["imports"]) >= degree:
                continue
            target = paths[j]
            nodes[p]["imports"].append(target)
            nodes[target]["imported_by"].append(p)
            edges.append({"from_file": p, "to_file": target, "import_count": rng.randint(1, 3)})
        for name in rng.sample(_EXTERNAL, rng.randint(0, 6)):
            nodes[p]["external_imports"].append(name)
            external[name] = external.get(name, 0) + 1
    cycles = []
    for _ in range(n // 100 + 1):
        members = rng.sample(paths, min(n, rng.randint(2, 4)))
        # "severity" is the field upstream's own class cannot read back.
        cycles.append({"cycle": [*members, members[0]], "severity": "warning"})
    return {
        "nodes": nodes,
        "edges": edges,
        "circular_dependencies": cycles,
        "external_dependencies": external,
    }


def make_graph(paths: list[str], target_bytes: int, seed: int = 7) -> dict[str, Any]:
    """A dependency graph of about ``target_bytes`` serialized (fewer if ``paths`` is tiny)."""

    def size(degree: float) -> int:
        return len(codec.dumps(_graph(paths, degree, random.Random(seed))))

    base, probe = size(0), size(8)
    per_degree = max(1.0, (probe - base) / 8)
    degree = max(0.0, (target_bytes - base) / per_degree)
    return _graph(paths, degree, random.Random(seed))


def _global_patterns(rng: random.Random) -> list[dict[str, Any]]:
    kinds = ["context_managers", "decorators", "generators", "dataclasses", "async", "metaclasses"]
    return [
        {
            "pattern_type": f"global_python_{kind}",
            "file_path": "<codebase>",
            "confidence": 1.0,
            "evidence": [f"Found {rng.randint(5, 400)} instances across codebase"],
            "line_numbers": [],
            "metadata": {"count": rng.randint(5, 400), "pattern_type": f"python_{kind}"},
        }
        for kind in kinds
    ]


# ----------------------------------------------------------------------------- dataset


@dataclass
class Dataset:
    """One synthetic codebase, serialized once and shared by every contender.

    ``files`` and ``analysis`` hold the exact bytes upstream (and
    documee-remote) write; the raw clients PUT these bytes as they are.
    """

    n: int
    codebase_id: str
    paths: list[str]
    files: dict[str, bytes]
    analysis: bytes
    hashes: dict[str, str]
    hashes_json: bytes
    #: (functions, docstring_bytes) per path, to regenerate changed versions.
    shapes: dict[str, tuple[int, int]]
    #: The two files an incremental run changes.
    changed: list[str]
    #: Per concurrent writer: its paths and its part of the dependency graph.
    slices: list[dict[str, Any]]
    stats: dict[str, Any]

    def file_key(self, path: str) -> str:
        return layout.file_analysis_key(self.codebase_id, path)

    @property
    def analysis_key(self) -> str:
        return layout.analysis_key(self.codebase_id)

    @property
    def hashes_key(self) -> str:
        return layout.file_hashes_key(self.codebase_id)

    def save(self, path: Path) -> None:
        with path.open("wb") as f:
            pickle.dump(self, f, protocol=pickle.HIGHEST_PROTOCOL)


def load_dataset(path: str | Path) -> Dataset:
    with Path(path).open("rb") as f:
        ds = pickle.load(f)  # our own file, written by build_dataset
    assert isinstance(ds, Dataset)
    return ds


def _split(items: list[str], parts: int) -> Iterable[list[str]]:
    size, extra = divmod(len(items), parts)
    start = 0
    for k in range(parts):
        end = start + size + (1 if k < extra else 0)
        yield items[start:end]
        start = end


def build_dataset(
    n: int,
    *,
    model: SizeModel | None = None,
    graph_ratio: float = DJANGO_GRAPH_RATIO,
    writers: int = 8,
) -> Dataset:
    """Generate, serialize and describe a codebase of ``n`` files."""
    model = model or fit_sizes()
    codebase_id = hashlib.sha256(CODEBASE_ROOT.encode()).hexdigest()[:16]
    paths = [_file_path(i) for i in range(n)]
    targets = model.sizes(n)
    analyses: dict[str, FileAnalysis] = {}
    shapes: dict[str, tuple[int, int]] = {}
    files: dict[str, bytes] = {}
    for path, target in zip(paths, targets, strict=True):
        fa, functions, doc = sized_file_analysis(path, target, path)
        analyses[path] = fa
        shapes[path] = (functions, doc)
        files[path] = codec.dump_file_analysis(fa)
    file_bytes = sum(len(b) for b in files.values())
    rng = random.Random(11)
    graph = make_graph(paths, int(graph_ratio * file_bytes))
    patterns = _global_patterns(rng)
    analysis = CodebaseAnalysis(
        codebase_id=codebase_id,
        file_analyses=analyses,
        dependency_graph=DependencyGraph.model_validate(graph),
        global_patterns=[DetectedPattern.model_validate(p) for p in patterns],
        top_teaching_files=rank_teaching_files(analyses),
        metrics=compute_metrics(analyses, analysis_time_ms=123_456.78),
        analyzed_at=now_iso(),
    )
    body = codec.dump_codebase_analysis(analysis)
    hashes = {p: content_hash(f"{p} v0") for p in paths}
    slices = []
    for k, chunk in enumerate(_split(paths, writers)):
        mine = set(chunk)
        slices.append(
            {
                "paths": chunk,
                "nodes": {p: graph["nodes"][p] for p in chunk},
                "edges": [e for e in graph["edges"] if e["from_file"] in mine],
                "external": {
                    name: graph["external_dependencies"][name]
                    for name in {x for p in chunk for x in graph["nodes"][p]["external_imports"]}
                },
                "cycles": graph["circular_dependencies"] if k == 0 else [],
                "patterns": patterns if k == 0 else [],
            }
        )
    sizes = sorted(len(b) for b in files.values())
    graph_bytes = len(codec.dumps(graph))
    stats = {
        "files": n,
        "file_bytes_total": file_bytes,
        "file_bytes_min": sizes[0],
        "file_bytes_median": statistics.median(sizes),
        "file_bytes_mean": round(statistics.fmean(sizes)),
        "file_bytes_p95": sizes[int(0.95 * (n - 1))],
        "file_bytes_max": sizes[-1],
        "graph_bytes": graph_bytes,
        "graph_edges": len(graph["edges"]),
        "analysis_json_bytes": len(body),
        "size_model": {
            "median": round(model.median),
            "sigma": round(model.sigma, 3),
            "low": model.low,
            "high": model.high,
            "source": model.source,
            "observed": model.observed,
        },
        "graph_ratio": round(graph_ratio, 3),
    }
    return Dataset(
        n=n,
        codebase_id=codebase_id,
        paths=paths,
        files=files,
        analysis=body,
        hashes=hashes,
        hashes_json=codec.dump_file_hashes(hashes),
        shapes=shapes,
        changed=[paths[n // 3], paths[(2 * n) // 3]] if n > 2 else paths[:2],
        slices=slices,
        stats=stats,
    )
