"""One SQLite file in WAL mode: its connection, short transactions, one thread at a time.

Durability is against the process dying (WAL with ``synchronous = NORMAL``: a committed
transaction is in the operating system's hands), not against the machine losing power.

Several stores share one file (the batch store, the async invocations, the schedule rules,
and the ``nodes`` heartbeat table of :mod:`runtime.node` that the first two share), each over
its own connection and with its own tables. Each is a *component* with its
own schema version, kept in one table::

    warmstart_meta(component TEXT PRIMARY KEY, version INTEGER)

:meth:`SqliteFile._upgrade` takes a component from the version recorded there to the last of
its migrations, in the transaction that opens the store, and refuses a file whose version is
newer than this warmstart knows.
"""

from __future__ import annotations

import asyncio
import functools
import os
import sqlite3
import threading
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Executor
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

from .errors import ServiceException

T = TypeVar("T")

#: the migrations of one component: MIGRATIONS[i] takes it from version i to i + 1
Migrations = Sequence[Sequence[str]]


async def offload(executor: Executor | None, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """``fn(*args, **kwargs)`` in ``executor`` (None: the loop's default one), off the loop:
    a store call may wait for another process's write lock."""
    loop = asyncio.get_running_loop()
    return await loop.run_in_executor(executor, functools.partial(fn, *args, **kwargs))


class SqliteFile:
    """The connection of a store kept in ``path``; subclasses give ``_migrate``."""

    #: what a busy error calls this file
    kind = "store"

    def _open(
        self, path: str | os.PathLike[str], busy_timeout_s: float, *, foreign_keys: bool = False
    ) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(
            self.path, timeout=busy_timeout_s, isolation_level=None, check_same_thread=False
        )
        try:
            self._db.execute("PRAGMA journal_mode = WAL")
            self._db.execute("PRAGMA synchronous = NORMAL")
            if foreign_keys:
                self._db.execute("PRAGMA foreign_keys = ON")
            self._db.execute(f"PRAGMA busy_timeout = {int(busy_timeout_s * 1000)}")
            self._migrate()
        except BaseException:
            self._db.close()
            raise

    def _migrate(self) -> None:
        raise NotImplementedError

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def _upgrade(
        self,
        db: sqlite3.Connection,
        component: str,
        migrations: Migrations,
        *,
        legacy: int | None = None,
    ) -> int:
        """Run ``component``'s migrations past its recorded version (inside ``_write``);
        returns the version it is now at. ``legacy`` is the version a file from before
        ``warmstart_meta`` recorded elsewhere, taken when the component has no row yet."""
        db.execute(
            "CREATE TABLE IF NOT EXISTS warmstart_meta"
            " (component TEXT PRIMARY KEY, version INTEGER NOT NULL) WITHOUT ROWID"
        )
        known = len(migrations)
        version = _recorded(db, component)
        if version is None:
            version = legacy or 0
        if version > known:
            raise ServiceException(
                f"{self.path} has {component} schema version {version}; this warmstart knows "
                f"up to {known}"
            )
        for target in range(version, known):
            for statement in migrations[target]:
                db.execute(statement)
        db.execute(
            "INSERT INTO warmstart_meta (component, version) VALUES (?, ?)"
            " ON CONFLICT (component) DO UPDATE SET version = excluded.version",
            (component, known),
        )
        return known

    def _version(self, component: str) -> int:
        """The schema version of ``component`` recorded in this file."""
        with self._read() as db:
            return _recorded(db, component) or 0

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        """A read-modify-write transaction, holding the write lock from its start."""
        with self._lock:
            db = self._db
            try:
                db.execute("BEGIN IMMEDIATE")
            except sqlite3.OperationalError as exc:  # another process held the lock too long
                raise ServiceException(f"the {self.kind} is busy: {exc}") from exc
            try:
                yield db
            except BaseException:
                db.execute("ROLLBACK")
                raise
            db.execute("COMMIT")

    @contextmanager
    def _read(self) -> Iterator[sqlite3.Connection]:
        """A consistent snapshot for reads of several statements."""
        with self._lock:
            db = self._db
            db.execute("BEGIN")
            try:
                yield db
            finally:
                db.execute("COMMIT")


def _recorded(db: sqlite3.Connection, component: str) -> int | None:
    row = db.execute(
        "SELECT version FROM warmstart_meta WHERE component = ?", (component,)
    ).fetchone()
    return None if row is None else int(row[0])
