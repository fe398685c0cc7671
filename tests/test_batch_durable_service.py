"""Accepted means durable: a real ``warmstart serve`` killed with SIGKILL while jobs run and events
wait loses nothing.  After a restart on the same data directory, every job reaches a final state
as AWS Batch's rules say (the attempt the dead runner held counts as failed), none runs past its
attempts, and every accepted event is delivered."""

from __future__ import annotations

import collections
import os
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest
from service_support import ServeProcess, agents_of, aws_client, aws_env  # noqa: F401 - aws_env: fixture

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("aws_env")]

APP = textwrap.dedent(
    """
    import os, time

    def _note(line):
        with open(os.environ["LEDGER"], "a") as f:
            f.write(line + "\\n")

    def work(event, context):
        env = context.client_context.env
        _note(f"job {env['AWS_BATCH_JOB_ID']} {env['AWS_BATCH_JOB_ATTEMPT']}")
        time.sleep(float(event.get("s", "0")))
        return "done"

    def event(event, context):
        _note(f"event {event['n']}")
        return event["n"]
    """
)
FINAL = ("SUCCEEDED", "FAILED")


def _config(tmp_path: Path) -> Path:
    code = tmp_path / "code"
    code.mkdir()
    (code / "app.py").write_text(APP)
    ledger = tmp_path / "ledger.txt"
    config = tmp_path / "warmstart.toml"
    config.write_text(
        textwrap.dedent(
            f"""
            [service]
            shutdown_timeout_s = 5

            [batch]
            data_dir = "{tmp_path / "data"}"
            max_vcpus = 2
            kill_grace_s = 1

            [functions.work]
            handler = "app.work"
            code = "{code}"
            timeout_s = 60
            environment = {{ LEDGER = "{ledger}" }}

            [functions.event]
            handler = "app.event"
            code = "{code}"
            environment = {{ LEDGER = "{ledger}" }}
            """
        )
    )
    return config


def _clients(url: str) -> tuple[Any, Any]:
    return aws_client("batch", url), aws_client("lambda", url)


def _ledger(tmp_path: Path) -> list[str]:
    path = tmp_path / "ledger.txt"
    return path.read_text().splitlines() if path.exists() else []


def _wait(condition: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


def _submit_all(batch: Any, lam: Any) -> dict[str, str]:
    """Jobs by role: one that may run once, long and short ones with two attempts; 3 events."""
    batch.register_job_definition(
        jobDefinitionName="work",
        type="container",
        parameters={"warmstart:function": "work", "s": "0"},
        retryStrategy={"attempts": 2},
    )
    batch.create_job_queue(
        jobQueueName="q",
        priority=1,
        computeEnvironmentOrder=[{"order": 1, "computeEnvironment": "local"}],
    )
    jobs: dict[str, str] = {}

    def submit(name: str, seconds: str, **extra: Any) -> None:
        jobs[name] = batch.submit_job(
            jobName=name, jobQueue="q", jobDefinition="work", parameters={"s": seconds}, **extra
        )["jobId"]

    submit("once", "4", retryStrategy={"attempts": 1})
    submit("long", "4")
    for i in range(4):
        submit(f"short{i}", "0")
    for n in range(3):
        lam.invoke(FunctionName="event", InvocationType="Event", Payload=f'{{"n": {n}}}'.encode())
    return jobs


def test_sigkill_while_jobs_run_loses_nothing(tmp_path: Path) -> None:
    config = _config(tmp_path)
    first = ServeProcess(config)
    try:
        batch, lam = _clients(first.url)
        jobs = _submit_all(batch, lam)

        def both_running() -> bool:
            found = batch.describe_jobs(jobs=[jobs["once"], jobs["long"]])["jobs"]
            started = {line.split()[1] for line in _ledger(tmp_path) if line.startswith("job")}
            running = all(job["status"] == "RUNNING" for job in found)
            return running and {jobs["once"], jobs["long"]} <= started

        _wait(both_running, 20, "the two long jobs to run")
        pid = first.pid
        orphans = agents_of(pid)
        first.proc.kill()  # SIGKILL: no shutdown, no chance to record anything
        first.proc.wait(10)
        _wait(lambda: not any(os.path.exists(f"/proc/{p}") for p in orphans), 5, "workers to die")
    finally:
        first.close()

    second = ServeProcess(config)
    try:
        batch, _ = _clients(second.url)

        def all_final() -> bool:
            found = batch.describe_jobs(jobs=list(jobs.values()))["jobs"]
            return len(found) == len(jobs) and all(job["status"] in FINAL for job in found)

        _wait(all_final, 40, "every job to end")
        found = {
            job["jobName"]: job for job in batch.describe_jobs(jobs=list(jobs.values()))["jobs"]
        }
        _wait(lambda: sum(x.startswith("event") for x in _ledger(tmp_path)) >= 3, 20, "events")
        code, _ = second.stop()
        assert code == 0
    finally:
        second.close()

    once, long = found["once"], found["long"]
    assert once["status"] == "FAILED"  # its one attempt died with the runner
    assert len(once["attempts"]) == 1
    assert "terminated" in once["attempts"][0]["statusReason"]
    assert long["status"] == "SUCCEEDED"  # the dead attempt counted, the second one ran
    assert len(long["attempts"]) == 2
    assert "terminated" in long["attempts"][0]["statusReason"]
    for i in range(4):
        assert found[f"short{i}"]["status"] == "SUCCEEDED"

    runs = collections.Counter(
        line.split()[1] for line in _ledger(tmp_path) if line.startswith("job")
    )
    for name, job_id in jobs.items():
        assert runs[job_id] == len(found[name]["attempts"]), name  # no run went unrecorded
        assert runs[job_id] <= (1 if name == "once" else 2), name  # none past its attempts
    events = collections.Counter(line for line in _ledger(tmp_path) if line.startswith("event"))
    assert set(events) == {"event 0", "event 1", "event 2"}  # at least once, none lost
