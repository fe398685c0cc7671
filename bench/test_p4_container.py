"""P4: container cold start, and warm container invoke, on the local Docker Engine.

Cold: ``backend="container"`` with ``max_uses=1``, so every call creates and starts a container,
connects its agent, initializes the handler and invokes it.  Baseline: a bare aiodocker
create + start of the same image with the backend's own create request (``container_config``:
the same mounts and limits; only the command and the labels differ) until the Python in it has
connected to a unix socket in the bind-mounted environment directory (ready).  The baseline
removes the previous round's container in the round's untimed setup; warmstart removes its
retired container in the background after the call has returned, and the round's untimed setup
waits until that removal is done, so neither side's timing holds a removal.  With a stem cell:
the same cold function on an engine that keeps one started, generic container ready (refilled
in the untimed setup), so a cold start only initializes the handler in it.  Warm: a container
environment's invoke beside a forked process environment's, the same no-op handler.
"""

from __future__ import annotations

import asyncio
import os
import socket
import tempfile
import time
from collections.abc import Iterator
from typing import Any

import aiodocker
import pytest
from aiodocker.containers import DockerContainer

from runtime import Engine, FunctionConfig, PoolConfig
from runtime.config import StemCellConfig
from runtime.docker import LABEL
from runtime.pools.container import (
    SOCK_DIR,
    ContainerBackend,
    SandboxKey,
    container_config,
)

from ._support import EVENT, FUNCTIONS, percentile, size

IMAGE = "warmstart/test-python:local"
ROUNDS = size(15, 1)
N_WARM = size(300, 3)
READY = f"import socket; s = socket.socket(socket.AF_UNIX); s.connect('{SOCK_DIR}/ready.sock')"


def _docker_or_skip(loop: asyncio.AbstractEventLoop) -> tuple[str, ...]:
    async def probe() -> tuple[str, ...]:
        async with ContainerBackend() as backend:
            return await backend.host_binds(IMAGE)

    try:
        return loop.run_until_complete(probe())
    except Exception as exc:
        if os.environ.get("CI"):
            pytest.fail(f"CI is set but no Docker Engine or {IMAGE}: {exc}")
        pytest.skip(f"no Docker Engine or {IMAGE}: {exc}")


@pytest.fixture(scope="module")
def engine(loop: asyncio.AbstractEventLoop) -> Iterator[Engine]:
    _docker_or_skip(loop)
    engine = Engine(PoolConfig(trust_image_binds=True))
    code = str(FUNCTIONS / "noop")
    loop.run_until_complete(engine.start())
    for config in (
        FunctionConfig(
            name="cold",
            handler="app.handler",
            code=code,
            backend="container",
            image=IMAGE,
            max_uses=1,
        ),
        FunctionConfig(
            name="warm", handler="app.handler", code=code, backend="container", image=IMAGE
        ),
        FunctionConfig(name="process", handler="app.handler", code=code),
    ):
        loop.run_until_complete(engine.register(config))
    yield engine
    loop.run_until_complete(engine.close())


def test_p4_cold_warmstart(benchmark: Any, loop: asyncio.AbstractEventLoop, engine: Engine) -> None:
    def once() -> None:
        result = loop.run_until_complete(engine.invoke("cold", EVENT))
        assert result.report is not None
        assert result.report.cold

    def settled() -> None:  # the previous round's container removed, as the baseline's is
        loop.run_until_complete(_no_live_containers(engine))

    benchmark.group = "P4-container-cold"
    benchmark.extra_info.update(figure="P4", role="warmstart")
    benchmark.pedantic(once, setup=settled, rounds=ROUNDS, warmup_rounds=1)


async def _no_live_containers(engine: Engine) -> None:
    backend = engine._containers
    for _ in range(500):
        if backend is None or "live=0 " in repr(backend):
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"containers still live: {backend!r}")


def test_p4_cold_stem_cell(benchmark: Any, loop: asyncio.AbstractEventLoop) -> None:
    _docker_or_skip(loop)
    pool = PoolConfig(trust_image_binds=True, stem_cells=(StemCellConfig(image=IMAGE, count=1),))
    engine = Engine(pool)
    loop.run_until_complete(engine.start())
    backend = engine._containers
    assert backend is not None
    config = FunctionConfig(
        name="cold",
        handler="app.handler",
        code=str(FUNCTIONS / "noop"),
        backend="container",
        image=IMAGE,
        max_uses=1,
    )

    def ready() -> None:
        loop.run_until_complete(backend.stem_cells_ready(SandboxKey(IMAGE)))

    def once() -> None:
        result = loop.run_until_complete(engine.invoke("cold", EVENT))
        assert result.report is not None
        assert result.report.cold

    try:
        loop.run_until_complete(engine.register(config))
        benchmark.group = "P4-container-cold"
        benchmark.extra_info.update(figure="P4", role="warmstart stem cell")
        benchmark.pedantic(once, setup=ready, rounds=ROUNDS, warmup_rounds=1)
        cells = backend.stem_cells(SandboxKey(IMAGE))
        assert cells is not None
        assert cells.taken >= ROUNDS  # every timed cold start took a stem cell
    finally:
        loop.run_until_complete(engine.close())


def test_p4_cold_bare_container(benchmark: Any, loop: asyncio.AbstractEventLoop) -> None:
    binds = _docker_or_skip(loop)
    workdir = tempfile.mkdtemp(prefix="p4-")
    path = os.path.join(workdir, "ready.sock")
    listener = socket.socket(socket.AF_UNIX)
    listener.bind(path)
    listener.listen(4)
    listener.setblocking(False)
    # the "cold" function's container, as the backend creates it (FunctionConfig's defaults)
    config = container_config(
        str(FUNCTIONS / "noop"),
        workdir,
        image=IMAGE,
        memory_mb=128,
        ephemeral_storage_mb=512,
        network=False,
        python="python3",
        labels={LABEL: "1", "warmstart.bench": "p4"},
        host_binds=binds,
    )
    config["Cmd"] = ["-c", READY]  # after the Entrypoint, the interpreter
    made: list[DockerContainer] = []  # removed in the next round's setup, outside the timing

    async def create_start_ready(docker: aiodocker.Docker) -> None:
        container = await docker.containers.create(config)
        made.append(container)
        await container.start()
        conn, _ = await asyncio.wait_for(loop.sock_accept(listener), 30)
        conn.close()

    async def remove_made() -> None:
        while made:
            await made.pop().delete(force=True)

    async def client() -> aiodocker.Docker:
        return aiodocker.Docker()  # made inside the loop that will use it

    docker = loop.run_until_complete(client())
    try:
        benchmark.group = "P4-container-cold"
        benchmark.extra_info.update(figure="P4", role="bare create+start+ready")
        benchmark.pedantic(
            lambda: loop.run_until_complete(create_start_ready(docker)),
            setup=lambda: loop.run_until_complete(remove_made()),
            rounds=ROUNDS,
            warmup_rounds=1,
        )
    finally:
        loop.run_until_complete(remove_made())
        loop.run_until_complete(docker.close())
        listener.close()
        os.unlink(path)
        os.rmdir(workdir)


@pytest.mark.parametrize(
    ("name", "role"), [("warm", "warmstart container"), ("process", "warmstart process")]
)
def test_p4_warm_invoke(
    benchmark: Any, loop: asyncio.AbstractEventLoop, engine: Engine, name: str, role: str
) -> None:
    samples: list[float] = []

    async def run() -> None:
        for _ in range(N_WARM):
            t0 = time.perf_counter()
            await engine.invoke(name, EVENT)
            samples.append(time.perf_counter() - t0)

    loop.run_until_complete(engine.invoke(name, EVENT))
    benchmark.group = "P4-container-warm"
    benchmark.extra_info.update(figure="P4", role=role, ops_per_round=N_WARM)
    benchmark.pedantic(lambda: loop.run_until_complete(run()), rounds=size(5, 1))
    benchmark.extra_info["p50_us"] = percentile(samples, 0.5) * 1e6
