"""Background tasks an object owns until it closes.

    tasks = TaskSet()
    tasks.create_task(work())      kept until it ends (then dropped by its done-callback)
    await tasks.wait(5.0)          let what runs finish, for up to 5 s
    await tasks.close()            cancel what is left and await it

A task's exception is not retrieved here: a task that fails while nobody awaits it is reported
by the loop as any forgotten task is, and owners that must log instead wrap the coroutine.  The
tasks still pending at ``join`` or ``close`` are awaited with their exceptions swallowed, since
whatever they raise then is the cancellation or the shutdown they are part of.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine, Iterator
from typing import Any, TypeVar

T = TypeVar("T")


class TaskSet:
    """The set of an owner's running background tasks.

    ``on_done`` is called with each task once it has ended and left the set.
    """

    def __init__(self, on_done: Callable[[asyncio.Task[Any]], None] | None = None) -> None:
        self._tasks: set[asyncio.Task[Any]] = set()
        self._on_done = on_done

    def create_task(self, coro: Coroutine[Any, Any, T]) -> asyncio.Task[T]:
        """Run ``coro`` in the background, as a task of the running loop."""
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._done)
        return task

    def _done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if self._on_done is not None:
            self._on_done(task)

    def __len__(self) -> int:
        return len(self._tasks)

    def __bool__(self) -> bool:
        return bool(self._tasks)

    def __iter__(self) -> Iterator[asyncio.Task[Any]]:
        """The running tasks, as a snapshot (tasks may end while it is iterated)."""
        return iter(list(self._tasks))

    def __repr__(self) -> str:
        return f"<TaskSet running={len(self._tasks)}>"

    async def wait(self, timeout: float) -> None:
        """Wait up to ``timeout`` seconds for the tasks running now to end (none is
        cancelled; tasks they start meanwhile are not waited for)."""
        if self._tasks:
            await asyncio.wait(list(self._tasks), timeout=timeout)

    async def drain(self, timeout: float) -> None:
        """Wait up to ``timeout`` seconds until the set is empty, tasks started meanwhile
        included (none is cancelled)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while self._tasks and loop.time() < deadline:
            await asyncio.wait(list(self._tasks), timeout=deadline - loop.time())

    def cancel(self) -> list[asyncio.Task[Any]]:
        """Cancel every running task; returns them (they end at their next await)."""
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        return tasks

    async def join(self) -> None:
        """Await every running task to its end, their exceptions swallowed."""
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)

    async def close(self) -> None:
        """Cancel every running task and await them all."""
        self.cancel()
        await self.join()
