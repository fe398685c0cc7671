"""Sandboxes and stem cells on the real Docker Engine: a killed worker is replaced in the same
container (its /tmp intact, the next call cold), an idle container stops at its keepalive,
Max Memory Used comes from the cgroup, and stem cells started ahead of demand serve cold starts."""

from __future__ import annotations

import asyncio
import json
import os
import time
from typing import Any

import aiodocker
import orjson
import pytest
from docker_support import IMAGE, NODE, env_config, harness, make_spec
from helpers import FUNCTIONS, pid_exists

from runtime import Engine, FunctionConfig, InvalidParameterValueException, PoolConfig
from runtime.agent import protocol as P
from runtime.config import StemCellConfig
from runtime.docker import NODE_LABEL
from runtime.pools.container import (
    FUNCTION_LABEL,
    STEM_LABEL,
    ContainerBackend,
    SandboxKey,
)

PROBE = str(FUNCTIONS / "container_probe")
POOL = PoolConfig(trust_image_binds=True)
STEM_KEY = SandboxKey(IMAGE)


def probe(name: str = "c", **fields: Any) -> FunctionConfig:
    fields.setdefault("image", IMAGE)
    return FunctionConfig(
        name=name, handler="app.handler", code=PROBE, backend="container", **fields
    )


async def containers(**labels: str) -> list[dict[str, Any]]:
    """This node's containers (running or not) with these labels too."""
    wanted = [f"{NODE_LABEL}={NODE}", *(f"{k}={v}" for k, v in labels.items())]
    async with aiodocker.Docker() as docker:
        found = await docker.containers.list(all=True, filters=json.dumps({"label": wanted}))
        return [c._container for c in found]


def backend_of(engine: Engine) -> ContainerBackend:
    backend: ContainerBackend | None = engine._containers
    assert backend is not None
    return backend


def test_tmp_survives_a_timeout_and_a_crash_and_the_next_call_is_cold(arun: Any) -> None:
    async def main() -> None:
        async with Engine(POOL) as engine:
            await engine.register(probe(timeout_s=1))
            first = await engine.invoke("c", {"do": "tmp"})
            assert first.json()["before"] is None
            timed_out = await engine.invoke("c", {"do": "sleep", "seconds": 5})
            assert orjson.loads(timed_out.payload)["errorType"] == "Sandbox.Timedout"
            second = await engine.invoke("c", {"do": "tmp"})
            assert second.report is not None
            assert second.report.cold  # a new worker ran the init again
            assert "Init Duration" in second.log_tail
            assert second.json()["host"] == first.json()["host"]  # in the same container
            assert second.json()["token"] != first.json()["token"]
            assert second.json()["before"] == first.json()["token"]  # /tmp kept its file
            crashed = await engine.invoke("c", {"do": "exit"})
            assert orjson.loads(crashed.payload)["errorType"] == "Runtime.ExitError"
            third = await engine.invoke("c", {"do": "tmp"})
            assert third.report is not None
            assert third.report.cold
            assert third.json()["before"] == second.json()["token"]
            assert len(await containers(**{FUNCTION_LABEL: "c"})) == 1

    arun(main(), timeout=60)


def test_keepalive_stops_an_idle_container(arun: Any) -> None:
    async def main() -> None:
        async with Engine(POOL) as engine:
            await engine.register(probe(keepalive_s=1))
            first = await engine.invoke("c", {})
            assert len(await containers(**{FUNCTION_LABEL: "c"})) == 1
            t0 = time.monotonic()
            await asyncio.sleep(0.5)
            assert engine.stats()["c"]["environments"]["ready"] == 1  # not before its time
            while await containers(**{FUNCTION_LABEL: "c"}):
                assert time.monotonic() - t0 < 5, "the idle container was not stopped"
                await asyncio.sleep(0.1)
            assert time.monotonic() - t0 >= 1.0
            assert engine.stats()["c"]["environments"]["ready"] == 0
            again = await engine.invoke("c", {})
            assert again.report is not None
            assert again.report.cold
            assert again.json()["host"] != first.json()["host"]  # a new container

    arun(main(), timeout=60)


def test_max_memory_used_is_the_containers_cgroup_peak(arun: Any) -> None:
    async def main() -> None:
        async with Engine(POOL) as engine:
            await engine.register(probe(memory_mb=256))
            small = await engine.invoke("c", {})
            held = await engine.invoke("c", {"do": "hold", "mb": 80})
            assert small.report is not None
            assert held.report is not None
            assert 5 <= small.report.max_memory_used_mb < 80
            assert 80 <= held.report.max_memory_used_mb <= 256
            assert f"Max Memory Used: {held.report.max_memory_used_mb} MB" in held.log_tail

    arun(main(), timeout=60)


def test_a_killed_worker_is_replaced_in_the_same_sandbox(arun: Any) -> None:
    async def main() -> None:
        async with harness() as h:
            worker, owner = await h.start("app.whoami")
            container, pid = worker.container_id, worker.pid
            worker.kill()
            assert await asyncio.wait_for(asyncio.shield(worker.exited), 10) == -9
            assert not pid_exists(pid)
            assert worker.sandbox.usable  # the container lives on
            again = await h.backend.start_worker(  # the same environment (its directory) again
                make_spec(h.work_dir, "app.whoami"),
                owner,
                asyncio.get_running_loop(),
                env_config(h.work_dir, 1),
                image=IMAGE,
                memory_mb=128,
                ephemeral_storage_mb=512,
                env_id=1,
                host_binds=h.host_binds,
            )
            assert again.container_id == container
            assert again.pid != pid
            frame = await h.invoke(again, owner, {})
            assert frame.kind == P.RESULT
            assert await h.backend.stop_worker(again) == 0
            assert not worker.sandbox.usable

    arun(main(), timeout=60)


def test_stem_cells_serve_cold_starts_and_are_refilled(arun: Any) -> None:
    pool = PoolConfig(trust_image_binds=True, stem_cells=(StemCellConfig(image=IMAGE, count=1),))

    async def main() -> None:
        async with Engine(pool) as engine:
            backend = backend_of(engine)
            await backend.stem_cells_ready(STEM_KEY)
            (stem,) = await containers(**{STEM_LABEL: IMAGE})
            await engine.register(probe())
            first = await engine.invoke("c", {})
            assert first.report is not None
            assert first.report.cold
            assert first.json()["host"] == stem["Id"][:12]  # it ran in the stem cell
            assert first.json()["task_root"] == first.json()["cwd"] == "/var/task/c-0"
            cells = backend.stem_cells(STEM_KEY)
            assert cells is not None
            assert cells.taken == 1
            await backend.stem_cells_ready(STEM_KEY)  # refilled behind the cold start
            refill = [c for c in await containers(**{STEM_LABEL: IMAGE}) if c["Id"] != stem["Id"]]
            assert len(refill) == 1
            warm = await engine.invoke("c", {})
            assert warm.report is not None
            assert not warm.report.cold
            assert warm.json()["token"] == first.json()["token"]
            # another size is another key: a container of its own, the stem cell untouched
            await engine.register(probe("big", memory_mb=256))
            big = await engine.invoke("big", {})
            assert big.json()["task_root"] == "/var/task"
            assert big.json()["host"] != refill[0]["Id"][:12]
            assert cells.taken == 1
        assert not await containers()

    arun(main(), timeout=60)


def test_stem_cell_code_is_read_only_and_updates_are_staged_anew(arun: Any) -> None:
    pool = PoolConfig(trust_image_binds=True, stem_cells=(StemCellConfig(image=IMAGE, count=2),))

    async def main() -> None:
        async with Engine(pool) as engine:
            backend = backend_of(engine)
            await backend.stem_cells_ready(STEM_KEY)
            await engine.register(probe())
            first = await engine.invoke("c", {})
            await engine.update("c", environment={"VERSION": "2"})
            await backend.stem_cells_ready(STEM_KEY)
            second = await engine.invoke("c", {})
            assert first.json()["task_root"] == "/var/task/c-0"
            assert second.json()["task_root"] == "/var/task/c-1"
            assert not first.json()["task_writable"]  # the store is mounted read-only
            assert sorted(os.listdir(backend.store)) == ["c-0", "c-1"]

    arun(main(), timeout=60)


def test_a_stem_cell_image_that_is_missing_is_refused_at_start(arun: Any) -> None:
    missing = IMAGE.replace("test-python", "no-such-image")
    pool = PoolConfig(stem_cells=(StemCellConfig(image=missing),))

    async def main() -> None:
        engine = Engine(pool)
        with pytest.raises(InvalidParameterValueException, match="No such image"):
            await engine.start()
        assert not await asyncio.to_thread(os.path.exists, engine._work_dir)  # nothing left

    arun(main(), timeout=60)
