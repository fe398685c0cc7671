"""A compute environment's capacity, as plain arithmetic (no I/O, no clock).

AWS Batch's managed compute environment scales between ``minvCpus`` and ``maxvCpus`` with the
demand of its queues' RUNNABLE jobs, and places a job only where its vCPUs and memory fit.
Here there is nothing to launch: free capacity is the maximum less what runs, and the desired
capacity (what runs plus what waits, clamped to the range) is what AWS would scale to, reported
for the operator.  vCPUs are counted in thousandths so that fractional requests (``0.25``) add
up without rounding drift.
"""

from __future__ import annotations

from typing import Any, Final

_MILLI: Final = 1000

#: the statusReason AWS gives a RUNNABLE job that no compute environment of its queue can hold
BLOCKED_REASON: Final = (
    "MISCONFIGURATION:JOB_RESOURCE_REQUIREMENT - The job resource requirement (vCPU/memory/GPU)"
    " is higher than that can be met by the CE(s) attached to the job queue."
)


def _milli(vcpus: float) -> int:
    return round(vcpus * _MILLI)


class Capacity:
    """vCPUs and memory of one compute environment: what is in use, free, desired."""

    def __init__(
        self, *, min_vcpus: float, max_vcpus: float, memory_mib: int, name: str = "warmstart"
    ) -> None:
        self.name = name
        self._min = _milli(min_vcpus)
        self._max = _milli(max_vcpus)
        self.memory_mib = memory_mib
        self._used = 0
        self.used_memory_mib = 0
        self._peak = 0
        self._demand = 0
        self.running = 0

    @property
    def min_vcpus(self) -> float:
        return self._min / _MILLI

    @property
    def max_vcpus(self) -> float:
        return self._max / _MILLI

    @property
    def used_vcpus(self) -> float:
        return self._used / _MILLI

    @property
    def peak_vcpus(self) -> float:
        """The most vCPUs ever in use at once."""
        return self._peak / _MILLI

    @property
    def free_vcpus(self) -> float:
        return max(0, self._max - self._used) / _MILLI

    @property
    def free_memory_mib(self) -> int:
        return max(0, self.memory_mib - self.used_memory_mib)

    @property
    def desired_vcpus(self) -> float:
        """What runs plus what RUNNABLE jobs ask for, clamped to [min_vcpus, max_vcpus]."""
        return min(self._max, max(self._min, self._used + self._demand)) / _MILLI

    def set_demand(self, vcpus: float) -> None:
        """The vCPUs RUNNABLE jobs ask for now (the store's ``demand()``)."""
        self._demand = _milli(vcpus)

    def fits(self, vcpus: float, memory_mib: int) -> bool:
        return (
            self._used + _milli(vcpus) <= self._max
            and self.used_memory_mib + memory_mib <= self.memory_mib
        )

    def take(self, vcpus: float, memory_mib: int) -> None:
        """An attempt was placed; the store's claim already checked that it fits."""
        self._used += _milli(vcpus)
        self.used_memory_mib += memory_mib
        self.running += 1
        self._peak = max(self._peak, self._used)

    def give(self, vcpus: float, memory_mib: int) -> None:
        """An attempt ended."""
        self._used -= _milli(vcpus)
        self.used_memory_mib -= memory_mib
        self.running -= 1

    def stats(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "min_vcpus": self.min_vcpus,
            "max_vcpus": self.max_vcpus,
            "desired_vcpus": self.desired_vcpus,
            "used_vcpus": self.used_vcpus,
            "peak_vcpus": self.peak_vcpus,
            "memory_mib": self.memory_mib,
            "used_memory_mib": self.used_memory_mib,
            "running": self.running,
        }

    def __repr__(self) -> str:
        return (
            f"<Capacity {self.name} vcpus={self.used_vcpus:g}/{self.max_vcpus:g} "
            f"desired={self.desired_vcpus:g} memory={self.used_memory_mib}/{self.memory_mib} MiB "
            f"running={self.running}>"
        )
