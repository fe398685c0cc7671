"""The CLI tests: boto3 never reads this machine's AWS configuration; a module's
``config_path`` served by one real ``warmstart serve``."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from service_support import ServeProcess


@pytest.fixture(scope="module")
def server(config_path: Path) -> Iterator[ServeProcess]:
    """``warmstart serve`` on the module's ``config_path`` fixture, for all its tests."""
    serve = ServeProcess(config_path)
    try:
        yield serve
    finally:
        serve.close()


@pytest.fixture(autouse=True)
def _aws(aws_env: None) -> None:
    """boto3 here never reads this machine's AWS configuration or instance metadata."""
