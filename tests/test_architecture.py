"""The package's shape: no runtime import cycles, no module too big to read.

Issue 13 made the layering real (a module imports only what stands below it);
these tests keep it so. Imports under ``if TYPE_CHECKING:`` do not run and are
not counted; nor are imports inside functions (kept for optional dependencies
and cold start, never to dodge a cycle).
"""

from __future__ import annotations

import ast
from pathlib import Path

import documee_remote

PACKAGE = "documee_remote"
ROOT = Path(documee_remote.__file__).parent

#: Modules allowed past MAX_LINES, each with why it is one concept.
BIG_ALLOWED: dict[str, str] = {
    "documee_remote.analysis.reference": "one concept: the reference analyser of Python",
    "documee_remote.manager": (
        "one concept: upstream's API and the public verbs, each delegating to the engine; "
        "over the line by the lazy imports that keep cold start low and the read cache's copy="
    ),
    "documee_remote.stores._obstore": (
        "one concept: the obstore backend; its error table and boto3 credential bridge "
        "serve only it"
    ),
}

#: Cycles known and owned by another part of the step, as sorted module tuples.
KNOWN_CYCLES: set[tuple[str, ...]] = set()

MAX_LINES = 700


def _modules() -> dict[str, Path]:
    found = {}
    for path in sorted(ROOT.rglob("*.py")):
        parts = list(path.relative_to(ROOT.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        found[".".join(parts)] = path
    return found


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _runtime_imports(tree: ast.Module) -> list[ast.Import | ast.ImportFrom]:
    """Imports that run when the module is imported: module level, outside
    ``if TYPE_CHECKING:`` (both branches of other ``if``s and ``try``s count)."""
    found: list[ast.Import | ast.ImportFrom] = []

    def visit(body: list[ast.stmt]) -> None:
        for node in body:
            if isinstance(node, ast.Import | ast.ImportFrom):
                found.append(node)
            elif isinstance(node, ast.If):
                if not _is_type_checking(node.test):
                    visit(node.body)
                visit(node.orelse)
            elif isinstance(node, ast.Try):
                for block in (node.body, node.orelse, node.finalbody):
                    visit(block)
                for handler in node.handlers:
                    visit(handler.body)
            elif isinstance(node, ast.With):
                visit(node.body)

    visit(tree.body)
    return found


def _graph() -> dict[str, set[str]]:
    modules = _modules()
    graph: dict[str, set[str]] = {name: set() for name in modules}
    for name, path in modules.items():
        is_package = path.name == "__init__.py"
        package = name if is_package else name.rpartition(".")[0]
        for node in _runtime_imports(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            else:
                if node.level:
                    base = package.split(".")
                    base = base[: len(base) - (node.level - 1)]
                    stem = ".".join(base + ([node.module] if node.module else []))
                else:
                    stem = node.module or ""
                # ``from . import x`` imports the submodule x when there is one.
                targets = [stem] + [f"{stem}.{alias.name}" for alias in node.names]
            for dotted in targets:
                # Importing a.b.c runs a and a.b too: the innermost known module counts
                # (its parents are its own edges in the graph).
                target = dotted
                while target and target not in modules:
                    target = target.rpartition(".")[0]
                if target and target != name:
                    graph[name].add(target)
    return graph


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def connect(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(graph[node]):
            if nxt not in index:
                connect(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            connect(node)
    return found


def _path_in(graph: dict[str, set[str]], component: list[str]) -> list[str]:
    """One concrete cycle through the component's first module, for the message."""
    members = set(component)
    start = component[0]
    trail = [start]
    seen = {start}

    def walk(node: str) -> bool:
        for nxt in sorted(graph[node] & members):
            if nxt == start:
                trail.append(start)
                return True
            if nxt not in seen:
                seen.add(nxt)
                trail.append(nxt)
                if walk(nxt):
                    return True
                trail.pop()
        return False

    walk(start)
    return trail


def test_no_runtime_import_cycles() -> None:
    graph = _graph()
    cycles = [c for c in _cycles(graph) if tuple(c) not in KNOWN_CYCLES]
    described = [" -> ".join(_path_in(graph, c)) for c in cycles]
    assert not cycles, "runtime import cycles:\n" + "\n".join(described)


def test_known_cycles_are_still_there() -> None:
    """An entry for a cycle that is gone must go too, or it would hide a new one."""
    current = {tuple(c) for c in _cycles(_graph())}
    assert current >= KNOWN_CYCLES, KNOWN_CYCLES - current


def test_the_cycle_finder_finds_cycles() -> None:
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert _cycles(graph) == [["a", "b", "c"]]
    assert _path_in(graph, ["a", "b", "c"]) == ["a", "b", "c", "a"]


def test_imports_under_type_checking_do_not_count() -> None:
    tree = ast.parse(
        "from typing import TYPE_CHECKING\n"
        "if TYPE_CHECKING:\n    from . import manager\n"
        "try:\n    from . import codec\nexcept ImportError:\n    pass\n"
        "def f():\n    from . import journal\n"
    )
    names = [alias.name for node in _runtime_imports(tree) for alias in node.names]
    assert names == ["TYPE_CHECKING", "codec"]


#: The commit engine's layers, bottom first: each may import only those before it
#: (see documee_remote/_engine/__init__.py).
ENGINE_LAYERS = [
    "context",
    "reads",
    "journal_io",
    "hashes",
    "commit",
    "publish",
    "compact",
    "folder",
    "append",
    "merging",
    "save",
]


def test_engine_modules_import_only_what_stands_below_them() -> None:
    engine = f"{PACKAGE}._engine"
    graph = _graph()
    assert {n for n in graph if n.startswith(engine + ".")} == {
        f"{engine}.{layer}" for layer in ENGINE_LAYERS
    }, "a new engine module needs its place in ENGINE_LAYERS"
    upward = [
        f"{engine}.{layer} imports {target}"
        for i, layer in enumerate(ENGINE_LAYERS)
        for target in sorted(graph[f"{engine}.{layer}"])
        if target.startswith(engine + ".") and target.rpartition(".")[2] not in ENGINE_LAYERS[:i]
    ]
    assert not upward, "engine modules importing upward:\n" + "\n".join(upward)


def test_the_engine_stands_below_the_manager() -> None:
    graph = _graph()
    below = [n for n in graph if n.startswith(f"{PACKAGE}._engine")]
    assert not [n for n in below if f"{PACKAGE}.manager" in graph[n]]
    for module in ("integrity", "leases", "journal", "bookkeeping", "merge"):
        assert f"{PACKAGE}.manager" not in graph[f"{PACKAGE}.{module}"], module


def test_no_module_is_too_big() -> None:
    sizes = {name: len(path.read_text().splitlines()) for name, path in _modules().items()}
    big = {name: n for name, n in sizes.items() if n > MAX_LINES and name not in BIG_ALLOWED}
    assert not big, f"modules over {MAX_LINES} lines (split them, or allow one concept): {big}"


def test_big_allowlist_is_current() -> None:
    """An allowed module that shrank below the limit must leave the list."""
    modules = _modules()
    stale = [
        name
        for name in BIG_ALLOWED
        if name not in modules or len(modules[name].read_text().splitlines()) <= MAX_LINES
    ]
    assert not stale, stale
