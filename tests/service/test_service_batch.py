"""Batch functions and spilled timeouts through the service: Lambda's Invoke answers 202 with the
job's id, and boto3's batch client follows the job to its end."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from service_support import aws_client, basic, call, config_of, serving


async def _final(batch: Any, job_id: str) -> dict[str, Any]:
    for _ in range(200):
        (job,) = (await call(batch.describe_jobs, jobs=[job_id]))["jobs"]
        if job["status"] in ("SUCCEEDED", "FAILED"):
            return job  # type: ignore[no-any-return]
        await asyncio.sleep(0.05)
    raise AssertionError(f"job {job_id} did not end")


def test_a_batch_function_answers_202_with_a_job_that_runs(arun: Any) -> None:
    config = config_of(basic("long", timeout_s=3600))

    async def main() -> None:
        async with serving(config) as service:
            lam, batch = aws_client("lambda", service.url), aws_client("batch", service.url)
            answer = await call(lam.invoke, FunctionName="long", Payload=b'{"n": 7}')
            assert answer["StatusCode"] == 202
            job_id = json.loads(answer["Payload"].read())["jobId"]
            job = await _final(batch, job_id)
            assert job["status"] == "SUCCEEDED"
            assert job["tags"]["warmstart:origin"] == "invoke"
            assert job["jobQueue"].endswith(":job-queue/warmstart-default")
            lam.close()
            batch.close()

    arun(main(), timeout=30)


def test_a_timed_out_call_is_resubmitted_once_as_a_job(arun: Any) -> None:
    config = config_of(basic("slow", "sleep", timeout_s=1, spill_on_timeout=True))

    async def main() -> None:
        async with serving(config) as service:
            lam, batch = aws_client("lambda", service.url), aws_client("batch", service.url)
            answer = await call(lam.invoke, FunctionName="slow", Payload=b'{"s": 1.5}')
            assert answer["FunctionError"] == "Unhandled"
            assert json.loads(answer["Payload"].read())["errorType"] == "Sandbox.Timedout"
            found: list[dict[str, Any]] = []
            for _ in range(100):
                try:
                    listed = await call(
                        batch.list_jobs, jobQueue="warmstart-default", jobStatus="SUCCEEDED"
                    )
                except batch.exceptions.ClientException:
                    listed = {"jobSummaryList": []}  # the queue is made by the first spill,
                    # which runs after the timed-out call was answered
                found = listed["jobSummaryList"]
                if found:
                    break
                await asyncio.sleep(0.1)
            (summary,) = found  # once: the job itself has no 1 s limit, and it succeeded
            job = await _final(batch, summary["jobId"])
            assert job["tags"]["warmstart:origin"] == "spill_on_timeout"
            assert job["tags"]["warmstart:request-id"] == answer["ResponseMetadata"]["RequestId"]
            lam.close()
            batch.close()

    arun(main(), timeout=30)
