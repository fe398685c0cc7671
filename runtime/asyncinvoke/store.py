"""The store of async invocations: events stored before Invoke answers 202, claimed by a
dispatcher, retried or dead-lettered by :mod:`runtime.asyncinvoke.model`'s rules, redriven; and
the per-function event invoke configs.

:class:`EventStore` is the interface the dispatcher, the backlog and the service program
against. :class:`EventsMixin` implements it on the SQLite file of the batch store (its tables
are in that file's ``batch`` schema), and :class:`~runtime.batch.store.SqliteStore` includes
it, so one object serves both protocols. Nothing here reads a clock: every call that changes
state takes ``now`` (epoch seconds).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Sequence
from typing import Any, Protocol

import msgspec

from ..errors import ResourceNotFoundException
from ..sqlite import SqliteFile
from ..wording import request_id as new_request_id
from . import model as ev

__all__ = ["EventStore", "EventsMixin", "Recovered"]

_encoder = msgspec.json.Encoder()
_config_decoder = msgspec.json.Decoder(ev.EventInvokeConfig)


class Recovered(Protocol):
    """What a recovery of a dead node found; the dispatcher counts its events."""

    @property
    def events(self) -> int: ...


class EventStore(Protocol):
    """The async-invocation store's interface. Every method is one transaction; ``now`` is
    epoch seconds. ``heartbeat``, ``stale_nodes`` and ``recover`` are the node liveness the
    dispatcher shares with batch runners on the same file."""

    def put_event(
        self,
        function: str,
        payload: bytes,
        now: float,
        *,
        max_retries: int | None = None,
        max_age_s: int | None = None,
        request_id: str | None = None,
    ) -> ev.AsyncEvent: ...
    def claim_events(self, node: str, now: float, limit: int = 10) -> ev.EventClaim: ...
    def event_done(self, event_id: str) -> None: ...
    def event_failed(
        self, event_id: str, error: str, now: float, *, throttled: bool = False
    ) -> ev.AsyncEvent: ...
    def dlq_list(self, function: str | None = None, limit: int = 100) -> list[ev.AsyncEvent]: ...
    def dlq_redrive(self, event_ids: Sequence[str] | None, now: float) -> int: ...
    def put_event_invoke_config(
        self, function: str, config: ev.EventInvokeConfig, now: float
    ) -> ev.EventInvokeConfig: ...
    def update_event_invoke_config(
        self, function: str, config: ev.EventInvokeConfig, now: float
    ) -> ev.EventInvokeConfig: ...
    def get_event_invoke_config(self, function: str) -> ev.EventInvokeConfig: ...
    def delete_event_invoke_config(self, function: str) -> None: ...

    # node liveness
    def heartbeat(self, node: str, now: float) -> None: ...
    def stale_nodes(self, now: float, max_silence_s: float) -> list[str]: ...
    def recover(self, node: str, now: float) -> Recovered: ...

    def close(self) -> None: ...


_EVENT_COLUMNS = (
    "id, function, payload, created_at, next_at, state, node, invocations, retries, throttles,"
    " max_retries, max_age, error, condition"
)


class EventsMixin(SqliteFile):
    """Async invocation events and event invoke configs."""

    # -- async invocation events --------------------------------------------------------------

    def put_event(
        self,
        function: str,
        payload: bytes,
        now: float,
        *,
        max_retries: int | None = None,
        max_age_s: int | None = None,
        request_id: str | None = None,
    ) -> ev.AsyncEvent:
        """Accept an async invocation; durable when this returns. Limits not given come from
        the function's event invoke config, else Lambda's defaults (2 retries, 6 hours). A
        ``request_id`` already accepted returns the stored event (a producer may resend)."""
        ev.check_retries(max_retries)
        ev.check_max_age(max_age_s)
        event_id = request_id or new_request_id()
        with self._write() as db:
            config = self._config(db, function) or ev.EventInvokeConfig()
            db.execute(
                "INSERT INTO events (id, function, payload, created_at, next_at, state,"
                " max_retries, max_age) VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
                " ON CONFLICT (id) DO NOTHING",
                (
                    event_id,
                    function,
                    payload,
                    now,
                    now,
                    ev.DUE,
                    config.retries if max_retries is None else max_retries,
                    config.max_age_s if max_age_s is None else max_age_s,
                ),
            )
            return self._event(db, event_id)

    def claim_events(self, node: str, now: float, limit: int = 10) -> ev.EventClaim:
        """Hand up to ``limit`` due events to ``node`` (oldest due first), now INFLIGHT. Due
        events already past their maximum age are dead-lettered instead and returned apart."""
        live: list[ev.AsyncEvent] = []
        dead: list[ev.AsyncEvent] = []
        with self._write() as db:
            self._beat(db, node, now)
            while len(live) < limit:
                rows = db.execute(
                    f"SELECT {_EVENT_COLUMNS} FROM events WHERE state = 'DUE' AND next_at <= ?"
                    " ORDER BY next_at, seq LIMIT ?",
                    (now, limit - len(live)),
                ).fetchall()
                if not rows:
                    break
                for row in rows:
                    event = _event_row(row)
                    if ev.expired(event, now):
                        dead.append(self._store_event(db, ev.expire(event), now))
                    else:
                        event = msgspec.structs.replace(
                            event, state=ev.INFLIGHT, node=node, invocations=event.invocations + 1
                        )
                        live.append(self._store_event(db, event, now))
        return ev.EventClaim(events=live, expired=dead)

    def event_done(self, event_id: str) -> None:
        """The event ran (successfully, or its failure was handled): forget it."""
        with self._write() as db:
            db.execute("DELETE FROM events WHERE id = ?", (event_id,))

    def event_failed(
        self, event_id: str, error: str, now: float, *, throttled: bool = False
    ) -> ev.AsyncEvent:
        """A try of an in-flight event failed (``throttled``: it could not get concurrency).
        Returns the event as it now is: DUE at its retry time, or DEAD with its condition —
        then the caller sends it to the on-failure destination, if one is configured."""
        with self._write() as db:
            event = self._event(db, event_id)
            if event.state != ev.INFLIGHT:
                return event
            return self._store_event(
                db, ev.after_failure(event, error, now, throttled=throttled), now
            )

    def dlq_list(self, function: str | None = None, limit: int = 100) -> list[ev.AsyncEvent]:
        """Dead-lettered events, oldest first (``next_attempt_at`` is when each was
        discarded)."""
        with self._read() as db:
            rows = db.execute(
                f"SELECT {_EVENT_COLUMNS} FROM events WHERE state = 'DEAD'"
                " AND (? IS NULL OR function = ?) ORDER BY seq LIMIT ?",
                (function, function, limit),
            ).fetchall()
        return [_event_row(row) for row in rows]

    def dlq_redrive(self, event_ids: Sequence[str] | None, now: float) -> int:
        """Put dead events (the ones named, or all) back as new: due now, with their retries
        and their age starting over. Returns how many."""
        reset = (
            "UPDATE events SET state = 'DUE', next_at = ?, created_at = ?, retries = 0,"
            " throttles = 0, condition = NULL, node = NULL WHERE state = 'DEAD'"
        )
        with self._write() as db:
            if event_ids is None:
                return db.execute(reset, (now, now)).rowcount
            return sum(
                db.execute(f"{reset} AND id = ?", (now, now, event_id)).rowcount
                for event_id in event_ids
            )

    def _event(self, db: sqlite3.Connection, event_id: str) -> ev.AsyncEvent:
        row = db.execute(
            f"SELECT {_EVENT_COLUMNS} FROM events WHERE id = ?", (event_id,)
        ).fetchone()
        if row is None:
            raise ResourceNotFoundException(f"Event {event_id} does not exist")
        return _event_row(row)

    @staticmethod
    def _store_event(db: sqlite3.Connection, event: ev.AsyncEvent, now: float) -> ev.AsyncEvent:
        if event.state == ev.DEAD:
            event = msgspec.structs.replace(event, next_attempt_at=now)
        db.execute(
            "UPDATE events SET state = ?, node = ?, next_at = ?, invocations = ?, retries = ?,"
            " throttles = ?, error = ?, condition = ? WHERE id = ?",
            (
                event.state,
                event.node,
                event.next_attempt_at,
                event.invocations,
                event.retries,
                event.throttles,
                event.error,
                event.condition,
                event.id,
            ),
        )
        return event

    # -- event invoke config ------------------------------------------------------------------

    def put_event_invoke_config(
        self, function: str, config: ev.EventInvokeConfig, now: float
    ) -> ev.EventInvokeConfig:
        """PutFunctionEventInvokeConfig: replaces the whole config (settings left out are
        removed)."""
        ev.check_event_invoke_config(config)
        with self._write() as db:
            return self._save_config(db, function, config, now)

    def update_event_invoke_config(
        self, function: str, config: ev.EventInvokeConfig, now: float
    ) -> ev.EventInvokeConfig:
        """UpdateFunctionEventInvokeConfig: changes only the settings given."""
        ev.check_event_invoke_config(config)
        with self._write() as db:
            old = self._config(db, function) or ev.EventInvokeConfig()
            return self._save_config(db, function, ev.merge_event_invoke_config(old, config), now)

    def get_event_invoke_config(self, function: str) -> ev.EventInvokeConfig:
        with self._read() as db:
            config = self._config(db, function)
        if config is None:
            raise ResourceNotFoundException(
                f"The function {function} doesn't have an EventInvokeConfig"
            )
        return config

    def delete_event_invoke_config(self, function: str) -> None:
        with self._write() as db:
            cur = db.execute("DELETE FROM event_configs WHERE function = ?", (function,))
            if cur.rowcount == 0:
                raise ResourceNotFoundException(
                    f"The function {function} doesn't have an EventInvokeConfig"
                )

    @staticmethod
    def _config(db: sqlite3.Connection, function: str) -> ev.EventInvokeConfig | None:
        row = db.execute(
            "SELECT detail FROM event_configs WHERE function = ?", (function,)
        ).fetchone()
        return None if row is None else _config_decoder.decode(row[0])

    @staticmethod
    def _save_config(
        db: sqlite3.Connection, function: str, config: ev.EventInvokeConfig, now: float
    ) -> ev.EventInvokeConfig:
        config = msgspec.structs.replace(config, function_arn=None, last_modified=now)
        db.execute(
            "INSERT INTO event_configs (function, detail) VALUES (?, ?)"
            " ON CONFLICT (function) DO UPDATE SET detail = excluded.detail",
            (function, _encoder.encode(config)),
        )
        return config


def _event_row(row: Iterable[Any]) -> ev.AsyncEvent:
    (
        event_id,
        function,
        payload,
        created,
        next_at,
        state,
        node,
        invocations,
        retries,
        throttles,
        max_retries,
        max_age,
        error,
        condition,
    ) = row
    return ev.AsyncEvent(
        id=event_id,
        function=function,
        payload=bytes(payload),
        created_at=created,
        next_attempt_at=next_at,
        state=state,
        node=node,
        invocations=invocations,
        retries=retries,
        throttles=throttles,
        max_retries=max_retries,
        max_age_s=max_age,
        error=error,
        condition=condition,
    )
