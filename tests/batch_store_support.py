"""A Batch job store with definition ``def`` and queue ``q``, and the moves of a job through it
(time always passed in)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from runtime.batch import (
    Claim,
    CreateJobQueueRequest,
    Finish,
    JobDetail,
    RegisterJobDefinitionRequest,
    SqliteStore,
    SubmitJobRequest,
    parse,
)


def make_store(path: Path, **options: Any) -> SqliteStore:
    """A store with definition ``def`` (one attempt) and queue ``q`` (priority 1)."""
    store = SqliteStore(path, **options)
    define(store, "def")
    make_queue(store, "q", priority=1)
    return store


def define(store: SqliteStore, name: str, **fields: Any) -> str:
    data = {
        "jobDefinitionName": name,
        "type": "container",
        "containerProperties": {"image": "busybox", "command": ["true"]},
        **fields,
    }
    request = parse(RegisterJobDefinitionRequest, data)
    return store.register_job_definition(request, 0.0).job_definition_arn


def make_queue(store: SqliteStore, name: str, priority: int = 1, **fields: Any) -> None:
    data = {"jobQueueName": name, "priority": priority, **fields}
    store.create_job_queue(parse(CreateJobQueueRequest, data), 0.0)


def submit(
    store: SqliteStore, now: float = 1.0, payload: bytes | None = None, **fields: Any
) -> str:
    data = {"jobName": "job", "jobQueue": "q", "jobDefinition": "def", **fields}
    return store.submit_job(parse(SubmitJobRequest, data), now, payload=payload).job_id


def job(store: SqliteStore, job_id: str) -> JobDetail:
    (detail,) = store.describe_jobs([job_id])
    return detail


def status(store: SqliteStore, *job_ids: str) -> list[str]:
    by_id = {d.job_id: d.status for d in store.describe_jobs(list(job_ids))}
    return [by_id[i] for i in job_ids]


def run(store: SqliteStore, claim: Claim, exit_code: int | None, now: float = 10.0) -> Finish:
    """Start a claimed attempt at ``now`` and end it with ``exit_code`` one second later."""
    store.started(claim.job_id, now, claim.attempt)
    return store.finished(claim.job_id, claim.attempt, exit_code, None, None, now + 1)


def run_next(store: SqliteStore, exit_code: int | None, now: float = 10.0) -> Claim:
    """Claim the next job and run it to ``exit_code``."""
    (claim,) = store.claim("n1", now, 1)
    run(store, claim, exit_code, now)
    return claim
