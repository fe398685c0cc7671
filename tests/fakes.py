"""The fakes the tests share: a clock moved by hand, a kill recorder, an environment owner.

Time-dependent rules are tested by passing or advancing time, never by sleeping: every clock
the code under test reads is a :class:`FakeClock` here.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
from collections.abc import Awaitable
from typing import TYPE_CHECKING, TypeVar

if TYPE_CHECKING:
    from runtime.agent import protocol as P
    from runtime.batch import KillOrder
    from runtime.pools.process import Worker

T = TypeVar("T")


class FakeClock:
    """Seconds that move only when told to.

    Call it (the ``Callable[[], float]`` the stores, runners and dispatchers take) or its
    ``now()`` (the harness's clock shape) for the time; ``advance`` moves it, or assign ``time``.
    """

    def __init__(self, time: float = 0.0) -> None:
        self.time = time

    def __call__(self) -> float:
        return self.time

    def now(self) -> float:
        return self.time

    def advance(self, seconds: float) -> float:
        """Move ``seconds`` ahead; the new time."""
        self.time += seconds
        return self.time


class AutojumpClock(FakeClock):
    """A :class:`FakeClock` that stands still while any task can run; when all wait on it, it
    jumps to the earliest wake-up (trio's autojump clock, for asyncio and coroutines that only
    sleep through it)."""

    SETTLE = 30  # loop turns that let every runnable task reach its next sleep

    def __init__(self, time: float = 0.0) -> None:
        super().__init__(time)
        self._sleepers: list[tuple[float, int, asyncio.Future[None]]] = []
        self._seq = itertools.count()

    async def sleep_until(self, when: float) -> None:
        if when <= self.time:
            return
        future = asyncio.get_running_loop().create_future()
        heapq.heappush(self._sleepers, (when, next(self._seq), future))
        await future

    async def sleep(self, seconds: float) -> None:
        await self.sleep_until(self.time + seconds)

    async def _drive(self) -> None:
        while True:
            for _ in range(self.SETTLE):
                await asyncio.sleep(0)
            if self._sleepers:
                when, _, future = heapq.heappop(self._sleepers)
                self.time = when
                future.set_result(None)

    async def run(self, coro: Awaitable[T]) -> T:
        """``coro``, with the clock jumping whenever everything waits on it."""
        driver = asyncio.ensure_future(self._drive())
        try:
            return await coro
        finally:
            driver.cancel()
            await asyncio.gather(driver, return_exceptions=True)


class FakeKiller:
    """Records the kill orders a Batch API hands to its node's killer."""

    def __init__(self) -> None:
        self.orders: list[KillOrder] = []

    def kill(self, orders: list[KillOrder]) -> None:
        self.orders.extend(orders)


class Owner:
    """A stand-in for the engine's Environment: collects frames and losses."""

    def __init__(self) -> None:
        self.frames: asyncio.Queue[P.Frame] = asyncio.Queue()
        self.lost: list[Worker] = []

    def frame_received(self, worker: Worker, frame: P.Frame) -> None:
        self.frames.put_nowait(frame)

    def worker_lost(self, worker: Worker) -> None:
        self.lost.append(worker)
