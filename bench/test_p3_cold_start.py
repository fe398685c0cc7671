"""P3: process cold start, template fork → first result, against spawning ``python -c pass``.

``max_uses=1`` retires every environment after one invocation, so each sample is a fresh
environment: a fork from the warm template, the handshake, and the invocation.  The spawn
path (a fresh interpreter importing the handler, Lambda's own shape) is measured beside it.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
from collections.abc import Iterator
from typing import Any, Literal

import pytest

from runtime import Engine, FunctionConfig

from ._support import EVENT, FUNCTIONS, percentile, size

ROUNDS = size(40, 2)


@pytest.fixture(scope="module")
def engine(loop: asyncio.AbstractEventLoop) -> Iterator[Engine]:
    engine = Engine()
    code = str(FUNCTIONS / "noop")
    loop.run_until_complete(engine.start())
    start: Literal["fork", "spawn"]
    for name, start in (("cold-fork", "fork"), ("cold-spawn", "spawn")):
        config = FunctionConfig(
            name=name, handler="app.handler", code=code, max_uses=1, start=start
        )
        loop.run_until_complete(engine.register(config))
    yield engine
    loop.run_until_complete(engine.close())


def _cold(
    benchmark: Any, loop: asyncio.AbstractEventLoop, engine: Engine, name: str, role: str
) -> None:
    init_ms: list[float] = []

    def invoke() -> float:
        result = loop.run_until_complete(engine.invoke(name, EVENT))
        assert result.report is not None
        assert result.report.cold, "every sample must be a cold start"
        return result.report.init_duration_ms or 0.0

    def once() -> None:
        init_ms.append(invoke())

    benchmark.group = "P3-cold-start"
    benchmark.extra_info.update(figure="P3", role=role)
    invoke()  # the warm-up round: not recorded
    benchmark.pedantic(once, rounds=ROUNDS)
    benchmark.extra_info["init_p50_ms"] = percentile(init_ms, 0.5)


def test_p3_warmstart_fork(benchmark: Any, loop: asyncio.AbstractEventLoop, engine: Engine) -> None:
    _cold(benchmark, loop, engine, "cold-fork", "warmstart")


def test_p3_warmstart_spawn(
    benchmark: Any, loop: asyncio.AbstractEventLoop, engine: Engine
) -> None:
    _cold(benchmark, loop, engine, "cold-spawn", "warmstart spawn")


def test_p3_python_c_pass(benchmark: Any) -> None:
    benchmark.group = "P3-cold-start"
    benchmark.extra_info.update(figure="P3", role="python -c pass")
    benchmark.pedantic(
        lambda: subprocess.run([sys.executable, "-c", "pass"], check=True), rounds=ROUNDS
    )
