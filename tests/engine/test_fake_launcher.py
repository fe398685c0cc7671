"""The real engine driven through ``runtime.testing.FakeLauncher``: no process, no container.

Each test runs a real ``Engine`` (its scheduler core, dispatch, crash, queue and stop paths)
whose ``process`` backend is a FakeLauncher, on a fresh loop with a hard upper bound.  Cold
starts are held and released, calls are held on an ``asyncio.Event``; nothing sleeps.
"""

from __future__ import annotations

import asyncio
import signal
import time
from collections.abc import Coroutine
from pathlib import Path
from typing import Any, TypeVar

import pytest

from runtime import (
    Engine,
    FunctionConfig,
    InvalidParameterValueException,
    PoolConfig,
    ServiceException,
)
from runtime.agent.worker import LambdaContext
from runtime.loop import run as loop_run
from runtime.pools.container import ContainerLauncher
from runtime.pools.process import ProcessLauncher
from runtime.testing import Crash, FakeLauncher, Hang

T = TypeVar("T")


def run(coro: Coroutine[Any, Any, T], timeout: float = 10.0) -> T:
    """Run ``coro`` on a fresh loop; an exception the loop saw unhandled fails the test."""
    errors: list[dict[str, Any]] = []

    async def main() -> T:
        asyncio.get_running_loop().set_exception_handler(lambda _loop, ctx: errors.append(ctx))
        return await asyncio.wait_for(coro, timeout)

    result = loop_run(main())
    assert not errors, errors
    return result


@pytest.fixture
def pool(tmp_path: Path) -> PoolConfig:
    return PoolConfig(work_dir=str(tmp_path / "work"), max_queue=10)


@pytest.fixture
def code(tmp_path: Path) -> str:
    folder = tmp_path / "code"
    folder.mkdir()
    return str(folder)


def config(name: str, code: str, **changes: Any) -> FunctionConfig:
    return FunctionConfig(name=name, handler="app.handler", code=code, **changes)


def exit_error(rid: str, how: str) -> dict[str, str]:
    message = f"RequestId: {rid} Error: Runtime exited with error: {how}"
    return {"errorMessage": message, "errorType": "Runtime.ExitError"}


# -- results ------------------------------------------------------------------------------


def test_a_warm_invoke_returns_the_handlers_result(pool: PoolConfig, code: str) -> None:
    def handler(event: Any, context: LambdaContext) -> Any:
        return {
            "event": event,
            "name": context.function_name,
            "rid": context.aws_request_id,
            "arn": context.invoked_function_arn,
            "memory": context.memory_limit_in_mb,
            "left_ms": context.get_remaining_time_in_millis(),
        }

    fake = FakeLauncher(handler)

    async def main() -> None:
        async with Engine(pool, launchers={"process": fake}) as engine:
            await engine.register(config("f", code, memory_mb=256))
            await engine.invoke("f", {"warm": "up"})
            result = await engine.invoke("f", {"x": 1})

            assert result.function_error is None
            assert result.json() == {
                "event": {"x": 1},
                "name": "f",
                "rid": result.request_id,
                "arn": "arn:aws:lambda:us-east-1:000000000000:function:f",
                "memory": "256",
                "left_ms": result.json()["left_ms"],
            }
            assert 0 < result.json()["left_ms"] <= 3000
            assert result.report is not None
            assert result.report.cold is False
            assert [w.events for w in fake.started] == [[{"warm": "up"}, {"x": 1}]]

    run(main())


def test_the_invoked_arn_travels_only_when_it_is_not_inits(
    pool: PoolConfig, code: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An alias's ARN reaches the context through the INVOKE frame's extra JSON; the ARN of
    INIT (the function's own, as an unqualified call names it) adds nothing to the frame."""
    extras: list[bytes] = []

    class Recording(LambdaContext):
        __slots__ = ()

        def __init__(self, fixed: Any, request_id: str, deadline_ms: int, extra: bytes) -> None:
            extras.append(extra)
            super().__init__(fixed, request_id, deadline_ms, extra)

    monkeypatch.setattr("runtime.testing.LambdaContext", Recording)
    fake = FakeLauncher(lambda event, context: context.invoked_function_arn)
    arn = "arn:aws:lambda:us-east-1:000000000000:function:f"

    async def main() -> None:
        async with Engine(pool, launchers={"process": fake}) as engine:
            await engine.register(config("f", code))
            seen = [
                (await engine.invoke("f", invoked_arn=invoked)).json()
                for invoked in (None, arn, f"{arn}:live", f"{arn}:$LATEST", None)
            ]
            assert seen == [arn, arn, f"{arn}:live", f"{arn}:$LATEST", arn]
            assert [bool(extra) for extra in extras] == [False, False, True, True, False]

    run(main())


def test_the_cold_start_happens_once_then_the_worker_is_reused(pool: PoolConfig, code: str) -> None:
    fake = FakeLauncher(hold_starts=True)

    async def main() -> None:
        async with Engine(pool, launchers={"process": fake}) as engine:
            await engine.register(config("f", code))
            first = asyncio.ensure_future(engine.invoke("f", {"n": 1}))
            await fake.wait_until(lambda: fake.held == 1)
            assert not first.done()
            assert engine.stats()["f"]["environments"]["starting"] == 1

            fake.release()
            cold = await first
            warm = [await engine.invoke("f", {"n": n}) for n in (2, 3)]

            assert cold.report is not None
            assert cold.report.cold is True
            assert [r.report.cold for r in warm if r.report] == [False, False]
            assert [r.json() for r in warm] == [{"n": 2}, {"n": 3}]
            assert len(fake.started) == 1
            assert fake.started[0].events == [{"n": 1}, {"n": 2}, {"n": 3}]
            assert engine.stats()["f"]["cold_starts"] == 1
            assert fake.prepared == [engine.get_function("f")]
            assert fake.warmed == [("f", 0)]

    run(main())


def test_a_handler_error_is_a_function_error(pool: PoolConfig, code: str) -> None:
    def handler(event: Any, context: LambdaContext) -> Any:
        if event.get("fail"):
            raise ValueError("no such order")
        return "ok"

    fake = FakeLauncher(handler)

    async def main() -> None:
        async with Engine(pool, launchers={"process": fake}) as engine:
            await engine.register(config("f", code))
            failed = await engine.invoke("f", {"fail": True})
            after = await engine.invoke("f", {})

            assert failed.function_error == "Unhandled"
            doc = failed.json()
            assert (doc["errorType"], doc["errorMessage"]) == ("ValueError", "no such order")
            assert doc["requestId"] == failed.request_id
            assert any("raise ValueError" in line for line in doc["stackTrace"])
            assert "[ERROR] ValueError: no such order" in failed.log
            # the worker survives its handler's exception, as on Lambda
            assert after.json() == "ok"
            assert len(fake.started) == 1
            assert engine.stats()["f"]["errors"] == 1

    run(main())


@pytest.mark.parametrize(
    ("code_", "how"),
    [(1, "exit status 1"), (-signal.SIGSEGV, "signal: segmentation fault")],
    ids=["exit", "segfault"],
)
def test_a_crash_mid_call_answers_the_call_exactly_once(
    pool: PoolConfig, code: str, code_: int, how: str
) -> None:
    def handler(event: Any, context: LambdaContext) -> Any:
        if event.get("crash"):
            raise Crash(code_)
        return "ok"

    fake = FakeLauncher(handler)

    async def main() -> None:
        async with Engine(pool, launchers={"process": fake}) as engine:
            await engine.register(config("f", code))
            crashed = await engine.invoke("f", {"crash": True})
            stats = engine.stats()["f"]
            logs = engine.logs("f")
            after = await engine.invoke("f", {})

            assert crashed.function_error == "Unhandled"
            assert crashed.json() == exit_error(crashed.request_id, how)
            assert (stats["invocations"], stats["errors"]) == (1, 1)
            assert logs.count("START RequestId") == 1
            assert [(w.ended, w.exit_code) for w in fake.started[:1]] == [("crashed", code_)]
            # the dead worker is not reused: the next call starts a new one
            assert after.json() == "ok"
            assert len(fake.started) == 2
            assert engine.stats()["f"]["invocations"] == 2

    run(main())


def test_out_of_memory_answers_and_the_worker_dies(pool: PoolConfig, code: str) -> None:
    def handler(event: Any, context: LambdaContext) -> Any:
        raise MemoryError

    fake = FakeLauncher(handler)

    async def main() -> None:
        async with Engine(pool, launchers={"process": fake}) as engine:
            await engine.register(config("f", code))
            result = await engine.invoke("f")
            await fake.wait_until(lambda: not fake.live)

            assert result.function_error == "Unhandled"
            assert result.json()["errorType"] == "Runtime.OutOfMemory"
            assert [(w.ended, w.exit_code) for w in fake.started] == [("crashed", -signal.SIGKILL)]
            assert engine.stats()["f"]["invocations"] == 1

    run(main())


def test_an_init_error_fails_every_start_until_it_is_fixed(pool: PoolConfig, code: str) -> None:
    fake = FakeLauncher(init_errors={"f": KeyError("TABLE_NAME")})

    async def main() -> None:
        async with Engine(pool, launchers={"process": fake}) as engine:
            await engine.register(config("f", code))
            failed = [await engine.invoke("f", {}) for _ in range(2)]
            del fake.init_errors["f"]
            fixed = await engine.invoke("f", {"x": 1})

            for result in failed:
                assert result.function_error == "Unhandled"
                assert result.json()["errorType"] == "KeyError"
                assert result.json()["errorMessage"] == "'TABLE_NAME'"
            assert [w.ended for w in fake.started[:2]] == ["exited", "exited"]
            assert fixed.json() == {"x": 1}
            assert len(fake.started) == 3
            assert engine.stats()["f"]["cold_starts"] == 3

    run(main())


def test_a_crash_during_init_is_a_runtime_exit_error(pool: PoolConfig, code: str) -> None:
    fake = FakeLauncher(init_errors={"f": Crash(2)})

    async def main() -> None:
        async with Engine(pool, launchers={"process": fake}) as engine:
            await engine.register(config("f", code))
            result = await engine.invoke("f")

            assert result.function_error == "Unhandled"
            assert result.json() == {
                "errorMessage": f"RequestId: {result.request_id} Error: Runtime exited "
                "without providing a reason",
                "errorType": "Runtime.ExitError",
            }
            assert [(w.ended, w.exit_code) for w in fake.started] == [("crashed", 2)]

    run(main())


@pytest.mark.slow
def test_a_hung_call_times_out_and_its_worker_is_killed(pool: PoolConfig, code: str) -> None:
    def handler(event: Any, context: LambdaContext) -> Any:
        raise Hang

    fake = FakeLauncher(handler)

    async def main() -> None:
        async with Engine(pool, launchers={"process": fake}) as engine:
            await engine.register(config("f", code, timeout_s=1))
            t0 = time.monotonic()
            result = await engine.invoke("f")
            took = time.monotonic() - t0

            assert result.function_error == "Unhandled"
            assert result.json()["errorType"] == "Sandbox.Timedout"
            assert 1.0 <= took < 3.0
            assert [(w.ended, w.exit_code) for w in fake.started] == [("killed", -signal.SIGKILL)]

    run(main())


# -- capacity -----------------------------------------------------------------------------


def test_calls_beyond_capacity_queue_and_drain(pool: PoolConfig, code: str) -> None:
    gate = asyncio.Event()

    async def handler(event: Any, context: LambdaContext) -> Any:
        await gate.wait()
        return event

    fake = FakeLauncher(handler)

    def running() -> int:
        return sum(len(w.events) for w in fake.started)

    async def main() -> None:
        async with Engine(pool, launchers={"process": fake}) as engine:
            await engine.register(config("f", code, reserved_concurrency=2))
            calls = [asyncio.ensure_future(engine.invoke("f", {"n": n})) for n in range(5)]
            await fake.wait_until(lambda: running() == 2)
            stats = engine.stats()["f"]

            assert stats["environments"]["busy"] == 2
            assert stats["waiting"] == 3
            assert not any(call.done() for call in calls)

            gate.set()
            results = await asyncio.gather(*calls)

            assert [r.json() for r in results] == [{"n": n} for n in range(5)]
            assert len(fake.started) == 2
            assert running() == 5
            assert engine.stats()["f"]["waiting"] == 0

    run(main())


# -- lifecycle ----------------------------------------------------------------------------


def test_close_ends_every_fake_worker_before_closing_the_launcher(
    pool: PoolConfig, code: str
) -> None:
    gate = asyncio.Event()

    async def handler(event: Any, context: LambdaContext) -> Any:
        if event.get("hang"):
            raise Hang
        await gate.wait()
        return event

    fake = FakeLauncher(handler)

    async def main() -> None:
        engine = await Engine(pool, launchers={"process": fake}).start()
        await engine.register(config("f", code))
        await engine.register(config("g", code))
        pair = [asyncio.ensure_future(engine.invoke("f", {"n": n})) for n in range(2)]
        await fake.wait_until(lambda: len(fake.live) == 2)
        gate.set()
        await asyncio.gather(*pair)
        hung = asyncio.ensure_future(engine.invoke("g", {"hang": True}))
        await fake.wait_until(lambda: len(fake.live) == 3 and bool(fake.started[2].events))

        await engine.close()

        with pytest.raises(ServiceException, match="shutting down"):
            await hung
        assert fake.live == []
        assert [(w.function, w.ended, w.exit_code) for w in fake.started] == [
            ("f", "killed", -signal.SIGKILL),
            ("f", "killed", -signal.SIGKILL),
            ("g", "killed", -signal.SIGKILL),
        ]
        assert all(w.worker is not None and w.worker.exited.done() for w in fake.started)
        assert (fake.opened, fake.closed) == (1, 1)
        assert fake.history[-1] == ("close",)
        exits = [entry for entry in fake.history if entry[0] == "exit"]
        assert sorted(exits) == sorted(
            ("exit", w.function, w.env_id, -signal.SIGKILL) for w in fake.started
        )

    run(main())


def test_update_and_unregister_stop_and_retire_each_generation(pool: PoolConfig, code: str) -> None:
    fake = FakeLauncher()

    async def main() -> None:
        async with Engine(pool, launchers={"process": fake}) as engine:
            await engine.register(config("f", code))
            await engine.invoke("f")
            old = fake.started[0]
            await engine.update("f", memory_mb=256)
            await engine.invoke("f")
            await fake.wait_until(lambda: ("f", 0) in fake.retired)
            new = fake.started[1]

            assert (old.generation, new.generation) == (0, 1)
            assert fake.stopped == [old]
            assert (old.ended, old.exit_code) == ("exited", 0)
            assert fake.retired == [("f", 0)]

            await engine.unregister("f")
            await fake.wait_until(lambda: ("f", 1) in fake.retired)

            assert fake.stopped == [old, new]
            assert (new.ended, new.exit_code) == ("exited", 0)
            assert fake.retired == [("f", 0), ("f", 1)]

    run(main())


# -- which launcher -----------------------------------------------------------------------


def test_an_unknown_launcher_name_is_refused(pool: PoolConfig, code: str) -> None:
    with pytest.raises(InvalidParameterValueException, match="backend: 'fake' must be"):
        config("f", code, backend="fake")
    fake = FakeLauncher()

    async def main() -> None:
        async with Engine(pool, launchers={"process": fake}) as engine:
            with pytest.raises(
                InvalidParameterValueException,
                match="backend: 'container' has no launcher in this engine",
            ):
                await engine.register(config("c", code, backend="container", image="any"))
            assert engine.functions() == []
            assert fake.prepared == []

    run(main())


def test_an_engine_without_launchers_makes_the_registrys(pool: PoolConfig) -> None:
    async def main() -> None:
        async with Engine(pool) as engine:
            made = {name: type(launcher) for name, launcher in engine._launchers.items()}
            assert made == {"process": ProcessLauncher, "container": ContainerLauncher}

    run(main())
