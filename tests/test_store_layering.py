"""The storage side's layering: configuration below the stores, the stores below the domain.

Read from the source (module-level imports, outside ``if TYPE_CHECKING:``), so a
test fails the moment an import goes the wrong way, before any cycle bites.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import documee_remote
from documee_remote.config import S3Options

PACKAGE = Path(documee_remote.__file__).parent


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path, *, module_level_only: bool) -> set[str]:
    """The absolute names ``path`` imports."""
    name = _module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()

    def visit(nodes: list[ast.stmt]) -> None:
        for node in nodes:
            if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
                visit(node.orelse)
                continue
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and module_level_only:
                continue
            if isinstance(node, ast.Import):
                found.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom):
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                target = ".".join([*base, node.module] if node.module else base)
                if node.level == 0:
                    target = node.module or ""
                found.add(target)
                found.update(f"{target}.{alias.name}" for alias in node.names)
            for field in ("body", "orelse", "finalbody", "handlers"):
                for child in getattr(node, field, None) or []:
                    visit(child.body if isinstance(child, ast.ExceptHandler) else [child])

    visit(ast.parse(path.read_text(encoding="utf-8")).body)
    return found


def _modules(subpackage: str) -> list[Path]:
    return sorted((PACKAGE / subpackage).rglob("*.py"))


@pytest.mark.parametrize("path", _modules("config"), ids=lambda p: p.name)
def test_config_imports_nothing_from_the_stores_at_import_time(path: Path) -> None:
    wrong = {
        n for n in _imports(path, module_level_only=True) if n.startswith("documee_remote.stores")
    }
    assert wrong == set()


@pytest.mark.parametrize("path", _modules("stores"), ids=lambda p: str(p.relative_to(PACKAGE)))
def test_the_stores_never_import_the_domain(path: Path) -> None:
    domain = ("layout", "manager", "journal", "codec", "models", "merge", "leases", "integrity")
    wrong = {
        n
        for n in _imports(path, module_level_only=False)
        if n.split(".")[:2] in (["documee_remote", d] for d in domain)
    }
    assert wrong == set()


def test_the_key_grammar_is_one_function() -> None:
    from documee_remote import layout
    from documee_remote.stores import _keys

    assert layout.validate_key is _keys.validate_key
    assert layout.validate_prefix is _keys.validate_prefix


def test_the_fsspec_backend_takes_exactly_the_s3_options_in_order() -> None:
    pytest.importorskip("fsspec")
    from documee_remote.stores._fsspec import S3_OPTION_NAMES

    assert tuple(S3Options.model_fields) == S3_OPTION_NAMES


def test_the_fault_injectors_share_one_rule_engine() -> None:
    pytest.importorskip("moto")
    from documee_remote.testing import faulty, moto_server
    from documee_remote.testing._rules import Rule

    assert issubclass(faulty.FaultRule, Rule)
    assert issubclass(faulty.HttpFaultRule, Rule)
    assert issubclass(moto_server.FaultRule, Rule)
