"""Several ``warmstart serve`` processes on one real Redis, as a user runs a cluster: each a
subprocess of its own with ``--store`` and ``--node-id``, SIGKILLable at any moment.

``cluster`` (fixture): a factory ``cluster(config_text, nodes=3)`` returning a started
:class:`Cluster`; every node and the Redis server are stopped after the test, and no agent
process may outlive its node.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.config import Config
from redis_support import RedisServer, need_redis
from service_support import WARMSTART, agents_of

#: botocore without its own retries: a throttle or an error is seen as it is
NO_RETRIES = Config(retries={"total_max_attempts": 1}, read_timeout=60, connect_timeout=5)


def _store(url: str, node_id: str) -> list[str]:
    return ["--store", url, "--node-id", node_id]


class Node:
    """One ``warmstart serve`` of the cluster."""

    def __init__(self, node_id: str, config: Path, store: str, env: dict[str, str]) -> None:
        self.id = node_id
        self.stderr = config.parent / f"{node_id}.stderr"
        self._err = self.stderr.open("w")
        self.proc = subprocess.Popen(
            [WARMSTART, "serve", "--config", str(config), "--port", "0", *_store(store, node_id)],
            stdout=subprocess.PIPE,
            stderr=self._err,
            text=True,
            env=env,
        )
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line.startswith("warmstart: listening on "):
            self.proc.kill()
            self.proc.wait(10)
            self._err.close()
            pytest.fail(f"node {node_id} did not start: {line!r} {self.stderr.read_text()}")
        self.url = line.rsplit(" ", 1)[-1].strip()

    @property
    def pid(self) -> int:
        return self.proc.pid

    @property
    def alive(self) -> bool:
        return self.proc.poll() is None

    def client(self, service: str = "lambda", **options: Any) -> Any:
        options.setdefault("aws_access_key_id", "AKIDEXAMPLE")
        options.setdefault("aws_secret_access_key", "secret")
        options.setdefault("config", NO_RETRIES)
        return boto3.client(
            service,  # type: ignore[call-overload]
            endpoint_url=self.url,
            region_name="us-east-1",
            **options,
        )

    def get(self, path: str) -> Any:
        return json.loads(self.text(path))

    def text(self, path: str) -> str:
        with urllib.request.urlopen(self.url + path, timeout=10) as response:
            return str(response.read().decode())

    def kill(self) -> None:
        """SIGKILL: nothing of this node's is flushed, closed or handed back."""
        if self.alive:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)

    def stop(self) -> None:
        if self.alive:
            self.proc.terminate()
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        if self.proc.stdout is not None:
            self.proc.stdout.close()
        self._err.close()
        deadline = time.monotonic() + 5
        while agents_of(self.pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        left = agents_of(self.pid)
        for pid in left:
            os.kill(pid, signal.SIGKILL)
        assert not left, f"agent processes outlived node {self.id}: {left}"


class Cluster:
    """Redis and the nodes; ``config`` is the TOML every node reads."""

    def __init__(self, directory: Path, config_text: str, count: int) -> None:
        self.directory = directory
        self.redis = RedisServer(directory / "redis").start()
        self.config = directory / "warmstart.toml"
        self.config.write_text(config_text)
        self.nodes: list[Node] = []
        for i in range(count):
            self.add(f"n{i + 1}")

    def add(self, node_id: str) -> Node:
        env = dict(os.environ)
        env["WARMSTART_DATA_DIR"] = str(self.directory / f"data-{node_id}")
        node = Node(node_id, self.config, self.redis.url, env)
        self.nodes.append(node)
        return node

    def node(self, node_id: str) -> Node:
        return next(n for n in self.nodes if n.id == node_id)

    def live_ids(self, via: Node) -> list[str]:
        return [n["NodeId"] for n in via.get("/warmstart/nodes")["Nodes"]]

    def close(self) -> None:
        try:
            for node in self.nodes:
                node.stop()
        finally:
            self.redis.stop()


def eventually(check: Callable[[], Any], within: float, what: str, step: float = 0.05) -> Any:
    """``check()``'s first truthy value (exceptions count as not yet); fails after ``within``."""
    deadline = time.monotonic() + within
    last: BaseException | None = None
    while True:
        try:
            found = check()
            if found:
                return found
        except Exception as exc:
            last = exc
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {within} s: {what} (last error: {last!r})")
        time.sleep(step)


@pytest.fixture
def cluster(tmp_path: Path, aws_env: None) -> Iterator[Callable[..., Cluster]]:
    need_redis()
    made: list[Cluster] = []

    def make(config_text: str, nodes: int = 3) -> Cluster:
        c = Cluster(tmp_path, config_text, nodes)
        made.append(c)
        return c

    yield make
    for c in made:
        c.close()
