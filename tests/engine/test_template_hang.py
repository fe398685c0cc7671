"""A template whose module hangs at import (``start="fork"``, the default).

Lambda gives init a deadline: a hung init is killed, the call answers ``Sandbox.Timedout``
("Init timed out"), and the next call inits afresh.  Here the template's init is bounded the
same way: ``register`` (the warm-up) gives up on it at the init deadline and kills it, and so
does the last call's init deadline among the cold starts waiting on it; a template that is
merely slow, but done in time, is kept.

The code counts its hangs in a file (a pid a line): the first ``hangs`` imports block until a
gate file appears, which the hang tests never create.  The pure core's 10-second floor under
the init deadline is lowered (so is the warm-up's bound, which reads it); the Cython core's
is compiled in, so its call deadlines stay Lambda's 10 s.
"""

from __future__ import annotations

import asyncio
import importlib
import re
import time
from pathlib import Path
from typing import Any

import pytest
from helpers import eventually, pid_exists, report_of

from runtime import Engine, FunctionConfig, ServiceException, _scheduler_py
from runtime.result import InvokeResult
from runtime.scheduler import SchedulerPy

HANG = """
import os
import time

_PIDS = {pids!r}
_GATE = {gate!r}


def _hung_so_far():
    try:
        with open(_PIDS) as f:
            return len(f.read().split())
    except FileNotFoundError:
        return 0


if _hung_so_far() < {hangs}:
    with open(_PIDS, "a") as f:
        f.write(f"{{os.getpid()}}\\n")
    while not os.path.exists(_GATE):
        time.sleep(0.01)


def handler(event, context):
    return {{"pid": os.getpid(), "template": os.getppid(), "event": event}}
"""


class Code:
    """A code directory that hangs at import ``hangs`` times, and its bookkeeping files."""

    def __init__(self, root: Path, hangs: int) -> None:
        self.dir = root / "code"
        self.dir.mkdir()
        self.pids = root / "hung.pids"
        self.gate = root / "gate"
        text = HANG.format(pids=str(self.pids), gate=str(self.gate), hangs=hangs)
        (self.dir / "app.py").write_text(text)

    def hung(self) -> list[int]:
        """The pids of the imports that hung (or are hanging)."""
        if not self.pids.exists():
            return []
        return [int(pid) for pid in self.pids.read_text().split()]

    def config(self, timeout_s: int = 1) -> FunctionConfig:
        return FunctionConfig(
            name="hang", handler="app.handler", code=str(self.dir), timeout_s=timeout_s
        )


@pytest.fixture
def short_init(monkeypatch: pytest.MonkeyPatch) -> None:
    """Lambda's 10-second floor under the init deadline, lowered in the pure core (and so in
    the warm-up's bound): a 1-second function gets 1 second to initialize."""
    monkeypatch.setattr(_scheduler_py, "INIT_TIMEOUT_FLOOR", 0.2)


def init_deadline(scheduler: type[SchedulerPy], timeout_s: float) -> float:
    """The init deadline ``scheduler`` arms for a cold start of a ``timeout_s`` function."""
    floor: float = importlib.import_module(scheduler.__module__).INIT_TIMEOUT_FLOOR
    return max(floor, timeout_s)


def assert_init_timed_out(result: InvokeResult) -> None:
    assert result.function_error == "Unhandled"
    body = result.json()
    assert body["errorType"] == "Sandbox.Timedout"
    assert re.fullmatch(
        rf"\S+Z {result.request_id} Init timed out after 1\.00 seconds", body["errorMessage"]
    ), body


async def gone(pids: list[int]) -> None:
    """Every process in ``pids`` killed and reaped (a zombie still answers signal 0)."""
    await eventually(lambda: not any(pid_exists(pid) for pid in pids))


def test_register_gives_up_on_a_template_that_hangs_at_import(
    arun: Any, tmp_path: Path, Scheduler: type[SchedulerPy], short_init: None
) -> None:
    """register returns at the init deadline, the hung template is killed, and the first call
    inits a fresh one (the hang was once): it succeeds, cold."""
    code = Code(tmp_path, hangs=1)

    async def main() -> None:
        async with Engine(scheduler=Scheduler) as engine:
            t0 = time.monotonic()
            await engine.register(code.config())
            assert 0.9 < time.monotonic() - t0 < 3.0
            [hung] = code.hung()
            await gone([hung])
            assert engine.functions() == [code.config()]

            result = await engine.invoke("hang", {"n": 1})
            assert result.function_error is None, result.payload
            assert result.json()["event"] == {"n": 1}
            assert result.json()["template"] != hung
            assert report_of(result).cold
            assert engine.stats()["hang"]["cold_starts"] == 1

    arun(main())


def test_calls_waiting_on_a_hung_template_time_out_and_it_is_killed(
    arun: Any, tmp_path: Path, Scheduler: type[SchedulerPy], short_init: None
) -> None:
    """Two cold starts wait on one hung template: both calls answer the init timeout at
    their deadline, the template is killed once the last gives up, and the next call inits a
    fresh template and succeeds."""
    code = Code(tmp_path, hangs=2)  # the warm-up's template, then the calls'
    deadline = init_deadline(Scheduler, 1)

    async def main() -> None:
        async with Engine(scheduler=Scheduler) as engine:
            await engine.register(code.config())
            t0 = time.monotonic()
            first, second = await asyncio.gather(
                engine.invoke("hang", {"n": 1}), engine.invoke("hang", {"n": 2})
            )
            assert 0.9 * deadline < time.monotonic() - t0 < deadline + 2.0
            assert_init_timed_out(first)
            assert_init_timed_out(second)
            hung = code.hung()
            assert len(hung) == 2
            await gone(hung)

            again = await engine.invoke("hang", {"n": 3})
            assert again.function_error is None, again.payload
            assert again.json()["event"] == {"n": 3}
            assert again.json()["template"] not in hung
            assert report_of(again).cold
            assert engine.stats()["hang"]["cold_starts"] == 3
            warm = await engine.invoke("hang", {"n": 4})
            assert warm.json()["pid"] == again.json()["pid"]

    arun(main(), timeout=deadline + 20.0)


def test_a_slow_template_that_inits_in_time_is_kept(
    arun: Any, tmp_path: Path, Scheduler: type[SchedulerPy], short_init: None
) -> None:
    """An import that takes a while but ends within the deadline: register and a call made
    meanwhile both wait for the one template, which then serves the call."""
    code = Code(tmp_path, hangs=1)

    async def main() -> None:
        async with Engine(scheduler=Scheduler) as engine:
            registering = asyncio.ensure_future(engine.register(code.config(timeout_s=3)))
            await eventually(lambda: len(code.hung()) == 1)
            [slow] = code.hung()
            calling = asyncio.ensure_future(engine.invoke("hang", {"n": 1}))
            await eventually(lambda: engine.stats()["hang"]["environments"]["starting"] == 1)
            code.gate.touch()
            await registering
            result = await calling
            assert result.function_error is None, result.payload
            assert result.json()["template"] == slow
            assert pid_exists(slow)
            assert engine.stats()["hang"]["cold_starts"] == 1

    arun(main())


def test_update_while_a_call_waits_on_a_hung_template(
    arun: Any, tmp_path: Path, Scheduler: type[SchedulerPy], short_init: None
) -> None:
    """A new generation gets a template of its own at once; the call of the old one still
    answers the init timeout, its template is killed, and later calls run the new one."""
    code = Code(tmp_path, hangs=2)
    deadline = init_deadline(Scheduler, 1)

    async def main() -> None:
        async with Engine(scheduler=Scheduler) as engine:
            await engine.register(code.config())
            calling = asyncio.ensure_future(engine.invoke("hang", {"n": 1}))
            await eventually(lambda: len(code.hung()) == 2)
            t0 = time.monotonic()
            await engine.update("hang", environment={"GENERATION": "1"})
            assert time.monotonic() - t0 < 0.9 * deadline  # not held by the hung template
            assert_init_timed_out(await calling)
            hung = code.hung()
            await gone(hung)

            result = await engine.invoke("hang", {"n": 2})
            assert result.function_error is None, result.payload
            assert result.json()["template"] not in hung
            assert engine.stats()["hang"]["generation"] == 1

    arun(main(), timeout=deadline + 20.0)


def test_close_kills_a_hung_template_at_once(
    arun: Any, tmp_path: Path, Scheduler: type[SchedulerPy], short_init: None
) -> None:
    """Closing the engine while register and a call wait on a hung template (their deadlines
    far off) refuses the call, ends the warm-up, and kills the template without waiting for
    it to exit on its own."""
    code = Code(tmp_path, hangs=1)

    async def main() -> None:
        engine = await Engine(scheduler=Scheduler).start()
        try:
            registering = asyncio.ensure_future(engine.register(code.config(timeout_s=30)))
            await eventually(lambda: len(code.hung()) == 1)
            calling = asyncio.ensure_future(engine.invoke("hang", {"n": 1}))
            await eventually(lambda: engine.stats()["hang"]["environments"]["starting"] == 1)
            t0 = time.monotonic()
            await engine.close()
            assert time.monotonic() - t0 < 2.0
            await registering
            with pytest.raises(ServiceException, match="shutting down"):
                await calling
            await gone(code.hung())
        finally:
            await engine.close()

    arun(main())
