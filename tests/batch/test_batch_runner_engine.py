"""What the runner needs of the Engine: ``spill=False`` (batch functions run there), a caller's
request id, and ``signal_call`` to reach the worker running a call."""

from __future__ import annotations

import asyncio
import signal
from typing import Any

import orjson
from service_support import basic

from runtime import Engine


def test_an_engine_that_does_not_spill_runs_batch_functions(arun: Any) -> None:
    async def main() -> None:
        async with Engine(spill=False) as engine:
            await engine.register(basic("long", timeout_s=3600))
            result = await engine.invoke("long", {"n": 1})
            assert (result.status_code, result.json(), result.job) == (200, {"n": 1}, None)

    arun(main())


def test_a_call_can_carry_its_request_id(arun: Any) -> None:
    async def main() -> None:
        async with Engine() as engine:
            await engine.register(basic("f"))
            result = await engine.invoke("f", {}, request_id="job-1-attempt-1")
            assert result.request_id == "job-1-attempt-1"
            assert result.log.startswith("START RequestId: job-1-attempt-1 Version: $LATEST\n")

    arun(main())


def test_signal_call_reaches_the_worker_running_the_call(arun: Any) -> None:
    async def main() -> None:
        async with Engine() as engine:
            await engine.register(basic("s", "sleep", timeout_s=30))
            assert not engine.signal_call("nobody", signal.SIGTERM)
            call = asyncio.ensure_future(engine.invoke("s", {"s": 20}, request_id="rid"))
            loop = asyncio.get_running_loop()
            deadline = loop.time() + 5
            while not engine.signal_call("rid", 0):  # signal 0: is it running yet?
                assert loop.time() < deadline
                await asyncio.sleep(0.01)
            assert engine.signal_call("rid", signal.SIGTERM)
            result = await call
            error = orjson.loads(result.payload)
            assert error["errorType"] == "Runtime.ExitError"
            assert error["errorMessage"].endswith("Runtime exited with error: signal: terminated")
            assert not engine.signal_call("rid", signal.SIGKILL)  # nothing runs it any more
            again = await engine.invoke("s", {"s": 0})
            assert again.function_error is None  # the environment was replaced

    arun(main())
