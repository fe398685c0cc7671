"""A task's state, without I/O: statuses, guarded transitions, stop reasons, ECS's shapes.

    PROVISIONING ──▶ PENDING ──▶ RUNNING ──▶ STOPPING ──▶ DEPROVISIONING ──▶ STOPPED
          │             │  └────────────────────▲                ▲
          └─────────────┴─────── (failed or stopped before it ran) ┘

The runner (tasks.py) performs the Docker work and reports here, passing the time in; every
transition is kept in ``history`` so the order can be checked.  ``desiredStatus`` turns
STOPPED once, with the first stop's code and reason (a user's StopTask, an essential
container's exit, a failed start): later causes do not overwrite it, as on ECS.
"""

from __future__ import annotations

import copy
import enum
from dataclasses import dataclass, field
from typing import Any


class TaskStatus(str, enum.Enum):
    PROVISIONING = "PROVISIONING"
    PENDING = "PENDING"
    RUNNING = "RUNNING"
    STOPPING = "STOPPING"
    DEPROVISIONING = "DEPROVISIONING"
    STOPPED = "STOPPED"


S = TaskStatus
_NEXT: dict[TaskStatus, frozenset[TaskStatus]] = {
    S.PROVISIONING: frozenset({S.PENDING, S.DEPROVISIONING}),
    S.PENDING: frozenset({S.RUNNING, S.DEPROVISIONING}),
    S.RUNNING: frozenset({S.STOPPING}),
    S.STOPPING: frozenset({S.DEPROVISIONING}),
    S.DEPROVISIONING: frozenset({S.STOPPED}),
    S.STOPPED: frozenset(),
}

# stop codes (botocore's TaskStopCode)
TASK_FAILED_TO_START = "TaskFailedToStart"
ESSENTIAL_CONTAINER_EXITED = "EssentialContainerExited"
USER_INITIATED = "UserInitiated"
#: the node shut down (``Ecs.close``) while the task ran
TERMINATION_NOTICE = "TerminationNotice"

ESSENTIAL_EXITED_REASON = "Essential container in task exited"
USER_STOPPED_REASON = "Task stopped by user"
OOM_REASON = "OutOfMemoryError: Container killed due to memory usage"


class InvalidTransition(Exception):
    """A transition the lifecycle does not allow; it names the task's current status."""


@dataclass
class ContainerRun:
    """One container of a task: its effective definition and what happened to it."""

    name: str
    arn: str
    definition: dict[str, Any]
    #: the Docker container's id once created
    runtime_id: str = ""
    last_status: str = "PENDING"
    exit_code: int | None = None
    reason: str | None = None
    bindings: list[dict[str, Any]] = field(default_factory=list)

    @property
    def essential(self) -> bool:
        return bool(self.definition.get("essential", True))

    def shape(self, task_arn: str) -> dict[str, Any]:
        """ECS's ``Container``: cpu and memory as strings, as the model types them."""
        d = self.definition
        shape: dict[str, Any] = {
            "containerArn": self.arn,
            "taskArn": task_arn,
            "name": self.name,
            "image": d["image"],
            "lastStatus": self.last_status,
            "networkBindings": [dict(b) for b in self.bindings],
            "networkInterfaces": [],
            "healthStatus": "UNKNOWN",
            "cpu": str(d.get("cpu", 0)),
        }
        if self.runtime_id:
            shape["runtimeId"] = self.runtime_id
        if self.exit_code is not None:
            shape["exitCode"] = self.exit_code
        if self.reason is not None:
            shape["reason"] = self.reason
        for key in ("memory", "memoryReservation"):
            if d.get(key) is not None:
                shape[key] = str(d[key])
        return shape


@dataclass
class Task:
    """One RunTask task: what ran, its statuses and timestamps, and why it stopped."""

    arn: str
    task_id: str
    cluster: str
    cluster_arn: str
    definition: dict[str, Any]
    overrides: dict[str, Any]
    containers: list[ContainerRun]
    launch_type: str
    created_at: float
    cpu: int | None = None
    memory: int | None = None
    started_by: str | None = None
    group: str | None = None
    tags: list[Any] = field(default_factory=list)
    last_status: TaskStatus = S.PROVISIONING
    desired_status: str = "RUNNING"
    history: list[tuple[TaskStatus, float]] = field(default_factory=list)
    times: dict[str, float] = field(default_factory=dict)
    stop_code: str | None = None
    stopped_reason: str | None = None
    version: int = 1

    def __post_init__(self) -> None:
        if not self.history:
            self.history.append((self.last_status, self.created_at))

    @property
    def family(self) -> str:
        return str(self.definition["family"])

    def container(self, name: str) -> ContainerRun:
        return next(c for c in self.containers if c.name == name)

    def advance(self, status: TaskStatus, now: float) -> None:
        """Move to ``status``; InvalidTransition unless the lifecycle allows it from here."""
        if status not in _NEXT[self.last_status]:
            raise InvalidTransition(
                f"task {self.task_id} is {self.last_status.value}: it cannot become {status.value}"
            )
        self.last_status = status
        self.history.append((status, now))
        self.version += 1
        stamp = {S.RUNNING: "startedAt", S.STOPPING: "stoppingAt", S.STOPPED: "stoppedAt"}
        if status in stamp:
            self.times[stamp[status]] = now
        if status is S.DEPROVISIONING:
            self.times.setdefault("stoppingAt", now)
            self.times["executionStoppedAt"] = now

    def stamp(self, name: str, now: float) -> None:
        """Record a moment of the start (``pullStartedAt``, ``pullStoppedAt``)."""
        self.times[name] = now

    def request_stop(self, code: str, reason: str, now: float) -> bool:
        """The first cause of a stop wins; True when this call is that cause.

        A RUNNING task turns STOPPING at once; an earlier one stops when its start returns.
        """
        if self.desired_status == "STOPPED":
            return False
        self.desired_status = "STOPPED"
        self.stop_code = code
        self.stopped_reason = reason
        self.version += 1
        if self.last_status is S.RUNNING:
            self.advance(S.STOPPING, now)
        return True

    def container_started(self, name: str, bindings: list[dict[str, Any]]) -> None:
        container = self.container(name)
        container.last_status = "RUNNING"
        container.bindings = bindings
        self.version += 1

    def container_exited(
        self, name: str, exit_code: int | None, reason: str | None, now: float
    ) -> bool:
        """Record a container's end; True when it was essential and so the task must stop."""
        container = self.container(name)
        container.last_status = "STOPPED"
        container.exit_code = exit_code
        container.reason = reason
        self.version += 1
        if container.essential:
            return self.request_stop(ESSENTIAL_CONTAINER_EXITED, ESSENTIAL_EXITED_REASON, now)
        return False

    def failed_to_start(self, name: str | None, reason: str, now: float) -> None:
        """A start failed (an image missing, Docker refusing): TaskFailedToStart with ``reason``;
        the container it concerns (if known) carries the reason too."""
        if name is not None:
            self.container(name).reason = reason
        self.request_stop(TASK_FAILED_TO_START, reason, now)

    def deprovision(self, now: float) -> None:
        """Its containers are stopping or stopped and are being removed: DEPROVISIONING."""
        if self.last_status is S.RUNNING:
            self.request_stop(ESSENTIAL_CONTAINER_EXITED, ESSENTIAL_EXITED_REASON, now)
        if self.last_status is S.RUNNING:  # a stop was requested already, but not acted on
            self.advance(S.STOPPING, now)
        if self.last_status is not S.DEPROVISIONING:
            self.advance(S.DEPROVISIONING, now)

    def stopped(self, now: float) -> None:
        """Every container is gone: STOPPED."""
        for container in self.containers:
            container.last_status = "STOPPED"
        self.desired_status = "STOPPED"
        self.advance(S.STOPPED, now)

    def shape(self, region: str = "") -> dict[str, Any]:
        """ECS's ``Task`` (timestamps as epoch seconds, as botocore's JSON protocol reads them)."""
        shape: dict[str, Any] = {
            "taskArn": self.arn,
            "clusterArn": self.cluster_arn,
            "taskDefinitionArn": self.definition["taskDefinitionArn"],
            "containers": [c.shape(self.arn) for c in self.containers],
            "overrides": copy.deepcopy(self.overrides),
            "lastStatus": self.last_status.value,
            "desiredStatus": self.desired_status,
            "createdAt": self.created_at,
            "connectivity": "CONNECTED",
            "connectivityAt": self.created_at,
            "launchType": self.launch_type,
            "group": self.group or f"family:{self.family}",
            "version": self.version,
            "attachments": [],
            "attributes": [],
            "healthStatus": "UNKNOWN",
            "enableExecuteCommand": False,
            "tags": list(self.tags),
        }
        if region:
            shape["availabilityZone"] = f"{region}a"
        if self.launch_type == "FARGATE":
            shape["platformVersion"] = "1.4.0"
            shape["platformFamily"] = "Linux"
        if self.cpu is not None:
            shape["cpu"] = str(self.cpu)
        if self.memory is not None:
            shape["memory"] = str(self.memory)
        if self.started_by is not None:
            shape["startedBy"] = self.started_by
        shape.update(self.times)
        if self.stop_code is not None:
            shape["stopCode"] = self.stop_code
            shape["stoppedReason"] = self.stopped_reason
        return shape
