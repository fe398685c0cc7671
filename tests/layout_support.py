"""What a runtime module imports, read from its source: relative imports resolved, and
``if TYPE_CHECKING:`` blocks optionally left out."""

from __future__ import annotations

import ast
from pathlib import Path

from helpers import ROOT

RUNTIME = ROOT / "runtime"


def _module(path: Path) -> str:
    return ".".join(path.relative_to(RUNTIME.parent).with_suffix("").parts)


def _resolve(path: Path, node: ast.ImportFrom) -> list[str]:
    """The absolute names an ``import from`` brings in (its module, and each name as a
    submodule, since ``from . import engine`` imports a module too)."""
    if node.level:
        package = _module(path).split(".")[: -node.level]
        base = ".".join([*package, node.module] if node.module else package)
    else:
        base = node.module or ""
    return [base, *(f"{base}.{alias.name}" for alias in node.names)]


def _type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def imports(path: Path, *, run_time_only: bool) -> set[str]:
    """Every module ``path`` imports, optionally leaving out ``if TYPE_CHECKING:`` blocks."""
    tree = ast.parse(path.read_text(), str(path))
    skipped: set[int] = set()
    if run_time_only:
        for node in ast.walk(tree):
            if isinstance(node, ast.If) and _type_checking(node):
                skipped.update(id(inner) for stmt in node.body for inner in ast.walk(stmt))
    found: set[str] = set()
    for node in ast.walk(tree):
        if id(node) in skipped:
            continue
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            found.update(_resolve(path, node))
    return found
