"""What the container tests share: a probe of the Docker Engine, a leak check, a harness.

The engine must answer and the image ``warmstart/test-python:local`` must exist
(``bash scripts/docker-up`` makes both).  Without them the container tests skip, except when
``CI`` is set: there a missing engine fails them.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import tempfile
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from typing import Any

import aiodocker
import pytest
from fakes import Owner
from helpers import FUNCTIONS

from runtime.agent import protocol as P
from runtime.docker import NODE_LABEL
from runtime.loop import run as loop_run
from runtime.node import local_node_id
from runtime.pools.container import (
    ContainerBackend,
    ContainerWorker,
)
from runtime.pools.process import FunctionSpec, Worker

IMAGE = "warmstart/test-python:local"
#: every container this test run starts carries this node label
NODE = local_node_id()


class Probe:
    """Whether the engine answers and the test image is there; the image's host binds."""

    def __init__(self) -> None:
        self.error = ""
        self.host_binds: tuple[str, ...] = ()

    async def run(self) -> None:
        try:
            async with ContainerBackend() as backend:
                await backend.docker.system.info()
                self.host_binds = await backend.host_binds(IMAGE)
        except Exception as exc:
            self.error = f"{type(exc).__name__}: {exc}"


_probe: Probe | None = None


def probe() -> Probe:
    global _probe
    if _probe is None:
        _probe = Probe()
        loop_run(_probe.run())
    return _probe


async def leftovers(node: str = NODE) -> list[str]:
    """Containers (running or not) labelled with ``node``."""
    filters = json.dumps({"label": [f"{NODE_LABEL}={node}"]})
    async with aiodocker.Docker() as docker:
        return [c.id for c in await docker.containers.list(all=True, filters=filters)]


@pytest.fixture
def docker_engine() -> Iterator[Probe]:
    """Skip (fail under CI) without an engine; fail a test that leaves a container behind."""
    found = probe()
    if found.error:
        message = f"no Docker Engine or no {IMAGE} (run `bash scripts/docker-up`): {found.error}"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    yield found
    deadline = time.monotonic() + 5.0
    left = loop_run(leftovers())
    while left and time.monotonic() < deadline:
        time.sleep(0.05)
        left = loop_run(leftovers())
    if left:
        loop_run(_remove(left))
    assert not left, f"containers left behind: {left}"


async def _remove(ids: list[str]) -> None:
    async with aiodocker.Docker() as docker:
        for cid in ids:
            await docker.containers.container(cid).delete(force=True)


def make_spec(
    work_dir: str, handler: str, code: str = "basic", memory_mb: int = 128
) -> FunctionSpec:
    """A function generation as the engine's _new_spec describes it (code: a folder of
    tests/functions, or an absolute path)."""
    code_dir = os.path.join(FUNCTIONS, code)
    environ = {
        "AWS_LAMBDA_FUNCTION_NAME": "fn",
        "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": str(memory_mb),
        "LAMBDA_TASK_ROOT": code_dir,
        "TZ": ":UTC",
    }
    init_config: P.InitConfig = {
        "handler": handler,
        "task_root": code_dir,
        "environ": environ,
        "function_name": "fn",
        "function_version": "$LATEST",
        "invoked_function_arn": "arn:aws:lambda:us-east-1:000000000000:function:fn",
        "memory_mb": memory_mb,
        "log_group_name": "/aws/lambda/fn",
        "log_stream_name": "",
        "log_path": os.path.join(work_dir, "template-0.log"),
    }
    return FunctionSpec("fn", 0, "python3", code_dir, work_dir, init_config, os.getpid())


def env_config(work_dir: str, env_id: int, memory_mb: int = 128) -> P.EnvConfig:
    """One environment's directory and settings, as the engine's _start_env makes them."""
    env_dir = os.path.join(work_dir, f"env-{env_id}")
    os.makedirs(os.path.join(env_dir, "tmp"), exist_ok=True)
    return {
        "environ": {"AWS_LAMBDA_LOG_STREAM_NAME": f"stream-{env_id}", "TMPDIR": "/host/tmp"},
        "log_path": os.path.join(env_dir, "output.log"),
        "memory_limit_bytes": memory_mb * 1024 * 1024,
        "dir": env_dir,
    }


class Harness:
    """Drives the backend as the engine would: one function, environments, invocations."""

    def __init__(self, backend: ContainerBackend, work_dir: str, host_binds: tuple[str, ...]):
        self.backend = backend
        self.work_dir = work_dir
        self.host_binds = host_binds
        self.ids = iter(range(1, 1_000_000))

    async def start(
        self, handler: str = "app.echo", memory_mb: int = 128, code: str = "basic", **kwargs: Any
    ) -> tuple[ContainerWorker, Owner]:
        owner = Owner()
        env_id = next(self.ids)
        spec = make_spec(self.work_dir, handler, code, memory_mb)
        worker = await self.backend.start_worker(
            spec,
            owner,
            asyncio.get_running_loop(),
            env_config(self.work_dir, env_id, memory_mb),
            image=kwargs.pop("image", IMAGE),
            memory_mb=memory_mb,
            ephemeral_storage_mb=kwargs.pop("ephemeral_storage_mb", 512),
            env_id=env_id,
            host_binds=self.host_binds,
            **kwargs,
        )
        return worker, owner

    @staticmethod
    async def invoke(worker: Worker, owner: Owner, event: Any, timeout: float = 10.0) -> P.Frame:
        """One INVOKE frame, its RESULT or ERROR frame."""
        rid = f"req-{time.monotonic_ns()}".encode()
        deadline_ms = int((time.time() + 60) * 1000)
        worker.send(P.encode(P.INVOKE, (rid, json.dumps(event).encode(), b""), deadline_ms))
        frame = await asyncio.wait_for(owner.frames.get(), timeout)
        assert frame.fields[0] == rid
        return frame


@asynccontextmanager
async def harness() -> AsyncIterator[Harness]:
    """A backend and a short work directory (unix socket paths must stay under 108 bytes)."""
    work_dir = tempfile.mkdtemp(prefix="ws-ct-")
    try:
        async with ContainerBackend(start_cap=6, node_id=NODE) as backend:
            yield Harness(backend, work_dir, await backend.host_binds(IMAGE))
    finally:
        shutil.rmtree(work_dir, ignore_errors=True)
