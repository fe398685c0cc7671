"""The container backend on a real Docker Engine: handshake, invocations, limits, isolation."""

from __future__ import annotations

import os
import textwrap
from collections.abc import Callable
from typing import Any

import orjson
from docker_support import NODE, harness
from helpers import pid_exists

from runtime.agent import protocol as P
from runtime.docker import LABEL, MB, NODE_LABEL
from runtime.pools.container import (
    ENV_LABEL,
    FUNCTION_LABEL,
    ContainerBackend,
    ContainerWorker,
    cgroup_peak_mb,
)
from runtime.pools.memory import read_peak


async def peak_memory_mb(backend: ContainerBackend, worker: ContainerWorker) -> int:
    """The container's peak memory in MB rounded up: its cgroup's high-water mark, read
    afresh, or the daemon's statistics where the cgroup cannot be read from here."""
    peak = read_peak(worker.cgroup) if worker.cgroup else None
    if peak is None:
        container = backend.docker.containers.container(worker.container_id)
        stats = await container.stats(stream=False)
        memory = stats[0].get("memory_stats", {}) if stats else {}
        peak = memory.get("max_usage") or memory.get("usage")
    return -(-int(peak or 0) // MB)


# A function written at test time: it reports what it can and cannot do inside its container.
PROBE_APP = textwrap.dedent(
    """
    import errno, os

    def _try_write(path):
        try:
            with open(path, "w") as f:
                f.write("x")
        except OSError as exc:
            return errno.errorcode[exc.errno]
        return "ok"

    def _status(key):
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(key + ":"):
                    return line.split()[1]

    def probe(event, context):
        with open("/tmp/big", "wb") as f:
            f.write(b"x" * 4 * 1024 * 1024)
        tmp = os.statvfs("/tmp")
        return {
            "task_write": _try_write("/var/task/written"),
            "root_write": _try_write("/etc/written"),
            "tmp_mb": tmp.f_blocks * tmp.f_frsize // (1024 * 1024),
            "tmpdir": os.environ.get("TMPDIR"),
            "task_root": os.environ.get("LAMBDA_TASK_ROOT"),
            "cwd": os.getcwd(),
            "interfaces": sorted(os.listdir("/sys/class/net")),
            "cap_eff": int(_status("CapEff"), 16),
            "no_new_privs": _status("NoNewPrivs"),
            "pid": os.getpid(),
            "memory": context.memory_limit_in_mb,
        }
    """
)


def _cmdline(pid: int) -> bytes:
    with open(f"/proc/{pid}/cmdline", "rb") as f:
        return f.read()


def _write_probe(root: str) -> str:
    code = os.path.join(root, "probe-code")
    os.makedirs(code, exist_ok=True)
    with open(os.path.join(code, "app.py"), "w") as f:
        f.write(PROBE_APP)
    return code


def test_handshake_invoke_and_stop(arun: Callable[..., Any]) -> None:
    async def main() -> None:
        async with harness() as h:
            worker, owner = await h.start("app.echo")
            assert worker.pid > 0
            assert b"/opt/warmstart/agent/__main__.py" in _cmdline(worker.pid)
            for i in range(3):
                frame = await h.invoke(worker, owner, {"n": i, "text": "héllo"})
                assert frame.kind == P.RESULT
                assert orjson.loads(frame.fields[1]) == {"n": i, "text": "héllo"}
            frame = await h.invoke(worker, owner, 5, timeout=10)
            assert frame.fields[1] == b"5"
            assert await h.backend.stop_worker(worker) == 0
            assert not worker.oom_killed
            assert not pid_exists(worker.pid)
            assert worker.closing  # the engine ignores the loss of a worker it closed

    arun(main())


def test_container_limits_labels_and_isolation(arun: Callable[..., Any]) -> None:
    async def main() -> None:
        async with harness() as h:
            code = _write_probe(h.work_dir)
            worker, owner = await h.start(
                "app.probe", memory_mb=256, code=code, ephemeral_storage_mb=600
            )
            info = await h.backend.docker.containers.container(worker.container_id).show()
            host = info["HostConfig"]
            assert host["Memory"] == 256 * 1024 * 1024
            assert host["CpuShares"] == 256 * 1024 // 1769
            assert host["PidsLimit"] == 1024
            assert host["NetworkMode"] == "none"
            assert host["ReadonlyRootfs"] is True
            assert host["CapDrop"] == ["ALL"]
            assert host["SecurityOpt"] == ["no-new-privileges"]
            assert info["State"]["Pid"] == worker.sandbox.pid != worker.pid
            labels = info["Config"]["Labels"]
            assert labels[LABEL] == "1"
            assert labels[NODE_LABEL] == NODE
            assert labels[ENV_LABEL] == "1"
            assert labels[FUNCTION_LABEL] == "fn"

            frame = await h.invoke(worker, owner, {})
            assert frame.kind == P.RESULT, frame.fields[1]
            seen = orjson.loads(frame.fields[1])
            assert seen["task_write"] == "EROFS"  # the code is mounted read-only
            assert seen["root_write"] == "EROFS"  # so is the image's root
            assert seen["tmp_mb"] == 600  # a tmpfs of ephemeral_storage_mb
            assert seen["tmpdir"] == "/tmp"
            assert seen["task_root"] == seen["cwd"] == "/var/task"
            assert seen["interfaces"] == ["lo"]  # network "none"
            assert seen["cap_eff"] == 0
            assert seen["no_new_privs"] == "1"
            assert seen["pid"] > 1  # forked by the container's first process, the sandbox
            assert seen["memory"] == "256"
            assert os.listdir(code) == ["app.py"]

            assert await peak_memory_mb(h.backend, worker) >= 4  # /tmp is memory, charged here
            await h.backend.stop_worker(worker)

    arun(main())


def test_peak_memory_follows_the_handler(arun: Callable[..., Any]) -> None:
    async def main() -> None:
        async with harness() as h:
            worker, owner = await h.start("app.alloc", memory_mb=256)
            before = await peak_memory_mb(h.backend, worker)
            frame = await h.invoke(worker, owner, {"mb": 64})
            assert frame.kind == P.RESULT
            after = await peak_memory_mb(h.backend, worker)
            assert after >= before + 60
            assert after < 256
            if worker.cgroup:  # the engine's synchronous read (a timeout's REPORT) agrees
                assert cgroup_peak_mb(worker) >= after
            await h.backend.stop_worker(worker)

    arun(main())


def test_handler_output_reaches_the_environment_log(arun: Callable[..., Any]) -> None:
    async def main() -> None:
        async with harness() as h:
            worker, owner = await h.start("app.noisy")
            frame = await h.invoke(worker, owner, {"marker": "m", "n": 3})
            assert frame.kind == P.RESULT
            log = frame.fields[2].decode()
            assert "<m> out 2" in log
            assert "<m> err 2" in log
            await h.backend.stop_worker(worker)

    arun(main())
