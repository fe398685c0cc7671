"""The ``Ecs`` library on a real Docker Engine: several containers per task, essential and
not, stops before a task ran, out-of-memory kills, and ``close`` while tasks run or start."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

import pytest
from docker_support import IMAGE, leftovers

from runtime.config import PoolConfig
from runtime.ecs import Ecs, InvalidParameterException

pytestmark = pytest.mark.usefixtures("docker_engine")

POOL = PoolConfig(trust_image_binds=True)
SLEEP = ["python3", "-c", "import time; time.sleep(60)"]


def app(name: str, command: list[str], **fields: Any) -> dict[str, Any]:
    return {"name": name, "image": IMAGE, "memory": 48, "command": command, **fields}


async def until(ecs: Ecs, arn: str, check: Callable[[dict[str, Any]], bool]) -> dict[str, Any]:
    """The task once ``check`` holds (a bounded wait on real containers)."""
    deadline = time.monotonic() + 20
    while True:
        task: dict[str, Any] = (await ecs.describe_tasks(tasks=[arn]))["tasks"][0]
        if check(task):
            return task
        assert time.monotonic() < deadline, f"gave up waiting: {task}"
        await asyncio.sleep(0.05)


def statuses(ecs: Ecs, arn: str) -> list[str]:
    return [status for status, _ in ecs.task_history(arn)]


def test_an_essential_exit_stops_the_sidecar(arun: Callable[..., Any]) -> None:
    async def main() -> None:
        async with Ecs(POOL) as ecs:
            await ecs.register_task_definition(
                family="pair",
                containerDefinitions=[
                    app("main", ["python3", "-c", "import time; time.sleep(0.5)"]),
                    app("side", SLEEP, essential=False, stopTimeout=1),
                ],
            )
            arn = (await ecs.run_task(taskDefinition="pair"))["tasks"][0]["taskArn"]
            task = await ecs.wait_stopped(arn, timeout=20)
            main_exit, side_exit = (c["exitCode"] for c in task["containers"])
            assert (main_exit, side_exit) == (0, 137)  # the sidecar ignored SIGTERM as pid 1
            assert task["stopCode"] == "EssentialContainerExited"
            assert statuses(ecs, arn)[-3:] == ["STOPPING", "DEPROVISIONING", "STOPPED"]

    arun(main())


def test_a_non_essential_exit_leaves_the_task_running(arun: Callable[..., Any]) -> None:
    async def main() -> None:
        async with Ecs(POOL) as ecs:
            await ecs.register_task_definition(
                family="pair",
                containerDefinitions=[
                    app("main", SLEEP, stopTimeout=1),
                    app("side", ["python3", "-c", "exit(5)"], essential=False),
                ],
            )
            arn = (await ecs.run_task(taskDefinition="pair"))["tasks"][0]["taskArn"]
            task = await until(ecs, arn, lambda t: t["containers"][1]["lastStatus"] == "STOPPED")
            assert task["containers"][1]["exitCode"] == 5
            assert (task["lastStatus"], task["desiredStatus"]) == ("RUNNING", "RUNNING")
            assert task["containers"][0]["lastStatus"] == "RUNNING"
            await ecs.stop_task(task=arn, reason="enough")
            task = await ecs.wait_stopped(arn, timeout=20)
            assert (task["stopCode"], task["stoppedReason"]) == ("UserInitiated", "enough")

    arun(main())


def test_a_stop_before_the_task_ran(arun: Callable[..., Any]) -> None:
    async def main() -> None:
        async with Ecs(POOL) as ecs:
            await ecs.register_task_definition(family="s", containerDefinitions=[app("a", SLEEP)])
            arn = (await ecs.run_task(taskDefinition="s"))["tasks"][0]["taskArn"]
            stopped = await ecs.stop_task(task=arn)  # still PROVISIONING
            assert stopped["task"]["lastStatus"] == "PROVISIONING"
            assert stopped["task"]["desiredStatus"] == "STOPPED"
            task = await ecs.wait_stopped(arn, timeout=20)
            assert task["stopCode"] == "UserInitiated"
            assert "startedAt" not in task
            assert statuses(ecs, arn) == ["PROVISIONING", "PENDING", "DEPROVISIONING", "STOPPED"]
            assert await leftovers() == []

    arun(main())


def test_out_of_memory(arun: Callable[..., Any]) -> None:
    async def main() -> None:
        async with Ecs(POOL) as ecs:
            hog = ["python3", "-c", "b = bytearray(256 * 1024 * 1024)"]
            await ecs.register_task_definition(family="hog", containerDefinitions=[app("h", hog)])
            arn = (await ecs.run_task(taskDefinition="hog"))["tasks"][0]["taskArn"]
            task = await ecs.wait_stopped(arn, timeout=20)
            (container,) = task["containers"]
            assert container["exitCode"] == 137
            assert container["reason"] == "OutOfMemoryError: Container killed due to memory usage"
            assert task["stopCode"] == "EssentialContainerExited"

    arun(main())


def test_close_removes_running_and_starting_tasks(arun: Callable[..., Any]) -> None:
    async def main() -> None:
        ecs = Ecs(POOL)
        await ecs.register_task_definition(family="s", containerDefinitions=[app("a", SLEEP)])
        running = (await ecs.run_task(taskDefinition="s", count=2))["tasks"]
        for task in running:
            await until(ecs, task["taskArn"], lambda t: t["lastStatus"] == "RUNNING")
        starting = (await ecs.run_task(taskDefinition="s", count=3))["tasks"]
        await asyncio.sleep(0.05)  # let their creates reach the engine
        assert "running=2" in repr(ecs)
        await ecs.close()
        assert await leftovers() == []
        for task in running + starting:
            shape = (await ecs.describe_tasks(tasks=[task["taskArn"]]))["tasks"][0]
            assert shape["lastStatus"] == "STOPPED"
            assert shape["stopCode"] == "TerminationNotice"
        assert repr(ecs).endswith("pending=0 running=0 stopping=0 stopped=5>")

    arun(main())


def test_close_as_a_create_answers_removes_what_it_made(arun: Callable[..., Any]) -> None:
    """The worst moment for a close: Docker has made the container and answered, and the run
    is cancelled before it reads the answer. The container must still be removed."""

    async def main() -> None:
        ecs = Ecs(POOL)
        await ecs.register_task_definition(family="c", containerDefinitions=[app("a", SLEEP)])
        containers = ecs.runner.docker.containers
        real_create = containers.create
        closing: list[asyncio.Future[None]] = []

        async def create_then_close(*args: Any, **kwargs: Any) -> Any:
            made = await real_create(*args, **kwargs)
            closing.append(asyncio.ensure_future(ecs.close()))
            await asyncio.sleep(0)  # the close cancels the run before it resumes
            return made

        containers.create = create_then_close  # type: ignore[method-assign]
        arn = (await ecs.run_task(taskDefinition="c"))["tasks"][0]["taskArn"]
        await until(ecs, arn, lambda _: bool(closing))
        await closing[0]
        assert await leftovers() == []
        shape = (await ecs.describe_tasks(tasks=[arn]))["tasks"][0]
        assert (shape["lastStatus"], shape["stopCode"]) == ("STOPPED", "TerminationNotice")

    arun(main())


def test_stopped_tasks_are_forgotten_oldest_first(arun: Callable[..., Any]) -> None:
    async def main() -> None:
        async with Ecs(POOL, max_stopped_tasks=2) as ecs:
            quick = app("q", ["python3", "-c", "pass"])
            await ecs.register_task_definition(family="q", containerDefinitions=[quick])
            arns = []
            for _ in range(3):
                arn = (await ecs.run_task(taskDefinition="q"))["tasks"][0]["taskArn"]
                await ecs.wait_stopped(arn, timeout=20)
                arns.append(arn)
            await ecs.run_task(taskDefinition="q")  # forgetting happens as tasks are added
            described = await ecs.describe_tasks(tasks=arns)
            assert [f["arn"] for f in described["failures"]] == arns[:1]
            with pytest.raises(InvalidParameterException, match="referenced task was not found"):
                ecs.task_history(arns[0])

    arun(main())
