"""TaskSet: background tasks kept until they end, cancelled and awaited at close."""

from __future__ import annotations

import asyncio
import gc
from typing import Any

import pytest

from runtime.tasks import TaskSet


async def _forever(started: list[str], name: str) -> None:
    started.append(name)
    await asyncio.Event().wait()


def _others(before: set[asyncio.Task[Any]]) -> set[asyncio.Task[Any]]:
    """The loop's tasks that were not there at ``before`` (the test's own excepted)."""
    return asyncio.all_tasks() - before - {asyncio.current_task()}


def test_a_task_leaves_the_set_when_it_ends(arun: Any) -> None:
    async def main() -> None:
        before = asyncio.all_tasks()
        ended: list[asyncio.Task[Any]] = []
        tasks = TaskSet(on_done=ended.append)
        task = tasks.create_task(asyncio.sleep(0, "x"))
        assert len(tasks) == 1
        assert list(tasks) == [task]
        assert repr(tasks) == "<TaskSet running=1>"
        assert await task == "x"
        await asyncio.sleep(0)  # the done-callback
        assert len(tasks) == 0
        assert not tasks
        assert ended == [task]
        assert _others(before) == set()

    arun(main())


def test_close_cancels_and_awaits_every_task(arun: Any) -> None:
    async def main() -> None:
        before = asyncio.all_tasks()
        started: list[str] = []
        tasks = TaskSet()
        first = tasks.create_task(_forever(started, "a"))
        second = tasks.create_task(_forever(started, "b"))
        await asyncio.sleep(0)
        assert started == ["a", "b"]
        await tasks.close()
        assert first.cancelled()
        assert second.cancelled()
        await asyncio.sleep(0)
        assert len(tasks) == 0
        assert _others(before) == set()

    arun(main())


def test_close_awaits_a_task_that_cleans_up_when_cancelled(arun: Any) -> None:
    async def main() -> None:
        before = asyncio.all_tasks()
        cleaned: list[str] = []

        async def stubborn() -> None:
            try:
                await asyncio.Event().wait()
            finally:
                await asyncio.sleep(0.01)
                cleaned.append("done")

        tasks = TaskSet()
        tasks.create_task(stubborn())
        await asyncio.sleep(0)
        await tasks.close()
        assert cleaned == ["done"]
        assert _others(before) == set()

    arun(main())


def test_close_swallows_what_pending_tasks_raise(arun: Any) -> None:
    async def main() -> None:
        before = asyncio.all_tasks()

        async def fails_when_cancelled() -> None:
            try:
                await asyncio.Event().wait()
            finally:
                raise RuntimeError("while closing")

        tasks = TaskSet()
        task = tasks.create_task(fails_when_cancelled())
        await asyncio.sleep(0)
        await tasks.close()
        assert isinstance(task.exception(), RuntimeError)
        assert _others(before) == set()

    arun(main())


def test_join_awaits_without_cancelling(arun: Any) -> None:
    async def main() -> None:
        tasks = TaskSet()
        task = tasks.create_task(asyncio.sleep(0.01, "slept"))
        failing = tasks.create_task(_raise(ValueError("no")))
        await tasks.join()
        assert task.result() == "slept"
        assert isinstance(failing.exception(), ValueError)

    arun(main())


async def _raise(exc: BaseException) -> None:
    await asyncio.sleep(0)
    raise exc


def test_an_unawaited_failure_reaches_the_loop_as_before() -> None:
    """A task that fails while nobody awaits it is reported by the loop's exception handler,
    as a forgotten ``ensure_future`` task is: the set keeps no exception to itself."""
    reported: list[dict[str, Any]] = []

    async def main() -> None:
        asyncio.get_running_loop().set_exception_handler(lambda _loop, ctx: reported.append(ctx))
        tasks = TaskSet()
        tasks.create_task(_raise(KeyError("lost")))
        await asyncio.sleep(0.01)
        assert len(tasks) == 0
        gc.collect()

    asyncio.run(main())
    gc.collect()
    assert [type(ctx.get("exception")) for ctx in reported] == [KeyError]
    assert "never retrieved" in reported[0]["message"]


def test_wait_returns_at_the_timeout_and_cancels_nothing(arun: Any) -> None:
    async def main() -> None:
        started: list[str] = []
        tasks = TaskSet()
        task = tasks.create_task(_forever(started, "a"))
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        await tasks.wait(0.05)
        assert 0.04 <= loop.time() - t0 < 1.0
        assert not task.done()
        assert len(tasks) == 1
        await tasks.close()

    arun(main())


def test_wait_is_not_held_by_tasks_started_meanwhile(arun: Any) -> None:
    async def main() -> None:
        started: list[str] = []
        tasks = TaskSet()
        later: list[asyncio.Task[Any]] = []

        async def starts_another() -> None:
            later.append(tasks.create_task(_forever(started, "later")))

        tasks.create_task(starts_another())
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        await tasks.wait(5.0)
        assert loop.time() - t0 < 1.0
        assert len(tasks) == 1
        assert not later[0].done()
        await tasks.close()
        assert later[0].cancelled()

    arun(main())


def test_drain_waits_for_tasks_started_meanwhile(arun: Any) -> None:
    async def main() -> None:
        tasks = TaskSet()
        order: list[str] = []

        async def first() -> None:
            await asyncio.sleep(0.01)
            order.append("first")
            tasks.create_task(second())

        async def second() -> None:
            await asyncio.sleep(0.01)
            order.append("second")

        tasks.create_task(first())
        await tasks.drain(5.0)
        assert order == ["first", "second"]
        assert len(tasks) == 0

    arun(main())


def test_drain_gives_up_at_its_timeout(arun: Any) -> None:
    async def main() -> None:
        started: list[str] = []
        tasks = TaskSet()
        task = tasks.create_task(_forever(started, "a"))
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        await tasks.drain(0.05)
        assert 0.04 <= loop.time() - t0 < 1.0
        assert not task.done()
        await tasks.close()
        assert task.cancelled()

    arun(main())


def test_cancel_returns_the_cancelled_tasks(arun: Any) -> None:
    async def main() -> None:
        started: list[str] = []
        tasks = TaskSet()
        task = tasks.create_task(_forever(started, "a"))
        await asyncio.sleep(0)
        assert tasks.cancel() == [task]
        with pytest.raises(asyncio.CancelledError):
            await task
        await asyncio.sleep(0)
        assert tasks.cancel() == []

    arun(main())


def test_an_empty_set_closes_at_once(arun: Any) -> None:
    async def main() -> None:
        tasks = TaskSet()
        await tasks.wait(5.0)
        await tasks.drain(5.0)
        await tasks.join()
        await tasks.close()
        assert len(tasks) == 0

    arun(main(), timeout=1.0)
