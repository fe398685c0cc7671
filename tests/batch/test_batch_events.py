"""Async invocation events: Lambda's retry timing, throttle backoff, maximum age, the
dead-letter list and its redrive, event invoke configs, invocation records."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import msgspec
import orjson
import pytest
from helpers import ROOT

from runtime.asyncinvoke import model as ev
from runtime.asyncinvoke.model import AsyncEvent, EventInvokeConfig
from runtime.asyncinvoke.redis_store import RedisEventStore
from runtime.asyncinvoke.store import EventStore, SqliteEventStore
from runtime.errors import InvalidParameterValueException, ResourceNotFoundException


@pytest.fixture(params=["sqlite", "redis"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[EventStore]:
    """Each store test runs against both implementations of the protocol."""
    s: EventStore
    if request.param == "sqlite":
        s = SqliteEventStore(tmp_path / "batch.sqlite3")
    else:
        url, prefix = request.getfixturevalue("redis_store")
        s = RedisEventStore(url, prefix=prefix)
    yield s
    s.close()


def one(store: EventStore, now: float, node: str = "n1") -> AsyncEvent:
    claim = store.claim_events(node, now, 10)
    assert claim.expired == []
    (event,) = claim.events
    return event


def nothing_due(store: EventStore, now: float) -> bool:
    claim = store.claim_events("n1", now, 10)
    return claim.events == [] and claim.expired == []


# -- the pure rules ---------------------------------------------------------------------------


def fresh(**fields: object) -> AsyncEvent:
    base = AsyncEvent(id="e", function="f", payload=b"{}", created_at=0.0, next_attempt_at=0.0)
    return msgspec.structs.replace(base, state=ev.INFLIGHT, node="n1", **fields)


@pytest.mark.parametrize(
    ("event", "now", "throttled", "expected"),
    [
        (fresh(), 10.0, False, (ev.DUE, 70.0, 1, 0, None)),
        (fresh(retries=1), 100.0, False, (ev.DUE, 220.0, 2, 0, None)),
        (fresh(retries=2), 300.0, False, (ev.DEAD, 300.0, 2, 0, ev.RETRIES_EXHAUSTED)),
        (fresh(max_retries=0), 5.0, False, (ev.DEAD, 5.0, 0, 0, ev.RETRIES_EXHAUSTED)),
        (fresh(), 10.0, True, (ev.DUE, 11.0, 0, 1, None)),
        (fresh(throttles=3), 10.0, True, (ev.DUE, 18.0, 0, 4, None)),
        (fresh(throttles=8), 10.0, True, (ev.DUE, 266.0, 0, 9, None)),
        (fresh(throttles=9), 10.0, True, (ev.DUE, 310.0, 0, 10, None)),  # capped at 5 minutes
        (fresh(throttles=30), 10.0, True, (ev.DUE, 310.0, 0, 31, None)),
        (fresh(retries=2, throttles=2), 10.0, True, (ev.DUE, 14.0, 2, 3, None)),
        (fresh(max_age_s=60), 1.0, False, (ev.DEAD, 1.0, 0, 0, ev.EVENT_AGE_EXCEEDED)),
        (fresh(max_age_s=60), 58.5, True, (ev.DUE, 59.5, 0, 1, None)),
        (fresh(max_age_s=60), 59.5, True, (ev.DEAD, 59.5, 0, 0, ev.EVENT_AGE_EXCEEDED)),
    ],
)
def test_after_failure(
    event: AsyncEvent, now: float, throttled: bool, expected: tuple[object, ...]
) -> None:
    after = ev.after_failure(event, "boom", now, throttled=throttled)
    next_at = after.next_attempt_at if after.state == ev.DUE else now
    assert (after.state, next_at, after.retries, after.throttles, after.condition) == expected
    assert after.error == "boom"
    assert after.node is None


def test_invocation_record_embeds_payloads_untouched() -> None:
    event = fresh(id="req-1", invocations=3, payload=b'{"a": [1, 2]}')
    record = ev.invocation_record(
        event,
        function_arn="arn:aws:lambda:us-east-1:000000000000:function:f",
        condition=ev.RETRIES_EXHAUSTED,
        now=1_700_000_000.25,
        function_error="Unhandled",
        response=b'{"errorMessage": "x"}',
    )
    assert b'"requestPayload":{"a": [1, 2]}' in record
    assert orjson.loads(record) == {
        "version": "1.0",
        "timestamp": "2023-11-14T22:13:20.250Z",
        "requestContext": {
            "requestId": "req-1",
            "functionArn": "arn:aws:lambda:us-east-1:000000000000:function:f:$LATEST",
            "condition": "RetriesExhausted",
            "approximateInvokeCount": 3,
        },
        "requestPayload": {"a": [1, 2]},
        "responseContext": {
            "statusCode": 200,
            "executedVersion": "$LATEST",
            "functionError": "Unhandled",
        },
        "responsePayload": {"errorMessage": "x"},
    }


# -- the store --------------------------------------------------------------------------------


def test_put_claim_done(store: EventStore) -> None:
    put = store.put_event("f", b'{"x": 1}', 5.0, request_id="r1")
    assert (put.id, put.state, put.max_retries, put.max_age_s) == ("r1", ev.DUE, 2, 21_600)
    event = one(store, 5.0)
    assert (event.id, event.payload, event.state, event.node, event.invocations) == (
        "r1",
        b'{"x": 1}',
        ev.INFLIGHT,
        "n1",
        1,
    )
    assert nothing_due(store, 6.0)  # in flight: nobody else gets it
    store.event_done("r1")
    assert nothing_due(store, 1000.0)
    assert store.dlq_list() == []


def test_due_order_and_limit(store: EventStore) -> None:
    for i in range(5):
        store.put_event("f", b"{}", float(i), request_id=f"e{i}")
    assert nothing_due(store, -1.0)
    claim = store.claim_events("n1", 2.0, 2)
    assert [e.id for e in claim.events] == ["e0", "e1"]
    assert [e.id for e in store.claim_events("n1", 10.0, 10).events] == ["e2", "e3", "e4"]


def test_equal_times_claim_in_arrival_order(store: EventStore) -> None:
    names = [f"e{i}" for i in (11, 10, 9, 2, 1, 0)]  # neither numeric nor text order
    for name in names:
        store.put_event("f", b"{}", 3.0, request_id=name)
    assert [e.id for e in store.claim_events("n1", 3.0, 4).events] == names[:4]
    store.recover("n1", 4.0)  # due again at 4.0, after the two left at 3.0, in arrival order
    assert [e.id for e in store.claim_events("n1", 4.0, 10).events] == names[4:] + names[:4]


def test_times_come_back_exact(store: EventStore) -> None:
    t = 1_700_000_000.123456
    put = store.put_event("f", b"{}", t, request_id="e")
    assert (put.created_at, put.next_attempt_at) == (t, t)
    assert nothing_due(store, 1_699_999_999.9999998)
    assert one(store, t).created_at == t
    after = store.event_failed("e", "x", t + 0.000001)
    assert after.next_attempt_at == t + 0.000001 + 60.0
    assert nothing_due(store, after.next_attempt_at - 1e-6)
    assert one(store, after.next_attempt_at).next_attempt_at == after.next_attempt_at


def test_put_is_idempotent_per_request_id(store: EventStore) -> None:
    store.put_event("f", b"{}", 1.0, request_id="same")
    again = store.put_event("f", b'{"other": 1}', 2.0, request_id="same")
    assert (again.payload, again.created_at) == (b"{}", 1.0)
    assert len(store.claim_events("n1", 3.0, 10).events) == 1


def test_retries_at_exact_times(store: EventStore) -> None:
    store.put_event("f", b"{}", 0.0, request_id="e")
    one(store, 0.0)
    assert store.event_failed("e", "Unhandled", 10.0).next_attempt_at == 70.0
    assert nothing_due(store, 69.999)
    assert one(store, 70.0).invocations == 2
    assert store.event_failed("e", "Unhandled", 75.0).next_attempt_at == 195.0
    assert nothing_due(store, 194.0)
    assert one(store, 195.0).invocations == 3
    dead = store.event_failed("e", "Unhandled again", 200.0)
    assert (dead.state, dead.condition, dead.error, dead.retries) == (
        ev.DEAD,
        ev.RETRIES_EXHAUSTED,
        "Unhandled again",
        2,
    )
    assert nothing_due(store, 10_000.0)
    (listed,) = store.dlq_list()
    assert (listed.id, listed.condition, listed.next_attempt_at, listed.invocations) == (
        "e",
        ev.RETRIES_EXHAUSTED,
        200.0,
        3,
    )


def test_throttles_back_off_without_using_retries(store: EventStore) -> None:
    store.put_event("f", b"{}", 0.0, request_id="e", max_retries=0)
    now = 0.0
    for delay in (1.0, 2.0, 4.0, 8.0):
        one(store, now)
        after = store.event_failed("e", "Rate Exceeded.", now, throttled=True)
        assert after.next_attempt_at == now + delay
        assert nothing_due(store, now + delay - 0.001)
        now += delay
    one(store, now)
    assert store.event_failed("e", "Unhandled", now).condition == ev.RETRIES_EXHAUSTED


def test_max_age_ends_retries(store: EventStore) -> None:
    store.put_event("f", b"{}", 0.0, request_id="e", max_age_s=100)
    one(store, 0.0)
    assert store.event_failed("e", "x", 30.0).next_attempt_at == 90.0
    one(store, 90.0)
    dead = store.event_failed("e", "x", 91.0)  # the next retry (211 s) is past 100 s
    assert (dead.state, dead.condition) == (ev.DEAD, ev.EVENT_AGE_EXCEEDED)


def test_events_too_old_when_due_are_dead_lettered(store: EventStore) -> None:
    store.put_event("f", b"{}", 0.0, request_id="old", max_age_s=60)
    store.put_event("f", b"{}", 50.0, request_id="young", max_age_s=60)
    claim = store.claim_events("n1", 60.0, 1)  # after downtime
    assert [e.id for e in claim.events] == ["young"]
    assert [(e.id, e.state, e.condition) for e in claim.expired] == [
        ("old", ev.DEAD, ev.EVENT_AGE_EXCEEDED)
    ]


def test_recover_returns_inflight_events(store: EventStore) -> None:
    store.put_event("f", b"{}", 0.0, request_id="a")
    store.put_event("f", b"{}", 0.0, request_id="b")
    store.claim_events("A", 1.0, 1)
    store.claim_events("B", 1.0, 1)
    assert store.recover("A", 5.0).events == 1
    event = one(store, 5.0, node="C")
    assert (event.id, event.invocations, event.retries) == ("a", 2, 0)
    assert nothing_due(store, 6.0)  # B's event stays with B


def test_stale_failure_reports_change_nothing(store: EventStore) -> None:
    store.put_event("f", b"{}", 0.0, request_id="e")
    assert store.event_failed("e", "x", 1.0).state == ev.DUE  # never claimed
    with pytest.raises(ResourceNotFoundException):
        store.event_failed("nope", "x", 1.0)


def test_redrive(store: EventStore) -> None:
    for name in ("a", "b", "c"):
        store.put_event(
            "fn" if name != "c" else "other", b"{}", 0.0, request_id=name, max_retries=0
        )
    for event in store.claim_events("n1", 0.0, 10).events:
        store.event_failed(event.id, "x", 1.0)
    assert [e.id for e in store.dlq_list()] == ["a", "b", "c"]
    assert [e.id for e in store.dlq_list("other")] == ["c"]
    assert store.dlq_redrive(["a", "missing"], 500.0) == 1
    (again,) = store.claim_events("n1", 500.0, 10).events
    assert (again.id, again.created_at, again.retries, again.condition) == ("a", 500.0, 0, None)
    assert store.dlq_redrive(None, 600.0) == 2
    assert store.dlq_list() == []
    assert [e.id for e in store.claim_events("n1", 600.0, 10).events] == ["b", "c"]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"max_retries": 3}, "MaximumRetryAttempts"),
        ({"max_retries": -1}, "MaximumRetryAttempts"),
        ({"max_age_s": 59}, "MaximumEventAgeInSeconds"),
        ({"max_age_s": 21_601}, "MaximumEventAgeInSeconds"),
    ],
)
def test_put_event_limits(store: EventStore, kwargs: dict[str, int], message: str) -> None:
    with pytest.raises(InvalidParameterValueException, match=message):
        store.put_event("f", b"{}", 0.0, **kwargs)  # type: ignore[arg-type]


# -- event invoke config ----------------------------------------------------------------------

FAILURE_ARN = "arn:aws:sqs:us-east-1:000000000000:dlq"


def config(data: dict[str, object]) -> EventInvokeConfig:
    return msgspec.convert(data, EventInvokeConfig)


def test_config_put_get_update_delete(store: EventStore) -> None:
    with pytest.raises(ResourceNotFoundException, match="doesn't have an EventInvokeConfig"):
        store.get_event_invoke_config("f")
    put = store.put_event_invoke_config(
        "f",
        config(
            {
                "MaximumRetryAttempts": 1,
                "DestinationConfig": {"OnFailure": {"Destination": FAILURE_ARN}},
            }
        ),
        10.0,
    )
    assert msgspec.to_builtins(put) == {
        "MaximumRetryAttempts": 1,
        "DestinationConfig": {"OnFailure": {"Destination": FAILURE_ARN}},
        "LastModified": 10.0,
    }
    assert store.get_event_invoke_config("f") == put
    updated = store.update_event_invoke_config("f", config({"MaximumEventAgeInSeconds": 60}), 11.0)
    assert (updated.maximum_retry_attempts, updated.maximum_event_age_in_seconds) == (1, 60)
    assert updated.destination_config == put.destination_config
    replaced = store.put_event_invoke_config("f", config({"MaximumEventAgeInSeconds": 120}), 12.0)
    assert (replaced.maximum_retry_attempts, replaced.destination_config) == (None, None)
    store.delete_event_invoke_config("f")
    with pytest.raises(ResourceNotFoundException):
        store.delete_event_invoke_config("f")


def test_config_supplies_event_defaults(store: EventStore) -> None:
    store.put_event_invoke_config(
        "f", config({"MaximumRetryAttempts": 0, "MaximumEventAgeInSeconds": 300}), 0.0
    )
    event = store.put_event("f", b"{}", 1.0)
    assert (event.max_retries, event.max_age_s) == (0, 300)
    explicit = store.put_event("f", b"{}", 1.0, max_retries=2)
    assert (explicit.max_retries, explicit.max_age_s) == (2, 300)
    assert store.put_event("g", b"{}", 1.0).max_retries == 2


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"MaximumRetryAttempts": 3}, "MaximumRetryAttempts"),
        ({"MaximumEventAgeInSeconds": 59}, "MaximumEventAgeInSeconds"),
        ({"MaximumEventAgeInSeconds": 21_601}, "MaximumEventAgeInSeconds"),
        ({"DestinationConfig": {"OnFailure": {"Destination": "not-an-arn"}}}, "OnFailure"),
        ({"DestinationConfig": {"OnSuccess": {"Destination": "arn:aws:sqs:x"}}}, "OnSuccess"),
        (
            {"DestinationConfig": {"OnSuccess": {"Destination": FAILURE_ARN + "x" * 320}}},
            "OnSuccess",
        ),
    ],
)
def test_config_validation(store: EventStore, data: dict[str, object], message: str) -> None:
    with pytest.raises(InvalidParameterValueException, match=message):
        store.put_event_invoke_config("f", config(data), 0.0)
    with pytest.raises(InvalidParameterValueException, match=message):
        store.update_event_invoke_config("f", config(data), 0.0)


# Redrives the whole dead-letter list, then claims for node "other" and prints the ids.
OTHER_PROCESS = r"""
import sys
from runtime.asyncinvoke.redis_store import RedisEventStore
from runtime.asyncinvoke.store import SqliteEventStore

if sys.argv[1] == "sqlite":
    store = SqliteEventStore(sys.argv[2])
else:
    store = RedisEventStore(sys.argv[2], prefix=sys.argv[3])
with store:
    print(store.dlq_redrive(None, 100.0))
    print(" ".join(e.id for e in store.claim_events("other", 100.0, 2).events))
"""


def where(store: EventStore, tmp_path: Path) -> list[str]:
    """How another process opens ``store``."""
    if isinstance(store, RedisEventStore):
        return ["redis", store.url, store.prefix]
    return ["sqlite", str(tmp_path / "batch.sqlite3")]


def test_another_process_redrives_and_claims_on_the_same_file(
    store: EventStore, tmp_path: Path
) -> None:
    for i in range(4):
        store.put_event("f", b"{}", float(i), max_retries=0, request_id=f"e{i}")
    assert len(store.claim_events("here", 10.0, 10).events) == 4
    for i in range(4):
        store.event_failed(f"e{i}", "Unhandled", 11.0)
    assert len(store.dlq_list()) == 4
    root = ROOT
    done = subprocess.run(
        [sys.executable, "-c", OTHER_PROCESS, *where(store, tmp_path)],
        cwd=root,
        env={**os.environ, "PYTHONPATH": str(root)},
        capture_output=True,
        check=True,
        timeout=30,
    )
    count, claimed = done.stdout.decode().splitlines()
    assert (count, claimed.split()) == ("4", ["e0", "e1"])  # redriven: oldest first
    assert store.dlq_list() == []
    assert [e.id for e in store.claim_events("here", 100.0, 10).events] == ["e2", "e3"]
    assert store.stale_nodes(101.0, 0.0) == ["here", "other"]
