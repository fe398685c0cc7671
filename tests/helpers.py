"""Small helpers the tests share: where the repository and the handler fixtures are, process
checks, polling."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import pytest

if TYPE_CHECKING:
    from runtime.configfile import ConfigFileError
    from runtime.result import InvokeResult, Report

#: The AWS services whose boto3 clients the tests point at warmstart.
AwsService = Literal["batch", "ecs", "events", "lambda"]

#: the repository's root
ROOT = Path(__file__).resolve().parent.parent
#: the handler fixtures, one folder of code per function
FUNCTIONS = ROOT / "tests" / "functions"


#: an ECS Fargate task definition as people write it: every number a string (copy it before
#: changing it)
ECS_SEED: dict[str, Any] = {
    "family": "webserver",
    "containerDefinitions": [{"name": "web", "image": "nginx", "memory": "100", "cpu": "99"}],
    "requiresCompatibilities": ["FARGATE"],
    "networkMode": "awsvpc",
    "memory": "512",
    "cpu": "256",
}


def write_toml(folder: Path, text: str, name: str = "warmstart.toml") -> Path:
    """``text`` written to ``folder/name``."""
    path = folder / name
    path.write_text(text)
    return path


def agents_of(pid: int) -> list[tuple[int, str]]:
    """Live agent processes (templates and workers) started by the engine in process ``pid``."""
    from runtime.pools.process import AGENT_MAIN

    marker = f"--engine-pid\x00{pid}\x00"
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                cmdline = f.read().decode(errors="replace")
        except OSError:
            continue
        if AGENT_MAIN in cmdline and marker in cmdline:
            found.append((int(entry), cmdline.replace("\x00", " ").strip()))
    return found


def report_of(result: InvokeResult) -> Report:
    """The REPORT figures of ``result``, which every completed invocation has."""
    assert result.report is not None
    return result.report


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


def refused(folder: Path, text: str, key: str, reason: str) -> ConfigFileError:
    """The error loading ``text`` as a config file raises: it names the file, ``key`` and a reason
    containing ``reason``, as ``file: key: reason``."""
    from runtime.configfile import ConfigFileError, load

    path = write_toml(folder, text)
    with pytest.raises(ConfigFileError) as caught:
        load(path)
    exc = caught.value
    assert (exc.path, exc.key) == (str(path), key)
    assert reason in exc.reason
    assert str(exc) == f"{path}: {key}: {exc.reason}"
    return exc
