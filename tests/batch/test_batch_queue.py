"""BatchQueue as the engine's backlog: batch functions and timed-out calls become jobs that run
to the end, Event invocations are stored and wake the listeners; the library conveniences."""

from __future__ import annotations

import asyncio
import math
from pathlib import Path
from typing import Any, cast

import orjson
import pytest
from batch_runner_support import (
    QUEUE,
    batch,
    finished,
    function,
    small_config,
    status_is,
    submit,
    write_jobs,
)

from runtime import Engine, FunctionConfig
from runtime.batch import BatchQueue, ClientException, JobHandle, SqliteStore
from runtime.batch.queue import DEFAULT_QUEUE, ORIGIN_TAG, REQUEST_ID_TAG, STORE_FILE
from runtime.config import BatchConfig


def test_a_batch_function_call_answers_202_and_its_job_runs_to_the_end(
    arun: Any, tmp_path: Path
) -> None:
    async def main() -> None:
        async with Engine() as engine, batch(tmp_path, engine=engine):
            code = write_jobs(tmp_path)
            # over 900 s: a batch function, whose calls the engine spills to the queue
            await engine.register(
                FunctionConfig(
                    name="long", handler="jobs.echo", code=code, timeout_s=3600, memory_mb=256
                )
            )
            result = await engine.invoke("long", {"n": 1})
            assert result.status_code == 202
            job = result.job
            assert isinstance(job, JobHandle)
            assert orjson.loads(result.payload) == {"jobId": job.job_id}
            detail = await job.wait(10)
            assert detail.status == "SUCCEEDED"
            assert orjson.loads(await job.result() or b"") == {"n": 1}
            assert detail.job_queue.endswith(f":job-queue/{DEFAULT_QUEUE}")
            assert detail.job_definition.endswith(":job-definition/warmstart-fn-long:1")
            assert detail.tags is not None
            assert detail.tags[ORIGIN_TAG] == "invoke"
            assert len(detail.tags[REQUEST_ID_TAG]) == 36
            assert detail.container is not None
            requirements = {r.type: r.value for r in detail.container.resource_requirements or []}
            assert requirements == {"VCPU": "1", "MEMORY": "256"}
            # the second call reuses the queue and the definition
            second = await engine.invoke("long", {"n": 2})
            assert second.job is not None
            detail = await second.job.wait(10)
            assert detail.job_definition.endswith(":job-definition/warmstart-fn-long:1")
            # the call ran on the runner's engine, never the invocation pool's
            assert engine.stats()["long"]["invocations"] == 0

    arun(main())


def test_spill_on_timeout_resubmits_the_call_as_a_job_without_the_limit(
    arun: Any, tmp_path: Path
) -> None:
    async def main() -> None:
        async with Engine() as engine, batch(tmp_path, engine=engine) as queue:
            code = write_jobs(tmp_path)
            await engine.register(
                FunctionConfig(
                    name="slow", handler="jobs.sleep", code=code, timeout_s=1, spill_on_timeout=True
                )
            )
            result = await engine.invoke("slow", {"s": 1.3})
            assert orjson.loads(result.payload)["errorType"] == "Sandbox.Timedout"
            loop = asyncio.get_running_loop()
            deadline = loop.time() + 5
            while result.job is None:
                assert loop.time() < deadline
                await asyncio.sleep(0.02)
            detail = await result.job.wait(10)
            assert detail.status == "SUCCEEDED"
            assert isinstance(orjson.loads(await result.job.result() or b""), int)
            assert detail.tags is not None
            assert detail.tags[ORIGIN_TAG] == "spill_on_timeout"
            assert detail.tags[REQUEST_ID_TAG] == result.request_id
            page = queue.store.list_jobs(job_queue=DEFAULT_QUEUE, job_status="SUCCEEDED")
            assert [job.job_id for job in page.items] == [detail.job_id]  # resubmitted once

    arun(main(), timeout=20)


def test_event_invocations_are_stored_and_wake_the_listeners(arun: Any, tmp_path: Path) -> None:
    async def main() -> None:
        async with Engine() as engine, batch(tmp_path, engine=engine) as queue:
            await engine.register(
                FunctionConfig(name="f", handler="jobs.echo", code=write_jobs(tmp_path))
            )
            woken: list[int] = []
            queue.event_listeners.append(lambda: woken.append(1))
            result = await engine.invoke("f", {"e": 1}, "Event")
            assert result.status_code == 202
            assert woken == [1]
            claim = queue.event_store.claim_events("other", queue.clock())
            (event,) = claim.events
            assert (event.function, orjson.loads(event.payload)) == ("f", {"e": 1})
            assert engine.stats()["f"]["invocations"] == 0

    arun(main())


def test_the_runner_gives_back_the_events_of_a_silent_event_node(arun: Any, tmp_path: Path) -> None:
    async def main() -> None:
        now = [1_000.0]
        async with Engine() as engine, batch(tmp_path, engine=engine, clock=lambda: now[0]) as q:
            events, far = q.event_store, "events@far/1/1"
            events.put_event("f", b"{}", now[0], request_id="e1")
            assert [e.id for e in events.claim_events(far, now[0]).events] == ["e1"]
            now[0] += 31  # past stale_after_s (30 s) of silence
            q.runner.wake()
            for _ in range(500):
                if far not in events.stale_nodes(math.inf, 0.0):
                    break
                await asyncio.sleep(0.01)
            assert [e.id for e in events.claim_events("here", now[0]).events] == ["e1"]

    arun(main())


def test_open_uses_the_data_dir_and_attaches_to_the_engine(arun: Any, tmp_path: Path) -> None:
    async def main() -> None:
        async with Engine() as engine:
            config = BatchConfig(data_dir=str(tmp_path / "from-config"), max_vcpus=1)
            queue = BatchQueue.open(engine, config=config, poll_s=0.05)
            assert isinstance(queue.store, SqliteStore)
            assert queue.store.path == tmp_path / "from-config" / STORE_FILE
            assert engine.backlog is None
            async with queue:
                # widened: the narrowing to None above outlives the await
                assert cast(object, engine.backlog) is queue
                assert repr(queue).startswith(f"<BatchQueue node={queue.node_id} running=0")
            assert engine.backlog is None
            other = BatchQueue.open(engine, tmp_path / "explicit", config=config)
            assert isinstance(other.store, SqliteStore)
            assert other.store.path == tmp_path / "explicit" / STORE_FILE
            await other.close()

    arun(main())


def test_describe_cancel_and_unknown_jobs(arun: Any, tmp_path: Path) -> None:
    async def main() -> None:
        async with batch(tmp_path, config=small_config(max_vcpus=1)) as queue:
            sleep = await function(queue, tmp_path, "sleep")
            echo = await function(queue, tmp_path, "echo")
            running = await submit(queue, sleep, {"s": 30})
            await status_is(running, "RUNNING")
            waiting = await submit(queue, echo, {"n": 1})
            assert await waiting.status() == "RUNNABLE"  # one vCPU, taken
            await queue.cancel(waiting.job_id, "not needed")
            await queue.cancel(running.job_id, "ignored: it runs")  # AWS: use TerminateJob
            cancelled = await waiting.wait(5)
            assert (cancelled.status, cancelled.status_reason) == ("FAILED", "not needed")
            assert cancelled.is_cancelled
            assert await running.status() == "RUNNING"
            await queue.terminate(running.job_id, "done with it")
            assert (await running.wait(5)).status == "FAILED"
            with pytest.raises(ClientException, match="does not exist"):
                await queue.describe("no-such-job")
            with pytest.raises(ClientException, match="jobQueue"):
                await queue.submit({"jobName": "x", "jobDefinition": echo})
            blocked = await submit(queue, echo, {}, containerOverrides={"vcpus": 2})
            with pytest.raises(TimeoutError, match="RUNNABLE"):
                await blocked.wait(0.2)
            assert repr(blocked) == f"<JobHandle {blocked.job_id}>"

    arun(main())


def test_submit_accepts_the_request_shape_and_payload_kinds(arun: Any, tmp_path: Path) -> None:
    async def main() -> None:
        from runtime.batch import SubmitJobRequest

        async with batch(tmp_path) as queue:
            echo = await function(queue, tmp_path, "echo")
            request = SubmitJobRequest(job_name="shape", job_queue=QUEUE, job_definition=echo)
            handles = [
                await queue.submit(request, payload=b'{"kind": "bytes"}'),
                await queue.submit(request, payload='{"kind": "str"}'),
                await queue.submit(request, payload={"kind": "object"}),
            ]
            await finished(*handles)
            kinds = [orjson.loads(await h.result() or b"")["kind"] for h in handles]
            assert kinds == ["bytes", "str", "object"]

    arun(main())
