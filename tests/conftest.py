"""Shared fixtures: both scheduler cores, and leak checks that fail the test that leaked.

The support modules' fixtures (Docker's ``docker_engine``; the service's ``aws_env``,
``data_dir`` and ``no_leaked_threads``) are registered here for every folder; a folder's own
conftest.py turns on the ones all its tests need.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Callable, Coroutine, Iterator
from typing import Any, TypeVar

import pytest
from helpers import agents_of

from runtime import scheduler as sched_mod
from runtime.loop import run as loop_run

T = TypeVar("T")

pytest_plugins = ["docker_support", "redis_support", "service_support"]


def _core_params() -> list[object]:
    params: list[object] = [pytest.param(sched_mod.SchedulerPy, id="py")]
    try:
        compiled = sched_mod.require_compiled()
    except RuntimeError:
        params.append(pytest.param(None, id="c"))  # fails in the fixture
    else:
        skip = [] if compiled else [pytest.mark.skip(reason="Cython core not built")]
        params.append(pytest.param(compiled, id="c", marks=skip))
    return params


@pytest.fixture(params=_core_params())
def Scheduler(request: pytest.FixtureRequest) -> type:
    """Each scheduler-core test runs once on the pure core and once on the Cython core."""
    if request.param is None:
        pytest.fail(sched_mod.MISSING_COMPILED)
    return request.param  # type: ignore[no-any-return]


@pytest.fixture(autouse=True)
def own_data_dir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Every test gets a durable store of its own, never the user's data directory."""
    path = str(tmp_path_factory.mktemp("data"))
    before = os.environ.get("WARMSTART_DATA_DIR")
    os.environ["WARMSTART_DATA_DIR"] = path
    yield path
    if before is None:
        os.environ.pop("WARMSTART_DATA_DIR", None)
    else:
        os.environ["WARMSTART_DATA_DIR"] = before


@pytest.fixture(autouse=True)
def no_leaked_processes() -> Iterator[None]:
    """Every test must leave no template or worker process behind."""
    yield
    deadline = time.monotonic() + 3.0
    left = agents_of(os.getpid())
    while left and time.monotonic() < deadline:
        time.sleep(0.02)
        left = agents_of(os.getpid())
    assert not left, f"agent processes left behind: {left}"


@pytest.fixture
def arun() -> Iterator[Callable[..., Any]]:
    """Run a coroutine on a fresh loop (uvloop unless WARMSTART_LOOP=asyncio).

    Unhandled loop exceptions fail the test.
    """
    errors: list[dict[str, Any]] = []

    def run(coro: Coroutine[Any, Any, T], timeout: float = 30.0) -> T:
        async def main() -> T:
            asyncio.get_running_loop().set_exception_handler(lambda _loop, ctx: errors.append(ctx))
            return await asyncio.wait_for(coro, timeout)

        return loop_run(main())

    yield run
    assert not errors, f"unhandled exceptions in the event loop: {errors}"
