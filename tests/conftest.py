"""Shared fixtures: both scheduler cores, and leak checks that fail the test that leaked."""

from __future__ import annotations

import os

import pytest

from runtime import scheduler as sched_mod

REQUIRE_EXTENSIONS = os.environ.get("WARMSTART_REQUIRE_EXTENSIONS") == "1"
NO_EXTENSIONS = os.environ.get("WARMSTART_NO_EXTENSIONS") == "1"


def _core_params() -> list[object]:
    params: list[object] = [pytest.param(sched_mod.SchedulerPy, id="py")]
    if sched_mod.SchedulerC is not None and not NO_EXTENSIONS:
        params.append(pytest.param(sched_mod.SchedulerC, id="c"))
    elif REQUIRE_EXTENSIONS:
        params.append(pytest.param(None, id="c"))
    else:
        params.append(
            pytest.param(None, id="c", marks=pytest.mark.skip(reason="Cython core not built"))
        )
    return params


@pytest.fixture(params=_core_params())
def Scheduler(request: pytest.FixtureRequest) -> type:  # noqa: N802 - it is a class
    """Each scheduler-core test runs once on the pure core and once on the Cython core."""
    if request.param is None:
        pytest.fail("WARMSTART_REQUIRE_EXTENSIONS=1 but runtime._scheduler_c did not load")
    return request.param  # type: ignore[no-any-return]
