"""Test doubles: the real ``Engine`` with no process and no container.

    Engine(pool, launchers={"process": FakeLauncher(handler)})
       │ open / prepare / warm / stop / retire / close ──▶ FakeLauncher: each call recorded
       │ start(fn, env, env_config) ──▶ FakeLauncher: held until release() (hold_starts), then
       │                                a Worker (the engine's own class) on a FakeAgent
       ▼
    Worker.send(INIT / INVOKE frame) ──▶ FakeAgent, in place of the socket and the agent:
       │   INIT    init_errors[name]? ──▶ INIT_OK, INIT_ERROR, or it dies, or it hangs
       │   INVOKE  handler(event, LambdaContext) ──▶ RESULT / ERROR as the agent encodes them
       ▼   (each answer from a later loop callback, as from a socket)
    Worker.data_received ──▶ Environment.frame_received ──▶ the engine's result path
    Worker.connection_lost, then Worker.exited ──▶ Environment.worker_lost: a crash, a kill

Everything from the socket up is the code under test: the ``Worker``'s decoder, handshake and
loss, and the engine's dispatch, crash, timeout, queue and stop paths over the scheduler core.
The handler decides each answer, as the agent would give it:

    returns a value           RESULT, the value as JSON (Runtime.MarshalError if it is not)
    raises an Exception       ERROR with the agent's document (errorType the class name):
                              a function error
    raises MemoryError        ERROR Runtime.OutOfMemory, then the worker dies (SIGKILL)
    raises Crash(code)        the worker dies mid-call, with that exit code
    raises Hang()             no answer: the engine's deadline ends it (Sandbox.Timedout)

An async handler is awaited, so a test can hold a call busy until it sets an ``asyncio.Event``.
The same ``Crash`` and ``Hang``, or any exception, set in ``init_errors`` script a function's
init.  ``hold_starts=True`` keeps every cold start waiting until ``release()``, so a test
decides when environments become ready without sleeping; ``wait_until`` waits for the record.

A function registered on such an engine still needs ``code``: any directory (it is not read).
"""

from __future__ import annotations

import asyncio
import inspect
import signal
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import orjson

from .agent import protocol as P
from .agent.worker import (
    INIT_ERROR_CAP,
    RESPONSE_LIMIT,
    TOO_LARGE_BODY,
    InitError,
    LambdaContext,
    error_body,
    exception_body,
    marshal,
)
from .config import FunctionConfig
from .pools.launcher import Function, LaunchContext, Slot
from .pools.process import Worker

#: what a fake worker runs for each invocation: ``(event, context) -> result`` (or awaitable)
Handler = Callable[[Any, LambdaContext], Any]

__all__ = ["Crash", "FakeAgent", "FakeLauncher", "FakeWorker", "Handler", "Hang", "echo"]


def echo(event: Any, context: LambdaContext) -> Any:
    """The default handler: the event back."""
    return event


class Crash(BaseException):
    """Raised by a handler (or set in ``init_errors``): the worker dies there with ``code``
    as its exit code, negative for the signal that killed it (``-signal.SIGSEGV``).

    A BaseException, so that a handler's ``except Exception`` does not stop it."""

    def __init__(self, code: int = 1) -> None:
        super().__init__(code)
        self.code = code


class Hang(BaseException):
    """Raised by a handler (or set in ``init_errors``): the worker never answers."""


@dataclass(eq=False)
class FakeWorker:
    """One start the launcher was asked for, and what became of it."""

    function: str
    generation: int
    env_id: int
    env_config: P.EnvConfig
    #: the engine's handle, once the start got past a hold
    worker: Worker | None = None
    #: the events it was invoked with, in order
    events: list[Any] = field(default_factory=list)
    #: "" while it runs; then "exited" (by itself: closed, or after an init error),
    #: "killed" (the engine's SIGKILL), "crashed" (Crash, MemoryError) or "cancelled" (while
    #: its start was held)
    ended: str = ""
    exit_code: int | None = None

    @property
    def alive(self) -> bool:
        return not self.ended


class FakeAgent(asyncio.Transport):
    """A worker's socket and agent in one: the ``Worker`` writes frames to it and hears back
    through its protocol methods, always from a later loop callback, as from a socket."""

    def __init__(
        self,
        launcher: FakeLauncher,
        record: FakeWorker,
        worker: Worker,
        loop: asyncio.AbstractEventLoop,
    ) -> None:
        super().__init__()
        self._launcher = launcher
        self._record = record
        self._worker = worker
        self._loop = loop
        self._decoder = P.Decoder()
        self._handler: Handler = echo
        self._context_fields = ("", "", "", "", "", "")
        self._task: asyncio.Task[None] | None = None
        #: an invocation is running or hung: the agent reads no EOF until it answers
        self._busy = False
        #: it answered with FATAL and dies now, whether or not the engine kills it first
        self._fatal = False
        self._disconnected = False

    # -- the transport, as the Worker uses it -----------------------------------------------

    def write(self, data: bytes | bytearray | memoryview) -> None:
        if self._disconnected:
            return
        for frame in self._decoder.feed(bytes(data)):
            self._loop.call_soon(self._received, frame)

    def is_closing(self) -> bool:
        return self._disconnected

    def close(self) -> None:
        """The engine closed its end: the agent exits once its current call is done."""
        self._disconnect()
        if not self._busy:
            self._exit("exited", 0)

    def abort(self) -> None:
        self._disconnect()
        self._exit("crashed" if self._fatal else "killed", -signal.SIGKILL)

    # -- the agent ----------------------------------------------------------------------------

    def _received(self, frame: P.Frame) -> None:
        if self._disconnected:
            return
        if frame.kind == P.INIT:
            self._init(orjson.loads(frame.fields[0]))
        elif frame.kind == P.INVOKE and not self._busy:
            self._busy = True
            self._task = self._loop.create_task(self._invoke(frame))
        else:  # the agent refuses what is out of step, and exits
            self._die("exited", 1)

    def _init(self, config: dict[str, Any]) -> None:
        name = config["function_name"]
        environ = config.get("env", {}).get("environ", {})
        config["log_stream_name"] = environ.get("AWS_LAMBDA_LOG_STREAM_NAME", "")
        self._context_fields = LambdaContext.static_fields(config)
        self._handler = self._launcher.handler_for(name)
        error = self._launcher.init_errors.get(name)
        if error is None:
            self._send(P.encode(P.INIT_OK, (b"",)))
        elif isinstance(error, Crash):
            self._die("crashed", error.code)
        elif not isinstance(error, Hang):
            self._send(P.encode(P.INIT_ERROR, (_init_document(error), b"")))
            self._die("exited", 1)

    async def _invoke(self, frame: P.Frame) -> None:
        rid_b, payload, extra = frame.fields
        rid = rid_b.decode()
        event = orjson.loads(payload)
        self._record.events.append(event)
        self._launcher._note("invoke", self._record.function, self._record.env_id)
        context = LambdaContext(self._context_fields, rid, frame.a, extra)
        t0 = time.perf_counter_ns()
        try:
            result = self._handler(event, context)
            if inspect.isawaitable(result):
                result = await result
        except Crash as exc:
            self._die("crashed", exc.code)
            return
        except Hang:
            return  # busy for good: only a kill ends it
        except MemoryError:
            message = f"RequestId: {rid} Error: Runtime exited with error: signal: killed"
            self._fatal = True
            self._answer(P.ERROR, rid_b, error_body("Runtime.OutOfMemory", message), t0, P.FATAL)
            self._die("crashed", -signal.SIGKILL)
            return
        except Exception as exc:
            log = f"[ERROR] {type(exc).__name__}: {exc}\n".encode()
            self._answer(P.ERROR, rid_b, exception_body(exc, rid), t0, log=log)
            return
        kind, body = _marshalled(result, rid)
        self._answer(kind, rid_b, body, t0)

    def _answer(
        self, kind: int, rid_b: bytes, body: bytes, t0: int, flags: int = 0, log: bytes = b""
    ) -> None:
        self._busy = False
        duration = time.perf_counter_ns() - t0
        self._send(P.encode(kind, (rid_b, body, log), duration, 0, flags))
        if self._disconnected:  # closed while it ran: EOF is read now
            self._exit("exited", 0)

    def _send(self, frame: bytes) -> None:
        if not self._disconnected:
            self._worker.data_received(frame)

    # -- ends ---------------------------------------------------------------------------------

    def _die(self, ended: str, code: int) -> None:
        """The process ends by itself: the engine reads EOF, then learns its exit code."""
        self._disconnect()
        self._exit(ended, code)

    def _disconnect(self) -> None:
        if not self._disconnected:
            self._disconnected = True
            self._loop.call_soon(self._worker.connection_lost, None)

    def _exit(self, ended: str, code: int) -> None:
        record = self._record
        if record.ended:
            return
        record.ended, record.exit_code = ended, code
        task = self._task
        if task is not None and task is not asyncio.current_task():
            task.cancel()
        self._loop.call_soon(self._exited, code)

    def _exited(self, code: int) -> None:
        if not self._worker.exited.done():
            self._worker.exited.set_result(code)
        self._launcher._note("exit", self._record.function, self._record.env_id, code)


def _marshalled(result: Any, rid: str) -> tuple[int, bytes]:
    """The agent's answer for a handler's return value."""
    try:
        body = marshal(result)
    except (TypeError, ValueError) as exc:
        message = f"Unable to marshal response: {exc}"
        return P.ERROR, error_body("Runtime.MarshalError", message, rid)
    if len(body) > RESPONSE_LIMIT:
        return P.ERROR, TOO_LARGE_BODY
    return P.RESULT, body


def _init_document(error: BaseException) -> bytes:
    """The agent's INIT_ERROR document for an init that raised ``error``."""
    if isinstance(error, InitError):  # Runtime.ImportModuleError, HandlerNotFound, ...
        return error.document(INIT_ERROR_CAP)
    return error_body(type(error).__name__, str(error), cap=INIT_ERROR_CAP)


class FakeLauncher:
    """A ``Launcher`` whose workers run handlers in this process.

    It is its own factory: pass the instance where a ``LAUNCHERS`` entry goes, as in
    ``Engine(launchers={"process": fake})``.  ``handlers`` maps function names to their
    handler, ahead of ``handler``; both are read when a worker initializes, as code is.
    ``init_errors`` maps function names to what their init raises, on every start until the
    entry is removed.

    The record: ``history`` holds every call and event in order (``("start", name, env_id)``,
    ``("invoke", ...)``, ``("exit", name, env_id, code)``, ...), beside ``prepared``,
    ``warmed``, ``started``, ``stopped``, ``retired`` and the ``opened``/``closed`` counts.
    """

    def __init__(
        self,
        handler: Handler = echo,
        *,
        handlers: Mapping[str, Handler] | None = None,
        init_errors: Mapping[str, BaseException] | None = None,
        hold_starts: bool = False,
    ) -> None:
        self.handler = handler
        self.handlers = dict(handlers or {})
        self.init_errors = dict(init_errors or {})
        self.contexts: list[LaunchContext] = []
        self.history: list[tuple[Any, ...]] = []
        self.prepared: list[FunctionConfig] = []
        self.warmed: list[tuple[str, int]] = []
        self.started: list[FakeWorker] = []
        self.stopped: list[FakeWorker] = []
        self.retired: list[tuple[str, int]] = []
        self.opened = 0
        self.closed = 0
        self._holding = hold_starts
        self._credits = 0
        self._held: deque[asyncio.Future[None]] = deque()
        self._watchers: list[asyncio.Future[None]] = []
        self._records: dict[Worker, FakeWorker] = {}

    def __call__(self, context: LaunchContext) -> FakeLauncher:
        self.contexts.append(context)
        return self

    # -- the Launcher protocol -------------------------------------------------------------------

    async def open(self) -> None:
        self.opened += 1
        self._note("open")

    async def prepare(self, config: FunctionConfig) -> None:
        self.prepared.append(config)
        self._note("prepare", config.name)

    async def warm(self, fn: Function) -> None:
        self.warmed.append((fn.config.name, fn.generation))
        self._note("warm", fn.config.name, fn.generation)

    async def start(self, fn: Function, env: Slot, env_config: P.EnvConfig) -> Worker:
        record = FakeWorker(fn.config.name, fn.generation, env.id, env_config)
        self.started.append(record)
        self._note("start", record.function, record.env_id)
        try:
            await self._cold_start()
        except asyncio.CancelledError:
            record.ended = "cancelled"
            self._note("cancelled", record.function, record.env_id)
            raise
        loop = asyncio.get_running_loop()
        worker = record.worker = Worker(env, loop)
        self._records[worker] = record
        worker.connection_made(FakeAgent(self, record, worker, loop))
        init = fn.spec.init_config.copy()
        init["env"] = env_config
        try:
            await worker.initialize(init)
        except BaseException:
            worker.kill()
            raise
        return worker

    async def stop(self, worker: Worker) -> None:
        record = self._records.get(worker)
        if record is not None:
            self.stopped.append(record)
            self._note("stop", record.function, record.env_id)
        await worker.stop()

    async def retire(self, fn: Function, generation: int) -> None:
        self.retired.append((fn.config.name, generation))
        self._note("retire", fn.config.name, generation)

    async def close(self) -> None:
        self.closed += 1
        self._note("close")

    # -- scripting and looking -------------------------------------------------------------------

    def handler_for(self, function: str) -> Handler:
        return self.handlers.get(function, self.handler)

    def hold(self) -> None:
        """From now on, cold starts wait for ``release()``."""
        self._holding = True

    def release(self, n: int = 1) -> None:
        """Let ``n`` cold starts go on, the longest held first; a release ahead of a start
        lets it pass at once."""
        self._credits += n
        while self._credits and self._held:
            waiter = self._held.popleft()
            if not waiter.done():
                waiter.set_result(None)
                self._credits -= 1

    def release_all(self) -> None:
        """Let every held cold start go on, and stop holding."""
        self._holding = False
        while self._held:
            waiter = self._held.popleft()
            if not waiter.done():
                waiter.set_result(None)

    @property
    def held(self) -> int:
        """Cold starts waiting for a release."""
        return sum(not waiter.done() for waiter in self._held)

    @property
    def live(self) -> list[FakeWorker]:
        """Workers started and not ended."""
        return [record for record in self.started if record.worker is not None and record.alive]

    async def wait_until(self, predicate: Callable[[], bool]) -> None:
        """Return once ``predicate()`` holds, checked again at each entry of the record (a
        predicate that never holds waits for good: bound the test)."""
        while not predicate():
            watcher = asyncio.get_running_loop().create_future()
            self._watchers.append(watcher)
            await watcher

    def _note(self, *entry: Any) -> None:
        self.history.append(entry)
        watchers, self._watchers = self._watchers, []
        for watcher in watchers:
            if not watcher.done():
                watcher.set_result(None)

    async def _cold_start(self) -> None:
        if not self._holding:
            return
        if self._credits:
            self._credits -= 1
            return
        waiter = asyncio.get_running_loop().create_future()
        self._held.append(waiter)
        self._note("held", len(self._held))
        try:
            await waiter
        except asyncio.CancelledError:
            if waiter.done() and not waiter.cancelled():
                self.release()  # released and cancelled at once: the release goes on
            raise

    def __repr__(self) -> str:
        return (
            f"<FakeLauncher started={len(self.started)} live={len(self.live)} "
            f"held={self.held} stopped={len(self.stopped)} retired={len(self.retired)}>"
        )
