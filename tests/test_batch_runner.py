"""The job runner on function jobs: real worker processes, a real SQLite file.

Success, handler errors and crashes as exit codes; retries by evaluateOnExit with the attempt
number seen by the handler; array jobs with their index; SEQUENTIAL arrays; dependsOn.

The helpers at the top are shared by the other ``test_batch_runner*`` and ``test_batch_queue*``
tests.
"""

from __future__ import annotations

import asyncio
import textwrap
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import orjson
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
    rules,
)
from runtime.batch.executors import crash_code
from runtime.config import BatchConfig

# -- shared helpers ---------------------------------------------------------------------------

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


# -- outcomes ---------------------------------------------------------------------------------


def test_a_function_job_runs_its_handler_with_the_event(arun: Any, tmp_path: Path) -> None:
    async def main() -> None:
        async with batch(tmp_path) as queue:
            definition = await function(queue, tmp_path, "echo")
            handle = await submit(queue, definition, {"n": 1})
            (detail,) = await finished(handle)
            assert detail.status == "SUCCEEDED"
            assert exit_code(detail) == 0
            assert detail.attempts[0].status_reason == rules.ESSENTIAL_EXITED
            assert orjson.loads(await handle.result() or b"") == {"n": 1}
            log = (await handle.log()).decode()
            assert log.startswith("START RequestId: ")
            assert 'echo {"n": 1}\n' in log
            assert "\nREPORT RequestId: " in log
            assert queue.runner.running == 0

    arun(main())


def test_the_event_defaults_to_the_job_parameters(arun: Any, tmp_path: Path) -> None:
    async def main() -> None:
        async with batch(tmp_path) as queue:
            definition = await function(queue, tmp_path, "echo", parameters={"a": "1"})
            handle = await submit(queue, definition, parameters={"b": "2"})
            (detail,) = await finished(handle)
            assert detail.status == "SUCCEEDED"
            assert orjson.loads(await handle.result() or b"") == {"a": "1", "b": "2"}

    arun(main())


def test_the_handler_sees_batch_variables_in_its_client_context(arun: Any, tmp_path: Path) -> None:
    async def main() -> None:
        async with batch(tmp_path) as queue:
            definition = await function(queue, tmp_path, "env")
            handle = await submit(
                queue,
                definition,
                containerOverrides={"environment": [{"name": "COLOR", "value": "blue"}]},
            )
            (detail,) = await finished(handle)
            assert detail.status == "SUCCEEDED"
            env = orjson.loads(await handle.result() or b"")
            assert env == {
                "AWS_BATCH_JOB_ID": handle.job_id,
                "AWS_BATCH_JOB_ATTEMPT": "1",
                "AWS_BATCH_JQ_NAME": QUEUE,
                "AWS_BATCH_CE_NAME": "warmstart",
                "COLOR": "blue",
            }

    arun(main())


def test_a_handler_error_is_exit_code_1_with_its_type_and_message(
    arun: Any, tmp_path: Path
) -> None:
    async def main() -> None:
        async with batch(tmp_path) as queue:
            definition = await function(queue, tmp_path, "fail")
            handle = await submit(queue, definition, {"n": 7})
            (detail,) = await finished(handle)
            assert detail.status == "FAILED"
            assert exit_code(detail) == 1
            assert container_reason(detail) == "ValueError: bad value 7"
            assert detail.status_reason == rules.ESSENTIAL_EXITED
            error = orjson.loads(await handle.result() or b"")
            assert error["errorType"] == "ValueError"
            assert "Traceback" in (await handle.log()).decode()

    arun(main())


def test_a_crash_is_its_exit_code(arun: Any, tmp_path: Path) -> None:
    async def main() -> None:
        async with batch(tmp_path) as queue:
            definition = await function(queue, tmp_path, "exit_with")
            path = str(tmp_path / "attempts")
            handle = await submit(queue, definition, {"codes": [3], "path": path})
            (detail,) = await finished(handle)
            assert detail.status == "FAILED"
            assert exit_code(detail) == 3
            assert container_reason(detail) is None
            assert len(detail.attempts) == 1

    arun(main())


@pytest.mark.parametrize(
    ("message", "code"),
    [
        ("RequestId: r Error: Runtime exited with error: exit status 3", 3),
        ("RequestId: r Error: Runtime exited with error: signal: killed", 137),
        ("RequestId: r Error: Runtime exited with error: signal: terminated", 143),
        ("RequestId: r Error: Runtime exited with error: signal: segmentation fault", 139),
        ("RequestId: r Error: Runtime exited with error: signal: SIGUSR1", 138),
        ("something else", 1),
    ],
)
def test_crash_codes(message: str, code: int) -> None:
    assert crash_code(message) == code


# -- retries ----------------------------------------------------------------------------------


def test_retries_follow_evaluate_on_exit_and_the_handler_sees_each_attempt(
    arun: Any, tmp_path: Path
) -> None:
    async def main() -> None:
        async with batch(tmp_path) as queue:
            strategy = retries(
                3, {"onExitCode": "3", "action": "RETRY"}, {"onExitCode": "*", "action": "EXIT"}
            )
            definition = await function(queue, tmp_path, "exit_with", **strategy)
            again, stops = tmp_path / "again", tmp_path / "stops"
            handles = [
                await submit(queue, definition, {"codes": [3, 3, 0], "path": str(again)}),
                await submit(queue, definition, {"codes": [3, 4, 0], "path": str(stops)}),
            ]
            first, second = await finished(*handles)
            assert first.status == "SUCCEEDED"
            assert [exit_code(first, i) for i in range(3)] == [3, 3, 0]
            assert again.read_text().split() == ["1", "2", "3"]
            assert orjson.loads(await handles[0].result() or b"") == {"attempt": 3}
            assert second.status == "FAILED"
            assert [exit_code(second, i) for i in range(2)] == [3, 4]
            assert stops.read_text().split() == ["1", "2"]

    arun(main())


def test_a_handler_error_is_retried_while_attempts_remain(arun: Any, tmp_path: Path) -> None:
    async def main() -> None:
        async with batch(tmp_path) as queue:
            definition = await function(queue, tmp_path, "fail", **retries(2))
            (detail,) = await finished(await submit(queue, definition, {"n": 1}))
            assert detail.status == "FAILED"
            assert [exit_code(detail, i) for i in range(2)] == [1, 1]
            rule = retries(3, {"onReason": "ValueError:*", "action": "EXIT"})
            handle = await submit(queue, definition, {"n": 2}, **rule)
            (detail,) = await finished(handle)
            assert len(detail.attempts) == 1
            assert container_reason(detail) == "ValueError: bad value 2"

    arun(main())


# -- arrays and dependencies ------------------------------------------------------------------


def test_an_array_job_runs_every_child_with_its_index(arun: Any, tmp_path: Path) -> None:
    async def main() -> None:
        async with batch(tmp_path) as queue:
            definition = await function(queue, tmp_path, "env")
            parent = await submit(queue, definition, arrayProperties={"size": 20})
            (detail,) = await finished(parent)
            assert detail.status == "SUCCEEDED"
            assert detail.array_properties is not None
            assert detail.array_properties.status_summary is not None
            assert detail.array_properties.status_summary["SUCCEEDED"] == 20
            for i in range(20):
                child = queue.handle(f"{parent.job_id}:{i}")
                env = orjson.loads(await child.result() or b"")
                assert env["AWS_BATCH_JOB_ARRAY_INDEX"] == str(i)
                assert env["AWS_BATCH_JOB_ID"] == child.job_id
            assert queue.runner.capacity.peak_vcpus <= 4

    arun(main())


def test_a_sequential_array_runs_its_children_in_order(arun: Any, tmp_path: Path) -> None:
    async def main() -> None:
        async with batch(tmp_path) as queue:
            definition = await function(queue, tmp_path, "record")
            path = tmp_path / "order"
            parent = await submit(
                queue,
                definition,
                {"path": str(path), "s": 0.02},
                arrayProperties={"size": 5},
                dependsOn=[{"type": "SEQUENTIAL"}],
            )
            (detail,) = await finished(parent)
            assert detail.status == "SUCCEEDED"
            events = [line.split()[:2] for line in path.read_text().splitlines()]
            expected = [[kind, str(i)] for i in range(5) for kind in ("start", "end")]
            assert events == expected

    arun(main())


def test_depends_on_waits_and_a_failure_cascades(arun: Any, tmp_path: Path) -> None:
    async def main() -> None:
        async with batch(tmp_path) as queue:
            good = await function(queue, tmp_path, "echo")
            bad = await function(queue, tmp_path, "fail")
            first = await submit(queue, good, {"step": 1})
            after = await submit(queue, good, {"step": 2}, dependsOn=[{"jobId": first.job_id}])
            broken = await submit(queue, bad, {"n": 0})
            doomed = await submit(queue, good, {}, dependsOn=[{"jobId": broken.job_id}])
            a, b, c, d = await finished(first, after, broken, doomed)
            assert (a.status, b.status, c.status, d.status) == (
                "SUCCEEDED",
                "SUCCEEDED",
                "FAILED",
                "FAILED",
            )
            assert b.started_at is not None
            assert a.stopped_at is not None
            assert b.started_at >= a.stopped_at
            assert d.status_reason == rules.DEPENDENCY_FAILED
            assert d.attempts == []

    arun(main())


def test_a_missing_function_fails_to_start(arun: Any, tmp_path: Path) -> None:
    async def main() -> None:
        async with batch(tmp_path) as queue:
            data = {
                "jobDefinitionName": "ghost",
                "type": "container",
                "parameters": {"warmstart:function": "ghost"},
            }
            queue.store.register_job_definition(parse(RegisterJobDefinitionRequest, data), 0.0)
            (detail,) = await finished(await submit(queue, "ghost"))
            assert detail.status == "FAILED"
            assert exit_code(detail) is None
            assert detail.status_reason == rules.NOT_STARTED
            reason = container_reason(detail) or ""
            assert reason.startswith("ResourceNotFoundException: Function not found: ")

    arun(main())
