"""What only the Redis rule store has: its keys, writers racing on one server, a server that
dies and comes back, and the append-only check. (Its behaviour beside RuleStore's is the shared
suite in test_batch_schedules.py and test_schedule_cluster.py.)"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import redis
from redis_support import RedisServer, RedisStore, need_redis

from runtime.errors import ServiceException
from runtime.schedules.redis_store import RedisRuleStore
from runtime.schedules.store import MAX_TARGETS, LimitExceededException, Target

T0 = 1_714_564_680.0
FN = "arn:aws:lambda:eu-west-1:123456789012:function:report"


@pytest.fixture
def rules(redis_store: RedisStore) -> Iterator[RedisRuleStore]:
    with RedisRuleStore(redis_store.url, prefix=redis_store.prefix) as store:
        yield store


def keys(store: RedisRuleStore) -> set[str]:
    return {key.decode() for key in store.redis.scan_iter(match=f"{store.prefix}:*")}


def test_the_keys_stay_under_the_prefix_and_go_with_their_rule(rules: RedisRuleStore) -> None:
    rules.put_rule("r:1", "rate(1 minute)", T0)
    rules.put_targets("r:1", [Target("t", FN)])
    assert rules.claim_firing("r:1", T0 + 60, "a", T0 + 60)
    base = f"{rules.prefix}:rules:"
    assert keys(rules) == {
        base + "version",
        base + "names",
        base + "rule:r:1",
        base + "targets:r:1",
        base + "claim:r:1",
    }
    rules.remove_targets("r:1", ["t"])
    assert base + "targets:r:1" not in keys(rules)
    rules.delete_rule("r:1")
    assert keys(rules) == {base + "version"}


def test_racing_writers_keep_the_target_limit(redis_store: RedisStore) -> None:
    """Ten nodes add a target each to one rule at once: five get in, five are refused."""
    stores = [RedisRuleStore(redis_store.url, prefix=redis_store.prefix) for _ in range(10)]
    try:
        stores[0].put_rule("r", "rate(1 hour)", T0)
        barrier = threading.Barrier(len(stores))

        def add(i: int) -> bool:
            barrier.wait(timeout=10)
            try:
                stores[i].put_targets("r", [Target(f"t{i}", FN)])
            except LimitExceededException:
                return False
            return True

        with ThreadPoolExecutor(len(stores)) as pool:
            added = list(pool.map(add, range(len(stores))))
        assert sum(added) == MAX_TARGETS
        assert {t.id for t in stores[0].targets("r")} == {
            f"t{i}" for i, ok in enumerate(added) if ok
        }
    finally:
        for store in stores:
            store.close()


def test_a_dead_server_is_unreachable_and_its_rules_and_claims_come_back(
    own_redis: RedisServer,
) -> None:
    with RedisRuleStore(own_redis.url, prefix="p") as rules:
        rules.put_rule("r", "rate(1 minute)", T0)
        assert rules.claim_firing("r", T0 + 60, "a", T0 + 60)
        own_redis.kill()
        with pytest.raises(ServiceException, match=r"the store at redis://127\.0\.0\.1:\d+/0 is"):
            rules.get_rule("r")
        with pytest.raises(ServiceException, match="unreachable"):
            rules.claim_firing("r", T0 + 60, "b", T0 + 61)
        own_redis.start()
        assert rules.get_rule("r").created_at == T0
        assert not rules.claim_firing("r", T0 + 60, "b", T0 + 61)  # still a's


def test_a_server_without_the_append_only_file_is_refused(tmp_path: Path) -> None:
    need_redis()
    server = RedisServer(tmp_path / "redis", append_only=False).start()
    try:
        with pytest.raises(ServiceException, match="appendonly no"):
            RedisRuleStore(server.url, prefix="p")
        client = redis.Redis.from_url(server.url)
        try:
            with RedisRuleStore(server.url, prefix="p", client=client, require_append_only=False):
                pass
            assert client.ping()  # a client given is left open
        finally:
            client.close()
    finally:
        server.stop()
