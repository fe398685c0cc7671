"""One SQLite file in WAL mode: its connection, short transactions, one thread at a time.

Durability is against the process dying (WAL with ``synchronous = NORMAL``: a committed
transaction is in the operating system's hands), not against the machine losing power.
"""

from __future__ import annotations

import os
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from ..errors import ServiceException


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
