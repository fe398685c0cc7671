"""Stopping attempts and sharing capacity: attempt timeouts (SIGTERM, then SIGKILL after the
grace), TerminateJob, the compute environment's limits, and a runner that dies mid-job."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import orjson
import pytest
from batch_runner_support import (
    batch,
    container_reason,
    exit_code,
    file_has,
    finished,
    function,
    retries,
    small_config,
    status_is,
    submit,
)
from fakes import FakeClock
from helpers import pid_exists

from runtime import Engine
from runtime.batch import BatchQueue, rules
from runtime.batch.capacity import BLOCKED_REASON, Capacity
from runtime.errors import ServiceException

T0 = 1_700_000_000.0
TIMEOUT = {"timeout": {"attemptDurationSeconds": 60}}


# -- attempt timeouts -------------------------------------------------------------------------


def test_a_timeout_sends_sigterm_then_sigkill_after_the_grace(arun: Any, tmp_path: Path) -> None:
    async def main() -> None:
        # 60 s at timeout_scale 0.01: 0.6 s; kill grace 0.4 s
        async with batch(tmp_path) as queue:
            trap = await function(queue, tmp_path, "trap", **TIMEOUT)
            stubborn = await function(queue, tmp_path, "stubborn", **TIMEOUT)
            marker, ready = tmp_path / "marker", tmp_path / "ready"
            loop = asyncio.get_running_loop()
            t0 = loop.time()
            trapping = await submit(queue, trap, {"marker": str(marker), "ready": str(ready)})
            ignoring = await submit(queue, stubborn, {"ready": str(tmp_path / "ignoring")})
            first, second = await finished(trapping, ignoring)
            took = loop.time() - t0
            assert marker.read_text() == "SIGTERM"
            for detail in (first, second):
                assert detail.status == "FAILED"
                assert detail.status_reason == rules.TIMEOUT_REASON
                assert len(detail.attempts) == 1
            assert exit_code(first) == 42  # its own exit, from its SIGTERM handler
            assert exit_code(second) == 137  # SIGKILL, once the grace had passed
            assert 0.9 < took < 5.0
            assert queue.stats()["timed_out"] == 2

    arun(main())


def test_a_timed_out_job_is_not_retried(arun: Any, tmp_path: Path) -> None:
    async def main() -> None:
        async with batch(tmp_path) as queue:
            definition = await function(queue, tmp_path, "sleep", **TIMEOUT, **retries(3))
            (detail,) = await finished(await submit(queue, definition, {"s": 30}))
            assert detail.status == "FAILED"
            assert detail.status_reason == rules.TIMEOUT_REASON
            assert len(detail.attempts) == 1
            assert exit_code(detail) == 143  # SIGTERM's default action

    arun(main())


def test_the_clock_decides_when_an_attempt_times_out(arun: Any, tmp_path: Path) -> None:
    async def main() -> None:
        clock = FakeClock(T0)
        config = small_config(timeout_scale=1.0)
        async with batch(tmp_path, config=config, clock=clock) as queue:
            definition = await function(queue, tmp_path, "sleep", **TIMEOUT)
            handle = await submit(queue, definition, {"s": 30})
            await status_is(handle, "RUNNING")
            clock.advance(59)
            queue.runner.wake()
            await asyncio.sleep(0.2)
            assert await handle.status() == "RUNNING"
            clock.advance(1)
            queue.runner.wake()
            (detail,) = await finished(handle)
            assert detail.status_reason == rules.TIMEOUT_REASON
            assert detail.started_at is not None
            assert detail.stopped_at == detail.started_at + 60_000

    arun(main())


# -- TerminateJob -----------------------------------------------------------------------------


def test_terminate_stops_a_running_job_and_fails_it_without_retry(
    arun: Any, tmp_path: Path
) -> None:
    async def main() -> None:
        async with batch(tmp_path) as queue:
            definition = await function(queue, tmp_path, "sleep", **retries(3))
            local = await submit(queue, definition, {"s": 30})
            remote = await submit(queue, definition, {"s": 30})
            await status_is(local, "RUNNING")
            await status_is(remote, "RUNNING")
            await queue.terminate(local.job_id, "stopped by the operator")
            # another process (the service, the CLI) terminates through the store: the runner
            # finds the order when it polls
            queue.store.terminate_job(remote.job_id, "stopped elsewhere", queue.clock())
            first, second = await finished(local, remote)
            assert (first.status, first.status_reason) == ("FAILED", "stopped by the operator")
            assert (second.status, second.status_reason) == ("FAILED", "stopped elsewhere")
            for detail in (first, second):
                assert detail.is_terminated
                assert len(detail.attempts) == 1
                assert exit_code(detail) == 143
            assert queue.stats()["killed"] == 2

    arun(main())


def test_kill_orders_from_another_thread_reach_the_runner(arun: Any, tmp_path: Path) -> None:
    async def main() -> None:
        # the Batch API's operations run in worker threads: TerminateJob's orders (and
        # DeleteJobQueue's) reach the runner from there
        async with batch(tmp_path) as queue:
            definition = await function(queue, tmp_path, "sleep")
            handle = await submit(queue, definition, {"s": 30})
            await status_is(handle, "RUNNING")
            clock = queue.clock

            def terminate() -> None:
                orders = queue.store.terminate_job(handle.job_id, "from a thread", clock())
                queue.runner.kill(orders)
                queue.runner.wake()

            await asyncio.to_thread(terminate)
            (detail,) = await finished(handle)
            assert (detail.status, detail.status_reason) == ("FAILED", "from a thread")
            assert exit_code(detail) == 143
            assert queue.stats()["killed"] == 1

    arun(main())


def test_terminate_escalates_to_sigkill(arun: Any, tmp_path: Path) -> None:
    async def main() -> None:
        async with batch(tmp_path) as queue:
            definition = await function(queue, tmp_path, "stubborn")
            ready = tmp_path / "ready"
            handle = await submit(queue, definition, {"ready": str(ready)})
            await file_has(ready)
            await queue.terminate(handle.job_id, "go away")
            (detail,) = await finished(handle)
            assert detail.status_reason == "go away"
            assert exit_code(detail) == 137

    arun(main())


# -- capacity ---------------------------------------------------------------------------------


def test_jobs_never_use_more_vcpus_than_the_maximum(arun: Any, tmp_path: Path) -> None:
    async def main() -> None:
        async with batch(tmp_path, config=small_config(max_vcpus=2)) as queue:
            definition = await function(queue, tmp_path, "record")
            path = tmp_path / "spans"
            handles = [
                await submit(queue, definition, {"path": str(path), "s": 0.15}) for _ in range(6)
            ]
            details = await finished(*handles)
            assert {d.status for d in details} == {"SUCCEEDED"}
            assert queue.runner.capacity.peak_vcpus == 2
            running = peak = 0
            for line in sorted(path.read_text().splitlines(), key=lambda ln: float(ln.split()[2])):
                running += 1 if line.startswith("start") else -1
                peak = max(peak, running)
            assert peak == 2

    arun(main())


def test_fractional_vcpus_and_memory_share_the_environment(arun: Any, tmp_path: Path) -> None:
    async def main() -> None:
        config = small_config(max_vcpus=1, memory_mib=1000)
        async with batch(tmp_path, config=config) as queue:
            definition = await function(queue, tmp_path, "record")
            path = tmp_path / "spans"
            quarter = {
                "containerOverrides": {
                    "resourceRequirements": [
                        {"type": "VCPU", "value": "0.25"},
                        {"type": "MEMORY", "value": "300"},
                    ]
                }
            }
            handles = [
                await submit(queue, definition, {"path": str(path), "s": 0.15}, **quarter)
                for _ in range(5)
            ]
            await finished(*handles)
            # four quarters fit the vCPUs, but only three fit 1000 MiB
            assert queue.runner.capacity.peak_vcpus == 0.75

    arun(main())


def test_a_job_bigger_than_the_environment_stays_runnable_and_says_why(
    arun: Any, tmp_path: Path
) -> None:
    async def main() -> None:
        config = small_config(max_vcpus=2, memory_mib=4096)
        async with batch(tmp_path, config=config) as queue:
            definition = await function(queue, tmp_path, "echo")
            big = {"containerOverrides": {"vcpus": 4}}
            huge = {"containerOverrides": {"memory": 8192}}
            too_many = await submit(queue, definition, {}, **big)
            too_much = await submit(queue, definition, {}, **huge)
            fits = await submit(queue, definition, {"ok": True})
            (detail,) = await finished(fits)
            assert detail.status == "SUCCEEDED"
            for handle in (too_many, too_much):
                loop = asyncio.get_running_loop()
                deadline = loop.time() + 5
                while (found := await handle.describe()).status_reason is None:
                    assert loop.time() < deadline
                    await asyncio.sleep(0.05)
                assert (found.status, found.status_reason) == ("RUNNABLE", BLOCKED_REASON)
            capacity = queue.stats()["capacity"]
            assert capacity["desired_vcpus"] == 2  # the demand (5), clamped to max_vcpus
            assert capacity["used_vcpus"] == 0
            await queue.cancel(too_many.job_id, "too big")
            assert (await too_many.describe()).status == "FAILED"

    arun(main())


def test_capacity_arithmetic() -> None:
    cap = Capacity(min_vcpus=1, max_vcpus=2, memory_mib=1024)
    assert cap.desired_vcpus == 1
    for _ in range(3):
        cap.take(0.1, 100)
    assert cap.used_vcpus == pytest.approx(0.3)
    assert cap.free_vcpus == 1.7
    assert cap.fits(1.7, 724)
    assert not cap.fits(1.701, 10)
    assert not cap.fits(0.1, 725)
    cap.set_demand(10)
    assert cap.desired_vcpus == 2
    cap.set_demand(0)
    assert cap.desired_vcpus == 1
    for _ in range(3):
        cap.give(0.1, 100)
    assert (cap.used_vcpus, cap.used_memory_mib, cap.running) == (0, 0, 0)
    assert cap.peak_vcpus == pytest.approx(0.3)
    assert "vcpus=0/2" in repr(cap)


# -- a runner that dies -----------------------------------------------------------------------


def test_jobs_of_a_dead_runner_finish_as_the_rules_say(arun: Any, tmp_path: Path) -> None:
    async def main() -> None:
        clock = FakeClock(T0)
        config = small_config(max_vcpus=2)
        async with Engine() as engine:
            async with batch(
                tmp_path, config=config, node_id="n1", clock=clock, engine=engine
            ) as first:
                hangs = await function(first, tmp_path, "first_hangs")
                echo = await function(first, tmp_path, "echo")
                retried = await submit(first, hangs, {}, **retries(2))
                lost = await submit(first, hangs, {})
                waiting = await submit(first, echo, {"x": 1}, dependsOn=[{"jobId": lost.job_id}])
                queued = await submit(first, echo, {"x": 2})  # no capacity left for it
                await status_is(retried, "RUNNING")
                await status_is(lost, "RUNNING")
                assert await queued.status() == "RUNNABLE"
                pids = await _running_workers(first, 2)
            # the first runner is gone, its workers with it; its attempts are still RUNNING
            assert not any(pid_exists(pid) for pid in pids)
            clock.advance(31)  # past stale_after_s (30 s) of silence
            async with batch(
                tmp_path, config=config, node_id="n2", clock=clock, engine=engine
            ) as second:
                handles = [second.handle(h.job_id) for h in (retried, lost, waiting, queued)]
                again, gone, waited, ran = await finished(*handles)
                died = rules.runner_died("n1")
                assert again.status == "SUCCEEDED"
                assert [a.status_reason for a in again.attempts] == [died, rules.ESSENTIAL_EXITED]
                result = await handles[0].result()
                assert orjson.loads(result or b"") == {"attempt": 2}
                assert (gone.status, gone.status_reason) == ("FAILED", died)
                assert (waited.status, waited.status_reason) == ("FAILED", rules.DEPENDENCY_FAILED)
                assert ran.status == "SUCCEEDED"
                assert second.stats()["recovered"] == 2

    arun(main())


async def _running_workers(queue: BatchQueue, count: int) -> list[int]:
    """The pids of ``count`` workers running a job: RUNNING is recorded when the attempt
    starts, which may be a moment before its worker has the call."""
    for _ in range(500):
        pids = _worker_pids(queue)
        if len(pids) >= count:
            return pids
        await asyncio.sleep(0.01)
    raise AssertionError(f"{count} workers running jobs: only {_worker_pids(queue)}")


def _worker_pids(queue: BatchQueue) -> list[int]:
    """Pids of the runner's function workers that are running a job."""
    engine = queue.runner._functions.engine
    return [
        env.worker.pid
        for env in engine._envs.values()
        if env.worker is not None and env.call is not None
    ]


def test_a_runner_restarted_with_its_node_id_recovers_at_once(arun: Any, tmp_path: Path) -> None:
    async def main() -> None:
        async with Engine() as engine:
            async with batch(tmp_path, node_id="steady", engine=engine) as first:
                definition = await function(first, tmp_path, "first_hangs", **retries(2))
                handle = await submit(first, definition, {})
                await status_is(handle, "RUNNING")
                assert "running=1" in repr(first)
            async with batch(tmp_path, node_id="steady", engine=engine) as second:
                (detail,) = await finished(second.handle(handle.job_id))
                assert detail.status == "SUCCEEDED"
                assert len(detail.attempts) == 2
                assert detail.attempts[0].status_reason == rules.runner_died("steady")
                assert container_reason(detail, 0) is None

    arun(main())


def test_close_can_drain_running_attempts(arun: Any, tmp_path: Path) -> None:
    async def main() -> None:
        async with Engine() as engine:
            async with batch(tmp_path, engine=engine) as queue:
                definition = await function(queue, tmp_path, "sleep")
                handle = await submit(queue, definition, {"s": 0.3})
                await status_is(handle, "RUNNING")
                await queue.close(drain_s=5.0)
                assert engine.backlog is None
            async with batch(tmp_path, engine=engine) as again:
                (detail,) = await finished(again.handle(handle.job_id))
                assert detail.status == "SUCCEEDED"
                assert len(detail.attempts) == 1
                assert orjson.loads(await again.handle(handle.job_id).result() or b"") > 0

    arun(main())


def test_a_refused_report_is_tried_again(arun: Any, tmp_path: Path) -> None:
    async def main() -> None:
        async with batch(tmp_path) as queue:
            definition = await function(queue, tmp_path, "echo")
            store = queue.store
            real = store.finished
            refused: list[str] = []

            def finished_once_busy(job_id: str, *args: Any, **kwargs: Any) -> Any:
                if not refused:
                    refused.append(job_id)
                    raise ServiceException("the batch store is busy: database is locked")
                return real(job_id, *args, **kwargs)

            store.finished = finished_once_busy  # type: ignore[method-assign]
            handle = await submit(queue, definition, {"n": 1})
            (detail,) = await finished(handle)
            assert detail.status == "SUCCEEDED"
            assert refused == [handle.job_id]
            assert queue.stats()["finished"] == 1

    arun(main())
