"""P6: the scheduler core alone, the pure-Python core against the Cython build.

Both cores run the same sans-I/O workload in one group, so the ratio comes from one run.  A
few functions have warm environments; every tick submits one invocation per function and
releases them all (the engine's hot path: a LIFO reuse, a dispatch deadline armed and
cancelled, a keepalive re-armed), then calls ``advance`` with nothing due.  A final ``advance``
past the keepalive sweeps the heap: every idle environment stops and the stale entries drain.
"""

from __future__ import annotations

from typing import Any

import pytest

from runtime.scheduler import (
    COLD_START,
    DISPATCH,
    MISSING_COMPILED,
    STOP,
    FunctionLimits,
    SchedulerPy,
    require_compiled,
)

from ._support import size

FUNCTIONS = ("alpha", "beta", "gamma", "delta")
WARM = 8  # warm environments per function
KEEPALIVE = 300.0
TICKS = size(2000, 50)
ROUNDS = size(30, 2)

try:
    _COMPILED = require_compiled()
except RuntimeError:
    C_CORE = pytest.param(None, id="c")  # fails below
else:
    _SKIP = [] if _COMPILED else [pytest.mark.skip(reason="Cython core not built")]
    C_CORE = pytest.param(_COMPILED, id="c", marks=_SKIP)


def warm(core: type[Any]) -> tuple[tuple[Any, float], dict[str, Any]]:
    """A scheduler whose functions each hold WARM idle, live environments (not timed)."""
    sched = core(account_limit=1000, cold_start_cap=64)
    now, req = 0.0, 0
    for name in FUNCTIONS:
        sched.add_function(name, FunctionLimits(128, 30.0, KEEPALIVE), now)
        envs = []
        for _ in range(WARM):
            req += 1
            ((kind, env, _, _),) = sched.submit(req, name, now)
            assert kind == COLD_START
            envs.append(env)
        for env in envs:
            assert sched.ready(env, now)[0][0] == DISPATCH
        for env in envs:
            sched.release(env, now)
    return (sched, now), {}


def workload(sched: Any, now: float) -> list[Any]:
    submit, release, advance = sched.submit, sched.release, sched.advance
    busy: list[int] = []
    req = 1_000_000
    for _ in range(TICKS):
        now += 0.001
        for name in FUNCTIONS:
            req += 1
            busy.append(submit(req, name, now)[0][1])
        for env in busy:
            release(env, now)
        busy.clear()
        advance(now)
    assert sched.env_count() == len(FUNCTIONS) * WARM  # every submit reused a warm env
    return advance(now + KEEPALIVE + 1.0)  # type: ignore[no-any-return]


@pytest.mark.parametrize("core", [pytest.param(SchedulerPy, id="py"), C_CORE])
def test_p6_scheduler(benchmark: Any, core: type[Any] | None) -> None:
    if core is None:
        pytest.fail(MISSING_COMPILED)
    benchmark.group = "P6-scheduler"
    # bench/report.py takes the P6 ratio between roles "c" and "py".
    role = "py" if core is SchedulerPy else "c"
    benchmark.extra_info.update(figure="P6", role=role, operations=TICKS * len(FUNCTIONS))
    swept = benchmark.pedantic(workload, setup=lambda: warm(core), rounds=ROUNDS)
    assert len(swept) == len(FUNCTIONS) * WARM
    assert all(action[0] == STOP for action in swept)
