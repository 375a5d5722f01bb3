"""The reference analyser: Documee's per-file analysis of Python, built on :mod:`ast`.

:func:`reference_analyser` is a small, dependency-free stand-in for Documee's
engine. It reads Python only (other files are recorded with their language and
empty symbol information) and fills every field the way upstream's engine does,
so its records are interchangeable with real ones.
"""

from __future__ import annotations

import ast
import io
import tokenize
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from ..merge import now_iso
from ..models import (
    ClassInfo,
    ComplexityMetrics,
    DetectedPattern,
    FileAnalysis,
    FunctionInfo,
    ImportInfo,
    SymbolInfo,
    TeachingValueScore,
)
from .files import language_of

# -- the scores, as upstream's engine weighs them ------------------------------------------

_WEIGHTS = {"documentation": 0.3, "complexity": 0.25, "pattern": 0.25, "structure": 0.2}
#: A function is "high complexity" above this, "trivial" below 2 (upstream's thresholds).
_HIGH_COMPLEXITY = 10
#: Upstream's threshold for a docstring to count as documentation, and its placeholders.
_MIN_DOCSTRING = 10
_PLACEHOLDERS = ("todo", "fixme", "...", "tbd", "to be determined", "to be implemented")
_BUILTIN_DECORATORS = frozenset({"property", "staticmethod", "classmethod", "abstractmethod"})
#: Detected patterns list at most this many line numbers, as upstream's do.
_MAX_LINES = 10


# =========================================================================================
# The reference analyser
# =========================================================================================


#: Nodes that add one decision point each (``elif`` is an ``If`` in the tree).
_DECISIONS = (ast.If, ast.For, ast.AsyncFor, ast.While, ast.ExceptHandler, ast.match_case)


def cyclomatic_complexity(node: ast.AST) -> int:
    """McCabe cyclomatic complexity of a function, counted as Documee's engine counts it.

    ``1`` plus one for each decision point in the body: ``if`` and ``elif``,
    ``for`` and ``async for``, ``while``, each ``except`` clause, each ``case``
    of a ``match``, and each ``and``/``or`` operator (``a and b or c`` is 2).
    Conditional expressions, comprehension clauses, ``with``, ``assert`` and
    ``else`` add nothing. Functions nested inside count towards the function
    that contains them, since they are not listed on their own. This is
    exactly the node set upstream's tree-sitter analyser counts for Python,
    so complexities (and the scores built on them) are comparable.
    """
    body: list[ast.AST] = list(getattr(node, "body", [node]))
    count = 1
    for sub in _walk(body):
        if isinstance(sub, _DECISIONS):
            count += 1
        elif isinstance(sub, ast.BoolOp):
            count += len(sub.values) - 1
    return count


def _walk(nodes: Iterable[ast.AST]) -> Iterator[ast.AST]:
    """Every node under ``nodes`` (included), iteratively: deep code must not recurse."""
    stack = list(nodes)
    while stack:
        node = stack.pop()
        yield node
        stack.extend(ast.iter_child_nodes(node))


_BLOCKS = (
    ast.If,
    ast.For,
    ast.AsyncFor,
    ast.While,
    ast.Try,
    ast.TryStar,
    ast.With,
    ast.AsyncWith,
    ast.Match,
)


def _nesting_depth(func: ast.FunctionDef | ast.AsyncFunctionDef) -> int:
    """Deepest nesting of control blocks in a function's body (0 for straight-line code).

    An ``elif`` is at the depth of its ``if`` (the parser nests it in ``orelse``,
    at the same column).
    """
    deepest = 0
    stack: list[tuple[ast.AST, int]] = [(stmt, 0) for stmt in func.body]
    while stack:
        node, depth = stack.pop()
        if isinstance(node, _BLOCKS):
            depth += 1
            deepest = max(deepest, depth)
        for child in ast.iter_child_nodes(node):
            if (
                isinstance(node, ast.If)
                and isinstance(child, ast.If)
                and node.orelse == [child]
                and child.col_offset == node.col_offset
            ):
                stack.append((child, depth - 1))  # an elif, not a nested if
            else:
                stack.append((child, depth))
    return deepest


class _Source:
    """The decoded text of a module, for exact source segments."""

    def __init__(self, text: str) -> None:
        # Split once, as ast.get_source_segment does on every call (quadratic on big files):
        # on \r\n, \r and \n only, keeping the ends.
        self.lines = io.StringIO(text, newline="").readlines()

    def segment(self, node: ast.expr) -> str:
        """The node's text as written (upstream stores annotations and decorators so)."""
        end_lineno, end_col = node.end_lineno, node.end_col_offset
        if end_lineno is None or end_col is None:
            return ast.unparse(node)
        first, last = node.lineno - 1, end_lineno - 1
        try:
            # Column offsets count UTF-8 bytes.
            if first == last:
                return self.lines[first].encode()[node.col_offset : end_col].decode()
            head = self.lines[first].encode()[node.col_offset :].decode()
            tail = self.lines[last].encode()[:end_col].decode()
        except (IndexError, UnicodeDecodeError):
            return ast.unparse(node)
        return head + "".join(self.lines[first + 1 : last]) + tail


def _docstring(node: ast.AsyncFunctionDef | ast.FunctionDef | ast.ClassDef) -> str | None:
    # Upstream keeps the docstring's own indentation and strips its ends.
    doc = ast.get_docstring(node, clean=False)
    return doc.strip() if doc is not None else None


@dataclass
class _Walk:
    """What the symbol pass collects besides the symbols: per-function facts."""

    src: _Source
    depths: list[int] = field(default_factory=list)
    decorated: list[tuple[int, ast.expr]] = field(default_factory=list)

    def function(self, func: ast.FunctionDef | ast.AsyncFunctionDef) -> FunctionInfo:
        """The FunctionInfo of a listed function or method, noting its depth and decorators."""
        self.depths.append(_nesting_depth(func))
        self.decorated.extend((func.lineno, d) for d in func.decorator_list)
        args = func.args
        # Upstream lists named parameters only: *args and **kwargs are left out.
        params = [a.arg for a in (*args.posonlyargs, *args.args, *args.kwonlyargs)]
        return FunctionInfo(
            name=func.name,
            parameters=params,
            return_type=self.src.segment(func.returns) if func.returns is not None else None,
            docstring=_docstring(func),
            start_line=func.lineno,
            end_line=func.end_lineno or func.lineno,
            complexity=cyclomatic_complexity(func),
            is_async=isinstance(func, ast.AsyncFunctionDef),
            decorators=[self.src.segment(d) for d in func.decorator_list],
        )

    def classes(self, cls: ast.ClassDef, prefix: str = "") -> list[ClassInfo]:
        """The class and, after it, the classes nested in its body, named ``Outer.Inner``."""
        name = prefix + cls.name
        info = ClassInfo(
            name=name,
            methods=[
                self.function(stmt)
                for stmt in cls.body
                if isinstance(stmt, ast.FunctionDef | ast.AsyncFunctionDef)
            ],
            base_classes=[self.src.segment(b) for b in cls.bases],
            docstring=_docstring(cls),
            start_line=cls.lineno,
            end_line=cls.end_lineno or cls.lineno,
            decorators=[self.src.segment(d) for d in cls.decorator_list],
        )
        nested = [
            inner
            for stmt in cls.body
            if isinstance(stmt, ast.ClassDef)
            for inner in self.classes(stmt, name + ".")
        ]
        return [info, *nested]


def _module_level(tree: ast.Module) -> Iterator[ast.stmt]:
    """Statements that run at import time: the module body and the blocks in it
    (``if TYPE_CHECKING:``, ``try: ... except ImportError:``), not function or class bodies."""
    stack: list[ast.stmt] = list(reversed(tree.body))
    while stack:
        stmt = stack.pop()
        yield stmt
        if isinstance(stmt, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            continue
        children: list[ast.stmt] = []
        for name in ("body", "orelse", "finalbody"):
            children.extend(getattr(stmt, name, []))
        for handler in getattr(stmt, "handlers", []):
            children.extend(handler.body)
        for case in getattr(stmt, "cases", []):
            children.extend(case.body)
        stack.extend(reversed(children))


def _imports(tree: ast.Module) -> list[ImportInfo]:
    found: list[ImportInfo] = []
    for stmt in _module_level(tree):
        if isinstance(stmt, ast.Import):
            found.extend(
                ImportInfo(
                    module=alias.name,
                    imported_symbols=[],
                    is_relative=False,
                    import_type="import",
                    line_number=stmt.lineno,
                )
                for alias in stmt.names
            )
        elif isinstance(stmt, ast.ImportFrom):
            found.append(
                ImportInfo(
                    module="." * stmt.level + (stmt.module or ""),
                    imported_symbols=[alias.name for alias in stmt.names],
                    is_relative=stmt.level > 0,
                    import_type="from_import",
                    line_number=stmt.lineno,
                )
            )
    found.sort(key=lambda i: i.line_number)
    return found


def _all_functions(symbols: SymbolInfo) -> list[tuple[str, FunctionInfo]]:
    """``(qualified name, function)`` for functions then methods, as upstream lists them."""
    named = [(f.name, f) for f in symbols.functions]
    named += [(f"{c.name}.{m.name}", m) for c in symbols.classes for m in c.methods]
    return named


def _complexity_metrics(symbols: SymbolInfo, depths: Sequence[int]) -> ComplexityMetrics:
    named = _all_functions(symbols)
    values = [f.complexity for _, f in named]
    return ComplexityMetrics(
        avg_complexity=round(sum(values) / len(values), 2) if values else 0.0,
        max_complexity=max(values, default=0),
        min_complexity=min(values, default=0),
        high_complexity_functions=[n for n, f in named if f.complexity > _HIGH_COMPLEXITY],
        # Upstream's definition: complexity below 2, whatever the length.
        trivial_functions=[n for n, f in named if f.complexity < 2],
        avg_nesting_depth=round(sum(depths) / len(depths), 2) if depths else 0.0,
    )


def _documented(doc: str | None) -> bool:
    """Upstream's test of a meaningful docstring: 10+ characters, not a placeholder."""
    if not doc:
        return False
    text = doc.strip()
    lower = text.lower()
    if len(text) < _MIN_DOCSTRING:
        return False
    return not any(lower.startswith(p) or (p in lower and len(text) < 30) for p in _PLACEHOLDERS)


@dataclass(frozen=True, slots=True)
class _Coverage:
    total: float = 0.0
    functions: float = 0.0
    classes: float = 0.0


def _coverage(symbols: SymbolInfo, explanatory_comments: int) -> _Coverage:
    """Documentation coverage with upstream's weights.

    Functions 40 %, classes 30 %, methods 30 %, each weighed in only when the
    file has some, plus 0.1 when the file has at least three explanatory
    comments; capped at 1. A file without functions, classes or methods is 0.
    """
    methods = [m for c in symbols.classes for m in c.methods]
    parts: list[tuple[float, Sequence[FunctionInfo | ClassInfo]]] = [
        (0.4, symbols.functions),
        (0.3, symbols.classes),
        (0.3, methods),
    ]
    ratios = [
        (w, sum(1 for s in items if _documented(s.docstring)) / len(items))
        for w, items in parts
        if items
    ]
    if not ratios:
        return _Coverage()
    base = sum(w * r for w, r in ratios) / sum(w for w, _ in ratios)
    bonus = 0.1 if explanatory_comments >= 3 else 0.0
    fn_cov = ratios[0][1] if symbols.functions else 0.0
    cls_cov = (
        sum(1 for c in symbols.classes if _documented(c.docstring)) / len(symbols.classes)
        if symbols.classes
        else 0.0
    )
    return _Coverage(total=min(1.0, base + bonus), functions=fn_cov, classes=cls_cov)


def _explanatory_comments(text: str) -> int:
    """Comments that explain code: after code on a line, or indented prose of 15+ characters.

    Section banners (``# ====``), ``TODO``/``FIXME`` notes and top-level comments do
    not count, as upstream's heuristic has it; tokenize keeps ``#`` inside strings out.
    """
    count = 0
    try:
        tokens = list(tokenize.generate_tokens(io.StringIO(text).readline))
    except (tokenize.TokenError, SyntaxError):
        return 0
    code_lines: set[int] = set()
    for tok in tokens:
        if tok.type not in (
            tokenize.COMMENT,
            tokenize.NL,
            tokenize.NEWLINE,
            tokenize.INDENT,
            tokenize.DEDENT,
            tokenize.ENCODING,
            tokenize.ENDMARKER,
        ):
            code_lines.update(range(tok.start[0], tok.end[0] + 1))
    for tok in tokens:
        if tok.type != tokenize.COMMENT:
            continue
        body = tok.string.lstrip("#").strip()
        lower = body.lower()
        if tok.start[0] in code_lines or (
            tok.start[1] > 0
            and len(body) >= 15
            and not any(m in lower for m in ("===", "---", "***", "###", "region"))
            and not lower.startswith(("todo", "fixme", "note:", "hack", "xxx"))
        ):
            count += 1
    return count


def _lines(nodes: Iterable[ast.AST]) -> list[int]:
    return sorted({getattr(n, "lineno", 0) for n in nodes})[:_MAX_LINES]


def _decorator_name(node: ast.expr) -> str:
    target = node.func if isinstance(node, ast.Call) else node
    return ast.unparse(target)


def _patterns(
    file_path: str,
    tree: ast.Module,
    symbols: SymbolInfo,
    decorated: Sequence[tuple[int, ast.expr]],
) -> list[DetectedPattern]:
    """Python idioms worth teaching, named and shaped as upstream's detectors report them."""
    nodes = list(_walk([tree]))
    found: list[DetectedPattern] = []

    def add(
        kind: str, confidence: float, evidence: list[str], lines: list[int], **meta: Any
    ) -> None:
        found.append(
            DetectedPattern(
                pattern_type=kind,
                file_path=file_path,
                confidence=round(min(1.0, confidence), 3),
                evidence=evidence,
                line_numbers=lines,
                metadata=meta,
            )
        )

    if decorated:
        names = {_decorator_name(d) for _, d in decorated}
        builtins = sorted(names & _BUILTIN_DECORATORS)
        custom = names - _BUILTIN_DECORATORS
        evidence = []
        if builtins:
            evidence.append(f"Uses built-in decorators: {', '.join(builtins)}")
        if custom:
            evidence.append(f"Uses custom decorators ({len(custom)} types)")
        evidence.append(f"Total decorators: {len(decorated)}")
        add(
            "python_decorators",
            len(decorated) * 0.15,
            evidence,
            sorted({line for line, _ in decorated})[:_MAX_LINES],
            decorator_count=len(decorated),
            builtin_decorators=builtins,
            custom_decorator_count=len(custom),
        )

    withs = [n for n in nodes if isinstance(n, ast.With | ast.AsyncWith)]
    if withs:
        evidence = [f"Uses context managers ({len(withs)} with statements)"]
        exprs = [item.context_expr for w in withs for item in w.items]
        if any(
            isinstance(e, ast.Call) and isinstance(e.func, ast.Name) and e.func.id == "open"
            for e in exprs
        ):
            evidence.append("File handling with context managers")
        if any("lock" in ast.unparse(e).lower() for e in exprs):
            evidence.append("Thread synchronization with context managers")
        add(
            "python_context_managers",
            len(withs) * 0.2,
            evidence,
            _lines(withs),
            with_statement_count=len(withs),
        )

    yields = [n for n in nodes if isinstance(n, ast.Yield | ast.YieldFrom)]
    if yields:
        evidence = [f"Uses generators ({len(yields)} yield statements)"]
        if any(isinstance(n, ast.GeneratorExp) for n in nodes):
            evidence.append("Uses generator expressions")
        add(
            "python_generators",
            len(yields) * 0.25,
            evidence,
            _lines(yields),
            yield_count=len(yields),
        )

    async_defs = [n for n in nodes if isinstance(n, ast.AsyncFunctionDef)]
    awaits = [n for n in nodes if isinstance(n, ast.Await)]
    if async_defs or awaits:
        evidence = []
        if async_defs:
            evidence.append(f"Async functions: {len(async_defs)}")
        if awaits:
            evidence.append(f"Await statements: {len(awaits)}")
        if any("asyncio" in imp.module.lower() for imp in symbols.imports):
            evidence.append("Uses asyncio library")
        add(
            "python_async_await",
            len(async_defs) * 0.2 + len(awaits) * 0.1,
            evidence,
            _lines(async_defs or awaits),
            async_function_count=len(async_defs),
            await_count=len(awaits),
        )

    comps = [n for n in nodes if isinstance(n, ast.ListComp | ast.SetComp | ast.DictComp)]
    if comps:
        add(
            "python_comprehensions",
            len(comps) * 0.15,
            [f"Uses comprehensions ({len(comps)} occurrences)"],
            _lines(comps),
            comprehension_count=len(comps),
        )
    return found


def _structure_score(symbols: SymbolInfo) -> float:
    """Upstream's structure score: organisation, class size and naming."""
    n_funcs, n_classes = len(symbols.functions), len(symbols.classes)
    if not n_funcs and not n_classes:
        return 0.0
    score = 0.3 if n_funcs and n_classes else 0.2
    if n_classes:
        avg_methods = sum(len(c.methods) for c in symbols.classes) / n_classes
        if 2 <= avg_methods <= 10:
            score += 0.4
        elif avg_methods == 1 or 11 <= avg_methods <= 15:
            score += 0.2
        else:
            score += 0.1
    elif 3 <= n_funcs <= 15:
        score += 0.4
    elif n_funcs <= 2 or 16 <= n_funcs <= 25:
        score += 0.2
    else:
        score += 0.1
    # Every symbol parsed from Python source has a name, so the naming bonus is always due.
    score += 0.3
    return min(1.0, score)


def _complexity_score(avg: float) -> float:
    """Moderate complexity teaches best: 1.0 for 3-7, 0.7 for 2-3 or 7-10, else 0.3."""
    if avg == 0:
        return 0.0
    if 3 <= avg <= 7:
        return 1.0
    if 2 <= avg < 3 or 7 < avg <= 10:
        return 0.7
    return 0.3


def _rating(total: float) -> str:
    if total >= 0.7:
        return "Excellent"
    if total >= 0.5:
        return "Good"
    return "Fair" if total >= 0.3 else "Poor"


def _explain(
    total: float, *, doc: float, coverage: float, cx: float, avg: float, pat: float, struct: float
) -> str:
    """Upstream's explanation: a rating, then a sentence per factor."""
    rating = _rating(total)
    parts = [f"{rating} teaching value (score: {total:.2f})."]
    if doc >= 0.7:
        parts.append(f"Well-documented ({coverage:.0%} coverage).")
    elif doc >= 0.4:
        parts.append(f"Moderate documentation ({coverage:.0%} coverage).")
    else:
        parts.append(f"Poor documentation ({coverage:.0%} coverage).")
    if cx >= 0.9:
        parts.append(f"Ideal complexity (avg: {avg:.1f}) for teaching.")
    elif cx >= 0.6:
        word = "simple" if avg < 3 else "complex"
        parts.append(f"Slightly {word} (avg complexity: {avg:.1f}).")
    else:
        word = "simple" if avg < 2 else "complex"
        parts.append(f"Too {word} (avg complexity: {avg:.1f}) for teaching.")
    if pat >= 0.4:
        parts.append("Contains useful patterns.")
    elif pat > 0:
        parts.append("Contains some patterns.")
    if struct >= 0.7:
        parts.append("Well-structured code.")
    elif struct >= 0.4:
        parts.append("Reasonable structure.")
    else:
        parts.append("Could improve structure.")
    return " ".join(parts)


def _teaching_value(
    symbols: SymbolInfo,
    patterns: Sequence[DetectedPattern],
    metrics: ComplexityMetrics,
    coverage: _Coverage,
    *,
    explanation: str | None = None,
) -> TeachingValueScore:
    """The weighted score and its factors, in upstream's shape (factors keep full precision)."""
    doc = coverage.total
    cx = _complexity_score(metrics.avg_complexity)
    pat = min(1.0, len(patterns) * 0.2)
    struct = _structure_score(symbols)
    weighted = zip(_WEIGHTS.values(), (doc, cx, pat, struct), strict=True)
    total = max(0.0, min(1.0, sum(w * s for w, s in weighted)))
    return TeachingValueScore(
        total_score=round(total, 3),
        documentation_score=round(doc, 3),
        complexity_score=round(cx, 3),
        pattern_score=round(pat, 3),
        structure_score=round(struct, 3),
        explanation=explanation
        or _explain(
            total,
            doc=doc,
            coverage=coverage.total,
            cx=cx,
            avg=metrics.avg_complexity,
            pat=pat,
            struct=struct,
        ),
        factors={
            "documentation": {
                "score": doc,
                "weight": _WEIGHTS["documentation"],
                "coverage": coverage.total,
                "function_coverage": coverage.functions,
                "class_coverage": coverage.classes,
            },
            "complexity": {
                "score": cx,
                "weight": _WEIGHTS["complexity"],
                "avg_complexity": metrics.avg_complexity,
                "max_complexity": metrics.max_complexity,
                "high_complexity_count": len(metrics.high_complexity_functions),
                "trivial_count": len(metrics.trivial_functions),
            },
            "patterns": {
                "score": pat,
                "weight": _WEIGHTS["pattern"],
                "pattern_count": len(patterns),
                "patterns": [p.pattern_type for p in patterns],
            },
            "structure": {
                "score": struct,
                "weight": _WEIGHTS["structure"],
                "total_functions": len(symbols.functions),
                "total_classes": len(symbols.classes),
            },
        },
    )


def _empty_analysis(
    file_path: str, language: str, *, errors: Sequence[str] = (), explanation: str | None = None
) -> FileAnalysis:
    symbols = SymbolInfo(functions=[], classes=[], imports=[], exports=[])
    metrics = _complexity_metrics(symbols, [])
    return FileAnalysis(
        file_path=file_path,
        language=language,
        symbol_info=symbols,
        patterns=[],
        teaching_value=_teaching_value(symbols, [], metrics, _Coverage(), explanation=explanation),
        complexity_metrics=metrics,
        documentation_coverage=0.0,
        linter_issues=[],
        has_errors=bool(errors),
        errors=list(errors),
        analyzed_at=now_iso(),
        cache_hit=False,
        is_notebook=False,
    )


def _decode_python(content: bytes) -> str:
    """Source text as Python would read it: a PEP 263 coding cookie or BOM, else UTF-8."""
    encoding, _ = tokenize.detect_encoding(io.BytesIO(content).readline)
    return content.decode(encoding)


def _analyse_python(file_path: str, content: bytes) -> FileAnalysis:
    try:
        text = _decode_python(content)
    except (SyntaxError, UnicodeDecodeError, LookupError) as exc:
        # detect_encoding raises SyntaxError for a bad cookie or undecodable first lines.
        reason = exc.msg if isinstance(exc, SyntaxError) else str(exc)
        return _empty_analysis(file_path, "python", errors=[f"cannot decode source: {reason}"])
    try:
        tree = ast.parse(text, filename=file_path)
    except SyntaxError as exc:
        where = f" (line {exc.lineno}, column {exc.offset})" if exc.lineno else ""
        return _empty_analysis(file_path, "python", errors=[f"SyntaxError: {exc.msg}{where}"])
    except (ValueError, RecursionError, MemoryError) as exc:
        # NUL bytes (ValueError before 3.12), absurd nesting.
        return _empty_analysis(file_path, "python", errors=[f"{type(exc).__name__}: {exc}"])

    walk = _Walk(_Source(text))
    functions: list[FunctionInfo] = []
    classes: list[ClassInfo] = []
    for stmt in tree.body:
        if isinstance(stmt, ast.FunctionDef | ast.AsyncFunctionDef):
            functions.append(walk.function(stmt))
        elif isinstance(stmt, ast.ClassDef):
            classes.extend(walk.classes(stmt))
    symbols = SymbolInfo(functions=functions, classes=classes, imports=_imports(tree), exports=[])
    patterns = _patterns(file_path, tree, symbols, walk.decorated)
    metrics = _complexity_metrics(symbols, walk.depths)
    coverage = _coverage(symbols, _explanatory_comments(text))
    return FileAnalysis(
        file_path=file_path,
        language="python",
        symbol_info=symbols,
        patterns=patterns,
        teaching_value=_teaching_value(symbols, patterns, metrics, coverage),
        complexity_metrics=metrics,
        documentation_coverage=coverage.total,
        linter_issues=[],
        has_errors=False,
        errors=[],
        analyzed_at=now_iso(),
        cache_hit=False,
        is_notebook=False,
    )


def reference_analyser(file_path: str, content: bytes) -> FileAnalysis:
    """Analyse one file the way Documee's engine does, with :mod:`ast` and no other dependency.

    Python files (``.py``, ``.pyi``) get:

    * **functions**: the module's top-level functions, with named parameters
      (``*args``/``**kwargs`` left out, as upstream does), the return
      annotation and decorators as written, the docstring (stripped), lines,
      :func:`cyclomatic_complexity` and ``is_async``;
    * **classes**: top-level classes with their methods, bases and decorators;
      nested classes follow their outer class, named ``Outer.Inner``;
    * **imports**: those that run at import time (module level, including
      inside module-level ``if``/``try`` blocks), one ``"import"`` entry per
      imported module, one ``"from_import"`` entry per ``from`` statement with
      its names and ``is_relative``; ``exports`` stays empty, as upstream's is
      for Python;
    * **complexity metrics** over functions and methods: average (2 places),
      max, min, ``high_complexity_functions`` (complexity > 10) and
      ``trivial_functions`` (complexity 1, upstream's rule, whatever the
      length), qualified as ``Class.method``; ``avg_nesting_depth`` is the
      mean of each function's deepest block nesting;
    * **documentation coverage** as upstream weighs it: functions 40 %,
      classes 30 %, methods 30 % (only the kinds present count), a docstring
      counting when it has 10+ characters and is not a placeholder (TODO, ...),
      plus 0.1 for three or more explanatory comments; 0.0 without symbols;
    * **patterns** ``python_decorators``, ``python_context_managers``,
      ``python_generators``, ``python_async_await`` and
      ``python_comprehensions`` with upstream's evidence strings, metadata
      and confidences, found in the syntax tree rather than by text search;
    * a **teaching value** with upstream's weights (documentation 0.3,
      complexity 0.25, patterns 0.25, structure 0.2), nested factors and
      explanation.

    A file that does not parse (or decode) gets ``has_errors=True``, the
    message in ``errors`` and empty symbols. Other languages are recorded with
    their language (:func:`language_of`), empty symbols and zero scores. The
    result is the same for the same input, but for ``analyzed_at``. Never
    raises for any content.
    """
    language = language_of(file_path)
    if language == "python":
        return _analyse_python(file_path, content)
    return _empty_analysis(
        file_path,
        language,
        explanation=(
            f"Not scored: the reference analyser extracts symbols from Python only "
            f"(this file is {language})."
        ),
    )
