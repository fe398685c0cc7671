"""The one port between the engine and a backend: how environments start and stop.

    Engine ──prepare(config)──▶ Launcher     before a register or update changes anything
           ──warm(fn)─────────▶              the generation's shared part (a template)
           ──start(fn, env)───▶ ──▶ Worker   fork, spawn or container start
           ──stop(worker)─────▶              the environment ends
           ──retire(fn, gen)──▶              a drained generation: what it held goes
           ──close()──────────▶              the engine closes

The protocol is for lifecycle only: an invocation goes from the engine to its ``Worker``
directly.  ``LAUNCHERS`` names a factory per ``FunctionConfig.backend``; a new backend is a
module with a launcher plus one entry there.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from ..agent.protocol import EnvConfig
from ..config import FunctionConfig, PoolConfig
from .container import ContainerLauncher
from .process import FunctionSpec, ProcessLauncher, Worker, WorkerOwner


class Function(Protocol):
    """What a launcher reads of a registered function (the engine's ``FunctionState``)."""

    config: FunctionConfig
    spec: FunctionSpec
    generation: int
    #: the process launcher's templates, per generation
    templates: dict[int, Any]


class Slot(WorkerOwner, Protocol):
    """An environment as a launcher sees it: the owner of the worker it starts, and its id."""

    id: int


class Launcher(Protocol):
    async def open(self) -> None:
        """The engine starts: begin what the pool keeps ready ahead of demand."""

    async def prepare(self, config: FunctionConfig) -> None:
        """Refuse, with InvalidParameterValueException, what this backend cannot run; called
        before a register or update changes anything."""

    async def warm(self, fn: Function) -> None:
        """Make cold starts of the current generation fast; a failure waits for the first
        invocation, as on Lambda."""

    async def start(self, fn: Function, env: Slot, env_config: EnvConfig) -> Worker:
        """A worker initialized for its first invocation; raises InitFailed when the handler
        cannot initialize, another exception when the environment cannot start."""

    async def stop(self, worker: Worker) -> None:
        """End an environment's worker (and what runs it); returns once it is gone."""

    async def retire(self, fn: Function, generation: int) -> None:
        """No environment of ``generation`` is left and none will start: release what it held."""

    async def close(self) -> None:
        """The engine closes: every worker is already stopped or killed."""


@dataclass(frozen=True)
class LaunchContext:
    """What a launcher is made with: the pool, the run's work directory, the engine's node."""

    pool: PoolConfig
    work_dir: str
    node_id: str


LauncherFactory = Callable[[LaunchContext], Launcher]


#: ``FunctionConfig.backend`` → the factory of its launcher (one per engine)
LAUNCHERS: dict[str, LauncherFactory] = {"process": ProcessLauncher, "container": ContainerLauncher}
