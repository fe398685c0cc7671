"""The engine's backlog of Event invocations: store first, then wake the listeners.

    engine.invoke(fn, e, "Event") ── EventBacklog.put_event ──▶ EventStore.put_event (durable)
                                                   └──▶ event_listeners() (a dispatcher's wake)

:class:`EventBacklog` is the backlog of a service that runs async invocations only; the batch
queue (:class:`runtime.batch.queue.BatchQueue`) holds one on its event store for its own Event
invocations and adds the spill of batch work.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from concurrent.futures import Executor
from typing import Any, NoReturn

from ..errors import BatchUnavailableException
from ..sqlite import offload
from .store import EventStore

__all__ = ["EventBacklog"]


class EventBacklog:
    """The engine's backlog for Event invocations only: each is stored (in ``executor``, None:
    the loop's default one) before Invoke answers 202, then every callable in
    ``event_listeners`` is called with no arguments (the dispatcher's ``wake``). Batch work is
    refused: that is ``runtime.batch.queue``'s."""

    def __init__(
        self,
        store: EventStore,
        *,
        clock: Callable[[], float] = time.time,
        executor: Executor | None = None,
    ) -> None:
        self.store = store
        self.clock = clock
        self.executor = executor
        self.event_listeners: list[Callable[[], Any]] = []

    async def put_event(self, function: str, payload: bytes, request_id: str) -> None:
        """Store an Event invocation (durable when this returns), then wake the listeners."""
        await offload(
            self.executor,
            self.store.put_event,
            function,
            payload,
            self.clock(),
            request_id=request_id,
        )
        for listener in self.event_listeners:
            listener()

    async def spill(
        self, function: str, payload: bytes, *, origin: str, request_id: str
    ) -> NoReturn:
        raise BatchUnavailableException(
            f"{function} needs the batch queue (a batch function or spill_on_timeout), and "
            "this service runs async invocations only"
        )
