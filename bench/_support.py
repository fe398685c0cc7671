"""Baselines and helpers shared by the benchmarks.

The floor of DESIGN.md section 7: the same event making a raw round trip between two Python
processes over a unix socket, with uvloop on the caller's side and a blocking echo loop on the
other.  Everything warmstart adds on top of a process hop shows up as the ratio to it.
The floor and the pool baselines' task live in ``runtime.harness.baselines`` (one copy, used
here and by ``warmstart bench --baseline``).
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from runtime.harness.baselines import EchoFloor, noop

BENCH_DIR = Path(__file__).resolve().parent
FUNCTIONS = BENCH_DIR / "functions"
QUICK = os.environ.get("WARMSTART_BENCH_QUICK") == "1"
EVENT = b'{"key": "value", "n": 1}'

__all__ = ["EVENT", "FUNCTIONS", "QUICK", "EchoFloor", "callers", "noop", "percentile", "size"]


def size(full: int, quick: int) -> int:
    """A count that shrinks to ``quick`` under WARMSTART_BENCH_QUICK=1 (the test run)."""
    return quick if QUICK else full


def percentile(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def callers(n_callers: int, n_ops: int, call: Callable[[], Awaitable[Any]]) -> None:
    """A closed loop: ``n_callers`` tasks awaiting ``call()`` until ``n_ops`` calls were made."""
    remaining = n_ops

    async def caller() -> None:
        nonlocal remaining
        while remaining > 0:
            remaining -= 1
            await call()

    await asyncio.gather(*(caller() for _ in range(n_callers)))
