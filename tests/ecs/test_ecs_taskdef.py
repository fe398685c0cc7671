"""ECS without Docker: task definition checks and shapes, the registry, overrides, the Docker
create request, the task lifecycle, clusters and pages.  Nothing here needs an engine."""

from __future__ import annotations

import copy
import functools
import itertools
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from helpers import ECS_SEED

from runtime.config import PoolConfig
from runtime.docker import LABEL, MB, NODE_LABEL
from runtime.ecs import ClientException, Ecs, InvalidParameterException, task_definition
from runtime.ecs.clusters import Clusters
from runtime.ecs.dockerconf import container_config, labels, network_bindings
from runtime.ecs.errors import ClusterNotFoundException
from runtime.ecs.listing import page
from runtime.ecs.model import (
    ESSENTIAL_CONTAINER_EXITED,
    USER_INITIATED,
    ContainerRun,
    InvalidTransition,
    Task,
    TaskStatus,
)
from runtime.ecs.naming import Arns, cluster_name, task_definition_ref, task_id
from runtime.ecs.overrides import check_overrides, effective_containers, task_size
from runtime.ecs.registry import TaskDefinitions
from runtime.ecs.taskdef import FARGATE_MEMORY
from runtime.errors import WarmstartError
from runtime.service.json_rpc import method_name

ARNS = Arns("us-east-1", "000000000000")


def with_(base: dict[str, Any], **changes: Any) -> dict[str, Any]:
    out = copy.deepcopy(base)
    out.update(changes)
    return out


def container(**fields: Any) -> dict[str, Any]:
    return {"name": "web", "image": "img", "memory": 64, **fields}


def ec2(*containers: dict[str, Any], **task: Any) -> dict[str, Any]:
    return {"family": "fam", "containerDefinitions": list(containers or [container()]), **task}


# -- task definitions -------------------------------------------------------------------------


def test_the_seed_registers_as_written() -> None:
    shape = task_definition(copy.deepcopy(ECS_SEED))
    assert shape["family"] == "webserver"
    assert shape["cpu"] == "256"
    assert shape["memory"] == "512"
    assert shape["networkMode"] == "awsvpc"
    assert shape["requiresCompatibilities"] == ["FARGATE"]
    assert shape["compatibilities"] == ["EC2", "FARGATE"]
    (web,) = shape["containerDefinitions"]
    assert web == {
        "name": "web",
        "image": "nginx",
        "cpu": 99,  # container level: integers, as botocore's model types them
        "memory": 100,
        "portMappings": [],
        "essential": True,
        "environment": [],
        "mountPoints": [],
        "volumesFrom": [],
    }


@pytest.mark.parametrize(
    ("cpu", "memory", "expected"),
    [
        ("1 vCPU", "2 GB", ("1024", "2048")),
        (".25 vCPU", "512 MiB", ("256", "512")),
        (512, 1024, ("512", "1024")),
        (" 2048 ", "4gb", ("2048", "4096")),
    ],
)
def test_task_sizes_take_units(cpu: Any, memory: Any, expected: tuple[str, str]) -> None:
    shape = task_definition(ec2(cpu=cpu, memory=memory))
    assert (shape["cpu"], shape["memory"]) == expected


@pytest.mark.parametrize(
    ("cpu", "memory"), [(cpu, mem) for cpu, mems in FARGATE_MEMORY.items() for mem in mems[:1]]
)
def test_every_fargate_size_registers(cpu: int, memory: int) -> None:
    request = ec2(
        requiresCompatibilities=["FARGATE"], networkMode="awsvpc", cpu=str(cpu), memory=memory
    )
    assert task_definition(request)["compatibilities"] == ["EC2", "FARGATE"]


def test_fargate_sizes_follow_the_table() -> None:
    assert list(FARGATE_MEMORY[256]) == [512, 1024, 2048]
    assert list(FARGATE_MEMORY[512]) == [1024, 2048, 3072, 4096]
    assert (min(FARGATE_MEMORY[1024]), max(FARGATE_MEMORY[1024])) == (2048, 8192)
    assert (min(FARGATE_MEMORY[2048]), max(FARGATE_MEMORY[2048])) == (4096, 16384)
    assert (min(FARGATE_MEMORY[4096]), max(FARGATE_MEMORY[4096])) == (8192, 30720)
    assert 20480 in FARGATE_MEMORY[8192]
    assert 20000 not in FARGATE_MEMORY[8192]


FARGATE = {"requiresCompatibilities": ["FARGATE"], "networkMode": "awsvpc"}

#: (request, error type, words its message must contain)
BAD_DEFINITIONS: list[tuple[str, dict[str, Any], type[Exception], str]] = [
    ("no family", {"containerDefinitions": [container()]}, ClientException, "can not be blank"),
    ("empty family", ec2(family=""), ClientException, "Family can not be blank"),
    ("family with a dot", ec2(family="web.server"), ClientException, "Family contains invalid"),
    ("family of 256", ec2(family="f" * 256), ClientException, "Family contains invalid"),
    ("family not a string", ec2(family=7), ClientException, "Family contains invalid"),
    ("no containers", {"family": "fam"}, ClientException, "Container list cannot be empty"),
    ("empty containers", ec2(containerDefinitions=[]), ClientException, "cannot be empty"),
    ("11 containers", ec2(*[container(name=f"c{i}") for i in range(11)]), ClientException,
     "Too many containers"),
    ("no image", ec2(container(image="")), ClientException, "Container.image should not be null"),
    ("image missing", ec2({"name": "web", "memory": 64}), ClientException, "Container.image"),
    ("no name", ec2({"image": "img", "memory": 64}), ClientException,
     "Container.name should not be null"),
    ("bad name", ec2(container(name="we b")), ClientException, "Container.name contains invalid"),
    ("same names", ec2(container(), container()), ClientException,
     "Container names must be unique"),
    ("no memory anywhere", ec2({"name": "web", "image": "img"}), ClientException,
     "Invalid setting for container 'web'. At least one of 'memory' or 'memoryReservation'"),
    ("memory not a number", ec2(container(memory="100MB")), ClientException,
     "Invalid 'memory' setting for container 'web'"),
    ("memory a float", ec2(container(memory=100.5)), ClientException, "Invalid 'memory' setting"),
    ("memory a bool", ec2(container(memory=True)), ClientException, "Invalid 'memory' setting"),
    ("memory under 6", ec2(container(memory=4)), ClientException, "between 6 and"),
    ("cpu negative", ec2(container(cpu=-1)), ClientException, "Invalid 'cpu' setting"),
    ("cpu text", ec2(container(cpu="lots")), ClientException, "Invalid 'cpu' setting"),
    ("reservation over memory", ec2(container(memory=64, memoryReservation=128)),
     ClientException, "'memoryReservation' setting must be less than or equal to 'memory'"),
    ("container over task", ec2(container(memory=1024), memory="512"), ClientException,
     "The 'memory' setting for container 'web' is greater than for the task"),
    ("reservation over task", ec2(container(memory=None, memoryReservation=600), memory=512),
     ClientException, "'memoryReservation' setting for container 'web' is greater"),
    ("cpu sum over task", ec2(container(cpu=200), container(name="b", cpu=100), cpu="256"),
     ClientException, "sum of all container 'cpu' values"),
    ("task cpu text", ec2(cpu="fast"), ClientException, "Invalid 'cpu' setting for task"),
    ("task cpu fraction", ec2(cpu="0.1 vCPU"), ClientException, "Invalid 'cpu' setting for task"),
    ("task cpu too small", ec2(cpu="64"), ClientException, "Invalid 'cpu' setting for task"),
    ("task memory text", ec2(memory="lots"), ClientException, "Invalid 'memory' setting for task"),
    ("fargate bridge", ec2(requiresCompatibilities=["FARGATE"], cpu="256", memory="512"),
     ClientException, "Fargate only supports network mode 'awsvpc'"),
    ("fargate no cpu", ec2(**FARGATE, memory="512"), ClientException,
     "Fargate requires that 'cpu' be defined at the task level"),
    ("fargate no memory", ec2(**FARGATE, cpu="256"), ClientException,
     "Fargate requires that 'memory' be defined at the task level"),
    ("fargate 256/4096", ec2(**FARGATE, cpu="256", memory="4096"), ClientException,
     "No Fargate configuration exists for given values: 256 CPU, 4096 memory"),
    ("fargate 512/1536", ec2(**FARGATE, cpu="512", memory="1536"), ClientException,
     "No Fargate configuration exists"),
    ("fargate 1000 cpu", ec2(**FARGATE, cpu="1000", memory="2048"), ClientException,
     "No Fargate configuration exists"),
    ("bad compatibility", ec2(requiresCompatibilities=["LAMBDA"]), ClientException,
     "Invalid 'requiresCompatibilities' setting"),
    ("bad network mode", ec2(networkMode="overlay"), ClientException,
     "Invalid 'networkMode' setting"),
    ("no essential", ec2(container(essential=False)), ClientException, "at least one essential"),
    ("port without containerPort", ec2(container(portMappings=[{"hostPort": 80}])),
     ClientException, "'containerPort' is required"),
    ("port 0", ec2(container(portMappings=[{"containerPort": 0}])), ClientException,
     "Invalid 'containerPort' setting for container 'web'"),
    ("port 70000", ec2(container(portMappings=[{"containerPort": 70000}])), ClientException,
     "Invalid 'containerPort' setting"),
    ("host port text", ec2(container(portMappings=[{"containerPort": 80, "hostPort": "x"}])),
     ClientException, "Invalid 'hostPort' setting"),
    ("protocol sctp", ec2(container(portMappings=[{"containerPort": 80, "protocol": "sctp"}])),
     ClientException, "Valid values are tcp and udp"),
    ("awsvpc ports differ",
     ec2(container(portMappings=[{"containerPort": 80, "hostPort": 8080}]), networkMode="awsvpc"),
     ClientException, "When networkMode=awsvpc, the host ports and container ports"),
    ("host ports differ",
     ec2(container(portMappings=[{"containerPort": 80, "hostPort": 8080}]), networkMode="host"),
     ClientException, "When networkMode=host"),
    ("ports without a network", ec2(container(portMappings=[{"containerPort": 80}]),
     networkMode="none"), ClientException, "not allowed when networkMode is none"),
    ("port range", ec2(container(portMappings=[{"containerPortRange": "80-90"}])),
     ClientException, "containerPortRange"),
    ("command a string", ec2(container(command="echo hi")), ClientException,
     "Invalid 'command' setting for container 'web'. Expected a list of strings"),
    ("environment without name", ec2(container(environment=[{"value": "1"}])), ClientException,
     "Invalid 'environment' setting"),
    ("environment number", ec2(container(environment=[{"name": "A", "value": 1}])),
     ClientException, "string 'value'"),
    ("essential text", ec2(container(essential="yes")), ClientException,
     "Invalid 'essential' setting"),
    ("stop timeout 121", ec2(container(stopTimeout=121)), ClientException,
     "Invalid 'stopTimeout' setting"),
    ("privileged", ec2(container(privileged=True)), ClientException, "privileged"),
    ("links not a list", ec2(container(links="db")), ClientException, "Invalid 'links' setting"),
    ("volumes not a list", ec2(volumes={}), ClientException, "Invalid 'volumes' setting for task"),
    ("not an object", [], ClientException, "must be a JSON object"),  # type: ignore[list-item]
    ("container not an object", ec2("web"), ClientException, "expected a JSON object"),  # type: ignore[arg-type]
]  # fmt: skip


@pytest.mark.parametrize(
    ("request_", "error", "words"),
    [pytest.param(r, e, w, id=i) for i, r, e, w in BAD_DEFINITIONS],
)
def test_bad_definitions_are_refused(
    request_: dict[str, Any], error: type[Exception], words: str
) -> None:
    with pytest.raises(error) as caught:
        task_definition(request_)
    assert words in str(caught.value)
    assert getattr(caught.value, "status", None) == 400


def test_port_mappings_are_normalized() -> None:
    udp = {"containerPort": 53, "protocol": "udp", "hostPort": 5353}
    bridge = task_definition(ec2(container(portMappings=[{"containerPort": "80"}, udp])))
    assert bridge["containerDefinitions"][0]["portMappings"] == [
        {"containerPort": 80, "hostPort": 0, "protocol": "tcp"},
        {"containerPort": 53, "hostPort": 5353, "protocol": "udp"},
    ]
    awsvpc = task_definition(
        ec2(container(portMappings=[{"containerPort": 8080}]), networkMode="awsvpc")
    )
    assert awsvpc["containerDefinitions"][0]["portMappings"][0]["hostPort"] == 8080


def test_known_members_are_kept_and_unknown_ones_dropped() -> None:
    shape = task_definition(
        ec2(
            container(
                logConfiguration={"logDriver": "awslogs", "options": {}},
                essential="true",
                entryPoint=["sh", "-c"],
                madeUp=1,
            ),
            executionRoleArn="arn:aws:iam::000000000000:role/x",
            somethingElse=True,
        )
    )
    web = shape["containerDefinitions"][0]
    assert web["logConfiguration"] == {"logDriver": "awslogs", "options": {}}
    assert web["essential"] is True
    assert web["entryPoint"] == ["sh", "-c"]
    assert "madeUp" not in web
    assert "somethingElse" not in shape
    assert shape["executionRoleArn"] == "arn:aws:iam::000000000000:role/x"
    assert shape["networkMode"] == "bridge"
    assert shape["compatibilities"] == ["EC2"]


def test_task_memory_alone_is_enough() -> None:
    shape = task_definition(ec2({"name": "web", "image": "img"}, memory="256"))
    assert "memory" not in shape["containerDefinitions"][0]


# -- the registry ------------------------------------------------------------------------------


def test_revisions_describe_and_deregister() -> None:
    registry = TaskDefinitions(ARNS)
    first = registry.register(copy.deepcopy(ECS_SEED), 100.0)["taskDefinition"]
    second = registry.register(with_(ECS_SEED, cpu="512", memory="1024"), 200.0)["taskDefinition"]
    arn = "arn:aws:ecs:us-east-1:000000000000:task-definition/webserver:{}"
    assert (first["taskDefinitionArn"], first["revision"]) == (arn.format(1), 1)
    assert (second["taskDefinitionArn"], second["revision"]) == (arn.format(2), 2)
    assert first["status"] == "ACTIVE"
    assert first["registeredAt"] == 100.0
    assert registry.describe("webserver")["taskDefinition"]["revision"] == 2
    assert registry.describe("webserver:1")["taskDefinition"]["cpu"] == "256"
    assert registry.describe(arn.format(1))["taskDefinition"]["revision"] == 1

    gone = registry.deregister("webserver:2", 300.0)["taskDefinition"]
    assert (gone["status"], gone["deregisteredAt"]) == ("INACTIVE", 300.0)
    assert registry.describe("webserver:2")["taskDefinition"]["status"] == "INACTIVE"
    assert registry.describe("webserver")["taskDefinition"]["revision"] == 1  # latest ACTIVE
    with pytest.raises(ClientException, match="TaskDefinition is inactive"):
        registry.runnable("webserver:2")
    assert registry.runnable("webserver")["revision"] == 1
    third = registry.register(copy.deepcopy(ECS_SEED), 400.0)["taskDefinition"]
    assert third["revision"] == 3  # numbers are never reused
    with pytest.raises(ClientException, match="family:revision"):
        registry.deregister("webserver", 0.0)


@pytest.mark.parametrize(
    "ref", ["nothing", "webserver:9", "webserver:0", "web:server:1", "", "arn:aws:ecs:x"]
)
def test_unknown_definitions(ref: str) -> None:
    registry = TaskDefinitions(ARNS)
    registry.register(copy.deepcopy(ECS_SEED), 1.0)
    with pytest.raises(ClientException, match="Unable to describe task definition"):
        registry.describe(ref)
    with pytest.raises(ClientException, match="TaskDefinition not found"):
        registry.runnable(ref)


def test_lists_and_families() -> None:
    registry = TaskDefinitions(ARNS)
    for family in ("b", "a", "a", "c"):
        registry.register(ec2(family=family), 1.0)
    registry.deregister("c:1", 2.0)
    arns = registry.list_arns({})["taskDefinitionArns"]
    assert [a.rsplit("/", 1)[1] for a in arns] == ["a:1", "a:2", "b:1"]
    desc = registry.list_arns({"sort": "DESC", "familyPrefix": "a"})["taskDefinitionArns"]
    assert [a.rsplit("/", 1)[1] for a in desc] == ["a:2", "a:1"]
    inactive = registry.list_arns({"status": "INACTIVE"})["taskDefinitionArns"]
    assert [a.rsplit("/", 1)[1] for a in inactive] == ["c:1"]
    first = registry.list_arns({"maxResults": 2})
    rest = registry.list_arns({"maxResults": 2, "nextToken": first["nextToken"]})
    assert len(first["taskDefinitionArns"]) == 2
    assert "nextToken" not in rest
    assert first["taskDefinitionArns"] + rest["taskDefinitionArns"] == arns
    assert registry.list_families({})["families"] == ["a", "b"]
    assert registry.list_families({"status": "INACTIVE"})["families"] == ["c"]
    assert registry.list_families({"status": "ALL"})["families"] == ["a", "b", "c"]
    with pytest.raises(InvalidParameterException):
        registry.list_arns({"status": "GONE"})


def test_tags_come_back_when_asked_for() -> None:
    registry = TaskDefinitions(ARNS)
    registered = registry.register(ec2(tags=[{"key": "team", "value": "x"}]), 1.0)
    assert registered["tags"] == [{"key": "team", "value": "x"}]
    assert "tags" not in registry.describe("fam")
    assert registry.describe("fam", ["TAGS"])["tags"] == [{"key": "team", "value": "x"}]


# -- names and pages ---------------------------------------------------------------------------


def test_references() -> None:
    arn = "arn:aws:ecs:eu-west-1:123456789012:task-definition/web:4"
    assert task_definition_ref(arn) == ("web", 4)
    assert task_definition_ref("web") == ("web", None)
    assert task_definition_ref("web:2") == ("web", 2)
    assert task_definition_ref("arn:aws:ecs:eu-west-1:123456789012:task-definition/web") is None
    assert task_definition_ref("arn:aws:ecs:eu-west-1:123456789012:cluster/web:1") is None
    assert cluster_name("arn:aws:ecs:us-east-1:000000000000:cluster/prod") == "prod"
    assert cluster_name("prod") == "prod"
    assert task_id("arn:aws:ecs:us-east-1:000000000000:task/default/abc123") == "abc123"
    assert task_id("arn:aws:ecs:us-east-1:000000000000:task/abc123") == "abc123"
    assert task_id("abc123") == "abc123"


def test_pages() -> None:
    items = list(range(7))
    first, token = page(items, None, 3)
    second, token2 = page(items, token, 3)
    third, token3 = page(items, token2, 3)
    assert (first, second, third, token3) == ([0, 1, 2], [3, 4, 5], [6], None)
    for bad in (0, 101, "3", True):
        with pytest.raises(InvalidParameterException, match="maxResults"):
            page(items, None, bad)
    with pytest.raises(InvalidParameterException, match="nextToken"):
        page(items, "not-a-token", 3)


def test_method_names() -> None:
    assert method_name("RegisterTaskDefinition") == "register_task_definition"
    assert method_name("ListTasks") == "list_tasks"


def test_clusters() -> None:
    clusters = Clusters(ARNS, lambda name: (2, 1) if name == "default" else (0, 0))
    assert clusters.resolve(None) == "default"
    assert clusters.resolve("arn:aws:ecs:us-east-1:000000000000:cluster/default") == "default"
    with pytest.raises(ClusterNotFoundException, match="Cluster not found"):
        clusters.resolve("prod")
    made = clusters.create({"clusterName": "prod"})["cluster"]
    assert made["clusterArn"] == "arn:aws:ecs:us-east-1:000000000000:cluster/prod"
    assert clusters.create({"clusterName": "prod"})["cluster"] == made  # idempotent
    with pytest.raises(InvalidParameterException, match="Invalid cluster name"):
        clusters.create({"clusterName": "a b"})
    described = clusters.describe({"clusters": ["default", "nope"]})
    assert [c["clusterName"] for c in described["clusters"]] == ["default"]
    assert described["clusters"][0]["runningTasksCount"] == 2
    assert described["clusters"][0]["pendingTasksCount"] == 1
    assert described["failures"] == [
        {"arn": "arn:aws:ecs:us-east-1:000000000000:cluster/nope", "reason": "MISSING"}
    ]
    assert clusters.list({})["clusterArns"] == [ARNS.cluster("default"), ARNS.cluster("prod")]


# -- overrides and the Docker request ----------------------------------------------------------


def two_containers() -> dict[str, Any]:
    registry = TaskDefinitions(ARNS)
    registered = registry.register(
        ec2(
            container(environment=[{"name": "A", "value": "1"}, {"name": "B", "value": "2"}]),
            container(name="side", essential=False, command=["sleep", "9"]),
            cpu="512",
            memory="1024",
        ),
        1.0,
    )
    task_definition: dict[str, Any] = registered["taskDefinition"]
    return task_definition


def test_overrides_apply_by_name() -> None:
    definition = two_containers()
    overrides = check_overrides(
        {
            "containerOverrides": [
                {
                    "name": "web",
                    "command": ["run"],
                    "environment": [{"name": "B", "value": "two"}, {"name": "C", "value": "3"}],
                    "memory": "128",
                }
            ],
            "cpu": "1 vCPU",
        },
        definition,
    )
    web, side = effective_containers(definition, overrides)
    assert web["command"] == ["run"]
    assert web["memory"] == 128
    assert web["environment"] == [
        {"name": "A", "value": "1"},
        {"name": "B", "value": "two"},
        {"name": "C", "value": "3"},
    ]
    assert side["command"] == ["sleep", "9"]
    assert task_size(definition, overrides) == (1024, 1024)
    assert definition["containerDefinitions"][0]["environment"][1]["value"] == "2"  # untouched


@pytest.mark.parametrize(
    ("overrides", "words"),
    [
        ({"containerOverrides": [{"name": "db"}]}, "Override for container named db is not a"),
        ({"containerOverrides": [{"name": "web", "command": "run"}]}, "list of strings"),
        ({"containerOverrides": [{"name": "web", "memory": "lots"}]}, "Invalid memory override"),
        ({"containerOverrides": [{"name": "web", "environment": [{"value": "x"}]}]}, "'name'"),
        ({"containerOverrides": "web"}, "must be a list"),
        ({"cpu": "fast"}, "Invalid 'cpu' setting for task"),
        ("web", "must be a JSON object"),
    ],
)
def test_bad_overrides(overrides: Any, words: str) -> None:
    with pytest.raises(InvalidParameterException) as caught:
        check_overrides(overrides, two_containers())
    assert words in caught.value.message


def test_docker_request_carries_limits_ports_and_labels() -> None:
    web = task_definition(
        ec2(
            container(
                cpu=128,
                memory=256,
                memoryReservation=128,
                portMappings=[{"containerPort": 8000}, {"containerPort": 53, "protocol": "udp"}],
                environment=[{"name": "A", "value": "1=2"}],
                command=["python3", "-m", "http.server"],
                workingDirectory="/srv",
                dockerLabels={LABEL: "0", "team": "x"},
                linuxParameters={"initProcessEnabled": True},
            ),
            cpu="256",
        )
    )["containerDefinitions"][0]
    tags = labels(web, node_id="host/1/2", task_arn="arn:task", name="web")
    config = container_config(
        web,
        network_mode="bridge",
        task_cpu=256,
        task_memory=None,
        labels=tags,
        host_binds=("/usr",),
        host_cpus=2,
    )
    host = config["HostConfig"]
    assert config["Cmd"] == ["python3", "-m", "http.server"]
    assert "Entrypoint" not in config
    assert config["Env"] == ["A=1=2"]
    assert config["WorkingDir"] == "/srv"
    assert config["Labels"][LABEL] == "1"
    assert config["Labels"][NODE_LABEL] == "host/1/2"
    assert config["Labels"]["team"] == "x"
    assert (host["Memory"], host["MemorySwap"], host["MemoryReservation"]) == (
        256 * MB,
        256 * MB,
        128 * MB,
    )
    assert (host["CpuShares"], host["NanoCpus"]) == (128, 250_000_000)
    assert host["NetworkMode"] == "bridge"
    assert host["Init"] is True
    assert host["Binds"] == ["/usr:/usr:ro"]
    assert config["ExposedPorts"] == {"8000/tcp": {}, "53/udp": {}}
    assert host["PortBindings"] == {
        "8000/tcp": [{"HostIp": "127.0.0.1", "HostPort": ""}],
        "53/udp": [{"HostIp": "127.0.0.1", "HostPort": ""}],
    }


def test_docker_request_edges() -> None:
    bare = task_definition(ec2({"name": "w", "image": "i"}, memory="300", networkMode="none"))
    config = container_config(
        bare["containerDefinitions"][0],
        network_mode="none",
        task_cpu=8192,
        task_memory=300,
        labels={},
        host_cpus=2,
    )
    host = config["HostConfig"]
    assert host["NetworkMode"] == "none"
    assert "PortBindings" not in host
    assert host["Memory"] == 300 * MB
    assert "MemoryReservation" not in host
    assert host["CpuShares"] == 2
    assert host["NanoCpus"] == 2 * 1_000_000_000
    assert "Cmd" not in config  # the image's own command runs


def test_network_bindings_from_docker() -> None:
    ports = {
        "8000/tcp": [{"HostIp": "127.0.0.1", "HostPort": "32768"}],
        "9000/tcp": None,  # exposed by the image, not published
        "53/udp": [{"HostIp": "127.0.0.1", "HostPort": "40000"}],
    }
    assert network_bindings(ports) == [
        {"bindIP": "127.0.0.1", "containerPort": 8000, "hostPort": 32768, "protocol": "tcp"},
        {"bindIP": "127.0.0.1", "containerPort": 53, "hostPort": 40000, "protocol": "udp"},
    ]
    assert network_bindings(None) == []


# -- the lifecycle -----------------------------------------------------------------------------


def new_task(now: float = 10.0) -> Task:
    definition = two_containers()
    runs = [
        ContainerRun(name=c["name"], arn=f"arn:c/{c['name']}", definition=c)
        for c in definition["containerDefinitions"]
    ]
    return Task(
        arn="arn:aws:ecs:us-east-1:000000000000:task/default/t1",
        task_id="t1",
        cluster="default",
        cluster_arn=ARNS.cluster("default"),
        definition=definition,
        overrides={"containerOverrides": []},
        containers=runs,
        launch_type="EC2",
        created_at=now,
        cpu=512,
        memory=1024,
    )


def test_an_essential_exit_stops_the_task() -> None:
    task = new_task()
    task.advance(TaskStatus.PENDING, 11.0)
    task.container_started("web", [])
    task.container_started("side", [])
    task.advance(TaskStatus.RUNNING, 12.0)
    assert task.container_exited("side", 0, None, 13.0) is False  # not essential
    assert task.desired_status == "RUNNING"
    assert task.container_exited("web", 3, None, 14.0) is True
    assert (task.desired_status, task.last_status) == ("STOPPED", TaskStatus.STOPPING)
    assert task.request_stop(USER_INITIATED, "late", 15.0) is False  # the first cause stays
    task.deprovision(16.0)
    task.stopped(17.0)
    shape = task.shape("us-east-1")
    assert [s for s, _ in task.history] == [
        "PROVISIONING",
        "PENDING",
        "RUNNING",
        "STOPPING",
        "DEPROVISIONING",
        "STOPPED",
    ]
    assert (shape["stopCode"], shape["stoppedReason"]) == (
        ESSENTIAL_CONTAINER_EXITED,
        "Essential container in task exited",
    )
    assert (shape["createdAt"], shape["startedAt"], shape["stoppingAt"], shape["stoppedAt"]) == (
        10.0,
        12.0,
        14.0,
        17.0,
    )
    assert [c["exitCode"] for c in shape["containers"]] == [3, 0]
    assert shape["cpu"] == "512"
    assert shape["containers"][0]["memory"] == "64"
    assert shape["group"] == "family:fam"


def test_transitions_are_guarded() -> None:
    task = new_task()
    with pytest.raises(InvalidTransition, match="is PROVISIONING: it cannot become RUNNING"):
        task.advance(TaskStatus.RUNNING, 1.0)
    task.failed_to_start("web", "CannotPullContainerError: no such image", 2.0)
    task.deprovision(3.0)
    task.stopped(4.0)
    shape = task.shape()
    assert shape["stopCode"] == "TaskFailedToStart"
    assert shape["containers"][0]["reason"].startswith("CannotPullContainerError")
    assert [s for s, _ in task.history] == ["PROVISIONING", "DEPROVISIONING", "STOPPED"]
    with pytest.raises(InvalidTransition, match="is STOPPED"):
        task.advance(TaskStatus.PENDING, 5.0)


# -- the library without an engine -------------------------------------------------------------


def test_definitions_need_no_engine_and_tasks_fail_without_one(arun: Callable[..., Any]) -> None:
    async def main() -> None:
        pool = PoolConfig(region="eu-west-1", account_id="123456789012")
        async with Ecs(pool, docker_url="unix:///nonexistent/docker.sock") as ecs:
            registered = await ecs.register_task_definition(copy.deepcopy(ECS_SEED))
            assert registered["taskDefinition"]["taskDefinitionArn"] == (
                "arn:aws:ecs:eu-west-1:123456789012:task-definition/webserver:1"
            )
            assert (await ecs.list_task_definition_families())["families"] == ["webserver"]
            arn = (await ecs.run_task(taskDefinition="webserver"))["tasks"][0]["taskArn"]
            assert arn.startswith("arn:aws:ecs:eu-west-1:123456789012:task/default/")
            task = await ecs.wait_stopped(arn, timeout=10)
            assert task["stopCode"] == "TaskFailedToStart"
            assert task["stoppedReason"].startswith("CannotPullContainerError: Cannot connect")
            assert task["launchType"] == "FARGATE"  # the definition is Fargate-only
            assert "stopped=1" in repr(ecs)

    arun(main())


# -- bad input never breaks anything -----------------------------------------------------------

ODD: list[Any] = [
    None, True, 0, -1, 1.5, "", "x", "1", [], [1], ["x"], {}, {"a": 1}, [{}], [{"name": 1}],
]  # fmt: skip
TOP_FIELDS = [
    "taskDefinition", "family", "containerDefinitions", "cpu", "memory", "networkMode",
    "requiresCompatibilities", "tags", "volumes", "executionRoleArn", "cluster", "count",
    "overrides", "launchType", "startedBy", "group", "task", "tasks", "reason", "desiredStatus",
    "maxResults", "nextToken", "clusters", "clusterName", "status", "familyPrefix", "sort",
    "include",
]  # fmt: skip
CONTAINER_FIELDS = [
    "name", "image", "cpu", "memory", "memoryReservation", "portMappings", "essential",
    "entryPoint", "command", "environment", "stopTimeout", "linuxParameters", "privileged",
    "dockerLabels", "links", "logConfiguration", "workingDirectory", "ulimits", "extraHosts",
]  # fmt: skip
PORT_FIELDS = ["containerPort", "hostPort", "protocol", "name"]
OVERRIDE_FIELDS = ["name", "command", "environment", "cpu", "memory", "environmentFiles"]


@functools.cache
def ecs_model() -> Any:
    import botocore.session

    return botocore.session.get_session().get_service_model("ecs")


def botocore_reads(operation: str, answer: dict[str, Any]) -> None:
    """boto3 would parse ``answer`` as ``operation``'s output without error."""
    import botocore.parsers
    import orjson

    shape = ecs_model().operation_model(operation).output_shape
    response = {"status_code": 200, "headers": {}, "body": orjson.dumps(answer)}
    botocore.parsers.create_parser("json").parse(response, shape)


def odd_requests(arn: str) -> Iterator[tuple[str, Any]]:
    """Each operation's request with one member (or a nested one) made odd."""
    bases = {
        "RegisterTaskDefinition": ec2(container()),
        "DescribeTaskDefinition": {"taskDefinition": "fam"},
        "ListTaskDefinitions": {},
        "ListTaskDefinitionFamilies": {},
        "CreateCluster": {"clusterName": "c"},
        "DescribeClusters": {},
        "ListClusters": {},
        "RunTask": {"taskDefinition": "fam"},
        "StopTask": {"task": arn},
        "DescribeTasks": {"tasks": [arn]},
        "ListTasks": {},
        "DeregisterTaskDefinition": {"taskDefinition": "gone:1"},
    }
    for operation, base in bases.items():
        for field, value in itertools.product(TOP_FIELDS, ODD):
            yield operation, {**base, field: value}
    for field, value in itertools.product(CONTAINER_FIELDS, ODD):
        yield "RegisterTaskDefinition", ec2(container(**{field: value}))
    for field, value in itertools.product(PORT_FIELDS, ODD):
        ports = [{"containerPort": 80, field: value}]
        yield "RegisterTaskDefinition", ec2(container(portMappings=ports))
    for field, value in itertools.product(OVERRIDE_FIELDS, ODD):
        override = {"containerOverrides": [{"name": "web", field: value}]}
        yield "RunTask", {"taskDefinition": "fam", "overrides": override}
    request: object
    for request in (None, [], "x", 1):
        yield "ListTasks", request


def test_odd_input_is_an_ecs_error_or_a_readable_answer(arun: Callable[..., Any]) -> None:
    async def main() -> None:
        errors: set[tuple[str, int]] = set()
        async with Ecs(docker_url="unix:///nonexistent/docker.sock") as ecs:
            await ecs.register_task_definition(ec2(container(), family="fam"))
            await ecs.register_task_definition(ec2(container(), family="gone"))
            arn = (await ecs.run_task(taskDefinition="fam"))["tasks"][0]["taskArn"]
            for operation, request in odd_requests(arn):
                try:
                    answer = await getattr(ecs, method_name(operation))(request)
                except WarmstartError as exc:
                    errors.add((exc.code, exc.status))
                    continue
                botocore_reads(operation, answer)
        assert {status for _, status in errors} == {400}
        assert {code for code, _ in errors} == {
            "ClientException",
            "InvalidParameterException",
            "ClusterNotFoundException",
        }

    arun(main(), timeout=60)
