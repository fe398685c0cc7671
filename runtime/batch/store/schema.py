"""The SQLite batch store's foundation: the schema and its migrations, the connection and its
transactions, and the helpers every part of :class:`~runtime.batch.store.SqliteStore` shares.

The batch tables are the ``batch`` component of the file's ``warmstart_meta``
(:mod:`runtime.sqlite`). Version 1 once also made the ``nodes`` table and the async
invocations' ``events`` and ``event_configs``; those are now components of their own
(:mod:`runtime.node`, :mod:`runtime.asyncinvoke.store`) whose first migration makes them only
when missing, so a file from before keeps them, rows and all, and a new file gets them from
their owners.
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Final, Generic, NoReturn, TypeVar

import msgspec

from ...node import NodeTable
from ...pagination import decode_token, encode_token
from ..model import (
    ClientException,
    JobDefinition,
    JobQueueDetail,
    JobSpec,
)

T = TypeVar("T")
#: (job seq, final status, statusReason or None to keep the current one)
_Outcome = tuple[int, str, "str | None"]

DEFAULT_LOG_CAP = 256 * 1024
_CHUNK = 500  # values per IN (...) list, well under SQLite's variable limit
_FINAL_SQL = "('SUCCEEDED', 'FAILED')"


@dataclass(frozen=True)
class Demand:
    """What the RUNNABLE jobs of ENABLED queues ask for together."""

    jobs: int
    vcpus: float
    memory_mib: int


@dataclass(frozen=True)
class Page(Generic[T]):
    """One page of a listing; pass ``next_token`` back for the next (None: no more)."""

    items: list[T]
    next_token: str | None = None


# -- schema -----------------------------------------------------------------------------------

_SCHEMA_V1 = (
    """CREATE TABLE queues (
        seq INTEGER PRIMARY KEY,
        name TEXT NOT NULL,
        state TEXT NOT NULL,
        status TEXT NOT NULL,
        priority INTEGER NOT NULL,
        detail BLOB NOT NULL
    )""",
    "CREATE UNIQUE INDEX queues_name ON queues(name) WHERE status != 'DELETED'",
    """CREATE TABLE job_definitions (
        seq INTEGER PRIMARY KEY,
        name TEXT NOT NULL,
        revision INTEGER NOT NULL,
        status TEXT NOT NULL,
        detail BLOB NOT NULL,
        UNIQUE (name, revision)
    )""",
    # an array child's spec and payload are its parent's (NULL here); ``pending`` counts the
    # unfinished dependencies, plus one for a child whose parent still waits for its own;
    # ``kill_reason``: a TerminateJob waiting for the runner, or the reason an array parent
    # ends with when it was cancelled, terminated or lost a dependency
    """CREATE TABLE jobs (
        seq INTEGER PRIMARY KEY,
        id TEXT NOT NULL UNIQUE,
        name TEXT NOT NULL,
        queue INTEGER NOT NULL REFERENCES queues(seq),
        definition TEXT NOT NULL,
        status TEXT NOT NULL,
        status_reason TEXT,
        created_at INTEGER NOT NULL,
        updated_at INTEGER NOT NULL,
        started_at INTEGER,
        stopped_at INTEGER,
        parent INTEGER REFERENCES jobs(seq),
        array_index INTEGER,
        array_size INTEGER,
        pending INTEGER NOT NULL DEFAULT 0,
        attempts INTEGER NOT NULL DEFAULT 0,
        max_attempts INTEGER NOT NULL,
        node TEXT,
        kill_reason TEXT,
        cancelled INTEGER NOT NULL DEFAULT 0,
        terminated INTEGER NOT NULL DEFAULT 0,
        done INTEGER NOT NULL DEFAULT 0,
        failed INTEGER NOT NULL DEFAULT 0,
        vcpus REAL NOT NULL,
        memory INTEGER NOT NULL,
        gpus INTEGER NOT NULL DEFAULT 0,
        spec BLOB,
        payload BLOB
    )""",
    "CREATE INDEX jobs_claim ON jobs(queue, seq) WHERE status = 'RUNNABLE'",
    "CREATE INDEX jobs_list ON jobs(queue, status, seq) WHERE parent IS NULL",
    "CREATE INDEX jobs_children ON jobs(parent, status, seq) WHERE parent IS NOT NULL",
    "CREATE INDEX jobs_node ON jobs(node) WHERE status IN ('STARTING', 'RUNNING')",
    """CREATE TABLE deps (
        dep INTEGER NOT NULL REFERENCES jobs(seq),
        job INTEGER NOT NULL REFERENCES jobs(seq),
        PRIMARY KEY (dep, job)
    ) WITHOUT ROWID""",
    """CREATE TABLE attempts (
        job INTEGER NOT NULL REFERENCES jobs(seq),
        n INTEGER NOT NULL,
        node TEXT NOT NULL,
        claimed_at INTEGER NOT NULL,
        started_at INTEGER,
        stopped_at INTEGER,
        exit_code INTEGER,
        reason TEXT,
        status_reason TEXT,
        PRIMARY KEY (job, n)
    ) WITHOUT ROWID""",
    """CREATE TABLE logs (
        job INTEGER NOT NULL REFERENCES jobs(seq),
        n INTEGER NOT NULL,
        data BLOB NOT NULL,
        PRIMARY KEY (job, n)
    )""",
)

# v2: what a function job's handler returned (or its error document), per attempt
_SCHEMA_V2 = (
    """CREATE TABLE results (
        job INTEGER NOT NULL REFERENCES jobs(seq),
        n INTEGER NOT NULL,
        data BLOB NOT NULL,
        PRIMARY KEY (job, n)
    )""",
)

#: MIGRATIONS[i] takes the batch tables from version i to i + 1 (see runtime.sqlite)
MIGRATIONS: tuple[tuple[str, ...], ...] = (_SCHEMA_V1, _SCHEMA_V2)
SCHEMA_VERSION = len(MIGRATIONS)
#: the batch tables' row in warmstart_meta
COMPONENT: Final = "batch"


_spec_encoder = msgspec.json.Encoder()
_spec_decoder = msgspec.json.Decoder(JobSpec)
_definition_decoder = msgspec.json.Decoder(JobDefinition)
_queue_decoder = msgspec.json.Decoder(JobQueueDetail)


def _ms(now: float) -> int:
    """API timestamps are epoch milliseconds."""
    return round(now * 1000)


def _token(seq: int) -> str:
    return encode_token(str(seq))


def _after(token: str | None) -> int | None:
    """The row sequence a ``nextToken`` resumes after."""
    if token is None:
        return None
    position = decode_token(token)
    try:
        return int(position) if position is not None else _invalid_token(token)
    except ValueError:
        return _invalid_token(token)


def _invalid_token(token: str) -> NoReturn:
    raise ClientException(f"nextToken {token!r} is not valid")


def _limit(value: int | None, default: int, high: int) -> int:
    if value is None:
        return default
    if not 1 <= value <= high:
        raise ClientException(f"maxResults {value} must be between 1 and {high}")
    return value


def _definition_ref(ref: str) -> tuple[str, int | None]:
    """(name, revision) of ``name``, ``name:revision`` or a job definition ARN."""
    if ref.startswith("arn:"):
        _, _, rest = ref.partition("job-definition/")
        name, _, revision = rest.partition(":")
        if not name or not revision.isdigit():
            raise ClientException(f"{ref!r} is not a job definition ARN")
        return name, int(revision)
    name, sep, revision = ref.partition(":")
    if sep and not revision.isdigit():
        raise ClientException(f"{ref!r} is not name:revision")
    return name, int(revision) if sep else None


def _queue_name(ref: str) -> str:
    if ref.startswith("arn:"):
        return ref.partition("job-queue/")[2]
    return ref


def _definition_name(arn: str) -> str:
    return arn.partition("job-definition/")[2].rpartition(":")[0]


def _chunks(values: Sequence[T]) -> Iterator[Sequence[T]]:
    for i in range(0, len(values), _CHUNK):
        yield values[i : i + _CHUNK]


def _select_in(
    db: sqlite3.Connection, sql: str, values: Sequence[Any], args: Sequence[Any] = ()
) -> list[Any]:
    """Run ``sql`` (with one ``{}`` for the IN list) over ``values`` in chunks."""
    rows: list[Any] = []
    for chunk in _chunks(values):
        marks = ",".join("?" * len(chunk))
        rows += db.execute(sql.format(marks), (*args, *chunk)).fetchall()
    return rows


def _log_stream(definition_arn: str, job_id: str, attempt: int) -> str:
    """``<definition name>/default/<job id>/<attempt>`` (log stream names may not hold ':')."""
    return f"{_definition_name(definition_arn)}/default/{job_id.replace(':', '-')}/{attempt}"


class SqliteBase(NodeTable):
    """The connection, its transactions and the schema (with the shared ``nodes`` table);
    what every part of the store builds on."""

    kind = "batch store"

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        region: str = "us-east-1",
        account_id: str = "000000000000",
        compute_environment: str = "warmstart",
        log_cap_bytes: int = DEFAULT_LOG_CAP,
        busy_timeout_s: float = 10.0,
    ) -> None:
        self.region = region
        self.account_id = account_id
        #: AWS_BATCH_CE_NAME of a queue that names no compute environment
        self.compute_environment = compute_environment
        self.log_cap_bytes = log_cap_bytes
        self._definitions: dict[int, JobDefinition] = {}
        self._open(path, busy_timeout_s, foreign_keys=True)

    def _migrate(self) -> None:
        with self._write() as db:
            # a file from before warmstart_meta kept this version in PRAGMA user_version
            legacy = int(db.execute("PRAGMA user_version").fetchone()[0])
            version = self._upgrade(db, COMPONENT, MIGRATIONS, legacy=legacy)
            # kept in step, so that an older warmstart opening this file finds it current
            db.execute(f"PRAGMA user_version = {version}")
            self._migrate_nodes(db)

    @property
    def schema_version(self) -> int:
        return self._version(COMPONENT)

    # -- lookups the parts share --------------------------------------------------------------

    @staticmethod
    def _queue_row(row: tuple[int, str, int, bytes]) -> JobQueueDetail:
        _, state, priority, detail = row
        return msgspec.structs.replace(
            _queue_decoder.decode(detail), state=state, priority=priority
        )

    def _queue(self, db: sqlite3.Connection, ref: str) -> tuple[int, JobQueueDetail]:
        row = db.execute(
            "SELECT seq, state, priority, detail FROM queues"
            " WHERE name = ? AND status != 'DELETED'",
            (_queue_name(ref),),
        ).fetchone()
        if row is None:
            raise ClientException(f"Job queue {ref} does not exist")
        return row[0], self._queue_row(row)

    @staticmethod
    def _job_row(db: sqlite3.Connection, job_id: str) -> tuple[int, str, int | None]:
        row = db.execute(
            "SELECT seq, status, array_size FROM jobs WHERE id = ?", (job_id,)
        ).fetchone()
        if row is None:
            raise ClientException(f"Job {job_id} does not exist")
        return row  # type: ignore[no-any-return]
