"""Pydantic models of the analysis results Documee writes to disk.

The classes mirror upstream's dataclasses (``src/models/analysis_models.py``
of briansbrian/documee-MCP) name for name and field for field, in the same
order, because field order is the key order on disk. They exist to read and
rewrite upstream's files without changing a byte, so they differ from plain
pydantic defaults in three ways:

* **Unknown fields survive.** Every model has ``extra="allow"``: fields that
  upstream added later (``severity`` on circular dependencies) or that a newer
  Documee writes come back out on save, after the declared fields.
* **Numbers keep their JSON type.** Float fields are ``int | float``
  (:data:`JsonFloat`): upstream's Python can put ``0`` where a float is
  expected, and ``0`` must be written back as ``0``, not ``0.0``. Integer and
  boolean fields are strict, so ``true`` never becomes ``1``, ``1.0`` never
  becomes ``1``, and either is reported as a shape error instead.
* **Defaults follow upstream's ``from_dict``**, not just its dataclass
  defaults: e.g. ``FileAnalysis.from_dict`` tolerated a missing ``patterns``,
  ``linter_issues``, ``errors``, ``cache_hit`` or ``is_notebook``, and
  ``CodebaseAnalysis.from_dict`` a missing ``file_analyses``,
  ``global_patterns`` or ``top_teaching_files``. A field filled from its
  default is written out on save, as upstream does.

There are no Python-level validators: validation runs entirely in
pydantic-core, which matters for analyses of tens of megabytes. Use
:mod:`documee_remote.codec` to read and write the bytes; ``to_dict`` and
``from_dict`` are the in-memory equivalents of upstream's methods.
"""

from __future__ import annotations

from typing import Any, Self, TypeAlias

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictFloat, StrictInt

__all__ = [
    "AnalysisModel",
    "CircularDependency",
    "ClassInfo",
    "CodebaseAnalysis",
    "CodebaseMetrics",
    "ComplexityMetrics",
    "DependencyEdge",
    "DependencyGraph",
    "DetectedPattern",
    "FileAnalysis",
    "FileNode",
    "FunctionInfo",
    "ImportInfo",
    "JsonFloat",
    "LinterIssue",
    "SymbolInfo",
    "TeachingValueScore",
]

#: A field upstream types ``float``. Python lets an ``int`` in (``0`` for an
#: empty average), and JSON keeps the difference, so both are kept as they are.
#: Smart-mode union: an int validates as ``int``, a float as ``float``, a bool
#: as neither.
JsonFloat: TypeAlias = StrictInt | StrictFloat


class AnalysisModel(BaseModel):
    """Base of every analysis model: unknown fields kept, validation in Rust only."""

    model_config = ConfigDict(
        extra="allow",
        # NaN and ±Infinity are legal in upstream's files (Python's json writes them);
        # "constants" writes them back as the same bare tokens.
        ser_json_inf_nan="constants",
        # Errors must never echo object bodies (they end up in logs).
        hide_input_in_errors=True,
        # Field names such as "model_*" are not used, but keep pydantic quiet if a
        # future upstream adds one as an extra.
        protected_namespaces=(),
        # Build each class's validator and serializer on first use, not at import:
        # building all of them costs tens of milliseconds that a cold start which
        # never reads an analysis should not pay.
        defer_build=True,
    )

    def to_dict(self) -> dict[str, Any]:
        """Return the JSON-ready dict upstream's ``to_dict`` would give.

        Keys come in upstream's field order, followed by any unknown fields.
        Tuples (``top_teaching_files`` entries) stay tuples, as upstream's do;
        :func:`documee_remote.codec.dumps` writes them as lists.
        """
        return self.model_dump(mode="python", by_alias=True)

    @classmethod
    def from_dict(cls, data: Any) -> Self:
        """Validate ``data`` (a dict as produced by ``json.loads``) into a model.

        Raises pydantic's ``ValidationError`` on a wrong shape; the codec turns
        that into :class:`~documee_remote.errors.CorruptObjectError`.
        """
        return cls.model_validate(data)


class FunctionInfo(AnalysisModel):
    """A function or method extracted from source."""

    name: str
    parameters: list[str]
    return_type: str | None
    docstring: str | None
    start_line: StrictInt
    end_line: StrictInt
    complexity: StrictInt
    is_async: StrictBool
    decorators: list[str] = Field(default_factory=list)


class ClassInfo(AnalysisModel):
    """A class extracted from source, with its methods."""

    name: str
    # Upstream's from_dict read methods with data.get('methods', []).
    methods: list[FunctionInfo] = Field(default_factory=list)
    base_classes: list[str]
    docstring: str | None
    start_line: StrictInt
    end_line: StrictInt
    decorators: list[str] = Field(default_factory=list)


class ImportInfo(AnalysisModel):
    """One import statement."""

    module: str
    imported_symbols: list[str]
    is_relative: StrictBool
    import_type: str
    line_number: StrictInt


class SymbolInfo(AnalysisModel):
    """The symbols of one file; upstream's from_dict defaulted every field."""

    functions: list[FunctionInfo] = Field(default_factory=list)
    classes: list[ClassInfo] = Field(default_factory=list)
    imports: list[ImportInfo] = Field(default_factory=list)
    exports: list[str] = Field(default_factory=list)


class DetectedPattern(AnalysisModel):
    """A coding pattern detected in a file (or across files, for global patterns)."""

    pattern_type: str
    file_path: str
    confidence: JsonFloat
    evidence: list[str]
    line_numbers: list[StrictInt]
    metadata: dict[str, Any] = Field(default_factory=dict)


class ComplexityMetrics(AnalysisModel):
    """Complexity statistics of one file."""

    avg_complexity: JsonFloat
    max_complexity: StrictInt
    min_complexity: StrictInt
    high_complexity_functions: list[str]
    trivial_functions: list[str]
    avg_nesting_depth: JsonFloat


class TeachingValueScore(AnalysisModel):
    """How useful a file is for teaching, with the factors behind the score."""

    total_score: JsonFloat
    documentation_score: JsonFloat
    complexity_score: JsonFloat
    pattern_score: JsonFloat
    structure_score: JsonFloat
    explanation: str
    # Upstream types this Dict[str, float] but stores nested objects
    # ({"score": .., "weight": .., ...}), so any JSON value is accepted.
    factors: dict[str, Any] = Field(default_factory=dict)


class LinterIssue(AnalysisModel):
    """One issue reported by a linter."""

    tool: str
    severity: str
    message: str
    line: StrictInt
    column: StrictInt
    rule: str


class FileAnalysis(AnalysisModel):
    """The complete analysis of one source file.

    ``errors`` may hold tree-sitter node reprs such as
    ``<Node type=ERROR, start_point=(22, 6), end_point=(22, 11)>``, and
    ``has_errors`` may be true with ``errors`` empty; both are kept as they are.
    """

    file_path: str
    language: str
    symbol_info: SymbolInfo
    patterns: list[DetectedPattern] = Field(default_factory=list)
    teaching_value: TeachingValueScore
    complexity_metrics: ComplexityMetrics
    documentation_coverage: JsonFloat
    linter_issues: list[LinterIssue] = Field(default_factory=list)
    has_errors: StrictBool
    errors: list[str] = Field(default_factory=list)
    analyzed_at: str
    cache_hit: StrictBool = False
    is_notebook: StrictBool = False


class DependencyEdge(AnalysisModel):
    """An import edge between two files of the codebase."""

    from_file: str
    to_file: str
    import_count: StrictInt


class FileNode(AnalysisModel):
    """A file in the dependency graph."""

    file_path: str
    imports: list[str]
    imported_by: list[str]
    external_imports: list[str]


class CircularDependency(AnalysisModel):
    """An import cycle.

    Real files also carry ``severity``, which upstream's own class cannot read
    back; here it is an unknown field and survives a load and a save.
    """

    cycle: list[str]


class DependencyGraph(AnalysisModel):
    """The codebase's import graph; upstream's from_dict defaulted every field."""

    nodes: dict[str, FileNode] = Field(default_factory=dict)
    edges: list[DependencyEdge] = Field(default_factory=list)
    circular_dependencies: list[CircularDependency] = Field(default_factory=list)
    external_dependencies: dict[str, StrictInt] = Field(default_factory=dict)


class CodebaseMetrics(AnalysisModel):
    """Totals and averages over the whole codebase."""

    total_files: StrictInt
    total_functions: StrictInt
    total_classes: StrictInt
    avg_complexity: JsonFloat
    avg_documentation_coverage: JsonFloat
    total_patterns_detected: StrictInt
    analysis_time_ms: JsonFloat
    cache_hit_rate: JsonFloat


class CodebaseAnalysis(AnalysisModel):
    """The whole analysis of a codebase: the content of ``analysis.json``.

    ``file_analyses`` keeps insertion order (the order files were walked),
    which is also its order on disk; it is never sorted.
    """

    codebase_id: str
    file_analyses: dict[str, FileAnalysis] = Field(default_factory=dict)
    dependency_graph: DependencyGraph
    global_patterns: list[DetectedPattern] = Field(default_factory=list)
    #: ``(file path, score)`` pairs; JSON lists of two on disk.
    top_teaching_files: list[tuple[str, JsonFloat]] = Field(default_factory=list)
    metrics: CodebaseMetrics
    analyzed_at: str
