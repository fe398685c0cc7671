"""Process backend: a template per function generation, forked workers, or spawned ones.

    engine ──FORK(env, fd)──▶ template (agent, handler imported once, gc frozen)
       ▲  ◀──FORKED(pid)────┘     │ os.fork()
       │  ◀──EXITED(pid, status)──┘ reaps children
       │
       └─INVOKE / RESULT frames over the fd's stream socket──▶ forked worker

With ``start="spawn"`` each environment is a fresh interpreter that imports the handler
itself (Lambda's cold start, faithfully slow).  A custom runtime (``provided.*``) is always
spawned: the agent runs the code's ``bootstrap`` as its child and serves it the Lambda Runtime
API (``runtime/agent/runtime_api.py``); such an agent leads a process group of its own, which
a kill ends whole.  A Node.js runtime (``nodejs20.x``) is spawned the same way, its
``bootstrap`` being the ``node`` on PATH running our client (``runtime/agent/nodejs/``).
Either way the engine holds a ``Worker``: the engine side of one worker's socket, its pid,
and a future for its exit code.
"""

from __future__ import annotations

import array
import asyncio
import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

import orjson

from .. import _scheduler_py
from ..agent import protocol as P
from ..config import CUSTOM_RUNTIMES, NODE_RUNTIMES, FunctionConfig, check_interpreter
from ..errors import InvalidParameterValueException
from .memory import peak_rss_mb

if TYPE_CHECKING:
    from .launcher import Function, LaunchContext, Slot

AGENT_MAIN = str(Path(__file__).resolve().parent.parent / "agent" / "__main__.py")
#: our Node.js runtime client, run by ``node`` for the ``nodejs*.x`` runtimes
NODE_RUNTIME_JS = str(Path(__file__).resolve().parent.parent / "agent" / "nodejs" / "runtime.js")
EXIT_WAIT_S = 5.0


class InitFailed(Exception):
    """The function could not initialize: Lambda's error document and the init log."""

    def __init__(self, body: bytes, log: bytes = b"", duration_ns: int = 0) -> None:
        super().__init__(body.decode(errors="replace"))
        self.body = body
        self.log = log
        self.duration_ns = duration_ns


class WorkerOwner(Protocol):
    def frame_received(self, worker: Worker, frame: P.Frame) -> None: ...

    def worker_lost(self, worker: Worker) -> None: ...


class Worker(asyncio.Protocol):
    """The engine's end of one worker process."""

    #: the kernel's OOM killer ended it (the container backend sets it; the engine then
    #: answers Runtime.OutOfMemory)
    oom_killed: bool = False
    #: the host path of the worker's log file when it is not the environment's own (a
    #: container's is in its sandbox directory)
    log_path: str = ""
    #: the worker leads a process group (a custom runtime's agent): a kill is for the group
    group: bool = False

    def __init__(self, owner: WorkerOwner, loop: asyncio.AbstractEventLoop) -> None:
        self.owner = owner
        self.pid = 0
        self.exited: asyncio.Future[int] = loop.create_future()
        self.transport: asyncio.Transport | None = None
        self._decoder = P.Decoder()
        self._handshake: asyncio.Future[P.Frame] = loop.create_future()
        #: the handshake future while the first frame is still to come
        self._first: asyncio.Future[P.Frame] | None = self._handshake
        self.closing = False

    # asyncio.Protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        try:
            frames = self._decoder.feed(data)
        except P.ProtocolError:
            self.kill()  # a frame that cannot be trusted: the worker is out of step
            return
        for frame in frames:
            first = self._first
            if first is not None:
                self._first = None
                if not first.done():
                    first.set_result(frame)
                continue
            self.owner.frame_received(self, frame)

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None
        first = self._first
        if first is not None:
            self._first = None
            if not first.done():
                first.set_exception(EOFError("the worker closed its socket before it was ready"))
                first.exception()  # a start that failed before its handshake never awaits it
            return
        self.owner.worker_lost(self)

    # engine side

    async def handshake(self) -> P.Frame:
        """The first frame (INIT_OK or INIT_ERROR), whether or not it has arrived already."""
        return await self._handshake

    async def initialize(self, config: P.InitConfig) -> None:
        """Send INIT, await the handshake; raises InitFailed when the handler cannot initialize."""
        self.send(P.encode(P.INIT, (orjson.dumps(config),)))
        _check_init(await self.handshake())

    def send(self, data: bytes) -> None:
        transport = self.transport
        if transport is None:
            raise ConnectionResetError("worker socket is closed")
        transport.write(data)

    def close(self) -> None:
        """Ask the worker to exit: it does when its socket closes."""
        self.closing = True
        if self.transport is not None:
            self.transport.close()

    def peak_mb(self, reported_kb: int) -> int:
        """Max Memory Used after an invocation, from the peak RSS (KB) its result reported."""
        return -(-reported_kb // 1024)

    def peak_now_mb(self) -> int:
        """Max Memory Used of a worker stopped mid-call (a timeout: it reports nothing)."""
        return peak_rss_mb(self.pid)

    def kill(self) -> None:
        self.closing = True
        if self.pid and not self.exited.done():
            try:
                if self.group:
                    os.killpg(self.pid, signal.SIGKILL)
                else:
                    os.kill(self.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
        if self.transport is not None:
            self.transport.abort()

    async def stop(self, grace: float = EXIT_WAIT_S) -> int:
        """Close, wait up to ``grace`` seconds, then kill; returns the exit code."""
        self.close()
        try:
            return await asyncio.wait_for(asyncio.shield(self.exited), grace)
        except asyncio.TimeoutError:
            self.kill()
            return await asyncio.wait_for(asyncio.shield(self.exited), EXIT_WAIT_S)

    def __repr__(self) -> str:
        state = "exited" if self.exited.done() else ("closing" if self.closing else "live")
        return f"<Worker pid={self.pid} {state}>"


def clean_environ() -> dict[str, str]:
    """The host variables a worker process inherits; Lambda's environment is otherwise clean."""
    keep = ("PATH", "LD_LIBRARY_PATH", "LANG", "SYSTEMROOT", "PYTHONPATH")
    return {k: os.environ[k] for k in keep if k in os.environ}


class FunctionSpec:
    """What the backend needs to start environments of one function generation."""

    def __init__(
        self,
        name: str,
        generation: int,
        python: str,
        code_dir: str,
        work_dir: str,
        init_config: P.InitConfig,
        engine_pid: int,
    ) -> None:
        self.name = name
        self.generation = generation
        self.python = python
        self.code_dir = code_dir
        self.work_dir = work_dir
        self.init_config = init_config
        self.engine_pid = engine_pid

    def argv(self, fd: int, mode: str) -> list[str]:
        return [
            self.python,
            AGENT_MAIN,
            "--fd",
            str(fd),
            "--mode",
            mode,
            "--engine-pid",
            str(self.engine_pid),
        ]


class Child(asyncio.SubprocessProtocol):
    """A started agent process: its pid, and its exit code once it ends."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.exited: asyncio.Future[int] = loop.create_future()
        self.transport: asyncio.SubprocessTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def process_exited(self) -> None:
        assert self.transport is not None
        code = self.transport.get_returncode()
        self.transport.close()
        if not self.exited.done():
            self.exited.set_result(code if code is not None else -signal.SIGKILL)

    @property
    def pid(self) -> int:
        assert self.transport is not None
        return int(self.transport.get_pid())

    def kill(self) -> None:
        if self.transport is not None and not self.exited.done():
            with contextlib.suppress(ProcessLookupError):
                self.transport.kill()


async def _start_agent(
    spec: FunctionSpec, sock: socket.socket, mode: str, stderr_path: str, group: bool = False
) -> Child:
    """A fresh interpreter running the agent in ``mode`` (a template, or a spawned worker) on
    ``sock``, its stderr appended to ``stderr_path``; with ``group``, as the leader of a new
    session (and so of a process group)."""
    loop = asyncio.get_running_loop()
    fd = sock.fileno()
    with open(stderr_path, "ab") as err:  # noqa: ASYNC230 - a local file, opened once per start
        _, child = await loop.subprocess_exec(
            lambda: Child(loop),
            *spec.argv(fd, mode),
            pass_fds=(fd,),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=err,
            cwd=spec.code_dir,
            env=clean_environ(),
            start_new_session=group,
        )
    return child


def _watch_exit(child: Child, worker: Worker) -> None:
    def done(fut: asyncio.Future[int]) -> None:
        if not worker.exited.done():
            worker.exited.set_result(fut.result())

    child.exited.add_done_callback(done)


def _check_init(frame: P.Frame) -> None:
    if frame.kind == P.INIT_ERROR:
        raise InitFailed(frame.fields[0], frame.fields[1], frame.a)
    if frame.kind != P.INIT_OK:
        raise P.ProtocolError(f"expected INIT_OK, got {frame!r}")


class ForkServer:
    """The engine's end of a process that forks workers on request (a template or a
    container's sandbox): FORK(env, fd) → FORKED(pid), and EXITED(pid, status) for each child.

    Pids are as the server sees them (its pid namespace); ``_workers`` is keyed by them.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self._ctrl: socket.socket | None = None
        self._forks: dict[int, asyncio.Future[int]] = {}
        self._workers: dict[int, Worker] = {}

    def attach(self, ctrl: socket.socket) -> None:
        """Take the server's seqpacket control socket and listen on it."""
        ctrl.setblocking(False)
        self._ctrl = ctrl
        self.loop.add_reader(ctrl.fileno(), self._readable)

    async def fork_worker(self, worker: Worker, token: int, env_config: P.EnvConfig) -> int:
        """Fork a child that serves ``worker``'s socket; returns its pid (the server's view)."""
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        forked: asyncio.Future[int] = self.loop.create_future()
        self._forks[token] = forked
        try:
            await self.loop.create_unix_connection(lambda: worker, sock=ours)
            msg = P.encode(P.FORK, (orjson.dumps(env_config),), token)
            fds = [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", [theirs.fileno()]))]
            if self._ctrl is None:
                raise EOFError("the process that forks workers exited")
            self._ctrl.sendmsg([msg], fds)
            theirs.close()
            pid = await forked
        except BaseException:
            self._forks.pop(token, None)
            theirs.close()
            worker.kill()  # without a pid yet, closing the socket makes the child exit
            raise
        self._workers[pid] = worker
        return pid

    def _readable(self) -> None:
        assert self._ctrl is not None
        try:
            msg = P.recv_datagram(self._ctrl)[0]
        except (BlockingIOError, InterruptedError):
            return
        except (OSError, P.ProtocolError):
            msg = b""
        if not msg:
            self._lost()
            return
        try:
            frame = P.decode(msg)
        except P.ProtocolError:
            self._lost()
            return
        self._dispatch(frame)

    def _dispatch(self, frame: P.Frame) -> None:
        if frame.kind == P.FORKED:
            fut = self._forks.pop(frame.a, None)
            if fut is not None and not fut.done():
                fut.set_result(frame.b)
        elif frame.kind == P.EXITED:
            worker = self._workers.pop(frame.a, None)
            if worker is not None and not worker.exited.done():
                self._worker_exited(worker, os.waitstatus_to_exitcode(frame.b))
        else:
            self._other(frame)

    def _worker_exited(self, worker: Worker, code: int) -> None:
        worker.exited.set_result(code)

    def _other(self, frame: P.Frame) -> None:
        raise P.ProtocolError(f"unexpected {frame!r} from a fork server")

    def _lost(self) -> None:
        """The server died or closed: its children were killed with it (PDEATHSIG)."""
        if self._ctrl is not None:
            self.loop.remove_reader(self._ctrl.fileno())
            self._ctrl.close()
            self._ctrl = None
        error = EOFError("the process that forks workers exited")
        for fut in self._forks.values():
            if not fut.done():
                fut.set_exception(error)
                fut.exception()  # a fork still connecting its socket finds the server gone itself
        self._forks.clear()
        self._workers_lost()

    def _workers_lost(self) -> None:
        """The server is gone: its children were killed with it."""
        for worker in list(self._workers.values()):
            worker.kill()
            if not worker.exited.done():
                self._worker_exited(worker, -signal.SIGKILL)
        self._workers.clear()


class Template(ForkServer):
    """One template process: the function imported once, forking warm workers on request."""

    def __init__(self, spec: FunctionSpec, loop: asyncio.AbstractEventLoop) -> None:
        super().__init__(loop)
        self.spec = spec
        self.proc: Child | None = None
        self._ready: asyncio.Future[None] | None = None
        self._init: asyncio.Future[P.Frame] | None = None
        #: how many wait for ``_ready`` while it is pending
        self._waiters = 0
        #: a start every waiter gave up on, until it is killed and reaped
        self._abandoned: asyncio.Future[None] | None = None

    async def ensure(self) -> None:
        """Start the template once; concurrent cold starts share the one start.

        A start that every waiter gave up on (their init deadlines passed, or the bounded
        warm-up did) hung: it is killed, and the next cold start, once it is reaped, inits a
        fresh template, as Lambda re-runs an init that timed out."""
        while (dying := self._abandoned) is not None and not dying.done():
            await asyncio.wait([dying])  # a kill and a reap: a moment
        if self._ready is None:
            self._ready = asyncio.ensure_future(self._start())
            self._waiters = 0
        ready = self._ready
        self._waiters += 1
        try:
            await asyncio.shield(ready)
        except BaseException:
            if self._ready is ready:
                self._waiters -= 1
                if ready.done():
                    self._ready = None  # the next cold start tries again, as Lambda re-runs init
                elif not self._waiters:
                    self._abandon(ready)
            raise
        if self._ready is ready:
            self._waiters -= 1

    def _abandon(self, ready: asyncio.Future[None]) -> None:
        self._abandoned, self._ready = ready, None
        if self.proc is not None:
            self.proc.kill()  # this start's, or an earlier one's that has exited already
        ready.cancel()  # its close() reaps it

    async def _start(self) -> None:
        parent, child = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        for end in (parent, child):
            P.widen_datagram_buffers(end)
        try:
            err = os.path.join(self.spec.work_dir, f"template-{self.spec.generation}.err")
            self.proc = await _start_agent(self.spec, child, "template", err)
        except BaseException:
            parent.close()
            raise
        finally:
            child.close()
        self._init = self.loop.create_future()
        self.attach(parent)
        parent.send(P.encode(P.INIT, (orjson.dumps(self.spec.init_config),)))
        try:
            _check_init(await self._init)
        except BaseException:
            await self.close()
            raise

    async def fork(self, owner: WorkerOwner, env_id: int, env_config: P.EnvConfig) -> Worker:
        """A new worker forked from the template, ready for its first invocation."""
        await self.ensure()
        worker = Worker(owner, self.loop)
        worker.pid = await self.fork_worker(worker, env_id, env_config)
        try:
            _check_init(await worker.handshake())
        except BaseException:
            worker.kill()
            raise
        return worker

    def _other(self, frame: P.Frame) -> None:
        if self._init is not None and not self._init.done():
            self._init.set_result(frame)

    def _lost(self) -> None:
        self._ready = None
        if self._init is not None and not self._init.done():
            self._init.set_exception(EOFError("the template process exited"))
        super()._lost()

    async def close(self) -> None:
        """Stop the template (its forked workers go with it).  One whose init has not
        answered cannot hear the request to exit (it hung, or nobody waits for it any more):
        it is killed at once."""
        init = self._init
        hung = init is not None and (not init.done() or init.cancelled())
        if self._ctrl is not None:
            self._lost()
        proc = self.proc
        if proc is not None and not proc.exited.done():
            if hung:
                proc.kill()
            try:
                await asyncio.wait_for(asyncio.shield(proc.exited), EXIT_WAIT_S)
            except asyncio.TimeoutError:
                proc.kill()
                await proc.exited


async def spawn_worker(
    spec: FunctionSpec,
    owner: WorkerOwner,
    loop: asyncio.AbstractEventLoop,
    env_config: P.EnvConfig,
    bootstrap: list[str] | None = None,
) -> Worker:
    """A fresh interpreter that imports the handler itself (``start="spawn"``), or, given a
    foreign runtime's ``bootstrap`` command (a custom runtime's executable, ``node`` and our
    runtime client), runs it and serves it the Runtime API."""
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    worker = Worker(owner, loop)
    worker.group = bootstrap is not None
    proc: Child | None = None
    try:
        try:
            err = os.path.join(env_config["dir"], "spawn.err")
            proc = await _start_agent(spec, theirs, "worker", err, worker.group)
        finally:
            theirs.close()
        worker.pid = proc.pid
        _watch_exit(proc, worker)
        await loop.create_unix_connection(lambda: worker, sock=ours)
        init = spec.init_config.copy()
        init["env"] = env_config
        # the init's output goes to the environment's log from the start, as a runtime's
        # does: an init that times out leaves it there for the call's log
        init["log_path"] = env_config["log_path"]
        if bootstrap is not None:
            init["bootstrap"] = bootstrap
        await worker.initialize(init)
    except BaseException:
        if worker.transport is None:
            ours.close()
        worker.kill()
        if proc is not None:
            proc.kill()
            with contextlib.suppress(BaseException):
                await asyncio.wait_for(asyncio.shield(proc.exited), EXIT_WAIT_S)
        raise
    return worker


class ProcessLauncher:
    """Environments as local processes: forked from a template per function generation
    (``start="fork"``), or spawned as fresh interpreters (``start="spawn"``)."""

    def __init__(self, context: LaunchContext) -> None:
        self._templates: set[Template] = set()

    async def open(self) -> None:
        pass

    async def prepare(self, config: FunctionConfig) -> None:
        if config.node_runtime:
            node_command(config.runtime)
        await asyncio.to_thread(check_interpreter, config)

    async def warm(self, fn: Function) -> None:
        """Init the generation's template, for at most the init deadline: a template still
        initializing then is killed (as a call's cold start would be), and the first call
        inits a fresh one."""
        if fn.config.start == "fork" and not fn.config.runtime_api:
            template = self._template(fn)
            with contextlib.suppress(InitFailed, EOFError, OSError, asyncio.TimeoutError):
                await asyncio.wait_for(template.ensure(), init_deadline_s(fn.config))

    async def start(self, fn: Function, env: Slot, env_config: P.EnvConfig) -> Worker:
        if fn.config.custom_runtime or fn.config.node_runtime:
            bootstrap = (
                [node_command(fn.config.runtime), NODE_RUNTIME_JS]
                if fn.config.node_runtime
                else [os.path.join(fn.spec.code_dir, "bootstrap")]
            )
            loop = asyncio.get_running_loop()
            return await spawn_worker(fn.spec, env, loop, env_config, bootstrap)
        if fn.config.start == "spawn":
            return await spawn_worker(fn.spec, env, asyncio.get_running_loop(), env_config)
        return await self._template(fn).fork(env, env.id, env_config)

    async def stop(self, worker: Worker) -> None:
        await worker.stop()

    async def retire(self, fn: Function, generation: int) -> None:
        template: Template | None = fn.templates.pop(generation, None)
        if template is not None:
            self._templates.discard(template)
            await template.close()

    async def close(self) -> None:
        """Templates of registered functions, and of unregistered ones whose calls ran."""
        for template in list(self._templates):
            await template.close()
        self._templates.clear()

    def _template(self, fn: Function) -> Template:
        template: Template | None = fn.templates.get(fn.generation)
        if template is None:
            template = Template(fn.spec, asyncio.get_running_loop())
            fn.templates[fn.generation] = template
            self._templates.add(template)
        return template


def init_deadline_s(config: FunctionConfig) -> float:
    """The time an init gets, as the scheduler core arms it for a cold start: the function's
    timeout, and at least Lambda's 10 s (read when called: tests lower the floor)."""
    return max(_scheduler_py.INIT_TIMEOUT_FLOOR, float(config.timeout_s))


def python_for(runtime: str | None) -> str:
    """The interpreter of the process backend: the function's, or the engine's own (which
    also runs the agent of a custom runtime, or of a Node.js one)."""
    if runtime is None or runtime in CUSTOM_RUNTIMES or runtime in NODE_RUNTIMES:
        return sys.executable
    return runtime


def node_command(runtime: str | None) -> str:
    """The ``node`` on PATH that runs a ``nodejs*.x`` function, as an absolute path."""
    found = shutil.which("node")
    if found is None:
        raise InvalidParameterValueException(
            f"runtime: {runtime!r} needs Node.js, and 'node' is not on PATH "
            "(install Node.js 16 or later, or put its bin directory on PATH)"
        )
    return os.path.abspath(found)
