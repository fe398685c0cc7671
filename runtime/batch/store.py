"""The durable batch store: job definitions, job queues, jobs and async invocation events.

``Store`` is the interface the service, the runner and the engine program against;
``SqliteStore`` is the embedded implementation (a Redis one for several nodes comes later).
Both leave every AWS rule to :mod:`runtime.batch.rules` and :mod:`runtime.batch.events`: a store
only gathers facts, asks the rules, and writes the outcome. Nothing here reads a clock: every
call that changes state takes ``now`` (epoch seconds).

::

    service ── submit_job ──▶ PENDING (dependsOn) ──▶ RUNNABLE ◀─────────────────┐
                                                         │ claim(node, now)       │ retry
    runner ── claim, started, finished ─────────────▶ STARTING ─▶ RUNNING ─▶ rules.judge_attempt
           ── recover(node, now) after a crash                                    │
                                                              SUCCEEDED | FAILED ◀┘
                              (dependents and the array parent settle in the same transaction)
    engine ── put_event, claim_events, event_done, event_failed: Lambda's async retries, DLQ

SQLite specifics:

- WAL journal, ``synchronous=NORMAL``: a call that changes state commits before it returns, and
  a committed transaction survives the death of the process (SIGKILL, crash) at any point. It
  does not survive a power loss or kernel crash until the next WAL checkpoint syncs: warmstart
  trades that for throughput, as most queues on one machine do.
- Every state change is one ``BEGIN IMMEDIATE`` transaction, so a read-modify-write never races
  a writer in another process; other processes (the CLI reading jobs while the service runs)
  open the same file and wait up to ``busy_timeout_s`` for the write lock.
- One connection per ``SqliteStore``, calls serialized by a lock: use it from any thread, one
  call at a time. Every call is short (a few statements), so calling it from the event loop's
  thread or through ``asyncio.to_thread`` are both fine.
- The schema version is ``PRAGMA user_version``; opening a file migrates it forward.
"""

from __future__ import annotations

import base64
import os
import sqlite3
import threading
import uuid
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Generic, Protocol, TypeVar

import msgspec

from ..errors import ResourceNotFoundException, ServiceException
from . import events as ev
from . import rules
from .model import (
    ACTIVE,
    DELETED,
    DISABLED,
    ENABLED,
    FAILED,
    FINAL_STATUSES,
    INACTIVE,
    JOB_STATUSES,
    PENDING,
    RUNNABLE,
    RUNNING,
    STARTING,
    SUBMITTED,
    VALID,
    ArrayPropertiesDetail,
    ArrayPropertiesSummary,
    AttemptContainerDetail,
    AttemptDetail,
    Claim,
    ClientException,
    ContainerSummary,
    CreateJobQueueRequest,
    Finish,
    JobDefinition,
    JobDependency,
    JobDetail,
    JobQueueDetail,
    JobSpec,
    JobSummary,
    KillOrder,
    Recovery,
    RegisterJobDefinitionRequest,
    SubmitJobRequest,
    SubmitJobResponse,
    UpdateJobQueueRequest,
    check_queue,
    check_register,
    check_state,
    check_submit,
    job_arn,
    job_definition_arn,
    job_queue_arn,
)

T = TypeVar("T")
#: (job seq, final status, statusReason or None to keep the current one)
_Outcome = tuple[int, str, "str | None"]

DEFAULT_LOG_CAP = 256 * 1024
_CHUNK = 500  # values per IN (...) list, well under SQLite's variable limit
_FINAL_SQL = "('SUCCEEDED', 'FAILED')"


def default_data_dir() -> Path:
    """``$WARMSTART_DATA_DIR``, else ``$XDG_DATA_HOME/warmstart``, else
    ``~/.local/share/warmstart``."""
    explicit = os.environ.get("WARMSTART_DATA_DIR")
    if explicit:
        return Path(explicit)
    xdg = os.environ.get("XDG_DATA_HOME")
    return (Path(xdg) if xdg else Path.home() / ".local" / "share") / "warmstart"


def default_store_path() -> Path:
    return default_data_dir() / "batch.sqlite3"


@dataclass(frozen=True)
class Page(Generic[T]):
    """One page of a listing; pass ``next_token`` back for the next (None: no more)."""

    items: list[T]
    next_token: str | None = None


class Store(Protocol):
    """The batch store's interface. Every method is one transaction; ``now`` is epoch seconds."""

    # job definitions
    def register_job_definition(
        self, request: RegisterJobDefinitionRequest, now: float
    ) -> JobDefinition: ...
    def deregister_job_definition(self, job_definition: str) -> None: ...
    def describe_job_definitions(
        self,
        job_definitions: Sequence[str] | None = None,
        *,
        job_definition_name: str | None = None,
        status: str | None = None,
        max_results: int | None = None,
        next_token: str | None = None,
    ) -> Page[JobDefinition]: ...

    # job queues
    def create_job_queue(self, request: CreateJobQueueRequest, now: float) -> JobQueueDetail: ...
    def update_job_queue(self, request: UpdateJobQueueRequest, now: float) -> JobQueueDetail: ...
    def delete_job_queue(self, job_queue: str, now: float) -> list[KillOrder]: ...
    def describe_job_queues(
        self,
        job_queues: Sequence[str] | None = None,
        *,
        max_results: int | None = None,
        next_token: str | None = None,
    ) -> Page[JobQueueDetail]: ...

    # jobs
    def submit_job(
        self, request: SubmitJobRequest, now: float, *, payload: bytes | None = None
    ) -> SubmitJobResponse: ...
    def describe_jobs(self, job_ids: Sequence[str]) -> list[JobDetail]: ...
    def list_jobs(
        self,
        *,
        job_queue: str | None = None,
        array_job_id: str | None = None,
        job_status: str | None = None,
        max_results: int | None = None,
        next_token: str | None = None,
    ) -> Page[JobSummary]: ...
    def cancel_job(self, job_id: str, reason: str, now: float) -> None: ...
    def terminate_job(self, job_id: str, reason: str, now: float) -> list[KillOrder]: ...

    # the runner's side
    def claim(
        self,
        node: str,
        now: float,
        limit: int = 1,
        *,
        vcpus: float | None = None,
        memory_mib: int | None = None,
        gpus: int | None = None,
    ) -> list[Claim]: ...
    def started(self, job_id: str, now: float, attempt: int | None = None) -> KillOrder | None: ...
    def finished(
        self,
        job_id: str,
        attempt: int,
        exit_code: int | None,
        reason: str | None,
        status_reason: str | None,
        now: float,
        *,
        log: bytes = b"",
        timed_out: bool = False,
    ) -> Finish: ...
    def kill_requests(self, node: str) -> list[KillOrder]: ...
    def recover(self, node: str, now: float) -> Recovery: ...
    def heartbeat(self, node: str, now: float) -> None: ...
    def stale_nodes(self, now: float, max_silence_s: float) -> list[str]: ...
    def read_log(self, job_id: str, attempt: int | None = None) -> bytes: ...

    # async invocations
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

    def close(self) -> None: ...


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
    "CREATE TABLE nodes (id TEXT PRIMARY KEY, seen_at REAL NOT NULL) WITHOUT ROWID",
    """CREATE TABLE events (
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
    "CREATE INDEX events_due ON events(next_at, seq) WHERE state = 'DUE'",
    "CREATE INDEX events_node ON events(node) WHERE state = 'INFLIGHT'",
    "CREATE INDEX events_dead ON events(seq) WHERE state = 'DEAD'",
    """CREATE TABLE event_configs (
        function TEXT PRIMARY KEY,
        detail BLOB NOT NULL
    ) WITHOUT ROWID""",
)

#: MIGRATIONS[i] takes a file from user_version i to i + 1
MIGRATIONS: tuple[tuple[str, ...], ...] = (_SCHEMA_V1,)
SCHEMA_VERSION = len(MIGRATIONS)

_EVENT_COLUMNS = (
    "id, function, payload, created_at, next_at, state, node, invocations, retries, throttles,"
    " max_retries, max_age, error, condition"
)

_spec_encoder = msgspec.json.Encoder()
_spec_decoder = msgspec.json.Decoder(JobSpec)
_definition_decoder = msgspec.json.Decoder(JobDefinition)
_queue_decoder = msgspec.json.Decoder(JobQueueDetail)
_config_decoder = msgspec.json.Decoder(ev.EventInvokeConfig)


def _ms(now: float) -> int:
    """API timestamps are epoch milliseconds."""
    return round(now * 1000)


def _token(seq: int) -> str:
    return base64.urlsafe_b64encode(str(seq).encode()).decode()


def _after(token: str | None) -> int | None:
    if token is None:
        return None
    try:
        return int(base64.urlsafe_b64decode(token.encode()).decode())
    except (ValueError, UnicodeDecodeError):
        raise ClientException(f"nextToken {token!r} is not valid") from None


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


class SqliteStore:
    """The batch store in one SQLite file (see the module docstring for its guarantees)."""

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
        self.path = Path(path)
        self.region = region
        self.account_id = account_id
        #: AWS_BATCH_CE_NAME of a queue that names no compute environment
        self.compute_environment = compute_environment
        self.log_cap_bytes = log_cap_bytes
        self._lock = threading.Lock()
        self._definitions: dict[int, JobDefinition] = {}
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(
            self.path, timeout=busy_timeout_s, isolation_level=None, check_same_thread=False
        )
        self._db.execute("PRAGMA journal_mode = WAL")
        self._db.execute("PRAGMA synchronous = NORMAL")
        self._db.execute("PRAGMA foreign_keys = ON")
        self._db.execute(f"PRAGMA busy_timeout = {int(busy_timeout_s * 1000)}")
        try:
            self._migrate()
        except BaseException:
            self._db.close()
            raise

    @classmethod
    def open_default(cls, **options: Any) -> SqliteStore:
        """The store at :func:`default_store_path`."""
        return cls(default_store_path(), **options)

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def __enter__(self) -> SqliteStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- transactions -------------------------------------------------------------------------

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            db = self._db
            try:
                db.execute("BEGIN IMMEDIATE")
            except sqlite3.OperationalError as exc:  # another process held the lock too long
                raise ServiceException(f"the batch store is busy: {exc}") from exc
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

    def _migrate(self) -> None:
        with self._write() as db:
            version = db.execute("PRAGMA user_version").fetchone()[0]
            if version > SCHEMA_VERSION:
                raise ServiceException(
                    f"{self.path} has batch schema version {version}; this warmstart knows "
                    f"up to {SCHEMA_VERSION}"
                )
            for target in range(version, SCHEMA_VERSION):
                for statement in MIGRATIONS[target]:
                    db.execute(statement)
                db.execute(f"PRAGMA user_version = {target + 1}")

    @property
    def schema_version(self) -> int:
        with self._lock:
            return int(self._db.execute("PRAGMA user_version").fetchone()[0])

    # -- job definitions ----------------------------------------------------------------------

    def register_job_definition(
        self, request: RegisterJobDefinitionRequest, now: float
    ) -> JobDefinition:
        """RegisterJobDefinition: a new revision (1 + the highest of that name)."""
        req = check_register(request)
        name = req.job_definition_name
        with self._write() as db:
            top = db.execute(
                "SELECT MAX(revision) FROM job_definitions WHERE name = ?", (name,)
            ).fetchone()[0]
            revision = (top or 0) + 1
            definition = JobDefinition(
                job_definition_name=name,
                job_definition_arn=job_definition_arn(self.region, self.account_id, name, revision),
                revision=revision,
                type=req.type,
                parameters=req.parameters,
                retry_strategy=req.retry_strategy,
                container_properties=req.container_properties,
                timeout=req.timeout,
                tags=req.tags,
                propagate_tags=req.propagate_tags,
                platform_capabilities=req.platform_capabilities,
            )
            db.execute(
                "INSERT INTO job_definitions (name, revision, status, detail) VALUES (?, ?, ?, ?)",
                (name, revision, ACTIVE, _spec_encoder.encode(definition)),
            )
        return definition

    def deregister_job_definition(self, job_definition: str) -> None:
        """DeregisterJobDefinition (``name:revision`` or ARN): the revision becomes INACTIVE;
        jobs already submitted with it still run."""
        name, revision = _definition_ref(job_definition)
        if revision is None:
            raise ClientException("jobDefinition must be name:revision or an ARN")
        with self._write() as db:
            cur = db.execute(
                "UPDATE job_definitions SET status = ? WHERE name = ? AND revision = ?",
                (INACTIVE, name, revision),
            )
            if cur.rowcount == 0:
                raise ClientException(f"Job definition {job_definition} does not exist")

    def describe_job_definitions(
        self,
        job_definitions: Sequence[str] | None = None,
        *,
        job_definition_name: str | None = None,
        status: str | None = None,
        max_results: int | None = None,
        next_token: str | None = None,
    ) -> Page[JobDefinition]:
        """DescribeJobDefinitions: by reference (a plain name gives every revision), else by
        name and/or status, a page at a time in registration order."""
        if job_definitions:
            if len(job_definitions) > 100:
                raise ClientException("jobDefinitions can name up to 100 job definitions")
            with self._read() as db:
                found = [d for ref in job_definitions for d in self._definitions_of(db, ref)]
            return Page(found)
        limit = _limit(max_results, 100, 100)
        where: list[str] = ["seq > ?"]
        args: list[object] = [_after(next_token) or 0]
        if job_definition_name is not None:
            where.append("name = ?")
            args.append(job_definition_name)
        if status is not None:
            where.append("status = ?")
            args.append(status)
        with self._read() as db:
            rows = db.execute(
                f"SELECT seq, status, detail FROM job_definitions WHERE {' AND '.join(where)}"
                " ORDER BY seq LIMIT ?",
                (*args, limit + 1),
            ).fetchall()
        items = [self._definition_row(row) for row in rows[:limit]]
        return Page(items, _token(rows[limit - 1][0]) if len(rows) > limit else None)

    def _definitions_of(self, db: sqlite3.Connection, ref: str) -> list[JobDefinition]:
        name, revision = _definition_ref(ref)
        select = "SELECT seq, status, detail FROM job_definitions WHERE name = ?"
        if revision is None:
            rows = db.execute(f"{select} ORDER BY revision", (name,))
        else:
            rows = db.execute(f"{select} AND revision = ?", (name, revision))
        return [self._definition_row(row) for row in rows]

    def _definition_row(self, row: tuple[int, str, bytes]) -> JobDefinition:
        seq, status, detail = row
        cached = self._definitions.get(seq)
        if cached is None:
            cached = self._definitions[seq] = _definition_decoder.decode(detail)
        if cached.status != status:
            cached = self._definitions[seq] = msgspec.structs.replace(cached, status=status)
        return cached

    def _definition(self, db: sqlite3.Connection, ref: str) -> JobDefinition:
        """The revision a submit means: by name the latest ACTIVE one, else the one named."""
        name, revision = _definition_ref(ref)
        if revision is None:
            row = db.execute(
                "SELECT seq, status, detail FROM job_definitions WHERE name = ? AND status = ?"
                " ORDER BY revision DESC LIMIT 1",
                (name, ACTIVE),
            ).fetchone()
        else:
            row = db.execute(
                "SELECT seq, status, detail FROM job_definitions WHERE name = ? AND revision = ?",
                (name, revision),
            ).fetchone()
        if row is None:
            raise ClientException(f"Job definition {ref} does not exist")
        definition = self._definition_row(row)
        if definition.status != ACTIVE:
            raise ClientException(f"Job definition {ref} is INACTIVE")
        return definition

    # -- job queues ---------------------------------------------------------------------------

    def create_job_queue(self, request: CreateJobQueueRequest, now: float) -> JobQueueDetail:
        """CreateJobQueue: status VALID at once (there is nothing to provision)."""
        check_queue(request)
        detail = JobQueueDetail(
            job_queue_name=request.job_queue_name,
            job_queue_arn=job_queue_arn(self.region, self.account_id, request.job_queue_name),
            state=request.state,
            priority=request.priority,
            compute_environment_order=request.compute_environment_order or [],
            scheduling_policy_arn=request.scheduling_policy_arn,
            tags=request.tags,
        )
        with self._write() as db:
            try:
                db.execute(
                    "INSERT INTO queues (name, state, status, priority, detail)"
                    " VALUES (?, ?, ?, ?, ?)",
                    (
                        detail.job_queue_name,
                        detail.state,
                        VALID,
                        detail.priority,
                        _spec_encoder.encode(detail),
                    ),
                )
            except sqlite3.IntegrityError:
                raise ClientException(
                    f"Job queue {request.job_queue_name} already exists"
                ) from None
        return detail

    def update_job_queue(self, request: UpdateJobQueueRequest, now: float) -> JobQueueDetail:
        """UpdateJobQueue: state, priority and compute environments. A DISABLED queue takes no
        new jobs and starts none of its RUNNABLE ones; its running jobs finish."""
        check_state(request.state)
        if request.priority is not None and request.priority < 0:
            raise ClientException(f"priority {request.priority} must be 0 or more")
        with self._write() as db:
            seq, detail = self._queue(db, request.job_queue)
            changes = {
                field: value
                for field in (
                    "state",
                    "priority",
                    "compute_environment_order",
                    "scheduling_policy_arn",
                )
                if (value := getattr(request, field)) is not None
            }
            detail = msgspec.structs.replace(detail, **changes)
            db.execute(
                "UPDATE queues SET state = ?, priority = ?, detail = ? WHERE seq = ?",
                (detail.state, detail.priority, _spec_encoder.encode(detail), seq),
            )
        return detail

    def delete_job_queue(self, job_queue: str, now: float) -> list[KillOrder]:
        """DeleteJobQueue: only a DISABLED queue; its unfinished jobs are terminated (the
        returned orders are the running ones the runners must stop)."""
        with self._write() as db:
            seq, detail = self._queue(db, job_queue)
            if detail.state != DISABLED:
                raise ClientException(
                    f"Job queue {detail.job_queue_name} must be DISABLED before it is deleted"
                )
            rows = db.execute(
                f"SELECT seq, status, array_size FROM jobs WHERE queue = ? AND parent IS NULL"
                f" AND status NOT IN {_FINAL_SQL}",
                (seq,),
            ).fetchall()
            orders: list[KillOrder] = []
            for row in rows:
                orders += self._terminate(db, row, "Job queue deleted", now)
            db.execute("UPDATE queues SET status = ? WHERE seq = ?", (DELETED, seq))
        return orders

    def describe_job_queues(
        self,
        job_queues: Sequence[str] | None = None,
        *,
        max_results: int | None = None,
        next_token: str | None = None,
    ) -> Page[JobQueueDetail]:
        """DescribeJobQueues: the named queues (names or ARNs), else all, a page at a time."""
        if job_queues:
            if len(job_queues) > 100:
                raise ClientException("jobQueues can name up to 100 job queues")
            names = [_queue_name(ref) for ref in job_queues]
            with self._read() as db:
                rows = _select_in(
                    db,
                    "SELECT seq, state, priority, detail FROM queues"
                    " WHERE status != 'DELETED' AND name IN ({}) ORDER BY seq",
                    names,
                )
            return Page([self._queue_row(row) for row in rows])
        limit = _limit(max_results, 100, 100)
        with self._read() as db:
            rows = db.execute(
                "SELECT seq, state, priority, detail FROM queues"
                " WHERE status != 'DELETED' AND seq > ? ORDER BY seq LIMIT ?",
                (_after(next_token) or 0, limit + 1),
            ).fetchall()
        items = [self._queue_row(row) for row in rows[:limit]]
        return Page(items, _token(rows[limit - 1][0]) if len(rows) > limit else None)

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

    # -- submit -------------------------------------------------------------------------------

    def submit_job(
        self, request: SubmitJobRequest, now: float, *, payload: bytes | None = None
    ) -> SubmitJobResponse:
        """SubmitJob. Dependencies are evaluated in the same transaction, so a job is PENDING
        or RUNNABLE (or FAILED, when a dependency already failed) when this returns: the
        SUBMITTED state is never seen. ``payload`` is the event of a function job."""
        req = check_submit(request)
        job_id = str(uuid.uuid4())
        with self._write() as db:
            queue_seq, queue = self._queue(db, req.job_queue)
            if queue.state != ENABLED:
                raise ClientException(
                    f"Job queue {queue.job_queue_name} is DISABLED and accepts no new jobs"
                )
            definition = self._definition(db, req.job_definition)
            spec = _job_spec(definition, req)
            if payload is not None and spec.function is None:
                raise ClientException("a payload is only for function jobs")
            if spec.function is not None and payload is None:
                payload = rules.function_event(spec.parameters)
            targets = self._targets(db, req.depends_on or [])
            size = req.array_properties.size if req.array_properties else None
            plan = rules.plan_dependencies(
                req.depends_on or [],
                size,
                {k: rules.Target(v[1], v[2]) for k, v in targets.items()},
            )
            row = _NewJob(job_id, req.job_name, queue_seq, definition, spec, payload, size)
            self._insert(db, row, plan, targets, _ms(now))
        return SubmitJobResponse(
            job_name=req.job_name,
            job_id=job_id,
            job_arn=job_arn(self.region, self.account_id, job_id),
        )

    @staticmethod
    def _targets(
        db: sqlite3.Connection, depends_on: list[JobDependency]
    ) -> dict[str, tuple[int, str, int | None]]:
        """seq, status and array size of each job named in dependsOn."""
        ids = sorted({dep.job_id for dep in depends_on if dep.job_id is not None})
        rows = _select_in(db, "SELECT id, seq, status, array_size FROM jobs WHERE id IN ({})", ids)
        return {row[0]: (row[1], row[2], row[3]) for row in rows}

    def _insert(
        self,
        db: sqlite3.Connection,
        job: _NewJob,
        plan: rules.DependencyPlan,
        targets: dict[str, tuple[int, str, int | None]],
        ms: int,
    ) -> None:
        whole = [targets[job_id] for job_id in plan.whole]
        state = rules.dependency_status(status for _, status, _ in whole)
        waiting = [seq for seq, status, _ in whole if status not in FINAL_STATUSES]
        if job.size is None:
            status, reason = state, None
            if state == FAILED:
                reason = rules.DEPENDENCY_FAILED
        else:
            status, reason = PENDING, None  # an array parent waits for its children
        vcpus, memory, gpus = rules.container_resources(job.spec.container)
        cur = db.execute(
            "INSERT INTO jobs (id, name, queue, definition, status, status_reason, created_at,"
            " updated_at, stopped_at, array_size, pending, max_attempts, vcpus, memory, gpus,"
            " spec, payload) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                job.id,
                job.name,
                job.queue,
                job.definition.job_definition_arn,
                status,
                reason,
                ms,
                ms,
                ms if status == FAILED else None,
                job.size,
                len(waiting),
                rules.attempts_allowed(job.spec.retry_strategy),
                vcpus,
                memory,
                gpus,
                _spec_encoder.encode(job.spec),
                job.payload,
            ),
        )
        seq = cur.lastrowid
        assert seq is not None
        if state != FAILED:
            db.executemany("INSERT INTO deps (dep, job) VALUES (?, ?)", [(d, seq) for d in waiting])
        if job.size is not None:
            self._insert_children(db, seq, job, plan, targets, gate=state, ms=ms)

    def _insert_children(
        self,
        db: sqlite3.Connection,
        parent: int,
        job: _NewJob,
        plan: rules.DependencyPlan,
        targets: dict[str, tuple[int, str, int | None]],
        *,
        gate: str,
        ms: int,
    ) -> None:
        """An array job's children, in one executemany: child i is ``<id>:<i>`` with seq
        ``parent + 1 + i`` (the write lock is held, so these numbers are free)."""
        size = job.size
        assert size is not None
        peers = [self._children_of(db, targets[job_id][0]) for job_id in plan.n_to_n]
        vcpus, memory, gpus = rules.container_resources(job.spec.container)
        attempts = rules.attempts_allowed(job.spec.retry_strategy)
        definition = job.definition.job_definition_arn
        rows, edges, doomed = [], [], []
        for i in range(size):
            seq = parent + 1 + i
            blockers, failed = rules.child_blockers(
                i,
                gate=gate == PENDING,
                sequential=plan.sequential,
                n_to_n=[peer[i][1] for peer in peers],
            )
            if failed or gate == FAILED:
                doomed.append((seq, FAILED, rules.DEPENDENCY_FAILED))
            status = RUNNABLE if blockers == 0 and not failed else PENDING
            rows.append(
                (
                    seq,
                    f"{job.id}:{i}",
                    job.name,
                    job.queue,
                    definition,
                    status,
                    ms,
                    ms,
                    parent,
                    i,
                    blockers,
                    attempts,
                    vcpus,
                    memory,
                    gpus,
                )
            )
            if plan.sequential and i > 0:
                edges.append((seq - 1, seq))
            edges += [(peer[i][0], seq) for peer in peers if peer[i][1] not in FINAL_STATUSES]
        db.executemany(
            "INSERT INTO jobs (seq, id, name, queue, definition, status, created_at, updated_at,"
            " parent, array_index, pending, max_attempts, vcpus, memory, gpus)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            rows,
        )
        db.executemany("INSERT INTO deps (dep, job) VALUES (?, ?)", edges)
        if gate == FAILED:
            db.execute(
                "UPDATE jobs SET kill_reason = ? WHERE seq = ?", (rules.DEPENDENCY_FAILED, parent)
            )
        if doomed:
            self._settle(db, doomed, ms)

    @staticmethod
    def _children_of(db: sqlite3.Connection, parent: int) -> list[tuple[int, str]]:
        return db.execute(
            "SELECT seq, status FROM jobs WHERE parent = ? ORDER BY array_index", (parent,)
        ).fetchall()

    # -- settling: what follows a job's end, in the same transaction --------------------------

    def _settle(self, db: sqlite3.Connection, outcomes: Sequence[_Outcome], ms: int) -> None:
        """Make jobs final and carry out everything that follows: dependents released or failed
        (cascading), array parents counted and finished when their last child is."""
        items = list(outcomes)
        while items:
            rows = {
                row[0]: row
                for row in _select_in(
                    db,
                    f"SELECT seq, parent FROM jobs WHERE status NOT IN {_FINAL_SQL}"
                    " AND seq IN ({})",
                    [seq for seq, _, _ in items],
                )
            }
            live = {seq: (status, reason) for seq, status, reason in reversed(items) if seq in rows}
            db.executemany(
                "UPDATE jobs SET status = ?, status_reason = COALESCE(?, status_reason),"
                " stopped_at = ?, updated_at = ? WHERE seq = ?",
                [(status, reason, ms, ms, seq) for seq, (status, reason) in live.items()],
            )
            items = self._count_children(db, live, rows)
            self._release(db, [seq for seq, (status, _) in live.items() if status != FAILED], ms)
            items += self._dependents_failing(
                db, [s for s, (st, _) in live.items() if st == FAILED]
            )

    def _count_children(
        self,
        db: sqlite3.Connection,
        live: dict[int, tuple[str, str | None]],
        rows: dict[int, tuple[int, int | None]],
    ) -> list[_Outcome]:
        """Add finished children to their parents' counts; parents now complete come back."""
        counts: dict[int, list[int]] = {}
        for seq, (status, _) in live.items():
            parent = rows[seq][1]
            if parent is not None:
                done_failed = counts.setdefault(parent, [0, 0])
                done_failed[0] += 1
                done_failed[1] += status == FAILED
        if not counts:
            return []
        db.executemany(
            "UPDATE jobs SET done = done + ?, failed = failed + ? WHERE seq = ?",
            [(done, failed, parent) for parent, (done, failed) in counts.items()],
        )
        out: list[_Outcome] = []
        for seq, size, done, failed, kill_reason in _select_in(
            db,
            "SELECT seq, array_size, done, failed, kill_reason FROM jobs WHERE seq IN ({})",
            list(counts),
        ):
            final = rules.array_parent_status(size, done, failed)
            if final == FAILED:
                out.append((seq, final, kill_reason or rules.ARRAY_CHILD_FAILED))
            elif final is not None:
                out.append((seq, final, None))
        return out

    def _release(self, db: sqlite3.Connection, succeeded: list[int], ms: int) -> None:
        """Each dependent of a job that succeeded waits for one dependency less; those waiting
        for none become RUNNABLE (an array parent opens the gate of its children)."""
        if not succeeded:
            return
        dependents = [
            row[0] for row in _select_in(db, "SELECT job FROM deps WHERE dep IN ({})", succeeded)
        ]
        if not dependents:
            return
        db.executemany(
            "UPDATE jobs SET pending = pending - 1 WHERE seq = ? AND status = 'PENDING'",
            [(seq,) for seq in dependents],
        )
        ready = _select_in(
            db,
            "SELECT seq, array_size FROM jobs WHERE status = 'PENDING' AND pending = 0"
            " AND seq IN ({})",
            sorted(set(dependents)),
        )
        for seq, size in ready:
            if size is None:
                db.execute(
                    "UPDATE jobs SET status = 'RUNNABLE', updated_at = ? WHERE seq = ?", (ms, seq)
                )
            else:
                self._open_gate(db, seq, ms)

    @staticmethod
    def _open_gate(db: sqlite3.Connection, parent: int, ms: int) -> None:
        db.execute(
            "UPDATE jobs SET pending = pending - 1 WHERE parent = ? AND status = 'PENDING'",
            (parent,),
        )
        db.execute(
            "UPDATE jobs SET status = 'RUNNABLE', updated_at = ?"
            " WHERE parent = ? AND status = 'PENDING' AND pending = 0",
            (ms, parent),
        )

    def _dependents_failing(self, db: sqlite3.Connection, failed: list[int]) -> list[_Outcome]:
        """Jobs waiting on a failed job fail with it ("Dependent Job failed"); an array parent
        fails through its children, which all still wait for it."""
        if not failed:
            return []
        rows = _select_in(
            db,
            "SELECT j.seq, j.array_size FROM deps d JOIN jobs j ON j.seq = d.job"
            " WHERE j.status = 'PENDING' AND d.dep IN ({})",
            failed,
        )
        out: list[_Outcome] = []
        for seq, size in rows:
            if size is None:
                out.append((seq, FAILED, rules.DEPENDENCY_FAILED))
                continue
            db.execute(
                "UPDATE jobs SET kill_reason = COALESCE(kill_reason, ?) WHERE seq = ?",
                (rules.DEPENDENCY_FAILED, seq),
            )
            out += [
                (child, FAILED, rules.DEPENDENCY_FAILED)
                for (child,) in db.execute(
                    f"SELECT seq FROM jobs WHERE parent = ? AND status NOT IN {_FINAL_SQL}",
                    (seq,),
                )
            ]
        return out

    # -- cancel and terminate -----------------------------------------------------------------

    def cancel_job(self, job_id: str, reason: str, now: float) -> None:
        """CancelJob: a SUBMITTED, PENDING or RUNNABLE job fails with ``reason``; a STARTING or
        RUNNING one is left alone (use terminate_job). For an array parent, every child not yet
        started is cancelled, and the parent fails with ``reason`` once all children end."""
        ms = _ms(now)
        with self._write() as db:
            seq, status, size = self._job_row(db, job_id)
            if size is not None and status not in FINAL_STATUSES:
                db.execute(
                    "UPDATE jobs SET cancelled = 1, kill_reason = COALESCE(kill_reason, ?)"
                    " WHERE seq = ?",
                    (reason, seq),
                )
                targets = db.execute(
                    "SELECT seq FROM jobs WHERE parent = ? AND status IN (?, ?, ?)",
                    (seq, SUBMITTED, PENDING, RUNNABLE),
                ).fetchall()
            elif rules.cancel_effect(status) == rules.FAIL:
                targets = [(seq,)]
            else:
                return
            db.executemany("UPDATE jobs SET cancelled = 1 WHERE seq = ?", targets)
            self._settle(db, [(t, FAILED, reason) for (t,) in targets], ms)

    def terminate_job(self, job_id: str, reason: str, now: float) -> list[KillOrder]:
        """TerminateJob: a job not yet started fails with ``reason`` at once; a STARTING or
        RUNNING one is marked, and the returned orders tell its runner to stop it (it then
        fails with ``reason``, without retry). An array parent terminates all its children."""
        with self._write() as db:
            return self._terminate(db, self._job_row(db, job_id), reason, now)

    def _terminate(
        self, db: sqlite3.Connection, row: tuple[int, str, int | None], reason: str, now: float
    ) -> list[KillOrder]:
        seq, status, size = row
        if status in FINAL_STATUSES:
            return []
        if size is not None:
            db.execute(
                "UPDATE jobs SET terminated = 1, kill_reason = COALESCE(kill_reason, ?)"
                " WHERE seq = ?",
                (reason, seq),
            )
            targets = db.execute(
                f"SELECT seq, status FROM jobs WHERE parent = ? AND status NOT IN {_FINAL_SQL}",
                (seq,),
            ).fetchall()
        else:
            targets = [(seq, status)]
        effects = [(t, rules.terminate_effect(s)) for t, s in targets]
        kill = [(reason, t) for t, effect in effects if effect == rules.KILL]
        fail = [t for t, effect in effects if effect == rules.FAIL]
        db.executemany(
            "UPDATE jobs SET terminated = 1, kill_reason = COALESCE(kill_reason, ?) WHERE seq = ?",
            kill,
        )
        db.executemany("UPDATE jobs SET terminated = 1 WHERE seq = ?", [(t,) for t in fail])
        self._settle(db, [(t, FAILED, reason) for t in fail], _ms(now))
        return self._kill_orders(db, [t for _, t in kill])

    @staticmethod
    def _kill_orders(db: sqlite3.Connection, seqs: list[int]) -> list[KillOrder]:
        rows = _select_in(
            db, "SELECT id, node, attempts, kill_reason FROM jobs WHERE seq IN ({})", seqs
        )
        return [KillOrder(job_id=r[0], node=r[1], attempt=r[2], reason=r[3]) for r in rows]

    @staticmethod
    def _job_row(db: sqlite3.Connection, job_id: str) -> tuple[int, str, int | None]:
        row = db.execute(
            "SELECT seq, status, array_size FROM jobs WHERE id = ?", (job_id,)
        ).fetchone()
        if row is None:
            raise ClientException(f"Job {job_id} does not exist")
        return row  # type: ignore[no-any-return]

    # -- the runner's side --------------------------------------------------------------------

    def claim(
        self,
        node: str,
        now: float,
        limit: int = 1,
        *,
        vcpus: float | None = None,
        memory_mib: int | None = None,
        gpus: int | None = None,
    ) -> list[Claim]:
        """Move up to ``limit`` RUNNABLE jobs to STARTING for ``node``, each with its next
        attempt number: queues by priority (highest first; equal priorities share in submit
        order), jobs oldest first, skipping those that do not fit the free capacity given
        (None: no limit). DISABLED queues start nothing."""
        if limit < 1:
            return []
        ms = _ms(now)
        with self._write() as db:
            self._beat(db, node, now)
            picked = self._pick(db, limit, vcpus, memory_mib, gpus)
            if not picked:
                return []
            db.executemany(
                "UPDATE jobs SET status = 'STARTING', node = ?, attempts = attempts + 1,"
                " updated_at = ? WHERE seq = ?",
                [(node, ms, seq) for seq in picked],
            )
            db.executemany(
                "INSERT INTO attempts (job, n, node, claimed_at)"
                " SELECT seq, attempts, ?, ? FROM jobs WHERE seq = ?",
                [(node, ms, seq) for seq in picked],
            )
            return self._claims(db, picked, node)

    def _pick(
        self,
        db: sqlite3.Connection,
        limit: int,
        vcpus: float | None,
        memory: int | None,
        gpus: int | None,
    ) -> list[int]:
        bounded = vcpus is not None or memory is not None or gpus is not None
        window = max(limit * 4, 64) if bounded else limit
        free = [
            float("inf") if vcpus is None else vcpus,
            float("inf") if memory is None else memory,
            float("inf") if gpus is None else gpus,
        ]
        picked: list[int] = []
        for tier in self._tiers(db):
            candidates = sorted(
                row
                for queue in tier
                for row in db.execute(
                    "SELECT seq, vcpus, memory, gpus FROM jobs"
                    " WHERE queue = ? AND status = 'RUNNABLE' ORDER BY seq LIMIT ?",
                    (queue, window),
                )
            )
            for seq, need_v, need_m, need_g in candidates:
                if need_v <= free[0] and need_m <= free[1] and need_g <= free[2]:
                    free[0] -= need_v
                    free[1] -= need_m
                    free[2] -= need_g
                    picked.append(seq)
                    if len(picked) == limit:
                        return picked
        return picked

    @staticmethod
    def _tiers(db: sqlite3.Connection) -> list[list[int]]:
        """ENABLED queues grouped by priority, highest first."""
        tiers: dict[int, list[int]] = {}
        for seq, priority in db.execute(
            "SELECT seq, priority FROM queues WHERE state = ? AND status = ?"
            " ORDER BY priority DESC, seq",
            (ENABLED, VALID),
        ):
            tiers.setdefault(priority, []).append(seq)
        return list(tiers.values())

    def _claims(self, db: sqlite3.Connection, picked: list[int], node: str) -> list[Claim]:
        rows = _select_in(
            db,
            "SELECT j.seq, j.id, j.name, j.definition, j.array_index, j.attempts, j.vcpus,"
            " j.memory, j.gpus, COALESCE(j.parent, j.seq), COALESCE(j.spec, p.spec),"
            " COALESCE(j.payload, p.payload), q.name, q.detail"
            " FROM jobs j LEFT JOIN jobs p ON p.seq = j.parent JOIN queues q ON q.seq = j.queue"
            " WHERE j.seq IN ({})",
            picked,
        )
        specs: dict[int, JobSpec] = {}
        ces: dict[str, str] = {}
        order = {seq: i for i, seq in enumerate(picked)}
        rows.sort(key=lambda row: order[row[0]])
        out = []
        for row in rows:
            spec = specs.get(row[9])
            if spec is None:
                spec = specs[row[9]] = _spec_decoder.decode(row[10])
            queue = row[12]
            if queue not in ces:
                ces[queue] = self._compute_environment(row[13])
            out.append(self._claim(row, spec, node, ces[queue]))
        return out

    def _compute_environment(self, detail: bytes) -> str:
        order = _queue_decoder.decode(detail).compute_environment_order
        if not order:
            return self.compute_environment
        first = min(order, key=lambda ce: ce.order).compute_environment
        return first.rpartition("/")[2]

    @staticmethod
    def _claim(row: tuple[Any, ...], spec: JobSpec, node: str, ce: str) -> Claim:
        _, job_id, name, definition, index, attempt, vcpus, memory, gpus = row[:9]
        container = spec.container
        timeout = spec.timeout.attempt_duration_seconds if spec.timeout else None
        return Claim(
            job_id=job_id,
            job_name=name,
            attempt=attempt,
            node=node,
            job_queue=row[12],
            job_definition=definition,
            array_index=index,
            image=container.image if container else None,
            command=list(container.command or []) if container else [],
            environment=rules.job_environment(
                container,
                job_id=job_id,
                attempt=attempt,
                queue=row[12],
                compute_environment=ce,
                array_index=index,
            ),
            vcpus=vcpus,
            memory_mib=memory,
            gpus=gpus,
            timeout_s=timeout,
            function=spec.function,
            payload=row[11],
            log_stream_name=_log_stream(definition, job_id, attempt),
        )

    def started(self, job_id: str, now: float, attempt: int | None = None) -> KillOrder | None:
        """STARTING → RUNNING. Returns a kill order when the job was terminated meanwhile."""
        ms = _ms(now)
        with self._write() as db:
            row = db.execute(
                "SELECT seq, status, attempts, node, kill_reason, parent FROM jobs WHERE id = ?",
                (job_id,),
            ).fetchone()
            if row is None:
                raise ClientException(f"Job {job_id} does not exist")
            seq, status, current, node, kill_reason, parent = row
            if status != STARTING or (attempt is not None and attempt != current):
                raise ClientException(
                    f"Job {job_id} attempt {attempt or current} is not STARTING (it is {status},"
                    f" attempt {current})"
                )
            db.execute(
                "UPDATE jobs SET status = 'RUNNING', started_at = ?, updated_at = ? WHERE seq = ?",
                (ms, ms, seq),
            )
            db.execute(
                "UPDATE attempts SET started_at = ? WHERE job = ? AND n = ?", (ms, seq, current)
            )
            if parent is not None:
                db.execute(
                    "UPDATE jobs SET started_at = ? WHERE seq = ? AND started_at IS NULL",
                    (ms, parent),
                )
        if kill_reason is None:
            return None
        return KillOrder(job_id=job_id, node=node, attempt=current, reason=kill_reason)

    def finished(
        self,
        job_id: str,
        attempt: int,
        exit_code: int | None,
        reason: str | None,
        status_reason: str | None,
        now: float,
        *,
        log: bytes = b"",
        timed_out: bool = False,
    ) -> Finish:
        """An attempt ended: ``exit_code`` (None when the container never ran or vanished),
        the container ``reason``, the attempt's ``status_reason`` (None: AWS's default),
        ``timed_out`` when the runner killed it at attemptDurationSeconds. The retry rules
        decide what follows: RUNNABLE for another attempt, or a final status with dependents
        and the array parent settled in the same transaction. ``log`` is kept (its last
        ``log_cap_bytes``). A report for an attempt that is no longer current is ignored."""
        ms = _ms(now)
        with self._write() as db:
            row = db.execute(
                "SELECT j.seq, j.status, j.attempts, j.kill_reason, COALESCE(j.spec, p.spec)"
                " FROM jobs j LEFT JOIN jobs p ON p.seq = j.parent WHERE j.id = ?",
                (job_id,),
            ).fetchone()
            if row is None:
                raise ClientException(f"Job {job_id} does not exist")
            seq, status, current, kill_reason, spec = row
            if status not in (STARTING, RUNNING) or attempt != current:
                return Finish(job_id=job_id, status=status, applied=False)
            verdict = rules.judge_attempt(
                _spec_decoder.decode(spec).retry_strategy,
                attempt,
                exit_code,
                reason,
                status_reason,
                timed_out=timed_out,
                kill_reason=kill_reason,
            )
            self._close_attempt(db, seq, attempt, ms, exit_code, reason, verdict.attempt_reason)
            if log:
                db.execute(
                    "INSERT OR REPLACE INTO logs (job, n, data) VALUES (?, ?, ?)",
                    (seq, attempt, log[-self.log_cap_bytes :]),
                )
            self._after_attempt(db, seq, verdict, ms)
        return Finish(job_id=job_id, status=verdict.status, applied=True)

    @staticmethod
    def _close_attempt(
        db: sqlite3.Connection,
        seq: int,
        attempt: int,
        ms: int,
        exit_code: int | None,
        reason: str | None,
        status_reason: str,
    ) -> None:
        db.execute(
            "UPDATE attempts SET stopped_at = ?, exit_code = ?, reason = ?, status_reason = ?"
            " WHERE job = ? AND n = ?",
            (ms, exit_code, reason, status_reason, seq, attempt),
        )

    def _after_attempt(
        self, db: sqlite3.Connection, seq: int, verdict: rules.Verdict, ms: int
    ) -> None:
        if verdict.status == RUNNABLE:
            db.execute(
                "UPDATE jobs SET status = 'RUNNABLE', node = NULL, updated_at = ? WHERE seq = ?",
                (ms, seq),
            )
        else:
            self._settle(db, [(seq, verdict.status, verdict.status_reason)], ms)

    def kill_requests(self, node: str) -> list[KillOrder]:
        """Terminations waiting for ``node`` (TerminateJob may come from another process)."""
        with self._read() as db:
            rows = db.execute(
                "SELECT id, node, attempts, kill_reason FROM jobs WHERE node = ?"
                " AND status IN ('STARTING', 'RUNNING') AND kill_reason IS NOT NULL",
                (node,),
            ).fetchall()
        return [KillOrder(job_id=r[0], node=r[1], attempt=r[2], reason=r[3]) for r in rows]

    def recover(self, node: str, now: float) -> Recovery:
        """After ``node``'s runner died (call it when that runner restarts, or for a node found
        by :meth:`stale_nodes`): each of its STARTING/RUNNING attempts counts as failed with
        :func:`rules.runner_died`'s reason and the job is retried or fails per its retry
        strategy; its in-flight events are due again (at-least-once)."""
        ms = _ms(now)
        requeued: list[str] = []
        failed: list[str] = []
        reason = rules.runner_died(node)
        with self._write() as db:
            rows = db.execute(
                "SELECT j.seq, j.id, j.attempts, j.kill_reason, COALESCE(j.spec, p.spec)"
                " FROM jobs j LEFT JOIN jobs p ON p.seq = j.parent"
                " WHERE j.node = ? AND j.status IN ('STARTING', 'RUNNING') ORDER BY j.seq",
                (node,),
            ).fetchall()
            for seq, job_id, attempt, kill_reason, spec in rows:
                verdict = rules.judge_attempt(
                    _spec_decoder.decode(spec).retry_strategy,
                    attempt,
                    None,
                    None,
                    reason,
                    kill_reason=kill_reason,
                )
                self._close_attempt(db, seq, attempt, ms, None, None, verdict.attempt_reason)
                self._after_attempt(db, seq, verdict, ms)
                (requeued if verdict.status == RUNNABLE else failed).append(job_id)
            events = db.execute(
                "UPDATE events SET state = 'DUE', node = NULL, next_at = ?"
                " WHERE node = ? AND state = 'INFLIGHT'",
                (now, node),
            ).rowcount
            db.execute("DELETE FROM nodes WHERE id = ?", (node,))
        return Recovery(requeued=requeued, failed=failed, events=events)

    def heartbeat(self, node: str, now: float) -> None:
        """Record that ``node``'s runner is alive (claims do this too)."""
        with self._write() as db:
            self._beat(db, node, now)

    @staticmethod
    def _beat(db: sqlite3.Connection, node: str, now: float) -> None:
        db.execute(
            "INSERT INTO nodes (id, seen_at) VALUES (?, ?)"
            " ON CONFLICT (id) DO UPDATE SET seen_at = excluded.seen_at",
            (node, now),
        )

    def stale_nodes(self, now: float, max_silence_s: float) -> list[str]:
        """Nodes not heard from for ``max_silence_s``: candidates for :meth:`recover`."""
        with self._read() as db:
            rows = db.execute(
                "SELECT id FROM nodes WHERE seen_at < ? ORDER BY id", (now - max_silence_s,)
            ).fetchall()
        return [row[0] for row in rows]

    def read_log(self, job_id: str, attempt: int | None = None) -> bytes:
        """The kept output of one attempt (default: the latest); empty when none was kept."""
        with self._read() as db:
            seq, _, _ = self._job_row(db, job_id)
            row = db.execute(
                "SELECT data FROM logs WHERE job = ? AND (? IS NULL OR n = ?)"
                " ORDER BY n DESC LIMIT 1",
                (seq, attempt, attempt),
            ).fetchone()
        return bytes(row[0]) if row else b""

    # -- describing jobs ----------------------------------------------------------------------

    def describe_jobs(self, job_ids: Sequence[str]) -> list[JobDetail]:
        """DescribeJobs: up to 100 ids; unknown ids are left out, as AWS does."""
        if len(job_ids) > 100:
            raise ClientException("jobs can name up to 100 job ids")
        with self._read() as db:
            return [
                detail for job_id in job_ids if (detail := self._detail(db, job_id)) is not None
            ]

    def _detail(self, db: sqlite3.Connection, job_id: str) -> JobDetail | None:
        row = db.execute(
            "SELECT j.seq, j.id, j.name, q.name, j.status, j.definition, j.status_reason,"
            " j.created_at, j.started_at, j.stopped_at, j.array_index, j.array_size,"
            " j.cancelled, j.terminated, COALESCE(j.spec, p.spec), p.id"
            " FROM jobs j LEFT JOIN jobs p ON p.seq = j.parent JOIN queues q ON q.seq = j.queue"
            " WHERE j.id = ?",
            (job_id,),
        ).fetchone()
        if row is None:
            return None
        seq, _, name, queue, status, definition, status_reason = row[:7]
        created, started, stopped, index, size, cancelled, terminated, spec_json, parent = row[7:]
        spec = _spec_decoder.decode(spec_json)
        attempts = self._attempts(db, seq, definition, job_id)
        container = spec.container
        if container is not None and attempts and attempts[-1].container is not None:
            last = attempts[-1].container
            container = msgspec.structs.replace(
                container,
                exit_code=last.exit_code,
                reason=last.reason,
                log_stream_name=last.log_stream_name,
            )
        return JobDetail(
            job_arn=job_arn(self.region, self.account_id, job_id),
            job_name=name,
            job_id=job_id,
            job_queue=job_queue_arn(self.region, self.account_id, queue),
            status=status,
            job_definition=definition,
            attempts=attempts,
            status_reason=status_reason,
            created_at=created,
            retry_strategy=spec.retry_strategy,
            started_at=started,
            stopped_at=stopped,
            depends_on=_child_depends_on(spec, parent, index) if parent else spec.depends_on,
            parameters=spec.parameters,
            container=container,
            array_properties=self._array_detail(db, seq, size, index),
            timeout=spec.timeout,
            tags=spec.tags,
            propagate_tags=spec.propagate_tags,
            is_cancelled=bool(cancelled),
            is_terminated=bool(terminated),
        )

    @staticmethod
    def _attempts(
        db: sqlite3.Connection, seq: int, definition: str, job_id: str
    ) -> list[AttemptDetail]:
        rows = db.execute(
            "SELECT n, started_at, stopped_at, exit_code, reason, status_reason FROM attempts"
            " WHERE job = ? AND stopped_at IS NOT NULL ORDER BY n",
            (seq,),
        )
        return [
            AttemptDetail(
                container=AttemptContainerDetail(
                    exit_code=code,
                    reason=reason,
                    log_stream_name=_log_stream(definition, job_id, n),
                ),
                started_at=started,
                stopped_at=stopped,
                status_reason=status_reason,
            )
            for n, started, stopped, code, reason, status_reason in rows
        ]

    @staticmethod
    def _array_detail(
        db: sqlite3.Connection, seq: int, size: int | None, index: int | None
    ) -> ArrayPropertiesDetail | None:
        if index is not None:
            return ArrayPropertiesDetail(index=index)
        if size is None:
            return None
        counts, last = {}, None
        for status, count, updated in db.execute(
            "SELECT status, COUNT(*), MAX(updated_at) FROM jobs WHERE parent = ? GROUP BY status",
            (seq,),
        ):
            counts[status] = count
            last = updated if last is None else max(last, updated)
        return ArrayPropertiesDetail(
            status_summary=rules.status_summary(counts),
            status_summary_last_updated_at=last,
            size=size,
        )

    def list_jobs(
        self,
        *,
        job_queue: str | None = None,
        array_job_id: str | None = None,
        job_status: str | None = None,
        max_results: int | None = None,
        next_token: str | None = None,
    ) -> Page[JobSummary]:
        """ListJobs: the jobs of a queue (newest first; array children are listed through
        their parent) or the children of an array job (by index), in one status, RUNNING when
        none is given (AWS's default), up to ``max_results`` (1-1000) a page."""
        if (job_queue is None) == (array_job_id is None):
            raise ClientException("give exactly one of jobQueue and arrayJobId")
        status = job_status or RUNNING
        if status not in JOB_STATUSES:
            raise ClientException(f"jobStatus {status!r} is not a job status")
        limit = _limit(max_results, 1000, 1000)
        after = _after(next_token)
        with self._read() as db:
            if job_queue is not None:
                seq, _ = self._queue(db, job_queue)
                where = "j.queue = ? AND j.parent IS NULL AND j.status = ? AND j.seq < ?"
                args: tuple[Any, ...] = (seq, status, after or 2**62)
                order = "DESC"
            else:
                seq, _, _ = self._job_row(db, array_job_id or "")
                where = "j.parent = ? AND j.status = ? AND j.seq > ?"
                args, order = (seq, status, after or 0), "ASC"
            rows = db.execute(
                "SELECT j.seq, j.id, j.name, j.created_at, j.status, j.status_reason,"
                " j.started_at, j.stopped_at, j.array_size, j.array_index, j.definition,"
                " j.cancelled, j.terminated, a.exit_code, a.reason, a.stopped_at"
                " FROM jobs j LEFT JOIN attempts a ON a.job = j.seq AND a.n = j.attempts"
                f" WHERE {where} ORDER BY j.seq {order} LIMIT ?",
                (*args, limit + 1),
            ).fetchall()
        items = [self._summary(row) for row in rows[:limit]]
        return Page(items, _token(rows[limit - 1][0]) if len(rows) > limit else None)

    def _summary(self, row: tuple[Any, ...]) -> JobSummary:
        _, job_id, name, created, status, reason, started, stopped, size, index = row[:10]
        definition, cancelled, terminated, exit_code, container_reason, attempt_stop = row[10:]
        has_array = size is not None or index is not None
        return JobSummary(
            job_arn=job_arn(self.region, self.account_id, job_id),
            job_id=job_id,
            job_name=name,
            created_at=created,
            status=status,
            status_reason=reason,
            started_at=started,
            stopped_at=stopped,
            container=(
                ContainerSummary(exit_code=exit_code, reason=container_reason)
                if attempt_stop is not None
                else None
            ),
            array_properties=ArrayPropertiesSummary(size=size, index=index) if has_array else None,
            job_definition=definition,
            is_cancelled=bool(cancelled),
            is_terminated=bool(terminated),
        )

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
        event_id = request_id or str(uuid.uuid4())
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
            if function is None:
                rows = db.execute(
                    f"SELECT {_EVENT_COLUMNS} FROM events WHERE state = 'DEAD'"
                    " ORDER BY seq LIMIT ?",
                    (limit,),
                ).fetchall()
            else:
                rows = db.execute(
                    f"SELECT {_EVENT_COLUMNS} FROM events WHERE state = 'DEAD' AND function = ?"
                    " ORDER BY seq LIMIT ?",
                    (function, limit),
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
            (function, _spec_encoder.encode(config)),
        )
        return config


@dataclass(frozen=True)
class _NewJob:
    id: str
    name: str
    queue: int
    definition: JobDefinition
    spec: JobSpec
    payload: bytes | None
    size: int | None


def _job_spec(definition: JobDefinition, req: SubmitJobRequest) -> JobSpec:
    """What a submit fixes: the definition's settings with the request's overrides."""
    parameters = rules.merged_parameters(definition.parameters, req.parameters)
    container = rules.resolve_container(
        definition.container_properties, req.container_overrides, parameters
    )
    function = definition.function
    if function is not None:
        container = msgspec.structs.replace(container, command=None)
    _, _, gpus = rules.container_resources(container)
    return JobSpec(
        parameters=parameters,
        retry_strategy=req.retry_strategy or definition.retry_strategy,
        timeout=req.timeout or definition.timeout,
        depends_on=list(req.depends_on or []),
        container=container,
        tags=req.tags,
        propagate_tags=(
            req.propagate_tags if req.propagate_tags is not None else definition.propagate_tags
        ),
        function=function,
        gpus=gpus,
    )


def _child_depends_on(spec: JobSpec, parent: str, index: int) -> list[JobDependency]:
    """What child ``index`` itself waits for: its predecessor (SEQUENTIAL) and child
    ``index`` of each N_TO_N array."""
    out = []
    for dep in spec.depends_on:
        if dep.job_id is None and index > 0:
            out.append(JobDependency(job_id=f"{parent}:{index - 1}", type=dep.type))
        elif dep.job_id is not None and dep.type == "N_TO_N":
            out.append(JobDependency(job_id=f"{dep.job_id}:{index}", type=dep.type))
    return out


def _log_stream(definition_arn: str, job_id: str, attempt: int) -> str:
    """``<definition name>/default/<job id>/<attempt>`` (log stream names may not hold ':')."""
    return f"{_definition_name(definition_arn)}/default/{job_id.replace(':', '-')}/{attempt}"


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


if TYPE_CHECKING:

    def _conforms(store: SqliteStore) -> Store:
        return store  # the type checker holds SqliteStore to the Store protocol
