"""What runs one attempt of a job: a function's handler in a worker process, or a container.

    JobRunner ── run(claim, control) ──▶ FunctionExecutor ── invoke ──▶ the runner's own Engine
                                     │                                    (spill=False, no timeout)
                                     └─▶ ContainerExecutor ── create/start ──▶ Docker Engine

Each executor turns the attempt's end into an :class:`Outcome` (exit code, container reason,
log, and for a function job the handler's response), and gives the runner a way to signal the
attempt (``control.signaller``): SIGTERM then SIGKILL when it times out or is terminated.

Function jobs: the handler sees Batch's variables (``AWS_BATCH_JOB_ID``,
``AWS_BATCH_JOB_ATTEMPT``, ``AWS_BATCH_JOB_ARRAY_INDEX``, ``AWS_BATCH_JQ_NAME``,
``AWS_BATCH_CE_NAME``, and any ``environment`` of the job's container overrides) in
``context.client_context.env``: a warm worker serves many jobs, so its process environment
cannot be per job, while the client context is.  A response is exit code 0; a handler error
exit code 1 with ``"<errorType>: <errorMessage>"`` as the container reason; a crash its exit
code (a signal N as 128 + N, as Docker reports it).
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import signal
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Final

import msgspec
import orjson

from ..config import FunctionConfig, PoolConfig
from ..docker import DOCKER_ERRORS, owner_labels, process_gone, remove
from ..engine import Engine
from ..errors import WarmstartError
from ..pools.container import ContainerBackend, ContainerStartError
from ..result import InvokeResult
from ..stamps import request_id
from ..tasks import TaskSet
from .model import Claim

#: the longest container reason AWS keeps
REASON_MAX: Final = 255
#: a function job has no time limit of its own: only attemptDurationSeconds stops it
NO_LIMIT_S: Final = 10 * 365 * 86_400.0
#: ``<job id>#<attempt>`` of a job's container
JOB_LABEL: Final = "warmstart.job"
#: the runner (batch node) that runs it; ``warmstart.node`` is the process's, as for every
#: container warmstart starts, so that a dead process's leftovers are found and removed
RUNNER_LABEL: Final = "warmstart.batch-node"
OOM_REASON: Final = "OutOfMemoryError: Container killed due to memory usage"
MB: Final = 1024 * 1024

_EXIT_STATUS = re.compile(r"exit status (-?\d+)")
_SIGNAL = re.compile(r"signal: ([\w ]+)")
_SIGNAL_BY_NAME = {
    "killed": signal.SIGKILL,
    "segmentation fault": signal.SIGSEGV,
    "aborted": signal.SIGABRT,
    "terminated": signal.SIGTERM,
    "bus error": signal.SIGBUS,
    "floating point exception": signal.SIGFPE,
    "illegal instruction": signal.SIGILL,
    "interrupt": signal.SIGINT,
    "hangup": signal.SIGHUP,
    "broken pipe": signal.SIGPIPE,
    "quit": signal.SIGQUIT,
}


@dataclass
class Outcome:
    """How an attempt ended, in ``Store.finished``'s terms."""

    exit_code: int | None
    reason: str | None = None
    status_reason: str | None = None
    log: bytes = b""
    result: bytes | None = None


class Control:
    """The runner's side of one attempt, as an executor sees it.

    ``started`` marks the job RUNNING (False: it was terminated meanwhile, run nothing);
    ``signaller`` is set by the executor once the attempt can be signalled."""

    def __init__(self, claim: Claim, started: Callable[[], Awaitable[bool]]) -> None:
        self.claim = claim
        self.started = started
        self.signaller: Callable[[int], bool] | None = None

    def signal(self, signum: int) -> bool:
        """Deliver ``signum`` to the attempt; False when nothing runs yet to receive it."""
        return self.signaller(signum) if self.signaller is not None else False


def short(reason: str) -> str:
    return reason if len(reason) <= REASON_MAX else reason[: REASON_MAX - 3] + "..."


def not_started(error: str, detail: str) -> Outcome:
    """An attempt that never ran: no exit code, Batch's "Task failed to start"."""
    return Outcome(None, short(f"{error}: {detail}"))


# -- function jobs ----------------------------------------------------------------------------


def crash_code(message: str) -> int:
    """The exit code in Lambda's Runtime.ExitError message; a signal N is 128 + N."""
    found = _EXIT_STATUS.search(message)
    if found:
        return int(found.group(1))
    named = _SIGNAL.search(message)
    if named:
        name = named.group(1).strip()
        signum = _SIGNAL_BY_NAME.get(name)
        if signum is None:
            signum = getattr(signal.Signals, name, signal.SIGKILL)
        return 128 + int(signum)
    return 1


def function_outcome(result: InvokeResult) -> Outcome:
    """A handler's response → exit 0; an error → exit 1 and its type and message; a crash →
    its exit code. The log is Lambda's (START, output, END, REPORT)."""
    log = result.log.encode()
    if result.function_error is None:
        return Outcome(0, log=log, result=result.payload)
    try:
        doc = orjson.loads(result.payload)
    except orjson.JSONDecodeError:
        doc = {}
    error_type = str(doc.get("errorType", "Unhandled"))
    message = str(doc.get("errorMessage", ""))
    if error_type == "Runtime.ExitError":
        return Outcome(crash_code(message), log=log, result=result.payload)
    if error_type == "Runtime.OutOfMemory":
        return Outcome(128 + signal.SIGKILL, OOM_REASON, log=log, result=result.payload)
    return Outcome(1, short(f"{error_type}: {message}"), log=log, result=result.payload)


def batch_registration(config: FunctionConfig) -> FunctionConfig:
    """A function as the runner's engine runs it: no time limit (the runner enforces
    attemptDurationSeconds), nothing spilled, no concurrency reservation."""
    return config.replace(
        timeout_s=NO_LIMIT_S,
        spill_on_timeout=False,
        reserved_concurrency=None,
        provisioned_concurrency=0,
    )


class FunctionExecutor:
    """Runs function jobs on a second Engine of the runner's own: its worker processes are
    apart from the invocation pool's, and the functions are registered there as the main
    engine has them (re-registered when the main engine's configuration changes)."""

    def __init__(self, source: Engine, pool: PoolConfig) -> None:
        self.source = source
        self.engine = Engine(pool, spill=False)
        self._registered: dict[str, FunctionConfig] = {}
        self._pending: dict[str, asyncio.Future[None]] = {}

    async def start(self) -> None:
        await self.engine.start()

    async def close(self) -> None:
        await self.engine.close()

    async def run(self, control: Control) -> Outcome:
        claim = control.claim
        name = claim.function or ""
        try:
            await self._ensure(name)
        except WarmstartError as exc:
            return not_started(exc.code, exc.message)
        if not await control.started():
            return Outcome(None)
        rid = request_id()
        control.signaller = lambda signum: self.engine.signal_call(rid, signum)
        try:
            result = await self.engine.invoke(
                name,
                claim.payload or b"{}",
                client_context={"env": claim.environment},
                request_id=rid,
            )
        except WarmstartError as exc:
            return Outcome(None, short(f"{exc.code}: {exc.message}"))
        return function_outcome(result)

    async def _ensure(self, name: str) -> None:
        """Register ``name`` (or its new configuration) here; one registration at a time."""
        while True:
            config = self.source.get_function(name)
            if self._registered.get(name) is config:
                return
            pending = self._pending.get(name)
            if pending is not None:
                await asyncio.shield(pending)
                continue
            done = self._pending[name] = asyncio.get_running_loop().create_future()
            try:
                await self._register(name, config)
            finally:
                del self._pending[name]
                done.set_result(None)

    async def _register(self, name: str, config: FunctionConfig) -> None:
        batch = batch_registration(config)
        if name in self._registered:
            changes = msgspec.structs.asdict(batch)
            del changes["name"]
            await self.engine.update(name, **changes)
        else:
            await self.engine.register(batch)
        self._registered[name] = config

    def stats(self) -> dict[str, Any]:
        return self.engine.stats()


# -- container jobs ---------------------------------------------------------------------------


def job_container(
    claim: Claim, process_node: str, host_binds: tuple[str, ...] = ()
) -> dict[str, Any]:
    """The create request of one attempt's container: the job's image, command and
    environment, its vCPUs as NanoCpus and memory as a hard limit (no swap)."""
    labels = {
        **owner_labels(process_node),
        RUNNER_LABEL: claim.node,
        JOB_LABEL: f"{claim.job_id}#{claim.attempt}",
    }
    return {
        "Image": claim.image,
        "Cmd": list(claim.command) or None,
        "Env": [f"{key}={value}" for key, value in claim.environment.items()],
        "Labels": labels,
        "HostConfig": {
            "NanoCpus": int(claim.vcpus * 1e9),
            "Memory": claim.memory_mib * MB,
            "MemorySwap": claim.memory_mib * MB,
            "Binds": [f"{path}:{path}:ro" for path in host_binds],
            "LogConfig": {"Type": "json-file", "Config": {"max-size": "1m", "max-file": "1"}},
        },
    }


class ContainerExecutor:
    """Runs container jobs, one Docker container per attempt, removed once it has ended and
    its output (``docker logs``, the last ``log_cap`` bytes) has been read. ``node_id`` is the
    process's (``Engine.node_id``), the ``warmstart.node`` label of its containers."""

    def __init__(self, node_id: str, *, trust_image_binds: bool, log_cap: int) -> None:
        self.node_id = node_id
        self.trust_image_binds = trust_image_binds
        self.log_cap = log_cap
        self._backend: ContainerBackend | None = None
        self._cleanup: asyncio.Future[list[str]] | None = None
        self._binds: dict[str, tuple[str, ...]] = {}
        #: signals on their way to containers
        self._tasks = TaskSet()

    async def close(self) -> None:
        if self._cleanup is not None:
            await asyncio.gather(self._cleanup, return_exceptions=True)
        await self._tasks.join()
        if self._backend is not None:
            await self._backend.close()
            self._backend = None

    async def _docker(self) -> ContainerBackend:
        """The Docker client, made once (concurrent first attempts share it); containers
        that dead processes left behind are removed then."""
        backend, cleanup = self._backend, self._cleanup
        if backend is None or cleanup is None:
            backend = self._backend = ContainerBackend(node_id=self.node_id)
            cleanup = self._cleanup = asyncio.ensure_future(backend.cleanup_leftovers(self.node_id))
        try:
            await asyncio.shield(cleanup)
        except Exception:
            if self._backend is backend:  # no engine answered: the next attempt tries again
                self._backend = self._cleanup = None
                await backend.close()
            raise
        return backend

    async def _host_binds(self, backend: ContainerBackend, image: str) -> tuple[str, ...]:
        if not self.trust_image_binds:
            return ()
        if image not in self._binds:
            self._binds[image] = await backend.host_binds(image)
        return self._binds[image]

    async def run(self, control: Control) -> Outcome:
        claim = control.claim
        try:
            backend = await self._docker()
            binds = await self._host_binds(backend, claim.image or "")
            container = await self._create(backend, job_container(claim, self.node_id, binds))
        except ContainerStartError as exc:
            return not_started("CannotPullContainerError", str(exc))
        except DOCKER_ERRORS as exc:
            return not_started("CannotCreateContainerError", _docker_message(exc))
        try:
            return await self._run(control, container)
        finally:
            # shielded: a cancelled attempt (the runner closing) still removes its container
            await asyncio.shield(remove(container))

    async def _create(self, backend: ContainerBackend, config: dict[str, Any]) -> Any:
        """Create a container; cancelled meanwhile, the container made anyway is removed."""
        task = asyncio.ensure_future(backend.docker.containers.create(config))
        try:
            return await asyncio.shield(task)
        except asyncio.CancelledError:
            with contextlib.suppress(Exception):
                await remove(await task)
            raise

    async def _run(self, control: Control, container: Any) -> Outcome:
        try:
            await container.start()
        except DOCKER_ERRORS as exc:
            return not_started("CannotStartContainerError", _docker_message(exc))
        control.signaller = lambda signum: self._kill(container, signum)
        if not await control.started():
            self._kill(container, signal.SIGKILL)
        state = await self._wait(container)
        log = await self._logs(container)
        reason = OOM_REASON if state.get("OOMKilled") else None
        return Outcome(int(state.get("ExitCode", 1)), reason, log=log)

    def _kill(self, container: Any, signum: int) -> bool:
        self._tasks.create_task(self._send(container, signum))
        return True

    @staticmethod
    async def _send(container: Any, signum: int) -> None:
        with contextlib.suppress(*DOCKER_ERRORS):
            await container.kill(signal=signal.Signals(signum).name)

    @staticmethod
    async def _wait(container: Any) -> dict[str, Any]:
        """The container's final State: its end is learnt from the kernel (a pidfd), so a
        long job holds no connection to the daemon; without pidfds, by polling."""
        delay = 0.05
        while True:
            state: dict[str, Any] = (await container.show())["State"]
            if not state.get("Running"):
                return state
            pid = int(state.get("Pid") or 0)
            if pid:
                await process_gone(pid)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 2.0)

    async def _logs(self, container: Any) -> bytes:
        with contextlib.suppress(*DOCKER_ERRORS):
            lines = await container.log(stdout=True, stderr=True)
            return "".join(lines).encode()[-self.log_cap :]
        return b""


def _docker_message(exc: BaseException) -> str:
    message = getattr(exc, "message", None)
    return str(message or exc)
