"""Cluster-wide concurrency tokens on a real Redis: grants within the limit whatever the
number of nodes and threads, a dead node's tokens back with its lease, blocks that keep the
invoke path off Redis, and Lambda's throttle when the cluster has none left."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from redis_support import RedisServer, RedisStore

from runtime.cluster.members import Member, RedisMembers
from runtime.cluster.tokens import ACCOUNT, MAX_BLOCK, RedisTokens, TokenPool
from runtime.errors import ServiceException, TooManyRequestsException


@pytest.fixture
def tokens(redis_store: RedisStore) -> Iterator[RedisTokens]:
    store = RedisTokens(redis_store.url, prefix=redis_store.prefix)
    yield store
    store.close()


@pytest.fixture
def members(redis_store: RedisStore) -> Iterator[RedisMembers]:
    store = RedisMembers(redis_store.url, prefix=redis_store.prefix)
    yield store
    store.close()


def _alive(members: RedisMembers, *nodes: str, at: float = 100.0) -> None:
    for node in nodes:
        members.beat(Member(id=node, url="http://x", started_at=0.0), at)


def test_grants_stay_within_the_limit(tokens: RedisTokens, members: RedisMembers) -> None:
    _alive(members, "a", "b")
    assert tokens.grant("f", "a", 3, 5, 100.0, 10.0) == 3
    assert tokens.grant("f", "b", 3, 5, 100.0, 10.0) == 2
    assert tokens.grant("f", "b", 1, 5, 100.0, 10.0) == 0
    tokens.give_back("f", "a", 2)
    assert tokens.grant("f", "b", 4, 5, 100.0, 10.0) == 2
    assert tokens.grant("g", "a", 4, 5, 100.0, 10.0) == 4  # scopes apart


def test_a_dead_nodes_tokens_come_back_with_its_lease(
    tokens: RedisTokens, members: RedisMembers
) -> None:
    _alive(members, "a", at=100.0)
    _alive(members, "b", at=105.0)
    assert tokens.grant("f", "a", 2, 2, 105.0, 10.0) == 2
    assert tokens.grant("f", "b", 1, 2, 109.0, 10.0) == 0  # a still holds both
    assert tokens.grant("f", "b", 2, 2, 110.5, 10.0) == 2  # a's lease ran out at 110


def test_racing_threads_never_exceed_the_limit(tokens: RedisTokens, members: RedisMembers) -> None:
    nodes = [f"n{i}" for i in range(8)]
    _alive(members, *nodes)
    got: dict[str, int] = {}
    start = threading.Barrier(len(nodes))

    def take(node: str) -> None:
        start.wait()
        got[node] = sum(tokens.grant("f", node, 1, 10, 100.0, 10.0) for _ in range(5))

    threads = [threading.Thread(target=take, args=(n,)) for n in nodes]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sum(got.values()) == 10


def _pool(
    tokens: RedisTokens, node: str, limit: int, nodes: int = 1, scope: str = "f"
) -> TokenPool:
    return TokenPool(
        tokens,
        node,
        scope_of=lambda name: scope,
        limit_of=lambda s: limit,
        live_nodes=lambda: nodes,
        lease_s=10.0,
        clock=lambda: 100.0,
    )


def test_a_small_limit_holds_exactly_across_nodes(
    tokens: RedisTokens, members: RedisMembers, arun: Callable[..., Any]
) -> None:
    _alive(members, "a", "b", "c")

    async def main() -> None:
        pools = [_pool(tokens, n, limit=2, nodes=3) for n in ("a", "b", "c")]
        held = [await pools[0].admit("f"), await pools[1].admit("f")]
        with pytest.raises(TooManyRequestsException) as refused:
            await pools[2].admit("f")
        assert refused.value.reason == "ReservedFunctionConcurrentInvocationLimitExceeded"
        returning = pools[0].give(held[0])  # a small limit: handed back at once
        assert returning is not None
        await returning
        assert await pools[2].admit("f") == "f"
        for pool in pools:
            await pool.close()

    arun(main())


def test_a_large_limit_takes_blocks_and_stays_off_redis(
    tokens: RedisTokens, members: RedisMembers, arun: Callable[..., Any]
) -> None:
    _alive(members, "a")

    async def main() -> None:
        pool = _pool(tokens, "a", limit=1000, scope=ACCOUNT)
        for _ in range(200):
            scope = await pool.admit("anything")
            pool.give(scope)
        assert pool.grants == 1  # one block, reused by every call
        assert pool.held[ACCOUNT] == MAX_BLOCK
        busy = [await pool.admit("x") for _ in range(40)]
        assert pool.held[ACCOUNT] >= 40
        assert pool.grants == 3
        for scope in busy:
            pool.give(scope)
        await pool.trim()  # spare beyond one block goes back
        assert pool.held[ACCOUNT] == MAX_BLOCK
        other = _pool(tokens, "a2", limit=1000, scope=ACCOUNT)
        _alive(members, "a2")
        assert tokens.grant(ACCOUNT, "a2", 1000, 1000, 100.0, 10.0) == 1000 - MAX_BLOCK
        for _ in range(MAX_BLOCK):
            await pool.admit("x")
        with pytest.raises(TooManyRequestsException) as refused:
            await pool.admit("x")
        assert refused.value.reason == "ConcurrentInvocationLimitExceeded"
        await pool.close()
        await other.close()

    arun(main())


def test_callers_waiting_for_one_grant_share_it(
    tokens: RedisTokens, members: RedisMembers, arun: Callable[..., Any]
) -> None:
    _alive(members, "a")

    async def main() -> None:
        pool = _pool(tokens, "a", limit=1000, scope=ACCOUNT)
        scopes = await asyncio.gather(*(pool.admit("x") for _ in range(MAX_BLOCK)))
        assert scopes == [ACCOUNT] * MAX_BLOCK
        assert pool.grants == 1  # not one Redis trip per waiting caller
        await pool.close()

    arun(main())


def test_with_redis_down_the_account_goes_on_and_a_reservation_refuses(
    own_redis: RedisServer, arun: Callable[..., Any]
) -> None:
    tokens = RedisTokens(own_redis.url, prefix="p")
    members = RedisMembers(own_redis.url, prefix="p")
    _alive(members, "a")

    async def main() -> None:
        account = _pool(tokens, "a", limit=1000, scope=ACCOUNT)
        reserved = _pool(tokens, "a", limit=2, scope="f")
        own_redis.kill()
        # within this node's own limits, the callers that waited on the failed grant too
        scopes = await asyncio.gather(*(account.admit("x") for _ in range(3)))
        assert scopes == [ACCOUNT] * 3
        for scope in scopes:
            account.give(scope)
        with pytest.raises(ServiceException, match="unreachable"):
            await reserved.admit("f")
        own_redis.start()
        assert await reserved.admit("f") == "f"
        await account.close()
        await reserved.close()

    try:
        arun(main())
    finally:
        tokens.close()
        members.close()


def test_a_node_starting_again_under_its_id_holds_nothing(
    tokens: RedisTokens, members: RedisMembers
) -> None:
    _alive(members, "a", "b")
    assert tokens.grant("f", "a", 2, 2, 100.0, 10.0) == 2
    assert tokens.grant(ACCOUNT, "a", 5, 10, 100.0, 10.0) == 5
    assert tokens.grant("f", "b", 1, 2, 100.0, 10.0) == 0
    assert tokens.forget("a") == 2  # "a" was SIGKILLed and started again: its old grants go
    assert tokens.grant("f", "b", 2, 2, 100.0, 10.0) == 2
    assert tokens.grant(ACCOUNT, "b", 10, 10, 100.0, 10.0) == 10
