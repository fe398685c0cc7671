"""Long jobs: AWS Batch's job model, kept in a durable store (DESIGN.md section 5).

- :mod:`.model`: the Batch API's shapes and their validation (:class:`ClientException`);
- :mod:`.rules`: Batch's rules as pure functions (retries, array parents, dependencies);
- :mod:`.store`: the :class:`Store` interface and :class:`SqliteStore` (on the SQLite file the
  async invocations' :class:`~runtime.asyncinvoke.store.SqliteEventStore` shares);
- :mod:`.capacity`, :mod:`.executors`, :mod:`.runner`: the :class:`JobRunner` that runs jobs on
  a compute environment of its own (function jobs in worker processes, container jobs);
- :mod:`.queue`: :class:`BatchQueue`, the engine's backlog and the library's entry point.
"""

from .model import (
    Claim,
    ClientException,
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
    parse,
)
from .queue import BatchQueue, JobHandle
from .runner import JobRunner
from .store import Demand, Page, SqliteStore, Store, default_data_dir, default_store_path

__all__ = [
    "BatchQueue",
    "Claim",
    "ClientException",
    "CreateJobQueueRequest",
    "Demand",
    "Finish",
    "JobDefinition",
    "JobDetail",
    "JobHandle",
    "JobQueueDetail",
    "JobRunner",
    "JobSummary",
    "KillOrder",
    "Page",
    "Recovery",
    "RegisterJobDefinitionRequest",
    "SqliteStore",
    "Store",
    "SubmitJobRequest",
    "SubmitJobResponse",
    "UpdateJobQueueRequest",
    "default_data_dir",
    "default_store_path",
    "parse",
]
