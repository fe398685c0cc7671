"""TerminateJob through a real ``warmstart serve`` of a job that runs on that service's own
runner: boto3's ``batch`` client asks, the attempt gets SIGTERM, then SIGKILL once the kill
grace has passed, and the job ends FAILED with the caller's reason, its process gone.

The helpers at the top are shared by the container variant
(``test_batch_service_terminate_container``).
"""

from __future__ import annotations

import contextlib
import textwrap
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from helpers import wait_gone
from service_support import ServeProcess, aws_client, aws_env  # noqa: F401 - aws_env: fixture

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("aws_env")]

#: SIGKILL follows SIGTERM this much later
KILL_GRACE_S = 1.0
QUEUE = "q"
REASON = "stop it"

JOBS = textwrap.dedent(
    """
    import os, signal, time

    def _ready(event):
        with open(event["ready"], "w") as f:
            f.write(str(os.getpid()))

    def sleep(event, context):
        _ready(event)
        time.sleep(60)

    def trap(event, context):
        signal.signal(signal.SIGTERM, lambda signum, frame: os._exit(42))
        _ready(event)
        time.sleep(60)

    def stubborn(event, context):
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        _ready(event)
        time.sleep(60)
    """
)


def write_config(tmp_path: Path, extra: str = "") -> Path:
    """A service config: the batch queue in ``tmp_path``, a short kill grace, the functions
    ``sleep``, ``trap`` and ``stubborn``."""
    code = tmp_path / "code"
    code.mkdir()
    (code / "jobs.py").write_text(JOBS)
    functions = "".join(
        f'\n[functions.{name}]\nhandler = "jobs.{name}"\ncode = "{code}"\n'
        for name in ("sleep", "trap", "stubborn")
    )
    config = tmp_path / "warmstart.toml"
    config.write_text(
        textwrap.dedent(
            f"""
            [service]
            shutdown_timeout_s = 5

            [batch]
            data_dir = "{tmp_path / "data"}"
            max_vcpus = 4
            kill_grace_s = {KILL_GRACE_S}
            """
        )
        + extra
        + functions
    )
    return config


@contextlib.contextmanager
def served(config: Path) -> Iterator[Any]:
    """``warmstart serve`` on ``config`` and a batch client of it, with the job queue ``q``;
    on exit the service stops and must leave no worker behind."""
    service = ServeProcess(config)
    try:
        client = aws_client("batch", service.url)
        try:
            client.create_job_queue(
                jobQueueName=QUEUE,
                priority=1,
                computeEnvironmentOrder=[{"order": 1, "computeEnvironment": "local"}],
            )
            yield client
        finally:
            client.close()
    finally:
        service.close()


@pytest.fixture
def batch_client(tmp_path: Path) -> Iterator[Any]:
    """boto3's batch client of a ``warmstart serve`` on ``tmp_path``'s config."""
    with served(write_config(tmp_path)) as client:
        yield client


def wait_for(condition: Callable[[], Any], within: float, what: str) -> Any:
    """``condition()``'s first true value, polled; fails after ``within`` seconds."""
    deadline = time.monotonic() + within
    while not (found := condition()):
        assert time.monotonic() < deadline, f"timed out after {within} s waiting for {what}"
        time.sleep(0.05)
    return found


def job_in(client: Any, job_id: str, statuses: tuple[str, ...]) -> dict[str, Any] | None:
    """The job's description once its status is one of ``statuses``."""
    (job,) = client.describe_jobs(jobs=[job_id])["jobs"]
    return job if job["status"] in statuses else None


def submit_function(client: Any, function: str, event: dict[str, Any]) -> str:
    """A job of ``function``; its parameters are the handler's event."""
    client.register_job_definition(
        jobDefinitionName=function,
        type="container",
        parameters={"warmstart:function": function},
    )
    return str(
        client.submit_job(
            jobName=function, jobQueue=QUEUE, jobDefinition=function, parameters=event
        )["jobId"]
    )


def terminate_and_wait(client: Any, job_id: str, within: float) -> tuple[dict[str, Any], float]:
    """TerminateJob with :data:`REASON`; the job once it has ended, and how long that took."""
    t0 = time.monotonic()
    answer = client.terminate_job(jobId=job_id, reason=REASON)
    assert answer["ResponseMetadata"]["HTTPStatusCode"] == 200
    job = wait_for(lambda: job_in(client, job_id, ("SUCCEEDED", "FAILED")), within, "the end")
    return job, time.monotonic() - t0


def exit_code(job: dict[str, Any]) -> int | None:
    code: int | None = job["attempts"][-1]["container"].get("exitCode")
    return code


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
    pid = int(wait_for(lambda: ready.exists() and ready.read_text(), 10, "the handler"))

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
    pid = int(wait_for(lambda: ready.exists() and ready.read_text(), 10, "the handler"))
    batch_client.update_job_queue(jobQueue=QUEUE, state="DISABLED")

    batch_client.delete_job_queue(jobQueue=QUEUE)

    job = wait_for(lambda: job_in(batch_client, job_id, ("FAILED",)), 10, "the end")
    assert job["statusReason"] == "Job queue deleted"
    assert exit_code(job) == 143
    wait_gone(pid, timeout=5)
