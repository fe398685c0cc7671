"""The durable batch store: job definitions, job queues and jobs, in one SQLite file that the
async invocations (:mod:`runtime.asyncinvoke.store`) and the schedule rules share, each with
tables of its own.

``Store`` is the interface the service, the runner and the engine program against;
``SqliteStore`` is the embedded implementation; ``RedisStore`` (:mod:`.redis_store`, imported
on first use) is the one for several nodes sharing a Redis.
Both leave every AWS rule to :mod:`runtime.batch.rules`: a store only gathers facts, asks the
rules, and writes the outcome. Nothing here reads a clock: every call that changes state takes
``now`` (epoch seconds).

::

    service ── submit_job ──▶ PENDING (dependsOn) ──▶ RUNNABLE ◀─────────────────┐
                                                         │ claim(node, now)       │ retry
    runner ── claim, started, finished ─────────────▶ STARTING ─▶ RUNNING ─▶ rules.judge_attempt
           ── recover(node, now) after a crash                                    │
                                                              SUCCEEDED | FAILED ◀┘
                              (dependents and the array parent settle in the same transaction)

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
- The schema version is the ``batch`` row of ``warmstart_meta`` (see :mod:`runtime.sqlite`;
  ``PRAGMA user_version`` is kept in step for older readers); opening a file migrates it
  forward.
- The runners' heartbeats are the file's ``nodes`` table (:class:`runtime.node.NodeTable`),
  shared with the async-invocation dispatchers.

``SqliteStore`` is assembled from one mixin per part of the API, each a module here:

- :mod:`.schema`: the tables and their migrations, the connection, the shared lookups;
- :mod:`.resources`: job definitions and job queues;
- :mod:`.jobs`: SubmitJob, settling a job's end, CancelJob, TerminateJob, DeleteJobQueue;
- :mod:`.claims`: the runner's side (claims, attempts, kills, recovery, logs, demand);
- :mod:`.describe`: DescribeJobs and ListJobs.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, Protocol

from ..model import (
    Claim,
    CreateJobQueueRequest,
    Finish,
    JobDefinition,
    JobDetail,
    JobQueueDetail,
    JobSummary,
    KillOrder,
    Recovery,
    RegisterJobDefinitionRequest,
    SubmitJobRequest,
    SubmitJobResponse,
    UpdateJobQueueRequest,
)
from .claims import ClaimsMixin
from .describe import DescribeMixin
from .schema import DEFAULT_LOG_CAP, MIGRATIONS, SCHEMA_VERSION, Demand, Page

__all__ = [
    "DEFAULT_LOG_CAP",
    "MIGRATIONS",
    "SCHEMA_VERSION",
    "STORE_FILE",
    "Demand",
    "Page",
    "RedisStore",
    "SqliteStore",
    "Store",
    "default_data_dir",
    "default_store_path",
]

#: the store's file in a data directory; the event store and the schedule rules share it
STORE_FILE: Final = "batch.sqlite3"


def default_data_dir() -> Path:
    """``$WARMSTART_DATA_DIR``, else ``$XDG_DATA_HOME/warmstart``, else
    ``~/.local/share/warmstart``."""
    explicit = os.environ.get("WARMSTART_DATA_DIR")
    if explicit:
        return Path(explicit)
    xdg = os.environ.get("XDG_DATA_HOME")
    return (Path(xdg) if xdg else Path.home() / ".local" / "share") / "warmstart"


def default_store_path() -> Path:
    return default_data_dir() / STORE_FILE


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
        result: bytes | None = None,
    ) -> Finish: ...
    def kill_requests(self, node: str) -> list[KillOrder]: ...
    def recover(self, node: str, now: float) -> Recovery: ...
    def heartbeat(self, node: str, now: float) -> None: ...
    def stale_nodes(self, now: float, max_silence_s: float) -> list[str]: ...
    def read_log(self, job_id: str, attempt: int | None = None) -> bytes: ...
    def read_result(self, job_id: str, attempt: int | None = None) -> bytes | None: ...
    def demand(self) -> Demand: ...
    def mark_blocked(self, vcpus: float, memory_mib: int, gpus: int, reason: str) -> int: ...

    def close(self) -> None: ...


class SqliteStore(ClaimsMixin, DescribeMixin):
    """The batch store in one SQLite file (see the module docstring for its guarantees)."""

    def __enter__(self) -> SqliteStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def __getattr__(name: str) -> Any:
    """``RedisStore`` on first use: a node on SQLite never imports the Redis client."""
    if name == "RedisStore":
        from .redis_store import RedisStore

        return RedisStore
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


if TYPE_CHECKING:
    from .redis_store import RedisStore

    def _conforms(store: SqliteStore, shared: RedisStore) -> tuple[Store, Store]:
        # the type checker holds both stores to the Store protocol
        return store, shared
