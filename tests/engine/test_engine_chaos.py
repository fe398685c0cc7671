"""Every accepted call is answered once, whatever dies and whenever; a call whose caller gave
up before it was dispatched never runs.

The worker and template processes are real; faults are real signals (SIGKILL, SIGSTOP). The
chaos test runs on both scheduler cores (the ``Scheduler`` fixture).
"""

from __future__ import annotations

import asyncio
import collections
import os
import random
import signal
import time
from pathlib import Path
from typing import Any, Literal

import pytest
from helpers import FUNCTIONS, eventually

from runtime import Engine, FunctionConfig, PoolConfig
from runtime.errors import WarmstartError

FAULTS = str(FUNCTIONS / "faults")
MARKER = str(FUNCTIONS / "marker")
ERROR_TYPES = {"Runtime.ExitError", "Sandbox.Timedout"}


def template_pid(engine: Engine, name: str) -> int:
    fn = engine._functions[name]
    proc = fn.templates[fn.generation].proc
    assert proc is not None
    return proc.pid


def is_zombie(pid: int) -> bool:
    """Dead but not reaped (its parent, a stopped template, cannot wait for it)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] == "Z"
    except OSError:
        return True


def ran(mark: str) -> bool:
    """The marker handler left this mark: it ran."""
    return os.path.exists(mark)


def the_env(engine: Engine) -> Any:
    (env,) = engine._envs.values()
    return env


# -- a worker dead before the engine heard its exit ----------------------------------------


def test_a_call_after_a_worker_death_the_template_did_not_report_is_answered(arun: Any) -> None:
    """The template is stopped, so the dead worker's exit report cannot come; the EOF on its
    socket is enough for the engine to stop routing calls to it."""

    async def main() -> None:
        async with Engine() as engine:
            await engine.register(
                FunctionConfig(name="f", handler="app.main", code=FAULTS, timeout_s=10)
            )
            first = await engine.invoke("f", {"do": "ok"})
            worker_pid = first.json()["pid"]
            template = template_pid(engine, "f")
            env = the_env(engine)
            os.kill(template, signal.SIGSTOP)
            try:
                os.kill(worker_pid, signal.SIGKILL)
                await eventually(lambda: is_zombie(worker_pid) and env.worker.transport is None)
                call = asyncio.ensure_future(engine.invoke("f", {"do": "ok"}))
                # re-placed as a cold start (which the stopped template holds up), not sent
                # to the dead worker
                await eventually(lambda: engine.stats()["f"]["environments"]["starting"] == 1)
                assert not call.done()
            finally:
                os.kill(template, signal.SIGCONT)
            result = await asyncio.wait_for(call, 8.0)
            assert result.function_error is None
            assert result.report is not None
            assert result.report.cold
            assert result.json()["pid"] != worker_pid
            assert not engine._calls
            again = await engine.invoke("f", {"do": "ok"})
            assert again.report is not None
            assert not again.report.cold

    arun(main())


def test_a_call_on_a_worker_that_dies_unreported_is_answered_once(arun: Any) -> None:
    """The worker dies mid-call while its template is stopped: the call is answered (exit
    code unknown: killed) within the bound, the next one runs on a new worker."""

    async def main() -> None:
        async with Engine() as engine:
            await engine.register(
                FunctionConfig(name="f", handler="app.main", code=FAULTS, timeout_s=10)
            )
            await engine.invoke("f", {"do": "ok"})
            template = template_pid(engine, "f")
            call = asyncio.ensure_future(
                engine.invoke("f", {"do": "work_then_exit", "seconds": 30})
            )
            env = the_env(engine)
            await eventually(lambda: env.call is not None)
            os.kill(template, signal.SIGSTOP)
            try:
                t0 = time.monotonic()
                os.kill(env.worker.pid, signal.SIGKILL)
                result = await asyncio.wait_for(call, 5.0)
                assert time.monotonic() - t0 < 4.0
            finally:
                os.kill(template, signal.SIGCONT)
            assert result.json()["errorType"] == "Runtime.ExitError"
            assert "signal: killed" in result.json()["errorMessage"]
            assert not engine._calls
            after = await engine.invoke("f", {"do": "ok"})
            assert after.function_error is None
            assert after.report is not None
            assert after.report.cold

    arun(main())


# -- withdrawn calls -----------------------------------------------------------------------


def test_a_waiter_whose_caller_gave_up_never_runs(arun: Any, tmp_path: Path) -> None:
    async def main() -> None:
        pool = PoolConfig(max_queue=4, queue_timeout_s=10)
        async with Engine(pool) as engine:
            await engine.register(
                FunctionConfig(name="m", handler="app.handler", code=MARKER, reserved_concurrency=1)
            )
            await engine.invoke("m", {})
            marks = [str(tmp_path / f"mark-{i}") for i in range(3)]
            first = asyncio.ensure_future(engine.invoke("m", {"mark": marks[0], "seconds": 0.5}))
            await eventually(lambda: os.path.exists(marks[0]))
            with pytest.raises(asyncio.TimeoutError):
                await asyncio.wait_for(engine.invoke("m", {"mark": marks[1]}), 0.1)
            assert engine.stats()["m"]["waiting"] == 0
            third = asyncio.ensure_future(engine.invoke("m", {"mark": marks[2]}))
            await first
            await third  # served first in line: the withdrawn call did not run before it
            assert ran(marks[2])
            assert not ran(marks[1])
            assert not engine._calls
            assert engine.stats()["m"]["invocations"] == 3

    arun(main())


@pytest.mark.parametrize("start", ["fork", "spawn"])
def test_a_call_withdrawn_during_its_cold_start_leaves_a_warm_environment(
    arun: Any, tmp_path: Path, start: Literal["fork", "spawn"]
) -> None:
    async def main() -> None:
        async with Engine() as engine:
            await engine.register(
                FunctionConfig(name="m", handler="app.handler", code=MARKER, start=start)
            )
            mark = str(tmp_path / "mark")
            call = asyncio.ensure_future(engine.invoke("m", {"mark": mark}))
            for _ in range(100):  # a fork takes milliseconds: catch the start at once
                if engine.stats()["m"]["environments"]["starting"] == 1:
                    break
                await asyncio.sleep(0)
            assert engine.stats()["m"]["environments"]["starting"] == 1
            call.cancel()
            with pytest.raises(asyncio.CancelledError):
                await call
            await eventually(lambda: engine.stats()["m"]["environments"]["ready"] == 1, 10.0)
            assert not ran(mark)
            assert not engine._calls
            after = await engine.invoke("m", {})
            assert after.report is not None
            assert after.report.cold is False  # the start went on, for the next caller
            assert engine.stats()["m"]["invocations"] == 1

    arun(main())


def test_a_dispatched_call_whose_caller_gave_up_runs_to_its_end(arun: Any, tmp_path: Path) -> None:
    async def main() -> None:
        async with Engine() as engine:
            await engine.register(FunctionConfig(name="m", handler="app.handler", code=MARKER))
            await engine.invoke("m", {})
            mark = str(tmp_path / "mark")
            call = asyncio.ensure_future(engine.invoke("m", {"mark": mark, "seconds": 0.3}))
            await eventually(lambda: os.path.exists(mark))
            call.cancel()
            await eventually(lambda: engine.stats()["m"]["invocations"] == 2)
            assert not engine._calls
            assert engine.stats()["m"]["errors"] == 0
            after = await engine.invoke("m", {})
            assert after.report is not None
            assert after.report.cold is False  # the environment stayed warm

    arun(main())


# -- chaos ---------------------------------------------------------------------------------


def _victims(engine: Engine, rng: random.Random) -> list[int]:
    workers = [env.worker.pid for env in engine._envs.values() if env.worker and env.worker.pid]
    templates = [
        t.proc.pid
        for fn in engine._functions.values()
        for t in fn.templates.values()
        if t.proc is not None and not t.proc.exited.done()
    ]
    if templates and rng.random() < 0.15:
        return [rng.choice(templates)]
    return [rng.choice(workers)] if workers else []


async def _killer(engine: Engine, until: float, rng: random.Random) -> int:
    kills = 0
    while time.monotonic() < until:
        await asyncio.sleep(rng.uniform(0.002, 0.03))
        for pid in _victims(engine, rng):
            try:
                os.kill(pid, signal.SIGKILL)
                kills += 1
            except ProcessLookupError:
                pass
    return kills


async def _caller(
    engine: Engine, name: str, until: float, bound: float, seen: collections.Counter[str]
) -> None:
    while time.monotonic() < until:
        t0 = time.monotonic()
        try:
            result = await engine.invoke(name, {"do": "ok"})
        except WarmstartError as exc:
            seen[type(exc).__name__] += 1
        else:
            if result.function_error:
                body = result.json()
                assert body["errorType"] in ERROR_TYPES, body
                assert body["errorMessage"], body
                seen[body["errorType"]] += 1
            else:
                assert "pid" in result.json()
                seen["ok"] += 1
        assert time.monotonic() - t0 < bound, "a call was answered late"


@pytest.mark.parametrize("seed", [1, 2])
def test_chaos_every_call_answered_once(arun: Any, Scheduler: Any, seed: int) -> None:
    """Concurrent calls on two functions (fork and spawn) while workers and templates are
    SIGKILLed at random: each call gets one well-formed answer in time, nothing is held
    afterwards, and then the engine serves as if nothing happened."""
    rng = random.Random(seed)
    timeout_s = 3

    async def main() -> None:
        async with Engine(PoolConfig(), scheduler=Scheduler) as engine:
            answered: collections.Counter[int] = collections.Counter()
            finish = engine._finish

            def counted_finish(call: Any, *args: Any, **kwargs: Any) -> None:
                answered[call.req] += 1
                finish(call, *args, **kwargs)

            engine._finish = counted_finish  # type: ignore[method-assign]
            start: Literal["fork", "spawn"]
            for name, start in (("fork", "fork"), ("spawn", "spawn")):
                await engine.register(
                    FunctionConfig(
                        name=name, handler="app.main", code=FAULTS, start=start, timeout_s=timeout_s
                    )
                )
            seen: collections.Counter[str] = collections.Counter()
            until = time.monotonic() + 3.0
            bound = timeout_s + 5.0  # its timeout, plus a cold start and the exit-code wait
            callers = [
                _caller(engine, name, until, bound, seen)
                for name in ("fork", "spawn")
                for _ in range(4)
            ]
            kills = await asyncio.gather(_killer(engine, until, rng), *callers)
            assert kills[0] is not None
            assert kills[0] > 10, kills[0]
            assert seen["ok"] > 0, seen
            assert seen["Runtime.ExitError"] > 0, seen
            assert max(answered.values()) == 1, "a call was answered twice"
            await eventually(lambda: not engine._calls, 5.0)
            for name in ("fork", "spawn"):
                stats = engine.stats()[name]

                def idle(n: str = name) -> bool:
                    return bool(engine.stats()[n]["environments"]["busy"] == 0)

                await eventually(idle)
                assert stats["waiting"] == 0
            for i in range(100):
                result = await engine.invoke(("fork", "spawn")[i % 2], {"do": "ok"})
                assert result.function_error is None, result.payload

    arun(main(), timeout=90)
