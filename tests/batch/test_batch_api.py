"""The AWS Batch API through boto3's ``batch`` client, over a real SQLite store on loopback."""

from __future__ import annotations

import asyncio
import contextlib
import urllib.request
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import botocore.exceptions
import pytest
from aiohttp import web
from fakes import FakeClock, FakeKiller
from service_support import aws_client, call

from runtime.batch.store import SqliteStore
from runtime.service.batch_api import BatchApi

NOW = 1_800_000_000.0


@contextlib.asynccontextmanager
async def served(tmp_path: Path) -> AsyncIterator[tuple[Any, SqliteStore, FakeKiller, FakeClock]]:
    store = SqliteStore(str(tmp_path / "batch.db"))
    killer, clock = FakeKiller(), FakeClock(NOW)
    app = web.Application()
    app.router.add_routes(BatchApi(store, killer=killer, clock=clock).routes())
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    client = await call(aws_client, "batch", f"http://127.0.0.1:{port}")
    try:
        yield client, store, killer, clock
    finally:
        client.close()
        await runner.cleanup()
        store.close()
        await asyncio.get_running_loop().shutdown_default_executor()


async def _setup(client: Any) -> None:
    await call(
        client.register_job_definition,
        jobDefinitionName="work",
        type="container",
        containerProperties={
            "image": "busybox",
            "command": ["echo", "Ref::word"],
            "vcpus": 1,
            "memory": 128,
        },
        parameters={"word": "hello"},
        retryStrategy={"attempts": 3, "evaluateOnExit": [{"onExitCode": "2*", "action": "EXIT"}]},
    )
    await call(
        client.create_job_queue,
        jobQueueName="q",
        state="ENABLED",
        priority=1,
        computeEnvironmentOrder=[{"order": 1, "computeEnvironment": "ce"}],
    )


def test_definitions_queues_and_a_job_through_boto3(arun: Any, tmp_path: Path) -> None:
    async def main() -> None:
        async with served(tmp_path) as (client, store, _, clock):
            await _setup(client)
            again = await call(
                client.register_job_definition,
                jobDefinitionName="work",
                type="container",
                containerProperties={"image": "busybox", "vcpus": 2, "memory": 256},
            )
            assert again["revision"] == 2
            assert again["jobDefinitionArn"].endswith(":job-definition/work:2")
            found = await call(client.describe_job_definitions, jobDefinitionName="work")
            assert sorted(d["revision"] for d in found["jobDefinitions"]) == [1, 2]
            submitted = await call(
                client.submit_job, jobName="one", jobQueue="q", jobDefinition="work:1"
            )
            job_id = submitted["jobId"]
            assert submitted["jobName"] == "one"
            (job,) = (await call(client.describe_jobs, jobs=[job_id]))["jobs"]
            assert job["status"] == "RUNNABLE"
            assert job["jobDefinition"].endswith("work:1")
            assert job["container"]["command"] == ["echo", "hello"]
            runnable = await call(client.list_jobs, jobQueue="q", jobStatus="RUNNABLE")
            assert [j["jobId"] for j in runnable["jobSummaryList"]] == [job_id]
            assert (await call(client.list_jobs, jobQueue="q"))["jobSummaryList"] == []

            (claim,) = store.claim("node-a", clock(), 1)
            store.started(job_id, clock() + 1)
            store.finished(job_id, claim.attempt, 0, None, None, clock() + 2, log=b"hello\n")
            (done,) = (await call(client.describe_jobs, jobs=[job_id]))["jobs"]
            assert done["status"] == "SUCCEEDED"
            assert done["attempts"][0]["container"]["exitCode"] == 0

    arun(main(), timeout=30)


def test_terminate_tells_the_runner_and_cancel_fails_a_waiting_job(
    arun: Any, tmp_path: Path
) -> None:
    async def main() -> None:
        async with served(tmp_path) as (client, store, killer, clock):
            await _setup(client)
            running = (
                await call(client.submit_job, jobName="r", jobQueue="q", jobDefinition="work")
            )["jobId"]
            waiting = (
                await call(
                    client.submit_job,
                    jobName="w",
                    jobQueue="q",
                    jobDefinition="work",
                    dependsOn=[{"jobId": running}],
                )
            )["jobId"]
            store.claim("node-a", clock(), 1)
            store.started(running, clock())
            await call(client.terminate_job, jobId=running, reason="enough")
            assert [order.job_id for order in killer.orders] == [running]
            await call(client.cancel_job, jobId=waiting, reason="not needed")
            (job,) = (await call(client.describe_jobs, jobs=[waiting]))["jobs"]
            assert job["status"] == "FAILED"
            assert job["statusReason"] == "not needed"

    arun(main(), timeout=30)


@pytest.mark.parametrize(
    ("operation", "params", "message"),
    [
        ("submit_job", {"jobName": "x", "jobQueue": "nope", "jobDefinition": "work"}, "nope"),
        ("submit_job", {"jobName": "-bad", "jobQueue": "q", "jobDefinition": "work"}, "jobName"),
        ("submit_job", {"jobName": "x", "jobQueue": "q", "jobDefinition": "none"}, "none"),
        ("describe_jobs", {"jobs": [f"id-{i}" for i in range(101)]}, "100"),
        (
            "create_job_queue",
            {"jobQueueName": "q", "priority": 1, "computeEnvironmentOrder": []},
            "q",
        ),
        ("terminate_job", {"jobId": "no-such-job", "reason": "r"}, "no-such-job"),
    ],
)
def test_bad_requests_are_client_exceptions(
    arun: Any, tmp_path: Path, operation: str, params: dict[str, Any], message: str
) -> None:
    async def main() -> None:
        async with served(tmp_path) as (client, *_):
            await _setup(client)
            with pytest.raises(client.exceptions.ClientException) as caught:
                await call(getattr(client, operation), **params)
            error = caught.value.response["Error"]
            assert caught.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400
            assert message in error["Message"]

    arun(main(), timeout=30)


def test_malformed_and_oversized_bodies(arun: Any, tmp_path: Path) -> None:
    async def main() -> None:
        async with served(tmp_path) as (client, *_):
            url = client.meta.endpoint_url + "/v1/submitjob"

            def post(body: bytes) -> tuple[int, str, bytes]:
                request = urllib.request.Request(url, data=body, method="POST")
                try:
                    with urllib.request.urlopen(request) as response:
                        return response.status, response.headers["x-amzn-ErrorType"], b""
                except urllib.error.HTTPError as exc:
                    return exc.code, exc.headers["x-amzn-ErrorType"], exc.read()

            assert (await call(post, b"{not json"))[:2] == (400, "ClientException")
            assert (await call(post, b"[1, 2]"))[:2] == (400, "ClientException")
            status, code, _ = await call(post, b"{" + b" " * 2_000_000 + b"}")
            assert (status, code) == (413, "RequestTooLargeException")

    arun(main(), timeout=30)


def test_unknown_job_ids_are_simply_absent(arun: Any, tmp_path: Path) -> None:
    async def main() -> None:
        async with served(tmp_path) as (client, *_):
            assert (await call(client.describe_jobs, jobs=["nothing"]))["jobs"] == []
            with pytest.raises(botocore.exceptions.ParamValidationError):
                await call(client.describe_jobs)

    arun(main(), timeout=30)
