"""A real ``redis-server`` for the tests: one per session on a free loopback port with a
temporary directory and the append-only file on, and a fresh key prefix per test.

``redis_server`` (session): the server, or a skip when no ``redis-server`` binary is installed
(under ``CI=true`` that is a failure: ``make test`` installs Debian's package). Tests that kill
Redis start a :class:`RedisServer` of their own (``own_redis``) and restart it on its file.

``redis_store`` (per test): ``(url, prefix)`` with a prefix no other test uses; the test's keys
are deleted after it.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import NamedTuple

import pytest
import redis

REDIS_BINARY = shutil.which("redis-server") or shutil.which("valkey-server")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class RedisServer:
    """``redis-server`` on 127.0.0.1:``port`` with its files in ``directory``; ``kill`` is
    SIGKILL, ``start`` again reads the append-only file back."""

    def __init__(
        self, directory: Path, *, port: int | None = None, append_only: bool = True
    ) -> None:
        if REDIS_BINARY is None:
            raise RuntimeError("no redis-server on PATH")
        self.directory = directory
        self.port = port or free_port()
        self.append_only = append_only
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> RedisServer:
        assert REDIS_BINARY is not None
        self.directory.mkdir(parents=True, exist_ok=True)
        args = [
            REDIS_BINARY,
            "--port", str(self.port),
            "--bind", "127.0.0.1",
            "--dir", str(self.directory),
            "--save", "",
            "--appendonly", "yes" if self.append_only else "no",
            "--appendfsync", "everysec",
            "--daemonize", "no",
            "--logfile", str(self.directory / "redis.log"),
        ]  # fmt: skip
        self.process = subprocess.Popen(args, stdin=subprocess.DEVNULL)
        client = redis.Redis(port=self.port, socket_connect_timeout=0.5)
        try:
            deadline = time.monotonic() + 10
            while True:
                try:
                    if client.ping():
                        # a restart answers LOADING until the file is read back
                        return self
                except (redis.ConnectionError, redis.BusyLoadingError):
                    if self.process.poll() is not None or time.monotonic() > deadline:
                        log = (self.directory / "redis.log").read_text(errors="replace")
                        raise RuntimeError(f"redis-server did not start:\n{log[-2000:]}") from None
                    time.sleep(0.02)
        finally:
            client.close()

    def kill(self) -> None:
        """SIGKILL: what was answered is in the append-only file, nothing else is."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(10)
        self.process = None

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)
        self.process = None


class RedisStore(NamedTuple):
    """The server's URL and a key prefix of this test's own."""

    url: str
    prefix: str


def need_redis() -> None:
    if REDIS_BINARY is None:
        if os.environ.get("CI"):
            pytest.fail("redis-server is not installed (make test installs it under CI)")
        pytest.skip("redis-server is not installed")


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    need_redis()
    directory = Path(tempfile.mkdtemp(prefix="warmstart-redis-"))
    server = RedisServer(directory).start()
    try:
        yield server
    finally:
        server.stop()
        shutil.rmtree(directory, ignore_errors=True)


@pytest.fixture
def redis_store(redis_server: RedisServer) -> Iterator[RedisStore]:
    prefix = f"t{uuid.uuid4().hex[:12]}"
    yield RedisStore(redis_server.url, prefix)
    client = redis.Redis.from_url(redis_server.url)
    try:
        keys = list(client.scan_iter(match=f"{prefix}:*", count=1000))
        if keys:
            client.delete(*keys)
    finally:
        client.close()


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[RedisServer]:
    """A server of this test's own, to kill and start again."""
    need_redis()
    server = RedisServer(tmp_path / "redis").start()
    try:
        yield server
    finally:
        server.stop()
