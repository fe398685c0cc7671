"""Schedules: EventBridge rules fired as durable async invocations.

    Rules.schedules() ──▶ plan(rule, targets, now)  (pure: which instant is owed, what to send)
                              │ one Firing per owed instant: missed firings collapse into one
                              ▼
    ScheduleRunner.run_due(now) ── Rules.claim_firing(rule, instant, node, now, lease)
                                     │ won: this node sends it; lost: another node has it
                                     ├─▶ backlog.put_event(function, payload, request_id) per target
                                     └─▶ Rules.mark_fired(rule, instant)

A firing is an async invocation of each target function, through the engine's backlog (stored
before it counts as sent), with EventBridge's Scheduled Event as the payload, or the target's
``Input`` when it has one.

Every node on one store runs a runner and plans the same instants; the claim is what makes a
firing go out once: the store's compare-and-set lets one node have it (see
:func:`~.store.wins_claim`), and the others skip it. The request id of a firing is derived from
the rule, the target and the instant, which covers what the claim cannot: a node that died after
sending and before ``mark_fired`` has its claim taken over once the lease ran out, and the
firing it sends again is the same event to the backlog's store (``put_event`` keeps the first
of one request id) — as long as that store is shared and still holds the first event. Once the
first ran and was forgotten, the resend runs again: a firing is at least once across a node
dying in that window, exactly once otherwise.

Rules come from the API (:mod:`runtime.service.events_api`) and from the configuration file's
``[schedules.NAME]`` tables (:func:`sync_config`), which own the rules they declare.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
import uuid
from collections.abc import Callable, Mapping
from concurrent.futures import Executor
from dataclasses import dataclass
from typing import Protocol

import orjson

from .. import arns
from ..config import PoolConfig
from ..errors import ServiceException
from ..node import local_node_id
from ..sqlite import offload
from .expressions import scheduled_event
from .store import (
    CONFIG_MANAGER,
    DISABLED,
    ENABLED,
    FIRING_LEASE_S,
    Rule,
    Rules,
    Target,
    target_function,
    utc,
)

log = logging.getLogger("warmstart.batch")

#: firing ids are UUIDs in this namespace, from (rule ARN, target id, instant)
_FIRING_NAMESPACE = uuid.UUID("6f1d7a52-3c1e-4c56-9a8e-2f0b7c9d1e40")


class EventSink(Protocol):
    """Where firings go: the engine's backlog (``runtime.engine.Backlog``'s ``put_event``)."""

    async def put_event(self, function: str, payload: bytes, request_id: str) -> None: ...


@dataclass(frozen=True)
class Send:
    """One async invocation of a firing."""

    function: str
    payload: bytes
    request_id: str


@dataclass(frozen=True)
class Firing:
    """What ``plan`` owes for a rule at ``now``: fire at ``fire_at`` (epoch seconds; None:
    nothing is owed) with ``sends``, then wait until ``next_at`` (None: never again)."""

    fire_at: float | None
    sends: tuple[Send, ...]
    next_at: float | None


def rule_arn(pool: PoolConfig, name: str) -> str:
    """``arn:aws:events:<region>:<account>:rule/<name>``, in the pool's region and account."""
    return arns.rule_arn(pool.region, pool.account_id, name)


def plan(rule: Rule, targets: list[Target], now: float, pool: PoolConfig) -> Firing:
    """The firing owed for ``rule`` at ``now`` (sans-I/O): missed instants since the rule's
    last firing (or its last change) collapse into the latest one."""
    if not rule.enabled:
        return Firing(None, (), None)
    schedule = rule.schedule()
    current = utc(now)
    latest = schedule.last_at_or_before(current)
    following = schedule.next_after(current)
    next_at = None if following is None else following.timestamp()
    if latest is None or latest.timestamp() <= rule.fired_through:
        return Firing(None, (), next_at)
    arn = rule_arn(pool, rule.name)
    sends = tuple(
        send
        for target in targets
        if (send := _send(arn, target, latest.timestamp(), pool)) is not None
    )
    return Firing(latest.timestamp(), sends, next_at)


def _send(arn: str, target: Target, instant: float, pool: PoolConfig) -> Send | None:
    function = target_function(target.arn)
    if function is None:
        return None
    stamp = utc(instant).isoformat()
    request_id = str(uuid.uuid5(_FIRING_NAMESPACE, f"{arn}|{target.id}|{stamp}"))
    if target.input is not None:
        payload = target.input.encode()
    else:
        event = scheduled_event(
            arn,
            utc(instant),
            account=pool.account_id,
            region=pool.region,
            id=str(uuid.uuid5(_FIRING_NAMESPACE, f"{arn}|{stamp}")),
        )
        payload = orjson.dumps(event)
    return Send(function, payload, request_id)


class ScheduleRunner:
    """Fires the stored rules at their instants into ``backlog``.

    ``run_due(now)`` does one pass (tests drive it with virtual time); ``start()`` runs
    passes in the background, sleeping until the next instant or until ``wake()`` (call it
    after a rule changes: updates take effect at once).

    Runners of several nodes may share ``rules``: each firing is sent by the runner that
    claims it, as ``node`` (unique to this runner unless given), for ``lease_s`` seconds.
    """

    def __init__(
        self,
        backlog: EventSink,
        rules: Rules,
        pool: PoolConfig | None = None,
        *,
        clock: Callable[[], float] = time.time,
        max_sleep_s: float = 60.0,
        executor: Executor | None = None,
        node: str | None = None,
        lease_s: float = FIRING_LEASE_S,
    ) -> None:
        self.backlog = backlog
        #: who claims firings: two runners must never share it (a node's own claim is its
        #: again, for the resend of a failed send)
        self.node = node or f"schedules@{local_node_id()}+{uuid.uuid4().hex[:8]}"
        self.lease_s = lease_s
        #: where rule store calls run (None: the loop's default executor)
        self.executor = executor
        self.rules = rules
        self.pool = pool or PoolConfig()
        self.clock = clock
        #: the longest sleep between passes (the wall clock may jump)
        self.max_sleep_s = max_sleep_s
        self._task: asyncio.Task[None] | None = None
        self._wakeup: asyncio.Event | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    async def run_due(self, now: float) -> float | None:
        """Fire every rule owed a firing at ``now``; returns the next instant to look again
        (None: no enabled rule fires again)."""
        next_at = math.inf
        for rule, targets in await offload(self.executor, self.rules.schedules):
            firing = plan(rule, targets, now, self.pool)
            if firing.fire_at is not None:
                await self._fire(rule, firing, now)
            if firing.next_at is not None:
                next_at = min(next_at, firing.next_at)
        return None if next_at == math.inf else next_at

    async def _fire(self, rule: Rule, firing: Firing, now: float) -> None:
        assert firing.fire_at is not None
        claim = self.rules.claim_firing
        if not await offload(
            self.executor, claim, rule.name, firing.fire_at, self.node, now, self.lease_s
        ):
            return  # another node sends it, or sent it since schedules() was read
        for send in firing.sends:
            try:
                await self.backlog.put_event(send.function, send.payload, send.request_id)
            except Exception:
                # not marked fired: the next pass sends the firing again, under the same ids
                # (the claim stays this node's; if the node dies, another takes it after the lease)
                log.exception(
                    "schedule %s: could not send a firing to %s", rule.name, send.function
                )
                return
        await offload(self.executor, self.rules.mark_fired, rule.name, firing.fire_at)

    def start(self) -> None:
        """Run passes in the background until ``close()``."""
        self._loop = asyncio.get_running_loop()
        self._wakeup = asyncio.Event()
        self._task = asyncio.create_task(self._run(), name="warmstart-schedules")

    def wake(self) -> None:
        """Look at the rules again now (safe from any thread; a no-op when not started)."""
        if self._loop is not None and self._wakeup is not None and not self._loop.is_closed():
            self._loop.call_soon_threadsafe(self._wakeup.set)

    async def close(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._loop = None

    async def _run(self) -> None:
        assert self._wakeup is not None
        while True:
            self._wakeup.clear()
            try:
                next_at = await self.run_due(self.clock())
            except ServiceException as exc:  # the store is unreachable: a line, not a trace
                log.warning("schedules: a pass failed: %s", exc)
                next_at = None
            except Exception:
                log.exception("schedules: a pass failed")
                next_at = None
            delay = self.max_sleep_s if next_at is None else next_at - self.clock()
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._wakeup.wait(), min(max(delay, 0), self.max_sleep_s))


# -- the configuration file's [schedules] ---------------------------------------------------------


class ScheduleSpec(Protocol):
    """A ``[schedules.NAME]`` table as ``runtime.configfile`` reads it."""

    expression: str
    function: str
    input: str | None
    enabled: bool
    description: str | None


def sync_config(
    rules: Rules, schedules: Mapping[str, ScheduleSpec], pool: PoolConfig, now: float
) -> list[str]:
    """Make the configuration-managed rules exactly ``schedules`` (name -> ScheduleSpec):
    each rule's one target is its function (target Id = the function name). Returns the
    names of managed rules that left the configuration (deleted)."""
    wanted = []
    for name, spec in schedules.items():
        rule = Rule(
            name,
            spec.expression,
            ENABLED if spec.enabled else DISABLED,
            now,
            now,
            spec.description,
        )
        target = Target(spec.function, pool.function_arn(spec.function), spec.input)
        wanted.append((rule, target))
    return rules.sync_managed(CONFIG_MANAGER, wanted, now)
