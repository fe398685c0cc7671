"""Fixtures the benchmarks share."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest

from runtime.loop import new_event_loop


@pytest.fixture(scope="module")
def loop() -> Iterator[asyncio.AbstractEventLoop]:
    """A uvloop loop per benchmark module; benchmarks drive it with run_until_complete."""
    loop = new_event_loop()
    yield loop
    loop.close()


@pytest.fixture(autouse=True, scope="session")
def own_data_dir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Benchmarks that start a service keep its durable store out of the user's data dir."""
    path = str(tmp_path_factory.mktemp("data"))
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("WARMSTART_DATA_DIR", path)
        yield path
