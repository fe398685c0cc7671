"""The engine's backlog hook: Event invocations stored before 202, batch functions and timed-out
``spill_on_timeout`` calls submitted as jobs.  A recording backlog stands in for runtime.batch."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson
import pytest
from service_support import basic

from runtime import Engine
from runtime.errors import BatchUnavailableException


@dataclass
class Job:
    job_id: str


class Recorder:
    def __init__(self, fail: Exception | None = None) -> None:
        self.events: list[tuple[str, bytes, str]] = []
        self.spilled: list[tuple[str, bytes, str, str]] = []
        self.fail = fail

    async def put_event(self, function: str, payload: bytes, request_id: str) -> None:
        if self.fail is not None:
            raise self.fail
        self.events.append((function, payload, request_id))

    async def spill(self, function: str, payload: bytes, *, origin: str, request_id: str) -> Job:
        if self.fail is not None:
            raise self.fail
        self.spilled.append((function, payload, origin, request_id))
        return Job(f"job-{len(self.spilled)}")


def test_event_invocations_go_to_the_backlog_before_202(arun: Any) -> None:
    async def main() -> None:
        async with Engine() as engine:
            engine.backlog = backlog = Recorder()
            await engine.register(basic("f"))
            result = await engine.invoke("f", {"x": 1}, "Event")
            assert result.status_code == 202
            ((function, payload, rid),) = backlog.events
            assert (function, orjson.loads(payload)) == ("f", {"x": 1})
            assert len(rid) == 36
            assert engine.stats()["f"]["invocations"] == 0  # not run here

    arun(main())


def test_an_event_the_backlog_refuses_is_an_error_not_a_202(arun: Any) -> None:
    async def main() -> None:
        async with Engine() as engine:
            engine.backlog = Recorder(fail=OSError("disk full"))
            await engine.register(basic("f"))
            with pytest.raises(OSError, match="disk full"):
                await engine.invoke("f", {}, "Event")

    arun(main())


def test_a_batch_function_call_becomes_a_job(arun: Any) -> None:
    async def main() -> None:
        async with Engine() as engine:
            await engine.register(basic("long", timeout_s=3600))
            with pytest.raises(BatchUnavailableException):
                await engine.invoke("long", {"n": 1})
            engine.backlog = backlog = Recorder()
            result = await engine.invoke("long", {"n": 2})
            assert result.status_code == 202
            assert orjson.loads(result.payload) == {"jobId": "job-1"}
            assert result.job == Job("job-1")
            ((function, payload, origin, rid),) = backlog.spilled
            assert (function, orjson.loads(payload), origin) == ("long", {"n": 2}, "invoke")
            assert rid

    arun(main())


def test_a_timeout_is_resubmitted_once_when_asked(arun: Any) -> None:
    async def main() -> None:
        async with Engine() as engine:
            engine.backlog = backlog = Recorder()
            await engine.register(basic("t", "sleep", timeout_s=1, spill_on_timeout=True))
            await engine.register(basic("plain", "sleep", timeout_s=1))
            result = await engine.invoke("t", {"s": 5})
            assert orjson.loads(result.payload)["errorType"] == "Sandbox.Timedout"
            plain = await engine.invoke("plain", {"s": 5})
            assert orjson.loads(plain.payload)["errorType"] == "Sandbox.Timedout"
            await engine._drain_tasks(5.0)
            ((function, payload, origin, _),) = backlog.spilled
            assert (function, orjson.loads(payload), origin) == ("t", {"s": 5}, "spill_on_timeout")
            assert result.job == Job("job-1")
            assert plain.job is None

    arun(main(), timeout=30)
