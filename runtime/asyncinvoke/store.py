"""The store of async invocations: events stored before Invoke answers 202, claimed by a
dispatcher, retried or dead-lettered by :mod:`runtime.asyncinvoke.model`'s rules, redriven; and
the per-function event invoke configs.

:class:`EventStore` is the interface the dispatcher, the backlog and the service program
against. :class:`SqliteEventStore` implements it in the SQLite file the batch store and the
schedule rules share (:data:`runtime.batch.store.STORE_FILE`), over its own connection, with
its own tables (``events``, ``event_configs``) and its own schema version: the ``events`` row
of the file's ``warmstart_meta`` (:mod:`runtime.sqlite`). The dispatchers' heartbeats are the
file's ``nodes`` table (:class:`runtime.node.NodeTable`), shared with the batch runners.

The tables were once part of the batch store's schema; the first migration here makes them
only when missing, so a file from then opens with every event and config in it. Nothing here
reads a clock: every call that changes state takes ``now`` (epoch seconds).

Durability is the batch store's: WAL, ``synchronous = NORMAL``, every state change one
``BEGIN IMMEDIATE`` transaction (a dispatcher and a CLI redrive in two processes on one file
wait for each other's write lock, up to ``busy_timeout_s``).
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Final, Protocol

import msgspec

from ..errors import ResourceNotFoundException
from ..node import NodeTable
from ..stamps import request_id as new_request_id
from . import model as ev

__all__ = [
    "COMPONENT",
    "MIGRATIONS",
    "SCHEMA_VERSION",
    "EventStore",
    "Recovered",
    "SqliteEventStore",
]

_encoder = msgspec.json.Encoder()
_config_decoder = msgspec.json.Decoder(ev.EventInvokeConfig)

#: the event tables' row in warmstart_meta
COMPONENT: Final = "events"

# IF NOT EXISTS: a file from before this component has these from the batch schema's version 1
_SCHEMA_V1 = (
    """CREATE TABLE IF NOT EXISTS events (
        seq INTEGER PRIMARY KEY,
        id TEXT NOT NULL UNIQUE,
        function TEXT NOT NULL,
        payload BLOB NOT NULL,
        created_at REAL NOT NULL,
        next_at REAL NOT NULL,
        state TEXT NOT NULL,
        node TEXT,
        invocations INTEGER NOT NULL DEFAULT 0,
        retries INTEGER NOT NULL DEFAULT 0,
        throttles INTEGER NOT NULL DEFAULT 0,
        max_retries INTEGER NOT NULL,
        max_age INTEGER NOT NULL,
        error TEXT,
        condition TEXT
    )""",
    "CREATE INDEX IF NOT EXISTS events_due ON events(next_at, seq) WHERE state = 'DUE'",
    "CREATE INDEX IF NOT EXISTS events_node ON events(node) WHERE state = 'INFLIGHT'",
    "CREATE INDEX IF NOT EXISTS events_dead ON events(seq) WHERE state = 'DEAD'",
    """CREATE TABLE IF NOT EXISTS event_configs (
        function TEXT PRIMARY KEY,
        detail BLOB NOT NULL
    ) WITHOUT ROWID""",
)
#: MIGRATIONS[i] takes the event tables from version i to i + 1
MIGRATIONS: tuple[tuple[str, ...], ...] = (_SCHEMA_V1,)
SCHEMA_VERSION = len(MIGRATIONS)


@dataclass(frozen=True)
class Recovered:
    """What a recovery of a dead node found: how many of its events are due again."""

    events: int


class EventStore(Protocol):
    """The async-invocation store's interface. Every method is one transaction; ``now`` is
    epoch seconds. ``heartbeat`` and ``stale_nodes`` are the node liveness the dispatcher
    shares with batch runners on the same file; ``recover`` gives a node's events back."""

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
    def recover(self, node: str, now: float, *, forget: bool = True) -> Recovered: ...

    def close(self) -> None: ...


_EVENT_COLUMNS = (
    "id, function, payload, created_at, next_at, state, node, invocations, retries, throttles,"
    " max_retries, max_age, error, condition"
)


class SqliteEventStore(NodeTable):
    """Async invocation events and event invoke configs in the SQLite file at ``path`` (see
    the module docstring); use it from any thread, one call at a time."""

    kind = "event store"

    def __init__(self, path: str | os.PathLike[str], *, busy_timeout_s: float = 10.0) -> None:
        self._open(path, busy_timeout_s)

    def _migrate(self) -> None:
        with self._write() as db:
            self._upgrade(db, COMPONENT, MIGRATIONS)
            self._migrate_nodes(db)

    @property
    def schema_version(self) -> int:
        return self._version(COMPONENT)

    def __enter__(self) -> SqliteEventStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

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

    def recover(self, node: str, now: float, *, forget: bool = True) -> Recovered:
        """After ``node`` died (its own restart, or a node found dead or silent): its
        in-flight events are due again at ``now`` (at-least-once), and, when ``forget``, the
        node is no longer listed by :meth:`stale_nodes`. ``forget=False`` leaves that to
        whoever gives back the node's other claims after this."""
        with self._write() as db:
            events = db.execute(
                "UPDATE events SET state = 'DUE', node = NULL, next_at = ?"
                " WHERE node = ? AND state = 'INFLIGHT'",
                (now, node),
            ).rowcount
            if forget:
                self._forget(db, node)
        return Recovered(events=events)

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
