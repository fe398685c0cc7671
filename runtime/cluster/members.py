"""The node registry: which warmstart nodes are alive, where to reach them, how loaded they are.

Every node beats (:meth:`Members.beat`) every ``lease_s / 4`` with its URL and its load; a
node not heard from for ``lease_s`` is no longer listed (:meth:`Members.live`) and its
leased work is taken over by the others (the stores' ``stale_nodes`` / ``recover``). Time is
passed in: ``now`` is epoch seconds.

The load a node publishes (:class:`Load`) is what routing needs: its free environments and
how many calls wait, and per function how many warm environments sit idle, so that a sync
invoke goes to a node that can run it at once.

Two implementations: :class:`SqliteMembers` (a table in the SQLite file: one node, or
several processes on one machine) and :class:`RedisMembers` (a hash and a sorted set in the
shared Redis).
"""

from __future__ import annotations

import os
from typing import Final, Protocol, cast

import msgspec
import redis

from ..redisdb import DEFAULT_PREFIX, RedisDb, Txn
from ..sqlite import SqliteFile

__all__ = ["Load", "Member", "Members", "RedisMembers", "SqliteMembers"]

COMPONENT: Final = "members"


class Load(msgspec.Struct, kw_only=True, omit_defaults=True):
    """A node's load when it last beat."""

    #: environments it may still start or has idle (its pool's free capacity)
    free: int = 0
    #: environments running a call
    busy: int = 0
    #: calls waiting for an environment
    waiting: int = 0
    #: per function: warm environments idle
    idle: dict[str, int] = msgspec.field(default_factory=dict)
    #: async invocations and batch attempts it runs
    events: int = 0
    jobs: int = 0


class Member(msgspec.Struct, kw_only=True):
    """A live node: its id, where it listens, since when, when it last beat."""

    id: str
    url: str
    started_at: float
    seen_at: float = 0.0
    load: Load = msgspec.field(default_factory=Load)


_encode = msgspec.json.Encoder().encode
_decode = msgspec.json.Decoder(Member).decode


class Members(Protocol):
    """The node registry's interface."""

    def beat(self, member: Member, now: float) -> None: ...
    def live(self, now: float, lease_s: float) -> list[Member]: ...
    def leave(self, node_id: str) -> None: ...
    def close(self) -> None: ...


class SqliteMembers(SqliteFile):
    """Members in the ``members`` table of the SQLite file at ``path``."""

    kind = "node registry"

    def __init__(self, path: str | os.PathLike[str], *, busy_timeout_s: float = 10.0) -> None:
        self._open(path, busy_timeout_s)

    def _migrate(self) -> None:
        with self._write() as db:
            self._upgrade(
                db,
                COMPONENT,
                (
                    (
                        "CREATE TABLE members (id TEXT PRIMARY KEY, seen_at REAL NOT NULL,"
                        " detail BLOB NOT NULL) WITHOUT ROWID",
                    ),
                ),
            )

    def beat(self, member: Member, now: float) -> None:
        """``member`` is alive at ``now`` with its load."""
        member = msgspec.structs.replace(member, seen_at=now)
        with self._write() as db:
            db.execute(
                "INSERT INTO members (id, seen_at, detail) VALUES (?, ?, ?) ON CONFLICT (id)"
                " DO UPDATE SET seen_at = excluded.seen_at, detail = excluded.detail",
                (member.id, now, _encode(member)),
            )

    def live(self, now: float, lease_s: float) -> list[Member]:
        """Nodes heard from within ``lease_s`` of ``now``, by id; older ones are forgotten."""
        with self._write() as db:
            db.execute("DELETE FROM members WHERE seen_at < ?", (now - lease_s,))
            rows = db.execute("SELECT detail FROM members ORDER BY id").fetchall()
        return [_decode(row[0]) for row in rows]

    def leave(self, node_id: str) -> None:
        """A node stopping: no longer listed, at once."""
        with self._write() as db:
            db.execute("DELETE FROM members WHERE id = ?", (node_id,))


class RedisMembers(RedisDb):
    """Members in Redis: ``<prefix>:members:detail`` (hash id → JSON) and
    ``<prefix>:members:seen`` (sorted set id → seen_at)."""

    kind = "node registry"
    component = COMPONENT

    def __init__(
        self,
        url: str,
        *,
        prefix: str = DEFAULT_PREFIX,
        require_append_only: bool | None = True,
        client: redis.Redis | None = None,
    ) -> None:
        self._open(url, prefix=prefix, require_append_only=require_append_only, client=client)
        self._detail = self.key("detail")
        self._seen = seen_key(prefix)

    def beat(self, member: Member, now: float) -> None:
        member = msgspec.structs.replace(member, seen_at=now)

        def write() -> None:
            pipe = self.redis.pipeline(transaction=True)
            pipe.hset(self._detail, member.id, _encode(member))
            pipe.zadd(self._seen, {member.id: now})
            pipe.execute()

        self._guard(write)

    def live(self, now: float, lease_s: float) -> list[Member]:
        def read(pipe: Txn) -> list[bytes]:
            gone = cast("list[bytes]", pipe.zrangebyscore(self._seen, "-inf", f"({now - lease_s}"))
            ids = sorted(cast("list[bytes]", pipe.zrangebyscore(self._seen, now - lease_s, "+inf")))
            details = cast("list[bytes | None]", pipe.hmget(self._detail, ids) if ids else [])
            pipe.multi()
            if gone:
                pipe.zrem(self._seen, *gone)
                pipe.hdel(self._detail, *gone)
            return [d for d in details if d is not None]

        return [_decode(d) for d in self._transact(read)]

    def leave(self, node_id: str) -> None:
        def write() -> None:
            pipe = self.redis.pipeline(transaction=True)
            pipe.zrem(self._seen, node_id)
            pipe.hdel(self._detail, node_id)
            pipe.execute()

        self._guard(write)


def seen_key(prefix: str) -> str:
    """The sorted set of live nodes by their last beat, under ``prefix`` (the concurrency
    tokens count only the holdings of nodes in it)."""
    return f"{prefix}:{COMPONENT}:seen"
