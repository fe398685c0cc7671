"""TerminateJob through a real ``warmstart serve`` of a container job running on its runner:
``sleep 60`` as the container's first process ignores SIGTERM, so it is killed once the kill
grace has passed; the job ends FAILED with the caller's reason and its container is removed."""

from __future__ import annotations

import json
from pathlib import Path

import aiodocker
import pytest
from batch_serve_support import (
    KILL_GRACE_S,
    QUEUE,
    REASON,
    exit_code,
    job_in,
    served,
    terminate_and_wait,
    write_config,
)
from docker_support import IMAGE
from service_support import wait_for

from runtime.batch.executors import JOB_LABEL
from runtime.loop import run as loop_run

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("docker_engine")]

#: the test image's Python and /usr come from the host, bound read-only
TRUST_BINDS = "\n[pool]\ntrust_image_binds = true\n"


def containers_of(job_id: str) -> list[str]:
    """Containers (running or not) of any attempt of ``job_id``, wherever they were started."""

    async def listed() -> list[str]:
        async with aiodocker.Docker() as docker:
            found = await docker.containers.list(
                all=True, filters=json.dumps({"label": [JOB_LABEL]})
            )
            return [c.id for c in found if c["Labels"][JOB_LABEL].startswith(f"{job_id}#")]

    return loop_run(listed())


def test_terminate_a_running_container_job(tmp_path: Path) -> None:
    with served(write_config(tmp_path, TRUST_BINDS)) as client:
        client.register_job_definition(
            jobDefinitionName="sleeper",
            type="container",
            containerProperties={
                "image": IMAGE,
                "command": ["sleep", "60"],
                "vcpus": 1,
                "memory": 64,
            },
        )
        job_id = client.submit_job(jobName="sleeper", jobQueue=QUEUE, jobDefinition="sleeper")[
            "jobId"
        ]
        wait_for(lambda: job_in(client, job_id, ("RUNNING",)), 30, "RUNNING")
        assert len(containers_of(job_id)) == 1

        job, took = terminate_and_wait(client, job_id, within=KILL_GRACE_S + 15)

        assert (job["status"], job["statusReason"]) == ("FAILED", REASON)
        assert len(job["attempts"]) == 1
        assert exit_code(job) == 137  # the first process of a container ignores SIGTERM
        assert took >= KILL_GRACE_S
        assert containers_of(job_id) == []
