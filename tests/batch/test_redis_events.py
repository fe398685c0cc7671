"""The Redis event store where it differs from SQLite: several nodes (threads, processes)
racing for one queue, a Redis killed and started again, a Redis that is down, and the node
heartbeats it shares with the batch store. What both stores do alike is in
test_batch_events.py, run against each."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import redis
from helpers import ROOT
from redis_support import RedisServer, RedisStore, need_redis

from runtime.asyncinvoke import model as ev
from runtime.asyncinvoke.model import AsyncEvent, EventInvokeConfig
from runtime.asyncinvoke.redis_store import RedisEventStore
from runtime.errors import ServiceException
from runtime.redisdb import nodes_key


@pytest.fixture
def store(redis_store: RedisStore) -> Iterator[RedisEventStore]:
    with RedisEventStore(redis_store.url, prefix=redis_store.prefix) as s:
        yield s


def drain(store: RedisEventStore, node: str, now: float, limit: int) -> list[AsyncEvent]:
    """Claim for ``node`` until nothing is due."""
    got: list[AsyncEvent] = []
    while True:
        claim = store.claim_events(node, now, limit)
        assert claim.expired == []
        if not claim.events:
            return got
        got.extend(claim.events)


def in_threads(count: int, fn: Callable[[int], None]) -> None:
    """``fn(0)`` ... ``fn(count - 1)`` started together, each in a thread; their errors fail
    the test."""
    start = threading.Barrier(count)
    errors: list[BaseException] = []

    def run(i: int) -> None:
        try:
            start.wait(10)
            fn(i)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(count)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not any(t.is_alive() for t in threads)
    assert errors == []


def test_threads_racing_for_the_queue_never_share_an_event(
    store: RedisEventStore, redis_store: RedisStore
) -> None:
    ids = [f"e{i}" for i in range(600)]
    for i, event_id in enumerate(ids):
        store.put_event("f", b"{}", float(i % 7), request_id=event_id)
    # half the claimers share this store's client, half have a connection of their own
    others = [RedisEventStore(redis_store.url, prefix=redis_store.prefix) for _ in range(4)]
    claimed: dict[int, list[AsyncEvent]] = {}

    def claimer(i: int) -> None:
        mine = store if i < 4 else others[i - 4]
        claimed[i] = drain(mine, f"n{i}", 10.0, 3)

    try:
        in_threads(8, claimer)
    finally:
        for other in others:
            other.close()
    every = [e.id for events in claimed.values() for e in events]
    assert sorted(every) == sorted(ids)  # each exactly once
    for i, events in claimed.items():
        assert {(e.node, e.state, e.invocations) for e in events} <= {(f"n{i}", ev.INFLIGHT, 1)}
    assert sum(store.recover(f"n{i}", 20.0).events for i in range(8)) == 600


# Waits for the test's go, claims for its node until nothing is due, prints the ids.
CLAIMER = r"""
import sys, time
import redis
from runtime.asyncinvoke.redis_store import RedisEventStore

url, prefix, node = sys.argv[1:]
client = redis.Redis.from_url(url)
while not client.exists(prefix + ":test:go"):
    time.sleep(0.001)
with RedisEventStore(url, prefix=prefix) as store:
    ids = []
    while events := store.claim_events(node, 10.0, 3).events:
        ids.extend(e.id for e in events)
print(" ".join(ids))
"""


def test_processes_racing_for_the_queue_never_share_an_event(
    store: RedisEventStore, redis_store: RedisStore
) -> None:
    ids = [f"e{i}" for i in range(1500)]
    for i, event_id in enumerate(ids):
        store.put_event("f", b"{}", float(i % 5), request_id=event_id)
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", CLAIMER, redis_store.url, redis_store.prefix, f"p{i}"],
            cwd=ROOT,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
            stdout=subprocess.PIPE,
        )
        for i in range(3)
    ]
    client = redis.Redis.from_url(redis_store.url)
    try:
        time.sleep(0.5)  # let them reach their wait (a late one only races less)
        client.set(f"{redis_store.prefix}:test:go", 1)
        outputs = [p.communicate(timeout=60)[0].decode().split() for p in procs]
    finally:
        client.close()
        for p in procs:
            p.kill()
            p.wait()
    assert [p.returncode for p in procs] == [0, 0, 0]
    every = [event_id for out in outputs for event_id in out]
    assert sorted(every) == sorted(ids)
    # each process's claims are held under its node, and only there
    assert [store.recover(f"p{i}", 20.0).events for i in range(3)] == [len(o) for o in outputs]


def test_one_request_id_put_at_once_from_many_threads_is_one_event(
    store: RedisEventStore, redis_store: RedisStore
) -> None:
    answers: dict[int, AsyncEvent] = {}

    def put(i: int) -> None:
        answers[i] = store.put_event("f", f'{{"n": {i}}}'.encode(), float(i), request_id="same")

    in_threads(8, put)
    assert len({(e.payload, e.created_at) for e in answers.values()}) == 1
    (event,) = store.claim_events("n1", 100.0, 10).events
    assert (event.id, event.payload) == ("same", answers[0].payload)
    again = store.put_event("f", b"{}", 200.0, request_id="same")
    assert (again.state, again.node, again.invocations) == (ev.INFLIGHT, "n1", 1)
    client = redis.Redis.from_url(redis_store.url)
    try:
        assert client.get(f"{redis_store.prefix}:events:seq") == b"1"
    finally:
        client.close()


def test_a_failure_report_that_lost_its_claim_to_a_recovery_changes_nothing(
    store: RedisEventStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    store.put_event("f", b"{}", 0.0, request_id="e")
    store.claim_events("A", 1.0)
    read = store._get

    def read_then_lose(event_id: str) -> AsyncEvent:
        event = read(event_id)
        # between A's read and its write: A is found stale, B takes the event
        store.recover("A", 2.0)
        store.claim_events("B", 2.0)
        return event

    monkeypatch.setattr(store, "_get", read_then_lose)
    after = store.event_failed("e", "late", 3.0)
    assert (after.state, after.node, after.invocations, after.retries, after.error) == (
        ev.INFLIGHT,
        "B",
        2,
        0,
        None,
    )
    monkeypatch.undo()
    mine = store.event_failed("e", "boom", 4.0)  # B's own report applies
    assert (mine.state, mine.next_attempt_at, mine.retries) == (ev.DUE, 64.0, 1)


def test_done_events_leave_no_keys(store: RedisEventStore, redis_store: RedisStore) -> None:
    for name in ("a", "b", "c"):
        store.put_event("f", b"{}", 0.0, request_id=name, max_retries=0)
    store.claim_events("n1", 0.0, 2)
    store.event_failed("a", "x", 1.0)  # dead
    for name in ("a", "b", "c"):  # dead, in flight, due
        store.event_done(name)
    store.event_done("never")
    assert store.claim_events("n1", 10.0).events == []
    client = redis.Redis.from_url(redis_store.url)
    try:
        keys = sorted(k.decode() for k in client.scan_iter(match=f"{redis_store.prefix}:*"))
    finally:
        client.close()
    assert keys == [f"{redis_store.prefix}:events:seq", nodes_key(redis_store.prefix)]


def test_heartbeats_are_the_node_set_shared_with_the_batch_store(
    store: RedisEventStore, redis_store: RedisStore
) -> None:
    key = nodes_key(redis_store.prefix)
    assert key == f"{redis_store.prefix}:nodes:seen"
    store.claim_events("events@n1", 5.0)
    store.heartbeat("events@n2", 9.5)
    client = redis.Redis.from_url(redis_store.url)
    try:
        client.zadd(key, {"n3+1": 1.0})  # a batch runner's beat
        assert client.zscore(key, "events@n1") == 5.0
        assert store.stale_nodes(10.0, 4.0) == ["events@n1", "n3+1"]
        assert store.stale_nodes(10.0, 5.0) == ["n3+1"]  # seen exactly at the limit: not stale
        store.recover("n3+1", 10.0, forget=False)
        assert client.zscore(key, "n3+1") == 1.0
        store.recover("n3+1", 10.0)
        assert client.zscore(key, "n3+1") is None
    finally:
        client.close()


def test_events_survive_redis_killed_and_started_again(own_redis: RedisServer) -> None:
    prefix = "kill"
    with RedisEventStore(own_redis.url, prefix=prefix) as store:
        store.put_event_invoke_config(
            "f", EventInvokeConfig(maximum_retry_attempts=0), 1_700_000_000.5
        )
        for name in ("dead", "inflight", "due"):
            store.put_event(
                "f", b'{"k": "' + name.encode() + b'"}', 1_700_000_000.5, request_id=name
            )
        store.claim_events("A", 1_700_000_001.25, 2)
        store.event_failed("dead", "Unhandled", 1_700_000_002.75)
        own_redis.kill()
        own_redis.start()
        # the same store, reconnected, and a fresh one, see it all in its state
        assert [e.id for e in store.dlq_list()] == ["dead"]
    with RedisEventStore(own_redis.url, prefix=prefix) as store:
        (dead,) = store.dlq_list()
        assert (dead.condition, dead.next_attempt_at, dead.invocations, dead.error) == (
            ev.RETRIES_EXHAUSTED,
            1_700_000_002.75,
            1,
            "Unhandled",
        )
        assert store.get_event_invoke_config("f").maximum_retry_attempts == 0
        assert store.stale_nodes(1_700_000_010.0, 1.0) == ["A"]
        assert store.recover("A", 1_700_000_010.0).events == 1
        claim = store.claim_events("B", 1_700_000_010.0)
        assert [(e.id, e.invocations, e.max_retries, e.payload) for e in claim.events] == [
            ("due", 1, 0, b'{"k": "due"}'),  # due since before the kill
            ("inflight", 2, 0, b'{"k": "inflight"}'),  # due again at the recovery
        ]


def test_a_redis_that_is_down_fails_calls_and_a_restart_heals(own_redis: RedisServer) -> None:
    with RedisEventStore(own_redis.url, prefix="down") as store:
        store.put_event("f", b"{}", 1.0, request_id="e")
        own_redis.kill()
        with pytest.raises(ServiceException, match="is unreachable"):
            store.claim_events("n1", 2.0)
        with pytest.raises(ServiceException, match="is unreachable"):
            store.put_event("f", b"{}", 2.0, request_id="lost")
        own_redis.start()
        (event,) = store.claim_events("n1", 3.0).events  # the failed calls did nothing
        assert (event.id, event.invocations) == ("e", 1)
        assert store.put_event("f", b"{}", 4.0, request_id="later").state == ev.DUE


def test_a_server_without_the_append_only_file_is_refused(tmp_path: Path) -> None:
    need_redis()
    server = RedisServer(tmp_path / "redis", append_only=False).start()
    try:
        with pytest.raises(ServiceException, match="appendonly no"):
            RedisEventStore(server.url)
        with RedisEventStore(server.url, require_append_only=False) as store:
            assert store.put_event("f", b"{}", 1.0).state == ev.DUE
    finally:
        server.stop()
