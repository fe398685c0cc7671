"""Many containers: a burst under the start cap, leftovers of dead nodes."""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
from collections.abc import Callable
from typing import Any

import aiodocker
import orjson
from docker_support import IMAGE, NODE, harness

from runtime.agent import protocol as P
from runtime.docker import LABEL, NODE_LABEL
from runtime.node import local_node_id
from runtime.pools.container import ContainerBackend


def _open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def test_twenty_concurrent_starts_stay_under_the_cap(arun: Callable[..., Any]) -> None:
    async def main() -> None:
        async with harness() as h:
            backend = h.backend
            creates = backend.docker.containers.create
            in_flight = peak = 0

            async def counted_create(*args: Any, **kwargs: Any) -> Any:
                nonlocal in_flight, peak
                in_flight += 1
                peak = max(peak, in_flight)
                try:
                    return await creates(*args, **kwargs)
                finally:
                    in_flight -= 1

            backend.docker.containers.create = counted_create  # type: ignore[method-assign]
            started = await asyncio.gather(*(h.start("app.whoami") for _ in range(20)))
            assert 1 <= peak <= backend.start_cap
            assert f"live=20 starting=0 stem=0 cap={backend.start_cap}" in repr(backend)
            answers = await asyncio.gather(*(h.invoke(w, o, {}) for w, o in started))
            assert all(frame.kind == P.RESULT for frame in answers)
            assert len({w.container_id for w, _ in started}) == 20
            assert all(orjson.loads(frame.fields[1])["pid"] > 1 for frame in answers)
            codes = await asyncio.gather(*(backend.stop_worker(w) for w, _ in started))
            assert codes == [0] * 20
            assert "live=0 starting=0" in repr(backend)

    fds_before = _open_fds()
    arun(main(), timeout=60)
    assert _open_fds() <= fds_before  # sockets, listeners and client connections all closed


async def _create_labelled(backend: ContainerBackend, node: str) -> str:
    config: dict[str, Any] = {
        "Image": IMAGE,
        "Cmd": ["python3"],
        "Labels": {LABEL: "1", NODE_LABEL: node},
    }
    return (await backend.docker.containers.create(config)).id


def test_cleanup_removes_the_containers_of_dead_nodes_only(arun: Callable[..., Any]) -> None:
    host, pid, ticks = local_node_id().rsplit("/", 2)
    nodes = {
        "dead": f"{host}/{pid}/{int(ticks) + 1}",  # our pid, another start: a previous run
        "gone": f"{host}/999999999/1",
        "live": NODE,
        "elsewhere": "another-host/1/1",
    }

    async def main() -> None:
        async with ContainerBackend() as backend:
            made = {key: await _create_labelled(backend, node) for key, node in nodes.items()}
            try:
                removed = await backend.cleanup_leftovers(NODE)
                assert made["dead"] in removed
                assert made["gone"] in removed
                assert made["live"] not in removed
                assert made["elsewhere"] not in removed
                for key in ("live", "elsewhere"):
                    await backend.docker.containers.container(made[key]).show()
            finally:
                for cid in made.values():
                    with contextlib.suppress(aiodocker.DockerError):
                        await backend.docker.containers.container(cid).delete(force=True)

    assert socket.gethostname() == host
    arun(main())
