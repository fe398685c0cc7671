"""P8: unique memory (USS: private clean + private dirty pages) of an idle forked worker.

A forked worker shares the template's pages copy-on-write; the template freezes the garbage
collector so that collections do not touch (and so copy) those pages.  A spawned worker,
which owns all its pages, is measured beside it.
"""

from __future__ import annotations

import asyncio
from typing import Any, Literal

import pytest

from runtime import Engine, FunctionConfig

from ._support import EVENT, FUNCTIONS, size

WORKERS = size(4, 2)


def unique_rss_mb(pid: int) -> float:
    total_kb = 0
    with open(f"/proc/{pid}/smaps_rollup") as f:
        for line in f:
            if line.startswith(("Private_Clean:", "Private_Dirty:")):
                total_kb += int(line.split()[1])
    return total_kb / 1024


def _idle_uss(loop: asyncio.AbstractEventLoop, start: Literal["fork", "spawn"]) -> list[float]:
    async def run() -> list[float]:
        async with Engine() as engine:
            config = FunctionConfig(
                name=f"idle-{start}",
                handler="app.handler",
                code=str(FUNCTIONS / "noop"),
                provisioned_concurrency=WORKERS,
                start=start,
            )
            await engine.register(config)
            await asyncio.gather(*(engine.invoke(config.name, EVENT) for _ in range(WORKERS)))
            pids = [env.worker.pid for env in engine._envs.values() if env.worker is not None]
            assert len(pids) == WORKERS
            return [unique_rss_mb(pid) for pid in pids]

    return loop.run_until_complete(run())


@pytest.mark.parametrize("start", ["fork", "spawn"])
def test_p8_idle_worker_memory(
    benchmark: Any, loop: asyncio.AbstractEventLoop, start: Literal["fork", "spawn"]
) -> None:
    samples: list[float] = []
    benchmark.group = "P8-idle-memory"
    benchmark.extra_info.update(
        figure="P8", role="warmstart" if start == "fork" else "spawned worker"
    )
    benchmark.pedantic(lambda: samples.extend(_idle_uss(loop, start)), rounds=1)
    benchmark.extra_info["uss_mb"] = max(samples)
