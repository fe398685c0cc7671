"""Helpers the service tests share: a real server on a free loopback port, boto3 pointed at it,
zips built in memory, and checks that nothing (port, thread, process) outlives a test."""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import os
import shutil
import socket
import stat
import subprocess
import sys
import threading
import time
import zipfile
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit

import helpers
import pytest
from helpers import FUNCTIONS, AwsService, write_toml

from runtime.config import FunctionConfig, PoolConfig
from runtime.configfile import ConfigFile, ServiceConfig
from runtime.engine import Engine
from runtime.service.app import running

T = TypeVar("T")

BASIC = str(FUNCTIONS / "basic")
WARMSTART = str(Path(sys.executable).parent / "warmstart")


def basic(name: str, handler: str = "echo", **fields: Any) -> FunctionConfig:
    """A function on tests/functions/basic (echo, ctx, sleep, flexible, ...)."""
    return FunctionConfig(name=name, handler=f"app.{handler}", code=BASIC, **fields)


def config_of(
    *functions: FunctionConfig, pool: PoolConfig | None = None, **service: Any
) -> ConfigFile:
    return ConfigFile(
        "<test>",
        pool=pool or PoolConfig(),
        functions={f.name: f for f in functions},
        service=ServiceConfig(port=0, **service),
    )


@dataclass
class Service:
    """A running service: its URL, and what the app factory saw."""

    url: str
    engine: Engine | None = None
    app: Any = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def port(self) -> int:
        port = urlsplit(self.url).port
        assert port is not None
        return port


@contextlib.asynccontextmanager
async def serving(config: ConfigFile, **hooks: Any) -> AsyncIterator[Service]:
    """The service on 127.0.0.1, a free port; ``hooks`` go to ``create_app``.

    On exit the port must be closed and the default executor's threads joined.
    """
    from runtime.service.app import Background, create_app

    service = Service("")

    def factory(engine: Engine, cfg: ConfigFile, *, background: Background) -> Any:
        service.engine = engine
        service.app = create_app(engine, cfg, background=background, **hooks)
        return service.app

    async with running(config, "127.0.0.1", 0, app_factory=factory) as url:
        service.url = url
        yield service
    assert not port_open(service.port), f"port {service.port} still accepts connections"
    await asyncio.get_running_loop().shutdown_default_executor()


def port_open(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex(("127.0.0.1", port)) == 0


async def call(fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """A blocking call (boto3) off the event loop that serves it."""
    return await asyncio.to_thread(fn, *args, **kwargs)


@pytest.fixture
def aws_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """boto3 must not read this machine's AWS configuration or reach instance metadata."""
    monkeypatch.setenv("AWS_CONFIG_FILE", "/dev/null")
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", "/dev/null")
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    for name in ("AWS_PROFILE", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"):
        monkeypatch.delenv(name, raising=False)


def aws_client(service: AwsService, url: str, secret: str = "secret", **config: Any) -> Any:
    """A boto3 client of ``service`` at ``url`` signing as AKIDTEST with ``secret``, never
    retrying."""
    import boto3
    import botocore.config

    return boto3.client(
        service,
        endpoint_url=url,
        region_name="us-east-1",
        aws_access_key_id="AKIDTEST",
        aws_secret_access_key=secret,
        config=botocore.config.Config(retries={"max_attempts": 0}, **config),
    )


def lambda_client(url: str, secret: str = "secret", **config: Any) -> Any:
    """A boto3 Lambda client of ``url`` (see :func:`aws_client`)."""
    return aws_client("lambda", url, secret, **config)


@contextlib.asynccontextmanager
async def boto(url: str, service: AwsService = "lambda", **config: Any) -> AsyncIterator[Any]:
    """An :func:`aws_client` of ``service``, closed on exit."""
    client = await call(aws_client, service, url, **config)
    try:
        yield client
    finally:
        client.close()


def make_zip(files: dict[str, str | bytes], links: dict[str, str] | None = None) -> bytes:
    """Zip bytes with ``files`` (name -> content) and symlinks (name -> target)."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, content in files.items():
            archive.writestr(name, content)
        for name, target in (links or {}).items():
            info = zipfile.ZipInfo(name)
            info.create_system = 3
            info.external_attr = (stat.S_IFLNK | 0o777) << 16
            archive.writestr(info, target)
    return buffer.getvalue()


APP = "def handler(event, context):\n    return {'zipped': event}\n"


RECORDER = """\
import json, os

def record(event, context):
    with open(os.environ["OUT"], "a") as f:
        f.write(json.dumps(event) + "\\n")
    return {returns}
"""


@pytest.fixture
def data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The service's durable store lives in the test's directory."""
    path = tmp_path / "data"
    monkeypatch.setenv("WARMSTART_DATA_DIR", str(path))
    return path


#: what the recorders of the event tests answer
RECORDED = '{"recorded": True}'


def recorder(
    tmp_path: Path, name: str = "rec", returns: str = "None"
) -> tuple[FunctionConfig, Path]:
    """A function appending each event it gets as a JSON line to the returned file; it
    answers ``returns`` (Python source)."""
    code = tmp_path / "recorder"
    code.mkdir(exist_ok=True)
    (code / "app.py").write_text(RECORDER.format(returns=returns))
    out = tmp_path / f"{name}.jsonl"
    config = FunctionConfig(
        name=name, handler="app.record", code=str(code), environment={"OUT": str(out)}
    )
    return config, out


def read_lines(path: Path) -> list[Any]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines()]


async def lines(path: Path, count: int, within: float = 10.0) -> list[Any]:
    """The first ``count`` JSON lines of ``path``, waiting at most ``within`` seconds."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        found = read_lines(path)
        if len(found) >= count:
            return found
        await asyncio.sleep(0.02)
    raise AssertionError(f"{path} did not get {count} lines within {within} s")


@pytest.fixture
def no_leaked_threads() -> Iterator[None]:
    """Threads started during the test (executors, boto3) are gone after it."""
    before = set(threading.enumerate())
    yield
    deadline = time.monotonic() + 3.0
    while True:
        left = [t for t in threading.enumerate() if t not in before and t.is_alive()]
        if not left or time.monotonic() > deadline:
            break
        time.sleep(0.02)
    assert not left, f"threads left behind: {left}"


def agents_of(pid: int) -> list[int]:
    """Pids of the live agent processes started by the engine of process ``pid``."""
    return [found for found, _ in helpers.agents_of(pid)]


class ServeProcess:
    """``warmstart serve`` as a real subprocess; its URL is read from the banner it prints."""

    def __init__(self, config_path: Path, *extra: str) -> None:
        self.proc = subprocess.Popen(
            [WARMSTART, "serve", "--config", str(config_path), "--port", "0", *extra],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line.startswith("warmstart: listening on "):
            self.proc.kill()
            _, err = self.proc.communicate(timeout=10)
            pytest.fail(f"warmstart serve did not start: {line!r} {err}")
        self.url = line.rsplit(" ", 1)[-1].strip()

    @property
    def pid(self) -> int:
        return self.proc.pid

    def stop(self, timeout: float = 15.0) -> tuple[int, float]:
        """SIGTERM, then wait: (exit status, seconds it took)."""
        t0 = time.monotonic()
        self.proc.terminate()
        try:
            code = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)
            pytest.fail(f"warmstart serve did not exit within {timeout} s of SIGTERM")
        return code, time.monotonic() - t0

    def close(self) -> None:
        if self.proc.poll() is None:
            self.stop()
        for stream in (self.proc.stdout, self.proc.stderr):
            if stream is not None:
                stream.close()
        deadline = time.monotonic() + 3.0
        while agents_of(self.pid) and time.monotonic() < deadline:
            time.sleep(0.02)
        assert not agents_of(self.pid), "agent processes outlived warmstart serve"


def warmstart(
    *args: str, stdin: str | None = None, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """The ``warmstart`` command with ``args``, its output captured as text."""
    return subprocess.run(
        [WARMSTART, *args], input=stdin, capture_output=True, text=True, env=env, timeout=30
    )


def wait_for(condition: Callable[[], T | None], within: float, what: str) -> T:
    """``condition()``'s first true value, polled; fails after ``within`` seconds."""
    deadline = time.monotonic() + within
    while not (found := condition()):
        assert time.monotonic() < deadline, f"timed out after {within} s waiting for {what}"
        time.sleep(0.05)
    return found


def serve_config(tmp_path: Path, modules: dict[str, str], batch: str, functions: str) -> Path:
    """A ``warmstart serve`` config in ``tmp_path``: ``modules`` (file name -> source) in
    ``tmp_path/code``, a 5 s shutdown, the batch store in ``tmp_path/data`` with the ``batch``
    settings, then ``functions`` (TOML, where ``{code}`` names the code folder)."""
    code = tmp_path / "code"
    code.mkdir()
    for name, source in modules.items():
        (code / name).write_text(source)
    text = (
        f'[service]\nshutdown_timeout_s = 5\n\n[batch]\ndata_dir = "{tmp_path / "data"}"\n'
        f"{batch}\n{functions.replace('{code}', str(code))}"
    )
    return write_toml(tmp_path, text)


def create_queue(client: Any, name: str = "q") -> None:
    """A job queue ``name`` on the service's own compute environment."""
    client.create_job_queue(
        jobQueueName=name,
        priority=1,
        computeEnvironmentOrder=[{"order": 1, "computeEnvironment": "local"}],
    )


def aws_cli() -> str:
    """The AWS CLI: the virtualenv's, else the one on PATH; absent only off CI."""
    here = Path(sys.executable).parent / "aws"
    found = str(here) if here.exists() else shutil.which("aws")
    if found is None:
        if os.environ.get("CI"):
            pytest.fail("the AWS CLI is required on CI")
        pytest.skip("no AWS CLI")
    return found


async def aws_lambda(url: str, *args: str) -> Any:
    """``aws lambda <args>`` against ``url``; its JSON output."""
    env = {
        **os.environ,
        "AWS_ACCESS_KEY_ID": "AKIDTEST",
        "AWS_SECRET_ACCESS_KEY": "secret",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_MAX_ATTEMPTS": "1",
    }
    done = await call(
        subprocess.run,
        [aws_cli(), "--endpoint-url", url, "--output", "json", "lambda", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout) if done.stdout.strip() else None
