"""P12: a ``provided.al2023`` function run by awslambdaric over Lambda's Runtime API.

Warm latency, three ways in one run, each pinned (this process and every process and thread
under it on one CPU) and unpinned (all CPUs), whatever ``taskset`` the run was started under:

- ``runtime API``: a ``provided.al2023`` function whose ``bootstrap`` execs
  ``python -m awslambdaric app.handler``: the agent answers its ``GET /next`` and takes its
  ``POST /response`` over HTTP on 127.0.0.1 (runtime/agent/runtime_api.py);
- ``python``: the same ``app.handler`` as a Python function, run by the agent's own loop;
- ``floor``: the raw unix-socket round trip of the same event (bench/_support.py).

The ``runtime API`` entry of each mode, measured last, carries the ratios of the three (p50
and p99).  Cold start: the same awslambdaric function with ``max_uses=1`` (a fresh agent, a
fresh ``bootstrap`` and a fresh interpreter each call) beside the forked and the
``start="spawn"`` Python function, with the Init Duration REPORT gives; the cold tests run
under the affinity the run was started with.  Where the time goes is measured by
``python -m bench.runtime_api_steps``.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import sys
import time
from collections.abc import Awaitable, Callable, Iterator
from typing import Any, Literal

import pytest

from runtime import Engine, FunctionConfig

from ._affinity import MODES, affinity
from ._support import EVENT, FUNCTIONS, EchoFloor, percentile, size

pytest.importorskip("awslambdaric")

N_LATENCY = size(200, 3)
ROUNDS = size(10, 1)
COLD_ROUNDS = size(20, 1)
ROLES = ("floor", "python", "runtime API")
#: p50 and p99 (µs) of the warm roles measured so far, by (mode, role)
MEASURED: dict[tuple[str, str], tuple[float, float]] = {}
#: the median cold call (ms) of the cold roles measured so far
COLD: dict[str, float] = {}


@pytest.fixture(scope="module")
def ric_code(tmp_path_factory: pytest.TempPathFactory) -> str:
    """The no-op handler beside a ``bootstrap`` that runs it with awslambdaric."""
    code = tmp_path_factory.mktemp("ric")
    shutil.copyfile(FUNCTIONS / "noop" / "app.py", code / "app.py")
    bootstrap = code / "bootstrap"
    bootstrap.write_text(f'#!/bin/sh\nexec {sys.executable} -m awslambdaric "$_HANDLER"\n')
    bootstrap.chmod(0o755)
    return str(code)


def _provided(name: str, code: str, **fields: Any) -> FunctionConfig:
    return FunctionConfig(
        name=name,
        handler="app.handler",
        code=code,
        runtime="provided.al2023",
        timeout_s=10,
        **fields,
    )


@pytest.fixture(scope="module")
def engine(loop: asyncio.AbstractEventLoop, ric_code: str) -> Iterator[Engine]:
    engine = Engine()
    noop = str(FUNCTIONS / "noop")
    start: Literal["fork", "spawn"]
    configs = [
        _provided("ric", ric_code),
        FunctionConfig(name="py", handler="app.handler", code=noop),
        _provided("cold-ric", ric_code, max_uses=1),
    ]
    for name, start in (("cold-fork", "fork"), ("cold-spawn", "spawn")):
        configs.append(
            FunctionConfig(name=name, handler="app.handler", code=noop, max_uses=1, start=start)
        )
    loop.run_until_complete(engine.start())
    for config in configs:
        loop.run_until_complete(engine.register(config))
    yield engine
    loop.run_until_complete(engine.close())


# -- warm latency ----------------------------------------------------------------------------


def _ratios(mode: str) -> dict[str, float]:
    """a/c, b/c and a/b at p50 and p99: a the Runtime API, b python, c the floor."""
    names = {"ric": "runtime API", "python": "python", "floor": "floor"}
    out = {}
    for top, bottom in (("ric", "floor"), ("python", "floor"), ("ric", "python")):
        a, b = MEASURED.get((mode, names[top])), MEASURED.get((mode, names[bottom]))
        if a is not None and b is not None:
            out[f"{top}_vs_{bottom}_p50"] = a[0] / b[0]
            out[f"{top}_vs_{bottom}_p99"] = a[1] / b[1]
    return out


def _latency(
    benchmark: Any,
    loop: asyncio.AbstractEventLoop,
    mode: str,
    role: str,
    call: Callable[[], Awaitable[Any]],
) -> None:
    samples: list[float] = []

    async def run_round() -> None:
        for _ in range(N_LATENCY):
            t0 = time.perf_counter()
            await call()
            samples.append(time.perf_counter() - t0)

    benchmark.group = f"P12-runtime-api-warm-{mode}"
    benchmark.extra_info.update(figure="P12", role=role, mode=mode, ops_per_round=N_LATENCY)
    loop.run_until_complete(run_round())  # the warm-up round: not recorded
    samples.clear()
    benchmark.pedantic(lambda: loop.run_until_complete(run_round()), rounds=ROUNDS)
    p50, p99 = percentile(samples, 0.5) * 1e6, percentile(samples, 0.99) * 1e6
    benchmark.extra_info.update(p50_us=p50, p99_us=p99)
    MEASURED[mode, role] = (p50, p99)
    if role == "runtime API":
        benchmark.extra_info.update(_ratios(mode))


@pytest.mark.parametrize(
    ("mode", "role"), [(m, r) for m in MODES for r in ROLES], ids=lambda v: v.replace(" ", "-")
)
def test_p12_warm(
    benchmark: Any, loop: asyncio.AbstractEventLoop, engine: Engine, mode: str, role: str
) -> None:
    if role == "floor":
        floor = loop.run_until_complete(EchoFloor(1).start())
        try:
            with affinity(mode):
                _latency(benchmark, loop, mode, role, lambda: floor.clients[0].roundtrip(EVENT))
        finally:
            loop.run_until_complete(floor.close())
        return
    name = "ric" if role == "runtime API" else "py"
    result = loop.run_until_complete(engine.invoke(name, EVENT))  # the environment exists
    assert result.function_error is None, result.payload
    assert json.loads(result.payload) == json.loads(EVENT)
    with affinity(mode):
        _latency(benchmark, loop, mode, role, lambda: engine.invoke(name, EVENT))
    assert engine.stats()[name]["cold_starts"] == 1, "every measured call must be warm"


# -- cold start ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "role"),
    [("cold-fork", "python fork"), ("cold-spawn", "python spawn"), ("cold-ric", "runtime API")],
    ids=["python-fork", "python-spawn", "runtime-API"],
)
def test_p12_cold(
    benchmark: Any, loop: asyncio.AbstractEventLoop, engine: Engine, name: str, role: str
) -> None:
    init_ms: list[float] = []
    duration_ms: list[float] = []
    wall_ms: list[float] = []

    def invoke() -> None:
        t0 = time.perf_counter()
        result = loop.run_until_complete(engine.invoke(name, EVENT))
        wall_ms.append((time.perf_counter() - t0) * 1000)
        assert result.function_error is None, result.payload
        report = result.report
        assert report is not None
        assert report.cold, "every sample must be a cold start"
        init_ms.append(report.init_duration_ms or 0.0)
        duration_ms.append(report.duration_ms)

    benchmark.group = "P12-runtime-api-cold"
    benchmark.extra_info.update(figure="P12", role=role)
    invoke()  # the warm-up round: not recorded
    for samples in (init_ms, duration_ms, wall_ms):
        samples.clear()
    benchmark.pedantic(invoke, rounds=COLD_ROUNDS)
    COLD[role] = percentile(wall_ms, 0.5)
    benchmark.extra_info.update(
        cold_p50_ms=COLD[role],
        init_p50_ms=percentile(init_ms, 0.5),
        duration_p50_ms=percentile(duration_ms, 0.5),
    )
    if role == "runtime API":
        for base in ("python spawn", "python fork"):
            if base in COLD:
                benchmark.extra_info[f"ric_vs_{base.split()[1]}"] = COLD[role] / COLD[base]
