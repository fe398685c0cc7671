"""RegisterTaskDefinition's input, checked as ECS checks it, as the ``TaskDefinition`` shape.

``task_definition(request)`` accepts ECS JSON as people write it (the seed's
``"memory": "100"`` included: numbers may be strings, task ``cpu``/``memory`` may carry units)
and returns what DescribeTaskDefinition reports, minus what the registry adds (ARN, revision,
status, dates).  Numbers come back as botocore's ``ecs`` model types them: integers inside
container definitions, strings of integers at the task level.

Rules, each a ClientException with ECS's wording:

- ``family``: 1-255 letters, digits, hyphens, underscores.
- ``containerDefinitions``: 1-10 containers, unique names (same pattern), an image each, at
  least one essential.
- memory: every container has ``memory`` or ``memoryReservation`` unless the task has
  ``memory``; no container's is above the task's; the containers' ``cpu`` sum stays within the
  task's.
- ``FARGATE`` in ``requiresCompatibilities``: ``networkMode`` awsvpc, task ``cpu`` and
  ``memory`` given and one of Fargate's combinations (``FARGATE_MEMORY``).
- port mappings: ``containerPort`` 1-65535, ``hostPort`` 0-65535 (0: any free port),
  ``protocol`` tcp or udp; in awsvpc and host mode the host port is the container port.

Members of the model warmstart does not act on (volumes, secrets, logConfiguration, ...) are
checked to have the model's structure (schema.py) and kept, so a definition describes as it was
registered; members the model does not know are dropped.  ``privileged`` containers are refused.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ..errors import WarmstartError
from . import numbers
from .errors import ClientException
from .naming import NAME_RE
from .schema import CONTAINER_KEPT, LINUX_PARAMETERS, TASK_KEPT, Schema, conforms, kept

NETWORK_MODES = ("bridge", "host", "awsvpc", "none")
COMPATIBILITIES = ("EC2", "FARGATE", "EXTERNAL", "MANAGED_INSTANCES")
MAX_CONTAINERS = 10
#: Docker refuses a memory limit under 6 MiB
MIN_MEMORY_MIB = 6
MIN_TASK_CPU = 128
MAX_CPU = 196608
MAX_STOP_TIMEOUT_S = 120
MAX_PORT = 65535

#: Fargate's task sizes: CPU units to the memory values (MiB) allowed with them
FARGATE_MEMORY: dict[int, Sequence[int]] = {
    256: (512, 1024, 2048),
    512: range(1024, 4096 + 1, 1024),
    1024: range(2048, 8192 + 1, 1024),
    2048: range(4096, 16384 + 1, 1024),
    4096: range(8192, 30720 + 1, 1024),
    8192: range(16384, 61440 + 1, 4096),
    16384: range(32768, 122880 + 1, 8192),
}


def task_definition(request: Any) -> dict[str, Any]:
    """The ``TaskDefinition`` shape of a RegisterTaskDefinition request (see the module doc)."""
    if not isinstance(request, dict):
        raise ClientException("The request must be a JSON object.")
    family = _family(request.get("family"))
    network_mode = _choice(request.get("networkMode") or "bridge", NETWORK_MODES, "networkMode")
    requires = _compatibilities(request.get("requiresCompatibilities"))
    cpu = _optional(request.get("cpu"), numbers.task_cpu)
    memory = _optional(request.get("memory"), numbers.task_memory)
    _check_task_size(cpu, memory)
    containers = _containers(request.get("containerDefinitions"), network_mode)
    if requires is not None and "FARGATE" in requires:
        _check_fargate(network_mode, cpu, memory)
    _check_containers(containers, cpu, memory)
    shape: dict[str, Any] = {
        "family": family,
        "containerDefinitions": containers,
        "networkMode": network_mode,
        "volumes": [],
        "placementConstraints": [],
        "requiresAttributes": [],
        "compatibilities": _compatible(network_mode, cpu, memory),
    }
    shape.update(_kept(request, TASK_KEPT, "Invalid '{}' setting for task."))
    if requires is not None:
        shape["requiresCompatibilities"] = requires
    if cpu is not None:
        shape["cpu"] = str(cpu)
    if memory is not None:
        shape["memory"] = str(memory)
    return shape


def tags(value: Any, error: type[WarmstartError] = ClientException) -> list[dict[str, str]]:
    """ECS's ``tags``: a list of ``{"key", "value"}`` strings (None: no tags)."""
    if value is None:
        return []
    if not isinstance(value, list) or not all(
        isinstance(tag, dict)
        and isinstance(tag.get("key"), str)
        and isinstance(tag.get("value", ""), str)
        for tag in value
    ):
        raise error("Invalid 'tags' setting: expected a list of {key, value} strings.")
    return [{"key": tag["key"], "value": tag.get("value", "")} for tag in value]


def fargate_sizes_valid(cpu: int | None, memory: int | None) -> bool:
    """Whether task ``cpu`` and ``memory`` are one of Fargate's combinations."""
    return cpu is not None and memory is not None and memory in FARGATE_MEMORY.get(cpu, ())


# -- the task ---------------------------------------------------------------------------------


def _family(value: Any) -> str:
    if value is None or value == "":
        raise ClientException("Family can not be blank.")
    if not isinstance(value, str) or not NAME_RE.fullmatch(value):
        raise ClientException("Family contains invalid characters.")
    return value


def _choice(value: Any, allowed: Sequence[str], field: str) -> str:
    if value not in allowed:
        raise ClientException(
            f"Invalid '{field}' setting {value!r}. Valid values are {', '.join(allowed)}."
        )
    return str(value)


def _compatibilities(value: Any) -> list[str] | None:
    if value is None:
        return None
    if not isinstance(value, list):
        raise ClientException("Invalid 'requiresCompatibilities' setting: expected a list.")
    return [_choice(item, COMPATIBILITIES, "requiresCompatibilities") for item in value]


def _optional(value: Any, parse: Any) -> int | None:
    """``parse(value)``, or None for a member that is absent (or null, or an empty string)."""
    if value is None or value == "":
        return None
    result: int = parse(value)
    return result


def _check_task_size(cpu: int | None, memory: int | None) -> None:
    if cpu is not None and not MIN_TASK_CPU <= cpu <= MAX_CPU:
        raise ClientException("Invalid 'cpu' setting for task.")
    if memory is not None and memory < MIN_MEMORY_MIB:
        raise ClientException("Invalid 'memory' setting for task.")


def _check_fargate(network_mode: str, cpu: int | None, memory: int | None) -> None:
    if network_mode != "awsvpc":
        raise ClientException("Fargate only supports network mode 'awsvpc'.")
    if cpu is None:
        raise ClientException("Fargate requires that 'cpu' be defined at the task level.")
    if memory is None:
        raise ClientException("Fargate requires that 'memory' be defined at the task level.")
    if not fargate_sizes_valid(cpu, memory):
        raise ClientException(
            f"No Fargate configuration exists for given values: {cpu} CPU, {memory} memory. "
            "See the Amazon ECS documentation for the valid values."
        )


def _compatible(network_mode: str, cpu: int | None, memory: int | None) -> list[str]:
    """What ECS reports the definition can run on: EC2 always, Fargate when it fits."""
    fits = network_mode == "awsvpc" and fargate_sizes_valid(cpu, memory)
    return ["EC2", "FARGATE"] if fits else ["EC2"]


def _kept(raw: dict[str, Any], table: dict[str, Schema], message: str) -> dict[str, Any]:
    """The members of ``raw`` in ``table``, each of the model's structure (schema.py)."""
    found, wrong = kept(raw, table)
    if wrong is not None:
        raise ClientException(message.format(wrong))
    return found


# -- containers -------------------------------------------------------------------------------


def _containers(value: Any, network_mode: str) -> list[dict[str, Any]]:
    if not value:
        raise ClientException("Container list cannot be empty.")
    if not isinstance(value, list):
        raise ClientException("Invalid 'containerDefinitions' setting: expected a list.")
    if len(value) > MAX_CONTAINERS:
        raise ClientException("Too many containers.")
    return [_container(raw, network_mode) for raw in value]


def _check_containers(
    containers: list[dict[str, Any]], cpu: int | None, memory: int | None
) -> None:
    names = [c["name"] for c in containers]
    if len(set(names)) != len(names):
        raise ClientException("Container names must be unique within a Task Definition.")
    if not any(c["essential"] for c in containers):
        raise ClientException("A task definition must have at least one essential container.")
    for c in containers:
        _check_container_memory(c, memory)
    if cpu is not None and sum(c["cpu"] for c in containers) > cpu:
        raise ClientException(
            "The sum of all container 'cpu' values cannot be greater than the value of the "
            "task 'cpu'."
        )


def _check_container_memory(container: dict[str, Any], task_memory: int | None) -> None:
    name = container["name"]
    hard, soft = container.get("memory"), container.get("memoryReservation")
    if task_memory is None and hard is None and soft is None:
        raise ClientException(
            f"Invalid setting for container '{name}'. At least one of 'memory' or "
            "'memoryReservation' must be specified."
        )
    if task_memory is not None:
        for field, value in (("memory", hard), ("memoryReservation", soft)):
            if value is not None and value > task_memory:
                raise ClientException(
                    f"The '{field}' setting for container '{name}' is greater than for the task."
                )


def _container(raw: Any, network_mode: str) -> dict[str, Any]:
    if not isinstance(raw, dict):
        raise ClientException("Invalid container definition: expected a JSON object.")
    name = _container_name(raw.get("name"))
    image = raw.get("image")
    if not isinstance(image, str) or not image.strip():
        raise ClientException("Container.image should not be null or empty.")
    shape: dict[str, Any] = {"name": name, "image": image}
    shape["cpu"] = _int(_get(raw, "cpu", 0), name, "cpu", 0, MAX_CPU)
    shape.update(_memory(raw, name))
    shape["portMappings"] = [
        _port_mapping(item, name, network_mode) for item in _list(raw, "portMappings", name)
    ]
    shape["essential"] = _flag(_get(raw, "essential", True), name, "essential")
    for field in ("entryPoint", "command"):
        if raw.get(field) is not None:
            shape[field] = _strings(raw[field], name, field)
    shape["environment"] = [_variable(item, name) for item in _list(raw, "environment", name)]
    shape["mountPoints"] = []
    shape["volumesFrom"] = []
    if raw.get("stopTimeout") is not None:
        shape["stopTimeout"] = _int(raw["stopTimeout"], name, "stopTimeout", 0, MAX_STOP_TIMEOUT_S)
    if raw.get("linuxParameters") is not None:
        shape["linuxParameters"] = _linux_parameters(raw["linuxParameters"], name)
    if _flag(_get(raw, "privileged", False), name, "privileged"):
        raise ClientException(
            f"Invalid setting for container '{name}'. warmstart does not run privileged containers."
        )
    shape.update(_kept(raw, CONTAINER_KEPT, f"Invalid '{{}}' setting for container '{name}'."))
    return shape


def _get(raw: dict[str, Any], field: str, default: Any) -> Any:
    """A member's value, with ``null`` meaning absent (as ECS reads JSON)."""
    value = raw.get(field)
    return default if value is None else value


def _container_name(value: Any) -> str:
    if value is None or value == "":
        raise ClientException("Container.name should not be null or empty.")
    if not isinstance(value, str) or not NAME_RE.fullmatch(value):
        raise ClientException("Container.name contains invalid characters.")
    return value


def _int(value: Any, name: str, field: str, low: int, high: int) -> int:
    message = f"Invalid '{field}' setting for container '{name}'."
    number = numbers.integer(value, message)
    if not low <= number <= high:
        raise ClientException(f"{message} It must be between {low} and {high}.")
    return number


def _memory(raw: dict[str, Any], name: str) -> dict[str, int]:
    found = {}
    for field in ("memory", "memoryReservation"):
        if raw.get(field) is not None:
            found[field] = _int(raw[field], name, field, MIN_MEMORY_MIB, 2**31 - 1)
    hard, soft = found.get("memory"), found.get("memoryReservation")
    if hard is not None and soft is not None and soft > hard:
        raise ClientException(
            f"Invalid setting for container '{name}'. The 'memoryReservation' setting must be "
            "less than or equal to 'memory'."
        )
    return found


def _list(raw: dict[str, Any], field: str, name: str) -> list[Any]:
    value = raw.get(field)
    if value is None:
        return []
    if not isinstance(value, list):
        raise ClientException(f"Invalid '{field}' setting for container '{name}'.")
    return value


def _flag(value: Any, name: str, field: str) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in ("true", "false"):
        return value.lower() == "true"
    raise ClientException(f"Invalid '{field}' setting for container '{name}'.")


def _strings(value: Any, name: str, field: str) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise ClientException(
            f"Invalid '{field}' setting for container '{name}'. Expected a list of strings."
        )
    return list(value)


def variable(item: Any) -> dict[str, str] | None:
    """One ``{"name": ..., "value": ...}`` of ``environment`` (or of an override's), or None
    when it is not one: a non-empty name without '=' and a string value."""
    if (
        not isinstance(item, dict)
        or not isinstance(item.get("name"), str)
        or not item["name"]
        or "=" in item["name"]
        or not isinstance(item.get("value", ""), str)
    ):
        return None
    return {"name": item["name"], "value": item.get("value", "")}


def _variable(item: Any, name: str) -> dict[str, str]:
    checked = variable(item)
    if checked is None:
        raise ClientException(
            f"Invalid 'environment' setting for container '{name}'. Each variable needs a "
            "'name' (no '=') and a string 'value'."
        )
    return checked


def _port_mapping(raw: Any, name: str, network_mode: str) -> dict[str, Any]:
    if not isinstance(raw, dict):
        raise ClientException(f"Invalid 'portMappings' setting for container '{name}'.")
    if network_mode == "none":
        raise ClientException(
            f"Invalid 'portMappings' setting for container '{name}'. Port mappings are not "
            "allowed when networkMode is none."
        )
    if raw.get("containerPortRange") is not None:
        raise ClientException(
            f"Invalid 'portMappings' setting for container '{name}'. warmstart does not "
            "support 'containerPortRange': map each port."
        )
    if raw.get("containerPort") is None:
        raise ClientException(
            f"Invalid 'portMappings' setting for container '{name}'. 'containerPort' is required."
        )
    container_port = _int(raw["containerPort"], name, "containerPort", 1, MAX_PORT)
    host_port = _int(raw.get("hostPort") or 0, name, "hostPort", 0, MAX_PORT)
    protocol = _get(raw, "protocol", "tcp")
    if protocol not in ("tcp", "udp"):
        raise ClientException(
            f"Invalid 'protocol' setting for container '{name}'. Valid values are tcp and udp."
        )
    if network_mode in ("awsvpc", "host"):
        if host_port not in (0, container_port):
            raise ClientException(
                f"When networkMode={network_mode}, the host ports and container ports in port "
                "mappings must match."
            )
        host_port = container_port
    mapping: dict[str, Any] = {
        "containerPort": container_port,
        "hostPort": host_port,
        "protocol": protocol,
    }
    for field in ("name", "appProtocol"):
        if isinstance(raw.get(field), str):
            mapping[field] = raw[field]
    return mapping


def _linux_parameters(value: Any, name: str) -> dict[str, Any]:
    if not isinstance(value, dict) or not conforms(value, LINUX_PARAMETERS):
        raise ClientException(f"Invalid 'linuxParameters' setting for container '{name}'.")
    params = dict(value)
    if params.get("initProcessEnabled") is not None:
        field = "linuxParameters.initProcessEnabled"
        params["initProcessEnabled"] = _flag(params["initProcessEnabled"], name, field)
    return params
