"""Container faults: the OOM killer, kills from outside, failed starts, cancelled starts, hangs."""

from __future__ import annotations

import asyncio
import signal
import time
from collections.abc import Callable
from typing import Any

import orjson
import pytest
from docker_support import IMAGE, harness
from helpers import pid_exists

from runtime.agent import protocol as P
from runtime.pools.container import ContainerStartError
from runtime.pools.process import InitFailed


def test_allocating_past_the_limit_gets_the_container_oom_killed(
    arun: Callable[..., Any],
) -> None:
    async def main() -> None:
        async with harness() as h:
            worker, owner = await h.start("app.alloc", memory_mb=128)
            ok = await h.invoke(worker, owner, {"mb": 16})
            assert ok.kind == P.RESULT
            worker.send(
                P.encode(P.INVOKE, (b"oom", b'{"mb": 400}', b""), int(time.time() * 1000) + 60_000)
            )
            code = await asyncio.wait_for(asyncio.shield(worker.exited), 20)
            assert code == -signal.SIGKILL
            assert worker.oom_killed
            assert owner.lost == [worker]  # the engine hears of the crash (worker_lost)
            assert owner.frames.empty()  # no answer: the engine writes Runtime.OutOfMemory

    arun(main())


@pytest.mark.parametrize("how", ["docker-kill", "sigkill-host-pid", "docker-stop"])
def test_a_container_killed_from_outside_resolves_exited(
    arun: Callable[..., Any], how: str
) -> None:
    async def main() -> None:
        async with harness() as h:
            worker, owner = await h.start("app.echo")
            container = h.backend.docker.containers.container(worker.container_id)
            t0 = time.monotonic()
            if how == "docker-kill":
                await container.kill()
            elif how == "docker-stop":
                await container.stop(t=1)
            else:
                worker.kill()  # what the engine does on a timeout: SIGKILL the host pid
            code = await asyncio.wait_for(asyncio.shield(worker.exited), 10)
            # the agent is the container's init: SIGTERM (docker stop) is ignored, then killed
            assert code == -signal.SIGKILL
            assert not worker.oom_killed
            assert time.monotonic() - t0 < 5
            if how != "sigkill-host-pid":
                assert owner.lost == [worker]

    arun(main())


def test_init_error_is_init_failed_and_leaves_no_container(arun: Callable[..., Any]) -> None:
    async def main() -> None:
        async with harness() as h:
            with pytest.raises(InitFailed) as info:
                await h.start("app.missing")
            body = orjson.loads(info.value.body)
            assert body["errorType"] == "Runtime.HandlerNotFound"
            with pytest.raises(InitFailed) as info:
                await h.start("app.handler", code="raise_at_import")
            assert orjson.loads(info.value.body)["errorType"] == "ConfigMissingError"

    arun(main())


def test_a_container_that_cannot_run_the_bootstrap_fails_fast(
    arun: Callable[..., Any],
) -> None:
    async def main() -> None:
        async with harness() as h:
            t0 = time.monotonic()
            with pytest.raises(ContainerStartError, match="docker:"):
                await h.start("app.echo", python="no-such-python")
            with pytest.raises(ContainerStartError, match="exited with code 1"):
                await h.start("app.echo", python="/usr/bin/false")
            assert time.monotonic() - t0 < 10

    arun(main())


def test_a_missing_image_is_a_clear_error(arun: Callable[..., Any]) -> None:
    async def main() -> None:
        async with harness() as h:
            with pytest.raises(ContainerStartError, match="No such image"):
                await h.backend.image_labels("warmstart/no-such-image:local")
            spec_image = IMAGE.replace("test-python", "no-such-image")
            with pytest.raises(ContainerStartError, match="No such image"):
                await h.start("app.echo", image=spec_image)

    arun(main())


def test_a_cancelled_start_removes_its_container(arun: Callable[..., Any]) -> None:
    async def main() -> None:
        async with harness() as h:
            for delay in (0.05, 0.15):
                task = asyncio.ensure_future(h.start("app.echo"))
                await asyncio.sleep(delay)
                task.cancel()
                with pytest.raises(asyncio.CancelledError):
                    await task

    arun(main())


def test_stop_kills_a_worker_stuck_in_its_handler(arun: Callable[..., Any]) -> None:
    async def main() -> None:
        async with harness() as h:
            worker, _ = await h.start("app.sleep")
            worker.send(P.encode(P.INVOKE, (b"r", b'{"s": 30}', b""), 0))
            await asyncio.sleep(0.1)
            t0 = time.monotonic()
            code = await h.backend.stop_worker(worker, grace=0.3)
            assert code == -signal.SIGKILL
            assert time.monotonic() - t0 < 5

    arun(main())


def test_closing_the_backend_removes_live_containers(arun: Callable[..., Any]) -> None:
    async def main() -> None:
        async with harness() as h:
            workers = [(await h.start("app.echo"))[0] for _ in range(2)]
        for worker in workers:
            assert worker.exited.done()
            assert not pid_exists(worker.pid)

    arun(main())
