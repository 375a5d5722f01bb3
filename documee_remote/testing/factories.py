"""Synthetic, valid Documee analyses for tests and benchmarks."""

from __future__ import annotations

import hashlib
import random

from ..merge import now_iso
from ..models import (
    ComplexityMetrics,
    DetectedPattern,
    FileAnalysis,
    FunctionInfo,
    ImportInfo,
    SymbolInfo,
    TeachingValueScore,
)

__all__ = ["content_hash", "make_file_analysis"]


def content_hash(text: str) -> str:
    """sha256 hex of a text, as upstream hashes file contents."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def make_file_analysis(
    path: str,
    *,
    functions: int = 3,
    score: float | None = None,
    seed: int | None = None,
    docstring_bytes: int = 40,
) -> FileAnalysis:
    """A plausible FileAnalysis for ``path``; ``functions`` and ``docstring_bytes`` set its size."""
    rng = random.Random(seed if seed is not None else path)
    funcs = [
        FunctionInfo(
            name=f"func_{i}",
            parameters=["self", "value"][: rng.randint(0, 2)],
            return_type=rng.choice([None, "int", "str"]),
            docstring=("d" * docstring_bytes) if rng.random() < 0.7 else None,
            start_line=10 * i + 1,
            end_line=10 * i + 8,
            complexity=rng.randint(1, 12),
            is_async=rng.random() < 0.2,
            decorators=[],
        )
        for i in range(functions)
    ]
    avg = round(sum(f.complexity for f in funcs) / len(funcs), 2) if funcs else 0.0
    total = round(rng.random(), 3) if score is None else score
    return FileAnalysis(
        file_path=path,
        language="python",
        symbol_info=SymbolInfo(
            functions=funcs,
            classes=[],
            imports=[
                ImportInfo(
                    module="os",
                    imported_symbols=[],
                    is_relative=False,
                    import_type="import",
                    line_number=1,
                )
            ],
            exports=[],
        ),
        patterns=[
            DetectedPattern(
                pattern_type="python_generators",
                file_path=path,
                confidence=0.6,
                evidence=["Uses generators"],
                line_numbers=[3],
                metadata={"yield_count": 1},
            )
        ],
        teaching_value=TeachingValueScore(
            total_score=total,
            documentation_score=0.5,
            complexity_score=0.5,
            pattern_score=0.2,
            structure_score=0.9,
            explanation="synthetic",
            factors={"documentation": {"score": 0.5, "weight": 0.3}},
        ),
        complexity_metrics=ComplexityMetrics(
            avg_complexity=avg,
            max_complexity=max((f.complexity for f in funcs), default=0),
            min_complexity=min((f.complexity for f in funcs), default=0),
            high_complexity_functions=[],
            trivial_functions=[],
            avg_nesting_depth=0.5,
        ),
        documentation_coverage=round(rng.random(), 2),
        linter_issues=[],
        has_errors=False,
        errors=[],
        analyzed_at=now_iso(),
        cache_hit=False,
        is_notebook=False,
    )
