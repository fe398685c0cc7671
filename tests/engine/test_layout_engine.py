"""The engine's layering: environments know no engine, backends know neither."""

from __future__ import annotations

from pathlib import Path

import pytest
from layout_support import RUNTIME, imports


def test_the_resolver_reads_relative_imports() -> None:
    names = imports(RUNTIME / "environment.py", run_time_only=False)
    assert "runtime.pools.process" in names
    assert "runtime.agent.protocol" in names


def test_environment_does_not_import_the_engine() -> None:
    names = imports(RUNTIME / "environment.py", run_time_only=False)
    assert "runtime.engine" not in names


@pytest.mark.parametrize(
    "path", sorted((RUNTIME / "pools").glob("*.py")), ids=lambda path: path.name
)
def test_pools_import_neither_engine_nor_environment_at_run_time(path: Path) -> None:
    names = imports(path, run_time_only=True)
    assert not names & {"runtime.engine", "runtime.environment"}
