"""Container jobs on a real Docker Engine: one container per attempt with the job's command,
environment, vCPUs and memory; the exit code and output become the attempt's; a timeout stops
the container (SIGTERM, then SIGKILL); nothing is left behind."""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Any

import pytest
from batch_runner_support import batch, container_reason, exit_code, finished, submit
from docker_support import IMAGE

from runtime import PoolConfig
from runtime.batch import BatchQueue, RegisterJobDefinitionRequest, parse, rules
from runtime.batch.executors import OOM_REASON

pytestmark = pytest.mark.usefixtures("docker_engine")

MB = 1024 * 1024

PROBE = textwrap.dedent(
    """
    import os, sys
    def limit():
        for path in ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"):
            if os.path.exists(path):
                return open(path).read().strip()
    print("job", os.environ["AWS_BATCH_JOB_ID"], "attempt", os.environ["AWS_BATCH_JOB_ATTEMPT"])
    print("color", os.environ["COLOR"], "args", sys.argv[1:])
    print("memory", limit())
    print("to stderr", file=sys.stderr)
    sys.exit(int(sys.argv[1]))
    """
)
HOG = "x = bytearray(400 * 1024 * 1024)\nprint(len(x))"
HANG = "import time\nprint('hanging', flush=True)\ntime.sleep(60)"


def container_definition(queue: BatchQueue, name: str, command: list[str], **props: Any) -> str:
    data = {
        "jobDefinitionName": name,
        "type": "container",
        "containerProperties": {
            "image": IMAGE,
            "command": command,
            "vcpus": 1,
            "memory": 96,
            **props,
        },
    }
    queue.store.register_job_definition(parse(RegisterJobDefinitionRequest, data), 0.0)
    return name


def test_a_container_job_exit_code_output_and_limits(arun: Any, tmp_path: Path) -> None:
    async def main() -> None:
        async with batch(tmp_path, pool=PoolConfig(trust_image_binds=True)) as queue:
            definition = container_definition(
                queue,
                "probe",
                ["python3", "-c", PROBE, "Ref::code"],
                environment=[{"name": "COLOR", "value": "green"}],
            )
            failing = await submit(queue, definition, parameters={"code": "3"})
            passing = await submit(queue, definition, parameters={"code": "0"})
            bad, good = await finished(failing, passing, timeout=60)
            assert (bad.status, good.status) == ("FAILED", "SUCCEEDED")
            assert (exit_code(bad), exit_code(good)) == (3, 0)
            assert bad.status_reason == rules.ESSENTIAL_EXITED
            log = (await failing.log()).decode()
            assert f"job {failing.job_id} attempt 1\n" in log
            assert "color green args ['3']\n" in log
            assert f"memory {96 * MB}\n" in log
            assert "to stderr\n" in log
            assert await failing.result() is None

    arun(main(), timeout=30)


def test_a_container_over_its_memory_is_killed(arun: Any, tmp_path: Path) -> None:
    async def main() -> None:
        async with batch(tmp_path, pool=PoolConfig(trust_image_binds=True)) as queue:
            definition = container_definition(queue, "hog", ["python3", "-c", HOG])
            (detail,) = await finished(await submit(queue, definition), timeout=60)
            assert detail.status == "FAILED"
            assert exit_code(detail) == 137
            assert container_reason(detail) == OOM_REASON

    arun(main(), timeout=30)


def test_a_container_timeout_and_a_missing_image(arun: Any, tmp_path: Path) -> None:
    async def main() -> None:
        async with batch(tmp_path, pool=PoolConfig(trust_image_binds=True)) as queue:
            hang = container_definition(
                queue,
                "hang",
                ["python3", "-c", HANG],
                # Batch's minimum; the tests' timeout_scale makes it 0.6 s
            )
            timeout = {"timeout": {"attemptDurationSeconds": 60}}
            hanging = await submit(queue, hang, **timeout)
            data = {
                "jobDefinitionName": "nothing",
                "type": "container",
                "containerProperties": {"image": "warmstart/no-such-image:local"},
            }
            queue.store.register_job_definition(parse(RegisterJobDefinitionRequest, data), 0.0)
            missing = await submit(queue, "nothing")
            stopped, absent = await finished(hanging, missing, timeout=60)
            assert (stopped.status, stopped.status_reason) == ("FAILED", rules.TIMEOUT_REASON)
            # python as the container's first process ignores SIGTERM: SIGKILL after the grace
            assert exit_code(stopped) == 137
            assert "hanging" in (await hanging.log()).decode()
            assert (absent.status, absent.status_reason) == ("FAILED", rules.NOT_STARTED)
            assert exit_code(absent) is None
            reason = container_reason(absent) or ""
            assert reason.startswith("CannotPullContainerError: ")

    arun(main(), timeout=30)
