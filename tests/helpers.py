"""Small helpers the engine tests share."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Callable

import pytest


def pid_exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


async def eventually(check: Callable[[], bool], timeout: float = 3.0) -> float:
    """Poll ``check`` until it holds; fail after ``timeout`` seconds. Returns the wait."""
    t0 = time.monotonic()
    while not check():
        if time.monotonic() - t0 > timeout:
            pytest.fail(f"condition not met within {timeout} s")
        await asyncio.sleep(0.01)
    return time.monotonic() - t0


def wait_gone(pid: int, timeout: float = 3.0) -> None:
    """Block until process ``pid`` no longer exists; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while pid_exists(pid):
        if time.monotonic() > deadline:
            pytest.fail(f"process {pid} still exists after {timeout} s")
        time.sleep(0.01)
