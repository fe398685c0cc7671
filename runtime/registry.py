"""The function registry: every function created through the Lambda API, durable and shared by
every node, with the code zips its versions run.

::

    Lambda API on any node ──put / delete──▶ registry ◀──changes(since), each second── every node
                           ──put_code──────▶    │
                                                │ entries     name → FunctionEntry (spec, code
                                                │             digests, revision, updated_at)
                                                │ tombstones  name → revision of its deletion
                                                │ code        sha256 → zip, counted references
                                                ▼
                              SqliteFunctionRegistry (one node: the data directory's file)
                              RedisFunctionRegistry  (several nodes sharing one Redis)

**Sequence and revisions.** Every put and delete takes the next number of one registry-wide
sequence; the entry it writes records it as its ``revision`` (a delete records it in the
name's tombstone). A node keeps the sequence number of its last :meth:`~FunctionRegistry.
changes` answer and polls with it: with nothing new that is one small read (a GET on Redis,
one SELECT on SQLite). ``put_code`` takes no number: it changes no entry.

**Optimistic updates.** ``put(expect=N)`` replaces an entry only while its revision is still
N, so two nodes updating one function at once cannot both win: the second gets
ResourceConflictException and reads again. ``expect=0`` creates only.

**Code.** ``put_code`` stores a zip under its sha256; an entry names the digests it uses, and
each zip counts the entries naming it (a digest named twice by one entry counts once). A zip
is removed in the write that takes its last reference away, unless it was uploaded within the
last :data:`UPLOAD_GRACE_S` and no put has used that upload yet: an upload waits that long for
the put that names it, even when another function that used the same zip is deleted meanwhile.
A put that adds a digest to an entry uses up that upload's grace (two uploads of one zip for
two puts at once share it: should the last function using the zip be deleted between the two
puts, the second fails with InvalidParameterValueException and can upload again). Uploads never
used are removed by the first put or delete after their grace.

**Tombstones.** A deletion is kept :data:`TOMBSTONE_TTL_S` (a day) so that a node that was
down learns of it; the first put or delete after that prunes it, and the registry's *horizon*
becomes the highest revision pruned. ``changes(since)`` answers in full, with
:attr:`Changes.full` set, when ``since`` is 0, older than the horizon (deletions may be
forgotten), or beyond the current sequence (the store lost writes or was replaced): every
entry and every tombstone kept; the caller must then drop every function it holds that the
answer does not list.

Both implementations read the facts a write depends on, decide with the same functions here
(:func:`_check_expect`, :func:`_plan_code`), and write: the same calls give the same results
and the same errors. Nothing here reads a clock except ``put_code`` without ``now``.
"""

from __future__ import annotations

import hashlib
import os
import re
import sqlite3
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Final, Protocol

import msgspec
import redis

from .errors import (
    InvalidParameterValueException,
    ResourceConflictException,
    ResourceNotFoundException,
)
from .redisdb import DEFAULT_PREFIX, RedisDb, Txn
from .sqlite import SqliteFile

__all__ = [
    "COMPONENT",
    "MIGRATIONS",
    "TOMBSTONE_TTL_S",
    "UPLOAD_GRACE_S",
    "Changes",
    "FunctionEntry",
    "FunctionRegistry",
    "RedisFunctionRegistry",
    "SqliteFunctionRegistry",
]

#: the registry's row in warmstart_meta, and its Redis keys' component
COMPONENT: Final = "functions"
#: how long a zip uploaded but not yet named by a put is kept
UPLOAD_GRACE_S: Final = 3600.0
#: how long a deletion stays visible to changes() with any ``since``
TOMBSTONE_TTL_S: Final = 86400.0

_DIGEST = re.compile(r"[0-9a-f]{64}\Z")


class FunctionEntry(msgspec.Struct, frozen=True):
    """A function as the registry keeps it."""

    name: str
    #: the function as the service describes it (JSON; opaque here)
    spec: bytes
    #: sha256 hex digests of the code zips it uses ($LATEST and its versions); () for images
    #: or local code
    code: tuple[str, ...]
    #: the registry-wide sequence number of its last change
    revision: int
    updated_at: float


Entries = list[FunctionEntry]
Names = list[str]


class Changes(tuple[int, Entries, Names]):
    """What :meth:`FunctionRegistry.changes` answers: ``(sequence, changed, deleted)``, a
    3-tuple, with ``full`` set when ``changed`` is every entry (see the module docstring)."""

    full: bool

    def __new__(
        cls, sequence: int, changed: Entries, deleted: Names, *, full: bool = False
    ) -> Changes:
        self = super().__new__(cls, (sequence, changed, deleted))
        self.full = full
        return self

    @property
    def sequence(self) -> int:
        return self[0]

    @property
    def changed(self) -> Entries:
        return self[1]

    @property
    def deleted(self) -> Names:
        return self[2]

    def __repr__(self) -> str:
        return f"Changes({self[0]}, {self[1]!r}, {self[2]!r}, full={self.full})"


class FunctionRegistry(Protocol):
    """The function registry's interface; every method is one atomic transaction."""

    def put(
        self,
        name: str,
        spec: bytes,
        now: float,
        *,
        code: tuple[str, ...] = (),
        expect: int | None = None,
    ) -> FunctionEntry:
        """Create or replace ``name``: ``expect`` None creates or replaces, 0 only creates,
        N only replaces revision N (else ResourceConflictException). Every digest of
        ``code`` must be stored already (else InvalidParameterValueException)."""
        ...

    def get(self, name: str) -> FunctionEntry | None: ...

    def list(self) -> Entries:
        """Every entry, by name."""
        ...

    def delete(self, name: str, now: float) -> bool:
        """Remove ``name``, leaving a tombstone; False if there is no such function."""
        ...

    def changes(self, since: int) -> Changes:
        """``(sequence, entries changed after since, names deleted after since and not
        created again)``, by name; answered in full in the cases of the module docstring."""
        ...

    def put_code(self, sha256: str, data: bytes, *, now: float | None = None) -> None:
        """Store a zip under its sha256 (checked: else InvalidParameterValueException), or
        start its grace again if stored; ``now`` defaults to the clock."""
        ...

    def get_code(self, sha256: str) -> bytes:
        """The zip stored under ``sha256``; ResourceNotFoundException if none."""
        ...

    def sequence(self) -> int:
        """The sequence number of the last put or delete (0: none yet)."""
        ...

    def close(self) -> None: ...


_encode = msgspec.msgpack.Encoder().encode
_decode = msgspec.msgpack.Decoder(FunctionEntry).decode


# -- the rules both implementations share ----------------------------------------------------


def _check_expect_arg(expect: int | None) -> None:
    if expect is not None and expect < 0:
        raise InvalidParameterValueException(
            f"expect: {expect} is not a revision (0 creates only, N replaces revision N)"
        )


def _check_expect(name: str, current: int | None, expect: int | None) -> None:
    """Refuse a put whose expectation of the entry's revision (``current``; None: absent)
    no longer holds."""
    if expect is None or expect == (current or 0):
        return
    if expect == 0:
        raise ResourceConflictException(f"Function already exist: {name}")
    if current is None:
        raise ResourceConflictException(
            f"Function {name} was deleted since revision {expect}; read it again"
        )
    raise ResourceConflictException(
        f"Function {name} is at revision {current}, not {expect}: another update came first;"
        " read it again and retry"
    )


def _check_digests(code: Iterable[str]) -> None:
    for digest in code:
        if not isinstance(digest, str) or not _DIGEST.match(digest):
            raise InvalidParameterValueException(
                f"Code digest {digest!r} is not a sha256 hex digest (64 lowercase hex digits)"
            )


def _missing(name: str, missing: Sequence[str]) -> InvalidParameterValueException:
    return InvalidParameterValueException(
        f"Function {name} names code that is not stored: {', '.join(missing)}"
        " (store each zip with put_code first)"
    )


def _check_code(sha256: str, data: bytes) -> None:
    _check_digests([sha256])
    actual = hashlib.sha256(data).hexdigest()
    if actual != sha256:
        raise InvalidParameterValueException(
            f"Code digest mismatch: the zip's sha256 is {actual}, not {sha256}"
        )


def _no_code(sha256: str) -> ResourceNotFoundException:
    return ResourceNotFoundException(f"Code {sha256} not found")


def _deltas(old: Iterable[str], new: Iterable[str]) -> dict[str, int]:
    """The change in each zip's count of references when an entry's code goes from ``old``
    to ``new``."""
    before, after = set(old), set(new)
    return {sha: (sha in after) - (sha in before) for sha in sorted(before ^ after)}


@dataclass
class _CodePlan:
    """The writes a put or delete makes to the zips' bookkeeping."""

    #: new reference counts (0: none left)
    refs: dict[str, int] = field(default_factory=dict)
    #: uploads whose grace is used up or over (the zip stays)
    settled: list[str] = field(default_factory=list)
    #: zips removed
    drop: list[str] = field(default_factory=list)


def _plan_code(
    deltas: dict[str, int],
    refs: dict[str, int],
    uploaded: dict[str, float | None],
    expired: Iterable[str],
    now: float,
) -> _CodePlan:
    """Decide a write's code bookkeeping from what it read: ``refs`` and ``uploaded`` (the
    time of an upload still in its grace, None if none) of every digest of ``deltas`` and
    ``expired`` (the uploads older than the grace)."""
    plan = _CodePlan()
    cutoff = now - UPLOAD_GRACE_S
    for sha, delta in deltas.items():
        plan.refs[sha] = refs.get(sha, 0) + delta
    for sha in sorted(set(deltas) | set(expired)):
        count = plan.refs.get(sha, refs.get(sha, 0))
        upload = None if deltas.get(sha, 0) > 0 else uploaded.get(sha)
        if count <= 0 and (upload is None or upload < cutoff):
            plan.drop.append(sha)
        elif uploaded.get(sha) is not None and (upload is None or upload < cutoff):
            plan.settled.append(sha)
    return plan


def _answer(since: int, sequence: int, horizon: int) -> tuple[bool, int] | None:
    """How to answer changes(since) at ``sequence``: None when nothing changed, else
    (full, the revision after which to list)."""
    if since == sequence and since > 0:
        return None
    full = since <= 0 or since < horizon or since > sequence
    return full, 0 if full else since


# -- SQLite -----------------------------------------------------------------------------------

# the zip is the last column: a scan of the other columns never reads its overflow pages
_SCHEMA_V1 = (
    """CREATE TABLE functions (
        name TEXT PRIMARY KEY,
        revision INTEGER NOT NULL UNIQUE,
        updated_at REAL NOT NULL,
        code TEXT NOT NULL,
        spec BLOB NOT NULL
    ) WITHOUT ROWID""",
    """CREATE TABLE function_tombstones (
        name TEXT PRIMARY KEY,
        revision INTEGER NOT NULL UNIQUE,
        deleted_at REAL NOT NULL
    ) WITHOUT ROWID""",
    "CREATE INDEX function_tombstones_age ON function_tombstones(deleted_at)",
    """CREATE TABLE function_code (
        sha256 TEXT PRIMARY KEY,
        refs INTEGER NOT NULL,
        uploaded_at REAL,
        data BLOB NOT NULL
    )""",
    "CREATE INDEX function_code_uploads ON function_code(uploaded_at)"
    " WHERE uploaded_at IS NOT NULL",
    """CREATE TABLE function_sequence (
        id INTEGER PRIMARY KEY CHECK (id = 1),
        sequence INTEGER NOT NULL,
        horizon INTEGER NOT NULL
    )""",
    "INSERT INTO function_sequence (id, sequence, horizon) VALUES (1, 0, 0)",
)
#: MIGRATIONS[i] takes the registry's tables from version i to i + 1
MIGRATIONS: tuple[tuple[str, ...], ...] = (_SCHEMA_V1,)
SCHEMA_VERSION = len(MIGRATIONS)

_COLUMNS = "name, spec, code, revision, updated_at"


class SqliteFunctionRegistry(SqliteFile):
    """The registry in the SQLite file at ``path`` (the data directory's store file, shared
    with the other stores); use it from any thread, one call at a time."""

    kind = "function registry"

    def __init__(self, path: str | os.PathLike[str], *, busy_timeout_s: float = 10.0) -> None:
        self._open(path, busy_timeout_s)

    def _migrate(self) -> None:
        with self._write() as db:
            self._upgrade(db, COMPONENT, MIGRATIONS)

    @property
    def schema_version(self) -> int:
        return self._version(COMPONENT)

    def __enter__(self) -> SqliteFunctionRegistry:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def put(
        self,
        name: str,
        spec: bytes,
        now: float,
        *,
        code: tuple[str, ...] = (),
        expect: int | None = None,
    ) -> FunctionEntry:
        """Create or replace ``name`` (``expect``: see the module docstring); every digest of
        ``code`` must be stored already."""
        _check_expect_arg(expect)
        _check_digests(code)
        with self._write() as db:
            old = _sqlite_entry(db, name)
            _check_expect(name, None if old is None else old.revision, expect)
            missing = [sha for sha in sorted(set(code)) if not _sqlite_has_code(db, sha)]
            if missing:
                raise _missing(name, missing)
            sequence = _sqlite_sequence(db)[0] + 1
            entry = FunctionEntry(name, bytes(spec), tuple(code), sequence, float(now))
            db.execute(
                f"INSERT INTO functions ({_COLUMNS}) VALUES (?, ?, ?, ?, ?) ON CONFLICT (name)"
                " DO UPDATE SET spec = excluded.spec, code = excluded.code,"
                " revision = excluded.revision, updated_at = excluded.updated_at",
                (name, entry.spec, " ".join(entry.code), sequence, now),
            )
            db.execute("DELETE FROM function_tombstones WHERE name = ?", (name,))
            self._housekeep(db, _deltas(() if old is None else old.code, code), sequence, now)
        return entry

    def get(self, name: str) -> FunctionEntry | None:
        with self._read() as db:
            return _sqlite_entry(db, name)

    def list(self) -> Entries:
        """Every entry, by name."""
        with self._read() as db:
            rows = db.execute(f"SELECT {_COLUMNS} FROM functions ORDER BY name").fetchall()
        return [_entry_row(row) for row in rows]

    def delete(self, name: str, now: float) -> bool:
        """Remove ``name``, leaving a tombstone; False if there is no such function."""
        with self._write() as db:
            old = _sqlite_entry(db, name)
            if old is None:
                return False
            sequence = _sqlite_sequence(db)[0] + 1
            db.execute("DELETE FROM functions WHERE name = ?", (name,))
            db.execute(
                "INSERT INTO function_tombstones (name, revision, deleted_at) VALUES (?, ?, ?)"
                " ON CONFLICT (name) DO UPDATE SET revision = excluded.revision,"
                " deleted_at = excluded.deleted_at",
                (name, sequence, now),
            )
            self._housekeep(db, _deltas(old.code, ()), sequence, now)
        return True

    def changes(self, since: int) -> Changes:
        """What changed after ``since`` (see the module docstring)."""
        with self._read() as db:
            sequence, horizon = _sqlite_sequence(db)
            how = _answer(since, sequence, horizon)
            if how is None:
                return Changes(sequence, [], [])
            full, after = how
            rows = db.execute(
                f"SELECT {_COLUMNS} FROM functions WHERE revision > ? ORDER BY name", (after,)
            ).fetchall()
            gone = db.execute(
                "SELECT name FROM function_tombstones WHERE revision > ? ORDER BY name",
                (after,),
            ).fetchall()
        return Changes(sequence, [_entry_row(r) for r in rows], [g[0] for g in gone], full=full)

    def put_code(self, sha256: str, data: bytes, *, now: float | None = None) -> None:
        """Store a zip under its sha256 (checked), or restart the grace of one stored."""
        _check_code(sha256, data)
        uploaded = time.time() if now is None else now
        with self._write() as db:
            if _sqlite_has_code(db, sha256):
                db.execute(
                    "UPDATE function_code SET uploaded_at = ? WHERE sha256 = ?",
                    (uploaded, sha256),
                )
            else:
                db.execute(
                    "INSERT INTO function_code (sha256, refs, uploaded_at, data)"
                    " VALUES (?, 0, ?, ?)",
                    (sha256, uploaded, bytes(data)),
                )

    def get_code(self, sha256: str) -> bytes:
        with self._read() as db:
            row = db.execute(
                "SELECT data FROM function_code WHERE sha256 = ?", (sha256,)
            ).fetchone()
        if row is None:
            raise _no_code(sha256)
        return bytes(row[0])

    def sequence(self) -> int:
        with self._read() as db:
            return _sqlite_sequence(db)[0]

    def _housekeep(
        self, db: sqlite3.Connection, deltas: dict[str, int], sequence: int, now: float
    ) -> None:
        """The rest of a put or delete: the zips' counts and collection, old tombstones
        pruned, the sequence advanced."""
        expired = [
            row[0]
            for row in db.execute(
                "SELECT sha256 FROM function_code WHERE uploaded_at < ?",
                (now - UPLOAD_GRACE_S,),
            )
        ]
        refs: dict[str, int] = {}
        uploaded: dict[str, float | None] = {}
        for sha in {*deltas, *expired}:
            row = db.execute(
                "SELECT refs, uploaded_at FROM function_code WHERE sha256 = ?", (sha,)
            ).fetchone()
            if row is not None:
                refs[sha], uploaded[sha] = row
        plan = _plan_code(deltas, refs, uploaded, expired, now)
        db.executemany(
            "UPDATE function_code SET refs = ? WHERE sha256 = ?",
            [(count, sha) for sha, count in plan.refs.items()],
        )
        db.executemany(
            "UPDATE function_code SET uploaded_at = NULL WHERE sha256 = ?",
            [(sha,) for sha in plan.settled],
        )
        db.executemany("DELETE FROM function_code WHERE sha256 = ?", [(sha,) for sha in plan.drop])
        cutoff = now - TOMBSTONE_TTL_S
        pruned = db.execute(
            "SELECT MAX(revision) FROM function_tombstones WHERE deleted_at < ?", (cutoff,)
        ).fetchone()[0]
        if pruned is not None:
            db.execute("DELETE FROM function_tombstones WHERE deleted_at < ?", (cutoff,))
            db.execute("UPDATE function_sequence SET horizon = MAX(horizon, ?)", (pruned,))
        db.execute("UPDATE function_sequence SET sequence = ?", (sequence,))


def _sqlite_entry(db: sqlite3.Connection, name: str) -> FunctionEntry | None:
    row = db.execute(f"SELECT {_COLUMNS} FROM functions WHERE name = ?", (name,)).fetchone()
    return None if row is None else _entry_row(row)


def _entry_row(row: Sequence[object]) -> FunctionEntry:
    name, spec, code, revision, updated_at = row
    assert isinstance(name, str)
    assert isinstance(spec, bytes)
    assert isinstance(code, str)
    assert isinstance(revision, int)
    assert isinstance(updated_at, float | int)
    return FunctionEntry(name, spec, tuple(code.split()), revision, float(updated_at))


def _sqlite_has_code(db: sqlite3.Connection, sha256: str) -> bool:
    found = db.execute("SELECT 1 FROM function_code WHERE sha256 = ?", (sha256,)).fetchone()
    return found is not None


def _sqlite_sequence(db: sqlite3.Connection) -> tuple[int, int]:
    sequence, horizon = db.execute(
        "SELECT sequence, horizon FROM function_sequence WHERE id = 1"
    ).fetchone()
    return int(sequence), int(horizon)


# -- Redis ------------------------------------------------------------------------------------


class RedisFunctionRegistry(RedisDb):
    """The registry in Redis, under ``<prefix>:functions:``:

    - ``seq``, ``horizon``: strings (the sequence, the highest pruned tombstone's revision);
    - ``entries``: hash name → the entry (msgpack); ``revisions``: sorted set name → revision;
    - ``tombstones``: sorted set name → revision of its deletion; ``deleted_at``: sorted set
      name → when;
    - ``code:<sha256>``: string, the zip; ``refs``: hash sha256 → entries naming it;
      ``uploads``: sorted set sha256 → upload time, while in its grace.

    Every write is one :meth:`~runtime.redisdb.RedisDb._transact`; ``sequence()`` and a
    ``changes()`` with nothing new are one GET.
    """

    kind = "function registry"
    component = COMPONENT

    def __init__(
        self,
        url: str,
        *,
        prefix: str = DEFAULT_PREFIX,
        require_append_only: bool = True,
        client: redis.Redis | None = None,
    ) -> None:
        self._open(url, prefix=prefix, require_append_only=require_append_only, client=client)
        self._seq = self.key("seq")
        self._horizon = self.key("horizon")
        self._entries = self.key("entries")
        self._revisions = self.key("revisions")
        self._tombstones = self.key("tombstones")
        self._deleted_at = self.key("deleted_at")
        self._refs = self.key("refs")
        self._uploads = self.key("uploads")

    def _code(self, sha256: str) -> str:
        return self.key("code", sha256)

    def __enter__(self) -> RedisFunctionRegistry:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def put(
        self,
        name: str,
        spec: bytes,
        now: float,
        *,
        code: tuple[str, ...] = (),
        expect: int | None = None,
    ) -> FunctionEntry:
        _check_expect_arg(expect)
        _check_digests(code)

        def txn(pipe: Txn) -> FunctionEntry:
            old = _redis_entry(pipe.hget(self._entries, name))
            _check_expect(name, None if old is None else old.revision, expect)
            missing = [sha for sha in sorted(set(code)) if not pipe.exists(self._code(sha))]
            if missing:
                raise _missing(name, missing)
            sequence = int(pipe.get(self._seq) or 0) + 1
            entry = FunctionEntry(name, bytes(spec), tuple(code), sequence, float(now))
            housekeeping = self._housekeeping(
                pipe, _deltas(() if old is None else old.code, code), now
            )
            pipe.multi()
            pipe.hset(self._entries, name, _encode(entry))
            pipe.zadd(self._revisions, {name: sequence})
            pipe.zrem(self._tombstones, name)
            pipe.zrem(self._deleted_at, name)
            housekeeping(pipe, sequence)
            return entry

        return self._transact(txn)

    def get(self, name: str) -> FunctionEntry | None:
        return _redis_entry(self._guard(lambda: self.redis.hget(self._entries, name)))

    def list(self) -> Entries:
        return _sorted_entries(self._guard(lambda: self.redis.hvals(self._entries)))

    def delete(self, name: str, now: float) -> bool:
        def txn(pipe: Txn) -> bool:
            old = _redis_entry(pipe.hget(self._entries, name))
            if old is None:
                return False
            sequence = int(pipe.get(self._seq) or 0) + 1
            housekeeping = self._housekeeping(pipe, _deltas(old.code, ()), now)
            pipe.multi()
            pipe.hdel(self._entries, name)
            pipe.zrem(self._revisions, name)
            pipe.zadd(self._tombstones, {name: sequence})
            pipe.zadd(self._deleted_at, {name: now})
            housekeeping(pipe, sequence)
            return True

        return self._transact(txn)

    def changes(self, since: int) -> Changes:
        sequence = int(self._guard(lambda: self.redis.get(self._seq)) or 0)
        if _answer(since, sequence, 0) is None:  # the horizon never passes the sequence
            return Changes(sequence, [], [])

        def read(pipe: Txn) -> Changes:
            sequence = int(pipe.get(self._seq) or 0)
            how = _answer(since, sequence, int(pipe.get(self._horizon) or 0))
            if how is None:
                return Changes(sequence, [], [])
            full, after = how
            names = _texts(pipe.zrangebyscore(self._revisions, f"({after}", "+inf"))
            values = pipe.hmget(self._entries, names) if names else []
            gone = _texts(pipe.zrangebyscore(self._tombstones, f"({after}", "+inf"))
            return Changes(sequence, _sorted_entries(values), sorted(gone), full=full)

        return self._read(read)

    def put_code(self, sha256: str, data: bytes, *, now: float | None = None) -> None:
        _check_code(sha256, data)
        uploaded = time.time() if now is None else now
        key = self._code(sha256)

        def txn(pipe: Txn) -> None:
            stored = pipe.exists(key)
            pipe.multi()
            if not stored:
                pipe.set(key, data)
            pipe.zadd(self._uploads, {sha256: uploaded})

        self._transact(txn)

    def get_code(self, sha256: str) -> bytes:
        data: Any = self._guard(lambda: self.redis.get(self._code(sha256)))
        if data is None:
            raise _no_code(sha256)
        return bytes(data)

    def sequence(self) -> int:
        return int(self._guard(lambda: self.redis.get(self._seq)) or 0)

    def _housekeeping(self, pipe: Txn, deltas: dict[str, int], now: float) -> _Writes:
        """Read (before ``pipe.multi()``) what the rest of a put or delete depends on; the
        writes it returns queue the zips' counts and collection, the pruning of old
        tombstones and the new sequence."""
        expired = _texts(pipe.zrangebyscore(self._uploads, "-inf", f"({now - UPLOAD_GRACE_S}"))
        shas = sorted({*deltas, *expired})
        counts = pipe.hmget(self._refs, shas) if shas else []
        times = pipe.zmscore(self._uploads, shas) if shas else []
        refs = {sha: int(c) for sha, c in zip(shas, counts, strict=True) if c is not None}
        uploaded = dict(zip(shas, times, strict=True))
        plan = _plan_code(deltas, refs, uploaded, expired, now)
        cutoff = f"({now - TOMBSTONE_TTL_S}"
        pruned = _texts(pipe.zrangebyscore(self._deleted_at, "-inf", cutoff))
        revisions = pipe.zmscore(self._tombstones, pruned) if pruned else []
        horizon = max((int(r) for r in revisions if r is not None), default=None)
        if horizon is not None:
            horizon = max(horizon, int(pipe.get(self._horizon) or 0))

        def write(pipe: Txn, sequence: int) -> None:
            for sha, count in plan.refs.items():
                if count > 0:
                    pipe.hset(self._refs, sha, count)
                else:
                    pipe.hdel(self._refs, sha)
            if plan.settled:
                pipe.zrem(self._uploads, *plan.settled)
            for sha in plan.drop:
                pipe.delete(self._code(sha))
                pipe.hdel(self._refs, sha)
                pipe.zrem(self._uploads, sha)
            if pruned:
                pipe.zrem(self._tombstones, *pruned)
                pipe.zrem(self._deleted_at, *pruned)
            if horizon is not None:
                pipe.set(self._horizon, horizon)
            pipe.set(self._seq, sequence)

        return write


class _Writes(Protocol):
    def __call__(self, pipe: Txn, sequence: int) -> None: ...


# replies of a client that answers bytes (redis-py's types allow str too)


def _redis_entry(raw: Any) -> FunctionEntry | None:
    return None if raw is None else _decode(raw)


def _texts(raw: Any) -> list[str]:
    return [item.decode() for item in raw]


def _sorted_entries(raw: Any) -> Entries:
    """The entries of ``raw`` (None: one that went meanwhile), by name."""
    return sorted((_decode(v) for v in raw if v is not None), key=_by_name)


def _by_name(entry: FunctionEntry) -> str:
    return entry.name
