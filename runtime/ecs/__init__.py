"""ECS's model on this machine: task definitions as ECS JSON, tasks as Docker containers.

    async with Ecs(PoolConfig(trust_image_binds=True)) as ecs:
        await ecs.register_task_definition(family="web", containerDefinitions=[...])
        task = (await ecs.run_task(taskDefinition="web"))["tasks"][0]
        await ecs.stop_task(task=task["taskArn"], reason="done")

The service serves the same operations over ECS's JSON 1.1 protocol (service/ecs_api.py).
"""

from __future__ import annotations

from .ecs import OPERATIONS, Ecs
from .errors import (
    ClientException,
    ClusterNotFoundException,
    InvalidParameterException,
    ServerException,
)
from .model import Task, TaskStatus
from .taskdef import task_definition

__all__ = [
    "OPERATIONS",
    "ClientException",
    "ClusterNotFoundException",
    "Ecs",
    "InvalidParameterException",
    "ServerException",
    "Task",
    "TaskStatus",
    "task_definition",
]
