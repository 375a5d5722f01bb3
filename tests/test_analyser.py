"""The reference analyser, file discovery, sharding, and analyse_codebase end to end."""

from __future__ import annotations

import ast
import hashlib
import multiprocessing
import textwrap
from collections import Counter
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from documee_remote import codec, layout
from documee_remote.analysis import (
    DEFAULT_MAX_FILE_SIZE,
    AnalyseReport,
    ProgressEvent,
    analyse_codebase,
    cyclomatic_complexity,
    discover_files,
    in_shard,
    language_of,
    load_analyser,
    parse_shard,
    reference_analyser,
    stored_path,
)
from documee_remote.errors import ConfigurationError
from documee_remote.manager import PersistenceManager
from documee_remote.models import FileAnalysis

PACKAGE_DIR = Path(__file__).resolve().parents[1] / "documee_remote"


def analyse(source: str, path: str = "/srv/code/x/mod.py") -> FileAnalysis:
    return reference_analyser(path, textwrap.dedent(source).encode("utf-8"))


def round_trips(fa: FileAnalysis) -> bool:
    dumped = codec.dump_file_analysis(fa)
    return codec.dump_file_analysis(codec.load_file_analysis(dumped)) == dumped


def without_time(fa: FileAnalysis) -> bytes:
    return codec.dump_file_analysis(fa.model_copy(update={"analyzed_at": "T"}))


# =========================================================================================
# The reference analyser
# =========================================================================================


@pytest.mark.parametrize("source_file", sorted(PACKAGE_DIR.rglob("*.py")), ids=lambda p: p.name)
def test_real_sources_give_valid_round_tripping_analyses(source_file: Path) -> None:
    content = source_file.read_bytes()
    fa = reference_analyser("/srv/code/documee-remote/" + source_file.name, content)
    assert round_trips(fa)
    assert FileAnalysis.model_validate(fa.to_dict()) == fa
    assert not fa.has_errors
    assert fa.errors == []
    tree = ast.parse(content)
    top_functions = [
        n.name for n in tree.body if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef)
    ]
    top_classes = [n.name for n in tree.body if isinstance(n, ast.ClassDef)]
    assert [f.name for f in fa.symbol_info.functions] == top_functions
    assert [c.name for c in fa.symbol_info.classes if "." not in c.name] == top_classes
    assert 0.0 <= fa.teaching_value.total_score <= 1.0
    assert 0.0 <= fa.documentation_coverage <= 1.0
    assert set(fa.teaching_value.factors) == {
        "documentation",
        "complexity",
        "patterns",
        "structure",
    }
    for factor in fa.teaching_value.factors.values():
        assert {"score", "weight"} <= set(factor)


def test_real_sources_score_like_documented_code() -> None:
    # manager.py is well documented, has classes with methods, and uses patterns.
    fa = reference_analyser("/srv/m.py", (PACKAGE_DIR / "manager.py").read_bytes())
    assert fa.documentation_coverage > 0.5
    assert fa.teaching_value.total_score > 0.4
    assert "PersistenceManager" in [c.name for c in fa.symbol_info.classes]
    methods = {m.name for c in fa.symbol_info.classes for m in c.methods}
    assert {"merge_file_analyses", "save_analysis", "load_analysis"} <= methods


KNOWN = """
def busy(x, y, z):
    if x and y or z:
        for i in x:
            while i:
                i -= 1
    elif x:
        try:
            pass
        except ValueError:
            pass
        except KeyError:
            pass
    match x:
        case 1:
            pass
        case _:
            pass
    return [a for a in x if a] if x else None

def trivial(a):
    return a + 1

async def fetch(url, /, retries=3, *args, timeout: float = 1.0, **kwargs) -> dict[str, int]:
    '''Fetch something over the network, politely.'''
    async with session() as s:
        return await s.get(url)
"""


def test_complexity_of_known_snippets() -> None:
    fa = analyse(KNOWN)
    by_name = {f.name: f for f in fa.symbol_info.functions}
    # 1 + if + (and, or) + for + while + elif + 2 except + 2 case = 11; the
    # comprehension's if and the conditional expression do not count.
    assert by_name["busy"].complexity == 11
    assert by_name["trivial"].complexity == 1
    assert by_name["fetch"].complexity == 1
    metrics = fa.complexity_metrics
    assert metrics.max_complexity == 11
    assert metrics.min_complexity == 1
    assert metrics.avg_complexity == round(13 / 3, 2)
    assert metrics.high_complexity_functions == ["busy"]
    assert metrics.trivial_functions == ["trivial", "fetch"]
    # busy: if > for > while = 3 (the elif is at the if's depth); trivial 0; fetch 1 (with).
    assert metrics.avg_nesting_depth == round(4 / 3, 2)


def test_complexity_counts_nested_functions_and_each_boolean_operator() -> None:
    tree = ast.parse("def f():\n    def g():\n        if a or b or c:\n            pass\n")
    func = tree.body[0]
    assert cyclomatic_complexity(func) == 4


def test_function_details_async_parameters_and_annotations() -> None:
    fetch = next(f for f in analyse(KNOWN).symbol_info.functions if f.name == "fetch")
    assert fetch.is_async
    assert fetch.parameters == ["url", "retries", "timeout"]  # *args/**kwargs left out
    assert fetch.return_type == "dict[str, int]"
    assert fetch.docstring == "Fetch something over the network, politely."
    assert (fetch.start_line, fetch.end_line) == (24, 27)
    trivial = next(f for f in analyse(KNOWN).symbol_info.functions if f.name == "trivial")
    assert trivial.return_type is None
    assert trivial.docstring is None
    assert not trivial.is_async


def test_patterns_are_shaped_like_upstreams() -> None:
    fa = analyse(
        """
        import asyncio
        import functools

        @functools.lru_cache(maxsize=2)
        def cached(x):
            with open(x) as f:
                return f.read()

        class C:
            @property
            def p(self):
                return 1

            @staticmethod
            def s():
                yield 1
                yield from range(3)

            async def a(self):
                await asyncio.sleep(0)
                return {k: v for k, v in {}.items()}
        """
    )
    patterns = {p.pattern_type: p for p in fa.patterns}
    assert list(patterns) == [
        "python_decorators",
        "python_context_managers",
        "python_generators",
        "python_async_await",
        "python_comprehensions",
    ]
    deco = patterns["python_decorators"]
    assert deco.metadata == {
        "decorator_count": 3,
        "builtin_decorators": ["property", "staticmethod"],
        "custom_decorator_count": 1,
    }
    assert deco.evidence[-1] == "Total decorators: 3"
    assert deco.confidence == 0.45
    ctx = patterns["python_context_managers"]
    assert ctx.metadata == {"with_statement_count": 1}
    assert "File handling with context managers" in ctx.evidence
    assert ctx.line_numbers == [7]
    assert patterns["python_generators"].metadata == {"yield_count": 2}
    assert patterns["python_async_await"].metadata == {
        "async_function_count": 1,
        "await_count": 1,
    }
    assert "Uses asyncio library" in patterns["python_async_await"].evidence
    assert patterns["python_comprehensions"].metadata == {"comprehension_count": 1}
    assert all(p.file_path == fa.file_path for p in fa.patterns)
    cached = fa.symbol_info.functions[0]
    assert cached.decorators == ["functools.lru_cache(maxsize=2)"]
    assert fa.teaching_value.factors["patterns"]["pattern_count"] == 5
    assert fa.teaching_value.pattern_score == 1.0


def test_classes_nested_classes_and_methods() -> None:
    fa = analyse(
        """
        class Base: ...

        @dataclass
        class Outer(Base, metaclass=Meta):
            '''The outer class, documented properly.'''
            class Inner:
                def m(self):
                    return 1
            def n(self, *, key):
                return key
        """
    )
    names = [c.name for c in fa.symbol_info.classes]
    assert names == ["Base", "Outer", "Outer.Inner"]
    outer = fa.symbol_info.classes[1]
    assert outer.base_classes == ["Base"]
    assert outer.decorators == ["dataclass"]
    assert outer.docstring == "The outer class, documented properly."
    assert [m.name for m in outer.methods] == ["n"]
    assert outer.methods[0].parameters == ["self", "key"]
    assert fa.complexity_metrics.trivial_functions == ["Outer.n", "Outer.Inner.m"]


def test_imports() -> None:
    fa = analyse(
        """
        import os, a.b as c
        from . import x
        from ..pkg import (y, z as zz)
        from typing import TYPE_CHECKING
        if TYPE_CHECKING:
            from collections.abc import Iterator
        try:
            import ujson
        except ImportError:
            ujson = None

        def f():
            import lazy  # runs at call time, not import time
        """
    )
    got = [
        (i.module, i.imported_symbols, i.is_relative, i.import_type, i.line_number)
        for i in fa.symbol_info.imports
    ]
    assert got == [
        ("os", [], False, "import", 2),
        ("a.b", [], False, "import", 2),
        (".", ["x"], True, "from_import", 3),
        ("..pkg", ["y", "z"], True, "from_import", 4),
        ("typing", ["TYPE_CHECKING"], False, "from_import", 5),
        ("collections.abc", ["Iterator"], False, "from_import", 7),
        ("ujson", [], False, "import", 9),
    ]
    assert fa.symbol_info.exports == []


def test_documentation_coverage_follows_upstreams_weights() -> None:
    half = analyse(
        """
        def documented():
            '''This docstring is long enough to count.'''

        def bare():
            pass

        def placeholder():
            '''TODO'''
        """
    )
    assert half.documentation_coverage == pytest.approx(1 / 3)
    assert half.teaching_value.factors["documentation"]["function_coverage"] == pytest.approx(1 / 3)
    mixed = analyse(
        """
        class K:
            '''A documented class of some length.'''
            def m(self):
                pass

        def f():
            '''A documented function of some length.'''
        """
    )
    # functions 1.0 * 0.4 + classes 1.0 * 0.3 + methods 0.0 * 0.3, over 1.0
    assert mixed.documentation_coverage == pytest.approx(0.7)
    commented = analyse(
        """
        def f(x):
            y = x + 1  # add one so the index is 1-based
            z = y * 2  # double it for the two halves
            return z  # and hand it back to the caller
        """
    )
    # No docstring at all, but three explanatory comments: 0 + 0.1.
    assert commented.documentation_coverage == pytest.approx(0.1)


def test_teaching_value_explanation_and_weights() -> None:
    fa = analyse(KNOWN)
    tv = fa.teaching_value
    weighted = (
        0.3 * tv.factors["documentation"]["score"]
        + 0.25 * tv.factors["complexity"]["score"]
        + 0.25 * tv.factors["patterns"]["score"]
        + 0.2 * tv.factors["structure"]["score"]
    )
    assert tv.total_score == round(weighted, 3)
    assert tv.explanation.startswith(("Excellent", "Good", "Fair", "Poor"))
    assert "teaching value (score:" in tv.explanation
    assert tv.factors["complexity"]["avg_complexity"] == fa.complexity_metrics.avg_complexity
    assert tv.factors["structure"]["total_functions"] == 3


@pytest.mark.parametrize(
    ("content", "needle"),
    [
        (b"def f(:\n    pass\n", "SyntaxError"),
        (b"x = '\xff\xfe'\n", "decode"),
        (b"x = 1\x00\n", ""),
        (b"(" * 5000 + b")" * 5000, ""),
    ],
    ids=["syntax", "not-utf8", "nul", "deep"],
)
def test_broken_sources_are_reported_not_raised(content: bytes, needle: str) -> None:
    fa = reference_analyser("/srv/code/bad.py", content)
    assert fa.has_errors
    assert fa.errors
    assert needle in fa.errors[0]
    assert fa.symbol_info.functions == []
    assert fa.symbol_info.classes == []
    assert fa.teaching_value.total_score == 0.0
    assert fa.language == "python"
    assert round_trips(fa)


def test_coding_cookie_and_bom_are_honoured() -> None:
    latin = (
        "# -*- coding: latin-1 -*-\ndef caf\u00e9():\n    '''Caf\u00e9 au lait, bien s\u00fbr.'''\n"
    )
    fa = reference_analyser("/srv/l.py", latin.encode("latin-1"))
    assert not fa.has_errors
    assert fa.symbol_info.functions[0].name == "caf\u00e9"
    bom = reference_analyser("/srv/b.py", b"\xef\xbb\xbfdef f():\n    pass\n")
    assert not bom.has_errors
    assert bom.symbol_info.functions[0].name == "f"


def test_empty_file() -> None:
    fa = reference_analyser("/srv/code/__init__.py", b"")
    assert not fa.has_errors
    assert fa.symbol_info.functions == []
    assert fa.patterns == []
    assert fa.documentation_coverage == 0.0
    assert fa.complexity_metrics.avg_complexity == 0.0
    assert fa.teaching_value.explanation.startswith("Poor teaching value (score: 0.00).")
    assert round_trips(fa)


@pytest.mark.parametrize(
    ("path", "language"),
    [
        ("/srv/a.js", "javascript"),
        ("/srv/a.ts", "typescript"),
        ("/srv/a.tsx", "typescript"),
        ("/srv/README.md", "markdown"),
        ("/srv/a.rs", "rust"),
        ("/srv/a.cs", "c_sharp"),
        ("/srv/Makefile", "unknown"),
        ("/srv/a.PY", "python"),
        ("C:\\code\\a.go", "go"),
    ],
)
def test_languages_from_extensions(path: str, language: str) -> None:
    assert language_of(path) == language


def test_other_languages_are_counted_with_empty_symbols() -> None:
    fa = reference_analyser("/srv/app.js", b"function f(a) { if (a) { return 1 } }")
    assert fa.language == "javascript"
    assert fa.symbol_info.functions == []
    assert fa.patterns == []
    assert fa.teaching_value.total_score == 0.0
    assert "Python only" in fa.teaching_value.explanation
    assert not fa.has_errors
    assert round_trips(fa)


def test_deterministic_but_for_the_timestamp() -> None:
    content = (PACKAGE_DIR / "codec.py").read_bytes()
    first = reference_analyser("/srv/codec.py", content)
    second = reference_analyser("/srv/codec.py", content)
    assert without_time(first) == without_time(second)
    assert first.analyzed_at[:4].isdigit()
    assert "T" in first.analyzed_at


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=300) | st.text(max_size=300).map(lambda t: t.encode("utf-8", "replace")))
def test_any_bytes_give_a_valid_analysis(content: bytes) -> None:
    fa = reference_analyser("/srv/fuzz.py", content)
    assert fa.file_path == "/srv/fuzz.py"
    assert round_trips(fa)
    assert fa.has_errors == bool(fa.errors)


# =========================================================================================
# load_analyser
# =========================================================================================


def test_load_analyser_finds_functions() -> None:
    assert load_analyser("documee_remote.analyser:reference_analyser") is reference_analyser
    assert load_analyser("tests.test_analyser:failing_analyser") is failing_analyser


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("documee_remote.analyser", "expected 'package.module:function'"),
        (":reference_analyser", "expected"),
        ("no_such_module_xyz:f", "cannot import analyser module 'no_such_module_xyz'"),
        ("documee_remote.analyser:nope", "has no attribute 'nope'"),
        ("documee_remote.analyser:DEFAULT_MAX_FILE_SIZE", "is a int, not a function"),
    ],
)
def test_load_analyser_errors(spec: str, message: str) -> None:
    with pytest.raises(ConfigurationError, match=message):
        load_analyser(spec)


# =========================================================================================
# Discovery, shards, stored paths
# =========================================================================================


def write(root: Path, rel: str, text: str = "x = 1\n") -> Path:
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def test_discover_files_skips_what_it_should(tmp_path: Path) -> None:
    root = tmp_path / "repo"
    outside = write(tmp_path, "outside/secret.py")
    for rel in [
        "pkg/b.py",
        "pkg/a.py",
        "README.md",
        "web/app.ts",
        "notes.txt",
        ".hidden.py",
        ".git/hooks/x.py",
        ".venv/lib/y.py",
        "venv/lib/y.py",
        "node_modules/m/index.js",
        "pkg/__pycache__/a.py",
        "build/gen.py",
        "dist/gen.py",
        ".documee/z.py",
        ".cache/tool/z.py",
    ]:
        write(root, rel)
    big = root / "pkg" / "big.py"
    big.write_bytes(b"#" * (DEFAULT_MAX_FILE_SIZE + 1))
    (root / "pkg" / "leak.py").symlink_to(outside)
    (root / "pkg" / "alias.py").symlink_to(root / "pkg" / "a.py")
    (root / "linked_dir").symlink_to(root / "pkg", target_is_directory=True)
    (root / "dangling.py").symlink_to(root / "missing.py")

    found = [p.relative_to(root).as_posix() for p in discover_files(root)]
    assert found == ["README.md", "pkg/a.py", "pkg/alias.py", "pkg/b.py", "web/app.ts"]
    assert all(p.is_absolute() for p in discover_files(root))
    assert [p.name for p in discover_files(root, include=["*.py"], max_file_size=None)] == [
        "a.py",
        "alias.py",
        "b.py",
        "big.py",
    ]
    with pytest.raises(ConfigurationError):
        discover_files(root / "README.md")


def test_parse_shard() -> None:
    assert parse_shard("1/4") == (1, 4)
    assert parse_shard(" 4/4 ") == (4, 4)
    assert parse_shard("1/1") == (1, 1)
    for bad in ["0/4", "5/4", "a/b", "3", "1/0", "-1/3", ""]:
        with pytest.raises(ConfigurationError, match="invalid shard"):
            parse_shard(bad)
    with pytest.raises(ConfigurationError, match="numbered from 1"):
        parse_shard("0/4")


@pytest.mark.parametrize("n", [1, 2, 3, 7])
def test_shards_partition_every_path_exactly_once(n: int) -> None:
    paths = [f"/srv/code/repo/pkg{i % 13}/mod_{i}.py" for i in range(600)]
    counts = Counter(k for p in paths for k in range(1, n + 1) if in_shard(p, k, n))
    assert sum(counts.values()) == len(paths)  # each path in exactly one shard
    assert all(sum(in_shard(p, k, n) for k in range(1, n + 1)) == 1 for p in paths)
    if n > 1:  # and the shards are roughly even
        assert min(counts.values()) > len(paths) / n * 0.7


def test_shard_assignment_is_stable() -> None:
    # Fixed forever: machines running different versions must agree.
    path = "/srv/code/requests/src/requests/sessions.py"
    expected = int.from_bytes(hashlib.sha256(path.encode()).digest()[:8], "big") % 4 + 1
    assert [k for k in range(1, 5) if in_shard(path, k, 4)] == [expected]
    assert [k for k in range(1, 5) if in_shard("/srv/a.py", k, 4)] == [4]
    with pytest.raises(ValueError, match="between 1 and N"):
        in_shard(path, 0, 4)


def test_stored_path(tmp_path: Path) -> None:
    root = tmp_path / "checkout"
    file = root / "pkg" / "a.py"
    assert stored_path(file, root, None) == file.as_posix()
    assert stored_path(file, root, "/srv/code/myrepo") == "/srv/code/myrepo/pkg/a.py"
    assert stored_path(file, root, "/srv/code/myrepo/") == "/srv/code/myrepo/pkg/a.py"
    assert stored_path(Path("pkg/a.py"), root, "/srv/r") == "/srv/r/pkg/a.py"
    assert stored_path(file, root, "C:\\code\\r") == "C:/code/r/pkg/a.py"
    with pytest.raises(ValueError, match="not under"):
        stored_path(tmp_path / "elsewhere.py", root, "/srv/r")
    with pytest.raises(ValueError, match="not under"):
        stored_path(root / ".." / "x.py", root, None)


# =========================================================================================
# analyse_codebase
# =========================================================================================


def failing_analyser(file_path: str, content: bytes) -> FileAnalysis:
    """Fails for files whose content says so (module-level: picklable for workers)."""
    if b"FAIL" in content:
        raise RuntimeError("this file always fails")
    return reference_analyser(file_path, content)


def make_repo(root: Path, files: int = 8) -> list[Path]:
    paths = []
    for i in range(files):
        paths.append(
            write(
                root,
                f"pkg{i % 3}/mod_{i}.py",
                f"def f{i}(x):\n    '''Function number {i} of the test repo.'''\n"
                f"    return x if x > {i} else -x\n",
            )
        )
    paths.append(write(root, "README.md", "# repo\n"))
    return paths


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture
def pm(tmp_path: Path) -> PersistenceManager:
    return PersistenceManager(str(tmp_path / "store"))


def check_consistent(pm: PersistenceManager, cid: str, expected: dict[str, Path]) -> None:
    """analysis.json, file_hashes.json and per-file objects agree with the files on disk."""
    analysis = pm.load_analysis(cid)
    assert analysis is not None
    hashes = pm.get_file_hashes(cid)
    assert set(analysis.file_analyses) == set(expected)
    assert set(hashes) == set(expected)
    for name, path in expected.items():
        assert hashes[name] == sha(path)
        assert pm.load_file_analysis(cid, name) == analysis.file_analyses[name]
    assert analysis.metrics.total_files == len(expected)


def test_analyse_skip_unchanged_edit_and_remove(pm: PersistenceManager, tmp_path: Path) -> None:
    root = tmp_path / "repo"
    files = make_repo(root)
    events: list[ProgressEvent] = []
    report = analyse_codebase(pm, "repo", root, batch_size=4, progress=events.append)
    expected = {p.as_posix(): p for p in files}
    assert (report.files_seen, report.analysed, report.unchanged, report.removed) == (9, 9, 0, 0)
    assert report.merges == 3
    assert report.attempts >= 3
    assert report.errors == []
    check_consistent(pm, "repo", expected)
    kinds = [e.kind for e in events]
    assert kinds[0] == "discovered"
    assert events[0].total == 9
    assert kinds.count("analysed") == 9
    assert kinds.count("merged") == 3
    assert kinds[-1] == "done"
    assert [e.done for e in events if e.kind == "analysed"] == list(range(1, 10))
    # Walk order is kept: analysis.json lists files as discovered.
    analysis = pm.load_analysis("repo")
    assert analysis is not None
    assert list(analysis.file_analyses) == [p.as_posix() for p in discover_files(root)]

    again = analyse_codebase(pm, "repo", root)
    assert (again.analysed, again.unchanged, again.merges) == (0, 9, 0)

    files[2].write_text("def changed():\n    return 2\n", encoding="utf-8")
    edited = analyse_codebase(pm, "repo", root)
    assert (edited.analysed, edited.unchanged) == (1, 8)
    fa = pm.load_file_analysis("repo", files[2].as_posix())
    assert fa is not None
    assert fa.symbol_info.functions[0].name == "changed"
    check_consistent(pm, "repo", expected)

    files[0].unlink()
    del expected[files[0].as_posix()]
    removed = analyse_codebase(pm, "repo", root)
    assert (removed.analysed, removed.removed, removed.merges) == (0, 1, 1)
    check_consistent(pm, "repo", expected)
    assert pm.load_file_analysis("repo", files[0].as_posix()) is None


def test_analyser_errors_are_recorded_and_retried(pm: PersistenceManager, tmp_path: Path) -> None:
    root = tmp_path / "repo"
    make_repo(root, files=3)
    bad = write(root, "pkg0/bad.py", "# FAIL\n")
    report = analyse_codebase(pm, "c1", root, analyser=failing_analyser)
    assert report.analysed == 4
    assert report.errors == [
        (bad.as_posix(), "analyser failed: RuntimeError: this file always fails")
    ]
    assert bad.as_posix() not in pm.get_file_hashes("c1")
    analysis = pm.load_analysis("c1")
    assert analysis is not None
    assert bad.as_posix() not in analysis.file_analyses
    # Not recorded, so tried again next run; fixed, it is analysed.
    assert analyse_codebase(pm, "c1", root, analyser=failing_analyser).errors != []
    bad.write_text("def fine():\n    pass\n", encoding="utf-8")
    fixed = analyse_codebase(pm, "c1", root, analyser=failing_analyser)
    assert (fixed.analysed, fixed.errors) == (1, [])
    assert AnalyseReport(errors=[("p", "m")]).to_dict()["errors"] == [{"path": "p", "message": "m"}]


def test_path_prefix_makes_machines_agree(pm: PersistenceManager, tmp_path: Path) -> None:
    machine_a, machine_b = tmp_path / "alice" / "checkout", tmp_path / "bob" / "src" / "repo"
    make_repo(machine_a)
    make_repo(machine_b)
    first = analyse_codebase(pm, "shared", machine_a, path_prefix="/srv/code/repo")
    assert first.analysed == 9
    assert all(p.startswith("/srv/code/repo/") for p in pm.get_file_hashes("shared"))
    assert "/srv/code/repo/pkg1/mod_1.py" in pm.get_file_hashes("shared")
    # Another machine, another directory, same content: nothing to do.
    second = analyse_codebase(pm, "shared", machine_b, path_prefix="/srv/code/repo")
    assert (second.analysed, second.unchanged, second.removed) == (0, 9, 0)


def test_removal_is_limited_to_own_shard_and_root(pm: PersistenceManager, tmp_path: Path) -> None:
    root = tmp_path / "repo"
    files = make_repo(root, files=12)
    analyse_codebase(pm, "cb", root, path_prefix="/srv/r")
    other_root = tmp_path / "other"
    write(other_root, "lib.py")
    analyse_codebase(pm, "cb", other_root, path_prefix="/srv/other")
    for path in files:
        path.unlink()
    names = [stored_path(p, root, "/srv/r") for p in files]
    in_first = [n for n in names if in_shard(n, 1, 2)]
    report = analyse_codebase(pm, "cb", root, path_prefix="/srv/r", shard=(1, 2))
    assert report.files_seen == 0
    assert report.removed == len(in_first)
    left = set(pm.get_file_hashes("cb"))
    assert left == {n for n in names if not in_shard(n, 1, 2)} | {"/srv/other/lib.py"}


def test_process_pool_gives_the_same_analyses(tmp_path: Path) -> None:
    root = tmp_path / "repo"
    make_repo(root, files=6)
    write(root, "pkg0/bad.py", "# FAIL\n")
    inline = PersistenceManager(str(tmp_path / "inline"))
    pooled = PersistenceManager(str(tmp_path / "pooled"))
    a = analyse_codebase(inline, "cb", root, analyser=failing_analyser)
    b = analyse_codebase(pooled, "cb", root, analyser=failing_analyser, workers=2, batch_size=3)
    assert (a.analysed, b.analysed) == (7, 7)
    assert a.errors == b.errors
    assert len(b.errors) == 1
    one, two = inline.load_analysis("cb"), pooled.load_analysis("cb")
    assert one is not None
    assert two is not None
    assert list(one.file_analyses) == list(two.file_analyses)
    for path, fa in one.file_analyses.items():
        assert without_time(fa) == without_time(two.file_analyses[path])
    assert inline.get_file_hashes("cb") == pooled.get_file_hashes("cb")


def test_unpicklable_analyser_is_refused_for_workers(
    pm: PersistenceManager, tmp_path: Path
) -> None:
    make_repo(tmp_path / "repo", files=1)

    def local(path: str, content: bytes) -> FileAnalysis:  # not importable by workers
        return reference_analyser(path, content)

    with pytest.raises(ConfigurationError, match="worker processes"):
        analyse_codebase(pm, "cb", tmp_path / "repo", analyser=local, workers=2)
    with pytest.raises(ConfigurationError, match="batch_size"):
        analyse_codebase(pm, "cb", tmp_path / "repo", batch_size=0)


def _run_shard(
    store_dir: str, root: str, k: int, n: int, queue: multiprocessing.Queue[object]
) -> None:
    manager = PersistenceManager(store_dir)
    report = analyse_codebase(
        manager, "together", Path(root), shard=(k, n), batch_size=1, path_prefix="/srv/together"
    )
    queue.put(report.to_dict())


def test_concurrent_shards_in_processes_lose_nothing(tmp_path: Path) -> None:
    root = tmp_path / "repo"
    files = make_repo(root, files=40)
    store_dir = str(tmp_path / "store")
    context = multiprocessing.get_context("spawn")
    queue: multiprocessing.Queue[object] = context.Queue()
    procs = [
        context.Process(target=_run_shard, args=(store_dir, str(root), k, 4, queue))
        for k in range(1, 5)
    ]
    for proc in procs:
        proc.start()
    reports = [queue.get(timeout=120) for _ in procs]
    for proc in procs:
        proc.join(timeout=60)
        assert proc.exitcode == 0
    assert sum(r["analysed"] for r in reports) == len(files)  # type: ignore[index]
    assert sum(r["files_seen"] for r in reports) == len(files)  # type: ignore[index]
    expected = {stored_path(p, root, "/srv/together"): p for p in files}
    pm = PersistenceManager(store_dir)
    check_consistent(pm, "together", expected)
    keys = set(pm.store.list("together/"))
    assert {layout.file_analysis_key("together", n) for n in expected} <= keys
    # Nothing left to do for anyone.
    assert analyse_codebase(pm, "together", root, path_prefix="/srv/together").analysed == 0


def test_the_analyser_module_is_an_alias_of_the_analysis_package() -> None:
    """``documee_remote.analyser`` (named in --analyser specs) re-exports the package's names."""
    import documee_remote.analyser as alias
    import documee_remote.analysis as analysis

    assert alias.__all__ == analysis.__all__
    for name in analysis.__all__:
        assert getattr(alias, name) is getattr(analysis, name), name
    assert load_analyser("documee_remote.analyser:reference_analyser") is reference_analyser
