"""P5: HTTP Invoke API throughput, against a bare aiohttp handler returning the same bytes.

Both servers run as processes of their own on loopback: ``warmstart serve`` with a no-op function
(bench/functions/noop), and a bare aiohttp app on uvloop whose one handler reads the body and
answers with the bytes the no-op function returns.  The load generator is an aiohttp client in
this process: a closed loop of 64 callers over 64 connections, the same for both, in the same
run.  bench/report.py reads the throughput as ``extra_info["ops_per_round"]`` over the
median round time.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from ._support import EVENT, FUNCTIONS, callers, size

N_REQUESTS = size(3000, 64)
ROUNDS = size(5, 1)
CONNECTIONS = 64
#: what the no-op function answers to EVENT (orjson's compact form)
ANSWER = b'{"key":"value","n":1}'
PATH = "/2015-03-31/functions/noop/invocations"
HEADERS = {"Content-Type": "application/json"}

BARE_APP = f"""
import asyncio, sys
import uvloop
from aiohttp import web

ANSWER = {ANSWER!r}

async def invoke(request):
    await request.read()
    return web.Response(body=ANSWER, content_type="application/json")

async def main():
    app = web.Application()
    app.router.add_post({PATH!r}, invoke)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    host, port = runner.addresses[0][:2]
    print(f"warmstart: listening on http://{{host}}:{{port}}", flush=True)
    await asyncio.Event().wait()

uvloop.run(main())
"""

CONFIG = f"""
[service]
shutdown_timeout_s = 5

[functions.noop]
handler = "app.handler"
code = "{FUNCTIONS / "noop"}"
reserved_concurrency = 2

[pool]
max_queue = 128
"""


class Server:
    """A server process that prints ``warmstart: listening on URL`` when it is ready."""

    def __init__(self, argv: list[str]) -> None:
        self.proc = subprocess.Popen(argv, stdout=subprocess.PIPE, text=True)
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if "listening on" not in line:
            self.close()
            raise RuntimeError(f"{argv[:3]} did not start: {line!r}")
        self.url = line.rsplit(" ", 1)[-1].strip()

    def close(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)
        if self.proc.stdout is not None:
            self.proc.stdout.close()


@pytest.fixture(scope="module")
def warmstart_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    config = tmp_path_factory.mktemp("p5") / "warmstart.toml"
    config.write_text(CONFIG)
    warmstart = str(Path(sys.executable).parent / "warmstart")
    server = Server([warmstart, "serve", "--config", str(config), "--port", "0"])
    yield server.url
    server.close()


@pytest.fixture(scope="module")
def bare_url() -> Iterator[str]:
    server = Server([sys.executable, "-c", BARE_APP])
    yield server.url
    server.close()


async def closed_loop(url: str, n_requests: int) -> None:
    """``n_requests`` POSTs of EVENT from 64 callers over 64 connections; every answer checked."""
    connector = aiohttp.TCPConnector(limit=CONNECTIONS)
    target = url + PATH
    async with aiohttp.ClientSession(connector=connector) as session:

        async def call() -> None:
            async with session.post(target, data=EVENT, headers=HEADERS) as resp:
                body = await resp.read()
            if resp.status != 200 or body != ANSWER:
                raise AssertionError(f"{url}: {resp.status} {body[:200]!r}")

        await callers(CONNECTIONS, n_requests, call)


def _throughput(benchmark: Any, loop: asyncio.AbstractEventLoop, role: str, url: str) -> None:
    def run_round() -> None:
        loop.run_until_complete(closed_loop(url, N_REQUESTS))

    benchmark.group = "P5-http-invoke"
    benchmark.extra_info.update(
        figure="P5", role=role, ops_per_round=N_REQUESTS, connections=CONNECTIONS
    )
    benchmark.pedantic(run_round, rounds=ROUNDS, warmup_rounds=1)


def test_p5_warmstart(benchmark: Any, loop: asyncio.AbstractEventLoop, warmstart_url: str) -> None:
    _throughput(benchmark, loop, "warmstart", warmstart_url)


def test_p5_bare_aiohttp(benchmark: Any, loop: asyncio.AbstractEventLoop, bare_url: str) -> None:
    _throughput(benchmark, loop, "bare aiohttp", bare_url)
