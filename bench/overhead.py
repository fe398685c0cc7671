"""Where a warm call's time goes: the figures quoted in bench/README.md's "Reading the misses".

    .venv/bin/python -m bench.overhead

1. engine-only: the engine with its workers replaced by an in-process fake that answers each
   INVOKE frame at once (the fake's own decode and encode are included);
2. engine CPU per call under P2's load (64 callers, 2 environments), from process CPU time;
3. the floor client's CPU per call under the same load (bench._support.EchoFloor);
4. the agent's own work per invocation of a no-op handler, in process.
"""

from __future__ import annotations

import asyncio
import os
import sys
import tempfile
import time
from typing import Any

from runtime import Engine, FunctionConfig, PoolConfig
from runtime.agent import protocol as P
from runtime.loop import run

from ._support import EVENT, FUNCTIONS, EchoFloor, callers

CALLERS = 64
N = 10_000


async def _engine(fake: bool) -> float:
    async with Engine(PoolConfig(max_queue=CALLERS * 2)) as engine:
        code = str(FUNCTIONS / "noop")
        config = FunctionConfig(
            name="noop", handler="app.handler", code=code, reserved_concurrency=2
        )
        await engine.register(config)
        await asyncio.gather(*(engine.invoke("noop", EVENT) for _ in range(4)))
        if fake:
            loop = asyncio.get_running_loop()
            for env in engine._envs.values():
                worker = env.worker
                assert worker is not None

                def answer(data: bytes, worker: Any = worker) -> None:
                    frame = P.decode(data)
                    reply = P.encode(
                        P.RESULT, (frame.fields[0], frame.fields[1], b""), 20_000, 13_000
                    )
                    loop.call_soon(worker.data_received, reply)

                worker.send = answer  # type: ignore[method-assign]
        call = lambda: engine.invoke("noop", EVENT)  # noqa: E731
        await callers(CALLERS, 2000, call)
        clock = time.perf_counter if fake else time.process_time
        t0 = clock()
        await callers(CALLERS, N, call)
        return (clock() - t0) / N * 1e6


async def _floor() -> float:
    floor = await EchoFloor(2).start()
    free: asyncio.Queue[Any] = asyncio.Queue()
    for client in floor.clients:
        free.put_nowait(client)

    async def call() -> None:
        client = await free.get()
        try:
            await client.roundtrip(EVENT)
        finally:
            free.put_nowait(client)

    await callers(CALLERS, 2000, call)
    t0 = time.process_time()
    await callers(CALLERS, N, call)
    cpu = (time.process_time() - t0) / N * 1e6
    await floor.close()
    return cpu


def _agent() -> float:
    from runtime.agent.worker import Agent

    root = str(FUNCTIONS / "noop")
    work = tempfile.mkdtemp()
    config = {
        "handler": "app.handler", "task_root": root, "environ": {}, "function_name": "f",
        "function_version": "$LATEST", "invoked_function_arn": "arn", "memory_mb": 128,
        "log_group_name": "/aws/lambda/f", "log_stream_name": "s", "log_path": f"{work}/log",
    }  # fmt: skip
    saved = os.dup(1), os.dup(2), os.getcwd(), list(sys.path)
    agent = Agent(config)
    agent.setup()  # points fds 1 and 2 at the log file: restored below
    agent.init()
    frame = P.decode(P.encode(P.INVOKE, (b"rid", EVENT, b""), 0))
    t0 = time.perf_counter()
    for _ in range(N):
        agent.invoke(frame)
    took = (time.perf_counter() - t0) / N * 1e6
    os.dup2(saved[0], 1)
    os.dup2(saved[1], 2)
    os.chdir(saved[2])
    sys.path[:] = saved[3]
    return took


def main() -> None:
    rows = [
        ("engine only (fake workers), wall µs per call", run(_engine(fake=True))),
        ("engine CPU µs per call, P2 load", run(_engine(fake=False))),
        ("floor client CPU µs per call, P2 load", run(_floor())),
        ("agent µs per no-op invocation", _agent()),
    ]
    for label, value in rows:
        print(f"{label:<48} {value:6.1f}")


if __name__ == "__main__":
    main()
