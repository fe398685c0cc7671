"""P7: the embedded batch queue (SQLite): submit rate and drain rate of no-op function jobs.

Targets are absolute (≥ 2,000 jobs/s submitted, ≥ 1,000 jobs/s drained); each group still holds
a baseline from the same run, so the ratio shows what the queue costs:

- submit: ``await BatchQueue.submit(...)`` one job after the other (each durable when it
  returns), against a bare loop of one-row ``INSERT`` transactions into a SQLite file with the
  store's settings (WAL, ``synchronous=NORMAL``);
- drain: no-op function jobs, submitted while the compute environment is disabled (untimed),
  then timed from enabling it until the last is SUCCEEDED: claim, RUNNING, the handler in a
  warm forked worker of the runner's engine, the result and log stored, the job settled.  The
  baseline is a ``ProcessPoolExecutor`` with as many processes as the runner runs jobs at once,
  mapping the same no-op over the same events.
"""

from __future__ import annotations

import asyncio
import concurrent.futures as cf
import sqlite3
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from runtime import Engine, FunctionConfig
from runtime.batch import (
    BatchQueue,
    CreateJobQueueRequest,
    RegisterJobDefinitionRequest,
    SubmitJobRequest,
    parse,
)
from runtime.config import BatchConfig

from ._support import EVENT, FUNCTIONS, noop, size

N_SUBMIT = size(5000, 200)
N_DRAIN = size(5000, 200)
ROUNDS = size(5, 1)
#: jobs at once: each no-op job asks for 1 vCPU
SLOTS = 8
QUEUE = "p7"


@pytest.fixture(scope="module")
def data_dir() -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix="warmstart-p7-") as path:
        yield Path(path)


@pytest.fixture(scope="module")
def queue(loop: asyncio.AbstractEventLoop, data_dir: Path) -> Iterator[BatchQueue]:
    engine = Engine()
    loop.run_until_complete(engine.start())
    code = str(FUNCTIONS / "noop")
    loop.run_until_complete(
        engine.register(FunctionConfig(name="noop", handler="app.handler", code=code))
    )
    config = BatchConfig(max_vcpus=SLOTS, memory_mib=SLOTS * 2048)
    batch = BatchQueue.open(engine, data_dir, config=config)
    store = batch.store
    store.create_job_queue(parse(CreateJobQueueRequest, {"jobQueueName": QUEUE, "priority": 1}), 0)
    definition = {
        "jobDefinitionName": "noop",
        "type": "container",
        "parameters": {"warmstart:function": "noop"},
    }
    store.register_job_definition(parse(RegisterJobDefinitionRequest, definition), 0)
    loop.run_until_complete(batch.start())
    yield batch
    loop.run_until_complete(batch.close())
    loop.run_until_complete(engine.close())


REQUEST = SubmitJobRequest(job_name="noop", job_queue=QUEUE, job_definition="noop")


# -- submit -----------------------------------------------------------------------------------


def _submit_rate(benchmark: Any, role: str, run_round: Any) -> None:
    benchmark.group = "P7-submit"
    benchmark.extra_info.update(figure="P7", role=role, ops_per_round=N_SUBMIT)
    benchmark.pedantic(run_round, rounds=ROUNDS, warmup_rounds=1)


def test_p7_submit_warmstart(
    benchmark: Any, loop: asyncio.AbstractEventLoop, queue: BatchQueue
) -> None:
    queue.runner.enabled = False  # only submitting here: nothing drains meanwhile

    async def submit_all() -> None:
        for _ in range(N_SUBMIT):
            await queue.submit(REQUEST, payload=EVENT)

    try:
        _submit_rate(benchmark, "warmstart", lambda: loop.run_until_complete(submit_all()))
    finally:
        _forget_runnable(queue)
        queue.runner.enabled = True


def test_p7_submit_bare_sqlite(benchmark: Any, data_dir: Path) -> None:
    db = sqlite3.connect(data_dir / "bare.sqlite3", isolation_level=None)
    db.execute("PRAGMA journal_mode = WAL")
    db.execute("PRAGMA synchronous = NORMAL")
    db.execute(
        "CREATE TABLE jobs (seq INTEGER PRIMARY KEY, id TEXT NOT NULL UNIQUE, name TEXT,"
        " status TEXT, created_at INTEGER, payload BLOB)"
    )

    def insert_all() -> None:
        for _ in range(N_SUBMIT):
            db.execute("BEGIN IMMEDIATE")
            db.execute(
                "INSERT INTO jobs (id, name, status, created_at, payload) VALUES (?, ?, ?, ?, ?)",
                (str(uuid.uuid4()), "noop", "RUNNABLE", int(time.time() * 1000), EVENT),
            )
            db.execute("COMMIT")

    try:
        _submit_rate(benchmark, "bare SQLite insert", insert_all)
    finally:
        db.close()


def _forget_runnable(queue: BatchQueue) -> None:
    """The submit benchmark's jobs are not for the drain benchmark: cancel them."""
    store = queue.store
    while True:
        page = store.list_jobs(job_queue=QUEUE, job_status="RUNNABLE", max_results=1000)
        if not page.items:
            return
        for job in page.items:
            store.cancel_job(job.job_id, "benchmark cleanup", time.time())


# -- drain ------------------------------------------------------------------------------------


def _drain_rate(benchmark: Any, role: str, run_round: Any, setup: Any = None) -> None:
    benchmark.group = "P7-drain"
    benchmark.extra_info.update(figure="P7", role=role, ops_per_round=N_DRAIN)
    benchmark.pedantic(run_round, setup=setup, rounds=ROUNDS, warmup_rounds=1)


def test_p7_drain_warmstart(
    benchmark: Any, loop: asyncio.AbstractEventLoop, queue: BatchQueue
) -> None:
    runner = queue.runner
    target = {"finished": 0}

    def setup() -> None:
        runner.enabled = False
        now = time.time()
        for _ in range(N_DRAIN):
            queue.store.submit_job(REQUEST, now, payload=EVENT)
        target["finished"] = runner.counts["finished"] + N_DRAIN

    async def drain() -> None:
        done = asyncio.Event()

        def check() -> None:
            if runner.counts["finished"] >= target["finished"]:
                done.set()

        runner.listeners.append(check)
        try:
            runner.enabled = True
            await done.wait()
        finally:
            runner.listeners.remove(check)

    _drain_rate(benchmark, "warmstart", lambda: loop.run_until_complete(drain()), setup)
    store = queue.store
    assert store.demand().jobs == 0
    assert not store.list_jobs(job_queue=QUEUE, job_status="RUNNING").items
    succeeded = store.list_jobs(job_queue=QUEUE, job_status="SUCCEEDED", max_results=1000)
    assert len(succeeded.items) >= min(N_DRAIN, 1000)
    assert runner.capacity.peak_vcpus <= SLOTS


def test_p7_drain_process_pool_executor(benchmark: Any) -> None:
    with cf.ProcessPoolExecutor(SLOTS) as pool:
        list(pool.map(noop, [EVENT] * SLOTS * 4))

        def run() -> None:
            list(pool.map(noop, [EVENT] * N_DRAIN))

        _drain_rate(benchmark, "ProcessPoolExecutor", run)
