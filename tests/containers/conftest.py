"""The container backend's tests: each one needs the Docker Engine and the test image (it skips
without them, and fails under CI), and must leave no container behind."""

from __future__ import annotations

import pytest
from docker_support import Probe


@pytest.fixture(autouse=True)
def _docker(docker_engine: Probe) -> Probe:
    """Every test here runs against the engine ``docker_engine`` probed."""
    return docker_engine
