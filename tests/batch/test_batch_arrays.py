"""Both batch stores (ids ``sqlite`` and ``redis``): array jobs (children, statusSummary,
parent final states), SEQUENTIAL and N_TO_N dependencies, dependencies on arrays, and
cancel/terminate of a parent."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from batch_store_support import BACKENDS, AnyStore, job, open_store, run, status, submit

from runtime.batch import ClientException, rules


@pytest.fixture(params=BACKENDS)
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[AnyStore]:
    yield from open_store(request.param, request, tmp_path)


def array(store: AnyStore, size: int, now: float = 1.0, **fields: Any) -> str:
    return submit(store, now=now, arrayProperties={"size": size}, **fields)


def children(parent: str, size: int) -> list[str]:
    return [f"{parent}:{i}" for i in range(size)]


def summary(store: AnyStore, parent: str) -> dict[str, int]:
    props = job(store, parent).array_properties
    assert props is not None
    assert props.status_summary is not None
    return {k: v for k, v in props.status_summary.items() if v}


def finish(store: AnyStore, job_id: str, exit_code: int, now: float = 10.0) -> None:
    """Claim exactly ``job_id`` (it must be next) and run it to ``exit_code``."""
    (claim,) = store.claim("n1", now)
    assert claim.job_id == job_id
    run(store, claim, exit_code, now)


def test_children_and_summary(store: AnyStore) -> None:
    parent = array(store, 3)
    kids = children(parent, 3)
    assert status(store, parent, *kids) == ["PENDING", "RUNNABLE", "RUNNABLE", "RUNNABLE"]
    assert summary(store, parent) == {"RUNNABLE": 3}
    detail = job(store, parent)
    assert detail.array_properties is not None
    assert (detail.array_properties.size, detail.array_properties.index) == (3, None)
    child = job(store, kids[2])
    assert child.array_properties is not None
    assert (child.job_name, child.array_properties.index) == ("job", 2)
    claims = store.claim("n1", 2.0, 10)
    assert [c.job_id for c in claims] == kids
    assert [c.environment["AWS_BATCH_JOB_ARRAY_INDEX"] for c in claims] == ["0", "1", "2"]
    assert [c.array_index for c in claims] == [0, 1, 2]
    assert summary(store, parent) == {"STARTING": 3}
    store.started(kids[0], 3.0)
    assert job(store, parent).started_at == 3000
    assert summary(store, parent) == {"STARTING": 2, "RUNNING": 1}
    for i, claim in enumerate(claims):
        if i:
            store.started(claim.job_id, 4.0)
        store.finished(claim.job_id, 1, 0, None, None, 5.0 + i)
        assert status(store, parent) == (["SUCCEEDED"] if i == 2 else ["PENDING"])
    detail = job(store, parent)
    assert (detail.started_at, detail.stopped_at) == (3000, 7000)
    assert detail.array_properties is not None
    assert detail.array_properties.status_summary_last_updated_at == 7000
    assert summary(store, parent) == {"SUCCEEDED": 3}


def test_listing_children(store: AnyStore) -> None:
    parent = array(store, 5)
    page = store.list_jobs(array_job_id=parent, job_status="RUNNABLE", max_results=3)
    assert [s.job_id for s in page.items] == children(parent, 5)[:3]
    rest = store.list_jobs(array_job_id=parent, job_status="RUNNABLE", next_token=page.next_token)
    assert [s.job_id for s in rest.items] == children(parent, 5)[3:]
    assert rest.items[0].array_properties is not None
    assert rest.items[0].array_properties.index == 3
    (listed,) = store.list_jobs(job_queue="q", job_status="PENDING").items  # no children
    assert listed.job_id == parent
    assert listed.array_properties is not None
    assert listed.array_properties.size == 5


def test_a_failed_child_fails_the_parent_once_all_end(store: AnyStore) -> None:
    parent = array(store, 3)
    first, second, third = store.claim("n1", 2.0, 3)
    run(store, first, 1)
    assert status(store, parent) == ["PENDING"]
    run(store, second, 0)
    assert status(store, parent) == ["PENDING"]
    run(store, third, 0)
    detail = job(store, parent)
    assert (detail.status, detail.status_reason) == ("FAILED", rules.ARRAY_CHILD_FAILED)
    assert summary(store, parent) == {"SUCCEEDED": 2, "FAILED": 1}


def test_children_retry_on_their_own(store: AnyStore) -> None:
    parent = array(store, 2, retryStrategy={"attempts": 2})
    first, second = store.claim("n1", 2.0, 2)
    run(store, first, 1)
    assert status(store, first.job_id) == ["RUNNABLE"]
    run(store, second, 0)
    (again,) = store.claim("n1", 20.0)
    assert (again.job_id, again.attempt) == (first.job_id, 2)
    assert again.environment["AWS_BATCH_JOB_ATTEMPT"] == "2"
    run(store, again, 0, now=20.0)
    assert status(store, parent) == ["SUCCEEDED"]


def test_sequential(store: AnyStore) -> None:
    parent = array(store, 4, dependsOn=[{"type": "SEQUENTIAL"}])
    kids = children(parent, 4)
    assert status(store, *kids) == ["RUNNABLE", "PENDING", "PENDING", "PENDING"]
    assert [d.job_id for d in job(store, kids[2]).depends_on] == [kids[1]]
    assert job(store, kids[0]).depends_on == []
    finish(store, kids[0], 0)
    assert status(store, *kids) == ["SUCCEEDED", "RUNNABLE", "PENDING", "PENDING"]
    finish(store, kids[1], 1, now=20.0)
    assert status(store, *kids) == ["SUCCEEDED", "FAILED", "FAILED", "FAILED"]
    assert job(store, kids[3]).status_reason == rules.DEPENDENCY_FAILED
    assert status(store, parent) == ["FAILED"]


def test_n_to_n(store: AnyStore) -> None:
    a = array(store, 3)
    b = array(store, 3, dependsOn=[{"jobId": a, "type": "N_TO_N"}])
    a_kids, b_kids = children(a, 3), children(b, 3)
    assert status(store, *b_kids) == ["PENDING"] * 3
    assert [(d.job_id, d.type) for d in job(store, b_kids[2]).depends_on] == [(a_kids[2], "N_TO_N")]
    first, second, third = store.claim("n1", 2.0, 3)
    run(store, second, 0)
    assert status(store, *b_kids) == ["PENDING", "RUNNABLE", "PENDING"]
    run(store, first, 1)
    assert status(store, *b_kids) == ["FAILED", "RUNNABLE", "PENDING"]
    run(store, third, 0)
    assert status(store, *b_kids) == ["FAILED", "RUNNABLE", "RUNNABLE"]
    assert status(store, a) == ["FAILED"]
    for claim in store.claim("n1", 30.0, 2):
        run(store, claim, 0, now=30.0)
    assert status(store, b) == ["FAILED"]  # its child 0 failed with A's child 0


def test_n_to_n_on_finished_children_and_with_sequential(store: AnyStore) -> None:
    a = array(store, 3)
    first, second, third = store.claim("n1", 2.0, 3)
    run(store, first, 0)
    run(store, second, 1)
    b = array(
        store, 3, now=20.0, dependsOn=[{"jobId": a, "type": "N_TO_N"}, {"type": "SEQUENTIAL"}]
    )
    b_kids = children(b, 3)
    # child 0 is free, child 1 failed with A's child 1, child 2 follows child 1
    assert status(store, *b_kids) == ["RUNNABLE", "FAILED", "FAILED"]
    assert summary(store, b) == {"RUNNABLE": 1, "FAILED": 2}
    run(store, third, 0)
    assert status(store, b) == ["PENDING"]


def test_n_to_n_needs_equal_sizes(store: AnyStore) -> None:
    a = array(store, 3)
    with pytest.raises(ClientException, match="size 4"):
        array(store, 4, dependsOn=[{"jobId": a, "type": "N_TO_N"}])


def test_depending_on_an_array_waits_for_all_children(store: AnyStore) -> None:
    parent = array(store, 2)
    after = submit(store, dependsOn=[{"jobId": parent}])
    on_child = submit(store, dependsOn=[{"jobId": f"{parent}:1"}])
    first, second = store.claim("n1", 2.0, 2)
    run(store, second, 0)
    assert status(store, after, on_child) == ["PENDING", "RUNNABLE"]
    run(store, first, 0)
    assert status(store, after) == ["RUNNABLE"]


def test_a_failed_array_fails_its_dependents(store: AnyStore) -> None:
    parent = array(store, 2)
    after = submit(store, dependsOn=[{"jobId": parent}])
    first, second = store.claim("n1", 2.0, 2)
    run(store, first, 1)
    assert status(store, after) == ["PENDING"]
    run(store, second, 0)
    assert status(store, parent, after) == ["FAILED", "FAILED"]


def test_an_array_waiting_on_a_job(store: AnyStore) -> None:
    dep = submit(store)
    parent = array(store, 3, dependsOn=[{"jobId": dep}, {"type": "SEQUENTIAL"}])
    kids = children(parent, 3)
    assert status(store, parent, *kids) == ["PENDING"] * 4
    finish(store, dep, 0)
    assert status(store, *kids) == ["RUNNABLE", "PENDING", "PENDING"]


def test_an_array_whose_dependency_fails(store: AnyStore) -> None:
    dep = submit(store)
    parent = array(store, 3, dependsOn=[{"jobId": dep}])
    after = submit(store, dependsOn=[{"jobId": parent}])
    finish(store, dep, 1)
    assert status(store, parent, *children(parent, 3), after) == ["FAILED"] * 5
    assert job(store, parent).status_reason == rules.DEPENDENCY_FAILED
    assert summary(store, parent) == {"FAILED": 3}


def test_an_array_on_a_failed_job_fails_at_submit(store: AnyStore) -> None:
    dep = submit(store)
    finish(store, dep, 1)
    parent = array(store, 2, now=20.0, dependsOn=[{"jobId": dep}])
    assert status(store, parent, *children(parent, 2)) == ["FAILED"] * 3
    assert job(store, parent).status_reason == rules.DEPENDENCY_FAILED


def test_cancel_a_parent(store: AnyStore) -> None:
    parent = array(store, 3)
    (running,) = store.claim("n1", 2.0)
    store.started(running.job_id, 2.0)
    store.cancel_job(parent, "Cancelled by user", 3.0)
    kids = children(parent, 3)
    assert status(store, parent, *kids) == ["PENDING", "RUNNING", "FAILED", "FAILED"]
    assert job(store, kids[1]).is_cancelled
    store.finished(running.job_id, 1, 0, None, None, 4.0)
    detail = job(store, parent)
    assert (detail.status, detail.status_reason, detail.is_cancelled) == (
        "FAILED",
        "Cancelled by user",
        True,
    )


def test_terminate_a_parent(store: AnyStore) -> None:
    parent = array(store, 3)
    (running,) = store.claim("n1", 2.0)
    orders = store.terminate_job(parent, "Terminated by user", 3.0)
    assert [(o.job_id, o.attempt) for o in orders] == [(running.job_id, 1)]
    assert status(store, parent) == ["PENDING"]
    store.finished(running.job_id, 1, None, None, None, 4.0)
    detail = job(store, parent)
    assert (detail.status, detail.status_reason, detail.is_terminated) == (
        "FAILED",
        "Terminated by user",
        True,
    )
    assert summary(store, parent) == {"FAILED": 3}


def test_recover_requeues_a_child(store: AnyStore) -> None:
    parent = array(store, 2, retryStrategy={"attempts": 2})
    store.claim("A", 2.0, 2)
    recovery = store.recover("A", 3.0)
    assert recovery.requeued == children(parent, 2)
    assert summary(store, parent) == {"RUNNABLE": 2}


def test_ten_thousand_children(store: AnyStore) -> None:
    parent = array(store, 10_000, dependsOn=[{"type": "SEQUENTIAL"}])
    assert summary(store, parent) == {"RUNNABLE": 1, "PENDING": 9_999}
    page = store.list_jobs(array_job_id=parent, job_status="PENDING")
    assert len(page.items) == 1000
    assert page.next_token is not None
    store.cancel_job(parent, "stop", 2.0)
    assert summary(store, parent) == {"FAILED": 10_000}
    assert status(store, parent) == ["FAILED"]
