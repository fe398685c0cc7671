"""Node identity and liveness: which process a stored claim or a labelled container belongs
to, and whether that process may still run.

A node id is ``host/pid/start time``: a pid reused after a restart is another node, and a node
on this host whose process is gone is known dead at once (no silence to wait out). The event
dispatcher (``events@<node>``), the batch runner (``<node>+<n>``) and the container pool's
labels all build on it.

A node that claims work from a store on the shared SQLite file says it is alive in that file's
``nodes`` table (:class:`NodeTable`); whoever finds a node silent (or its process gone) gives
its claims back and forgets it. The table is a component of its own in ``warmstart_meta``
(``nodes``), so the batch store and the async-invocation store each bring it to date, and
neither reaches it through the other.
"""

from __future__ import annotations

import os
import socket
import sqlite3
from typing import Final

from .sqlite import Migrations, SqliteFile

__all__ = ["NODES_COMPONENT", "NODE_MIGRATIONS", "NodeTable", "local_node_id", "node_alive"]

#: the nodes table's row in warmstart_meta
NODES_COMPONENT: Final = "nodes"
#: a file from before this component kept the table in the batch schema: IF NOT EXISTS keeps it
NODE_MIGRATIONS: Migrations = (
    (
        "CREATE TABLE IF NOT EXISTS nodes"
        " (id TEXT PRIMARY KEY, seen_at REAL NOT NULL) WITHOUT ROWID",
    ),
)


def local_node_id() -> str:
    """This process as a node: ``host/pid/start time``, so a restarted pid is another node."""
    return f"{socket.gethostname()}/{os.getpid()}/{_start_ticks(os.getpid())}"


def node_alive(node_id: str) -> bool:
    """Whether the node that labelled a container may still run (another host: assume so)."""
    try:
        host, pid, ticks = node_id.rsplit("/", 2)
    except ValueError:
        return True
    if host != socket.gethostname() or not pid.isdigit():
        return True
    return _start_ticks(int(pid)) == ticks


def _start_ticks(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
    except OSError:
        return ""
    return stat.rsplit(b")", 1)[1].split()[19].decode()


class NodeTable(SqliteFile):
    """A store on a file with the ``nodes`` heartbeat table: ``_migrate`` of a subclass calls
    :meth:`_migrate_nodes` in its opening transaction; a claim beats inside its own
    transaction (:meth:`_beat`), a recovery forgets the node inside its own (:meth:`_forget`)."""

    def _migrate_nodes(self, db: sqlite3.Connection) -> None:
        self._upgrade(db, NODES_COMPONENT, NODE_MIGRATIONS)

    @staticmethod
    def _beat(db: sqlite3.Connection, node: str, now: float) -> None:
        """``node`` is alive at ``now``."""
        db.execute(
            "INSERT INTO nodes (id, seen_at) VALUES (?, ?)"
            " ON CONFLICT (id) DO UPDATE SET seen_at = excluded.seen_at",
            (node, now),
        )

    @staticmethod
    def _forget(db: sqlite3.Connection, node: str) -> None:
        """``node``'s claims were given back: no one need recover it again."""
        db.execute("DELETE FROM nodes WHERE id = ?", (node,))

    def heartbeat(self, node: str, now: float) -> None:
        """Record that ``node`` is alive (its claims do this too)."""
        with self._write() as db:
            self._beat(db, node, now)

    def stale_nodes(self, now: float, max_silence_s: float) -> list[str]:
        """Nodes not heard from for ``max_silence_s``: candidates for recovery."""
        with self._read() as db:
            rows = db.execute(
                "SELECT id FROM nodes WHERE seen_at < ? ORDER BY id", (now - max_silence_s,)
            ).fetchall()
        return [row[0] for row in rows]
