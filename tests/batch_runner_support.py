"""A job runner over a real engine and a real SQLite file: the handlers of ``jobs.py``, a small
compute environment, and waits on a job's progress."""

from __future__ import annotations

import asyncio
import textwrap
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest

from runtime import Engine, FunctionConfig, PoolConfig
from runtime.asyncinvoke.store import SqliteEventStore
from runtime.batch import (
    BatchQueue,
    CreateJobQueueRequest,
    JobDetail,
    JobHandle,
    RegisterJobDefinitionRequest,
    SqliteStore,
    parse,
)
from runtime.config import BatchConfig

JOBS = textwrap.dedent(
    """
    import json, os, signal, time

    def env(event, context):
        return context.client_context.env

    def echo(event, context):
        print("echo", json.dumps(event, sort_keys=True))
        return event

    def fail(event, context):
        raise ValueError(f"bad value {event.get('n')}")

    def exit_with(event, context):
        # exits with codes[attempt - 1] (0: returns); every attempt number is recorded
        attempt = int(context.client_context.env["AWS_BATCH_JOB_ATTEMPT"])
        with open(event["path"], "a") as f:
            f.write(f"{attempt}\\n")
        code = event["codes"][attempt - 1]
        if code:
            os._exit(code)
        return {"attempt": attempt}

    def record(event, context):
        index = context.client_context.env.get("AWS_BATCH_JOB_ARRAY_INDEX", "-")
        with open(event["path"], "a") as f:
            f.write(f"start {index} {time.time()}\\n")
        time.sleep(event.get("s", 0))
        with open(event["path"], "a") as f:
            f.write(f"end {index} {time.time()}\\n")
        return int(index) if index != "-" else None

    def sleep(event, context):
        time.sleep(event["s"])
        return os.getpid()

    def trap(event, context):
        def on_term(signum, frame):
            with open(event["marker"], "w") as f:
                f.write("SIGTERM")
            os._exit(42)
        signal.signal(signal.SIGTERM, on_term)
        with open(event["ready"], "w") as f:
            f.write("trapping")
        time.sleep(30)

    def stubborn(event, context):
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        with open(event["ready"], "w") as f:
            f.write("ignoring")
        time.sleep(30)

    def first_hangs(event, context):
        attempt = int(context.client_context.env["AWS_BATCH_JOB_ATTEMPT"])
        if attempt == 1:
            time.sleep(30)
        return {"attempt": attempt}
    """
)
QUEUE = "q"


def write_jobs(tmp_path: Path) -> str:
    code = tmp_path / "code"
    code.mkdir(exist_ok=True)
    (code / "jobs.py").write_text(JOBS)
    return str(code)


def small_config(**fields: Any) -> BatchConfig:
    """A small compute environment, a short kill grace, attempt timeouts at 1/100."""
    values: dict[str, Any] = {
        "max_vcpus": 4,
        "memory_mib": 64 * 1024,
        "kill_grace_s": 0.4,
        "timeout_scale": 0.01,
    }
    return BatchConfig(**{**values, **fields})


@asynccontextmanager
async def batch(
    tmp_path: Path,
    *,
    config: BatchConfig | None = None,
    engine: Engine | None = None,
    pool: PoolConfig | None = None,
    **options: Any,
) -> AsyncIterator[BatchQueue]:
    """An engine (unless given) and a started queue on ``tmp_path/batch.sqlite3`` with the job
    queue ``q``; ``options`` go to BatchQueue (node_id, clock, poll_s, ...)."""
    async with _engine(engine, pool) as eng:
        store = SqliteStore(tmp_path / "batch.sqlite3")
        if not store.describe_job_queues([QUEUE]).items:
            store.create_job_queue(
                parse(CreateJobQueueRequest, {"jobQueueName": QUEUE, "priority": 1}), 0.0
            )
        options.setdefault("poll_s", 0.05)
        options.setdefault("heartbeat_s", 0.2)
        events = SqliteEventStore(store.path)
        queue = BatchQueue(
            eng, store, events, config=config or small_config(), own_store=True, **options
        )
        async with queue:
            yield queue


@asynccontextmanager
async def _engine(engine: Engine | None, pool: PoolConfig | None) -> AsyncIterator[Engine]:
    if engine is not None:
        yield engine
        return
    async with Engine(pool) as made:
        yield made


async def function(queue: BatchQueue, tmp_path: Path, handler: str, **fields: Any) -> str:
    """Register ``jobs.<handler>`` as function ``handler`` (once) and a job definition of the
    same name that runs it; returns the definition's name."""
    engine = queue.engine
    if handler not in {f.name for f in engine.functions()}:
        code = write_jobs(tmp_path)
        await engine.register(FunctionConfig(name=handler, handler=f"jobs.{handler}", code=code))
    parameters = {"warmstart:function": handler, **fields.pop("parameters", {})}
    data = {
        "jobDefinitionName": handler,
        "type": "container",
        "parameters": parameters,
        **fields,
    }
    queue.store.register_job_definition(parse(RegisterJobDefinitionRequest, data), 0.0)
    return handler


async def submit(
    queue: BatchQueue, definition: str, payload: Any = None, **fields: Any
) -> JobHandle:
    request = {"jobName": "job", "jobQueue": QUEUE, "jobDefinition": definition, **fields}
    return await queue.submit(request, payload=payload)


async def finished(*handles: JobHandle, timeout: float = 15.0) -> list[JobDetail]:
    return list(await asyncio.gather(*(h.wait(timeout) for h in handles)))


async def status_is(handle: JobHandle, status: str, timeout: float = 10.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while (current := await handle.status()) != status:
        if loop.time() > deadline:
            pytest.fail(f"{handle.job_id} is {current}, not {status}, after {timeout} s")
        await asyncio.sleep(0.02)


async def file_has(path: Path, timeout: float = 10.0) -> str:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not (text := _read(path)):
        if loop.time() > deadline:
            pytest.fail(f"{path} was not written within {timeout} s")
        await asyncio.sleep(0.02)
    return text


def _read(path: Path) -> str:
    """A small local file, or '' while it does not exist."""
    try:
        return path.read_text()
    except FileNotFoundError:
        return ""


def retries(attempts: int, *rules_: dict[str, str]) -> dict[str, Any]:
    strategy: dict[str, Any] = {"attempts": attempts}
    if rules_:
        strategy["evaluateOnExit"] = list(rules_)
    return {"retryStrategy": strategy}


def exit_code(detail: JobDetail, attempt: int = -1) -> int | None:
    container = detail.attempts[attempt].container
    assert container is not None
    return container.exit_code


def container_reason(detail: JobDetail, attempt: int = -1) -> str | None:
    container = detail.attempts[attempt].container
    assert container is not None
    return container.reason
