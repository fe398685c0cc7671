"""Load shapes: a closed loop of N callers, or an open loop at a fixed rate.

Closed loop: each caller sends its next request when the previous one is answered, so the
latency of a request is ``done - sent``.

Open loop: request ``i`` is due at ``start + i / rate`` whether or not earlier ones have been
answered, and its latency is measured from that *intended* send time.  When the target falls
behind, the waiting shows up in the latencies instead of silently lowering the offered rate
(the "coordinated omission" a closed-loop tool hides).  At most ``concurrency`` requests are in
flight; a request that waits for a free slot keeps its intended time.

Both loops take a ``Clock``, so a test can drive them with virtual time.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Protocol

from .results import Outcome

#: the open loop's cap on requests in flight when no --concurrency is given
OPEN_LOOP_MAX_IN_FLIGHT = 1024

Call = Callable[[bytes], Awaitable[Outcome]]
Sink = Callable[[float, float, Outcome], None]


class Clock(Protocol):
    def now(self) -> float: ...

    async def sleep_until(self, when: float) -> None: ...


class RealClock:
    """``time.perf_counter`` seconds; sleeps on the running event loop, never waking early.

    Loop timers have millisecond resolution (uvloop rounds a 0.3 ms sleep to 0), so the last
    stretch before ``when`` is spent yielding to the loop: an open loop must not send a request
    before its intended time, or its latency would come out too low.
    """

    SPIN_S = 0.001

    def now(self) -> float:
        return time.perf_counter()

    async def sleep_until(self, when: float) -> None:
        delay = when - time.perf_counter()
        if delay > 2 * self.SPIN_S:
            await asyncio.sleep(delay - self.SPIN_S)
        while time.perf_counter() < when:  # noqa: ASYNC110 - a sub-millisecond wait, no event
            await asyncio.sleep(0)


@dataclass(frozen=True)
class LoadShape:
    """How requests are offered: closed loop (``rate`` None) or open loop at ``rate``/s.

    Exactly one of ``requests`` and ``duration_s`` bounds a run; ``warmup`` requests run first,
    with the same shape, and are not recorded.
    """

    concurrency: int | None = None
    rate: float | None = None
    requests: int | None = None
    duration_s: float | None = None
    warmup: int = 0

    def __post_init__(self) -> None:
        if (self.requests is None) == (self.duration_s is None):
            raise ValueError("give exactly one of requests and duration_s")
        if self.concurrency is not None and self.concurrency < 1:
            raise ValueError(f"concurrency: {self.concurrency} must be at least 1")
        if self.rate is not None and not self.rate > 0:
            raise ValueError(f"rate: {self.rate} must be above 0")
        if self.requests is not None and self.requests < 1:
            raise ValueError(f"requests: {self.requests} must be at least 1")
        if self.duration_s is not None and not self.duration_s > 0:
            raise ValueError(f"duration: {self.duration_s} must be above 0")
        if self.warmup < 0:
            raise ValueError(f"warmup: {self.warmup} must be 0 or more")

    @property
    def open(self) -> bool:
        return self.rate is not None

    @property
    def in_flight(self) -> int:
        """Requests in flight at most: the callers of a closed loop, the open loop's cap."""
        if self.concurrency is not None:
            return self.concurrency
        return OPEN_LOOP_MAX_IN_FLIGHT if self.open else 1

    def describe(self) -> str:
        bound = f"{self.requests} requests" if self.requests else f"{self.duration_s:g} s"
        if self.open:
            head = f"open loop at {self.rate:g}/s (at most {self.in_flight} in flight)"
        else:
            head = f"closed loop, concurrency {self.in_flight}"
        return f"{head}, {bound}, warmup {self.warmup}"


async def safe_call(call: Call, payload: bytes) -> Outcome:
    """A target's outcome; an exception it did not expect counts as an error of its type."""
    try:
        return await call(payload)
    except Exception as exc:  # CancelledError is a BaseException: it passes through
        return Outcome(error_type=type(exc).__name__)


async def run_load(
    shape: LoadShape,
    call: Call,
    payload: bytes,
    sink: Sink,
    *,
    clock: Clock | None = None,
    on_start: Callable[[float], None] | None = None,
) -> None:
    """Offer ``shape``'s load to ``call``: warmup first, then the recorded phase into ``sink``.

    ``sink(sent, done, outcome)`` gets each recorded request; ``on_start(now)`` is called once,
    when the recorded phase starts (after the warmup).
    """
    clock = clock or RealClock()
    if shape.warmup:
        await _phase(shape, call, payload, _discard, clock, requests=shape.warmup)
    if on_start is not None:
        on_start(clock.now())
    await _phase(shape, call, payload, sink, clock, shape.requests, shape.duration_s)


def _discard(sent: float, done: float, outcome: Outcome) -> None:
    pass


async def _phase(
    shape: LoadShape,
    call: Call,
    payload: bytes,
    sink: Sink,
    clock: Clock,
    requests: int | None = None,
    duration_s: float | None = None,
) -> None:
    start = clock.now()
    end = start + duration_s if duration_s is not None else float("inf")
    if shape.rate is not None:
        await _open_loop(shape, call, payload, sink, clock, start, end, requests)
    else:
        await _closed_loop(shape.in_flight, call, payload, sink, clock, end, requests)


async def _closed_loop(
    callers: int,
    call: Call,
    payload: bytes,
    sink: Sink,
    clock: Clock,
    end: float,
    requests: int | None,
) -> None:
    remaining = requests if requests is not None else -1

    async def caller() -> None:
        nonlocal remaining
        while remaining != 0:
            sent = clock.now()  # also the bound check; recording a result is not timed
            if sent >= end:
                break
            remaining -= 1
            outcome = await safe_call(call, payload)
            sink(sent, clock.now(), outcome)

    await asyncio.gather(*(caller() for _ in range(callers)))


async def _open_loop(
    shape: LoadShape,
    call: Call,
    payload: bytes,
    sink: Sink,
    clock: Clock,
    start: float,
    end: float,
    requests: int | None,
) -> None:
    assert shape.rate is not None
    slots = asyncio.Semaphore(shape.in_flight)
    tasks: set[asyncio.Task[None]] = set()

    async def one(intended: float) -> None:
        try:
            outcome = await safe_call(call, payload)
            sink(intended, clock.now(), outcome)
        finally:
            slots.release()

    i = 0
    while requests is None or i < requests:
        intended = start + i / shape.rate
        if intended >= end:
            break
        await clock.sleep_until(intended)
        await slots.acquire()
        task = asyncio.ensure_future(one(intended))
        tasks.add(task)
        task.add_done_callback(tasks.discard)
        i += 1
    if tasks:
        await asyncio.gather(*tasks)
