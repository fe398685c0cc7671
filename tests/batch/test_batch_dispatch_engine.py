"""End to end on a real engine and a SQLite file: ``engine.invoke(..., "Event")`` answers 202
once the event is stored, the dispatcher runs it, a failure goes to the OnFailure function."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from service_support import RECORDED, basic, lines, recorder

from runtime import Engine
from runtime.asyncinvoke.backlog import EventBacklog
from runtime.asyncinvoke.dispatch import EventDispatcher
from runtime.asyncinvoke.model import DestinationConfig, DestinationTarget, EventInvokeConfig
from runtime.asyncinvoke.store import SqliteEventStore


def test_event_invocations_run_durably_with_destinations(arun: Any, tmp_path: Path) -> None:
    async def main() -> None:
        store = SqliteEventStore(tmp_path / "data" / "batch.sqlite3")
        try:
            async with Engine() as engine:
                backlog = EventBacklog(store)
                engine.backlog = backlog
                dispatcher = EventDispatcher(engine, store, concurrency=4)
                backlog.event_listeners.append(dispatcher.wake)
                rec, out = recorder(tmp_path, "rec", returns=RECORDED)
                sink, sink_out = recorder(tmp_path, "sink", returns=RECORDED)
                for config in (rec, sink, basic("fails", "flexible")):
                    await engine.register(config)
                failure = EventInvokeConfig(
                    maximum_retry_attempts=0,
                    destination_config=DestinationConfig(
                        on_failure=DestinationTarget(destination=engine.pool.function_arn("sink"))
                    ),
                )
                store.put_event_invoke_config("fails", failure, time.time())
                await dispatcher.start()
                try:
                    accepted = await engine.invoke("rec", {"n": 1}, "Event")
                    assert accepted.status_code == 202
                    failed = await engine.invoke("fails", {"fail": True}, "Event")
                    assert failed.status_code == 202
                    assert await lines(out, 1) == [{"n": 1}]
                    (record,) = await lines(sink_out, 1)
                finally:
                    await dispatcher.close()
            assert record["requestContext"]["condition"] == "RetriesExhausted"
            assert record["requestPayload"] == {"fail": True}
            assert record["responseContext"]["functionError"] == "Unhandled"
            assert record["responsePayload"]["errorMessage"] == "asked to fail"
            assert store.dlq_list() == []
            assert store.claim_events("after", time.time() + 1e6, 10).events == []
        finally:
            store.close()

    arun(main(), timeout=60)
