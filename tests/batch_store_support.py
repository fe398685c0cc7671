"""A Batch job store with definition ``def`` and queue ``q``, and the moves of a job through it
(time always passed in).

The store tests run against both implementations: :func:`open_store` gives the SQLite store
(``sqlite``) or the Redis store on the session's server with a key prefix of the test's own
(``redis``); a test module's ``store`` fixture is parametrized over :data:`BACKENDS`.
"""

from __future__ import annotations

from collections.abc import Generator
from pathlib import Path
from typing import Any, Union

import pytest

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
from runtime.batch.store.redis_store import RedisStore

#: either store: the suite's tests call only what both have
AnyStore = Union[SqliteStore, RedisStore]  # noqa: UP007 (a runtime alias on Python 3.10)
BACKENDS = ("sqlite", "redis")


def make_store(path: Path, **options: Any) -> SqliteStore:
    """A store with definition ``def`` (one attempt) and queue ``q`` (priority 1)."""
    store = SqliteStore(path, **options)
    prepare(store)
    return store


def make_redis_store(url: str, prefix: str, **options: Any) -> RedisStore:
    """The Redis store at ``url`` under ``prefix``, with ``def`` and ``q`` like make_store."""
    store = RedisStore(url, prefix=prefix, **options)
    prepare(store)
    return store


def prepare(store: AnyStore) -> None:
    define(store, "def")
    make_queue(store, "q", priority=1)


def open_store(
    backend: str, request: pytest.FixtureRequest, tmp_path: Path, **options: Any
) -> Generator[AnyStore, None, None]:
    """A prepared store of ``backend`` for one test, closed after it (the Redis keys are the
    ``redis_store`` fixture's to delete)."""
    store: AnyStore
    if backend == "sqlite":
        store = make_store(tmp_path / "batch.sqlite3", **options)
    else:
        server = request.getfixturevalue("redis_store")
        store = make_redis_store(server.url, server.prefix, **options)
    try:
        yield store
    finally:
        store.close()


def reopen(store: AnyStore) -> AnyStore:
    """A second store on the same data: another connection to the file, or another node's
    store on the same Redis and prefix (close it after use)."""
    if isinstance(store, SqliteStore):
        return SqliteStore(store.path)
    return RedisStore(store.url, prefix=store.prefix)


def define(store: AnyStore, name: str, **fields: Any) -> str:
    data = {
        "jobDefinitionName": name,
        "type": "container",
        "containerProperties": {"image": "busybox", "command": ["true"]},
        **fields,
    }
    request = parse(RegisterJobDefinitionRequest, data)
    return store.register_job_definition(request, 0.0).job_definition_arn


def make_queue(store: AnyStore, name: str, priority: int = 1, **fields: Any) -> None:
    data = {"jobQueueName": name, "priority": priority, **fields}
    store.create_job_queue(parse(CreateJobQueueRequest, data), 0.0)


def submit(store: AnyStore, now: float = 1.0, payload: bytes | None = None, **fields: Any) -> str:
    data = {"jobName": "job", "jobQueue": "q", "jobDefinition": "def", **fields}
    return store.submit_job(parse(SubmitJobRequest, data), now, payload=payload).job_id


def job(store: AnyStore, job_id: str) -> JobDetail:
    (detail,) = store.describe_jobs([job_id])
    return detail


def status(store: AnyStore, *job_ids: str) -> list[str]:
    by_id = {d.job_id: d.status for d in store.describe_jobs(list(job_ids))}
    return [by_id[i] for i in job_ids]


def run(store: AnyStore, claim: Claim, exit_code: int | None, now: float = 10.0) -> Finish:
    """Start a claimed attempt at ``now`` and end it with ``exit_code`` one second later."""
    store.started(claim.job_id, now, claim.attempt)
    return store.finished(claim.job_id, claim.attempt, exit_code, None, None, now + 1)


def run_next(store: AnyStore, exit_code: int | None, now: float = 10.0) -> Claim:
    """Claim the next job and run it to ``exit_code``."""
    (claim,) = store.claim("n1", now, 1)
    run(store, claim, exit_code, now)
    return claim
