"""The batch tests' shared setup."""

from __future__ import annotations

import pytest


@pytest.fixture(autouse=True)
def _aws(aws_env: None) -> None:
    """boto3 here never reads this machine's AWS configuration or instance metadata."""
