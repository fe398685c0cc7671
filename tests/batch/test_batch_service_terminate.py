"""TerminateJob through a real ``warmstart serve`` of a job that runs on that service's own
runner: boto3's ``batch`` client asks, the attempt gets SIGTERM, then SIGKILL once the kill
grace has passed, and the job ends FAILED with the caller's reason, its process gone."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from batch_serve_support import (
    KILL_GRACE_S,
    QUEUE,
    REASON,
    exit_code,
    job_in,
    served,
    submit_function,
    terminate_and_wait,
    write_config,
)
from helpers import wait_gone
from service_support import wait_for

pytestmark = pytest.mark.slow


@pytest.fixture
def batch_client(tmp_path: Path) -> Iterator[Any]:
    """boto3's batch client of a ``warmstart serve`` on ``tmp_path``'s config."""
    with served(write_config(tmp_path)) as client:
        yield client


@pytest.mark.parametrize(
    ("function", "code", "killed"),
    [
        pytest.param("sleep", 143, False, id="sigterm"),
        pytest.param("trap", 42, False, id="graceful-exit"),
        pytest.param("stubborn", 137, True, id="sigkill-after-the-grace"),
    ],
)
def test_terminate_a_running_function_job(
    batch_client: Any, tmp_path: Path, function: str, code: int, killed: bool
) -> None:
    ready = tmp_path / "ready"
    job_id = submit_function(batch_client, function, {"ready": str(ready)})
    wait_for(lambda: job_in(batch_client, job_id, ("RUNNING",)), 20, "RUNNING")
    pid = int(wait_for(lambda: ready.read_text() if ready.exists() else None, 10, "the handler"))

    job, took = terminate_and_wait(batch_client, job_id, within=KILL_GRACE_S + 10)

    assert (job["status"], job["statusReason"]) == ("FAILED", REASON)
    assert len(job["attempts"]) == 1
    assert exit_code(job) == code
    if killed:
        assert took >= KILL_GRACE_S  # SIGKILL waits for the grace to pass
    wait_gone(pid, timeout=5)


def test_deleting_the_queue_stops_its_running_job(batch_client: Any, tmp_path: Path) -> None:
    ready = tmp_path / "ready"
    job_id = submit_function(batch_client, "sleep", {"ready": str(ready)})
    wait_for(lambda: job_in(batch_client, job_id, ("RUNNING",)), 20, "RUNNING")
    pid = int(wait_for(lambda: ready.read_text() if ready.exists() else None, 10, "the handler"))
    batch_client.update_job_queue(jobQueue=QUEUE, state="DISABLED")

    batch_client.delete_job_queue(jobQueue=QUEUE)

    job = wait_for(lambda: job_in(batch_client, job_id, ("FAILED",)), 10, "the end")
    assert job["statusReason"] == "Job queue deleted"
    assert exit_code(job) == 143
    wait_gone(pid, timeout=5)
