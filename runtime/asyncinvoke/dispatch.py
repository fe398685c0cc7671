"""The async-invocation dispatcher: durable events from the store, run on the engine.

    engine.invoke(fn, e, "Event") ── backlog.put_event ──▶ store (DUE) ── wake() ─┐
                                                                                 ▼
    EventDispatcher ── claim_events(node, now, free slots) ──▶ INFLIGHT ──▶ engine.invoke(fn, e)
         │ success ──────▶ OnSuccess record put as an event of the destination, event_done
         │ function error / failed invoke ──▶ event_failed (TooManyRequests: throttled=True)
         │      DUE again at +60 s, +120 s (the dispatcher sleeps until then)
         │      DEAD ──▶ OnFailure record put as an event of the destination, event_done;
         │               no OnFailure destination: it stays in the dead-letter list
         └ claim's expired events (EventAgeExceeded): DEAD, handled as above

At-least-once: an event leaves the store only after its outcome is settled, and a destination
record is stored (under a request id derived from the event, so doing it twice stores it once)
before the event it reports on is removed. Events in flight when the process dies stay
INFLIGHT under its node id until :meth:`EventDispatcher.start` of a later process recovers
them (its own node, and the event nodes of dead processes on this host).

The dispatcher knows when events it failed are due again; events that appear without a
``wake()`` (a redrive from the CLI, another process's puts) are found by polling every
``idle_poll_s``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections.abc import Awaitable, Callable, Coroutine
from concurrent.futures import Executor
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

import orjson

from ..config import PoolConfig
from ..errors import (
    ResourceNotFoundException,
    ServiceException,
    TooManyRequestsException,
    WarmstartError,
)
from ..node import local_node_id, node_alive
from ..result import InvokeResult
from ..schedules.store import target_function
from ..sqlite import offload
from ..tasks import TaskSet
from . import model as ev
from .store import EventStore

log = logging.getLogger("warmstart.batch")

T = TypeVar("T")

#: the prefix of a dispatcher's node id (the rest is ``local_node_id()``): the store's
#: ``recover`` of such a node touches only events, never batch jobs
NODE_PREFIX = "events@"


class Invoker(Protocol):
    """What the dispatcher needs of an engine."""

    pool: PoolConfig

    async def invoke(
        self, name: str, payload: bytes, *, request_id: str | None = None
    ) -> InvokeResult: ...


def event_node_id() -> str:
    """This process's node id as an event dispatcher."""
    return NODE_PREFIX + local_node_id()


def _dead_process(node: str) -> bool:
    return node.startswith(NODE_PREFIX) and not node_alive(node[len(NODE_PREFIX) :])


@dataclass(frozen=True)
class _Outcome:
    """One try's result, as the store and the destination record take it."""

    error: str
    status_code: int = 200
    function_error: str | None = None
    response: bytes | None = None
    throttled: bool = False


class EventDispatcher:
    """Runs a store's async-invocation events on ``engine``, at most ``concurrency`` at once.

    ``start()`` recovers in-flight events left by this node (and by dead processes on this
    host) and runs in the background; ``wake()`` says a new event is due (register it in the
    backlog's ``event_listeners``); ``close()`` stops claiming, lets running events finish
    for ``drain_s`` and releases the rest (DUE again). ``run_once()`` does one round in the
    foreground, for tests with an injected ``clock``.
    """

    def __init__(
        self,
        engine: Invoker,
        store: EventStore,
        *,
        node_id: str | None = None,
        clock: Callable[[], float] = time.time,
        concurrency: int = 16,
        idle_poll_s: float = 1.0,
        heartbeat_s: float = 5.0,
        stale_after_s: float | None = None,
        executor: Executor | None = None,
    ) -> None:
        if concurrency < 1:
            raise ValueError("concurrency must be 1 or more")
        self.engine = engine
        self.store = store
        self.node_id = node_id or event_node_id()
        self.clock = clock
        self.concurrency = concurrency
        self.idle_poll_s = idle_poll_s
        #: claims record that this node is alive; with every slot busy there are none, so it
        #: beats this often (batch runners recover nodes silent for long)
        self.heartbeat_s = heartbeat_s
        #: with several nodes on one store: the events of a dispatcher silent this long are
        #: taken over (None: left to the batch runner's recovery, or to a later start)
        self.stale_after_s = stale_after_s
        self._swept_at = -math.inf
        #: events taken over from silent nodes
        self.taken_over = 0
        #: with functions kept in a shared registry: follow it now (true if anything changed),
        #: for an event of a function this node does not know yet
        self.catch_up: Callable[[], Awaitable[int]] | None = None
        #: where store calls run (None: the loop's default executor)
        self.executor = executor
        self._beat_at = -math.inf
        self._running = TaskSet(on_done=self._finished)
        self._retry_at = math.inf  # the earliest retry this dispatcher scheduled
        self._loop: asyncio.AbstractEventLoop | None = None
        self._wakeup: asyncio.Event | None = None
        self._task: asyncio.Task[None] | None = None

    def __repr__(self) -> str:
        state = "running" if self._task is not None else "stopped"
        return f"<EventDispatcher {self.node_id} {state} in_flight={len(self._running)}>"

    @property
    def in_flight(self) -> int:
        return len(self._running)

    # -- lifecycle --------------------------------------------------------------------------

    async def start(self) -> int:
        """Recover, then dispatch in the background; returns how many events were recovered."""
        recovered = await self.recover()
        self._loop = asyncio.get_running_loop()
        self._wakeup = asyncio.Event()
        self._task = asyncio.create_task(self._run(), name="warmstart-events")
        return recovered

    async def recover(self) -> int:
        """Events left INFLIGHT by this node, or by an event node whose process is gone,
        are due again."""
        now = self.clock()
        nodes = {self.node_id}
        known = await offload(self.executor, self.store.stale_nodes, math.inf, 0.0)  # every node
        nodes.update(node for node in known if _dead_process(node))
        total = 0
        for node in sorted(nodes):
            total += (await offload(self.executor, self.store.recover, node, now)).events
        return total

    def wake(self) -> None:
        """An event may be due: claim now (safe from any thread; a no-op when not started)."""
        loop, wakeup = self._loop, self._wakeup
        if loop is not None and wakeup is not None and not loop.is_closed():
            loop.call_soon_threadsafe(wakeup.set)

    async def close(self, drain_s: float = 10.0) -> None:
        """Stop claiming; wait up to ``drain_s`` for running events, cancel the rest and hand
        them back to the store (DUE again at once, no retry used up)."""
        task, self._task = self._task, None
        self._loop = None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await self._running.wait(drain_s)
        left = self._running.cancel()
        if left:
            await asyncio.gather(*left, return_exceptions=True)
            await offload(self.executor, self.store.recover, self.node_id, self.clock())

    # -- rounds -----------------------------------------------------------------------------

    async def run_once(self) -> int:
        """Claim what is due at ``clock()`` (up to the free slots), run it to the end;
        returns how many events were handled (expired ones included)."""
        tasks, handled = await self._claim()
        if tasks:
            await asyncio.gather(*tasks)
        return handled

    async def _take_over(self, now: float) -> None:
        """The in-flight events of dispatchers silent for ``stale_after_s`` are due again
        (their node's lease ran out: it died, or lost the store for that long)."""
        self._swept_at = now
        assert self.stale_after_s is not None
        silent = await offload(self.executor, self.store.stale_nodes, now, self.stale_after_s)
        for node in silent:
            if node.startswith(NODE_PREFIX) and node != self.node_id:
                found = await offload(self.executor, self.store.recover, node, now)
                if found.events:
                    log.warning(
                        "async invocations: node %s went silent; %d of its events are due again",
                        node.removeprefix(NODE_PREFIX),
                        found.events,
                    )
                    self.taken_over += found.events

    async def _claim(self) -> tuple[list[asyncio.Task[None]], int]:
        free = self.concurrency - len(self._running)
        now = self.clock()
        if self.stale_after_s is not None and now - self._swept_at >= self.heartbeat_s:
            await self._take_over(now)
        if free <= 0:
            if now - self._beat_at >= self.heartbeat_s:
                await offload(self.executor, self.store.heartbeat, self.node_id, now)
                self._beat_at = now
            return [], 0
        if now >= self._retry_at:
            self._retry_at = math.inf
        claim = await offload(self.executor, self.store.claim_events, self.node_id, now, free)
        self._beat_at = now
        coros = [self._handle(event) for event in claim.events]
        coros += [self._dead(event, _Outcome(event.error or "")) for event in claim.expired]
        tasks = [self._running.create_task(self._guarded(coro)) for coro in coros]
        return tasks, len(tasks)

    @staticmethod
    async def _guarded(work: Coroutine[Any, Any, None]) -> None:
        """A store that fails mid-event leaves the event INFLIGHT: recovered at the next
        start, never lost; the failure is logged, not raised into the loop."""
        try:
            await work
        except Exception:
            log.exception("async invocations: settling an event failed")

    def _finished(self, task: asyncio.Task[Any]) -> None:
        if self._wakeup is not None:
            self._wakeup.set()  # a slot is free

    async def _run(self) -> None:
        assert self._wakeup is not None
        while True:
            self._wakeup.clear()
            try:
                _, handled = await self._claim()
            except ServiceException as exc:  # the store is unreachable: a line, not a trace
                log.warning("async invocations: claiming events failed: %s", exc)
                handled = 0
            except Exception:
                log.exception("async invocations: claiming events failed")
                handled = 0
            if handled and len(self._running) < self.concurrency:
                continue  # the claim may have been cut short by the slots: look again
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._wakeup.wait(), self._sleep_s())

    def _sleep_s(self) -> float:
        return max(0.0, min(self._retry_at - self.clock(), self.idle_poll_s))

    # -- one event --------------------------------------------------------------------------

    async def _handle(self, event: ev.AsyncEvent) -> None:
        try:
            result = await self._invoke(event)
        except TooManyRequestsException as exc:
            await self._failed(event, _Outcome(_worded(exc), exc.status, throttled=True))
        except WarmstartError as exc:
            await self._failed(event, _Outcome(_worded(exc), exc.status))
        except Exception as exc:
            log.exception("async invocation %s of %s failed", event.id, event.function)
            await self._failed(event, _Outcome(f"{type(exc).__name__}: {exc}", 500))
        else:
            if result.function_error:
                outcome = _Outcome(
                    _function_error(result),
                    function_error=result.function_error,
                    response=result.payload,
                )
                await self._failed(event, outcome)
            else:
                await self._succeeded(event, result)

    async def _invoke(self, event: ev.AsyncEvent) -> InvokeResult:
        # the request id the caller's 202 gave, on every attempt, as Lambda keeps it
        try:
            return await self.engine.invoke(event.function, event.payload, request_id=event.id)
        except ResourceNotFoundException:
            # made on another node a moment ago: catch up with the function registry, once
            if self.catch_up is None or not await self.catch_up():
                raise
        return await self.engine.invoke(event.function, event.payload, request_id=event.id)

    async def _settle(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """A store call that settles an event whose outcome is known: while the store cannot
        be reached it is tried again, 0.1 s, then up to 5 s apart (every such call is
        idempotent), so the event does not stay in flight on a node that lives on. Once the
        dispatcher closes, the event is left to recovery."""
        delay = 0.1
        while True:
            try:
                return await offload(self.executor, fn, *args, **kwargs)
            except ServiceException as exc:
                if self._task is None:
                    raise
                log.warning("async invocations: the store refused a settlement (%s)", exc)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 5.0)

    async def _succeeded(self, event: ev.AsyncEvent, result: InvokeResult) -> None:
        destination = await self._destination(event.function, "on_success")
        if destination is not None:
            record = ev.invocation_record(
                event,
                function_arn=self.engine.pool.function_arn(event.function),
                condition=ev.SUCCESS,
                now=self.clock(),
                status_code=result.status_code,
                response=result.payload or b"null",
            )
            await self._deliver(destination, record, f"{event.id}:OnSuccess")
        await self._settle(self.store.event_done, event.id)

    async def _failed(self, event: ev.AsyncEvent, outcome: _Outcome) -> None:
        after = await self._settle(
            self.store.event_failed,
            event.id,
            outcome.error,
            self.clock(),
            throttled=outcome.throttled,
        )
        if after.state == ev.DUE:
            self._retry_at = min(self._retry_at, after.next_attempt_at)
        elif after.state == ev.DEAD:
            await self._dead(after, outcome)

    async def _dead(self, event: ev.AsyncEvent, outcome: _Outcome) -> None:
        """A discarded event goes to its function's OnFailure destination, if it has one;
        otherwise it stays in the dead-letter list."""
        destination = await self._destination(event.function, "on_failure")
        if destination is None:
            log.warning(
                "async invocation %s of %s dead-lettered (%s): %s",
                event.id,
                event.function,
                event.condition,
                event.error,
            )
            return
        record = ev.invocation_record(
            event,
            function_arn=self.engine.pool.function_arn(event.function),
            condition=event.condition or ev.RETRIES_EXHAUSTED,
            now=self.clock(),
            status_code=outcome.status_code,
            function_error=outcome.function_error,
            response=outcome.response,
        )
        await self._deliver(destination, record, f"{event.id}:OnFailure")
        await self._settle(self.store.event_done, event.id)

    async def _destination(self, function: str, kind: str) -> str | None:
        """The function named by ``function``'s OnSuccess / OnFailure destination."""
        try:
            config = await self._settle(self.store.get_event_invoke_config, function)
        except ResourceNotFoundException:
            return None
        destinations = config.destination_config
        target = getattr(destinations, kind, None) if destinations is not None else None
        arn = target.destination if target is not None else None
        if arn is None:
            return None
        name = target_function(arn)
        if name is None:
            log.warning("%s: destination %s is not a Lambda function; not delivered", function, arn)
        return name

    async def _deliver(self, function: str, record: bytes, request_id: str) -> None:
        """The record becomes an async invocation of the destination function."""
        await self._settle(
            self.store.put_event,
            function,
            record,
            self.clock(),
            request_id=request_id,
        )
        if self._wakeup is not None:
            self._wakeup.set()


def _worded(exc: WarmstartError) -> str:
    return f"{exc.code}: {exc.message}"


def _function_error(result: InvokeResult) -> str:
    """``Unhandled: RuntimeError: asked to fail`` from Lambda's error document."""
    try:
        doc = orjson.loads(result.payload)
    except orjson.JSONDecodeError:
        doc = None
    if isinstance(doc, dict):
        return f"{result.function_error}: {doc.get('errorType')}: {doc.get('errorMessage')}"
    return str(result.function_error)
