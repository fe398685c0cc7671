"""P11: several nodes on one Redis, a capacity-bound handler (it waits 20 ms).

Each node is a ``warmstart serve`` process capped at ``ENVS`` environments (its memory budget
holds that many 128 MB functions), so capacity, not this machine's two cores, is what grows
with the nodes. For 1, 2 and 3 nodes on one fresh Redis each:

- ``drain``: ``N_EVENTS`` Event invocations sent round-robin to the nodes as fast as they are
  accepted; timed from the first 202 until the last event ran (each run appends a line to a
  ledger file): events run per second;
- ``sync``: ``CALLERS_PER_NODE`` closed-loop HTTP callers per node, each sending synchronous
  invokes to its own node (which may forward them): calls answered per second.

The 3-node entries carry ``vs_linear``: the rate over (nodes x the 1-node rate); the target is
0.8 or more. Apart from the nodes, ``token check`` measures what the cluster-wide
concurrency check costs one warm invoke: an embedded engine's p50 with its admission on a
:class:`runtime.cluster.tokens.TokenPool` over the same Redis, against the engine with none,
pinned to one CPU (as P1 is read) and unpinned.
"""

from __future__ import annotations

import asyncio
import os
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from cluster_support import Cluster
from redis_support import REDIS_BINARY, RedisServer

from runtime import Engine, FunctionConfig
from runtime.cluster.tokens import ACCOUNT, RedisTokens, TokenPool

from ._affinity import MODES, affinity
from ._support import EVENT, FUNCTIONS, percentile, size

if REDIS_BINARY is None:
    pytest.skip("no redis-server", allow_module_level=True)

ENVS = 4
N_EVENTS = size(1200, 24)
N_CALLS = size(1500, 24)
CALLERS_PER_NODE = 2 * ENVS
N_LATENCY = size(2000, 20)
ROUNDS = size(5, 1)
#: events/s and calls/s measured so far, by (kind, nodes)
RATES: dict[tuple[str, int], float] = {}

APP = textwrap.dedent(
    """
    import os, time

    def wait(event, context):
        time.sleep(0.02)
        if "n" in event:
            with open(os.environ["LEDGER"], "a") as f:
                f.write("%s\\n" % event["n"])
        return event
    """
)


def _config(directory: Path) -> str:
    code = directory / "code"
    code.mkdir(exist_ok=True)
    (code / "app.py").write_text(APP)
    return textwrap.dedent(
        f"""
        [service]
        shutdown_timeout_s = 5

        [pool]
        memory_budget_mb = {ENVS * 128}

        [batch]
        enabled = false

        [functions.wait]
        handler = "app.wait"
        code = "{code}"
        memory_mb = 128
        timeout_s = 30
        environment = {{ LEDGER = "{directory / "ledger.txt"}" }}
        """
    )


def _ran(directory: Path) -> int:
    path = directory / "ledger.txt"
    if not path.exists():
        return 0
    with path.open("rb") as f:
        return sum(1 for _ in f)


async def _post(session: aiohttp.ClientSession, url: str, body: bytes, kind: str) -> int:
    headers = {"X-Amz-Invocation-Type": kind}
    path = "/2015-03-31/functions/wait/invocations"
    async with session.post(url + path, data=body, headers=headers) as response:
        await response.read()
        return response.status


async def _drain(c: Cluster, directory: Path) -> float:
    urls = [n.url for n in c.nodes]
    async with aiohttp.ClientSession() as session:
        for url in urls:  # warm each node's path (and its function) first, untimed
            assert await _post(session, url, b"{}", "RequestResponse") == 200
        t0 = time.monotonic()
        statuses = await asyncio.gather(
            *(
                _post(session, urls[i % len(urls)], b'{"n": %d}' % i, "Event")
                for i in range(N_EVENTS)
            )
        )
    assert set(statuses) == {202}
    while _ran(directory) < N_EVENTS:
        await asyncio.sleep(0.01)
        assert time.monotonic() - t0 < 120, "the events did not drain"
    return N_EVENTS / (time.monotonic() - t0)


async def _sync(c: Cluster) -> float:
    urls = [n.url for n in c.nodes]
    remaining = N_CALLS
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as session:

        async def caller(url: str) -> None:
            nonlocal remaining
            while remaining > 0:
                remaining -= 1
                assert await _post(session, url, EVENT, "RequestResponse") == 200

        for url in urls:
            await _post(session, url, EVENT, "RequestResponse")
        t0 = time.monotonic()
        await asyncio.gather(*(caller(url) for url in urls for _ in range(CALLERS_PER_NODE)))
    return N_CALLS / (time.monotonic() - t0)


@pytest.mark.parametrize("nodes", [1, 2, 3])
@pytest.mark.parametrize("kind", ["drain", "sync"])
def test_p11_scale(
    benchmark: Any,
    loop: asyncio.AbstractEventLoop,
    tmp_path: Path,
    kind: str,
    nodes: int,
) -> None:
    c = Cluster(tmp_path, _config(tmp_path), nodes)
    try:
        rates: list[float] = []

        def one_round() -> None:
            (tmp_path / "ledger.txt").unlink(missing_ok=True)
            run = _drain(c, tmp_path) if kind == "drain" else _sync(c)
            rates.append(loop.run_until_complete(run))

        benchmark.group = f"P11-cluster-{kind}"
        benchmark.extra_info.update(figure="P11", kind=kind, nodes=nodes, envs_per_node=ENVS)
        benchmark.pedantic(one_round, rounds=ROUNDS)
    finally:
        c.close()
    rate = sorted(rates)[len(rates) // 2]
    RATES[kind, nodes] = rate
    benchmark.extra_info["per_second"] = round(rate, 1)
    capacity = nodes * ENVS / 0.02
    benchmark.extra_info["vs_capacity"] = round(rate / capacity, 3)
    single = RATES.get((kind, 1))
    if single and nodes > 1:
        benchmark.extra_info["vs_linear"] = round(rate / (nodes * single), 3)


@pytest.fixture(scope="module")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    server = RedisServer(tmp_path_factory.mktemp("redis")).start()
    try:
        yield server.url
    finally:
        server.stop()


@pytest.fixture(scope="module")
def engine(loop: asyncio.AbstractEventLoop) -> Iterator[Engine]:
    engine = Engine()
    loop.run_until_complete(engine.start())
    config = FunctionConfig(name="noop", handler="app.handler", code=str(FUNCTIONS / "noop"))
    loop.run_until_complete(engine.register(config))
    yield engine
    loop.run_until_complete(engine.close())


@pytest.mark.parametrize("mode", MODES)
def test_p11_token_check(
    benchmark: Any,
    loop: asyncio.AbstractEventLoop,
    engine: Engine,
    redis_url: str,
    mode: str,
) -> None:
    """Rounds of the engine without and with the token pool, alternating, so that neither
    side gets the machine's quieter moments; p50 and p99 of each side's pooled calls."""
    tokens = RedisTokens(redis_url, prefix=f"bench{os.getpid()}{mode}")
    pool = TokenPool(
        tokens,
        "bench-node",
        scope_of=lambda name: ACCOUNT,
        limit_of=lambda scope: engine.pool.account_concurrency,
        live_nodes=lambda: 1,
        lease_s=10.0,
        clock=time.time,
    )
    samples: dict[str, list[float]] = {"engine": [], "token check": []}

    async def run_round(role: str, keep: bool = True) -> None:
        engine.admission = pool if role == "token check" else None
        for _ in range(N_LATENCY):
            t0 = time.perf_counter()
            await engine.invoke("noop", EVENT)
            if keep:
                samples[role].append((time.perf_counter() - t0) * 1e6)

    async def both() -> None:
        await run_round("engine")
        await run_round("token check")

    try:
        with affinity(mode):
            loop.run_until_complete(run_round("token check", keep=False))  # the first block
            loop.run_until_complete(run_round("engine", keep=False))
            benchmark.group = f"P11-token-check-{mode}"
            benchmark.extra_info.update(figure="P11", mode=mode)
            benchmark.pedantic(lambda: loop.run_until_complete(both()), rounds=ROUNDS)
    finally:
        engine.admission = None
        loop.run_until_complete(pool.close())
        tokens.close()
    figures = {
        role: (percentile(found, 0.5), percentile(found, 0.99)) for role, found in samples.items()
    }
    (base, base99), (checked, checked99) = figures["engine"], figures["token check"]
    benchmark.extra_info.update(
        engine_p50_us=round(base, 2),
        engine_p99_us=round(base99, 2),
        tokens_p50_us=round(checked, 2),
        tokens_p99_us=round(checked99, 2),
        added_us=round(checked - base, 2),
        grants=pool.grants,
        calls_with_tokens=N_LATENCY * (ROUNDS + 1),
    )
