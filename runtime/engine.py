"""The engine: the only place that awaits I/O.

    await engine.invoke("fn", event)
        │ payload checked once (JSON, size); never decoded into objects kept here
        ▼
    Scheduler core (sans-I/O, `now` passed in) ──▶ actions
        │ DISPATCH    write an INVOKE frame to a warm worker
        │ COLD_START  fork from the template (or spawn), then `ready` → DISPATCH
        │ QUEUE / THROTTLE   wait for capacity / refuse with TooManyRequestsException
        │ KILL        deadline passed: SIGKILL the worker, answer Sandbox.Timedout
        │ STOP / EVICT       close an environment (keepalive, max uses, generation, memory)
        │ SPILL       a batch function: hand over to the batch queue
        ▼
    Worker (unix socket) ──RESULT / ERROR frame──▶ InvokeResult, REPORT line, metering
        └─ `release` (or `crashed`) back into the core, which may dispatch the next waiter

One timer follows the core's earliest deadline; when it fires the engine calls
``advance(now)`` and carries out what comes back.

Environments start and stop through a ``Launcher`` per backend (``pools.launcher``: processes
forked from a template or spawned, containers); invocations go to the ``Worker`` directly.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import shutil
import signal
import time
from collections.abc import Awaitable, Mapping
from typing import Any, Protocol

import orjson

from . import scheduler as S
from .agent import protocol as P
from .code import (
    drained_code,
    make_work_dir,
    prepare_code,
    remove_code,
    remove_dead_work_dirs,
)
from .config import FunctionConfig, PoolConfig
from .environment import Call, Environment, EnvStatus, FunctionState
from .errors import (
    BatchUnavailableException,
    InvalidParameterValueException,
    InvalidRequestContentException,
    RequestTooLargeException,
    ResourceConflictException,
    ResourceNotFoundException,
    ServiceException,
    TooManyRequestsException,
    WarmstartError,
)
from .node import local_node_id
from .pools.launcher import LAUNCHERS, LaunchContext, Launcher, LauncherFactory
from .pools.process import NODE_RUNTIME_JS, FunctionSpec, InitFailed, Worker, python_for
from .result import Accepted, InvokeResult, Report
from .stamps import iso_now
from .stamps import request_id as new_request_id
from .tasks import TaskSet
from .wording import THROTTLE_REASONS, error_doc, exit_description, too_large

#: how long the answer of a crashed call waits for its worker's exit code (a stopped template
#: or a slow container inspect must not hold the caller)
EXIT_REPORT_WAIT_S = 2.0
SYNC_PAYLOAD_LIMIT = 6_291_456
ASYNC_PAYLOAD_LIMIT = 1_048_576
INVOCATION_TYPES = ("RequestResponse", "Event", "DryRun")


class JobHandle(Protocol):
    """A batch job a call became: its id, and its end awaited (see runtime.batch)."""

    job_id: str


class Backlog(Protocol):
    """Where the engine sends what it does not run at once: Event invocations (durably, before
    Invoke answers 202) and calls of batch functions, or of ``spill_on_timeout`` functions that
    timed out (a batch job each, once).  ``runtime.batch`` provides one."""

    async def put_event(self, function: str, payload: bytes, request_id: str) -> None: ...

    async def spill(
        self, function: str, payload: bytes, *, origin: str, request_id: str
    ) -> JobHandle: ...


class Admission(Protocol):
    """A concurrency check beyond this engine's own (several nodes' shared limits):
    ``take`` (no I/O; None when it cannot say yes at once) or else ``admit`` before a call is
    queued (raising ``TooManyRequestsException`` to throttle it), ``give`` with what either
    returned once the call is done: what it returns, if anything, is awaited before the
    answer goes out (a token handed back to the others)."""

    def take(self, function: str) -> str | None: ...

    async def admit(self, function: str) -> str: ...

    def give(self, scope: str) -> Awaitable[None] | None: ...


class Engine:
    """Runs registered functions in warm environments with Lambda's semantics.

    Use as ``async with Engine() as engine``; see README for the tour.
    """

    def __init__(
        self,
        pool: PoolConfig | None = None,
        *,
        scheduler: type[S.SchedulerPy] | None = None,
        spill: bool = True,
        launchers: Mapping[str, LauncherFactory] | None = None,
    ) -> None:
        self.pool = pool or PoolConfig()
        #: ``FunctionConfig.backend`` → the factory of its launcher; ``LAUNCHERS`` unless given
        #: (a test double such as ``runtime.testing.FakeLauncher`` in place of a backend)
        self._factories = launchers
        #: False runs batch functions (timeout_s > 900) here like any other: the batch runner's
        #: own engine, which must not hand its work back to the queue it serves
        self.spill = spill
        self._core = (scheduler or S.Scheduler)(
            account_limit=self.pool.account_concurrency,
            cold_start_cap=self.pool.cold_start_cap,
            memory_budget_mb=self.pool.memory_budget_mb,
            max_queue=self.pool.max_queue,
            queue_timeout=self.pool.queue_timeout_s,
        )
        #: the running loop, from start() on
        self._loop: asyncio.AbstractEventLoop
        self._functions: dict[str, FunctionState] = {}
        self._envs: dict[int, Environment] = {}
        self._calls: dict[int, Call] = {}
        self._req_ids = itertools.count(1)
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at = float("inf")
        self._tasks = TaskSet()
        self._work_dir = ""
        self._own_work_dir = False
        self._closed = False
        #: ``FunctionConfig.backend`` → its launcher, made at start
        self._launchers: dict[str, Launcher] = {}
        self._started = False
        #: names this engine's containers (their labels), so a later run can remove leftovers
        self.node_id = local_node_id()
        self.log_listeners: list[Any] = []
        #: the durable queue for Event invocations and batch work (runtime.batch), if attached
        self.backlog: Backlog | None = None
        #: the cluster-wide concurrency check (None on one node: the core's limits suffice)
        self.admission: Admission | None = None

    # -- lifecycle --------------------------------------------------------------------------

    async def start(self) -> Engine:
        self._loop = asyncio.get_running_loop()
        self._started = True
        pool = self.pool
        # the work dirs of runs that died without closing (SIGKILL), never a live run's; on
        # the loop, since start may come after the loop's default executor was shut down
        remove_dead_work_dirs(pool.work_dir)
        self._work_dir = make_work_dir(pool.work_dir)
        self._own_work_dir = True
        context = LaunchContext(pool, self._work_dir, self.node_id)
        factories = LAUNCHERS if self._factories is None else self._factories
        self._launchers = {name: make(context) for name, make in factories.items()}
        try:
            for launcher in self._launchers.values():
                await launcher.open()
        except BaseException:
            await self.close()
            raise
        return self

    async def __aenter__(self) -> Engine:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        """Refuse new work, fail what waits, stop every environment and template."""
        if self._closed:
            return
        self._closed = True
        if self._timer is not None:
            self._timer.cancel()
        self._refuse_waiting_calls()
        for env in list(self._envs.values()):
            if env.start_task is not None:
                env.start_task.cancel()
            if env.worker is not None:
                env.worker.kill()
        await self._wait_exits(
            [env.worker for env in self._envs.values() if env.worker is not None]
        )
        await self._drain_tasks(5.0)
        for launcher in self._launchers.values():
            await launcher.close()
        await self._tasks.close()
        self._envs.clear()
        for _ in range(3):
            await asyncio.sleep(0)  # let closed transports finish closing before the loop may end
        if self._own_work_dir:
            shutil.rmtree(self._work_dir, ignore_errors=True)

    def _refuse_waiting_calls(self) -> None:
        for call in self._calls.values():
            if not call.future.done():
                call.future.set_exception(ServiceException("the engine is shutting down"))
        self._calls.clear()

    async def _drain_tasks(self, timeout: float) -> None:
        """Let environments already stopping (keepalive, unregister, update) and templates
        already closing finish: cancelled, they would leave their processes unawaited."""
        await self._tasks.drain(timeout)

    @staticmethod
    async def _wait_exits(workers: list[Worker]) -> None:
        waits = [asyncio.shield(w.exited) for w in workers if not w.exited.done()]
        if waits:
            await asyncio.wait(waits, timeout=5.0)

    @property
    def core(self) -> S.SchedulerPy:
        return self._core

    @property
    def _containers(self) -> Any:
        """The container launcher's Docker side once made (tests and benchmarks look at it)."""
        return getattr(self._launchers.get("container"), "backend", None)

    def _launcher(self, config: FunctionConfig) -> Launcher:
        if not self._started:
            raise ServiceException(
                "the engine is not started: use 'async with Engine()' or await start()"
            )
        launcher = self._launchers.get(config.backend)
        if launcher is None:  # only an engine given its own launchers lacks one
            raise InvalidParameterValueException(
                f"backend: {config.backend!r} has no launcher in this engine"
            )
        return launcher

    def _now(self) -> float:
        return self._loop.time()

    # -- functions --------------------------------------------------------------------------

    async def register(self, config: FunctionConfig) -> None:
        """Add a function; returns once its template and provisioned environments are warm."""
        if self._closed:
            raise ServiceException("the engine is closed")
        launcher = self._launcher(config)
        if config.name in self._functions:
            raise ResourceConflictException(f"Function already exist: {config.name}")
        await launcher.prepare(config)
        fn_dir = os.path.join(self._work_dir, "functions", config.name)
        os.makedirs(fn_dir, exist_ok=True)
        code_dir = await asyncio.to_thread(_code_dir, config, fn_dir)
        try:
            if config.name in self._functions:  # registered by someone else meanwhile
                raise ResourceConflictException(f"Function already exist: {config.name}")
            self._check_reserved(config, None)
        except WarmstartError:
            await asyncio.to_thread(remove_code, code_dir)  # a directory used in place stays
            raise
        fn = FunctionState(config, code_dir, fn_dir, self._spec(config, code_dir, fn_dir, 0))
        self._functions[config.name] = fn
        actions = self._core.add_function(config.name, self._limits(config), self._now())
        await self._warm_up(fn, actions)

    async def update(self, name: str, /, **changes: Any) -> FunctionConfig:
        """New code or configuration: a new generation; old environments drain and stop.

        Replaced code that was unpacked from a zip is removed once the last environment
        running it has stopped; a directory used in place is left alone."""
        fn = self._function(name)
        if changes.get("name", name) != name:
            raise InvalidParameterValueException("name: a function cannot be renamed by update")
        config = fn.config.replace(**changes)
        await self._launcher(config).prepare(config)
        self._check_reserved(config, fn)
        if "code" in changes:
            code_dir = await asyncio.to_thread(_code_dir, config, fn.work_dir)
            if code_dir != fn.code_dir:  # the old code goes once this generation drains
                fn.retired_code[fn.generation], fn.code_dir = fn.code_dir, code_dir
        fn.config = config
        actions = self._core.update_function(name, self._limits(config), self._now())
        fn.generation = self._core.generation(name)  # the core counts generations
        fn.spec = self._spec(config, fn.code_dir, fn.work_dir, fn.generation)
        fn.held.add(fn.generation)
        await self._warm_up(fn, actions)
        self._retire(fn)
        return config

    async def set_concurrency(
        self, name: str, reserved: int | None, provisioned: int | None = None
    ) -> None:
        """Lambda's PutFunctionConcurrency / provisioned concurrency, without a redeploy."""
        fn = self._function(name)
        config = fn.config.replace(
            reserved_concurrency=reserved,
            provisioned_concurrency=fn.config.provisioned_concurrency
            if provisioned is None
            else provisioned,
        )
        self._check_reserved(config, fn)
        fn.config = config
        actions = self._core.set_concurrency(
            name, -1 if reserved is None else reserved, config.provisioned_concurrency, self._now()
        )
        await self._warm_up(fn, actions)

    async def unregister(self, name: str) -> None:
        """Remove a function: waiting calls are refused, running ones finish, then all stops
        and code unpacked from a zip is removed."""
        fn = self._function(name)
        self._apply(self._core.remove_function(name, self._now()))
        del self._functions[name]
        fn.retired_code[fn.generation] = fn.code_dir
        self._retire(fn, everything=True)

    def functions(self) -> list[FunctionConfig]:
        return [fn.config for fn in self._functions.values()]

    def get_function(self, name: str) -> FunctionConfig:
        return self._function(name).config

    def _function(self, name: str) -> FunctionState:
        fn = self._functions.get(name)
        if fn is None:
            raise ResourceNotFoundException(f"Function not found: {self._arn(name)}")
        return fn

    def _arn(self, name: str) -> str:
        return self.pool.function_arn(name)

    def _check_reserved(self, config: FunctionConfig, current: FunctionState | None) -> None:
        """Lambda keeps at least 100 (here: 10%) of the account unreserved."""
        if config.reserved_concurrency is None:
            return
        others = sum(
            fn.config.reserved_concurrency or 0
            for fn in self._functions.values()
            if fn is not current
        )
        floor = min(100, self.pool.account_concurrency // 10)
        room = self.pool.account_concurrency - floor - others
        if config.reserved_concurrency > room:
            raise InvalidParameterValueException(
                f"reserved_concurrency: {config.reserved_concurrency} is outside the allowed "
                f"range 0-{max(room, 0)}"
                f" (the account keeps {floor} unreserved)"
            )

    def _limits(self, config: FunctionConfig) -> S.FunctionLimits:
        return S.FunctionLimits(
            memory_mb=config.memory_mb,
            timeout=float(config.timeout_s),
            keepalive=float(config.keepalive_s),
            reserved=-1 if config.reserved_concurrency is None else config.reserved_concurrency,
            provisioned=config.provisioned_concurrency,
            max_uses=config.max_uses or 0,
            batch=config.is_batch and self.spill,
        )

    def _spec(
        self, config: FunctionConfig, code_dir: str, work_dir: str, generation: int
    ) -> FunctionSpec:
        """What environments of one generation start from."""
        function, version = config.function_name, config.version
        invoked_arn = self._arn(function) + ("" if version == "$LATEST" else f":{version}")
        environ = {
            "AWS_LAMBDA_FUNCTION_NAME": function,
            "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": str(config.memory_mb),
            "AWS_LAMBDA_FUNCTION_VERSION": version,
            "AWS_LAMBDA_FUNCTION_TIMEOUT": str(int(config.timeout_s)),
            "AWS_LAMBDA_LOG_GROUP_NAME": f"/aws/lambda/{function}",
            "AWS_REGION": self.pool.region,
            "AWS_DEFAULT_REGION": self.pool.region,
            "AWS_EXECUTION_ENV": "AWS_Lambda_python3",
            "_HANDLER": config.handler,
            "LAMBDA_TASK_ROOT": code_dir,
            "LAMBDA_RUNTIME_DIR": os.path.dirname(os.path.dirname(P.__file__)),
            "TZ": ":UTC",
            "LANG": "en_US.UTF-8",
            **_node_environ(config, code_dir),
            **config.environment,
        }
        init_config: P.InitConfig = {
            "handler": config.handler,
            "task_root": code_dir,
            "environ": environ,
            "function_name": function,
            "function_version": version,
            "invoked_function_arn": invoked_arn,
            "memory_mb": config.memory_mb,
            "log_group_name": f"/aws/lambda/{function}",
            "log_stream_name": "",
            "log_path": os.path.join(work_dir, f"template-{generation}.log"),
            "log_cap": self.pool.log_cap_bytes,
        }
        if config.runtime_api and config.runtime:
            init_config["runtime"] = config.runtime
        return FunctionSpec(
            config.name,
            generation,
            python_for(config.runtime),
            code_dir,
            work_dir,
            init_config,
            os.getpid(),
        )

    async def _warm_up(self, fn: FunctionState, actions: list[S.Action]) -> None:
        """Carry out actions; wait for the launcher's warm-up (a template) and the provisioned
        cold starts they began."""
        self._apply(actions)
        starts = [
            env.start_task
            for kind, env_id, _, _ in actions
            if kind == S.COLD_START
            and (env := self._envs.get(env_id)) is not None
            and env.start_task is not None
        ]
        await self._launchers[fn.config.backend].warm(fn)
        if starts:
            await asyncio.gather(*starts, return_exceptions=True)

    def _retire(self, fn: FunctionState, everything: bool = False) -> None:
        """Retire old generations (every one with ``everything``) once none of their
        environments is left: the launchers release what they held, drained code goes."""
        live = [env.generation for env in self._envs.values() if env.fn is fn]
        for generation in sorted(fn.held):
            if (generation == fn.generation and not everything) or generation in live:
                continue
            fn.held.discard(generation)
            for launcher in self._launchers.values():
                self._tasks.create_task(launcher.retire(fn, generation))
        for code_dir in drained_code(fn.retired_code, live):
            if all(other.code_dir != code_dir for other in self._functions.values()):
                self._tasks.create_task(asyncio.to_thread(remove_code, code_dir))

    # -- invoking ---------------------------------------------------------------------------

    async def invoke(
        self,
        name: str,
        payload: bytes | str | Any = b"{}",
        invocation_type: str = "RequestResponse",
        *,
        client_context: dict[str, Any] | None = None,
        identity: dict[str, Any] | None = None,
        request_id: str | None = None,
        invoked_arn: str | None = None,
    ) -> InvokeResult:
        """Invoke ``name`` with a JSON event (bytes, str, or a JSON-serializable object).

        ``request_id`` names the call (one is made up otherwise): :meth:`signal_call` reaches
        the worker running it by that name.  ``invoked_arn`` is the ARN the caller used (an
        alias's, ``…:$LATEST``), for the context and the Runtime API; the function's own when
        None.  Only one that differs from it travels in the INVOKE frame."""
        if self._closed:
            raise ServiceException("the engine is closed")
        fn = self._functions.get(name)
        if fn is None:
            raise ResourceNotFoundException(f"Function not found: {self._arn(name)}")
        if invocation_type not in INVOCATION_TYPES:
            raise InvalidParameterValueException(
                f"invocation_type: {invocation_type!r} must be one of {', '.join(INVOCATION_TYPES)}"
            )
        limit = SYNC_PAYLOAD_LIMIT if invocation_type != "Event" else ASYNC_PAYLOAD_LIMIT
        body = self._payload_bytes(payload, limit, invocation_type)
        if invocation_type == "DryRun":
            return InvokeResult(b"", status_code=204)
        context = b""
        if invoked_arn is not None and invoked_arn == fn.arn:
            invoked_arn = None
        if client_context is not None or identity is not None or invoked_arn is not None:
            extra: dict[str, Any] = {"client_context": client_context, "identity": identity}
            if invoked_arn is not None:
                extra["invoked_function_arn"] = invoked_arn
            context = orjson.dumps(extra)
        if invocation_type == "Event":
            rid = request_id or new_request_id()  # the 202's id is the invocation's
            if self.backlog is not None:  # durable: accepted means stored
                await self.backlog.put_event(name, body, rid)
            else:
                self._tasks.create_task(self._invoke_event(fn, body, context, rid))
            return Accepted(rid)
        if self.admission is not None:
            return await self._admitted(self.admission, fn, body, context, request_id)
        call = self._enqueue(fn, body, context, request_id)
        try:
            return await call.future
        except asyncio.CancelledError:
            self._withdraw(call)
            raise

    async def _admitted(
        self,
        admission: Admission,
        fn: FunctionState,
        body: bytes,
        context: bytes,
        request_id: str | None,
    ) -> InvokeResult:
        scope = admission.take(fn.config.name)
        if scope is None:
            try:
                scope = await admission.admit(fn.config.name)
            except TooManyRequestsException:
                fn.metrics.throttles += 1
                raise
        try:
            call = self._enqueue(fn, body, context, request_id)
            try:
                result = await call.future
            except asyncio.CancelledError:
                self._withdraw(call)
                raise
        except BaseException:
            admission.give(scope)  # a hand-back it starts goes on by itself
            raise
        returning = admission.give(scope)
        if returning is not None:  # the token is back before the answer goes out
            await returning
        return result

    @staticmethod
    def _payload_bytes(payload: Any, limit: int, invocation_type: str) -> bytes:
        """The caller's JSON bytes, checked once: size, then well-formedness (ours is known)."""
        encoded_here = not isinstance(payload, (bytes, bytearray, memoryview, str))
        if encoded_here:
            try:
                body = orjson.dumps(payload)
            except TypeError as exc:
                raise InvalidRequestContentException(
                    f"Could not serialize the payload as JSON: {exc}"
                ) from None
        else:
            body = payload.encode() if isinstance(payload, str) else bytes(payload)
        if len(body) > limit:
            raise RequestTooLargeException(too_large(len(body), limit, invocation_type))
        if encoded_here:
            return body
        if not body:
            return b"{}"
        try:
            orjson.loads(body)
        except orjson.JSONDecodeError as exc:
            raise InvalidRequestContentException(
                f"Could not parse request body into json: {exc}"
            ) from None
        return body

    async def _invoke_event(self, fn: FunctionState, body: bytes, context: bytes, rid: str) -> None:
        """In-process asynchronous invocation (without a backlog: not durable)."""
        with contextlib.suppress(WarmstartError):
            await self._enqueue(fn, body, context, rid).future

    def _enqueue(
        self, fn: FunctionState, body: bytes, context: bytes, rid: str | None = None
    ) -> Call:
        """Hand a new call to the core; its future resolves with its result."""
        loop = self._loop
        req = next(self._req_ids)
        call = Call(req, fn, body, context, loop.create_future(), rid)
        self._calls[req] = call
        self._apply(self._core.submit(req, fn.config.name, loop.time()))
        return call

    def _withdraw(self, call: Call) -> None:
        """The caller gave up: a call not yet dispatched never runs; a dispatched one runs to
        its end (its answer then goes nowhere), as on Lambda."""
        if self._closed or self._calls.get(call.req) is not call:
            return
        if any(env.call is call for env in self._envs.values()):
            return
        del self._calls[call.req]
        self._apply(self._core.withdraw(call.req, self._now()))

    def signal_call(self, request_id: str, signum: int) -> bool:
        """Send ``signum`` to the worker process running the call ``request_id``; False when
        no worker runs it (yet, or any more). The batch runner stops a function job this way
        (SIGTERM, then SIGKILL); the worker's end is then answered as any crash is."""
        for env in self._envs.values():
            call, worker = env.call, env.worker
            if call is not None and worker is not None and call.request_id == request_id:
                if not worker.pid or worker.exited.done():
                    return False
                try:
                    os.kill(worker.pid, signum)
                except (ProcessLookupError, PermissionError):
                    return False
                return True
        return False

    # -- carrying out the core's actions ----------------------------------------------------

    def _apply(self, actions: list[S.Action]) -> None:
        if self._closed:
            return  # shutting down: nothing new starts, close() stops what is there
        for kind, env_id, req, reason in actions:
            if kind == S.DISPATCH:
                self._dispatch(env_id, req)
            elif kind == S.COLD_START:
                self._cold_start(env_id, req)
            elif kind == S.THROTTLE:
                self._throttle(req, reason)
            elif kind == S.KILL:
                self._kill(env_id, req, reason)
            elif kind in (S.STOP, S.EVICT):
                self._stop(env_id)
            elif kind == S.SPILL:
                self._spill(req)
        self._rearm()

    def _rearm(self) -> None:
        """Keep one timer no later than the core's earliest deadline.

        A later deadline leaves the armed timer alone: when it fires early, ``advance`` finds
        nothing due and the timer moves on, which is cheaper than re-arming on every call.
        """
        when = self._core.next_deadline()
        if when >= self._timer_at:
            return
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._timer_at = when
        if when != float("inf"):
            self._timer = self._loop.call_at(when, self._on_timer)

    def _on_timer(self) -> None:
        self._timer = None
        self._timer_at = float("inf")
        if not self._closed:
            self._apply(self._core.advance(self._now()))

    def _dispatch(self, env_id: int, req: int) -> None:
        env = self._envs[env_id]
        call = self._calls[req]
        env.to(EnvStatus.BUSY)
        env.call = call
        if env.pending_init_ms is not None:
            call.cold_ms, env.pending_init_ms = env.pending_init_ms, None
        call.started = time.perf_counter()
        deadline_ms = int((time.time() + call.fn.config.timeout_s) * 1000)
        frame = P.encode(P.INVOKE, (call.rid, call.payload, call.context), deadline_ms)
        try:
            env.worker.send(frame)  # type: ignore[union-attr]
        except ConnectionError:
            self._place_again(env, call)

    def _place_again(self, env: Environment, call: Call) -> None:
        """The worker was gone before the call reached it: the core hears of the crash, and
        the call, which never ran, is submitted again (to a live worker, or a cold start)."""
        env.call = None
        env.killed = True
        env.to(EnvStatus.READY)
        call.cold_ms = None
        now = self._now()
        self._apply(self._core.crashed(env.id, now))
        self._apply(self._core.submit(call.req, call.fn.config.name, now))

    def _cold_start(self, env_id: int, req: int) -> None:
        env = self._envs.get(env_id)
        call = self._calls.get(req) if req >= 0 else None
        if env is None:
            fn = call.fn if call is not None else self._functions[self._core.env_function(env_id)]
            env = self._envs[env_id] = Environment(self, env_id, fn, self._work_dir)
            if req < 0:
                env.init_type = "provisioned-concurrency"
        else:
            env.to(EnvStatus.STARTING)
        env.start_task = self._tasks.create_task(self._start_env(env, call))

    async def _start_env(self, env: Environment, call: Call | None) -> None:
        fn = env.fn
        launcher = self._launchers[fn.config.backend]
        t0 = time.perf_counter()
        old = env.worker
        if old is not None:
            await self._wait_exits([old])
        env.worker = None
        env.killed = False
        env_config: P.EnvConfig = {
            "environ": {
                "AWS_LAMBDA_LOG_STREAM_NAME": env.stream,
                "AWS_LAMBDA_INITIALIZATION_TYPE": env.init_type,
                "TMPDIR": env.tmp,
            },
            "log_path": env.log_path,
            "memory_limit_bytes": fn.config.memory_mb * 1024 * 1024,
            "dir": env.dir,
        }
        try:
            worker = await launcher.start(fn, env, env_config)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            self._start_failed(env, call, exc, time.perf_counter() - t0)
            return
        finally:
            env.start_task = None
        if call is not None and self._calls.get(call.req) is not call:
            call = None  # withdrawn while it started: the environment is warmed for the next
        env.worker, env.launcher = worker, launcher
        if worker.log_path:
            env.log_path = worker.log_path
        if worker.transport is None and env.status is EnvStatus.STARTING and env.id in self._envs:
            # it died between its handshake and now: its loss went unheard, since the
            # environment did not hold it yet
            self._start_failed(env, call, EOFError("the worker exited"), time.perf_counter() - t0)
            return
        elapsed_ms = (time.perf_counter() - t0) * 1000
        if call is not None:
            env.pending_init_ms = elapsed_ms
            fn.metrics.cold_starts += 1
        if env.status is EnvStatus.STARTING and env.id in self._envs:
            env.to(EnvStatus.READY)
            self._apply(self._core.ready(env.id, self._loop.time()))
        else:
            worker.kill()  # the environment went away while it started

    def _start_failed(
        self, env: Environment, call: Call | None, exc: Exception, elapsed: float
    ) -> None:
        if call is not None and self._calls.get(call.req) is not call:
            call = None  # withdrawn, or answered already (an init timeout)
        if isinstance(exc, InitFailed):
            body, log = exc.body, exc.log
        else:
            rid = call.request_id if call is not None else ""
            # a worker that died says nothing; a launcher that could not start one (a
            # container that cannot run the agent) says why
            said = "" if isinstance(exc, (EOFError, OSError)) else str(exc)
            reason = said or "Runtime exited without providing a reason"
            body = error_doc("Runtime.ExitError", f"RequestId: {rid} Error: {reason}")
            log = env.read_log()
            if said:
                log += f"{body.decode()}\n".encode()
        if call is not None:
            call.fn.metrics.cold_starts += 1
            self._finish(
                call,
                body,
                "Unhandled",
                log,
                Report(call.request_id, 0.0, call.fn.config.memory_mb, 0, elapsed * 1000),
                env,
                init_error=True,
            )
        if env.id in self._envs:
            self._apply(self._core.start_failed(env.id, self._now()))

    def _throttle(self, req: int, reason: int) -> None:
        call = self._calls.pop(req)
        if call.future.done():
            return
        if reason == S.R_REMOVED:
            call.future.set_exception(
                ResourceNotFoundException(f"Function not found: {call.fn.arn}")
            )
            return
        call.fn.metrics.throttles += 1
        code, message = THROTTLE_REASONS.get(
            reason, ("ConcurrentInvocationLimitExceeded", "Rate Exceeded.")
        )
        call.future.set_exception(TooManyRequestsException(message, code))

    def _spill(self, req: int) -> None:
        call = self._calls.pop(req)
        if self.backlog is not None:
            self._tasks.create_task(self._submit_spilled(call, "invoke"))
            return
        if not call.future.done():
            call.future.set_exception(
                BatchUnavailableException(
                    f"{call.fn.config.name} has timeout_s={call.fn.config.timeout_s:g} "
                    "(over 900 s): it is a "
                    "batch function, and no batch queue is attached to this engine"
                )
            )

    async def _submit_spilled(self, call: Call, origin: str) -> None:
        """Submit a call as a batch job; a spilled invoke answers 202 with the job's id."""
        assert self.backlog is not None
        try:
            job = await self.backlog.spill(
                call.fn.config.name, call.payload, origin=origin, request_id=call.request_id
            )
        except Exception as exc:
            if not call.future.done():
                call.future.set_exception(exc)
            return
        if origin == "invoke" and not call.future.done():
            call.future.set_result(
                InvokeResult(orjson.dumps({"jobId": job.job_id}), status_code=202, job=job)
            )
        elif call.future.done():
            call.future.result().job = job

    def _kill(self, env_id: int, req: int, reason: int) -> None:
        env = self._envs[env_id]
        env.killed = True
        if env.start_task is not None:
            env.start_task.cancel()
            env.start_task = None
        peak_mb = 0
        if env.worker is not None:
            peak_mb = env.worker.peak_now_mb()
            env.worker.kill()
        call = self._calls.get(req) if req >= 0 else None
        if call is None:
            return
        config = call.fn.config
        phase = "Task" if reason == S.R_TIMEOUT else "Init"
        if reason != S.R_TIMEOUT:  # a cold start that ran out of time, as one that failed
            call.fn.metrics.cold_starts += 1
        message = (
            f"{iso_now()} {call.request_id} {phase} timed out after {config.timeout_s:.2f} seconds"
        )
        log = env.read_log() + message.encode() + b"\n"
        duration = config.timeout_s * 1000
        report = Report(call.request_id, duration, config.memory_mb, peak_mb, call.cold_ms)
        env.call = None
        if env.status is EnvStatus.BUSY:
            env.to(EnvStatus.READY)
        self._finish(call, error_doc("Sandbox.Timedout", message), "Unhandled", log, report, env)
        if reason == S.R_TIMEOUT and config.spill_on_timeout and self.backlog is not None:
            self._tasks.create_task(self._submit_spilled(call, "spill_on_timeout"))

    def _stop(self, env_id: int) -> None:
        env = self._envs.pop(env_id, None)
        if env is None:
            return
        if env.status is not EnvStatus.STOPPING:
            env.to(EnvStatus.STOPPING)
        self._tasks.create_task(self._stop_env(env))

    async def _stop_env(self, env: Environment) -> None:
        if env.start_task is not None:
            env.start_task.cancel()
        worker, launcher = env.worker, env.launcher
        if worker is not None and launcher is not None:
            with contextlib.suppress(asyncio.TimeoutError):
                await launcher.stop(worker)
        env.to(EnvStatus.STOPPED)
        await asyncio.to_thread(shutil.rmtree, env.dir, True)
        self._retire(env.fn, everything=self._functions.get(env.fn.config.name) is not env.fn)

    # -- results from workers ---------------------------------------------------------------

    def frame_received(self, env: Environment, worker: Worker, frame: P.Frame) -> None:
        call = env.call
        if call is None or env.worker is not worker or frame.kind not in (P.RESULT, P.ERROR):
            worker.kill()  # an answer nobody asked for: the worker is out of step
            return
        rid, body, log = frame.fields
        if rid != call.rid:
            worker.kill()
            return
        env.call = None
        env.uses += 1
        config = call.fn.config
        cold_ms = call.cold_ms
        flags = frame.flags
        if flags & P.REINIT:  # a runtime started again for this call: a cold start in place
            cold_ms = max(0.0, (time.perf_counter() - call.started) * 1000 - frame.a / 1e6)
            call.fn.metrics.cold_starts += 1
        report = Report(
            call.request_id, frame.a / 1e6, config.memory_mb, worker.peak_mb(frame.b), cold_ms
        )
        env.to(EnvStatus.READY)
        self._finish(call, body, None if frame.kind == P.RESULT else "Unhandled", log, report, env)
        if flags & P.FATAL:
            # The worker exits right after this frame (out of memory): a crash the core hears
            # about now, so the environment is not counted busy after its call was answered.
            env.killed = True
            worker.kill()
            self._apply(self._core.crashed(env.id, self._now()))
        else:
            self._apply(self._core.release(env.id, self._loop.time()))

    def worker_lost(self, env: Environment, worker: Worker) -> None:
        if (
            self._closed
            or env.worker is not worker
            or env.killed
            or env.status in (EnvStatus.STOPPING, EnvStatus.STOPPED)
        ):
            return  # stopped or timed out on purpose: the core already knows
        # The core hears of it now, so nothing more is dispatched to the dead worker; the
        # call it ran is answered once its exit code is known (billed until it died).
        env.killed = True
        call, env.call = env.call, None
        if env.status is EnvStatus.BUSY:
            env.to(EnvStatus.READY)
        if call is not None:
            env.uses += 1
            ran_ms = (time.perf_counter() - call.started) * 1000
            self._tasks.create_task(self._after_crash(env, worker, call, ran_ms, env.read_log()))
        self._apply(self._core.crashed(env.id, self._now()))

    async def _after_crash(
        self, env: Environment, worker: Worker, call: Call, ran_ms: float, log: bytes
    ) -> None:
        """Answer the call a dead worker was running, saying how it ended."""
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(asyncio.shield(worker.exited), EXIT_REPORT_WAIT_S)
        code = worker.exited.result() if worker.exited.done() else -signal.SIGKILL
        how = exit_description(code)
        message = f"RequestId: {call.request_id} Error: Runtime exited with error: {how}"
        config = call.fn.config
        # the container's cgroup killed it for memory: Lambda's OutOfMemory, at the limit
        oom = worker.oom_killed
        error_type = "Runtime.OutOfMemory" if oom else "Runtime.ExitError"
        log += f"{message}\n{error_type}\n".encode()
        peak = config.memory_mb if oom else 0
        report = Report(call.request_id, ran_ms, config.memory_mb, peak, call.cold_ms)
        self._finish(call, error_doc(error_type, message), "Unhandled", log, report, env)

    def _finish(
        self,
        call: Call,
        body: bytes,
        function_error: str | None,
        log: bytes,
        report: Report,
        env: Environment,
        init_error: bool = False,
    ) -> None:
        """Meter, log and answer one invocation."""
        self._calls.pop(call.req, None)
        fn = call.fn
        metrics = fn.metrics
        metrics.invocations += 1
        if function_error:
            metrics.errors += 1
        metrics.duration_ms += report.duration_ms
        metrics.billed_ms += report.billed_duration_ms
        metrics.gb_seconds += report.billed_duration_ms / 1000 * fn.config.memory_mb / 1024
        result = InvokeResult(
            body,
            function_error,
            report,
            log,
            preamble=log if init_error else b"",
            executed_version=fn.config.version,
        )
        self._record_log(fn, result)
        if not call.future.done():
            call.future.set_result(result)

    def _record_log(self, fn: FunctionState, result: InvokeResult) -> None:
        """Keep recent invocations for logs(); text is formatted only when someone reads it."""
        history = fn.log
        history.append(result)
        fn.log_bytes += result.log_size
        if fn.log_bytes > self.pool.log_history_bytes:
            while fn.log_bytes > self.pool.log_history_bytes and len(history) > 1:
                fn.log_bytes -= history.popleft().log_size
        if self.log_listeners:
            for listener in self.log_listeners:
                listener(fn.config.function_name, result.log)

    # -- introspection ----------------------------------------------------------------------

    def logs(self, name: str) -> str:
        """Recent log text of ``name`` (START ... REPORT blocks)."""
        return "".join(result.log for result in self._function(name).log)

    def stats(self) -> dict[str, dict[str, Any]]:
        """Per function: invocations, cold starts, errors, throttles, GB-s, cost, environments."""
        out = {}
        for name, fn in self._functions.items():
            m = fn.metrics
            starting, idle, busy, waiting = self._core.counts(name)
            stopping = sum(
                1
                for env in self._envs.values()
                if env.fn is fn and env.status is EnvStatus.STOPPING
            )
            out[name] = {
                "invocations": m.invocations,
                "cold_starts": m.cold_starts,
                "errors": m.errors,
                "throttles": m.throttles,
                "duration_ms": m.duration_ms,
                "billed_ms": m.billed_ms,
                "gb_seconds": m.gb_seconds,
                "estimated_cost_usd": m.gb_seconds * self.pool.price_gb_second
                + m.invocations * self.pool.price_per_request,
                "environments": {
                    "starting": starting,
                    "ready": idle,
                    "busy": busy,
                    "stopping": stopping,
                },
                "waiting": waiting,
                "generation": fn.generation,
            }
        return out

    def __repr__(self) -> str:
        return (
            f"<Engine functions={len(self._functions)} envs={len(self._envs)} "
            f"calls={len(self._calls)} core={self._core!r}>"
        )


def _code_dir(config: FunctionConfig, fn_dir: str) -> str:
    """The directory of a function's code: its own, or for a container image (whose code is
    in the image) an empty one of the engine's."""
    if config.image_package:
        path = os.path.join(fn_dir, "image")
        os.makedirs(path, exist_ok=True)
        return path
    return prepare_code(config.code, fn_dir)


def _node_environ(config: FunctionConfig, code_dir: str) -> dict[str, str]:
    """What Lambda's Node.js runtimes set on top: ``AWS_EXECUTION_ENV`` names the runtime,
    ``LAMBDA_RUNTIME_DIR`` is our runtime client's folder, and ``NODE_PATH`` ends as the
    runtime's bootstrap makes it end (the runtime's ``node_modules``, then the task root;
    not the runtime's folder itself, whose ``runtime.js`` no code should load).  The paths
    are this machine's: a container's are the container backend's to set."""
    if not config.node_runtime or config.runtime is None:
        return {}
    environ = {"AWS_EXECUTION_ENV": f"AWS_Lambda_{config.runtime}"}
    if config.backend == "process":
        runtime_dir = os.path.dirname(NODE_RUNTIME_JS)
        node_path = [os.path.join(runtime_dir, "node_modules"), code_dir]
        environ["LAMBDA_RUNTIME_DIR"] = runtime_dir
        environ["NODE_PATH"] = os.pathsep.join(node_path)
    return environ
