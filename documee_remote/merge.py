"""Merging file analyses into a codebase analysis: pure functions, no I/O.

The derived parts are recomputed exactly as upstream's engine computes them
(``AnalysisEngine._calculate_codebase_metrics`` and its teaching-file
ranking), checked against every real fixture in the tests:

- ``metrics``: counts over the file analyses; ``avg_complexity`` averages the
  positive per-file averages, rounded to 2 places; documentation coverage and
  cache-hit rate rounded to 3. ``analysis_time_ms`` measures a run, which a
  merge cannot recompute: it is kept (plus what the caller reports).
- ``top_teaching_files``: the 20 best ``teaching_value.total_score``, ties in
  file order.

What cannot be recomputed from file analyses (the dependency graph, global
patterns) is kept as it is unless the caller passes a function that merges it,
or a :class:`GraphUpdate` that says, as data, what a merge changes in them.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime

from pydantic import BaseModel, ConfigDict

from .models import (
    CircularDependency,
    CodebaseAnalysis,
    CodebaseMetrics,
    DependencyEdge,
    DependencyGraph,
    DetectedPattern,
    FileAnalysis,
    FileNode,
)

__all__ = [
    "TOP_TEACHING_FILES",
    "GraphUpdate",
    "apply_file_changes",
    "apply_graph_update",
    "compute_metrics",
    "new_analysis",
    "now_iso",
    "rank_teaching_files",
    "refresh_derived",
]

#: How many files upstream keeps in ``top_teaching_files``.
TOP_TEACHING_FILES = 20


def now_iso() -> str:
    """A timestamp in upstream's format: naive local time, ``datetime.now().isoformat()``."""
    return datetime.now().isoformat()


def compute_metrics(
    file_analyses: Mapping[str, FileAnalysis], *, analysis_time_ms: float = 0.0
) -> CodebaseMetrics:
    """Codebase metrics from file analyses, exactly as upstream computes them."""
    total_files = len(file_analyses)
    complexities = [
        fa.complexity_metrics.avg_complexity
        for fa in file_analyses.values()
        if fa.complexity_metrics.avg_complexity > 0
    ]
    coverages = [fa.documentation_coverage for fa in file_analyses.values()]
    cache_hits = sum(1 for fa in file_analyses.values() if fa.cache_hit)
    return CodebaseMetrics(
        total_files=total_files,
        total_functions=sum(len(fa.symbol_info.functions) for fa in file_analyses.values()),
        total_classes=sum(len(fa.symbol_info.classes) for fa in file_analyses.values()),
        avg_complexity=round(sum(complexities) / len(complexities), 2) if complexities else 0.0,
        avg_documentation_coverage=round(sum(coverages) / len(coverages), 3) if coverages else 0.0,
        total_patterns_detected=sum(len(fa.patterns) for fa in file_analyses.values()),
        analysis_time_ms=round(analysis_time_ms, 2),
        cache_hit_rate=round(cache_hits / total_files, 3) if total_files else 0.0,
    )


def rank_teaching_files(
    file_analyses: Mapping[str, FileAnalysis], limit: int = TOP_TEACHING_FILES
) -> list[tuple[str, float]]:
    """The ``limit`` files of highest teaching value, as upstream ranks them."""
    ranked = sorted(
        ((path, fa.teaching_value.total_score) for path, fa in file_analyses.items()),
        key=lambda item: item[1],
        reverse=True,
    )
    return ranked[:limit]


def new_analysis(codebase_id: str) -> CodebaseAnalysis:
    """The analysis a first merge starts from: no files, empty graph and patterns."""
    return CodebaseAnalysis(
        codebase_id=codebase_id,
        file_analyses={},
        dependency_graph=DependencyGraph(
            nodes={}, edges=[], circular_dependencies=[], external_dependencies={}
        ),
        global_patterns=[],
        top_teaching_files=[],
        metrics=compute_metrics({}),
        analyzed_at=now_iso(),
    )


def apply_file_changes(
    analysis: CodebaseAnalysis,
    analyses: Mapping[str, FileAnalysis],
    removed: Iterable[str] = (),
) -> None:
    """Put ``analyses`` into ``analysis`` (replacing a path's older entry in place,
    appending new paths in the caller's order) and drop the ``removed`` paths."""
    entries = analysis.file_analyses
    for path, fa in analyses.items():
        entries[path] = fa
    for path in removed:
        if path not in analyses:
            entries.pop(path, None)


def refresh_derived(analysis: CodebaseAnalysis, *, add_analysis_time_ms: float = 0.0) -> None:
    """Recompute ``metrics``, ``top_teaching_files`` and ``analyzed_at`` after a change.

    Fields of ``metrics`` this library does not know (a newer Documee's) cannot
    be recomputed; they are kept as they were, as unknown fields are everywhere.
    """
    old = analysis.metrics
    metrics = compute_metrics(
        analysis.file_analyses,
        analysis_time_ms=old.analysis_time_ms + add_analysis_time_ms,
    )
    for name, value in (old.__pydantic_extra__ or {}).items():
        setattr(metrics, name, value)
    analysis.metrics = metrics
    analysis.top_teaching_files = rank_teaching_files(analysis.file_analyses)
    analysis.analyzed_at = now_iso()


class GraphUpdate(BaseModel):
    """A merge's change to the dependency graph and global patterns, as data.

    A function cannot be stored in a delta, but this can, so merges that bring
    their part of the graph still go through the journal. Applied to the
    analysis after the merge's file analyses:

    - ``nodes`` are set by path, and nodes of the merge's removed files dropped;
    - the edges *from* the merge's files (analysed or removed) are replaced by
      ``edges``: a shard owns the outgoing edges of the files it analysed;
    - ``external_dependencies`` are set by name;
    - ``circular_dependencies`` and ``global_patterns`` replace the stored
      ones when given (they are codebase-wide: the last analyser to compute
      them wins).
    """

    model_config = ConfigDict(extra="forbid", defer_build=True, hide_input_in_errors=True)

    nodes: dict[str, FileNode] = {}
    edges: list[DependencyEdge] = []
    external_dependencies: dict[str, int] = {}
    circular_dependencies: list[CircularDependency] | None = None
    global_patterns: list[DetectedPattern] | None = None


def apply_graph_update(
    analysis: CodebaseAnalysis,
    update: GraphUpdate,
    files: Iterable[str],
    removed: Iterable[str] = (),
) -> None:
    """Apply ``update`` for a merge of ``files`` (analysed) and ``removed`` paths."""
    graph = analysis.dependency_graph
    analysed = set(files)
    gone = set(removed) - analysed  # a path both removed and analysed stays
    owned = analysed | gone
    for path in gone:
        graph.nodes.pop(path, None)
    graph.nodes.update(update.nodes)
    if owned or update.edges:
        graph.edges = [e for e in graph.edges if e.from_file not in owned] + list(update.edges)
    graph.external_dependencies.update(update.external_dependencies)
    if update.circular_dependencies is not None:
        graph.circular_dependencies = list(update.circular_dependencies)
    if update.global_patterns is not None:
        analysis.global_patterns = list(update.global_patterns)
