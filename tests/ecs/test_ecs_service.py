"""ECS's API through boto3's ``ecs`` client (and raw HTTP), against a real server on loopback,
with tasks running as real containers on the local Docker Engine."""

from __future__ import annotations

import asyncio
import copy
import io
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from typing import Any

import aiodocker
import aiohttp
import botocore.exceptions
import orjson
import pytest
from docker_support import IMAGE, leftovers
from helpers import ECS_SEED
from service_support import boto, call, config_of, serving

from runtime.config import PoolConfig
from runtime.configfile import AuthConfig
from runtime.docker import LABEL, MB, NODE_LABEL
from runtime.node import local_node_id
from runtime.service import gateway
from runtime.service.app import ECS

pytestmark = pytest.mark.usefixtures("docker_engine", "no_leaked_threads")

TARGET = "AmazonEC2ContainerServiceV20141113"
JSON11 = "application/x-amz-json-1.1"
POOL = PoolConfig(trust_image_binds=True)
ACCOUNT = "000000000000"


async def post(
    http: aiohttp.ClientSession, url: str, operation: str, body: bytes | io.BytesIO
) -> tuple[int, dict[str, Any]]:
    """One JSON 1.1 call by hand: (status, answer)."""
    headers = {"X-Amz-Target": f"{TARGET}.{operation}", "Content-Type": JSON11}
    async with http.post(url + "/", data=body, headers=headers) as resp:
        assert resp.headers["Content-Type"] == JSON11
        return resp.status, orjson.loads(await resp.read())


def code_of(caught: pytest.ExceptionInfo[botocore.exceptions.ClientError]) -> tuple[str, str, int]:
    error = caught.value.response["Error"]
    return (
        error["Code"],
        error["Message"],
        caught.value.response["ResponseMetadata"]["HTTPStatusCode"],
    )


def python_task(family: str, *command: str, **container: Any) -> dict[str, Any]:
    """A definition of one essential container on the test image running ``command``."""
    definition = {"name": "app", "image": IMAGE, "memory": 64, **container}
    if command:
        definition["command"] = list(command)
    return {"family": family, "containerDefinitions": [definition]}


async def until(
    client: Any, arn: str, status: str, timeout: float = 20.0, cluster: str = "default"
) -> dict[str, Any]:
    """The task once its lastStatus is ``status`` (a bounded wait on real containers)."""
    deadline = time.monotonic() + timeout
    while True:
        found = await call(client.describe_tasks, cluster=cluster, tasks=[arn])
        task: dict[str, Any] = found["tasks"][0]
        if task["lastStatus"] == status:
            return task
        if task["lastStatus"] == "STOPPED":
            pytest.fail(f"task stopped instead of becoming {status}: {task}")
        if time.monotonic() > deadline:
            pytest.fail(f"task did not become {status} within {timeout} s: {task}")
        await asyncio.sleep(0.05)


def fetch(url: str, timeout: float = 10.0) -> bytes:
    """GET ``url``, retrying while the server in the container is not listening yet."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(url, timeout=2) as resp:
                body: bytes = resp.read()
                return body
        except (urllib.error.URLError, ConnectionError) as exc:
            if time.monotonic() > deadline:
                raise AssertionError(f"{url} never answered: {exc}") from None
            time.sleep(0.05)


async def inspect(container_id: str) -> dict[str, Any]:
    async with aiodocker.Docker() as docker:
        info: dict[str, Any] = await docker.containers.container(container_id).show()
        return info


async def exists(container_id: str) -> bool:
    async with aiodocker.Docker() as docker:
        found = await docker.containers.list(all=True, filters=f'{{"id": ["{container_id}"]}}')
    return bool(found)


# -- task definitions --------------------------------------------------------------------------


def test_the_seed_registers_as_written_through_every_door(arun: Callable[..., Any]) -> None:
    async def main() -> None:
        async with (
            serving(config_of(pool=POOL)) as svc,
            boto(svc.url, "ecs", parameter_validation=False) as raw_client,
            boto(svc.url, "ecs") as client,
            aiohttp.ClientSession() as http,
        ):
            # boto3 itself, sending the seed's string numbers unchanged
            first = (await call(raw_client.register_task_definition, **copy.deepcopy(ECS_SEED)))[
                "taskDefinition"
            ]
            assert first["taskDefinitionArn"] == (
                f"arn:aws:ecs:us-east-1:{ACCOUNT}:task-definition/webserver:1"
            )
            assert (first["cpu"], first["memory"], first["revision"]) == ("256", "512", 1)
            assert first["containerDefinitions"][0]["memory"] == 100
            assert first["containerDefinitions"][0]["cpu"] == 99
            assert first["requiresCompatibilities"] == ["FARGATE"]
            assert first["compatibilities"] == ["EC2", "FARGATE"]
            assert first["status"] == "ACTIVE"
            # raw HTTP, the JSON text as the notes have it
            status, answer = await post(
                http, svc.url, "RegisterTaskDefinition", orjson.dumps(ECS_SEED)
            )
            assert status == 200
            assert answer["taskDefinition"]["revision"] == 2
            assert answer["taskDefinition"]["containerDefinitions"][0]["memory"] == 100
            # the library behind the service
            third = await svc.app[ECS].register_task_definition(copy.deepcopy(ECS_SEED))
            assert third["taskDefinition"]["revision"] == 3
            # boto3 with its own type checks: the same definition with typed numbers
            typed = copy.deepcopy(ECS_SEED)
            typed["containerDefinitions"][0].update(memory=100, cpu=99)
            fourth = await call(client.register_task_definition, **typed)
            assert fourth["taskDefinition"]["revision"] == 4
            assert first.keys() == fourth["taskDefinition"].keys()

            latest = await call(client.describe_task_definition, taskDefinition="webserver")
            assert latest["taskDefinition"]["revision"] == 4
            by_arn = await call(
                client.describe_task_definition, taskDefinition=first["taskDefinitionArn"]
            )
            assert by_arn["taskDefinition"]["revision"] == 1

            gone = await call(client.deregister_task_definition, taskDefinition="webserver:4")
            assert gone["taskDefinition"]["status"] == "INACTIVE"
            still = await call(client.describe_task_definition, taskDefinition="webserver:4")
            assert still["taskDefinition"]["status"] == "INACTIVE"
            latest = await call(client.describe_task_definition, taskDefinition="webserver")
            assert latest["taskDefinition"]["revision"] == 3
            with pytest.raises(client.exceptions.ClientException) as caught:
                await call(client.run_task, taskDefinition="webserver:4")
            assert code_of(caught) == ("ClientException", "TaskDefinition is inactive", 400)
            with pytest.raises(client.exceptions.ClientException) as caught:
                await call(client.describe_task_definition, taskDefinition="nothing")
            assert code_of(caught)[1] == "Unable to describe task definition."

            listed = await call(client.list_task_definitions, familyPrefix="web")
            assert [a.rsplit("/", 1)[1] for a in listed["taskDefinitionArns"]] == [
                "webserver:1",
                "webserver:2",
                "webserver:3",
            ]
            families = await call(client.list_task_definition_families)
            assert families["families"] == ["webserver"]
            pages = client.get_paginator("list_task_definitions").paginate(
                PaginationConfig={"PageSize": 2}
            )
            arns = await call(lambda: [a for p in pages for a in p["taskDefinitionArns"]])
            assert arns == listed["taskDefinitionArns"]

    arun(main())


#: (definition as sent, the ClientException message it gets)
BAD: list[tuple[dict[str, Any], str]] = [
    ({"family": "bad name", "containerDefinitions": [{"name": "a", "image": "i", "memory": 8}]},
     "Family contains invalid characters."),
    ({"family": "f", "containerDefinitions": []}, "Container list cannot be empty."),
    ({"family": "f", "containerDefinitions": [{"name": "a", "memory": 8}]},
     "Container.image should not be null or empty."),
    ({"family": "f", "containerDefinitions": [{"name": "a", "image": "i"}]},
     "Invalid setting for container 'a'. At least one of 'memory' or 'memoryReservation' must "
     "be specified."),
    ({**ECS_SEED, "networkMode": "bridge"}, "Fargate only supports network mode 'awsvpc'."),
    ({**ECS_SEED, "memory": "4096"},
     "No Fargate configuration exists for given values: 256 CPU, 4096 memory. See the Amazon "
     "ECS documentation for the valid values."),
    ({**ECS_SEED, "containerDefinitions": [{"name": "web", "image": "i", "memory": "1024"}]},
     "The 'memory' setting for container 'web' is greater than for the task."),
    ({"family": "f", "containerDefinitions": [{"name": "a", "image": "i", "memory": "lots"}]},
     "Invalid 'memory' setting for container 'a'."),
    ({"family": "f", "containerDefinitions": [{"name": "a", "image": "i", "memory": 8},
                                               {"name": "a", "image": "i", "memory": 8}]},
     "Container names must be unique within a Task Definition."),
    ({**ECS_SEED, "containerDefinitions": [{"name": "web", "image": "i", "memory": 64,
                                        "portMappings": [{"containerPort": 80, "hostPort": 81}]}]},
     "When networkMode=awsvpc, the host ports and container ports in port mappings must match."),
]  # fmt: skip


def test_bad_definitions_get_ecs_errors(arun: Callable[..., Any]) -> None:
    async def main() -> None:
        async with (
            serving(config_of()) as svc,
            boto(svc.url, "ecs", parameter_validation=False) as client,
        ):
            for request, message in BAD:
                with pytest.raises(client.exceptions.ClientException) as caught:
                    await call(client.register_task_definition, **copy.deepcopy(request))
                assert code_of(caught) == ("ClientException", message, 400), request
            listed = await call(client.list_task_definition_families, status="ALL")
            assert listed["families"] == []

    arun(main())


def test_raw_http_errors_and_the_front_door(arun: Callable[..., Any]) -> None:
    async def main() -> None:
        async with serving(config_of()) as svc, aiohttp.ClientSession() as http:
            status, answer = await post(http, svc.url, "ListClusters", b"{not json")
            assert status == 400
            assert answer["__type"] == "SerializationException"
            status, answer = await post(http, svc.url, "ListClusters", b"[1, 2]")
            assert (status, answer["__type"]) == (400, "SerializationException")
            status, answer = await post(http, svc.url, "LaunchRocket", b"{}")
            assert (status, answer["__type"]) == (400, "UnknownOperationException")
            status, answer = await post(http, svc.url, "register_task_definition", b"{}")
            assert (status, answer["__type"]) == (400, "UnknownOperationException")
            headers = {"X-Amz-Target": "AWSEvents.PutEvents", "Content-Type": JSON11}
            async with http.post(svc.url + "/", data=b"{}", headers=headers) as resp:
                assert resp.status == 400
                assert (await resp.json(content_type=None))["__type"] == (
                    "UnknownOperationException"
                )
            status, answer = await post(http, svc.url, "ListClusters", b"")
            assert status == 200
            assert answer["clusterArns"] == [f"arn:aws:ecs:us-east-1:{ACCOUNT}:cluster/default"]
            status, answer = await post(http, svc.url, "RegisterTaskDefinition", b"{}")
            assert (status, answer) == (
                400,
                {"__type": "ClientException", "message": "Family can not be blank."},
            )
            status, answer = await post(
                http, svc.url, "RegisterTaskDefinition", io.BytesIO(b"[" + b"1," * 600_000 + b"1]")
            )
            assert (status, answer["__type"]) == (413, "RequestTooLargeException")
            async with http.post(svc.url + "/", data=b"{}") as resp:  # no target: front door
                assert resp.status == 404
                assert await resp.json() == {"message": "Not Found"}

    arun(main())


def test_sigv4_guards_the_ecs_api(arun: Callable[..., Any]) -> None:
    authenticate = gateway.authenticator(AuthConfig(keys={"AKIDTEST": "secret"}))

    async def main() -> None:
        async with (
            serving(config_of(), authenticate=authenticate) as svc,
            boto(svc.url, "ecs") as client,
            boto(svc.url, "ecs", secret="wrong") as forged,
            aiohttp.ClientSession() as http,
        ):
            listed = await call(client.list_clusters)  # signed for service "ecs"
            assert len(listed["clusterArns"]) == 1
            with pytest.raises(botocore.exceptions.ClientError) as caught:
                await call(forged.list_clusters)
            assert code_of(caught)[::2] == ("InvalidSignatureException", 403)
            status, answer = await post(http, svc.url, "ListClusters", b"{}")
            assert (status, answer["__type"]) == (403, "MissingAuthenticationTokenException")

    arun(main())


def test_clusters_and_parameter_errors(arun: Callable[..., Any]) -> None:
    async def main() -> None:
        async with serving(config_of(pool=POOL)) as svc, boto(svc.url, "ecs") as client:
            made = await call(client.create_cluster, clusterName="batch")
            assert made["cluster"]["clusterArn"].endswith(":cluster/batch")
            listed = await call(client.list_clusters)
            assert [a.rsplit("/", 1)[1] for a in listed["clusterArns"]] == ["batch", "default"]
            described = await call(client.describe_clusters, clusters=["batch", "nope"])
            assert [c["status"] for c in described["clusters"]] == ["ACTIVE"]
            assert described["failures"][0]["reason"] == "MISSING"
            await call(client.register_task_definition, **python_task("exit", "true"))

            with pytest.raises(client.exceptions.ClusterNotFoundException) as caught:
                await call(client.run_task, taskDefinition="exit", cluster="nope")
            assert code_of(caught) == ("ClusterNotFoundException", "Cluster not found.", 400)
            with pytest.raises(client.exceptions.ClusterNotFoundException):
                await call(client.list_tasks, cluster="nope")
            with pytest.raises(client.exceptions.ClientException) as caught:
                await call(client.run_task, taskDefinition="missing")
            assert code_of(caught)[1] == "TaskDefinition not found."
            invalid = client.exceptions.InvalidParameterException
            for params, words in (
                ({"count": 0}, "count must be between 1 and 10"),
                ({"count": 11}, "count must be between 1 and 10"),
                ({"launchType": "FARGATE"}, "Task definition does not support launch_type"),
                (
                    {"overrides": {"containerOverrides": [{"name": "db", "command": ["x"]}]}},
                    "Override for container named db is not a container in the TaskDefinition.",
                ),
            ):
                with pytest.raises(invalid) as caught:
                    await call(client.run_task, taskDefinition="exit", **params)
                assert words in code_of(caught)[1]
            with pytest.raises(invalid) as caught:
                await call(client.stop_task, task="0123456789abcdef")
            assert code_of(caught)[1] == "The referenced task was not found."
            with pytest.raises(invalid) as caught:
                await call(client.describe_tasks, tasks=[])
            assert code_of(caught)[1] == "Tasks cannot be empty."
            assert await leftovers() == []  # nothing ran

    arun(main())


# -- tasks on Docker ---------------------------------------------------------------------------


def test_a_short_task_stops_with_its_exit_code(arun: Callable[..., Any]) -> None:
    async def main() -> None:
        async with serving(config_of(pool=POOL)) as svc, boto(svc.url, "ecs") as client:
            await call(
                client.register_task_definition,
                **python_task("exit3", "python3", "-c", "import sys; sys.exit(3)"),
            )
            ran = await call(client.run_task, taskDefinition="exit3", startedBy="tester")
            assert ran["failures"] == []
            (task,) = ran["tasks"]
            arn = task["taskArn"]
            assert arn.startswith(f"arn:aws:ecs:us-east-1:{ACCOUNT}:task/default/")
            assert (task["lastStatus"], task["desiredStatus"]) == ("PROVISIONING", "RUNNING")
            assert task["launchType"] == "EC2"

            stopped = await until(client, arn, "STOPPED")
            (container,) = stopped["containers"]
            assert (container["exitCode"], container["lastStatus"]) == (3, "STOPPED")
            assert stopped["stopCode"] == "EssentialContainerExited"
            assert stopped["stoppedReason"] == "Essential container in task exited"
            assert stopped["desiredStatus"] == "STOPPED"
            assert stopped["startedBy"] == "tester"
            moments = [stopped[k] for k in ("createdAt", "startedAt", "stoppingAt", "stoppedAt")]
            assert moments == sorted(moments)
            assert [s for s, _ in svc.app[ECS].task_history(arn)] == [
                "PROVISIONING",
                "PENDING",
                "RUNNING",
                "STOPPING",
                "DEPROVISIONING",
                "STOPPED",
            ]
            assert not await exists(container["runtimeId"])  # removed with its task

            missing = arn.rsplit("/", 1)[0] + "/" + "0" * 32
            described = await call(client.describe_tasks, tasks=[arn, missing])
            assert [t["taskArn"] for t in described["tasks"]] == [arn]
            assert described["failures"] == [{"arn": missing, "reason": "MISSING"}]
            by_id = await call(client.describe_tasks, tasks=[arn.rsplit("/", 1)[1]])
            assert by_id["tasks"][0]["taskArn"] == arn

    arun(main())


def test_a_server_task_publishes_its_port_and_stops_on_request(arun: Callable[..., Any]) -> None:
    async def main() -> None:
        async with serving(config_of(pool=POOL)) as svc, boto(svc.url, "ecs") as client:
            definition = python_task(
                "web",
                "python3",
                "-m",
                "http.server",
                "8000",
                portMappings=[{"containerPort": 8000}],
                stopTimeout=1,
            )
            definition["cpu"] = "256"
            await call(client.register_task_definition, **definition)
            override = {"containerOverrides": [{"name": "app", "memory": 96}]}
            ran = await call(client.run_task, taskDefinition="web", overrides=override)
            arn = ran["tasks"][0]["taskArn"]
            running = await until(client, arn, "RUNNING")
            (binding,) = running["containers"][0]["networkBindings"]
            assert (binding["bindIP"], binding["containerPort"]) == ("127.0.0.1", 8000)
            assert binding["protocol"] == "tcp"
            assert binding["hostPort"] > 0
            body = await call(fetch, f"http://127.0.0.1:{binding['hostPort']}/")
            assert b"Directory listing" in body

            info = await inspect(running["containers"][0]["runtimeId"])
            host = info["HostConfig"]
            assert (host["Memory"], host["MemorySwap"]) == (96 * MB, 96 * MB)
            assert host["NanoCpus"] == 250_000_000
            assert host["PortBindings"]["8000/tcp"][0]["HostIp"] == "127.0.0.1"
            labels = info["Config"]["Labels"]
            assert labels[LABEL] == "1"
            assert labels[NODE_LABEL] == local_node_id()
            assert labels["warmstart.ecs.task"] == arn
            assert running["containers"][0]["memory"] == "96"

            listed = await call(client.list_tasks, family="web")
            assert listed["taskArns"] == [arn]
            started = time.monotonic()
            stop = await call(client.stop_task, task=arn, reason="maintenance")
            assert stop["task"]["desiredStatus"] == "STOPPED"
            stopped = await until(client, arn, "STOPPED")
            # python as the container's pid 1 has no SIGTERM handler, so the kernel drops the
            # signal: SIGKILL follows after the stop timeout
            assert 0.9 < time.monotonic() - started < 15
            assert stopped["containers"][0]["exitCode"] == 137
            assert (stopped["stopCode"], stopped["stoppedReason"]) == (
                "UserInitiated",
                "maintenance",
            )
            assert (await call(client.list_tasks))["taskArns"] == []
            stopped_list = await call(client.list_tasks, desiredStatus="STOPPED")
            assert stopped_list["taskArns"] == [arn]

    arun(main())


def test_a_task_that_handles_sigterm_exits_at_once(arun: Callable[..., Any]) -> None:
    async def main() -> None:
        async with serving(config_of(pool=POOL)) as svc, boto(svc.url, "ecs") as client:
            program = (
                "import http.server, signal, sys\n"
                "signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))\n"
                "handler = http.server.SimpleHTTPRequestHandler\n"
                "http.server.HTTPServer(('', 8000), handler).serve_forever()\n"
            )
            definition = python_task(
                "polite",
                "python3",
                "-c",
                program,
                stopTimeout=30,
                portMappings=[{"containerPort": 8000, "hostPort": 0}],
            )
            await call(client.register_task_definition, **definition)
            arn = (await call(client.run_task, taskDefinition="polite"))["tasks"][0]["taskArn"]
            running = await until(client, arn, "RUNNING")
            port = running["containers"][0]["networkBindings"][0]["hostPort"]
            await call(fetch, f"http://127.0.0.1:{port}/")  # its SIGTERM handler is in place
            started = time.monotonic()
            await call(client.stop_task, task=arn)
            stopped = await until(client, arn, "STOPPED")
            assert time.monotonic() - started < 10  # well before the 30 s stop timeout
            assert stopped["containers"][0]["exitCode"] == 143
            assert stopped["stoppedReason"] == "Task stopped by user"
            assert stopped["stopCode"] == "UserInitiated"
            stopping = [s for s, _ in svc.app[ECS].task_history(arn)]
            assert stopping[2:] == ["RUNNING", "STOPPING", "DEPROVISIONING", "STOPPED"]

    arun(main())


def test_overrides_count_and_list_filters(arun: Callable[..., Any]) -> None:
    async def main() -> None:
        async with serving(config_of(pool=POOL)) as svc, boto(svc.url, "ecs") as client:
            definition = python_task(
                "coded",
                "python3",
                "-c",
                "import os, sys; sys.exit(int(os.environ['CODE']))",
                environment=[{"name": "CODE", "value": "4"}],
            )
            await call(client.register_task_definition, **definition)
            seven = [{"name": "CODE", "value": "7"}]
            env = {"containerOverrides": [{"name": "app", "environment": seven}]}
            pair = await call(
                client.run_task, taskDefinition="coded", count=2, overrides=env, startedBy="pair"
            )
            cmd = {"containerOverrides": [{"name": "app", "command": ["python3", "-c", "exit(9)"]}]}
            single = await call(client.run_task, taskDefinition="coded", overrides=cmd)
            plain = await call(client.run_task, taskDefinition="coded")
            arns = [t["taskArn"] for t in pair["tasks"] + single["tasks"] + plain["tasks"]]
            assert len(set(arns)) == 4
            codes = [
                (await until(client, arn, "STOPPED"))["containers"][0]["exitCode"] for arn in arns
            ]
            assert codes == [7, 7, 9, 4]

            stopped = await call(client.list_tasks, desiredStatus="STOPPED")
            assert stopped["taskArns"] == arns
            by_starter = await call(client.list_tasks, desiredStatus="STOPPED", startedBy="pair")
            assert by_starter["taskArns"] == arns[:2]
            page = await call(client.list_tasks, desiredStatus="STOPPED", maxResults=3)
            rest = await call(
                client.list_tasks, desiredStatus="STOPPED", nextToken=page["nextToken"]
            )
            assert page["taskArns"] + rest["taskArns"] == arns
            assert (await call(client.list_tasks, family="other"))["taskArns"] == []
            assert (await call(client.list_tasks, desiredStatus="RUNNING"))["taskArns"] == []

    arun(main())


def test_a_missing_image_fails_to_start(arun: Callable[..., Any]) -> None:
    async def main() -> None:
        async with (
            serving(config_of(pool=POOL)) as svc,
            boto(svc.url, "ecs", parameter_validation=False) as client,
        ):
            await call(client.register_task_definition, **copy.deepcopy(ECS_SEED))
            ran = await call(client.run_task, taskDefinition="webserver", launchType="FARGATE")
            (task,) = ran["tasks"]
            assert task["launchType"] == "FARGATE"
            assert (task["cpu"], task["memory"]) == ("256", "512")
            stopped = await until(client, task["taskArn"], "STOPPED")
            assert stopped["stopCode"] == "TaskFailedToStart"
            assert stopped["stoppedReason"].startswith("CannotPullContainerError:")
            assert "nginx" in stopped["stoppedReason"]
            assert stopped["containers"][0]["reason"] == stopped["stoppedReason"]
            assert "exitCode" not in stopped["containers"][0]
            assert "startedAt" not in stopped
            history = [s for s, _ in svc.app[ECS].task_history(task["taskArn"])]
            assert history == ["PROVISIONING", "PENDING", "DEPROVISIONING", "STOPPED"]

    arun(main())


def test_shutdown_removes_running_tasks(arun: Callable[..., Any]) -> None:
    async def main() -> None:
        async with serving(config_of(pool=POOL)) as svc, boto(svc.url, "ecs") as client:
            definition = python_task("forever", "python3", "-c", "import time; time.sleep(60)")
            await call(client.register_task_definition, **definition)
            ran = await call(client.run_task, taskDefinition="forever", count=2)
            for task in ran["tasks"]:
                await until(client, task["taskArn"], "RUNNING")
            assert len(await leftovers()) == 2
            ecs = svc.app[ECS]
            assert "running=2" in repr(ecs)
        assert await leftovers() == []  # the app's cleanup stopped and removed them
        assert "running=0" in repr(ecs)
        assert "stopped=2" in repr(ecs)

    arun(main())
