"""The container backend's pure parts: limits, paths, exit codes, node ids (no engine needed)."""

from __future__ import annotations

import os
import socket

import pytest
from docker_support import env_config, make_spec

from runtime.node import local_node_id, node_alive
from runtime.pools.container import (
    AGENT_DIR,
    SOCK_PATH,
    container_config,
    container_paths,
    cpu_shares,
)


@pytest.mark.parametrize(
    ("memory_mb", "shares"), [(128, 74), (1769, 1024), (3538, 2048), (10240, 5927), (1, 2)]
)
def test_cpu_shares_follow_lambdas_vcpu_per_1769_mb(memory_mb: int, shares: int) -> None:
    assert cpu_shares(memory_mb) == shares


def test_paths_are_rewritten_for_inside_the_container(tmp_path: object) -> None:
    work = str(tmp_path)
    spec = make_spec(work, "app.echo")
    env = env_config(work, 7)
    init, inner = container_paths(spec.init_config, env)
    assert init["task_root"] == "/var/task"
    assert init["log_path"] == "/var/runtime-sock/init.log"
    assert init["environ"]["LAMBDA_TASK_ROOT"] == "/var/task"
    assert inner["log_path"] == "/var/runtime-sock/output.log"
    assert inner["environ"]["TMPDIR"] == "/tmp"
    assert inner["environ"]["AWS_LAMBDA_LOG_STREAM_NAME"] == "stream-7"
    assert "memory_limit_bytes" not in inner  # the memory cgroup is the limit, not RLIMIT_AS
    assert "dir" not in inner
    assert spec.init_config["task_root"] != "/var/task"  # the spec itself is left alone


def test_a_stem_cell_finds_the_code_in_the_store(tmp_path: object) -> None:
    work = str(tmp_path)
    init, _ = container_paths(
        make_spec(work, "app.echo").init_config, env_config(work, 1), "/var/task/fn-3"
    )
    assert init["task_root"] == init["environ"]["LAMBDA_TASK_ROOT"] == "/var/task/fn-3"


def test_container_config_limits_and_mounts(tmp_path: object) -> None:
    spec = make_spec(str(tmp_path), "app.echo")
    config = container_config(
        spec.code_dir,
        "/w/env-1",
        image="img",
        memory_mb=256,
        ephemeral_storage_mb=600,
        network=False,
        python="python3",
        labels={"warmstart": "1"},
        host_binds=("/usr",),
    )
    host = config["HostConfig"]
    assert host["Memory"] == host["MemorySwap"] == 256 * 1024 * 1024
    assert host["CpuShares"] == 148
    assert host["NetworkMode"] == "none"
    assert host["ReadonlyRootfs"] is True
    assert host["CapDrop"] == ["ALL"]
    assert host["SecurityOpt"] == ["no-new-privileges"]
    assert host["Tmpfs"]["/tmp"].startswith("rw,nosuid,nodev,size=600m")
    assert host["Binds"] == [
        "/w/env-1:/var/runtime-sock:rw",
        f"{AGENT_DIR}:/opt/warmstart/agent:ro",
        f"{spec.code_dir}:/var/task:ro",
        "/usr:/usr:ro",
    ]
    assert config["Entrypoint"] == ["python3"]  # whatever ENTRYPOINT the image has
    assert config["Cmd"][0] == "-c"
    assert config["WorkingDir"] == "/var/task"
    assert SOCK_PATH in config["Cmd"]
    network = container_config(
        spec.code_dir,
        "/w",
        image="img",
        memory_mb=128,
        ephemeral_storage_mb=512,
        network=True,
        python="python3",
        labels={},
    )
    assert network["HostConfig"]["NetworkMode"] == "bridge"


def test_node_ids_tell_a_dead_node_from_a_live_one() -> None:
    me = local_node_id()
    host, pid, ticks = me.rsplit("/", 2)
    assert host == socket.gethostname()
    assert int(pid) == os.getpid()
    assert node_alive(me)
    assert not node_alive(f"{host}/{pid}/{int(ticks) + 1}")  # the pid now belongs to another
    assert not node_alive(f"{host}/999999999/1")
    assert node_alive("another-host/1/1")  # cannot tell: left alone
    assert node_alive("a-name-without-a-pid")
