"""Engine-side records: a call in flight, an environment and its status, a function.

An environment is its worker's owner and hands what the worker says to its own owner (the
engine) through ``EnvironmentOwner``, so this module needs nothing of the engine's.
"""

from __future__ import annotations

import asyncio
import enum
import os
import time
import uuid
from collections import deque
from typing import Protocol

from .agent import protocol as P
from .config import FunctionConfig
from .pools.launcher import Launcher
from .pools.process import FunctionSpec, Template, Worker
from .result import InvokeResult
from .stamps import request_id


class EnvironmentOwner(Protocol):
    """Who hears what an environment's worker says (the engine)."""

    def frame_received(self, env: Environment, worker: Worker, frame: P.Frame) -> None: ...

    def worker_lost(self, env: Environment, worker: Worker) -> None: ...


class EnvStatus(enum.Enum):
    STARTING = "starting"
    READY = "ready"
    BUSY = "busy"
    STOPPING = "stopping"
    STOPPED = "stopped"


# tuples, not sets: `in` on a short tuple compares identities and never hashes an enum
_TRANSITIONS: dict[EnvStatus, tuple[EnvStatus, ...]] = {
    EnvStatus.STARTING: (EnvStatus.READY, EnvStatus.BUSY, EnvStatus.STOPPING),
    EnvStatus.READY: (EnvStatus.BUSY, EnvStatus.STARTING, EnvStatus.STOPPING),
    EnvStatus.BUSY: (EnvStatus.READY, EnvStatus.STARTING, EnvStatus.STOPPING),
    EnvStatus.STOPPING: (EnvStatus.STOPPED,),
    EnvStatus.STOPPED: (),
}
for _status, _allowed in _TRANSITIONS.items():
    _status.allowed = _allowed  # type: ignore[attr-defined]


class InvalidTransition(RuntimeError):
    pass


class Call:
    """One invocation in flight."""

    __slots__ = (
        "cold_ms",
        "context",
        "fn",
        "future",
        "payload",
        "req",
        "request_id",
        "rid",
        "started",
    )

    def __init__(
        self,
        req: int,
        fn: FunctionState,
        payload: bytes,
        context: bytes,
        future: asyncio.Future[InvokeResult],
        rid: str | None = None,
    ):
        self.req = req
        self.fn = fn
        self.payload = payload
        self.context = context
        self.future = future
        self.request_id = rid or request_id()
        self.rid = self.request_id.encode()
        self.cold_ms: float | None = None
        #: perf_counter() when the invocation was sent to its worker
        self.started = 0.0


class Environment:
    """One execution environment: a worker slot with its own /tmp, log file and status."""

    __slots__ = (
        "call",
        "dir",
        "fn",
        "generation",
        "id",
        "init_type",
        "killed",
        "launcher",
        "log_path",
        "owner",
        "pending_init_ms",
        "start_task",
        "status",
        "stream",
        "tmp",
        "uses",
        "worker",
    )

    def __init__(self, owner: EnvironmentOwner, env_id: int, fn: FunctionState, root: str) -> None:
        self.owner = owner
        self.id = env_id
        self.fn = fn
        self.generation = fn.generation
        self.status = EnvStatus.STARTING
        self.dir = os.path.join(root, f"env-{env_id}")
        self.tmp = os.path.join(self.dir, "tmp")
        self.log_path = os.path.join(self.dir, "output.log")
        os.makedirs(self.tmp, exist_ok=True)
        self.stream = time.strftime("%Y/%m/%d", time.gmtime()) + f"/[$LATEST]{uuid.uuid4().hex}"
        self.worker: Worker | None = None
        #: what started the worker, and stops it
        self.launcher: Launcher | None = None
        self.call: Call | None = None
        self.uses = 0
        self.pending_init_ms: float | None = None
        self.killed = False
        self.start_task: asyncio.Task[None] | None = None
        self.init_type = "on-demand"

    def to(self, status: EnvStatus) -> None:
        """Guarded status change; an impossible one names the current state."""
        if status not in self.status.allowed:  # type: ignore[attr-defined]
            raise InvalidTransition(
                f"environment {self.id} is {self.status.value}, cannot become {status.value}"
            )
        self.status = status

    def frame_received(self, worker: Worker, frame: P.Frame) -> None:
        self.owner.frame_received(self, worker, frame)

    def worker_lost(self, worker: Worker) -> None:
        self.owner.worker_lost(self, worker)

    def read_log(self) -> bytes:
        """What the worker wrote since its last result (after a crash or a kill)."""
        try:
            with open(self.log_path, "rb") as f:
                data = f.read()
            os.truncate(self.log_path, 0)
        except OSError:
            return b""
        return data

    def __repr__(self) -> str:
        return (
            f"<Environment {self.id} {self.fn.config.name} gen={self.generation} "
            f"{self.status.value} uses={self.uses}>"
        )


class Metrics:
    __slots__ = (
        "billed_ms",
        "cold_starts",
        "duration_ms",
        "errors",
        "gb_seconds",
        "invocations",
        "throttles",
    )

    def __init__(self) -> None:
        self.invocations = 0
        self.cold_starts = 0
        self.errors = 0
        self.throttles = 0
        self.duration_ms = 0.0
        self.billed_ms = 0
        self.gb_seconds = 0.0


class FunctionState:
    """Engine-side state of a registered function."""

    def __init__(
        self, config: FunctionConfig, code_dir: str, work_dir: str, spec: FunctionSpec
    ) -> None:
        self.config = config
        self.code_dir = code_dir
        self.work_dir = work_dir
        self.generation = spec.generation
        #: what environments of the current generation start from
        self.spec = spec
        #: the process launcher's templates, per generation
        self.templates: dict[int, Template] = {}
        #: generations whose launchers may still hold something (retired once drained)
        self.held = {spec.generation}
        #: code directories replaced by an update or unregister: the last generation that runs
        #: each -> the directory, removed once no environment of those generations is left
        self.retired_code: dict[int, str] = {}
        self.metrics = Metrics()
        self.log: deque[InvokeResult] = deque()
        self.log_bytes = 0

    @property
    def arn(self) -> str:
        return str(self.spec.init_config["invoked_function_arn"])
