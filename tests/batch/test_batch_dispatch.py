"""The async-invocation dispatcher on virtual time: Lambda's retries at exactly +60 s and
+120 s, throttles that cost no retry, maximum age, destinations, recovery, bounded concurrency.
A scripted engine stands in for the real one (see test_batch_dispatch_engine.py for that)."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from fakes import FakeClock

from runtime.asyncinvoke import model as ev
from runtime.asyncinvoke.backlog import EventBacklog
from runtime.asyncinvoke.dispatch import NODE_PREFIX, EventDispatcher, event_node_id
from runtime.asyncinvoke.model import DestinationConfig, DestinationTarget, EventInvokeConfig
from runtime.asyncinvoke.store import SqliteEventStore
from runtime.config import PoolConfig
from runtime.errors import ResourceNotFoundException, ServiceException, TooManyRequestsException
from runtime.result import InvokeResult

T0 = 1_700_000_000.0
POOL = PoolConfig()
ERROR_DOC = b'{"errorMessage": "asked to fail", "errorType": "RuntimeError"}'


class ScriptedEngine:
    """Answers each function's calls from its script: "ok", "error" (a function error),
    "throttle", "missing", or "hang" (never answers); an empty script answers "ok"."""

    pool = POOL

    def __init__(self, clock: FakeClock, **scripts: list[str]) -> None:
        self.clock = clock
        self.scripts = {name: list(script) for name, script in scripts.items()}
        self.calls: list[tuple[str, float, Any]] = []
        #: the request id each call ran under, in call order
        self.request_ids: list[str | None] = []
        self.active = 0
        self.peak = 0
        self.called = asyncio.Event()

    async def invoke(
        self, name: str, payload: bytes, *, request_id: str | None = None
    ) -> InvokeResult:
        self.calls.append((name, self.clock(), orjson.loads(payload)))
        self.request_ids.append(request_id)
        self.called.set()
        script = self.scripts.get(name, [])
        step = script.pop(0) if script else "ok"
        self.active += 1
        self.peak = max(self.peak, self.active)
        try:
            await asyncio.sleep(0)
            return await self._answer(name, step)
        finally:
            self.active -= 1

    async def _answer(self, name: str, step: str) -> InvokeResult:
        if step == "error":
            return InvokeResult(ERROR_DOC, function_error="Unhandled")
        if step == "throttle":
            raise TooManyRequestsException("Rate Exceeded.", "ReservedFunctionConcurrency")
        if step == "missing":
            raise ResourceNotFoundException(f"Function not found: {POOL.function_arn(name)}")
        if step == "hang":
            await asyncio.Future()
        return InvokeResult(b'{"done": true}')

    def times(self, name: str) -> list[float]:
        return [t - T0 for n, t, _ in self.calls if n == name]


@pytest.fixture
def store(tmp_path: Path) -> Iterator[SqliteEventStore]:
    s = SqliteEventStore(tmp_path / "batch.sqlite3")
    yield s
    s.close()


def dispatcher(engine: ScriptedEngine, store: SqliteEventStore, **options: Any) -> EventDispatcher:
    return EventDispatcher(engine, store, node_id="events@test", clock=engine.clock, **options)


async def run_at(d: EventDispatcher, clock: FakeClock, *offsets: float) -> list[int]:
    """``run_once`` at each T0 + offset; how many events each handled."""
    handled = []
    for offset in offsets:
        clock.time = T0 + offset
        handled.append(await d.run_once())
    return handled


def destinations(on_success: str | None = None, on_failure: str | None = None) -> EventInvokeConfig:
    return EventInvokeConfig(
        destination_config=DestinationConfig(
            on_success=DestinationTarget(destination=on_success) if on_success else None,
            on_failure=DestinationTarget(destination=on_failure) if on_failure else None,
        )
    )


# -- Lambda's retry timing --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("script", "offsets", "calls", "dead"),
    [
        pytest.param(["ok"], [0], [0], None, id="success"),
        pytest.param(["error", "ok"], [0, 59.999, 60], [0, 60], None, id="retried-once"),
        pytest.param(
            ["error", "error", "ok"], [0, 60, 179.9, 180], [0, 60, 180], None, id="retried-twice"
        ),
        pytest.param(
            ["error", "error", "error"],
            [0, 60, 180, 400],
            [0, 60, 180],
            "RetriesExhausted",
            id="exhausted",
        ),
        pytest.param(
            ["throttle", "throttle", "throttle", "ok"],
            [0, 1, 3, 6.999, 7],
            [0, 1, 3, 7],
            None,
            id="throttles-back-off-1-2-4",
        ),
        pytest.param(
            ["throttle", "error", "error", "error"],
            [0, 1, 61, 181],
            [0, 1, 61, 181],
            "RetriesExhausted",
            id="throttle-costs-no-retry",
        ),
        pytest.param(
            ["missing", "missing", "missing"],
            [0, 60, 180],
            [0, 60, 180],
            "RetriesExhausted",
            id="function-missing",
        ),
    ],
)
def test_retry_timing(
    arun: Any,
    store: SqliteEventStore,
    script: list[str],
    offsets: list[float],
    calls: list[float],
    dead: str | None,
) -> None:
    async def main() -> None:
        clock = FakeClock(T0)
        engine = ScriptedEngine(clock, f=script)
        store.put_event("f", b'{"n": 1}', T0, request_id="e1")
        await run_at(dispatcher(engine, store), clock, *offsets)
        assert engine.times("f") == pytest.approx(calls)
        # every attempt runs under the request id the caller's 202 gave
        assert engine.request_ids == ["e1"] * len(calls)
        dlq = store.dlq_list()
        if dead is None:
            assert dlq == []
            assert store.claim_events("other", T0 + 10_000, 10).events == []  # done: gone
        else:
            ((event,),) = [dlq]
            assert (event.id, event.condition, event.invocations) == ("e1", dead, len(calls))

    arun(main())


def test_the_dead_letter_keeps_the_last_error(arun: Any, store: SqliteEventStore) -> None:
    async def main() -> None:
        clock = FakeClock(T0)
        engine = ScriptedEngine(clock, f=["throttle", "error"])
        store.put_event("f", b"{}", T0, max_retries=0, request_id="e1")
        store.put_event("g", b"{}", T0, max_retries=0, request_id="e2")
        engine.scripts["g"] = ["missing"]
        assert await run_at(dispatcher(engine, store), clock, 0, 1) == [2, 1]
        errors = {e.id: e.error for e in store.dlq_list()}
        assert errors == {
            "e1": "Unhandled: RuntimeError: asked to fail",
            "e2": "ResourceNotFoundException: Function not found: "
            "arn:aws:lambda:us-east-1:000000000000:function:g",
        }

    arun(main())


def test_an_event_past_its_age_is_dead_lettered_unrun(arun: Any, store: SqliteEventStore) -> None:
    async def main() -> None:
        clock = FakeClock(T0)
        engine = ScriptedEngine(clock)
        store.put_event("f", b"{}", T0, max_age_s=60, request_id="old")
        assert await run_at(dispatcher(engine, store), clock, 60) == [1]
        assert engine.calls == []
        (event,) = store.dlq_list()
        assert (event.id, event.condition) == ("old", ev.EVENT_AGE_EXCEEDED)

    arun(main())


# -- destinations -----------------------------------------------------------------------------


def test_on_failure_gets_lambdas_record_and_the_dlq_stays_empty(
    arun: Any, store: SqliteEventStore
) -> None:
    async def main() -> None:
        clock = FakeClock(T0)
        engine = ScriptedEngine(clock, f=["error", "error", "error"])
        store.put_event_invoke_config("f", destinations(on_failure=POOL.function_arn("sink")), T0)
        store.put_event("f", b'{"n": 1}', T0, request_id="e1")
        d = dispatcher(engine, store)
        assert await run_at(d, clock, 0, 60, 180, 180) == [1, 1, 1, 1]
        assert store.dlq_list() == []
        ((_, when, record),) = [c for c in engine.calls if c[0] == "sink"]
        assert when == T0 + 180
        assert record == {
            "version": "1.0",
            "timestamp": "2023-11-14T22:16:20.000Z",
            "requestContext": {
                "requestId": "e1",
                "functionArn": "arn:aws:lambda:us-east-1:000000000000:function:f:$LATEST",
                "condition": "RetriesExhausted",
                "approximateInvokeCount": 3,
            },
            "requestPayload": {"n": 1},
            "responseContext": {
                "statusCode": 200,
                "executedVersion": "$LATEST",
                "functionError": "Unhandled",
            },
            "responsePayload": orjson.loads(ERROR_DOC),
        }

    arun(main())


def test_on_success_gets_the_response(arun: Any, store: SqliteEventStore) -> None:
    async def main() -> None:
        clock = FakeClock(T0)
        engine = ScriptedEngine(clock)
        store.put_event_invoke_config("f", destinations(on_success=POOL.function_arn("sink")), T0)
        store.put_event("f", b"[1, 2]", T0, request_id="e1")
        assert await run_at(dispatcher(engine, store), clock, 0, 0) == [1, 1]
        record = engine.calls[-1][2]
        assert engine.calls[-1][0] == "sink"
        assert record["requestContext"]["condition"] == "Success"
        assert record["requestContext"]["approximateInvokeCount"] == 1
        assert (record["requestPayload"], record["responsePayload"]) == ([1, 2], {"done": True})
        assert "functionError" not in record["responseContext"]

    arun(main())


def test_an_expired_event_goes_to_on_failure(arun: Any, store: SqliteEventStore) -> None:
    async def main() -> None:
        clock = FakeClock(T0)
        engine = ScriptedEngine(clock)
        store.put_event_invoke_config("f", destinations(on_failure=POOL.function_arn("sink")), T0)
        store.put_event("f", b"{}", T0, max_age_s=60, request_id="old")
        assert await run_at(dispatcher(engine, store), clock, 100, 100) == [1, 1]
        ((name, _, record),) = engine.calls
        assert (name, record["requestContext"]["condition"]) == ("sink", "EventAgeExceeded")
        assert store.dlq_list() == []

    arun(main())


def test_a_destination_that_is_not_a_function_leaves_the_event_dead(
    arun: Any, store: SqliteEventStore
) -> None:
    async def main() -> None:
        clock = FakeClock(T0)
        engine = ScriptedEngine(clock, f=["error"])
        queue = "arn:aws:sqs:us-east-1:000000000000:dlq"
        store.put_event_invoke_config("f", destinations(on_failure=queue), T0)
        store.put_event("f", b"{}", T0, max_retries=0, request_id="e1")
        await run_at(dispatcher(engine, store), clock, 0, 0)
        assert [e.id for e in store.dlq_list()] == ["e1"]

    arun(main())


# -- concurrency, recovery, shutdown ----------------------------------------------------------


def test_concurrency_is_bounded(arun: Any, store: SqliteEventStore) -> None:
    async def main() -> None:
        clock = FakeClock(T0)
        engine = ScriptedEngine(clock)
        for i in range(5):
            store.put_event("f", b"{}", T0, request_id=f"e{i}")
        d = dispatcher(engine, store, concurrency=2)
        assert await run_at(d, clock, 0, 0, 0, 0) == [2, 2, 1, 0]
        assert engine.peak == 2

    arun(main())


def test_start_recovers_this_node_and_dead_processes_only(
    arun: Any, store: SqliteEventStore
) -> None:
    async def main() -> None:
        clock = FakeClock(T0)
        engine = ScriptedEngine(clock)
        dead_node = f"{NODE_PREFIX}{socket.gethostname()}/4194305/1"  # above pid_max
        for node, rid in [
            ("events@test", "mine"),
            (dead_node, "orphan"),
            (event_node_id(), "live"),  # this very process: alive, not ours to take
            ("batch-runner", "job-node"),  # not an event node
        ]:
            store.put_event("f", b"{}", T0, request_id=rid)
            assert [e.id for e in store.claim_events(node, T0, 1).events] == [rid]
        d = dispatcher(engine, store)
        assert await d.recover() == 2
        assert await run_at(d, clock, 1) == [2]
        assert store.claim_events("x", T0 + 1e6, 10).events == []

    arun(main())


def test_background_dispatch_wakes_on_put_and_close_releases(
    arun: Any, store: SqliteEventStore
) -> None:
    async def main() -> None:
        clock = FakeClock(T0)
        engine = ScriptedEngine(clock, f=["hang"])
        d = dispatcher(engine, store, idle_poll_s=30.0)
        backlog = EventBacklog(store, clock=clock)
        backlog.event_listeners.append(d.wake)
        assert await d.start() == 0
        await backlog.put_event("f", b'{"x": 1}', "r1")
        await asyncio.wait_for(engine.called.wait(), 5)
        assert d.in_flight == 1
        assert "in_flight=1" in repr(d)
        await d.close(drain_s=0.05)
        assert d.in_flight == 0
        (again,) = store.claim_events("other", T0, 10).events  # released, due again
        assert (again.id, again.invocations) == ("r1", 2)

    arun(main())


def test_close_lets_running_events_finish(arun: Any, store: SqliteEventStore) -> None:
    async def main() -> None:
        clock = FakeClock(T0)
        engine = ScriptedEngine(clock)
        d = dispatcher(engine, store)
        await d.start()
        store.put_event("f", b"{}", T0, request_id="e1")
        d.wake()
        await asyncio.wait_for(engine.called.wait(), 5)
        await d.close()
        assert store.claim_events("other", T0 + 1e6, 10).events == []
        assert store.dlq_list() == []

    arun(main())


def test_the_backlog_refuses_batch_work(arun: Any, store: SqliteEventStore) -> None:
    from runtime.errors import BatchUnavailableException

    async def main() -> None:
        backlog = EventBacklog(store)
        with pytest.raises(BatchUnavailableException, match="batch queue"):
            await backlog.spill("long", b"{}", origin="invoke", request_id="r")

    arun(main())


def test_a_busy_dispatcher_keeps_beating(arun: Any, store: SqliteEventStore) -> None:
    async def main() -> None:
        clock = FakeClock(T0)
        engine = ScriptedEngine(clock, f=["hang"])
        d = dispatcher(engine, store, concurrency=1, idle_poll_s=0.01)
        store.put_event("f", b"{}", T0, request_id="e")
        await d.start()
        try:
            await asyncio.wait_for(engine.called.wait(), 5)
            clock.time = T0 + 100  # every slot busy: no claims, yet the node must not look dead
            for _ in range(500):
                if "events@test" not in store.stale_nodes(T0 + 100, 1.0):
                    break
                await asyncio.sleep(0.01)
            assert "events@test" not in store.stale_nodes(T0 + 100, 1.0)
        finally:
            await d.close(drain_s=0)

    arun(main())


class Outage:
    """The store, with its settling calls refused ``times`` times as an unreachable store
    refuses them."""

    def __init__(self, store: SqliteEventStore, times: int) -> None:
        self.store = store
        self.times = times
        self.refused = 0

    def __getattr__(self, name: str) -> Any:
        found = getattr(self.store, name)
        if name not in ("event_done", "event_failed"):
            return found

        def call(*args: Any, **kwargs: Any) -> Any:
            if self.refused < self.times:
                self.refused += 1
                raise ServiceException("the store at redis://x is unreachable: refused")
            return found(*args, **kwargs)

        return call


@pytest.mark.parametrize("step", ["ok", "error"])
def test_a_settlement_the_store_refused_is_made_once_it_answers(
    arun: Any, store: SqliteEventStore, step: str
) -> None:
    """An event whose outcome is known is not left in flight on a node that lives on: its
    done (or failed) is tried again until the store takes it."""

    async def main() -> None:
        clock = FakeClock(T0)
        engine = ScriptedEngine(clock, f=[step])
        flaky = Outage(store, times=3)
        d = dispatcher(engine, flaky, idle_poll_s=30.0)  # type: ignore[arg-type]
        backlog = EventBacklog(store, clock=clock)
        backlog.event_listeners.append(d.wake)
        await d.start()
        await backlog.put_event("f", b'{"x": 1}', "r1")
        for _ in range(200):
            if flaky.refused == 3 and d.in_flight == 0:
                break
            await asyncio.sleep(0.05)
        await d.close()
        assert flaky.refused == 3
        assert len(engine.calls) == 1  # settled, not run again
        left = store.claim_events("other", T0 + 3600, 10).events
        if step == "ok":
            assert left == []
        else:  # a function error: due for its retry, with that one try counted
            (again,) = left
            assert (again.id, again.retries) == ("r1", 1)

    arun(main())
