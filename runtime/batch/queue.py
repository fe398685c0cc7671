"""The embedded batch queue: the stores, its runner, and the engine's backlog in one object.

    engine.invoke ── Event ──▶ BatchQueue.put_event ──▶ EventBacklog (runtime.asyncinvoke.backlog):
                                                      event store (durable) ──▶ event_listeners()
                  ── batch function / spill_on_timeout ──▶ BatchQueue.spill ──▶ a job
    library       ── submit / describe / cancel / terminate ──▶ store (+ the runner's kills)
    JobRunner     ── claims and runs the jobs (runtime.batch.runner)

``async with BatchQueue.open(engine) as queue`` opens the batch store and the event store (two
connections to one SQLite file) at their default path,
attaches the queue to the engine (``engine.backlog``), recovers what a previous run left, and
starts the runner.  Leaving the block stops the runner (see :meth:`BatchQueue.close`).

A spilled call becomes a job on the queue ``warmstart-default`` with the job definition
``warmstart-fn-<function>`` (both made on first use), sized by the function's memory, and
tagged with where it came from: ``warmstart:origin`` (``invoke`` or ``spill_on_timeout``) and
``warmstart:request-id`` (the call's request id), both visible in DescribeJobs.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Final, TypeVar

import orjson

from ..asyncinvoke.backlog import EventBacklog
from ..asyncinvoke.store import EventStore, SqliteEventStore
from ..config import BatchConfig
from ..engine import Engine
from .model import (
    ACTIVE,
    FINAL_STATUSES,
    FUNCTION_PARAMETER,
    ClientException,
    ContainerOverrides,
    CreateJobQueueRequest,
    JobDetail,
    RegisterJobDefinitionRequest,
    ResourceRequirement,
    SubmitJobRequest,
    parse,
)
from .runner import JobRunner
from .store import STORE_FILE as STORE_FILE  # re-exported: its home was this module
from .store import SqliteStore, Store, default_data_dir

T = TypeVar("T")

DEFAULT_QUEUE: Final = "warmstart-default"
FUNCTION_DEFINITION_PREFIX: Final = "warmstart-fn-"
ORIGIN_TAG: Final = "warmstart:origin"
REQUEST_ID_TAG: Final = "warmstart:request-id"


class JobHandle:
    """A submitted job: its id, its state, and its end awaited."""

    def __init__(self, queue: BatchQueue, job_id: str) -> None:
        self.queue = queue
        self.job_id = job_id

    async def describe(self) -> JobDetail:
        return await self.queue.describe(self.job_id)

    async def status(self) -> str:
        return (await self.describe()).status

    async def wait(self, timeout: float | None = None) -> JobDetail:
        """The job once SUCCEEDED or FAILED. Woken when this process's runner ends an
        attempt, and polling meanwhile (another process may run it). Raises TimeoutError
        after ``timeout`` seconds."""
        loop = asyncio.get_running_loop()
        deadline = None if timeout is None else loop.time() + timeout
        while True:
            changed = self.queue._next_change()
            detail = await self.describe()
            if detail.status in FINAL_STATUSES:
                return detail
            wait = self.queue.poll_s
            if deadline is not None:
                left = deadline - loop.time()
                if left <= 0:
                    raise TimeoutError(f"job {self.job_id} is still {detail.status}")
                wait = min(wait, left)
            await asyncio.wait([changed], timeout=wait)

    async def result(self, attempt: int | None = None) -> bytes | None:
        """A function job's response (JSON bytes, or Lambda's error document) of its last
        attempt that reported one; None for a container job or before any attempt ended."""
        return await self.queue._call(self.queue.store.read_result, self.job_id, attempt)

    async def log(self, attempt: int | None = None) -> bytes:
        """The kept output of an attempt (default: the latest)."""
        return await self.queue._call(self.queue.store.read_log, self.job_id, attempt)

    def __repr__(self) -> str:
        return f"<JobHandle {self.job_id}>"


class BatchQueue:
    """The durable queue of one engine: Event invocations (in ``event_store``), spilled calls
    and submitted jobs (in ``store``).

    ``config`` sizes the runner's compute environment (:class:`BatchConfig`); ``clock``
    (epoch seconds) stamps everything stored, and ``runner_options`` go to
    :class:`JobRunner` (``poll_s``, ``heartbeat_s``, ``stale_after_s``, ...).
    ``event_listeners`` are called with no arguments after each event is stored: an event
    dispatcher registers itself there to be woken.
    """

    def __init__(
        self,
        engine: Engine,
        store: Store,
        event_store: EventStore,
        *,
        node_id: str | None = None,
        config: BatchConfig | None = None,
        clock: Callable[[], float] = time.time,
        own_store: bool = False,
        **runner_options: Any,
    ) -> None:
        self.engine = engine
        self.store = store
        self.event_store = event_store
        self.config = config or BatchConfig()
        self.clock = clock
        self.runner = JobRunner(
            engine,
            store,
            events=event_store,
            node_id=node_id,
            config=self.config,
            clock=clock,
            **runner_options,
        )
        self.runner.listeners.append(self._notify)
        self.poll_s = self.runner.poll_s
        #: Event invocations go through the async invocations' own backlog, on the event store
        self.events = EventBacklog(event_store, clock=clock)
        self.event_listeners = self.events.event_listeners
        self._own_store = own_store
        self._defined: set[str] = set()
        self._queue_ready = False
        self._change: asyncio.Future[None] | None = None
        self._started = False
        self._closed = False

    @classmethod
    def open(
        cls,
        engine: Engine,
        data_dir: str | os.PathLike[str] | None = None,
        *,
        config: BatchConfig | None = None,
        **options: Any,
    ) -> BatchQueue:
        """A queue on ``<data_dir>/batch.sqlite3`` (default: ``config.data_dir``, else
        :func:`default_data_dir`), in the engine's region and account; closing the queue
        closes both stores."""
        config = config or BatchConfig()
        path = Path(data_dir or config.data_dir or default_data_dir()) / STORE_FILE
        store = SqliteStore(path, region=engine.pool.region, account_id=engine.pool.account_id)
        try:
            events = SqliteEventStore(path)
        except BaseException:
            store.close()
            raise
        return cls(engine, store, events, config=config, own_store=True, **options)

    @property
    def node_id(self) -> str:
        return self.runner.node_id

    # -- lifecycle ------------------------------------------------------------------------------

    def attach(self) -> None:
        """Become the engine's backlog: Event invocations and batch calls come here."""
        self.engine.backlog = self

    async def start(self) -> BatchQueue:
        """Attach to the engine, recover what dead runners left, start the runner."""
        self.attach()
        await self.runner.start()
        self._started = True
        return self

    async def close(self, drain_s: float = 0.0) -> None:
        """Detach, stop the runner (running attempts get ``drain_s`` seconds, then are killed
        and left to recovery: see runtime.batch.runner), close the stores if they are ours."""
        if self._closed:
            return
        self._closed = True
        if self.engine.backlog is self:
            self.engine.backlog = None
        if self._started:
            self._started = False
            await self.runner.close(drain_s)
        self._notify()
        if self._own_store:
            self.event_store.close()
            self.store.close()

    async def __aenter__(self) -> BatchQueue:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # -- the engine's backlog -------------------------------------------------------------------

    async def put_event(self, function: str, payload: bytes, request_id: str) -> None:
        """Store an Event invocation (durable when this returns), then wake the listeners."""
        await self.events.put_event(function, payload, request_id)

    async def spill(
        self, function: str, payload: bytes, *, origin: str, request_id: str
    ) -> JobHandle:
        """Submit a call of ``function`` as a batch job (see the module docstring)."""
        memory = self.engine.get_function(function).memory_mb
        job_id = await self._call(self._spill, function, payload, origin, request_id, memory)
        self.runner.wake()
        return JobHandle(self, job_id)

    def _spill(
        self, function: str, payload: bytes, origin: str, request_id: str, memory: int
    ) -> str:
        now = self.clock()
        request = SubmitJobRequest(
            job_name=_job_name(function),
            job_queue=DEFAULT_QUEUE,
            job_definition=self._function_definition(function, now),
            container_overrides=ContainerOverrides(
                resource_requirements=[
                    ResourceRequirement(type="VCPU", value="1"),
                    ResourceRequirement(type="MEMORY", value=str(memory)),
                ]
            ),
            tags={ORIGIN_TAG: origin, REQUEST_ID_TAG: request_id},
        )
        self._default_queue(now)
        return self.store.submit_job(request, now, payload=payload).job_id

    def _function_definition(self, function: str, now: float) -> str:
        name = FUNCTION_DEFINITION_PREFIX + function
        if name in self._defined:
            return name
        found = self.store.describe_job_definitions(
            job_definition_name=name, status=ACTIVE, max_results=1
        )
        if not found.items:
            request = RegisterJobDefinitionRequest(
                job_definition_name=name,
                type="container",
                parameters={FUNCTION_PARAMETER: function},
            )
            self.store.register_job_definition(request, now)
        self._defined.add(name)
        return name

    def _default_queue(self, now: float) -> None:
        if self._queue_ready:
            return
        try:
            request = CreateJobQueueRequest(job_queue_name=DEFAULT_QUEUE, priority=1)
            self.store.create_job_queue(request, now)
        except ClientException:
            if not self.store.describe_job_queues([DEFAULT_QUEUE]).items:
                raise
        self._queue_ready = True

    # -- for library users ----------------------------------------------------------------------

    async def submit(
        self, request: SubmitJobRequest | Mapping[str, Any], *, payload: Any = None
    ) -> JobHandle:
        """SubmitJob (``request``: the shape, or the API's camelCase dict). ``payload`` is a
        function job's event: JSON bytes or str, or an object to encode."""
        if not isinstance(request, SubmitJobRequest):
            request = parse(SubmitJobRequest, dict(request))
        body = payload
        if payload is not None and not isinstance(payload, bytes):
            body = payload.encode() if isinstance(payload, str) else orjson.dumps(payload)
        answer = await self._call(self.store.submit_job, request, self.clock(), payload=body)
        self.runner.wake()
        return JobHandle(self, answer.job_id)

    def handle(self, job_id: str) -> JobHandle:
        return JobHandle(self, job_id)

    async def describe(self, job_id: str) -> JobDetail:
        """DescribeJobs for one job; ClientException when there is no such job."""
        found = await self._call(self.store.describe_jobs, [job_id])
        if not found:
            raise ClientException(f"Job {job_id} does not exist")
        return found[0]

    async def cancel(self, job_id: str, reason: str) -> None:
        """CancelJob: fails a job that has not started (a started one is left alone)."""
        await self._call(self.store.cancel_job, job_id, reason, self.clock())
        self._notify()

    async def terminate(self, job_id: str, reason: str) -> None:
        """TerminateJob: fails a job not yet started, stops a running one (SIGTERM, then
        SIGKILL after the kill grace) and fails it without retry."""
        orders = await self._call(self.store.terminate_job, job_id, reason, self.clock())
        self.runner.kill(orders)
        self._notify()

    # -- plumbing -------------------------------------------------------------------------------

    async def _call(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """A store call off the event loop (a write may wait for another process's lock)."""
        return await asyncio.to_thread(fn, *args, **kwargs)

    def _next_change(self) -> asyncio.Future[None]:
        if self._change is None or self._change.done():
            self._change = asyncio.get_running_loop().create_future()
        return self._change

    def _notify(self) -> None:
        change, self._change = self._change, None
        if change is not None and not change.done():
            change.set_result(None)

    def stats(self) -> dict[str, Any]:
        return self.runner.stats()

    def __repr__(self) -> str:
        counts = self.runner.counts
        return (
            f"<BatchQueue node={self.node_id} running={self.runner.running} "
            f"claimed={counts['claimed']} finished={counts['finished']} "
            f"listeners={len(self.event_listeners)}>"
        )


def _job_name(function: str) -> str:
    """The function's name, which a job name can be unless it starts with '-' or '_'."""
    return function if function[:1].isalnum() else f"fn{function}"
