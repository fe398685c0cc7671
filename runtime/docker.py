"""What every part that runs Docker containers shares (pools.container, ecs, batch.executors).

Every container warmstart starts carries ``warmstart=1`` and the ``warmstart.node`` of the
process that started it, so that the containers of a process that died are found and removed
(``ContainerBackend.cleanup_leftovers``).  Its end is learnt from the kernel where it can be
(:func:`process_gone`, a pidfd), so a long-running container holds no connection to the daemon.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import Mapping
from typing import Any

import aiodocker
import aiohttp
from aiodocker.containers import DockerContainer

LABEL = "warmstart"
NODE_LABEL = "warmstart.node"
#: image label (scripts/docker-up writes it): host paths to bind read-only, ':'-separated
BINDS_LABEL = "warmstart.host-binds"
#: Docker takes memory limits in bytes
MB = 1024 * 1024
#: what a request to the daemon raises when it fails or the daemon does not answer
DOCKER_ERRORS = (aiodocker.DockerError, aiohttp.ClientError, OSError)


def owner_labels(node_id: str) -> dict[str, str]:
    """The labels that mark a container as started by the warmstart process ``node_id``."""
    return {LABEL: "1", NODE_LABEL: node_id}


def image_binds(labels: Mapping[str, Any]) -> tuple[str, ...]:
    """The host paths an image's labels ask to have mounted (``warmstart.host-binds``)."""
    value = labels.get(BINDS_LABEL, "")
    return tuple(path for path in str(value).split(":") if path)


async def image_id(image: str, url: str | None = None) -> str:
    """The local image's id (``sha256:...``); "" when it is not there or no daemon answers."""
    try:
        async with aiodocker.Docker(url=url) as docker:
            info = await docker.images.inspect(image)
    except DOCKER_ERRORS:
        return ""
    return str(info.get("Id") or "")


async def remove(container: DockerContainer) -> None:
    """Force-remove a container (killing it if it runs); gone already, or a daemon that does
    not answer, is no error."""
    with contextlib.suppress(*DOCKER_ERRORS):
        await container.delete(force=True)


async def process_gone(pid: int) -> None:
    """Return once process ``pid`` has exited (at once where pidfds are not available)."""
    try:
        fd = os.pidfd_open(pid)
    except (AttributeError, OSError):  # gone already, or no pidfd: wait() alone will do
        return
    loop = asyncio.get_running_loop()
    gone: asyncio.Future[None] = loop.create_future()

    def readable() -> None:
        if not gone.done():
            gone.set_result(None)

    loop.add_reader(fd, readable)
    try:
        await gone
    finally:
        loop.remove_reader(fd)
        os.close(fd)
