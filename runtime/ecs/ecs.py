"""``Ecs``: ECS's task definitions, clusters and tasks as a library, over the local Docker Engine.

Each operation is a coroutine named like the API's (``RunTask`` is ``run_task``) that takes
the request as ECS's JSON (a dict, or keyword arguments) and returns the response as ECS's
JSON, so the service's ECS API only moves dicts.  Errors are ECS's (errors.py).

    registry.py   RegisterTaskDefinition … ListTaskDefinitionFamilies   (no Docker needed)
    clusters.py   CreateCluster, DescribeClusters, ListClusters
    model.py      a task's state          ◀── reported by ──  tasks.py (the Docker work)
"""

from __future__ import annotations

import re
import time
import uuid
from collections.abc import Mapping
from typing import Any

from ..config import PoolConfig
from ..node import local_node_id
from .clusters import Clusters
from .errors import InvalidParameterException
from .listing import page
from .model import USER_INITIATED, USER_STOPPED_REASON, ContainerRun, Task, TaskStatus
from .naming import Arns, task_id
from .overrides import check_overrides, effective_containers, task_size
from .registry import TaskDefinitions
from .taskdef import tags as check_tags
from .tasks import TaskRunner

#: stopped tasks kept describable, the oldest forgotten first
MAX_STOPPED_TASKS = 1000
MAX_COUNT = 10
MAX_DESCRIBE = 100
LAUNCH_TYPES = ("EC2", "FARGATE", "EXTERNAL", "MANAGED_INSTANCES")
_FAMILY_RE = re.compile(r"^[a-zA-Z0-9_-]+$")
_PENDING = (TaskStatus.PROVISIONING, TaskStatus.PENDING)

#: the operations, by their API names (``Ecs`` has each as a snake_case coroutine)
OPERATIONS = (
    "RegisterTaskDefinition",
    "DescribeTaskDefinition",
    "DeregisterTaskDefinition",
    "ListTaskDefinitions",
    "ListTaskDefinitionFamilies",
    "CreateCluster",
    "DescribeClusters",
    "ListClusters",
    "RunTask",
    "StopTask",
    "DescribeTasks",
    "ListTasks",
)

Request = Mapping[str, Any] | None


class Ecs:
    """Task definitions, clusters and tasks; use as ``async with Ecs(pool) as ecs``.

    ``pool`` gives the region and account of the ARNs and ``trust_image_binds``;
    ``docker_url`` the engine (by default Docker's own lookup, made on the first RunTask).
    ``close()`` stops every task and removes every container it started.
    """

    def __init__(
        self,
        pool: PoolConfig | None = None,
        *,
        docker_url: str | None = None,
        node_id: str | None = None,
        max_stopped_tasks: int = MAX_STOPPED_TASKS,
    ) -> None:
        self.pool = pool if pool is not None else PoolConfig()
        self.arns = Arns(self.pool.region, self.pool.account_id)
        self.task_definitions = TaskDefinitions(self.arns)
        self.clusters = Clusters(self.arns, self._counts)
        self.runner = TaskRunner(
            node_id=node_id or local_node_id(),
            trust_image_binds=self.pool.trust_image_binds,
            url=docker_url,
        )
        self.max_stopped_tasks = max_stopped_tasks
        self._tasks: dict[str, Task] = {}

    async def __aenter__(self) -> Ecs:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        """Stop every task now: its containers are removed (stopCode TerminationNotice)."""
        await self.runner.close()

    # -- task definitions ---------------------------------------------------------------------

    async def register_task_definition(
        self, request: Request = None, **params: Any
    ) -> dict[str, Any]:
        return self.task_definitions.register(_request(request, params), time.time())

    async def describe_task_definition(
        self, request: Request = None, **params: Any
    ) -> dict[str, Any]:
        req = _request(request, params)
        return self.task_definitions.describe(req.get("taskDefinition"), req.get("include"))

    async def deregister_task_definition(
        self, request: Request = None, **params: Any
    ) -> dict[str, Any]:
        req = _request(request, params)
        return self.task_definitions.deregister(req.get("taskDefinition"), time.time())

    async def list_task_definitions(self, request: Request = None, **params: Any) -> dict[str, Any]:
        return self.task_definitions.list_arns(_request(request, params))

    async def list_task_definition_families(
        self, request: Request = None, **params: Any
    ) -> dict[str, Any]:
        return self.task_definitions.list_families(_request(request, params))

    # -- clusters -----------------------------------------------------------------------------

    async def create_cluster(self, request: Request = None, **params: Any) -> dict[str, Any]:
        return self.clusters.create(_request(request, params))

    async def describe_clusters(self, request: Request = None, **params: Any) -> dict[str, Any]:
        return self.clusters.describe(_request(request, params))

    async def list_clusters(self, request: Request = None, **params: Any) -> dict[str, Any]:
        return self.clusters.list(_request(request, params))

    # -- tasks --------------------------------------------------------------------------------

    async def run_task(self, request: Request = None, **params: Any) -> dict[str, Any]:
        """RunTask: ``count`` tasks start in the background; they are returned PROVISIONING."""
        req = _request(request, params)
        definition = self.task_definitions.runnable(req.get("taskDefinition"))
        cluster = self.clusters.resolve(req.get("cluster"))
        count = _count(req.get("count", 1))
        launch_type = _launch_type(req.get("launchType"), definition)
        overrides = check_overrides(req.get("overrides"), definition)
        started_by = _string(req, "startedBy", 128)
        group = _string(req, "group", 255)
        tags = check_tags(req.get("tags"), InvalidParameterException)
        self.runner.check_engine()  # no engine: a ServerException now, not failed tasks
        tasks = []
        for _ in range(count):
            task = self._new_task(definition, cluster, overrides, launch_type)
            task.started_by, task.group, task.tags = started_by, group, list(tags)
            self._tasks[task.arn] = task
            self.runner.start(task)
            tasks.append(task)
        self._forget_old()
        return {"tasks": [t.shape(self.pool.region) for t in tasks], "failures": []}

    async def stop_task(self, request: Request = None, **params: Any) -> dict[str, Any]:
        """StopTask: SIGTERM now, SIGKILL after each container's ``stopTimeout`` (30 s)."""
        req = _request(request, params)
        cluster = self.clusters.resolve(req.get("cluster"))
        task = self._find(cluster, req.get("task"))
        if task is None:
            raise InvalidParameterException("The referenced task was not found.")
        reason = _string(req, "reason", 255) or USER_STOPPED_REASON
        if task.request_stop(USER_INITIATED, reason, time.time()):
            self.runner.stop(task)
        return {"task": task.shape(self.pool.region)}

    async def describe_tasks(self, request: Request = None, **params: Any) -> dict[str, Any]:
        """DescribeTasks: unknown tasks (or other clusters') are failures ``MISSING``."""
        req = _request(request, params)
        cluster = self.clusters.resolve(req.get("cluster"))
        refs = req.get("tasks")
        if not isinstance(refs, list) or not refs:
            raise InvalidParameterException("Tasks cannot be empty.")
        if len(refs) > MAX_DESCRIBE:
            raise InvalidParameterException(f"Tasks cannot contain more than {MAX_DESCRIBE} ids.")
        tasks, failures = [], []
        for ref in refs:
            task = self._find(cluster, ref)
            if task is None:
                failures.append({"arn": str(ref), "reason": "MISSING"})
            else:
                tasks.append(task.shape(self.pool.region))
        return {"tasks": tasks, "failures": failures}

    async def list_tasks(self, request: Request = None, **params: Any) -> dict[str, Any]:
        """ListTasks of a cluster by ``desiredStatus`` (RUNNING by default), ``family``,
        ``startedBy`` and ``launchType``, oldest first."""
        req = _request(request, params)
        cluster = self.clusters.resolve(req.get("cluster"))
        desired = req.get("desiredStatus") or "RUNNING"
        if desired not in ("RUNNING", "PENDING", "STOPPED"):
            raise InvalidParameterException("desiredStatus must be RUNNING, PENDING or STOPPED.")
        family = req.get("family")
        if family is not None and (not isinstance(family, str) or not _FAMILY_RE.match(family)):
            raise InvalidParameterException("family must match ^[a-zA-Z0-9\\-_]+$")
        wanted = {
            "family": family,
            "started_by": req.get("startedBy"),
            "launch_type": req.get("launchType"),
        }
        arns = [
            t.arn
            for t in self._tasks.values()
            if t.cluster == cluster and t.desired_status == desired and _matches(t, wanted)
        ]
        items, token = page(arns, req.get("nextToken"), req.get("maxResults"))
        answer: dict[str, Any] = {"taskArns": items}
        if token is not None:
            answer["nextToken"] = token
        return answer

    # -- beyond the API -----------------------------------------------------------------------

    def task_history(self, task: str) -> list[tuple[str, float]]:
        """Every status the task has had, with the time it took it (epoch seconds)."""
        found = self._find(None, task)
        if found is None:
            raise InvalidParameterException("The referenced task was not found.")
        return [(status.value, at) for status, at in found.history]

    async def wait_stopped(self, task: str, timeout: float = 60.0) -> dict[str, Any]:
        """The task's ``Task`` shape once it is STOPPED; TimeoutError after ``timeout``."""
        found = self._find(None, task)
        if found is None:
            raise InvalidParameterException("The referenced task was not found.")
        await self.runner.wait(found, timeout)
        return found.shape(self.pool.region)

    def _new_task(
        self, definition: dict[str, Any], cluster: str, overrides: dict[str, Any], launch: str
    ) -> Task:
        new_id = uuid.uuid4().hex
        containers = [
            ContainerRun(
                name=c["name"],
                arn=self.arns.container(cluster, new_id, str(uuid.uuid4())),
                definition=c,
            )
            for c in effective_containers(definition, overrides)
        ]
        cpu, memory = task_size(definition, overrides)
        return Task(
            arn=self.arns.task(cluster, new_id),
            task_id=new_id,
            cluster=cluster,
            cluster_arn=self.arns.cluster(cluster),
            definition=definition,
            overrides=overrides,
            containers=containers,
            launch_type=launch,
            created_at=time.time(),
            cpu=cpu,
            memory=memory,
        )

    def _find(self, cluster: str | None, ref: Any) -> Task | None:
        """The task ``ref`` (an ARN or an id) names, in ``cluster`` unless that is None."""
        if not isinstance(ref, str) or not ref:
            return None
        wanted = task_id(ref)
        for task in self._tasks.values():
            if task.task_id == wanted and cluster in (None, task.cluster):
                return task
        return None

    def _forget_old(self) -> None:
        stopped = [arn for arn, t in self._tasks.items() if t.last_status is TaskStatus.STOPPED]
        for arn in stopped[: max(0, len(stopped) - self.max_stopped_tasks)]:
            del self._tasks[arn]

    def _counts(self, cluster: str) -> tuple[int, int]:
        tasks = [t for t in self._tasks.values() if t.cluster == cluster]
        running = sum(t.last_status is TaskStatus.RUNNING for t in tasks)
        return running, sum(t.last_status in _PENDING for t in tasks)

    def __repr__(self) -> str:
        statuses = [t.last_status for t in self._tasks.values()]
        running = statuses.count(TaskStatus.RUNNING)
        stopped = statuses.count(TaskStatus.STOPPED)
        pending = sum(s in _PENDING for s in statuses)
        return (
            f"<Ecs task_definitions={len(self.task_definitions)} clusters={len(self.clusters)} "
            f"tasks: pending={pending} running={running} stopping="
            f"{len(statuses) - running - stopped - pending} stopped={stopped}>"
        )


def _request(request: Request, params: dict[str, Any]) -> dict[str, Any]:
    if request is not None and not isinstance(request, Mapping):
        raise InvalidParameterException("The request must be a JSON object.")
    merged = dict(request or {})
    merged.update(params)
    return merged


def _count(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_COUNT:
        raise InvalidParameterException(f"count must be between 1 and {MAX_COUNT}.")
    return value


def _launch_type(value: Any, definition: dict[str, Any]) -> str:
    """The launch type asked for, else FARGATE for a Fargate-only definition, else EC2."""
    required = definition.get("requiresCompatibilities") or []
    if value is None:
        return "FARGATE" if required == ["FARGATE"] else "EC2"
    if value not in LAUNCH_TYPES:
        raise InvalidParameterException(f"launchType must be one of {', '.join(LAUNCH_TYPES)}.")
    if value not in {*definition["compatibilities"], *required}:
        raise InvalidParameterException(f"Task definition does not support launch_type {value}.")
    return str(value)


def _string(request: dict[str, Any], key: str, limit: int) -> str | None:
    value = request.get(key)
    if value is None:
        return None
    if not isinstance(value, str) or len(value) > limit:
        raise InvalidParameterException(f"{key} must be a string of at most {limit} characters.")
    return value


def _matches(task: Task, wanted: dict[str, Any]) -> bool:
    return (
        (wanted["family"] is None or task.family == wanted["family"])
        and (wanted["started_by"] is None or task.started_by == wanted["started_by"])
        and (wanted["launch_type"] is None or task.launch_type == wanted["launch_type"])
    )
