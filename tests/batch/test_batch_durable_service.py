"""Accepted means durable: a real ``warmstart serve`` killed with SIGKILL while jobs run and events
wait loses nothing.  After a restart on the same data directory, every job reaches a final state
as AWS Batch's rules say (the attempt the dead runner held counts as failed), none runs past its
attempts, and every accepted event is delivered."""

from __future__ import annotations

import collections
import os
import textwrap
from pathlib import Path
from typing import Any

import pytest
from service_support import (
    ServeProcess,
    agents_of,
    aws_client,
    create_queue,
    serve_config,
    wait_for,
)

pytestmark = pytest.mark.slow

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


FUNCTION_TABLES = """
[functions.work]
handler = "app.work"
code = "{code}"
timeout_s = 60
environment = { LEDGER = "{ledger}" }

[functions.event]
handler = "app.event"
code = "{code}"
environment = { LEDGER = "{ledger}" }
"""


def _config(tmp_path: Path) -> Path:
    functions = FUNCTION_TABLES.replace("{ledger}", str(tmp_path / "ledger.txt"))
    return serve_config(tmp_path, {"app.py": APP}, "max_vcpus = 2\nkill_grace_s = 1\n", functions)


def _clients(url: str) -> tuple[Any, Any]:
    return aws_client("batch", url), aws_client("lambda", url)


def _ledger(tmp_path: Path) -> list[str]:
    path = tmp_path / "ledger.txt"
    return path.read_text().splitlines() if path.exists() else []


def _submit_all(batch: Any, lam: Any) -> dict[str, str]:
    """Jobs by role: one that may run once, long and short ones with two attempts; 3 events."""
    batch.register_job_definition(
        jobDefinitionName="work",
        type="container",
        parameters={"warmstart:function": "work", "s": "0"},
        retryStrategy={"attempts": 2},
    )
    create_queue(batch)
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

        wait_for(both_running, 20, "the two long jobs to run")
        pid = first.pid
        orphans = agents_of(pid)
        first.proc.kill()  # SIGKILL: no shutdown, no chance to record anything
        first.proc.wait(10)
        wait_for(
            lambda: not any(os.path.exists(f"/proc/{p}") for p in orphans), 5, "workers to die"
        )
    finally:
        first.close()

    second = ServeProcess(config)
    try:
        batch, _ = _clients(second.url)

        def all_final() -> bool:
            found = batch.describe_jobs(jobs=list(jobs.values()))["jobs"]
            return len(found) == len(jobs) and all(job["status"] in FINAL for job in found)

        wait_for(all_final, 40, "every job to end")
        found = {
            job["jobName"]: job for job in batch.describe_jobs(jobs=list(jobs.values()))["jobs"]
        }
        wait_for(lambda: sum(x.startswith("event") for x in _ledger(tmp_path)) >= 3, 20, "events")
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
