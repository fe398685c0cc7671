"""Running tasks on a Docker Engine: one container per container definition.

    RunTask ─▶ start(task) ─▶ _run ─┬─ PENDING: inspect images ("pull"), create, start ──┐
                                    │            (a failure: TaskFailedToStart)         │
                                    ├─ RUNNING: one wait() per container ◀──────────────┘
                                    │     an essential container exits ─▶ stop the others
    StopTask ─▶ stop(task) ─────────┼─▶ docker stop (SIGTERM, SIGKILL after stopTimeout)
                                    └─ DEPROVISIONING: remove every container ─▶ STOPPED

No registry is reachable, so an image must exist locally: a missing one fails the task with
a CannotPullContainerError reason instead of a pull.  Exits are learnt from Docker's wait
endpoint (a request held open per running container), never by polling.  Containers are
removed when their task stops; ``close`` removes every container of every task at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import Any

import aiodocker

from ..docker import DOCKER_ERRORS, image_binds, remove
from ..tasks import TaskSet
from .dockerconf import container_config, container_name, labels, network_bindings
from .errors import ServerException
from .model import (
    ESSENTIAL_CONTAINER_EXITED,
    OOM_REASON,
    TERMINATION_NOTICE,
    ContainerRun,
    Task,
    TaskStatus,
)

log = logging.getLogger("warmstart.ecs")

DEFAULT_STOP_TIMEOUT_S = 30
#: how long ``close`` waits for removals
CLOSE_WAIT_S = 30.0
SHUTDOWN_REASON = "Task stopped: the warmstart node shut down"
#: a request to the daemon that failed, or an answer without what it should hold
_DOCKER_ERRORS = (*DOCKER_ERRORS, KeyError, ValueError)


class StartFailure(Exception):
    """A task could not start: ``reason`` is ECS's (``CannotPullContainerError: ...``)."""

    def __init__(self, reason: str, container: str | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.container = container


class _Run:
    """A task's run: its asyncio task and the create requests still in flight."""

    def __init__(self, task: Task) -> None:
        self.task = task
        self.future: asyncio.Task[None] | None = None
        self.creating: dict[str, asyncio.Future[Any]] = {}
        #: its containers are being removed: cancelling it now would orphan the removal
        self.ending = False


class TaskRunner:
    """Starts, watches, stops and removes the containers of tasks on one Docker Engine.

    The Docker client is made on first use, so a process that never runs a task never needs
    an engine.  ``trust_image_binds``: mount the host paths an image lists in its
    ``warmstart.host-binds`` label, read-only (only for images you built yourself).
    """

    def __init__(
        self,
        *,
        node_id: str,
        trust_image_binds: bool = False,
        url: str | None = None,
        start_cap: int = 8,
    ) -> None:
        self.node_id = node_id
        self.trust_image_binds = trust_image_binds
        self._url = url
        self._docker: aiodocker.Docker | None = None
        self._starts = asyncio.Semaphore(start_cap)
        self._runs: dict[str, _Run] = {}
        #: container stops on their way
        self._helpers = TaskSet()

    @property
    def docker(self) -> aiodocker.Docker:
        """The Docker client; ServerException when no engine can be found."""
        if self._docker is None:
            try:
                self._docker = aiodocker.Docker(url=self._url)
            except (ValueError, OSError) as exc:
                raise ServerException(f"no Docker Engine to run tasks on: {exc}") from None
        return self._docker

    def check_engine(self) -> None:
        """Raise ServerException now when no Docker Engine can be found."""
        self.docker  # noqa: B018 - the property makes the client or raises

    def __len__(self) -> int:
        return len(self._runs)

    def start(self, task: Task) -> None:
        """Run ``task`` in the background (it is PROVISIONING)."""
        run = _Run(task)
        run.future = asyncio.ensure_future(self._run(run))
        self._runs[task.arn] = run
        run.future.add_done_callback(lambda _: self._runs.pop(task.arn, None))

    def stop(self, task: Task) -> None:
        """Stop the task's running containers (SIGTERM, then SIGKILL after ``stopTimeout``).

        A task still starting stops when its start returns; its exits are reported as usual.
        """
        for container in task.containers:
            if container.last_status == "RUNNING" and container.runtime_id:
                self._helpers.create_task(self._stop_container(container))

    async def wait(self, task: Task, timeout: float) -> None:
        """Return once the task's run is over (it is STOPPED), or raise TimeoutError."""
        run = self._runs.get(task.arn)
        if run is not None and run.future is not None:
            await asyncio.wait_for(asyncio.shield(run.future), timeout)

    async def close(self) -> None:
        """Stop every task at once (its containers are force-removed), then close the client."""
        now = time.time()
        for run in list(self._runs.values()):
            run.task.request_stop(TERMINATION_NOTICE, SHUTDOWN_REASON, now)
        futures = [run.future for run in self._runs.values() if run.future is not None]
        for run in self._runs.values():
            if run.future is not None and not run.ending:
                run.future.cancel()
        pending = futures + self._helpers.cancel()
        if pending:
            await asyncio.wait(pending, timeout=CLOSE_WAIT_S)
        if self._docker is not None:
            await self._docker.close()
            self._docker = None

    # -- a task's run -------------------------------------------------------------------------

    async def _run(self, run: _Run) -> None:
        task = run.task
        try:
            if await self._start(run):
                await self._watch(task)
        except StartFailure as exc:
            task.failed_to_start(exc.container, exc.reason, time.time())
        except Exception as exc:  # the engine went away mid-start, say: the task must still end
            log.warning("task %s failed: %r", task.arn, exc)
            reason = f"CannotStartContainerError: {type(exc).__name__}: {exc}"
            if task.last_status is TaskStatus.RUNNING:
                task.request_stop(ESSENTIAL_CONTAINER_EXITED, reason, time.time())
            else:
                task.failed_to_start(None, reason, time.time())
        finally:
            run.ending = True
            await asyncio.shield(self._teardown(run))

    async def _start(self, run: _Run) -> bool:
        """PENDING, then every container created and started: RUNNING.  False when a stop came
        first (the task then goes straight to its teardown)."""
        task = run.task
        task.advance(TaskStatus.PENDING, time.time())
        async with self._starts:
            binds = await self._images(task)
            for container in task.containers:
                if task.desired_status == "STOPPED":
                    return False
                await self._create(run, container, binds[container.definition["image"]])
            for container in task.containers:
                if task.desired_status == "STOPPED":
                    return False
                await self._start_container(task, container)
        if task.desired_status == "STOPPED":
            return False
        task.advance(TaskStatus.RUNNING, time.time())
        return True

    async def _images(self, task: Task) -> dict[str, tuple[str, ...]]:
        """The "pull": each image must exist locally; its host binds, when trusted."""
        task.stamp("pullStartedAt", time.time())
        binds: dict[str, tuple[str, ...]] = {}
        for container in task.containers:
            image = container.definition["image"]
            if image in binds:
                continue
            try:
                info = await self.docker.images.inspect(image)
            except aiodocker.DockerError as exc:
                hint = " (no registry is reachable: images must exist locally)"
                reason = f"CannotPullContainerError: {exc.message}"
                raise StartFailure(
                    reason + (hint if exc.status == 404 else ""), container.name
                ) from None
            binds[image] = self._binds(info)
        task.stamp("pullStoppedAt", time.time())
        return binds

    def _binds(self, image_info: dict[str, Any]) -> tuple[str, ...]:
        if not self.trust_image_binds:
            return ()
        return image_binds((image_info.get("Config") or {}).get("Labels") or {})

    async def _create(self, run: _Run, container: ContainerRun, binds: tuple[str, ...]) -> None:
        task = run.task
        config = container_config(
            container.definition,
            network_mode=task.definition["networkMode"],
            task_cpu=task.cpu,
            task_memory=task.memory,
            labels=labels(
                container.definition, node_id=self.node_id, task_arn=task.arn, name=container.name
            ),
            host_binds=binds,
        )
        name = container_name(
            task.family, task.definition["revision"], container.name, task.task_id
        )
        # shielded, and kept in ``creating`` until its id is the container's: a run cancelled
        # at any point (even once the create has answered, before this resumes) still learns
        # the id of what it made, and its teardown removes it
        create = asyncio.ensure_future(self.docker.containers.create(config, name=name))
        run.creating[container.name] = create
        try:
            made = await asyncio.shield(create)
        except aiodocker.DockerError as exc:
            run.creating.pop(container.name, None)  # nothing was made
            raise StartFailure(
                f"CannotCreateContainerError: {exc.message}", container.name
            ) from None
        container.runtime_id = made.id
        run.creating.pop(container.name, None)

    async def _start_container(self, task: Task, container: ContainerRun) -> None:
        handle = self.docker.containers.container(container.runtime_id)
        try:
            await handle.start()
            info = await handle.show()
        except aiodocker.DockerError as exc:
            raise StartFailure(
                f"CannotStartContainerError: {exc.message}", container.name
            ) from None
        ports = (info.get("NetworkSettings") or {}).get("Ports")
        task.container_started(container.name, network_bindings(ports))

    async def _watch(self, task: Task) -> None:
        """Until every running container has exited; an essential one's exit stops the rest."""
        running = [c for c in task.containers if c.last_status == "RUNNING"]
        await asyncio.gather(*(self._watch_one(task, c) for c in running))

    async def _watch_one(self, task: Task, container: ContainerRun) -> None:
        handle = self.docker.containers.container(container.runtime_id)
        code: int | None = None
        reason: str | None = None
        try:
            code = int((await handle.wait())["StatusCode"])
            if (await handle.show())["State"].get("OOMKilled"):
                reason = OOM_REASON
        except _DOCKER_ERRORS as exc:
            reason = f"the Docker Engine did not report how the container ended: {exc}"
        if task.container_exited(container.name, code, reason, time.time()):
            self.stop(task)

    async def _stop_container(self, container: ContainerRun) -> None:
        timeout = int(container.definition.get("stopTimeout", DEFAULT_STOP_TIMEOUT_S))
        handle = self.docker.containers.container(container.runtime_id)
        with contextlib.suppress(*_DOCKER_ERRORS):  # gone already, or the engine went away
            await handle.stop(t=timeout)

    async def _teardown(self, run: _Run) -> None:
        """DEPROVISIONING: remove every container the run made (or is making), then STOPPED."""
        task = run.task
        task.deprovision(time.time())
        for name, create in list(run.creating.items()):
            with contextlib.suppress(*_DOCKER_ERRORS):
                task.container(name).runtime_id = (await create).id
        ids = [c.runtime_id for c in task.containers if c.runtime_id]
        await asyncio.gather(*(self._remove(cid) for cid in ids))
        task.stopped(time.time())

    async def _remove(self, container_id: str) -> None:
        with contextlib.suppress(KeyError, ValueError):  # as every other request here
            await remove(self.docker.containers.container(container_id))

    def __repr__(self) -> str:
        return f"<TaskRunner runs={len(self._runs)} helpers={len(self._helpers)}>"
