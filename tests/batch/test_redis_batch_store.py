"""RedisStore on its own: several nodes racing one Redis, the shared node heartbeats, leases
of long jobs, a Redis SIGKILLed and restarted, a Redis that is down. The behaviour both stores
share is tested in test_batch_store.py and test_batch_arrays.py."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from batch_store_support import make_redis_store, run, status, submit
from helpers import ROOT
from redis_support import RedisServer, need_redis
from redis_support import RedisStore as RedisAddress

from runtime.batch.store.redis_store import RedisStore
from runtime.errors import ServiceException
from runtime.redisdb import nodes_key


@pytest.fixture
def store(redis_store: RedisAddress) -> Iterator[RedisStore]:
    s = make_redis_store(redis_store.url, redis_store.prefix)
    yield s
    s.close()


def test_prefixes_keep_stores_apart(redis_store: RedisAddress) -> None:
    mine = make_redis_store(redis_store.url, redis_store.prefix)
    other = make_redis_store(redis_store.url, f"{redis_store.prefix}-other")
    try:
        job_id = submit(mine)
        assert other.describe_jobs([job_id]) == []
        assert other.claim("A", 2.0) == []
        assert [c.job_id for c in mine.claim("A", 2.0)] == [job_id]
    finally:
        client = redis.Redis.from_url(redis_store.url)
        client.delete(*client.keys(f"{redis_store.prefix}-other:*"))
        client.close()
        other.close()
        mine.close()


def test_the_package_exports_it_on_first_use() -> None:
    from runtime.batch import store as package

    assert package.RedisStore is RedisStore
    assert RedisStore.component == "batch"


# -- several nodes at once --------------------------------------------------------------------


def test_threads_racing_claims_never_share_a_job(redis_store: RedisAddress) -> None:
    first = make_redis_store(redis_store.url, redis_store.prefix)
    jobs = {submit(first, now=float(i)) for i in range(120)}
    claimed: list[list[str]] = [[] for _ in range(6)]
    start = threading.Barrier(len(claimed))

    def node(n: int) -> None:
        mine = RedisStore(redis_store.url, prefix=redis_store.prefix)  # a client of its own
        try:
            start.wait()
            while batch := mine.claim(f"node{n}", 5.0, 3):
                claimed[n] += [c.job_id for c in batch]
        finally:
            mine.close()

    threads = [threading.Thread(target=node, args=(n,)) for n in range(len(claimed))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    every = [job_id for ids in claimed for job_id in ids]
    assert Counter(every).most_common(1)[0][1] == 1  # no job claimed twice
    assert set(every) == jobs
    assert sum(1 for ids in claimed if ids) > 1  # they did race
    assert set(status(first, *list(jobs)[:100])) == {"STARTING"}
    first.close()


CLAIMER = r"""
import sys
from runtime.batch.store.redis_store import RedisStore

store = RedisStore(sys.argv[1], prefix=sys.argv[2])
sys.stdin.readline()  # all start together
while claims := store.claim(sys.argv[3], 5.0, 2):
    for claim in claims:
        print(claim.job_id, claim.attempt, flush=True)
"""


def test_processes_racing_claims_never_share_a_job(redis_store: RedisAddress) -> None:
    store = make_redis_store(redis_store.url, redis_store.prefix)
    jobs = {submit(store, now=float(i)) for i in range(90)}
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", CLAIMER, redis_store.url, redis_store.prefix, f"p{n}"],
            cwd=ROOT,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
        )
        for n in range(3)
    ]
    for proc in procs:
        assert proc.stdin is not None
        proc.stdin.write(b"go\n")
        proc.stdin.flush()
    outputs = [proc.communicate(timeout=60)[0].decode().split("\n") for proc in procs]
    assert [proc.returncode for proc in procs] == [0, 0, 0]
    lines = [line.split() for out in outputs for line in out if line]
    assert Counter(job_id for job_id, _ in lines).most_common(1)[0][1] == 1
    assert {job_id for job_id, _ in lines} == jobs
    assert {attempt for _, attempt in lines} == {"1"}
    store.close()


def test_threads_racing_submits_and_dependencies(redis_store: RedisAddress) -> None:
    root = make_redis_store(redis_store.url, redis_store.prefix)
    parent = submit(root)
    made: list[str] = []
    lock = threading.Lock()

    def node() -> None:
        mine = RedisStore(redis_store.url, prefix=redis_store.prefix)
        try:
            for i in range(15):
                job_id = submit(mine, now=2.0 + i, dependsOn=[{"jobId": parent}])
                with lock:
                    made.append(job_id)
        finally:
            mine.close()

    threads = [threading.Thread(target=node) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert len(made) == 60
    assert len(root.list_jobs(job_queue="q", job_status="PENDING").items) == 60
    (claim,) = root.claim("n1", 100.0)
    run(root, claim, 0, now=100.0)  # every dependent was recorded: all are released
    assert set(status(root, *made)) == {"RUNNABLE"}
    assert len(root.claim("n1", 200.0, 100)) == 60
    root.close()


# -- node heartbeats and leases ---------------------------------------------------------------


def test_heartbeats_are_the_shared_nodes_set(store: RedisStore) -> None:
    client = redis.Redis.from_url(store.url)
    try:
        store.heartbeat("A", 100.0)
        submit(store)
        store.claim("B", 130.5)
        key = nodes_key(store.prefix)
        assert client.zrange(key, 0, -1, withscores=True) == [(b"A", 100.0), (b"B", 130.5)]
        client.zadd(key, {"events-node": 90.0})  # a node the event store saw
        assert store.stale_nodes(150.0, 30.0) == ["A", "events-node"]
        store.recover("A", 151.0)
        assert client.zscore(key, "A") is None
    finally:
        client.close()


def test_a_three_hour_job_is_never_run_twice_while_its_node_beats(store: RedisStore) -> None:
    job_id = submit(store, retryStrategy={"attempts": 3})
    (claim,) = store.claim("A", 0.0)
    store.started(job_id, 1.0)
    for minute in range(1, 181):
        now = minute * 60.0
        store.heartbeat("A", now)
        store.heartbeat("B", now)
        assert store.stale_nodes(now, 90.0) == []
        assert store.claim("B", now, 10) == []
    finish = store.finished(job_id, claim.attempt, 0, None, None, 3 * 3600.0 + 1)
    assert (finish.status, finish.applied) == ("SUCCEEDED", True)
    (attempt,) = store.describe_jobs([job_id])[0].attempts
    assert (attempt.started_at, attempt.stopped_at) == (1000, 10_801_000)


def test_a_silent_node_loses_its_job_to_another(store: RedisStore) -> None:
    job_id = submit(store, retryStrategy={"attempts": 2})
    store.claim("A", 0.0)
    store.started(job_id, 1.0)
    store.heartbeat("A", 60.0)
    store.heartbeat("B", 200.0)
    assert store.stale_nodes(200.0, 90.0) == ["A"]
    recovery = store.recover("A", 200.0)
    assert recovery.requeued == [job_id]
    (again,) = store.claim("B", 201.0)
    assert (again.job_id, again.attempt, again.node) == (job_id, 2, "B")
    assert store.kill_requests("A") == []
    assert not store.finished(job_id, 1, 0, None, None, 202.0).applied  # A's late report
    assert store.finished(job_id, 2, 0, None, None, 203.0).status == "SUCCEEDED"


# -- the server -------------------------------------------------------------------------------


def test_a_job_survives_redis_sigkill_and_restart(own_redis: RedisServer) -> None:
    store = make_redis_store(own_redis.url, "kill")
    queued = submit(store)
    running = submit(store, retryStrategy={"attempts": 2})
    parent = submit(store, arrayProperties={"size": 3})
    (claim,) = store.claim("A", 2.0)
    store.started(claim.job_id, 3.0)
    store.close()
    own_redis.kill()
    own_redis.start()
    again = RedisStore(own_redis.url, prefix="kill")
    try:
        assert status(again, queued, running, parent) == ["RUNNING", "RUNNABLE", "PENDING"]
        assert claim.job_id == queued
        assert again.describe_jobs([queued])[0].started_at == 3000
        assert again.stale_nodes(100.0, 30.0) == ["A"]
        assert again.recover("A", 100.0).failed == [queued]  # one attempt only
        claimed = [c.job_id for c in again.claim("B", 101.0, 10)]
        assert claimed == [running, f"{parent}:0", f"{parent}:1", f"{parent}:2"]
    finally:
        again.close()


def test_a_call_while_redis_is_down_raises_service_exception(own_redis: RedisServer) -> None:
    store = make_redis_store(own_redis.url, "down")
    job_id = submit(store)
    own_redis.kill()
    try:
        with pytest.raises(ServiceException, match="unreachable"):
            submit(store)
        with pytest.raises(ServiceException, match="unreachable"):
            store.claim("A", 2.0)
        with pytest.raises(ServiceException, match="unreachable"):
            store.heartbeat("A", 2.0)
        with pytest.raises(ServiceException, match="unreachable"):
            RedisStore(own_redis.url, prefix="down")
    finally:
        own_redis.start()
    assert status(store, job_id) == ["RUNNABLE"]  # the client reconnects by itself
    assert [c.job_id for c in store.claim("A", 3.0)] == [job_id]
    store.close()


def test_a_server_without_the_append_only_file_is_refused(tmp_path: Path) -> None:
    need_redis()
    server = RedisServer(tmp_path / "volatile", append_only=False).start()
    try:
        with pytest.raises(ServiceException, match="appendonly no"):
            RedisStore(server.url, prefix="v")
        store = make_redis_store(server.url, "v", require_append_only=False)
        assert status(store, submit(store)) == ["RUNNABLE"]
        store.close()
    finally:
        server.stop()
