"""The same random run on both stores gives the same answers, call for call: submits with
dependencies (whole, N_TO_N, SEQUENTIAL) and arrays, claims within capacity, starts, ends with
retries, cancels, terminations, recoveries, blocked marks; then every job, listing, demand and
kill order compared. Job ids are made the same in both runs (uuid4 replaced by a counter)."""

from __future__ import annotations

import random
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import msgspec
import pytest
from batch_store_support import AnyStore, define, make_queue, make_redis_store, make_store
from redis_support import RedisStore as RedisAddress

from runtime.batch import ClientException, SubmitJobRequest, UpdateJobQueueRequest, parse
from runtime.batch.model import JOB_STATUSES

NODES = ("A", "B", "C")


def scripted_ids(monkeypatch: pytest.MonkeyPatch) -> Callable[[], None]:
    """Make uuid4 count from 1 again each time the returned function is called."""
    counter = [0]

    def fake() -> uuid.UUID:
        counter[0] += 1
        return uuid.UUID(int=counter[0])

    monkeypatch.setattr(uuid, "uuid4", fake)

    def reset() -> None:
        counter[0] = 0

    return reset


def play(store: AnyStore, seed: int) -> list[Any]:
    """Run ``seed``'s random script on ``store``; every answer (or error) in order."""
    rng = random.Random(seed)
    out: list[Any] = []
    define(store, "r3", retryStrategy={"attempts": 3})
    define(
        store,
        "host",
        retryStrategy={
            "attempts": 2,
            "evaluateOnExit": [
                {"onStatusReason": "Host EC2*", "action": "RETRY"},
                {"onExitCode": "2", "action": "EXIT"},
            ],
        },
    )
    make_queue(store, "hi", priority=5)
    jobs: list[str] = []
    arrays: dict[str, int] = {}
    claimed: list[tuple[str, int]] = []
    for step in range(120):
        now = float(step)
        out.append(_step(store, rng, now, jobs, arrays, claimed))
    out.append(_snapshot(store, jobs))
    return out


def _step(
    store: AnyStore,
    rng: random.Random,
    now: float,
    jobs: list[str],
    arrays: dict[str, int],
    claimed: list[tuple[str, int]],
) -> Any:
    action = rng.choice(
        ["submit"] * 4 + ["claim"] * 3 + ["end"] * 3 + ["start", "cancel", "terminate", "other"]
    )
    try:
        if action == "submit":
            return _submit(store, rng, now, jobs, arrays)
        if action == "claim":
            limit = rng.randint(1, 4)
            fits = rng.choice([{}, {"vcpus": 2.0, "memory_mib": 4096, "gpus": 0}])
            claims = store.claim(rng.choice(NODES), now, limit, **fits)  # type: ignore[arg-type]
            claimed += [(c.job_id, c.attempt) for c in claims]
            return [msgspec.to_builtins(c) for c in claims]
        if action == "start" and claimed:
            job_id, attempt = rng.choice(claimed)
            return store.started(job_id, now, attempt)
        if action == "end" and claimed:
            job_id, attempt = claimed.pop(rng.randrange(len(claimed)))
            code = rng.choice([0, 0, 1, 2, None])
            log = rng.choice([b"", b"out" * rng.randint(1, 5)])
            return store.finished(job_id, attempt, code, None, None, now, log=log)
        if action == "cancel" and jobs:
            return store.cancel_job(rng.choice(jobs), "cancelled", now)
        if action == "terminate" and jobs:
            return store.terminate_job(rng.choice(jobs), "terminated", now)
        if action == "other":
            return _other(store, rng, now)
    except ClientException as exc:
        return ("error", str(exc))
    return None


def _submit(
    store: AnyStore, rng: random.Random, now: float, jobs: list[str], arrays: dict[str, int]
) -> str:
    data: dict[str, Any] = {
        "jobName": "j",
        "jobQueue": rng.choice(["q", "hi"]),
        "jobDefinition": rng.choice(["def", "r3", "host"]),
    }
    size = rng.choice([None, None, None, 2, 3])
    deps: list[dict[str, Any]] = []
    if jobs and rng.random() < 0.5:
        deps.append({"jobId": rng.choice(jobs)})
    if size is not None:
        data["arrayProperties"] = {"size": size}
        same = [a for a, n in arrays.items() if n == size]
        if same and rng.random() < 0.5:
            deps.append({"jobId": rng.choice(same), "type": "N_TO_N"})
        if rng.random() < 0.4:
            deps.append({"type": "SEQUENTIAL"})
    if rng.random() < 0.3:
        data["containerOverrides"] = {"vcpus": rng.choice([1, 2, 4])}
    if deps:
        data["dependsOn"] = deps
    job_id = store.submit_job(parse(SubmitJobRequest, data), now).job_id
    jobs.append(job_id)
    if size is not None:
        arrays[job_id] = size
        jobs += [f"{job_id}:{i}" for i in range(size)]
    return job_id


def _other(store: AnyStore, rng: random.Random, now: float) -> Any:
    choice = rng.randrange(5)
    if choice == 0:
        node = rng.choice(NODES)
        return store.recover(node, now)
    if choice == 1:
        return store.mark_blocked(1.5, 4096, 0, "too big")
    if choice == 2:
        return [store.kill_requests(node) for node in NODES]
    if choice == 3:
        state = rng.choice(["ENABLED", "DISABLED"])
        request = UpdateJobQueueRequest(job_queue="hi", state=state)
        return msgspec.to_builtins(store.update_job_queue(request, now))
    return store.demand()


def _snapshot(store: AnyStore, jobs: list[str]) -> Any:
    details = []
    for i in range(0, len(jobs), 100):
        details += [msgspec.to_builtins(d) for d in store.describe_jobs(jobs[i : i + 100])]
    listings = []
    for queue in ("q", "hi"):
        for state in JOB_STATUSES:
            page = store.list_jobs(job_queue=queue, job_status=state, max_results=3)
            listings.append(([s.job_id for s in page.items], page.next_token))
    logs = [(store.read_log(j), store.read_log(j, 1)) for j in jobs]
    return details, listings, logs, store.demand(), store.stale_nodes(1000.0, 0.0)


@pytest.mark.parametrize("seed", range(25))
def test_both_stores_answer_alike(
    seed: int, tmp_path: Path, redis_store: RedisAddress, monkeypatch: pytest.MonkeyPatch
) -> None:
    reset = scripted_ids(monkeypatch)
    sqlite = make_store(tmp_path / "batch.sqlite3")
    try:
        expected = play(sqlite, seed)
    finally:
        sqlite.close()
    reset()
    shared = make_redis_store(redis_store.url, redis_store.prefix)
    try:
        got = play(shared, seed)
    finally:
        shared.close()
    for i, (a, b) in enumerate(zip(expected, got, strict=True)):
        assert a == b, f"step {i} differs"
