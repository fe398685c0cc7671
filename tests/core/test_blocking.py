"""BlockingEngine: the engine on a background thread, driven from plain synchronous code."""

from __future__ import annotations

import gc
import threading
import time
import warnings
from typing import Any

import pytest
from helpers import FUNCTIONS, wait_gone

from runtime import BlockingEngine, FunctionConfig, PoolConfig, ResourceNotFoundException
from runtime.errors import TooManyRequestsException

BASIC = FUNCTIONS / "basic"


def config(name: str, handler: str, **changes: Any) -> FunctionConfig:
    return FunctionConfig(name=name, handler=f"app.{handler}", code=str(BASIC), **changes)


def test_the_whole_lifecycle_from_synchronous_code() -> None:
    with BlockingEngine() as engine:
        assert threading.current_thread() is threading.main_thread()
        engine.register(config("f", "whoami", environment={"VER": "1"}))
        assert [c.name for c in engine.functions()] == ["f"]

        first = engine.invoke("f")
        second = engine.invoke("f", b"{}")
        assert first.function_error is None
        assert first.report is not None
        assert second.report is not None
        assert first.report.cold
        assert not second.report.cold
        assert first.json()["pid"] == second.json()["pid"]
        assert first.json()["version"] == "1"

        stats = engine.stats()
        assert stats["f"]["invocations"] == 2
        assert stats["f"]["cold_starts"] == 1
        logs = engine.logs("f")
        assert f"START RequestId: {first.request_id} Version: $LATEST" in logs
        assert f"REPORT RequestId: {second.request_id}\t" in logs

        updated = engine.update("f", environment={"VER": "2"})
        assert updated.environment == {"VER": "2"}
        third = engine.invoke("f")
        assert third.report is not None
        assert third.report.cold
        assert third.json()["version"] == "2"
        assert third.json()["pid"] != first.json()["pid"]
        wait_gone(first.json()["pid"])

        engine.set_concurrency("f", reserved=0)
        with pytest.raises(TooManyRequestsException):
            engine.invoke("f")
        engine.set_concurrency("f", reserved=None)
        assert engine.invoke("f").function_error is None

        accepted = engine.invoke("f", {}, "Event")
        assert accepted.status_code == 202

        engine.unregister("f")
        with pytest.raises(ResourceNotFoundException):
            engine.invoke("f")
        assert engine.functions() == []
        wait_gone(third.json()["pid"])


def test_close_stops_everything_and_is_idempotent() -> None:
    engine = BlockingEngine(PoolConfig(max_queue=2))
    engine.register(config("f", "whoami", provisioned_concurrency=2))
    engine.register(config("g", "whoami", start="spawn"))
    pids = [engine.invoke("f").json()["pid"], engine.invoke("g").json()["pid"]]
    thread = engine._thread
    engine.close()
    assert not thread.is_alive()
    for pid in pids:
        wait_gone(pid)
    engine.close()  # a second close does nothing
    engine.close()
    assert not thread.is_alive()


def test_close_fails_calls_in_flight() -> None:
    engine = BlockingEngine()
    engine.register(config("slow", "sleep"))
    outcome: list[BaseException | object] = []

    def call() -> None:
        try:
            outcome.append(engine.invoke("slow", {"s": 10}))
        except BaseException as exc:
            outcome.append(exc)

    caller = threading.Thread(target=call)
    caller.start()
    deadline = time.monotonic() + 5
    while engine.stats()["slow"]["environments"]["busy"] == 0:
        assert time.monotonic() < deadline
        time.sleep(0.01)
    t0 = time.monotonic()
    engine.close()
    caller.join(5)
    assert time.monotonic() - t0 < 5
    assert not caller.is_alive()
    assert len(outcome) == 1
    assert "shutting down" in str(outcome[0])


def refuse_from_engine_thread(engine: BlockingEngine) -> list[BaseException]:
    """Make a blocking call from a log listener, which runs on the engine's own thread."""
    refused: list[BaseException] = []

    def listener(name: str, text: str) -> None:
        # a blocking call here would wait for the very thread it blocks: a deadlock
        try:
            engine.stats()
        except RuntimeError as exc:
            refused.append(exc)

    engine.engine.log_listeners.append(listener)
    result = engine.invoke("f", {"x": 1})
    engine.engine.log_listeners.remove(listener)
    assert result.json() == {"x": 1}
    return refused


def unawaited_coroutine_warnings(refused: list[BaseException]) -> list[str]:
    """Drop the refused calls and collect: what a refused call left behind, as warnings."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        refused.clear()
        gc.collect()
    return [str(w.message) for w in caught if "was never awaited" in str(w.message)]


def test_calls_from_the_engine_thread_are_refused() -> None:
    with BlockingEngine() as engine:
        engine.register(config("f", "echo"))
        refused = refuse_from_engine_thread(engine)
        assert len(refused) == 1
        assert "engine's own thread" in str(refused[0])
        # the engine is still usable from this thread
        assert engine.stats()["f"]["invocations"] == 1
        unawaited_coroutine_warnings(refused)  # known leak: see the next test


def test_a_refused_call_leaves_no_unawaited_coroutine() -> None:
    with BlockingEngine() as engine:
        engine.register(config("f", "echo"))
        refused = refuse_from_engine_thread(engine)
        assert len(refused) == 1
        assert unawaited_coroutine_warnings(refused) == []
