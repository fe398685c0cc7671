"""A container definition as a Docker Engine create request, and its port bindings back.

- command: the definition's ``entryPoint``/``command`` replace the image's; without them the
  image's own run.  ``environment``, ``workingDirectory``, ``user``, ``hostname``,
  ``dnsServers``, ``dnsSearchDomains``, ``extraHosts``, ``ulimits``, ``readonlyRootFilesystem``
  and ``linuxParameters.initProcessEnabled`` map onto Docker's equivalents.
- CPU: the task's ``cpu`` is a hard limit (NanoCpus, at most this host's CPUs) on each of its
  containers; a container's ``cpu`` is its CPU shares (at least 2, Docker's minimum).
- memory: the container's ``memory`` (else the task's) is a hard limit without swap;
  ``memoryReservation`` is Docker's soft limit.
- network: awsvpc, bridge and host tasks get Docker's bridge network, ``none`` (or
  ``disableNetworking``) none.  Ports are published on 127.0.0.1 only; host port 0 is a free
  port Docker picks.  Host networking is not given: it would expose every port of the container
  on every interface of this machine, so a host-mode task's ports are published at the same
  numbers on loopback instead.
- labels: ``warmstart=1`` and ``warmstart.node`` (so a dead node's leftovers are found and
  removed), the task's ARN and the container's name, and the definition's ``dockerLabels``.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

from ..docker import MB, owner_labels

TASK_LABEL = "warmstart.ecs.task"
CONTAINER_LABEL = "warmstart.ecs.container"
LOOPBACK = "127.0.0.1"
#: Docker's smallest CPU quota (0.01 CPU) in NanoCpus
MIN_NANO_CPUS = 10_000_000
NANO = 1_000_000_000
UNITS_PER_CPU = 1024
MIN_CPU_SHARES = 2


def container_name(family: str, revision: int, name: str, task_id: str) -> str:
    """A unique Docker name in the ECS agent's style (``ecs-<family>-<rev>-<name>-<id>``)."""
    return f"ecs-{family[:60]}-{revision}-{name[:60]}-{task_id}"


def labels(definition: dict[str, Any], *, node_id: str, task_arn: str, name: str) -> dict[str, str]:
    """The definition's ``dockerLabels`` and warmstart's own (which cannot be overridden)."""
    found = {
        str(k): v for k, v in (definition.get("dockerLabels") or {}).items() if isinstance(v, str)
    }
    found.update({**owner_labels(node_id), TASK_LABEL: task_arn, CONTAINER_LABEL: name})
    return found


def container_config(
    definition: dict[str, Any],
    *,
    network_mode: str,
    task_cpu: int | None,
    task_memory: int | None,
    labels: dict[str, str],
    host_binds: Sequence[str] = (),
    host_cpus: int | None = None,
) -> dict[str, Any]:
    """The Docker create request of one container of a task (see the module doc)."""
    config: dict[str, Any] = {
        "Image": definition["image"],
        "Labels": labels,
        "Env": [f"{v['name']}={v['value']}" for v in definition.get("environment", [])],
    }
    for ecs_key, docker_key in (
        ("entryPoint", "Entrypoint"),
        ("command", "Cmd"),
        ("workingDirectory", "WorkingDir"),
        ("user", "User"),
        ("hostname", "Hostname"),
    ):
        if definition.get(ecs_key) is not None:
            config[docker_key] = definition[ecs_key]
    if definition.get("interactive"):
        config["OpenStdin"] = True
    if definition.get("pseudoTerminal"):
        config["Tty"] = True
    host: dict[str, Any] = {"Binds": [f"{path}:{path}:ro" for path in host_binds]}
    host.update(_limits(definition, task_cpu, task_memory, host_cpus or os.cpu_count() or 1))
    host.update(_network(definition, network_mode, config))
    host.update(_extras(definition))
    config["HostConfig"] = host
    return config


def _limits(
    definition: dict[str, Any], task_cpu: int | None, task_memory: int | None, host_cpus: int
) -> dict[str, Any]:
    limits: dict[str, Any] = {"CpuShares": max(MIN_CPU_SHARES, int(definition.get("cpu", 0)))}
    if task_cpu is not None:
        nano = min(task_cpu * NANO // UNITS_PER_CPU, host_cpus * NANO)
        limits["NanoCpus"] = max(MIN_NANO_CPUS, nano)
    hard = definition.get("memory") or task_memory
    soft = definition.get("memoryReservation")
    if hard:
        limits["Memory"] = limits["MemorySwap"] = int(hard) * MB
    if soft:
        limits["MemoryReservation"] = min(int(soft), int(hard or soft)) * MB
    return limits


def _network(
    definition: dict[str, Any], network_mode: str, config: dict[str, Any]
) -> dict[str, Any]:
    if network_mode == "none" or definition.get("disableNetworking"):
        return {"NetworkMode": "none"}
    exposed: dict[str, Any] = {}
    bindings: dict[str, list[dict[str, str]]] = {}
    for mapping in definition.get("portMappings", []):
        key = f"{mapping['containerPort']}/{mapping.get('protocol', 'tcp')}"
        exposed[key] = {}
        host_port = mapping.get("hostPort") or 0
        bindings.setdefault(key, []).append(
            {"HostIp": LOOPBACK, "HostPort": str(host_port) if host_port else ""}
        )
    if exposed:
        config["ExposedPorts"] = exposed
    return {"NetworkMode": "bridge", "PortBindings": bindings}


def _extras(definition: dict[str, Any]) -> dict[str, Any]:
    extras: dict[str, Any] = {}
    if definition.get("readonlyRootFilesystem"):
        extras["ReadonlyRootfs"] = True
    if (definition.get("linuxParameters") or {}).get("initProcessEnabled"):
        extras["Init"] = True
    if definition.get("dnsServers"):
        extras["Dns"] = [str(s) for s in definition["dnsServers"]]
    if definition.get("dnsSearchDomains"):
        extras["DnsSearch"] = [str(s) for s in definition["dnsSearchDomains"]]
    hosts = [
        f"{h['hostname']}:{h['ipAddress']}"
        for h in definition.get("extraHosts") or []
        if isinstance(h, dict) and h.get("hostname") and h.get("ipAddress")
    ]
    if hosts:
        extras["ExtraHosts"] = hosts
    ulimits = [
        {"Name": u["name"], "Soft": int(u["softLimit"]), "Hard": int(u["hardLimit"])}
        for u in definition.get("ulimits") or []
        if isinstance(u, dict) and _ulimit_ok(u)
    ]
    if ulimits:
        extras["Ulimits"] = ulimits
    return extras


def _ulimit_ok(limit: dict[str, Any]) -> bool:
    return isinstance(limit.get("name"), str) and all(
        isinstance(limit.get(k), int) and not isinstance(limit.get(k), bool)
        for k in ("softLimit", "hardLimit")
    )


def network_bindings(ports: Any) -> list[dict[str, Any]]:
    """ECS's ``networkBindings`` of Docker's ``NetworkSettings.Ports`` (published ports only)."""
    found: list[dict[str, Any]] = []
    if not isinstance(ports, dict):
        return found
    for key, published in ports.items():
        port, _, protocol = str(key).partition("/")
        for binding in published or []:
            if not str(binding.get("HostPort", "")).isdigit():
                continue
            found.append(
                {
                    "bindIP": binding.get("HostIp") or LOOPBACK,
                    "containerPort": int(port),
                    "hostPort": int(binding["HostPort"]),
                    "protocol": protocol or "tcp",
                }
            )
    return found
