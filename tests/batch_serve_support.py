"""TerminateJob against a real ``warmstart serve``: its config with the handlers ``sleep``,
``trap`` and ``stubborn``, a batch client with the job queue ``q``, and waits on a job's end."""

from __future__ import annotations

import contextlib
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from service_support import ServeProcess, aws_client, create_queue, serve_config, wait_for

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
    functions = "".join(
        f'\n[functions.{name}]\nhandler = "jobs.{name}"\ncode = "{{code}}"\n'
        for name in ("sleep", "trap", "stubborn")
    )
    batch = f"max_vcpus = 4\nkill_grace_s = {KILL_GRACE_S}\n{extra}"
    return serve_config(tmp_path, {"jobs.py": JOBS}, batch, functions)


@contextlib.contextmanager
def served(config: Path) -> Iterator[Any]:
    """``warmstart serve`` on ``config`` and a batch client of it, with the job queue ``q``;
    on exit the service stops and must leave no worker behind."""
    service = ServeProcess(config)
    try:
        client = aws_client("batch", service.url)
        try:
            create_queue(client, QUEUE)
            yield client
        finally:
            client.close()
    finally:
        service.close()


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
