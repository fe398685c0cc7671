"""The shared plumbing: one home for each concept, and no reaching into another's privates."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
from layout_support import RUNTIME, imports

POOLS = sorted((RUNTIME / "pools").glob("*.py"))


@pytest.mark.parametrize("path", POOLS, ids=lambda p: p.name)
def test_pools_import_no_scheduler_and_no_lambda_wording(path: Path) -> None:
    found = imports(path, run_time_only=True)
    assert not found & {"runtime.scheduler", "runtime.wording"}


def _private_imports(path: Path) -> list[str]:
    """``from X import _name`` of another module (a module's own package excepted)."""
    tree = ast.parse(path.read_text(), str(path))
    return [
        f"{node.module}.{alias.name}"
        for node in ast.walk(tree)
        if isinstance(node, ast.ImportFrom) and node.module and node.level != 1
        for alias in node.names
        if alias.name.startswith("_") and not alias.name.startswith("__")
    ]


@pytest.mark.parametrize(
    "path",
    [RUNTIME / "batch" / "executors.py", *sorted((RUNTIME / "ecs").glob("*.py"))],
    ids=lambda p: f"{p.parent.name}/{p.name}",
)
def test_docker_users_import_no_private_names_of_other_packages(path: Path) -> None:
    assert _private_imports(path) == []
