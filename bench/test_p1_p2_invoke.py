"""P1 (warm invoke latency) and P2 (throughput, 2 environments, 64 callers).

Each group holds warmstart beside its baselines, measured in the same run: the raw uvloop
unix-socket round trip (the floor) and ProcessPoolExecutor.  Per-call latencies are recorded
with perf_counter so the p50 is exact; ``extra_info`` carries the figures bench/report.py reads.
P1 runs one warm-up round by hand before the measured rounds, so its samples hold only those;
P2's throughput is ``ops_per_round`` over the median round time pytest-benchmark records.
"""

from __future__ import annotations

import asyncio
import concurrent.futures as cf
import time
from collections.abc import Iterator
from typing import Any

import pytest

from runtime import Engine, FunctionConfig, PoolConfig
from runtime.harness.baselines import RawTarget

from ._support import EVENT, FUNCTIONS, EchoFloor, callers, noop, percentile, size

N_LATENCY = size(200, 3)
ROUNDS = size(25, 1)
N_THROUGHPUT = size(4000, 64)
CALLERS = 64


@pytest.fixture(scope="module")
def engine(loop: asyncio.AbstractEventLoop) -> Iterator[Engine]:
    engine = Engine(PoolConfig(max_queue=CALLERS * 2))
    code = str(FUNCTIONS / "noop")
    loop.run_until_complete(engine.start())
    loop.run_until_complete(
        engine.register(FunctionConfig(name="noop", handler="app.handler", code=code))
    )
    loop.run_until_complete(
        engine.register(
            FunctionConfig(name="noop2", handler="app.handler", code=code, reserved_concurrency=2)
        )
    )
    yield engine
    loop.run_until_complete(engine.close())


def _latency(benchmark: Any, figure: str, role: str, run_round: Any) -> None:
    samples: list[float] = []

    def once() -> None:
        samples.extend(run_round())

    benchmark.group = "P1-warm-latency"
    benchmark.extra_info.update(figure=figure, role=role, ops_per_round=N_LATENCY)
    run_round()  # the warm-up round: not recorded
    benchmark.pedantic(once, rounds=ROUNDS)
    benchmark.extra_info["p50_us"] = percentile(samples, 0.5) * 1e6
    benchmark.extra_info["p99_us"] = percentile(samples, 0.99) * 1e6


def test_p1_warmstart(benchmark: Any, loop: asyncio.AbstractEventLoop, engine: Engine) -> None:
    async def run() -> list[float]:
        out = []
        for _ in range(N_LATENCY):
            t0 = time.perf_counter()
            result = await engine.invoke("noop", EVENT)
            out.append(time.perf_counter() - t0)
        assert result.payload == b'{"key":"value","n":1}'
        return out

    _latency(benchmark, "P1", "warmstart", lambda: loop.run_until_complete(run()))


def test_p1_floor(benchmark: Any, loop: asyncio.AbstractEventLoop) -> None:
    floor = loop.run_until_complete(EchoFloor(1).start())
    client = floor.clients[0]

    async def run() -> list[float]:
        out = []
        for _ in range(N_LATENCY):
            t0 = time.perf_counter()
            reply = await client.roundtrip(EVENT)
            out.append(time.perf_counter() - t0)
        assert reply == EVENT
        return out

    try:
        _latency(benchmark, "P1", "floor", lambda: loop.run_until_complete(run()))
    finally:
        loop.run_until_complete(floor.close())


def test_p1_process_pool_executor(benchmark: Any) -> None:
    with cf.ProcessPoolExecutor(1) as pool:
        pool.submit(noop, EVENT).result()

        def run() -> list[float]:
            out = []
            for _ in range(N_LATENCY):
                t0 = time.perf_counter()
                pool.submit(noop, EVENT).result()
                out.append(time.perf_counter() - t0)
            return out

        _latency(benchmark, "P1", "ProcessPoolExecutor", run)


def _throughput(benchmark: Any, role: str, run_round: Any) -> None:
    benchmark.group = "P2-throughput"
    benchmark.extra_info.update(figure="P2", role=role, ops_per_round=N_THROUGHPUT)
    benchmark.pedantic(run_round, rounds=size(5, 1), warmup_rounds=1)


def test_p2_warmstart(benchmark: Any, loop: asyncio.AbstractEventLoop, engine: Engine) -> None:
    async def call() -> None:
        await engine.invoke("noop2", EVENT)

    _throughput(
        benchmark,
        "warmstart",
        lambda: loop.run_until_complete(callers(CALLERS, N_THROUGHPUT, call)),
    )
    assert engine.stats()["noop2"]["environments"]["ready"] <= 2


def test_p2_floor(benchmark: Any, loop: asyncio.AbstractEventLoop) -> None:
    target = RawTarget(2)
    loop.run_until_complete(target.start())

    async def call() -> None:
        await target.call(EVENT)

    try:
        _throughput(
            benchmark,
            "floor",
            lambda: loop.run_until_complete(callers(CALLERS, N_THROUGHPUT, call)),
        )
    finally:
        loop.run_until_complete(target.close())


def test_p2_process_pool_executor(benchmark: Any) -> None:
    with cf.ProcessPoolExecutor(2) as pool:
        list(pool.map(noop, [EVENT] * 4))

        def run() -> None:
            pending: set[cf.Future[bytes]] = set()
            submitted = 0
            while submitted < N_THROUGHPUT or pending:
                while submitted < N_THROUGHPUT and len(pending) < CALLERS:
                    pending.add(pool.submit(noop, EVENT))
                    submitted += 1
                _, pending = cf.wait(pending, return_when=cf.FIRST_COMPLETED)

        _throughput(benchmark, "ProcessPoolExecutor", run)
