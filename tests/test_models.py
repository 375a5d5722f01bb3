"""The models mirror upstream's dataclasses and keep every byte of what they load."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import BaseModel, ValidationError

from documee_remote import codec
from documee_remote.models import (
    AnalysisModel,
    CircularDependency,
    ClassInfo,
    CodebaseAnalysis,
    CodebaseMetrics,
    ComplexityMetrics,
    DependencyEdge,
    DependencyGraph,
    DetectedPattern,
    FileAnalysis,
    FileNode,
    FunctionInfo,
    ImportInfo,
    LinterIssue,
    SymbolInfo,
    TeachingValueScore,
)

QUIRKS = Path(__file__).resolve().parent / "fixtures" / "quirks"


def reference(obj: Any) -> bytes:
    return json.dumps(obj, indent=2, ensure_ascii=False).encode("utf-8")


def quirk(name: str) -> Path:
    return next(QUIRKS.glob(f"{name}/*"))


# Upstream's field order (= key order on disk) and which fields its from_dict
# let be missing.
UPSTREAM_FIELDS: dict[type[BaseModel], tuple[list[str], set[str]]] = {
    FunctionInfo: (
        [
            "name",
            "parameters",
            "return_type",
            "docstring",
            "start_line",
            "end_line",
            "complexity",
            "is_async",
            "decorators",
        ],
        {"decorators"},
    ),
    ClassInfo: (
        ["name", "methods", "base_classes", "docstring", "start_line", "end_line", "decorators"],
        {"methods", "decorators"},
    ),
    ImportInfo: (
        ["module", "imported_symbols", "is_relative", "import_type", "line_number"],
        set(),
    ),
    SymbolInfo: (
        ["functions", "classes", "imports", "exports"],
        {"functions", "classes", "imports", "exports"},
    ),
    DetectedPattern: (
        ["pattern_type", "file_path", "confidence", "evidence", "line_numbers", "metadata"],
        {"metadata"},
    ),
    ComplexityMetrics: (
        [
            "avg_complexity",
            "max_complexity",
            "min_complexity",
            "high_complexity_functions",
            "trivial_functions",
            "avg_nesting_depth",
        ],
        set(),
    ),
    TeachingValueScore: (
        [
            "total_score",
            "documentation_score",
            "complexity_score",
            "pattern_score",
            "structure_score",
            "explanation",
            "factors",
        ],
        {"factors"},
    ),
    LinterIssue: (["tool", "severity", "message", "line", "column", "rule"], set()),
    FileAnalysis: (
        [
            "file_path",
            "language",
            "symbol_info",
            "patterns",
            "teaching_value",
            "complexity_metrics",
            "documentation_coverage",
            "linter_issues",
            "has_errors",
            "errors",
            "analyzed_at",
            "cache_hit",
            "is_notebook",
        ],
        {"patterns", "linter_issues", "errors", "cache_hit", "is_notebook"},
    ),
    DependencyEdge: (["from_file", "to_file", "import_count"], set()),
    FileNode: (["file_path", "imports", "imported_by", "external_imports"], set()),
    CircularDependency: (["cycle"], set()),
    DependencyGraph: (
        ["nodes", "edges", "circular_dependencies", "external_dependencies"],
        {"nodes", "edges", "circular_dependencies", "external_dependencies"},
    ),
    CodebaseMetrics: (
        [
            "total_files",
            "total_functions",
            "total_classes",
            "avg_complexity",
            "avg_documentation_coverage",
            "total_patterns_detected",
            "analysis_time_ms",
            "cache_hit_rate",
        ],
        set(),
    ),
    CodebaseAnalysis: (
        [
            "codebase_id",
            "file_analyses",
            "dependency_graph",
            "global_patterns",
            "top_teaching_files",
            "metrics",
            "analyzed_at",
        ],
        {"file_analyses", "global_patterns", "top_teaching_files"},
    ),
}


@pytest.mark.parametrize("model", list(UPSTREAM_FIELDS), ids=lambda m: m.__name__)
def test_fields_follow_upstream_order_and_defaults(model: type[BaseModel]) -> None:
    names, optional = UPSTREAM_FIELDS[model]
    assert list(model.model_fields) == names
    assert {n for n, f in model.model_fields.items() if not f.is_required()} == optional
    assert issubclass(model, AnalysisModel)
    assert model.model_config.get("extra") == "allow"


def test_missing_defaulted_fields_are_filled_and_written_in_order() -> None:
    fa = FileAnalysis.from_dict(
        {
            "file_path": "/x.py",
            "language": "python",
            "symbol_info": {},
            "teaching_value": {
                "total_score": 0,
                "documentation_score": 0,
                "complexity_score": 0,
                "pattern_score": 0,
                "structure_score": 0,
                "explanation": "",
            },
            "complexity_metrics": {
                "avg_complexity": 0,
                "max_complexity": 0,
                "min_complexity": 0,
                "high_complexity_functions": [],
                "trivial_functions": [],
                "avg_nesting_depth": 0,
            },
            "documentation_coverage": 0,
            "has_errors": False,
            "analyzed_at": "2026-11-24T00:39:33",
        }
    )
    d = fa.to_dict()
    assert list(d) == UPSTREAM_FIELDS[FileAnalysis][0]
    assert d["symbol_info"] == {"functions": [], "classes": [], "imports": [], "exports": []}
    assert d["patterns"] == d["linter_issues"] == d["errors"] == []
    assert d["cache_hit"] is False
    assert d["is_notebook"] is False
    assert d["teaching_value"]["factors"] == {}
    assert codec.dump_file_analysis(fa) == reference(d)


@pytest.mark.parametrize(
    "missing", ["file_path", "language", "symbol_info", "has_errors", "analyzed_at"]
)
def test_fields_upstream_required_are_required(missing: str) -> None:
    raw = json.loads((quirk("timestamps") / "analysis.json").read_bytes())
    fa = next(iter(raw["file_analyses"].values()))
    del fa[missing]
    with pytest.raises(ValidationError):
        FileAnalysis.from_dict(fa)


# ----------------------------------------------------------------- numbers


def _metrics(**overrides: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "avg_complexity": 1.5,
        "max_complexity": 2,
        "min_complexity": 1,
        "high_complexity_functions": [],
        "trivial_functions": [],
        "avg_nesting_depth": 0.0,
    }
    base.update(overrides)
    return base


@pytest.mark.parametrize("value", [0, 7, -3, 2**70, 0.0, -0.0, 1e-05, 1e16, 0.9000000000000001])
def test_float_fields_keep_int_or_float_as_held(value: float) -> None:
    m = ComplexityMetrics.from_dict(_metrics(avg_complexity=value))
    assert type(m.avg_complexity) is type(value)
    data = codec.dumps_model(m)
    assert data == reference(_metrics(avg_complexity=value))
    back = codec.loads(data)["avg_complexity"]
    assert type(back) is type(value)
    assert back == value
    assert math.copysign(1, back) == math.copysign(1, value)


def test_float_fields_accept_nan_and_infinity() -> None:
    m = ComplexityMetrics.from_dict(
        _metrics(avg_complexity=float("nan"), avg_nesting_depth=-math.inf)
    )
    assert math.isnan(m.avg_complexity)
    assert codec.dumps_model(m) == reference(m.to_dict())
    assert b"NaN" in codec.dumps_model(m)
    assert b"-Infinity" in codec.dumps_model(m)


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("avg_complexity", True),  # bool is not a number here
        ("avg_complexity", "1.5"),
        ("max_complexity", 2.0),  # would be written back as 2
        ("max_complexity", False),
        ("max_complexity", "2"),
        ("avg_nesting_depth", None),
    ],
)
def test_numbers_are_not_coerced(field: str, value: Any) -> None:
    with pytest.raises(ValidationError):
        ComplexityMetrics.from_dict(_metrics(**{field: value}))


@pytest.mark.parametrize("value", [1, "true", 1.0])
def test_bools_are_not_coerced(value: Any) -> None:
    raw = json.loads((quirk("timestamps") / "analysis.json").read_bytes())
    fa = next(iter(raw["file_analyses"].values()))
    fa["cache_hit"] = value
    with pytest.raises(ValidationError):
        FileAnalysis.from_dict(fa)


def test_top_teaching_files_are_pairs_written_as_lists() -> None:
    raw = (quirk("floats") / "analysis.json").read_bytes()
    analysis = codec.load_codebase_analysis(raw)
    assert analysis.top_teaching_files == [
        ("/srv/code/quirk-floats/floats.py", 0.30000000000000004),
        ("/srv/code/quirk-floats/empty.py", 0),
    ]
    assert type(analysis.top_teaching_files[1][1]) is int
    assert all(type(pair) is tuple for pair in analysis.top_teaching_files)
    assert json.loads(codec.dump_codebase_analysis(analysis))["top_teaching_files"][0] == [
        "/srv/code/quirk-floats/floats.py",
        0.30000000000000004,
    ]
    with pytest.raises(ValidationError):
        CodebaseAnalysis.from_dict({**json.loads(raw), "top_teaching_files": [["a", 1, 2]]})


# ----------------------------------------------------------------- unknown fields


def test_unknown_fields_survive_at_every_level() -> None:
    raw = (quirk("extra-fields") / "analysis.json").read_bytes()
    a = codec.load_codebase_analysis(raw)
    assert a.model_extra == {
        "schema_version": 2,
        "generator": {"name": "documee", "version": "9.9"},
    }
    fa = next(iter(a.file_analyses.values()))
    assert fa.model_extra == {
        "git_info": {"last_commit": "abc123", "authors": ["ana"]},
        "line_count": 42,
    }
    assert fa.symbol_info.model_extra == {"globals": ["X"]}
    assert fa.symbol_info.functions[0].model_extra == {
        "visibility": "public",
        "signature": {"args": [], "ret": None},
    }
    assert fa.symbol_info.classes[0].model_extra == {"generic_params": ["T"]}
    assert fa.symbol_info.classes[0].methods[0].model_extra == {"loc": 3}
    assert fa.symbol_info.imports[0].model_extra == {"resolved_path": None}
    assert fa.patterns[0].model_extra == {"confidence_interval": [0.1, 0.9]}
    assert fa.teaching_value.model_extra == {"model_version": "2.0"}
    assert fa.complexity_metrics.model_extra == {"max_nesting_depth": 3, "total_decision_points": 0}
    assert fa.linter_issues[0].model_extra == {"fixable": True}
    assert a.dependency_graph.model_extra == {"layers": {"core": [fa.file_path]}}
    assert next(iter(a.dependency_graph.nodes.values())).model_extra == {"depth": 0}
    assert a.global_patterns[0].model_extra == {"scope": "codebase"}
    assert a.metrics.model_extra == {"total_lines": 42}
    assert codec.dump_codebase_analysis(a) == raw


def test_circular_dependency_severity_survives() -> None:
    raw = (quirk("circular-severity") / "analysis.json").read_bytes()
    a = codec.load_codebase_analysis(raw)
    cycles = a.dependency_graph.circular_dependencies
    assert [c.model_extra for c in cycles] == [
        {"severity": "catastrophic"},
        {"severity": {"level": "unknown-level", "score": 0.9000000000000001, "since": None}},
    ]
    assert len(cycles[0].cycle) == 4
    assert codec.dump_codebase_analysis(a) == raw
    # The same through to_dict/from_dict, upstream's in-memory API.
    again = CodebaseAnalysis.from_dict(a.to_dict())
    assert again == a
    assert again.to_dict()["dependency_graph"]["circular_dependencies"][0] == {
        "cycle": cycles[0].cycle,
        "severity": "catastrophic",
    }


def test_unknown_field_in_the_middle_survives_after_the_known_ones() -> None:
    data = {"from_file": "a", "new_field": [1, 2], "to_file": "b", "import_count": 1}
    edge = DependencyEdge.from_dict(data)
    assert edge.to_dict() == data
    # Key order: declared fields first, then unknown ones.
    assert list(edge.to_dict()) == ["from_file", "to_file", "import_count", "new_field"]


def test_parse_errors_are_kept_verbatim() -> None:
    raw = (quirk("parse-errors") / "analysis.json").read_bytes()
    a = codec.load_codebase_analysis(raw)
    broken, half = a.file_analyses.values()
    assert broken.has_errors
    assert broken.errors[0] == "<Node type=ERROR, start_point=(22, 6), end_point=(22, 11)>"
    assert half.has_errors
    assert half.errors == []


def test_windows_paths_are_plain_data() -> None:
    raw = (quirk("windows-paths") / "analysis.json").read_bytes()
    a = codec.load_codebase_analysis(raw)
    assert next(iter(a.file_analyses)) == "C:\\Users\\dev\\proj\\src\\main.py"
    edge = a.dependency_graph.edges[0]
    assert edge.to_file == "C:\\Users\\dev\\proj\\src\\utils\\helpers.py"


def test_nested_factors_are_any_json() -> None:
    raw = (quirk("nested-factors") / "analysis.json").read_bytes()
    fa = next(iter(codec.load_codebase_analysis(raw).file_analyses.values()))
    factors = fa.teaching_value.factors
    assert factors["custom"]["nested"]["deeper"]["deepest"] == [
        1,
        2.5,
        "three",
        False,
        None,
        {},
        [],
    ]
    assert factors["documentation"]["details"]["per_function"][0]["documented"] is True
    assert factors["flat_number"] == 0.5


def test_timestamps_are_kept_as_written() -> None:
    raw = (quirk("timestamps") / "analysis.json").read_bytes()
    a = codec.load_codebase_analysis(raw)
    assert [fa.analyzed_at for fa in a.file_analyses.values()] == [
        "2026-11-24T00:39:32.668719",
        "2026-11-24T00:39:33",
        "2026-11-24T00:39:33.000100",
    ]
    assert a.analyzed_at == "2026-11-24T00:40:00"


# ----------------------------------------------------------------- generated models

names = st.text(st.characters(exclude_categories=["Cs"]), max_size=12)
numbers = (
    st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False, allow_infinity=True)
    | st.sampled_from([0, 0.0, -0.0, 1e-05, 1e16, 0.9000000000000001])
)
line = st.integers(min_value=0, max_value=10**6)
json_any = st.recursive(
    st.none() | st.booleans() | numbers | names,
    lambda c: st.lists(c, max_size=3) | st.dictionaries(names, c, max_size=3),
    max_leaves=8,
)


def _fields(**kw: st.SearchStrategy[Any]) -> st.SearchStrategy[dict[str, Any]]:
    return st.fixed_dictionaries(kw)


functions = _fields(
    name=names,
    parameters=st.lists(names, max_size=3),
    return_type=st.none() | names,
    docstring=st.none() | names,
    start_line=line,
    end_line=line,
    complexity=line,
    is_async=st.booleans(),
    decorators=st.lists(names, max_size=2),
)
classes = _fields(
    name=names,
    methods=st.lists(functions, max_size=2),
    base_classes=st.lists(names, max_size=2),
    docstring=st.none() | names,
    start_line=line,
    end_line=line,
    decorators=st.lists(names, max_size=2),
)
imports = _fields(
    module=names,
    imported_symbols=st.lists(names, max_size=2),
    is_relative=st.booleans(),
    import_type=st.sampled_from(["import", "from_import", "require", "es6_import"]),
    line_number=line,
)
patterns = _fields(
    pattern_type=names,
    file_path=names,
    confidence=numbers,
    evidence=st.lists(names, max_size=2),
    line_numbers=st.lists(line, max_size=3),
    metadata=st.dictionaries(names, json_any, max_size=3),
)
file_analyses = _fields(
    file_path=names,
    language=names,
    symbol_info=_fields(
        functions=st.lists(functions, max_size=2),
        classes=st.lists(classes, max_size=2),
        imports=st.lists(imports, max_size=2),
        exports=st.lists(names, max_size=2),
    ),
    patterns=st.lists(patterns, max_size=2),
    teaching_value=_fields(
        total_score=numbers,
        documentation_score=numbers,
        complexity_score=numbers,
        pattern_score=numbers,
        structure_score=numbers,
        explanation=names,
        factors=st.dictionaries(names, json_any, max_size=3),
    ),
    complexity_metrics=_fields(
        avg_complexity=numbers,
        max_complexity=line,
        min_complexity=line,
        high_complexity_functions=st.lists(names, max_size=2),
        trivial_functions=st.lists(names, max_size=2),
        avg_nesting_depth=numbers,
    ),
    documentation_coverage=numbers,
    linter_issues=st.lists(
        _fields(
            tool=names,
            severity=names,
            message=names,
            line=line,
            column=line,
            rule=names,
        ),
        max_size=2,
    ),
    has_errors=st.booleans(),
    errors=st.lists(names, max_size=2),
    analyzed_at=names,
    cache_hit=st.booleans(),
    is_notebook=st.booleans(),
)


@settings(max_examples=150, suppress_health_check=[HealthCheck.too_slow])
@given(file_analyses, st.dictionaries(names.map(lambda s: "x_" + s), json_any, max_size=2))
def test_generated_file_analyses_round_trip(data: dict[str, Any], extra: dict[str, Any]) -> None:
    data = {**data, **extra}
    fa = FileAnalysis.from_dict(data)
    assert fa.to_dict() == data
    raw = codec.dump_file_analysis(fa)
    # (Hypothesis builds the dicts in no particular key order; to_dict has upstream's.)
    assert raw == reference(fa.to_dict())
    back = codec.load_file_analysis(raw, key="cb/file_0000000000000000.json")
    assert back == fa
    assert codec.dump_file_analysis(back) == raw


@settings(max_examples=50, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(file_analyses, min_size=1, max_size=3), numbers)
def test_generated_codebase_analyses_round_trip(files: list[dict[str, Any]], score: Any) -> None:
    data = {
        "codebase_id": "gen",
        "file_analyses": {f"/p/{i}": {**f, "file_path": f"/p/{i}"} for i, f in enumerate(files)},
        "dependency_graph": {
            "nodes": {},
            "edges": [],
            "circular_dependencies": [{"cycle": ["/p/0"], "severity": "low"}],
            "external_dependencies": {"os": 1},
        },
        "global_patterns": [],
        "top_teaching_files": [("/p/0", score)],
        "metrics": {
            "total_files": len(files),
            "total_functions": 0,
            "total_classes": 0,
            "avg_complexity": score,
            "avg_documentation_coverage": 0,
            "total_patterns_detected": 0,
            "analysis_time_ms": 1.5,
            "cache_hit_rate": 0.0,
        },
        "analyzed_at": "2026-11-24T00:39:32",
    }
    a = CodebaseAnalysis.from_dict(data)
    assert a.to_dict() == data
    raw = codec.dump_codebase_analysis(a)
    assert raw == reference(a.to_dict())
    assert codec.load_codebase_analysis(raw) == a
