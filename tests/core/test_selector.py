"""The core selector: which scheduler the engine runs, and the build that provides it."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import helpers
import pytest

from runtime import Engine
from runtime import scheduler as sched_mod

REQUIRE_EXTENSIONS = os.environ.get("WARMSTART_REQUIRE_EXTENSIONS") == "1"
NO_EXTENSIONS = os.environ.get("WARMSTART_NO_EXTENSIONS") == "1"


def _selected(**env: str) -> str:
    child_env = {k: v for k, v in os.environ.items() if not k.startswith("WARMSTART_")}
    child_env.update(env)
    code = "import runtime.scheduler as s; print(s.Scheduler.__name__, s.COMPILED)"
    return subprocess.run(
        [sys.executable, "-c", code], env=child_env, capture_output=True, text=True, check=True
    ).stdout.strip()


def test_required_extension_loaded() -> None:
    if not REQUIRE_EXTENSIONS:
        pytest.skip("WARMSTART_REQUIRE_EXTENSIONS is not set")
    assert sched_mod.SchedulerC is not None, "runtime._scheduler_c did not load"
    assert _selected() == "SchedulerC True"


def test_no_extensions_forces_the_pure_core() -> None:
    assert _selected(WARMSTART_NO_EXTENSIONS="1") == "SchedulerPy False"


def test_engine_runs_the_selected_core() -> None:
    assert type(Engine().core) is sched_mod.Scheduler
    if NO_EXTENSIONS:
        assert sched_mod.Scheduler is sched_mod.SchedulerPy
    elif sched_mod.SchedulerC is not None:
        assert sched_mod.Scheduler is sched_mod.SchedulerC


def test_both_cores_share_the_constants() -> None:
    if sched_mod.SchedulerC is None:
        pytest.skip("Cython core not built")
    from runtime import _scheduler_c, _scheduler_py

    names = [n for n in dir(_scheduler_py) if n.isupper() and not n.startswith("_")]
    assert names
    for name in names:
        if isinstance(getattr(_scheduler_py, name), int):
            assert getattr(_scheduler_c, name) == getattr(_scheduler_py, name), name


ROOT = str(helpers.ROOT)


def _build_without_compiler(tmp: str, **env: str) -> subprocess.CompletedProcess[str]:
    """setup.py build_ext into ``tmp`` with a C compiler that always fails."""
    child_env = {k: v for k, v in os.environ.items() if not k.startswith("WARMSTART_")}
    child_env.update(env, CC="false", LDSHARED="false")
    return subprocess.run(
        [sys.executable, "setup.py", "build_ext", "--build-lib", tmp, "--build-temp", tmp],
        cwd=ROOT,
        env=child_env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_build_without_a_compiler_installs_pure_python(tmp_path: Path) -> None:
    done = _build_without_compiler(str(tmp_path))
    assert done.returncode == 0, done.stderr
    assert "the Cython core did not build" in done.stderr
    assert "installing pure Python" in done.stderr
    assert not list(tmp_path.rglob("_scheduler_c*.so"))


def test_required_build_without_a_compiler_fails(tmp_path: Path) -> None:
    done = _build_without_compiler(str(tmp_path), WARMSTART_REQUIRE_EXTENSIONS="1")
    assert done.returncode != 0
    assert not list(tmp_path.rglob("_scheduler_c*.so"))
