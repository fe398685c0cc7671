"""RunTask's ``overrides``: checked, then applied to the task definition's containers.

``containerOverrides[]`` names a container of the definition and may replace its ``command``,
add to or replace variables of its ``environment`` (by name, the override winning), and
replace its ``cpu``, ``memory`` and ``memoryReservation``; the task-level ``cpu`` and
``memory`` replace the definition's.  Other members (roles, ephemeral storage, environment
files, ...) are kept in the task's ``overrides`` as given and not acted on.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

from . import numbers
from .errors import ClientException, InvalidParameterException
from .schema import CONTAINER_OVERRIDE_KEPT, TASK_OVERRIDE_KEPT, Schema, kept
from .taskdef import variable

_CONTAINER_NUMBERS = ("cpu", "memory", "memoryReservation")


def check_overrides(value: Any, definition: dict[str, Any]) -> dict[str, Any]:
    """The ``TaskOverride`` shape of RunTask's ``overrides`` (numbers as integers)."""
    if value is None:
        value = {}
    if not isinstance(value, dict):
        raise InvalidParameterException("overrides must be a JSON object.")
    names = {c["name"] for c in definition["containerDefinitions"]}
    raw = value.get("containerOverrides") or []
    if not isinstance(raw, list):
        raise InvalidParameterException("containerOverrides must be a list.")
    checked = _kept(value, TASK_OVERRIDE_KEPT, "overrides")
    checked["containerOverrides"] = [_container_override(item, names) for item in raw]
    checked.setdefault("inferenceAcceleratorOverrides", [])
    for field, parse in (("cpu", numbers.task_cpu), ("memory", numbers.task_memory)):
        if value.get(field) is not None:
            checked[field] = str(_parsed(parse, value[field]))
    return checked


def _container_override(item: Any, names: set[str]) -> dict[str, Any]:
    if not isinstance(item, dict) or not isinstance(item.get("name"), str):
        raise InvalidParameterException("Each container override needs the container's name.")
    name = item["name"]
    if name not in names:
        raise InvalidParameterException(
            f"Override for container named {name} is not a container in the TaskDefinition."
        )
    checked = {"name": name, **_kept(item, CONTAINER_OVERRIDE_KEPT, f"the override of {name}")}
    if item.get("command") is not None:
        command = item["command"]
        if not isinstance(command, list) or not all(isinstance(a, str) for a in command):
            raise InvalidParameterException(
                f"Invalid command override for container {name}: expected a list of strings."
            )
        checked["command"] = list(command)
    if item.get("environment") is not None:
        checked["environment"] = [_variable(v, name) for v in _as_list(item["environment"])]
    for field in _CONTAINER_NUMBERS:
        if item.get(field) is not None:
            message = f"Invalid {field} override for container {name}."
            checked[field] = _parsed(numbers.integer, item[field], message)
    return checked


def _kept(raw: dict[str, Any], table: dict[str, Schema], where: str) -> dict[str, Any]:
    found, wrong = kept(raw, table)
    if wrong is not None:
        raise InvalidParameterException(f"Invalid '{wrong}' in {where}.")
    return found


def _parsed(parse: Callable[..., int], *args: Any) -> int:
    """``parse(*args)``, with the ClientException of a number parser as a parameter error."""
    try:
        return parse(*args)
    except ClientException as exc:
        raise InvalidParameterException(exc.message) from None


def _as_list(value: Any) -> list[Any]:
    if not isinstance(value, list):
        raise InvalidParameterException("environment overrides must be a list.")
    return value


def _variable(item: Any, name: str) -> dict[str, str]:
    checked = variable(item)
    if checked is None:
        raise InvalidParameterException(
            f"Invalid environment override for container {name}: each variable needs a 'name' "
            "(no '=') and a string 'value'."
        )
    return checked


def effective_containers(
    definition: dict[str, Any], overrides: dict[str, Any]
) -> list[dict[str, Any]]:
    """The definition's containers with ``overrides`` (as ``check_overrides`` made it) applied."""
    by_name = {o["name"]: o for o in overrides.get("containerOverrides", [])}
    containers = []
    for container in definition["containerDefinitions"]:
        effective = copy.deepcopy(container)
        override = by_name.get(container["name"])
        if override is not None:
            _apply(effective, override)
        containers.append(effective)
    return containers


def _apply(container: dict[str, Any], override: dict[str, Any]) -> None:
    if override.get("command") is not None:
        container["command"] = list(override["command"])
    if override.get("environment"):
        merged = {v["name"]: v["value"] for v in container.get("environment", [])}
        merged.update((v["name"], v["value"]) for v in override["environment"])
        container["environment"] = [{"name": k, "value": v} for k, v in merged.items()]
    for field in _CONTAINER_NUMBERS:
        if override.get(field) is not None:
            container[field] = override[field]


def task_size(
    definition: dict[str, Any], overrides: dict[str, Any]
) -> tuple[int | None, int | None]:
    """The task's ``(cpu, memory)``: the overrides', else the definition's, else None."""
    cpu = overrides.get("cpu") or definition.get("cpu")
    memory = overrides.get("memory") or definition.get("memory")
    return (None if cpu is None else int(cpu)), (None if memory is None else int(memory))
