"""Numbers as ECS JSON writes them: integers, or strings of integers (``"memory": "100"``).

Task-level ``cpu`` may also be given in vCPUs (``"1 vCPU"``, ``".25 vCPU"``) and task-level
``memory`` in GB (``"2 GB"``): ECS converts both to units (1 vCPU = 1024 units) and MiB when it
registers the definition, and reports them as strings of integers.  Anything else (a float, a
bool, ``"12abc"``) is refused with ``message``.
"""

from __future__ import annotations

import re
from typing import Any

from .errors import ClientException

_INTEGER_RE = re.compile(r"^\s*[0-9]+\s*$")
_CPU_RE = re.compile(r"^\s*([0-9]*\.?[0-9]+)\s*(vcpu)?\s*$", re.I)
_MEMORY_RE = re.compile(r"^\s*([0-9]*\.?[0-9]+)\s*(gb|gib|mb|mib)?\s*$", re.I)
MIB_PER_GB = 1024
UNITS_PER_VCPU = 1024


def integer(value: Any, message: str) -> int:
    """A non-negative integer from an int or a string of digits; ClientException otherwise."""
    if isinstance(value, bool):
        raise ClientException(message)
    if isinstance(value, int):
        if value < 0:
            raise ClientException(message)
        return value
    if isinstance(value, str) and _INTEGER_RE.fullmatch(value):
        return int(value)
    raise ClientException(message)


def _with_unit(value: Any, pattern: re.Pattern[str], units: dict[str, int], message: str) -> int:
    """An integer, or a string matching ``pattern`` whose unit (group 2) scales the amount."""
    if isinstance(value, int) and not isinstance(value, bool):
        return integer(value, message)
    match = pattern.fullmatch(value) if isinstance(value, str) else None
    if match is None:
        raise ClientException(message)
    scale = units.get((match[2] or "").lower(), 1)
    if "." not in match[1]:
        return int(match[1]) * scale
    amount = float(match[1]) * scale
    if amount != int(amount):
        raise ClientException(message)
    return int(amount)


def task_cpu(value: Any) -> int:
    """Task-level ``cpu`` in CPU units: ``256``, ``"256"``, ``"1 vCPU"``, ``".25 vCPU"``."""
    return _with_unit(value, _CPU_RE, {"vcpu": UNITS_PER_VCPU}, "Invalid 'cpu' setting for task.")


def task_memory(value: Any) -> int:
    """Task-level ``memory`` in MiB: ``512``, ``"512"``, ``"512 MiB"``, ``"2 GB"``."""
    units = {"gb": MIB_PER_GB, "gib": MIB_PER_GB}
    return _with_unit(value, _MEMORY_RE, units, "Invalid 'memory' setting for task.")
