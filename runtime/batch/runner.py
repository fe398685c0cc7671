"""The job runner: claims RUNNABLE jobs that fit its compute environment and runs their attempts.

    loop ── claim(node, now, vcpus=free, memory_mib=free) ──▶ store: RUNNABLE → STARTING
      │        for each claim: an attempt task
      │            started() → RUNNING, deadline armed (attemptDurationSeconds * timeout_scale)
      │            executor.run: a function in the runner's own Engine, or a container
      │            finished(exit code, reason, log, result, timed_out) → the store's rules
      ├── every heartbeat_s: heartbeat, recover dead nodes (their jobs, and their async
      │   invocations when given the event store), desired capacity, blocked jobs
      └── kill orders (TerminateJob, from any thread) and expired deadlines: SIGTERM, SIGKILL
          after kill_grace_s

Capacity is the runner's own (DESIGN.md section 5): function jobs run in worker processes of
a second Engine (``spill=False``), never in the invocation pool's environments, and have no
15-minute limit; container jobs are one Docker container per attempt.

Time: ``clock`` (epoch seconds, injectable) stamps every store call and decides deadlines and
node silence, so a test can move it and call :meth:`JobRunner.wake`; the loop also wakes on
real timers, so with the real clock nothing needs a nudge.  The kill grace is real time.

Shutting down (:meth:`JobRunner.close`) stops claiming, lets running attempts finish for up to
``drain_s`` seconds, then kills what is left without reporting it: those attempts are what a
dead runner leaves, and :meth:`Store.recover` counts them (by this node at its next start, or
by another runner once this node is silent or, on this host, its process is gone).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import math
import signal
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

import msgspec

from ..asyncinvoke.store import EventStore
from ..config import BatchConfig, PoolConfig
from ..engine import Engine
from ..errors import ServiceException
from ..node import local_node_id, node_alive
from ..sqlite import offload
from .capacity import BLOCKED_REASON, Capacity
from .executors import ContainerExecutor, Control, FunctionExecutor, Outcome, short
from .model import Claim, ClientException, KillOrder
from .store import DEFAULT_LOG_CAP, Store

T = TypeVar("T")
log = logging.getLogger("warmstart.batch")
_runner_ids = itertools.count(1)
#: the waits between tries of an attempt's report the store refused
REPORT_RETRIES_S = (0.1, 0.5, 2.0, 5.0, 10.0)


def default_node_id() -> str:
    """``<host>/<pid>/<start ticks>+<n>``: this process's n-th runner, so that two runners in
    one process never recover each other's work, and a node of a process that is gone is
    known dead at once (see :func:`node_gone`)."""
    return f"{local_node_id()}+{next(_runner_ids)}"


def node_gone(node: str) -> bool:
    """A runner of this host whose process no longer runs (other nodes: only by silence)."""
    process, sep, _ = node.rpartition("+")
    return bool(sep) and not node_alive(process)


def _running_loop() -> asyncio.AbstractEventLoop | None:
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None


def batch_pool(pool: PoolConfig) -> PoolConfig:
    """The runner's engine's pool: the main pool's settings, without its limits, since the
    runner admits work by vCPUs and memory before it reaches the engine."""
    return msgspec.structs.replace(
        pool,
        account_concurrency=1_000_000,
        memory_budget_mb=0,
        queue_timeout_s=86_400.0,
        stem_cells=(),
    )


class Attempt:
    """One attempt this runner runs: its claim, deadline, and how it is being stopped."""

    __slots__ = (
        "claim",
        "control",
        "deadline",
        "ended",
        "stop_task",
        "task",
        "timed_out",
        "timer",
    )

    def __init__(self, claim: Claim, control: Control) -> None:
        self.claim = claim
        self.control = control
        self.deadline = math.inf
        self.ended = asyncio.Event()
        self.task: asyncio.Task[None] | None = None
        self.stop_task: asyncio.Task[None] | None = None
        self.timed_out = False
        self.timer: asyncio.TimerHandle | None = None

    @property
    def stopping(self) -> bool:
        return self.stop_task is not None

    def __repr__(self) -> str:
        state = "stopping" if self.stopping else "running"
        return f"<Attempt {self.claim.job_id} #{self.claim.attempt} {state}>"


class JobRunner:
    """Runs the jobs of ``store`` on a compute environment of its own (see the module doc).

    ``engine`` is where function jobs' functions are registered; the runner runs them on a
    second Engine with ``engine.pool``'s settings. ``listeners`` are called (no arguments)
    whenever jobs may have changed state here, so waiters can look again. ``events``, the
    async invocations' store on the same file, has the in-flight events of a silent node
    given back with its jobs (an event dispatcher recovers only dead processes of its host).
    """

    def __init__(
        self,
        engine: Engine,
        store: Store,
        *,
        events: EventStore | None = None,
        node_id: str | None = None,
        config: BatchConfig | None = None,
        clock: Callable[[], float] = time.time,
        poll_s: float = 0.5,
        heartbeat_s: float = 5.0,
        stale_after_s: float = 30.0,
        claim_batch: int = 128,
    ) -> None:
        self.config = config or BatchConfig()
        self.store = store
        self.events = events
        self.node_id = node_id or default_node_id()
        self.clock = clock
        self.poll_s = poll_s
        self.heartbeat_s = heartbeat_s
        self.stale_after_s = stale_after_s
        self.claim_batch = claim_batch
        self.capacity = Capacity(
            min_vcpus=self.config.min_vcpus,
            max_vcpus=self.config.max_vcpus,
            memory_mib=self.config.memory_mib,
        )
        self.listeners: list[Callable[[], Any]] = []
        self._enabled = True
        self._functions = FunctionExecutor(engine, batch_pool(engine.pool))
        self._containers = ContainerExecutor(
            engine.node_id,
            trust_image_binds=engine.pool.trust_image_binds,
            log_cap=getattr(store, "log_cap_bytes", DEFAULT_LOG_CAP),
        )
        self._attempts: dict[str, Attempt] = {}
        self._wake = asyncio.Event()
        self._event_loop: asyncio.AbstractEventLoop | None = None
        self._task: asyncio.Task[None] | None = None
        self._thread = ThreadPoolExecutor(1, thread_name_prefix="warmstart-batch")
        self._closing = False
        self._last_housekeeping = -math.inf
        self._last_kill_poll = -math.inf
        self.counts = {"claimed": 0, "finished": 0, "timed_out": 0, "killed": 0, "recovered": 0}

    # -- lifecycle ------------------------------------------------------------------------------

    async def start(self) -> JobRunner:
        """Recover this node's and dead nodes' attempts, then run the loop."""
        self._event_loop = asyncio.get_running_loop()
        await self._functions.start()
        now = self.clock()
        await self._recover(self.node_id, now)
        await self._housekeeping(now)
        self._task = asyncio.ensure_future(self._loop())
        return self

    async def close(self, drain_s: float = 0.0) -> None:
        """Stop claiming; give running attempts ``drain_s`` seconds, then kill the rest and
        leave them to recovery (see the module docstring)."""
        if self._closing:
            return
        self._closing = True
        self.wake()
        if self._task is not None:
            await self._task
        tasks = [a.task for a in self._attempts.values() if a.task is not None]
        if tasks and drain_s > 0:
            await asyncio.wait(tasks, timeout=drain_s)
        for task in tasks:
            task.cancel()
        stops = [a.stop_task for a in self._attempts.values() if a.stop_task is not None]
        for stop in stops:
            stop.cancel()
        await asyncio.gather(*tasks, *stops, return_exceptions=True)
        await self._functions.close()
        await self._containers.close()
        self._thread.shutdown(wait=True)

    @property
    def enabled(self) -> bool:
        """The compute environment's state: False (AWS's DISABLED) places no new job, while
        running attempts go on."""
        return self._enabled

    @enabled.setter
    def enabled(self, value: bool) -> None:
        self._enabled = value
        self.wake()

    def wake(self) -> None:
        """Look at the store now (a job was submitted, the clock moved). Safe from any
        thread."""
        self._on_loop(self._wake.set)

    # -- the loop -------------------------------------------------------------------------------

    async def _loop(self) -> None:
        while not self._closing:
            try:
                await self._round(self.clock())
            except ServiceException as exc:  # the store is unreachable: a line, not a trace
                log.warning("batch runner %s: a round failed (%s); trying again", self.node_id, exc)
            except Exception:
                log.exception("batch runner %s: a round failed; trying again", self.node_id)
            await self._sleep()

    async def _sleep(self) -> None:
        if not self._wake.is_set():
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self.poll_s)
        self._wake.clear()

    async def _round(self, now: float) -> None:
        if now - self._last_housekeeping >= self.heartbeat_s:
            await self._housekeeping(now)
        if self._attempts and now - self._last_kill_poll >= self.poll_s:
            self._last_kill_poll = now
            self.kill(await self._db(self.store.kill_requests, self.node_id))
        self._expire(now)
        if self._enabled and not self._closing:
            await self._claim(now)

    async def _housekeeping(self, now: float) -> None:
        """Heartbeat, recovery of dead nodes, the desired capacity, jobs too big to run."""
        self._last_housekeeping = now
        store = self.store
        await self._db(store.heartbeat, self.node_id, now)
        silent = set(await self._db(store.stale_nodes, now, self.stale_after_s))
        for node in await self._db(store.stale_nodes, math.inf, 0.0):
            if node != self.node_id and (node in silent or node_gone(node)):
                await self._recover(node, now)
        demand = await self._db(store.demand)
        self.capacity.set_demand(demand.vcpus)
        if demand.jobs:
            cap = self.capacity
            await self._db(store.mark_blocked, cap.max_vcpus, cap.memory_mib, 0, BLOCKED_REASON)

    async def _recover(self, node: str, now: float) -> None:
        if self.events is not None:  # first: the store's recover forgets the node
            await self._db(self.events.recover, node, now, forget=False)
        found = await self._db(self.store.recover, node, now)
        if found.requeued or found.failed:
            log.info(
                "batch runner %s: node %s died with %d attempts (%d requeued)",
                self.node_id,
                node,
                len(found.requeued) + len(found.failed),
                len(found.requeued),
            )
            self.counts["recovered"] += len(found.requeued) + len(found.failed)
            self._changed()

    async def _claim(self, now: float) -> None:
        cap = self.capacity
        if cap.free_vcpus <= 0 or cap.free_memory_mib <= 0:
            return
        claims = await self._db(
            self.store.claim,
            self.node_id,
            now,
            self.claim_batch,
            vcpus=cap.free_vcpus,
            memory_mib=cap.free_memory_mib,
            gpus=0,
        )
        for claim in claims:
            self._begin(claim)
        if len(claims) == self.claim_batch:
            self.wake()  # there may be more that fit

    # -- attempts -------------------------------------------------------------------------------

    def _begin(self, claim: Claim) -> None:
        self.capacity.take(claim.vcpus, claim.memory_mib)
        self.counts["claimed"] += 1
        attempt = Attempt(claim, Control(claim, lambda: self._started(attempt)))
        self._attempts[claim.job_id] = attempt
        attempt.task = asyncio.ensure_future(self._run(attempt))

    async def _run(self, attempt: Attempt) -> None:
        claim = attempt.claim
        executor = self._functions if claim.function is not None else self._containers
        try:
            try:
                outcome = await executor.run(attempt.control)
            except Exception as exc:  # a fault of warmstart's, not the job's
                log.exception("batch runner %s: attempt of %s failed", self.node_id, claim.job_id)
                outcome = Outcome(None, short(f"InternalError: {type(exc).__name__}: {exc}"))
            attempt.ended.set()
            await self._report(attempt, outcome)
        finally:
            attempt.ended.set()
            if attempt.timer is not None:
                attempt.timer.cancel()
            if self._attempts.get(claim.job_id) is attempt:
                del self._attempts[claim.job_id]
            self.capacity.give(claim.vcpus, claim.memory_mib)
            self.wake()
            self._changed()

    async def _report(self, attempt: Attempt, outcome: Outcome) -> None:
        """``Store.finished``, tried again while the store refuses: a few times when it
        fails (another process may hold its lock for long; given up on, the attempt is left
        to recovery), for as long as it takes when it cannot be reached."""
        claim = attempt.claim
        delays = iter(REPORT_RETRIES_S)
        while True:
            try:
                await self._db(
                    self.store.finished,
                    claim.job_id,
                    claim.attempt,
                    outcome.exit_code,
                    outcome.reason,
                    outcome.status_reason,
                    self.clock(),
                    log=outcome.log,
                    timed_out=attempt.timed_out,
                    result=outcome.result,
                )
            except ServiceException as exc:
                # the store is unreachable: the outcome is known, so it is reported once the
                # store answers (a live node's attempt is never recovered by the others)
                if self._closing:
                    return
                log.warning(
                    "batch runner %s: cannot report %s yet: %s", self.node_id, claim.job_id, exc
                )
                delay = next(delays, REPORT_RETRIES_S[-1])
            except Exception:
                log.exception("batch runner %s: cannot report %s", self.node_id, claim.job_id)
                given = next(delays, None)
                if given is None:
                    return
                delay = given
            else:
                self.counts["finished"] += 1
                return
            await asyncio.sleep(delay)

    async def _started(self, attempt: Attempt) -> bool:
        """RUNNING now; False when the job was terminated (or taken away) meanwhile."""
        claim = attempt.claim
        now = self.clock()
        try:
            order = await self._db(self.store.started, claim.job_id, now, claim.attempt)
        except ClientException:  # no longer this attempt's: recovered by another node
            return False
        if order is not None or attempt.stopping:
            return False
        seconds = claim.timeout_s
        if seconds is not None:
            limit = seconds * self.config.timeout_scale
            attempt.deadline = now + limit
            # a hair late, so the clock read when it fires is past the deadline
            attempt.timer = asyncio.get_running_loop().call_later(limit + 0.01, self.wake)
        return True

    def _expire(self, now: float) -> None:
        for attempt in list(self._attempts.values()):
            if now >= attempt.deadline and not attempt.stopping:
                attempt.timed_out = True
                self.counts["timed_out"] += 1
                self._stop(attempt)

    def kill(self, orders: Iterable[KillOrder]) -> None:
        """Carry out TerminateJob's orders for attempts of this node (others are ignored).

        Safe from any thread: the Batch API's operations run in worker threads, while the
        attempts and the tasks that stop them belong to the runner's loop."""
        self._on_loop(self._kill, list(orders))

    def _kill(self, orders: list[KillOrder]) -> None:
        for order in orders:
            attempt = self._attempts.get(order.job_id)
            if attempt is None or order.node != self.node_id:
                continue
            if attempt.claim.attempt == order.attempt and not attempt.stopping:
                self.counts["killed"] += 1
                self._stop(attempt)

    def _stop(self, attempt: Attempt) -> None:
        attempt.stop_task = asyncio.ensure_future(self._terminate(attempt))

    async def _terminate(self, attempt: Attempt) -> None:
        """SIGTERM (sent as soon as something runs to receive it), then SIGKILL once
        ``kill_grace_s`` has passed, repeated until the attempt has ended."""
        loop = asyncio.get_running_loop()
        grace_end = loop.time() + self.config.kill_grace_s
        ended = asyncio.ensure_future(attempt.ended.wait())
        try:
            while not ended.done() and loop.time() < grace_end:
                if attempt.control.signal(signal.SIGTERM):
                    await asyncio.wait([ended], timeout=max(0.0, grace_end - loop.time()))
                    break
                await asyncio.wait([ended], timeout=0.05)
            while not ended.done():
                attempt.control.signal(signal.SIGKILL)
                await asyncio.wait([ended], timeout=0.5)
        finally:
            ended.cancel()

    # -- plumbing -------------------------------------------------------------------------------

    def _on_loop(self, fn: Callable[..., Any], *args: Any) -> None:
        """``fn(*args)`` now when called on the runner's loop (or before it started), else
        handed to that loop. Once the loop has closed nothing is lost: kill orders stay in
        the store, and whoever recovers this node's attempts ends them."""
        loop = self._event_loop
        if loop is None or _running_loop() is loop:
            fn(*args)
            return
        try:
            loop.call_soon_threadsafe(fn, *args)
        except RuntimeError:  # the loop has closed
            pass

    async def _db(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """A store call on the runner's own thread: the loop keeps serving workers while
        SQLite works, and the store's calls stay in order."""
        return await offload(self._thread, fn, *args, **kwargs)

    def _changed(self) -> None:
        for listener in self.listeners:
            listener()

    @property
    def running(self) -> int:
        return len(self._attempts)

    def attempts(self) -> list[Attempt]:
        return list(self._attempts.values())

    def stats(self) -> dict[str, Any]:
        """The compute environment's capacity (used, desired, peak) and the attempts' counts."""
        stopping = sum(1 for a in self._attempts.values() if a.stopping)
        return {
            "node": self.node_id,
            "capacity": self.capacity.stats(),
            "running": len(self._attempts),
            "stopping": stopping,
            **self.counts,
        }

    def __repr__(self) -> str:
        cap = self.capacity
        return (
            f"<JobRunner {self.node_id} running={len(self._attempts)} "
            f"vcpus={cap.used_vcpus:g}/{cap.max_vcpus:g} desired={cap.desired_vcpus:g} "
            f"memory={cap.used_memory_mib}/{cap.memory_mib} MiB "
            f"claimed={self.counts['claimed']} finished={self.counts['finished']} "
            f"timed_out={self.counts['timed_out']} killed={self.counts['killed']}>"
        )
