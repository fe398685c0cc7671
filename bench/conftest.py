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
