"""Both batch stores (SqliteStore and RedisStore, ids ``sqlite`` and ``redis``): job
definitions, queues, every job transition, retries, cancel/terminate, recovery after a dead
runner, listings. Time is always passed in. The tests of the SQLite file itself run on SQLite
only.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import msgspec
import pytest
from batch_store_support import (
    BACKENDS,
    AnyStore,
    define,
    job,
    make_queue,
    make_store,
    open_store,
    reopen,
    run,
    run_next,
    status,
    submit,
)

from runtime.batch import (
    ClientException,
    Finish,
    SqliteStore,
    UpdateJobQueueRequest,
    default_data_dir,
    default_store_path,
    rules,
)
from runtime.batch.store import SCHEMA_VERSION
from runtime.errors import ServiceException


@pytest.fixture(params=BACKENDS)
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[AnyStore]:
    yield from open_store(request.param, request, tmp_path)


@pytest.fixture
def sqlite_store(tmp_path: Path) -> Iterator[SqliteStore]:
    s = make_store(tmp_path / "batch.sqlite3")
    yield s
    s.close()


# -- the file ---------------------------------------------------------------------------------


def test_file_settings(sqlite_store: SqliteStore) -> None:
    store = sqlite_store
    db = sqlite3.connect(store.path)
    try:
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    finally:
        db.close()
    assert store.schema_version == SCHEMA_VERSION


def test_reopen_keeps_everything_and_a_second_connection_reads(store: AnyStore) -> None:
    job_id = submit(store)
    other = reopen(store)  # e.g. the CLI while the service runs, or another node
    try:
        assert status(other, job_id) == ["RUNNABLE"]
        (claim,) = store.claim("n1", 2.0)
        assert status(other, job_id) == ["STARTING"]
        other.cancel_job(job_id, "x", 3.0)  # writes from the second connection work too
        assert claim.job_id == job_id
    finally:
        other.close()


def test_a_newer_schema_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "b.sqlite3"
    db = sqlite3.connect(path)
    db.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    db.close()
    with pytest.raises(ServiceException, match="schema version"):
        SqliteStore(path)


def test_default_paths(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("WARMSTART_DATA_DIR", str(tmp_path / "explicit"))
    assert default_data_dir() == tmp_path / "explicit"
    assert default_store_path() == tmp_path / "explicit" / "batch.sqlite3"
    monkeypatch.delenv("WARMSTART_DATA_DIR")
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))
    assert default_data_dir() == tmp_path / "xdg" / "warmstart"
    monkeypatch.delenv("XDG_DATA_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert default_data_dir() == tmp_path / "home" / ".local" / "share" / "warmstart"


# -- job definitions --------------------------------------------------------------------------


def test_revisions_and_resolution(store: AnyStore) -> None:
    arn2 = define(store, "def", containerProperties={"image": "busybox:2"})
    assert arn2.endswith(":job-definition/def:2")
    assert job(store, submit(store)).job_definition == arn2  # by name: the latest ACTIVE
    assert job(store, submit(store, jobDefinition="def:1")).job_definition.endswith("def:1")
    assert job(store, submit(store, jobDefinition=arn2)).job_definition == arn2
    store.deregister_job_definition("def:2")
    assert job(store, submit(store)).job_definition.endswith("def:1")
    with pytest.raises(ClientException, match="INACTIVE"):
        submit(store, jobDefinition="def:2")
    assert define(store, "def").endswith("def:3")  # revisions never reuse a number


@pytest.mark.parametrize(
    ("ref", "message"),
    [("nope", "does not exist"), ("def:9", "does not exist"), ("def:x", "name:revision")],
)
def test_unknown_definitions(store: AnyStore, ref: str, message: str) -> None:
    with pytest.raises(ClientException, match=message):
        submit(store, jobDefinition=ref)


def test_deregister_needs_a_revision(store: AnyStore) -> None:
    with pytest.raises(ClientException, match="name:revision"):
        store.deregister_job_definition("def")
    with pytest.raises(ClientException, match="does not exist"):
        store.deregister_job_definition("def:7")


def test_describe_job_definitions(store: AnyStore) -> None:
    for _ in range(4):
        define(store, "other")
    store.deregister_job_definition("other:1")
    page = store.describe_job_definitions(job_definition_name="other", max_results=2)
    assert [d.revision for d in page.items] == [1, 2]
    rest = store.describe_job_definitions(
        job_definition_name="other", max_results=2, next_token=page.next_token
    )
    assert [d.revision for d in rest.items] == [3, 4]
    assert rest.next_token is None
    active = store.describe_job_definitions(job_definition_name="other", status="ACTIVE")
    assert [d.revision for d in active.items] == [2, 3, 4]
    named = store.describe_job_definitions(["other:1", "def"])
    assert [(d.job_definition_name, d.revision, d.status) for d in named.items] == [
        ("other", 1, "INACTIVE"),
        ("def", 1, "ACTIVE"),
    ]
    with pytest.raises(ClientException, match="maxResults"):
        store.describe_job_definitions(max_results=101)


# -- queues -----------------------------------------------------------------------------------


def test_queues(store: AnyStore) -> None:
    make_queue(
        store,
        "hi",
        priority=10,
        computeEnvironmentOrder=[
            {"order": 1, "computeEnvironment": "arn:aws:batch:r:a:compute-environment/ce1"}
        ],
    )
    with pytest.raises(ClientException, match="already exists"):
        make_queue(store, "hi")
    queues = store.describe_job_queues().items
    assert [(q.job_queue_name, q.priority, q.state, q.status) for q in queues] == [
        ("q", 1, "ENABLED", "VALID"),
        ("hi", 10, "ENABLED", "VALID"),
    ]
    (hi,) = store.describe_job_queues([queues[1].job_queue_arn]).items
    assert hi.compute_environment_order[0].compute_environment.endswith("/ce1")
    changed = store.update_job_queue(UpdateJobQueueRequest(job_queue="hi", priority=3), 1.0)
    assert (changed.priority, changed.state) == (3, "ENABLED")
    page = store.describe_job_queues(max_results=1)
    assert [q.job_queue_name for q in page.items] == ["q"]
    assert [
        q.job_queue_name for q in store.describe_job_queues(next_token=page.next_token).items
    ] == ["hi"]


def test_a_disabled_queue_takes_no_jobs_and_starts_none(store: AnyStore) -> None:
    running = submit(store)
    waiting = submit(store)
    (claim,) = store.claim("n1", 2.0)
    store.update_job_queue(UpdateJobQueueRequest(job_queue="q", state="DISABLED"), 3.0)
    with pytest.raises(ClientException, match="DISABLED"):
        submit(store)
    assert store.claim("n1", 4.0, 10) == []
    assert status(store, waiting) == ["RUNNABLE"]
    run(store, claim, 0, 5.0)  # a running job finishes
    assert status(store, running) == ["SUCCEEDED"]
    store.update_job_queue(UpdateJobQueueRequest(job_queue="q", state="ENABLED"), 7.0)
    assert [c.job_id for c in store.claim("n1", 8.0, 10)] == [waiting]


def test_delete_queue(store: AnyStore) -> None:
    queued, running = submit(store), submit(store)
    store.claim("n1", 2.0)  # the oldest: queued
    with pytest.raises(ClientException, match="DISABLED"):
        store.delete_job_queue("q", 3.0)
    store.update_job_queue(UpdateJobQueueRequest(job_queue="q", state="DISABLED"), 3.0)
    orders = store.delete_job_queue("q", 4.0)
    assert [o.job_id for o in orders] == [queued]
    assert status(store, running) == ["FAILED"]
    assert store.describe_job_queues(["q"]).items == []
    make_queue(store, "q")  # the name is free again
    with pytest.raises(ClientException, match="does not exist"):
        store.delete_job_queue("gone", 5.0)


def test_queue_priority_then_submit_order(store: AnyStore) -> None:
    make_queue(store, "low", priority=0)
    make_queue(store, "high", priority=5)
    make_queue(store, "q2", priority=1)
    low = submit(store, jobQueue="low")
    a = submit(store, jobQueue="q")
    b = submit(store, jobQueue="q2")
    c = submit(store, jobQueue="q")
    high = submit(store, jobQueue="high")
    claimed = [c.job_id for c in store.claim("n1", 2.0, 10)]
    assert claimed == [high, a, b, c, low]


def test_claim_respects_free_capacity(store: AnyStore) -> None:
    big = submit(
        store,
        containerOverrides={
            "resourceRequirements": [
                {"type": "VCPU", "value": "4"},
                {"type": "MEMORY", "value": "8192"},
            ]
        },
    )
    small = submit(store, containerOverrides={"vcpus": 1, "memory": 512})
    gpu = submit(
        store, containerOverrides={"resourceRequirements": [{"type": "GPU", "value": "1"}]}
    )
    assert [c.job_id for c in store.claim("n1", 2.0, 10, vcpus=2, memory_mib=4096, gpus=0)] == [
        small
    ]
    (claim,) = store.claim("n1", 3.0, 10, vcpus=8, memory_mib=10_000, gpus=0)
    assert (claim.job_id, claim.vcpus, claim.memory_mib) == (big, 4.0, 8192)
    (claim,) = store.claim("n1", 4.0, 10, gpus=1)
    assert (claim.job_id, claim.gpus) == (gpu, 1)


# -- one job, start to end --------------------------------------------------------------------


def test_lifecycle_and_timestamps(store: AnyStore) -> None:
    job_id = submit(store, now=1.5, parameters={"x": "1"})
    detail = job(store, job_id)
    assert (detail.status, detail.created_at, detail.started_at) == ("RUNNABLE", 1500, None)
    assert detail.job_queue.endswith(":job-queue/q")
    assert detail.job_arn
    assert detail.job_arn.endswith(f":job/{job_id}")
    (claim,) = store.claim("n1", 2.0)
    assert (claim.job_id, claim.attempt, claim.node) == (job_id, 1, "n1")
    assert claim.environment["AWS_BATCH_JOB_ATTEMPT"] == "1"
    assert status(store, job_id) == ["STARTING"]
    assert store.started(job_id, 3.25) is None
    assert (job(store, job_id).status, job(store, job_id).started_at) == ("RUNNING", 3250)
    finish = store.finished(job_id, 1, 0, None, None, 9.0, log=b"out\n")
    assert finish == Finish(job_id=job_id, status="SUCCEEDED", applied=True)
    detail = job(store, job_id)
    assert (detail.status, detail.stopped_at) == ("SUCCEEDED", 9000)
    assert detail.status_reason == rules.ESSENTIAL_EXITED
    (attempt,) = detail.attempts
    assert (attempt.started_at, attempt.stopped_at, attempt.status_reason) == (
        3250,
        9000,
        rules.ESSENTIAL_EXITED,
    )
    assert attempt.container is not None
    assert attempt.container.exit_code == 0
    assert attempt.container.log_stream_name == f"def/default/{job_id}/1"
    assert detail.container is not None
    assert detail.container.exit_code == 0
    assert store.read_log(job_id) == b"out\n"


def test_claim_carries_what_the_runner_needs(store: AnyStore) -> None:
    define(
        store,
        "cmd",
        parameters={"file": "a.txt", "level": "1"},
        containerProperties={
            "image": "img:1",
            "command": ["proc", "Ref::file", "Ref::level"],
            "environment": [{"name": "A", "value": "1"}],
        },
        timeout={"attemptDurationSeconds": 120},
    )
    make_queue(
        store,
        "ceq",
        computeEnvironmentOrder=[
            {"order": 2, "computeEnvironment": "second"},
            {"order": 1, "computeEnvironment": "arn:aws:batch:r:a:compute-environment/first"},
        ],
    )
    job_id = submit(
        store,
        jobDefinition="cmd",
        jobQueue="ceq",
        parameters={"level": "9"},
        containerOverrides={"environment": [{"name": "B", "value": "2"}]},
    )
    (claim,) = store.claim("n1", 2.0)
    assert claim.image == "img:1"
    assert claim.command == ["proc", "a.txt", "9"]
    assert claim.timeout_s == 120
    assert claim.environment == {
        "A": "1",
        "B": "2",
        "AWS_BATCH_JOB_ID": job_id,
        "AWS_BATCH_JOB_ATTEMPT": "1",
        "AWS_BATCH_JQ_NAME": "ceq",
        "AWS_BATCH_CE_NAME": "first",
    }
    assert (claim.function, claim.payload, claim.array_index) == (None, None, None)


def test_function_jobs(store: AnyStore) -> None:
    define(store, "fn", containerProperties=None, parameters={"warmstart:function": "resize"})
    with_payload = submit(store, jobDefinition="fn", payload=b'{"w": 100}')
    from_params = submit(store, jobDefinition="fn", parameters={"w": "5"})
    first, second = store.claim("n1", 2.0, 2)
    assert (first.job_id, first.function, first.payload) == (with_payload, "resize", b'{"w": 100}')
    assert (second.job_id, second.payload) == (from_params, b'{"w":"5"}')
    assert first.image is None
    assert first.command == []
    with pytest.raises(ClientException, match="only for function jobs"):
        submit(store, payload=b"{}")


def test_started_checks_the_state(store: AnyStore) -> None:
    job_id = submit(store)
    with pytest.raises(ClientException, match="not STARTING"):
        store.started(job_id, 2.0)
    store.claim("n1", 2.0)
    with pytest.raises(ClientException, match="not STARTING"):
        store.started(job_id, 2.0, attempt=2)
    with pytest.raises(ClientException, match="does not exist"):
        store.started("nope", 2.0)


@pytest.mark.parametrize("backend", BACKENDS)
def test_logs_are_bounded_and_per_attempt(
    backend: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    opened = open_store(backend, request, tmp_path, log_cap_bytes=8)
    store = next(opened)
    define(store, "retry", retryStrategy={"attempts": 2})
    job_id = submit(store, jobDefinition="retry")
    for attempt, log in ((1, b"0123456789abc"), (2, b"second")):
        (claim,) = store.claim("n1", 2.0)
        store.started(job_id, 2.0)
        store.finished(job_id, claim.attempt, 1, None, None, 3.0, log=log)
        assert claim.attempt == attempt
    assert store.read_log(job_id, 1) == b"56789abc"  # the tail is kept
    assert store.read_log(job_id) == b"second"
    assert store.read_log(job_id, 7) == b""
    opened.close()


# -- retries ----------------------------------------------------------------------------------


def test_retries_until_attempts_run_out(store: AnyStore) -> None:
    define(store, "r3", retryStrategy={"attempts": 3})
    job_id = submit(store, jobDefinition="r3")
    attempts = []
    for i in range(3):
        claim = run_next(store, 1, now=10.0 * (i + 1))
        attempts.append(claim.attempt)
        assert claim.environment["AWS_BATCH_JOB_ATTEMPT"] == str(claim.attempt)
        assert status(store, job_id) == (["RUNNABLE"] if i < 2 else ["FAILED"])
    assert attempts == [1, 2, 3]
    detail = job(store, job_id)
    assert [a.container.exit_code for a in detail.attempts if a.container] == [1, 1, 1]
    assert [a.started_at for a in detail.attempts] == [10_000, 20_000, 30_000]
    assert detail.status_reason == rules.ESSENTIAL_EXITED


def test_a_retry_then_success(store: AnyStore) -> None:
    job_id = submit(store, retryStrategy={"attempts": 2})  # the submit's strategy wins
    run_next(store, 3)
    run_next(store, 0, now=20.0)
    assert status(store, job_id) == ["SUCCEEDED"]
    assert len(job(store, job_id).attempts) == 2


@pytest.mark.parametrize(
    ("rules_", "outcome", "final_after"),
    [
        ([{"onExitCode": "1*", "action": "EXIT"}], (137, None, None), 1),
        ([{"onExitCode": "1*", "action": "exit"}], (2, None, None), 3),
        (
            [{"onReason": "CannotPull*", "action": "RETRY"}, {"onReason": "*", "action": "EXIT"}],
            (None, "CannotPullContainerError: x", None),
            3,
        ),
        (
            [{"onReason": "CannotPull*", "action": "RETRY"}, {"onReason": "*", "action": "EXIT"}],
            (1, "Other", None),
            1,
        ),
        ([{"onStatusReason": "Custom*", "action": "EXIT"}], (1, None, "Custom stop"), 1),
    ],
)
def test_evaluate_on_exit(
    store: AnyStore,
    rules_: list[dict[str, str]],
    outcome: tuple[Any, Any, Any],
    final_after: int,
) -> None:
    job_id = submit(store, retryStrategy={"attempts": 3, "evaluateOnExit": rules_})
    for attempt in range(1, 4):
        (claim,) = store.claim("n1", float(attempt))
        store.started(job_id, float(attempt))
        finish = store.finished(job_id, claim.attempt, *outcome, float(attempt) + 0.5)
        if attempt == final_after:
            assert finish.status == "FAILED"
            break
        assert finish.status == "RUNNABLE"
    assert len(job(store, job_id).attempts) == final_after


def test_timeout_fails_without_retry(store: AnyStore) -> None:
    job_id = submit(store, retryStrategy={"attempts": 5}, timeout={"attemptDurationSeconds": 60})
    (claim,) = store.claim("n1", 1.0)
    assert claim.timeout_s == 60
    store.started(job_id, 1.0)
    finish = store.finished(job_id, 1, 137, None, None, 61.0, timed_out=True)
    assert finish.status == "FAILED"
    assert job(store, job_id).status_reason == rules.TIMEOUT_REASON


def test_a_late_report_is_ignored(store: AnyStore) -> None:
    job_id = submit(store, retryStrategy={"attempts": 2})
    run_next(store, 1)
    late = store.finished(job_id, 1, 0, None, None, 30.0)
    assert late == Finish(job_id=job_id, status="RUNNABLE", applied=False)
    with pytest.raises(ClientException, match="does not exist"):
        store.finished("nope", 1, 0, None, None, 30.0)


# -- dependencies -----------------------------------------------------------------------------


def test_depends_on_success(store: AnyStore) -> None:
    a = submit(store)
    b = submit(store, dependsOn=[{"jobId": a}])
    c = submit(store, dependsOn=[{"jobId": a}, {"jobId": b}])
    assert status(store, a, b, c) == ["RUNNABLE", "PENDING", "PENDING"]
    (claim,) = store.claim("n1", 2.0, 10)  # pending jobs are not claimed
    run(store, claim, 0)
    assert status(store, b, c) == ["RUNNABLE", "PENDING"]
    assert run_next(store, 0, now=20.0).job_id == b
    assert status(store, c) == ["RUNNABLE"]
    assert [d.job_id for d in job(store, c).depends_on] == [a, b]


def test_dependency_failure_cascades(store: AnyStore) -> None:
    a = submit(store)
    b = submit(store, dependsOn=[{"jobId": a}])
    c = submit(store, dependsOn=[{"jobId": b}])
    other = submit(store)
    d = submit(store, dependsOn=[{"jobId": other}, {"jobId": c}])
    run_next(store, 1)  # a fails
    assert status(store, a, b, c, d) == ["FAILED"] * 4
    assert {job(store, x).status_reason for x in (b, c, d)} == {rules.DEPENDENCY_FAILED}
    assert status(store, other) == ["RUNNABLE"]
    assert [x.attempts for x in store.describe_jobs([b, c, d])] == [[], [], []]


def test_dependencies_already_final_at_submit(store: AnyStore) -> None:
    ok = submit(store)
    run_next(store, 0)
    bad = submit(store)
    run_next(store, 1, now=20.0)
    assert status(store, submit(store, dependsOn=[{"jobId": ok}])) == ["RUNNABLE"]
    failed = submit(store, dependsOn=[{"jobId": ok}, {"jobId": bad}])
    assert status(store, failed) == ["FAILED"]
    assert job(store, failed).status_reason == rules.DEPENDENCY_FAILED
    with pytest.raises(ClientException, match="does not exist"):
        submit(store, dependsOn=[{"jobId": "no-such-job"}])


# -- cancel and terminate on every state ------------------------------------------------------


def job_in(store: AnyStore, state: str) -> str:
    """A job brought to ``state`` (a PENDING one waits on a RUNNABLE job)."""
    if state == "PENDING":
        return submit(store, dependsOn=[{"jobId": submit(store, jobName="first")}])
    job_id = submit(store)
    if state == "RUNNABLE":
        return job_id
    (claim,) = store.claim("n1", 2.0)
    if state == "RUNNING":
        store.started(job_id, 3.0)
    elif state in ("SUCCEEDED", "FAILED"):
        run(store, claim, 0 if state == "SUCCEEDED" else 1)
    return job_id


# state -> (status after CancelJob, status after TerminateJob, kill order expected)
CANCEL_TERMINATE = {
    "PENDING": ("FAILED", "FAILED", False),
    "RUNNABLE": ("FAILED", "FAILED", False),
    "STARTING": ("STARTING", "STARTING", True),
    "RUNNING": ("RUNNING", "RUNNING", True),
    "SUCCEEDED": ("SUCCEEDED", "SUCCEEDED", False),
    "FAILED": ("FAILED", "FAILED", False),
}


@pytest.mark.parametrize("state", list(CANCEL_TERMINATE))
def test_cancel_on_each_state(store: AnyStore, state: str) -> None:
    job_id = job_in(store, state)
    store.cancel_job(job_id, "Cancelled by test", 5.0)
    detail = job(store, job_id)
    assert detail.status == CANCEL_TERMINATE[state][0]
    assert detail.is_cancelled is (state in ("PENDING", "RUNNABLE"))
    if state in ("PENDING", "RUNNABLE"):
        assert (detail.status_reason, detail.stopped_at) == ("Cancelled by test", 5000)
        assert detail.attempts == []


@pytest.mark.parametrize("state", list(CANCEL_TERMINATE))
def test_terminate_on_each_state(store: AnyStore, state: str) -> None:
    job_id = job_in(store, state)
    orders = store.terminate_job(job_id, "Terminated by user", 5.0)
    kills = CANCEL_TERMINATE[state][2]
    assert status(store, job_id) == [CANCEL_TERMINATE[state][1]]
    assert [(o.job_id, o.node, o.attempt, o.reason) for o in orders] == (
        [(job_id, "n1", 1, "Terminated by user")] if kills else []
    )
    assert store.kill_requests("n1") == orders
    if kills:  # the runner stops it and reports: FAILED with the reason, no retry
        finish = store.finished(job_id, 1, 143, None, None, 6.0)
        assert finish.status == "FAILED"
    detail = job(store, job_id)
    if state not in ("SUCCEEDED", "FAILED"):
        assert (detail.status, detail.status_reason) == ("FAILED", "Terminated by user")
        assert detail.is_terminated


def test_terminated_while_starting_is_told_at_start(store: AnyStore) -> None:
    job_id = submit(store, retryStrategy={"attempts": 3})
    store.claim("n1", 2.0)
    store.terminate_job(job_id, "stop", 3.0)
    order = store.started(job_id, 4.0)
    assert order is not None
    assert (order.job_id, order.reason) == (job_id, "stop")
    store.finished(job_id, 1, None, None, None, 5.0)
    assert status(store, job_id) == ["FAILED"]


def test_cancel_and_terminate_unknown_jobs(store: AnyStore) -> None:
    with pytest.raises(ClientException, match="does not exist"):
        store.cancel_job("nope", "x", 1.0)
    with pytest.raises(ClientException, match="does not exist"):
        store.terminate_job("nope", "x", 1.0)


def test_cancel_fails_dependents(store: AnyStore) -> None:
    a = submit(store)
    b = submit(store, dependsOn=[{"jobId": a}])
    store.cancel_job(a, "no longer needed", 2.0)
    assert status(store, a, b) == ["FAILED", "FAILED"]
    assert job(store, b).status_reason == rules.DEPENDENCY_FAILED


# -- a dead runner ----------------------------------------------------------------------------


def test_recover_counts_the_lost_attempt(store: AnyStore) -> None:
    define(store, "r2", retryStrategy={"attempts": 2})
    starting = submit(store, jobDefinition="r2")
    running = submit(store, jobDefinition="r2")
    last_try = submit(store)  # one attempt only
    other_node = submit(store, jobDefinition="r2")
    store.claim("A", 2.0, 3)
    store.claim("B", 2.0, 1)
    store.started(running, 3.0)
    recovery = store.recover("A", 10.0)
    assert sorted(recovery.requeued) == sorted([starting, running])
    assert recovery.failed == [last_try]
    assert status(store, starting, running, last_try, other_node) == [
        "RUNNABLE",
        "RUNNABLE",
        "FAILED",
        "STARTING",
    ]
    (attempt,) = job(store, running).attempts
    assert attempt.status_reason == rules.runner_died("A")
    assert (attempt.started_at, attempt.stopped_at) == (3000, 10_000)
    assert job(store, last_try).status_reason == rules.runner_died("A")
    claims = store.claim("B", 11.0, 10)
    assert sorted((c.job_id, c.attempt) for c in claims) == sorted([(starting, 2), (running, 2)])
    # the dead runner's late report changes nothing
    assert not store.finished(running, 1, 0, None, None, 12.0).applied


def test_recover_follows_evaluate_on_exit(store: AnyStore) -> None:
    spot = {
        "attempts": 3,
        "evaluateOnExit": [
            {"onStatusReason": "Host EC2*", "action": "RETRY"},
            {"onReason": "*", "action": "EXIT"},
        ],
    }
    strict = {"attempts": 3, "evaluateOnExit": [{"onStatusReason": "*", "action": "EXIT"}]}
    retried = submit(store, retryStrategy=spot)
    failed = submit(store, retryStrategy=strict)
    store.claim("A", 2.0, 2)
    recovery = store.recover("A", 3.0)
    assert (recovery.requeued, recovery.failed) == ([retried], [failed])


def test_recover_of_a_terminated_job_fails_it(store: AnyStore) -> None:
    job_id = submit(store, retryStrategy={"attempts": 3})
    store.claim("A", 2.0)
    store.terminate_job(job_id, "stop", 3.0)
    assert store.recover("A", 4.0).failed == [job_id]
    assert job(store, job_id).status_reason == "stop"


def test_heartbeats_find_stale_nodes(store: AnyStore) -> None:
    store.heartbeat("A", 100.0)
    store.claim("B", 130.0)  # a claim is a heartbeat too
    assert store.stale_nodes(150.0, 30.0) == ["A"]
    assert store.stale_nodes(170.0, 30.0) == ["A", "B"]
    store.recover("A", 171.0)
    assert store.stale_nodes(171.0, 30.0) == ["B"]


# -- listings ---------------------------------------------------------------------------------


def test_list_jobs_pages_newest_first(store: AnyStore) -> None:
    ids = [submit(store, now=float(i)) for i in range(5)]
    first = store.list_jobs(job_queue="q", job_status="RUNNABLE", max_results=2)
    assert [s.job_id for s in first.items] == [ids[4], ids[3]]
    second = store.list_jobs(
        job_queue="q", job_status="RUNNABLE", max_results=2, next_token=first.next_token
    )
    third = store.list_jobs(
        job_queue="q", job_status="RUNNABLE", max_results=2, next_token=second.next_token
    )
    assert [s.job_id for s in second.items + third.items] == [ids[2], ids[1], ids[0]]
    assert third.next_token is None
    assert store.list_jobs(job_queue="q").items == []  # RUNNING by default


def test_list_jobs_summaries(store: AnyStore) -> None:
    job_id = submit(store, now=1.0)
    run_next(store, 3, now=2.0)
    (summary,) = store.list_jobs(job_queue="q", job_status="FAILED").items
    assert (summary.job_id, summary.job_name, summary.created_at) == (job_id, "job", 1000)
    assert (summary.started_at, summary.stopped_at) == (2000, 3000)
    assert summary.container is not None
    assert summary.container.exit_code == 3
    data = msgspec.to_builtins(summary)
    assert set(data) == {
        "jobId",
        "jobName",
        "jobArn",
        "createdAt",
        "status",
        "statusReason",
        "startedAt",
        "stoppedAt",
        "container",
        "jobDefinition",
    }


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({}, "exactly one"),
        ({"job_queue": "q", "array_job_id": "x"}, "exactly one"),
        ({"job_queue": "q", "job_status": "DONE"}, "not a job status"),
        ({"job_queue": "q", "max_results": 0}, "maxResults"),
        ({"job_queue": "q", "next_token": "!!"}, "nextToken"),
        ({"job_queue": "nope"}, "does not exist"),
        ({"array_job_id": "nope"}, "does not exist"),
    ],
)
def test_list_jobs_errors(store: AnyStore, kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(ClientException, match=message):
        store.list_jobs(**kwargs)


def test_describe_jobs(store: AnyStore) -> None:
    a = submit(store)
    assert [d.job_id for d in store.describe_jobs([a, "unknown"])] == [a]
    with pytest.raises(ClientException, match="up to 100"):
        store.describe_jobs(["x"] * 101)


def test_detail_json_is_the_api_shape(store: AnyStore) -> None:
    job_id = submit(store, now=2.0, tags={"team": "a"}, timeout={"attemptDurationSeconds": 90})
    data = msgspec.to_builtins(job(store, job_id))
    assert data == {
        "jobName": "job",
        "jobId": job_id,
        "jobArn": f"arn:aws:batch:us-east-1:000000000000:job/{job_id}",
        "jobQueue": "arn:aws:batch:us-east-1:000000000000:job-queue/q",
        "status": "RUNNABLE",
        "jobDefinition": "arn:aws:batch:us-east-1:000000000000:job-definition/def:1",
        "createdAt": 2000,
        "container": {"image": "busybox", "command": ["true"]},
        "timeout": {"attemptDurationSeconds": 90},
        "tags": {"team": "a"},
    }
