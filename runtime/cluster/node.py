"""This node in a cluster: its heartbeat with its load, the live members it routes by, and
the sync invokes it forwards.

    every beat_s ── Members.beat(this node, its load) ── Members.live() ──▶ self.members
    Invoke ── route(function, members, here) ──▶ here: the engine
                                             └─▶ another node: forward(...) once, marked
                                                 X-Warmstart-Forwarded (never forwarded again)

A forwarded call carries the client's body and Lambda headers; with ``[auth]`` keys it is
signed again with the first configured key, since the client's SigV4 signature names this
node's host. The answer comes back as the other node gave it (status, payload, Lambda
headers). A node that cannot be reached is dropped from the view until its next beat, and the
call runs here instead: a call is forwarded at most once, and never lost to a dead node.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from concurrent.futures import Executor
from typing import Any, Final

import aiohttp

from ..engine import Engine
from ..errors import ServiceException
from ..sqlite import offload
from .members import Load, Member, Members
from .routing import route

__all__ = ["FORWARDED", "NODE_HEADER", "REVISION", "ClusterNode", "Forwarded", "engine_load"]

log = logging.getLogger("warmstart.cluster")

#: the header of a forwarded invoke: the node it came from (the receiver never forwards it)
FORWARDED: Final = "X-Warmstart-Forwarded"
#: the function's registry revision a forwarded call was routed on (the receiver catches up)
REVISION: Final = "X-Warmstart-Revision"
#: the answer's header naming the node that ran the call (cluster mode only)
NODE_HEADER: Final = "X-Warmstart-Node"
#: the request headers of Invoke that travel with a forwarded call
_CARRIED: Final = (
    "X-Amz-Invocation-Type",
    "X-Amz-Log-Type",
    "X-Amz-Client-Context",
    "Content-Type",
)
#: the answer's headers that come back
_RETURNED: Final = (
    "Content-Type",
    "X-Amz-Function-Error",
    "X-Amz-Log-Result",
    "X-Amz-Executed-Version",
    "x-amzn-RequestId",
    "x-amzn-ErrorType",
    NODE_HEADER,
)


class Forwarded:
    """Another node's answer to a forwarded invoke."""

    __slots__ = ("body", "headers", "node", "status")

    def __init__(self, node: str, status: int, headers: dict[str, str], body: bytes) -> None:
        self.node = node
        self.status = status
        self.headers = headers
        self.body = body


def engine_load(engine: Engine) -> Load:
    """What this node publishes: free environments (within the account concurrency and the
    memory budget), busy ones, waiting calls, idle warm environments per function."""
    pool = engine.pool
    busy = waiting = starting = 0
    used_mb = 0
    idle: dict[str, int] = {}
    memory = {config.name: config.memory_mb for config in engine.functions()}
    for name, stats in engine.stats().items():
        envs = stats["environments"]
        busy += envs["busy"]
        starting += envs["starting"]
        waiting += stats["waiting"]
        used_mb += (envs["busy"] + envs["starting"]) * memory.get(name, 128)
        if envs["ready"]:
            idle[name] = envs["ready"]
    free = pool.account_concurrency - busy - starting
    if pool.memory_budget_mb:
        free = min(free, (pool.memory_budget_mb - used_mb) // 128)
    return Load(free=max(0, free), busy=busy, waiting=waiting, idle=idle)


class ClusterNode:
    """This node's membership and routing over ``members`` (the shared store's registry).

    ``url`` is where the others reach this node; ``credentials`` sign forwarded calls when
    the service checks SigV4; ``forwarding`` off keeps every call here (the node is only
    listed). ``extra_load`` adds what the engine does not know (events, jobs).
    """

    def __init__(
        self,
        engine: Engine,
        members: Members,
        node_id: str,
        url: str,
        *,
        lease_s: float = 10.0,
        beat_s: float | None = None,
        credentials: tuple[str, str] | None = None,
        forwarding: bool = True,
        executor: Executor | None = None,
        clock: Callable[[], float] = time.time,
        extra_load: Callable[[], Mapping[str, int]] | None = None,
    ) -> None:
        self.engine = engine
        self.store = members
        self.id = node_id
        self.url = url.rstrip("/")
        self.lease_s = lease_s
        #: routing reads the others' load as of their last beat: beat often
        self.beat_s = beat_s if beat_s is not None else min(0.5, lease_s / 4)
        self.credentials = credentials
        #: whether sync invokes may go to other nodes (a shared Redis store: its nodes
        #: share the concurrency limits; processes on one SQLite file do not)
        self.forwarding = forwarding
        self.executor = executor
        self.clock = clock
        self.extra_load = extra_load
        self.started_at = clock()
        #: the live nodes as of the last beat (this one included)
        self.members: list[Member] = []
        self.counts = {"forwarded": 0, "received": 0, "unreachable": 0}
        #: run after every beat (the token pool gives back spare tokens)
        self.on_beat: list[Callable[[], Awaitable[None]]] = []
        self._session: aiohttp.ClientSession | None = None
        self._task: asyncio.Task[None] | None = None

    # -- lifecycle ----------------------------------------------------------------------------

    async def start(self) -> ClusterNode:
        await self.beat()
        self._session = aiohttp.ClientSession(
            timeout=aiohttp.ClientTimeout(total=None, sock_connect=2.0),
            connector=aiohttp.TCPConnector(limit=0, keepalive_timeout=30),
        )
        self._task = asyncio.create_task(self._run(), name="warmstart-cluster")
        return self

    async def close(self) -> None:
        """Stop beating and leave the registry at once (the others stop routing here)."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self._session is not None:
            await self._session.close()
            self._session = None
        with contextlib.suppress(Exception):
            await offload(self.executor, self.store.leave, self.id)

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.beat_s)
            try:
                await self.beat()
                for hook in self.on_beat:
                    await hook()
            except Exception as exc:  # the store is down: keep the last view, try again
                log.warning("cluster: node %s could not beat: %s", self.id, exc)

    def member(self) -> Member:
        load = engine_load(self.engine)
        if self.extra_load is not None:
            extra = self.extra_load()
            load.events = extra.get("events", 0)
            load.jobs = extra.get("jobs", 0)
        return Member(id=self.id, url=self.url, started_at=self.started_at, load=load)

    async def beat(self) -> list[Member]:
        """Publish this node's load; refresh the view of the live nodes."""
        now = self.clock()
        await offload(self.executor, self.store.beat, self.member(), now)
        self.members = await offload(self.executor, self.store.live, now, self.lease_s)
        return self.members

    # -- routing ------------------------------------------------------------------------------

    def target(self, function: str) -> Member | None:
        """The node a call of ``function`` should go to, or None for this one."""
        if not self.forwarding or len(self.members) < 2:
            return None
        idle = self.engine.stats().get(function, {}).get("environments", {}).get("ready", 0)
        if idle:
            return None  # a warm environment here: nothing beats it
        chosen = route(function, self.members, self.id)
        if chosen == self.id:
            return None
        return next((m for m in self.members if m.id == chosen), None)

    async def forward(
        self,
        member: Member,
        path: str,
        query: str,
        headers: Mapping[str, str],
        body: bytes,
        extra: Mapping[str, str] | None = None,
    ) -> Forwarded | None:
        """Send an invoke to ``member``; None when it cannot be reached (then run it here).
        A call the other node accepted is its to answer: its answer comes back whatever it
        is."""
        if self._session is None:
            return None
        url = member.url + path + (f"?{query}" if query else "")
        out = {name: headers[name] for name in _CARRIED if name in headers}
        out[FORWARDED] = self.id
        if extra:
            out.update(extra)
        if self.credentials is not None:
            from ..cli.client import sigv4_headers

            out.update(sigv4_headers("POST", url, body, self.credentials, self._region()))
        try:
            async with self._session.post(url, data=body, headers=out) as response:
                payload = await response.read()
                back = {k: response.headers[k] for k in _RETURNED if k in response.headers}
                self.counts["forwarded"] += 1
                return Forwarded(member.id, response.status, back, payload)
        except aiohttp.ClientConnectorError as exc:  # never reached it: nothing ran there
            log.warning("cluster: node %s unreachable (%s); running here", member.id, exc)
            self.counts["unreachable"] += 1
            self.members = [m for m in self.members if m.id != member.id]
            return None
        except (aiohttp.ClientError, asyncio.TimeoutError) as exc:
            # it had the call and went away: the call may have run there, so it is not run
            # again here; the client gets one answer, this error
            self.members = [m for m in self.members if m.id != member.id]
            raise ServiceException(
                f"the node {member.id} running this invocation went away before answering "
                f"({type(exc).__name__})"
            ) from exc

    def _region(self) -> str:
        return self.engine.pool.region

    def describe(self) -> list[dict[str, Any]]:
        """``GET /warmstart/nodes``: the live nodes with their load."""
        now = self.clock()
        out = []
        for m in self.members:
            load = m.load
            out.append(
                {
                    "NodeId": m.id,
                    "Url": m.url,
                    "Self": m.id == self.id,
                    "StartedAt": m.started_at,
                    "LastSeenSecondsAgo": round(max(0.0, now - m.seen_at), 3),
                    "FreeEnvironments": load.free,
                    "BusyEnvironments": load.busy,
                    "WaitingInvocations": load.waiting,
                    "IdleWarm": dict(load.idle),
                    "AsyncInFlight": load.events,
                    "BatchRunning": load.jobs,
                }
            )
        return out
