"""The job runner on function jobs: real worker processes, a real SQLite file.

Success, handler errors and crashes as exit codes; retries by evaluateOnExit with the attempt
number seen by the handler; array jobs with their index; SEQUENTIAL arrays; dependsOn.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
import pytest
from batch_runner_support import (
    QUEUE,
    batch,
    container_reason,
    exit_code,
    finished,
    function,
    retries,
    submit,
)

from runtime.batch import (
    RegisterJobDefinitionRequest,
    parse,
    rules,
)
from runtime.batch import runner as runner_module
from runtime.batch.executors import crash_code
from runtime.errors import ServiceException

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


def test_a_report_the_store_cannot_take_yet_is_made_once_it_answers(
    arun: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """More refusals than the bounded retries of a failing store: an unreachable one is
    waited for, so a live node's attempt never stays RUNNING for want of its report."""
    monkeypatch.setattr(runner_module, "REPORT_RETRIES_S", (0.01, 0.01))

    async def main() -> None:
        async with batch(tmp_path) as queue:
            store = queue.runner.store
            real = store.finished
            refused: list[str] = []

            def refusing(*args: Any, **kwargs: Any) -> Any:
                if len(refused) < 6:
                    refused.append(args[0])
                    raise ServiceException("the store at redis://x is unreachable: refused")
                return real(*args, **kwargs)

            monkeypatch.setattr(store, "finished", refusing)
            definition = await function(queue, tmp_path, "echo")
            handle = await submit(queue, definition, {"n": 1})
            (detail,) = await finished(handle)
            assert detail.status == "SUCCEEDED"
            assert len(refused) == 6
            assert len(detail.attempts) == 1

    arun(main())
