"""The batch store in Redis, for several warmstart nodes sharing one server: the same API and
the same behaviour as :class:`~runtime.batch.store.SqliteStore`, rule for rule.

::

    any node ── submit_job, cancel, terminate, describe ──┐
                                                         ▼
    Redis  <prefix>:batch:...   job:<seq> rows, indexes (runnable per queue, listings, per node)
                                                         ▲
    every node's runner ── claim(node) ─▶ STARTING under node:<node>, heartbeat in nodes:seen
                        ── started, finished ─▶ rules.judge_attempt ─▶ RUNNABLE | final
    any node ── stale_nodes, recover(dead node) ─▶ its attempts count as failed, retried per
                                                   retryStrategy

Every call that changes state is one :meth:`~runtime.redisdb.RedisDb._transact`: it reads what
it needs (a job's row, the rows it touches), computes with the same rules as the SQLite store
in Python (:class:`_Work` keeps the rows it read and changed), and writes the changed rows with
their index entries in one ``MULTI``/``EXEC``. Every transaction of the component watches its
``version`` key, so they are serializable against each other, as ``BEGIN IMMEDIATE`` is: two
nodes racing a claim never both get a job; the loser runs again on the new state.

Keys (``<prefix>:batch:`` omitted; ``<seq>`` is the row number SQLite would give, so that paging
tokens mean the same in both stores):

- ``def:seq``, ``defs`` (seq → definition JSON), ``def:rev:<name>`` (revision → seq);
- ``queue:seq``, ``queues`` (seq → ``{status, detail}`` JSON), ``queue:names`` (name → seq of
  the queue not DELETED);
- ``job:seq`` (the last job seq), ``ids`` (job id → seq), ``job:<seq>`` (the row, msgpack; it
  also holds the seqs of the jobs waiting on it), ``spec:<seq>`` and ``payload:<seq>`` (a job's
  JobSpec and function event; array children have their parent's), ``attempt:<seq>``
  (n → attempt), ``log:<seq>`` and ``result:<seq>`` (n → bytes);
- indexes, rewritten with the rows: ``runnable:<queue>`` (RUNNABLE jobs by seq),
  ``list:<queue>:<status>`` (top-level jobs), ``kids:<parent>:<status>`` and
  ``kids:<parent>:updated`` (an array's children, and their updatedAt), ``node:<node>`` (the
  STARTING/RUNNING jobs a node holds: its lease).

Liveness is shared with the Redis event store: the sorted set :func:`runtime.redisdb.nodes_key`
(member = node id, score = seen_at). A job held by a node is never given to another while that
node heartbeats; :meth:`RedisStore.recover` of a stale node counts its attempts as failed
(:func:`rules.runner_died`) and retries them per their retryStrategy. Nothing expires by itself
and nothing is trimmed but a log, to its last ``log_cap_bytes``, as in SQLite.
"""

from __future__ import annotations

import functools
import uuid
from collections.abc import Callable, Iterable, Sequence
from typing import Any, Final

import msgspec
import redis

from ...redisdb import DEFAULT_PREFIX, RedisDb, Txn, nodes_key
from .. import rules
from ..model import (
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
from .claims import ClaimsMixin
from .describe import _child_depends_on
from .jobs import _job_spec, _NewJob
from .schema import (
    DEFAULT_LOG_CAP,
    Demand,
    Page,
    _after,
    _definition_decoder,
    _definition_ref,
    _limit,
    _log_stream,
    _ms,
    _queue_name,
    _spec_decoder,
    _spec_encoder,
    _token,
)

__all__ = ["RedisStore"]

#: keys per MGET / HMGET when many rows are read at once
_CHUNK: Final = 1000
_LIVE: Final = (STARTING, RUNNING)
_NOT_STARTED: Final = (SUBMITTED, PENDING, RUNNABLE)
#: (job seq, final status, statusReason or None to keep the current one)
_Outcome = tuple[int, str, "str | None"]


class _Row(msgspec.Struct, array_like=True):
    """One job: the columns of SQLite's ``jobs`` table, and ``dependents`` (its ``deps`` rows:
    the jobs that wait for this one)."""

    id: str
    name: str
    queue: int
    definition: str
    status: str
    status_reason: str | None
    created_at: int
    updated_at: int
    started_at: int | None
    stopped_at: int | None
    parent: int | None
    array_index: int | None
    array_size: int | None
    pending: int
    attempts: int
    max_attempts: int
    node: str | None
    kill_reason: str | None
    cancelled: bool
    terminated: bool
    done: int
    failed: int
    vcpus: float
    memory: int
    gpus: int
    dependents: list[int] = msgspec.field(default_factory=list)


class _Attempt(msgspec.Struct, array_like=True):
    node: str
    claimed_at: int
    started_at: int | None = None
    stopped_at: int | None = None
    exit_code: int | None = None
    reason: str | None = None
    status_reason: str | None = None


class _Queue(msgspec.Struct):
    """A queue's row: ``status`` is VALID or DELETED; ``detail`` holds its current state."""

    status: str
    detail: JobQueueDetail


_row_encoder = msgspec.msgpack.Encoder()
_row_decoder = msgspec.msgpack.Decoder(_Row)
_attempt_decoder = msgspec.msgpack.Decoder(_Attempt)
_queue_decoder = msgspec.json.Decoder(_Queue)


def _chunks(values: Sequence[Any]) -> Iterable[Sequence[Any]]:
    for i in range(0, len(values), _CHUNK):
        yield values[i : i + _CHUNK]


class _Work:
    """One transaction's view of the jobs: rows read through the watching connection (each
    once), changed in Python, and written back with their index entries by :meth:`commit`."""

    def __init__(self, store: RedisStore, pipe: Txn) -> None:
        self.store = store
        self.pipe = pipe
        self.rows: dict[int, _Row] = {}
        self._read: dict[int, bytes | None] = {}  # as read (None: new in this transaction)
        self.attempts: dict[tuple[int, int], _Attempt] = {}
        #: writes beyond the rows, queued once MULTI began
        self.later: list[Callable[[Txn], object]] = []

    def load(self, seqs: Iterable[int]) -> dict[int, _Row]:
        """The rows of ``seqs`` that exist."""
        wanted = list(dict.fromkeys(seqs))
        missing = [seq for seq in wanted if seq not in self.rows]
        for chunk in _chunks(missing):
            values = self.pipe.mget([self.store.key("job", str(seq)) for seq in chunk])
            for seq, value in zip(chunk, values, strict=True):
                if value is not None:
                    self._read[seq] = data = _blob(value)
                    self.rows[seq] = _row_decoder.decode(data)
        return {seq: self.rows[seq] for seq in wanted if seq in self.rows}

    def row(self, seq: int) -> _Row:
        return self.load([seq])[seq]

    def children(self, parent: int) -> list[tuple[int, _Row]]:
        """An array's children by index (child i is ``parent + 1 + i``)."""
        size = self.row(parent).array_size or 0
        rows = self.load(range(parent + 1, parent + 1 + size))
        return list(rows.items())

    def add(self, seq: int, row: _Row) -> None:
        self.rows[seq] = row
        self._read[seq] = None

    def attempt(self, seq: int, n: int) -> _Attempt | None:
        if (seq, n) not in self.attempts:
            value = self.pipe.hget(self.store.key("attempt", str(seq)), str(n))
            if value is None:
                return None
            self.attempts[seq, n] = _attempt_decoder.decode(_blob(value))
        return self.attempts[seq, n]

    def prefetch_attempts(self, pairs: Iterable[tuple[int, int]]) -> None:
        """Read the attempts ``(seq, n)`` in one round trip (a listing's last attempts)."""
        wanted = [pair for pair in dict.fromkeys(pairs) if pair not in self.attempts]
        if not wanted:
            return
        reads = self.store.redis.pipeline(transaction=False)
        for seq, n in wanted:
            reads.hget(self.store.key("attempt", str(seq)), str(n))
        for pair, value in zip(wanted, reads.execute(), strict=True):
            if value is not None:
                self.attempts[pair] = _attempt_decoder.decode(_blob(value))

    def commit(self) -> None:
        """Begin MULTI and queue every changed row, its index entries and the other writes."""
        pipe, key = self.pipe, self.store.key
        changed: dict[str, bytes] = {}
        index = _IndexChanges()
        for seq, row in self.rows.items():
            data = _row_encoder.encode(row)
            before = self._read[seq]
            if data == before:
                continue
            changed[key("job", str(seq))] = data
            old = None if before is None else _row_decoder.decode(before)
            index.move(key, seq, old, row)
        pipe.multi()
        for chunk in _chunks(list(changed)):
            pipe.mset({k: changed[k] for k in chunk})
        index.queue(pipe)
        for (seq, n), attempt in self.attempts.items():
            pipe.hset(key("attempt", str(seq)), str(n), _row_encoder.encode(attempt))
        for write in self.later:
            write(pipe)


class _IndexChanges:
    """The sorted-set entries the changed rows add and remove, grouped by key."""

    def __init__(self) -> None:
        self.add: dict[str, dict[str, float]] = {}
        self.remove: dict[str, list[str]] = {}

    def move(self, key: Callable[..., str], seq: int, old: _Row | None, new: _Row) -> None:
        before = _entries(key, seq, old) if old is not None else {}
        after = _entries(key, seq, new)
        member = str(seq)
        for k in before.keys() - after.keys():
            self.remove.setdefault(k, []).append(member)
        for k, score in after.items():
            if before.get(k) != score:
                self.add.setdefault(k, {})[member] = score

    def queue(self, pipe: Txn) -> None:
        for k, members in self.remove.items():
            for chunk in _chunks(members):
                pipe.zrem(k, *chunk)
        for k, mapping in self.add.items():
            items = list(mapping.items())
            for chunk in _chunks(items):
                pipe.zadd(k, dict(chunk))


def _entries(key: Callable[..., str], seq: int, row: _Row) -> dict[str, float]:
    """The index entries (key → score) of a row: what listings, claims and leases look up,
    all by seq but the children's updatedAt."""
    out: dict[str, float] = {}
    seq_score = float(seq)
    if row.parent is None:
        out[key("list", str(row.queue), row.status)] = seq_score
    else:
        out[key("kids", str(row.parent), row.status)] = seq_score
        out[key("kids", str(row.parent), "updated")] = float(row.updated_at)
    if row.status == RUNNABLE:
        out[key("runnable", str(row.queue))] = seq_score
    if row.status in _LIVE and row.node is not None:
        out[key("node", row.node)] = seq_score
    return out


class RedisStore(RedisDb):
    """The batch store in Redis at ``url`` (see the module docstring for its layout and
    guarantees); the keys are ``<prefix>:batch:...``."""

    kind = "batch store"
    component = "batch"

    def __init__(
        self,
        url: str,
        *,
        prefix: str = DEFAULT_PREFIX,
        region: str = "us-east-1",
        account_id: str = "000000000000",
        compute_environment: str = "warmstart",
        log_cap_bytes: int = DEFAULT_LOG_CAP,
        require_append_only: bool = True,
        client: redis.Redis | None = None,
    ) -> None:
        self.region = region
        self.account_id = account_id
        #: AWS_BATCH_CE_NAME of a queue that names no compute environment
        self.compute_environment = compute_environment
        self.log_cap_bytes = log_cap_bytes
        self._nodes = nodes_key(prefix)
        self._open(url, prefix=prefix, require_append_only=require_append_only, client=client)

    def __enter__(self) -> RedisStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- job definitions ----------------------------------------------------------------------

    def register_job_definition(
        self, request: RegisterJobDefinitionRequest, now: float
    ) -> JobDefinition:
        """RegisterJobDefinition: a new revision (1 + the highest of that name)."""
        req = check_register(request)
        name = req.job_definition_name

        def fn(pipe: Txn) -> JobDefinition:
            revisions = pipe.hkeys(self.key("def", "rev", name))
            revision = max((int(r) for r in revisions), default=0) + 1
            seq = int(pipe.get(self.key("def", "seq")) or 0) + 1
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
            pipe.multi()
            pipe.set(self.key("def", "seq"), seq)
            pipe.hset(self.key("defs"), str(seq), _spec_encoder.encode(definition))
            pipe.hset(self.key("def", "rev", name), str(revision), seq)
            return definition

        return self._transact(fn)

    def deregister_job_definition(self, job_definition: str) -> None:
        """DeregisterJobDefinition (``name:revision`` or ARN): the revision becomes INACTIVE;
        jobs already submitted with it still run."""
        name, revision = _definition_ref(job_definition)
        if revision is None:
            raise ClientException("jobDefinition must be name:revision or an ARN")

        def fn(pipe: Txn) -> None:
            seq = pipe.hget(self.key("def", "rev", name), str(revision))
            if seq is None:
                raise ClientException(f"Job definition {job_definition} does not exist")
            definition = self._definitions(pipe, [int(seq)])[0][1]
            inactive = msgspec.structs.replace(definition, status=INACTIVE)
            pipe.multi()
            pipe.hset(self.key("defs"), int(seq), _spec_encoder.encode(inactive))

        self._transact(fn)

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
            refs = list(job_definitions)
            return Page(self._read(lambda pipe: self._definitions_named(pipe, refs)))
        limit = _limit(max_results, 100, 100)
        after = _after(next_token) or 0

        def fn(pipe: Txn) -> list[tuple[int, JobDefinition]]:
            everything = pipe.hgetall(self.key("defs"))
            rows = sorted(
                (int(seq), _definition_decoder.decode(detail)) for seq, detail in everything.items()
            )
            return [
                (seq, d)
                for seq, d in rows
                if seq > after
                and (job_definition_name is None or d.job_definition_name == job_definition_name)
                and (status is None or d.status == status)
            ][: limit + 1]

        rows = self._read(fn)
        items = [d for _, d in rows[:limit]]
        return Page(items, _token(rows[limit - 1][0]) if len(rows) > limit else None)

    def _definitions_named(self, pipe: Txn, refs: list[str]) -> list[JobDefinition]:
        found: list[JobDefinition] = []
        for ref in refs:
            name, revision = _definition_ref(ref)
            revisions = pipe.hgetall(self.key("def", "rev", name))
            picked = sorted(
                (int(r), int(seq))
                for r, seq in revisions.items()
                if revision is None or int(r) == revision
            )
            found += [d for _, d in self._definitions(pipe, [seq for _, seq in picked])]
        return found

    def _definitions(self, pipe: Txn, seqs: list[int]) -> list[tuple[int, JobDefinition]]:
        if not seqs:
            return []
        values = pipe.hmget(self.key("defs"), [str(seq) for seq in seqs])
        return [
            (seq, _definition_decoder.decode(value))
            for seq, value in zip(seqs, values, strict=True)
            if value is not None
        ]

    def _definition(self, pipe: Txn, ref: str) -> JobDefinition:
        """The revision a submit means: by name the latest ACTIVE one, else the one named."""
        name, revision = _definition_ref(ref)
        revisions = pipe.hgetall(self.key("def", "rev", name))
        by_revision = sorted(((int(r), int(seq)) for r, seq in revisions.items()), reverse=True)
        found: JobDefinition | None = None
        if revision is None:
            rows = self._definitions(pipe, [seq for _, seq in by_revision])
            found = next((d for _, d in rows if d.status == ACTIVE), None)
        else:
            rows = self._definitions(pipe, [seq for r, seq in by_revision if r == revision])
            found = rows[0][1] if rows else None
        if found is None:
            raise ClientException(f"Job definition {ref} does not exist")
        if found.status != ACTIVE:
            raise ClientException(f"Job definition {ref} is INACTIVE")
        return found

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

        def fn(pipe: Txn) -> None:
            if pipe.hexists(self.key("queue", "names"), detail.job_queue_name):
                raise ClientException(f"Job queue {request.job_queue_name} already exists")
            seq = int(pipe.get(self.key("queue", "seq")) or 0) + 1
            pipe.multi()
            pipe.set(self.key("queue", "seq"), seq)
            self._put_queue(pipe, seq, _Queue(VALID, detail))
            pipe.hset(self.key("queue", "names"), detail.job_queue_name, seq)

        self._transact(fn)
        return detail

    def update_job_queue(self, request: UpdateJobQueueRequest, now: float) -> JobQueueDetail:
        """UpdateJobQueue: state, priority and compute environments. A DISABLED queue takes no
        new jobs and starts none of its RUNNABLE ones; its running jobs finish."""
        check_state(request.state)
        if request.priority is not None and request.priority < 0:
            raise ClientException(f"priority {request.priority} must be 0 or more")
        changes = {
            field: value
            for field in ("state", "priority", "compute_environment_order", "scheduling_policy_arn")
            if (value := getattr(request, field)) is not None
        }

        def fn(pipe: Txn) -> JobQueueDetail:
            seq, queue = self._queue(pipe, request.job_queue)
            detail = msgspec.structs.replace(queue.detail, **changes)
            pipe.multi()
            self._put_queue(pipe, seq, _Queue(queue.status, detail))
            return detail

        return self._transact(fn)

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

            def named(pipe: Txn) -> list[JobQueueDetail]:
                seqs = pipe.hmget(self.key("queue", "names"), names)
                wanted = sorted({int(seq) for seq in seqs if seq is not None})
                queues = self._queues(pipe)
                return [queues[seq].detail for seq in wanted if queues[seq].status != DELETED]

            return Page(self._read(named))
        limit = _limit(max_results, 100, 100)
        after = _after(next_token) or 0

        def fn(pipe: Txn) -> list[tuple[int, JobQueueDetail]]:
            queues = self._queues(pipe)
            return [
                (seq, q.detail)
                for seq, q in sorted(queues.items())
                if q.status != DELETED and seq > after
            ][: limit + 1]

        rows = self._read(fn)
        items = [detail for _, detail in rows[:limit]]
        return Page(items, _token(rows[limit - 1][0]) if len(rows) > limit else None)

    def _queues(self, pipe: Txn) -> dict[int, _Queue]:
        """Every queue, DELETED ones too (their jobs still name them)."""
        return {
            int(seq): _queue_decoder.decode(data)
            for seq, data in pipe.hgetall(self.key("queues")).items()
        }

    def _queue(self, pipe: Txn, ref: str) -> tuple[int, _Queue]:
        seq = pipe.hget(self.key("queue", "names"), _queue_name(ref))
        if seq is None:
            raise ClientException(f"Job queue {ref} does not exist")
        data = pipe.hget(self.key("queues"), seq)
        return int(seq), _queue_decoder.decode(_blob(data))

    def _put_queue(self, pipe: Txn, seq: int, queue: _Queue) -> None:
        pipe.hset(self.key("queues"), str(seq), msgspec.json.encode(queue))

    def delete_job_queue(self, job_queue: str, now: float) -> list[KillOrder]:
        """DeleteJobQueue: only a DISABLED queue; its unfinished jobs are terminated (the
        returned orders are the running ones the runners must stop)."""

        def fn(pipe: Txn) -> list[KillOrder]:
            seq, queue = self._queue(pipe, job_queue)
            if queue.detail.state != DISABLED:
                raise ClientException(
                    f"Job queue {queue.detail.job_queue_name} must be DISABLED before it is deleted"
                )
            work = _Work(self, pipe)
            # SQLite walks them by (status, seq), and so does this
            snapshot = []
            for state in sorted(s for s in JOB_STATUSES if s not in FINAL_STATUSES):
                seqs = _ints(pipe.zrange(self.key("list", str(seq), state), 0, -1))
                rows = work.load(seqs)
                snapshot += [(s, rows[s].status, rows[s].array_size) for s in seqs]
            orders: list[KillOrder] = []
            for row in snapshot:
                orders += self._terminate(work, row, "Job queue deleted", now)
            name = queue.detail.job_queue_name
            work.later.append(lambda p: self._put_queue(p, seq, _Queue(DELETED, queue.detail)))
            work.later.append(lambda p: p.hdel(self.key("queue", "names"), name))
            work.commit()
            return orders

        return self._transact(fn)

    # -- submit -------------------------------------------------------------------------------

    def submit_job(
        self, request: SubmitJobRequest, now: float, *, payload: bytes | None = None
    ) -> SubmitJobResponse:
        """SubmitJob. Dependencies are evaluated in the same transaction, so a job is PENDING
        or RUNNABLE (or FAILED, when a dependency already failed) when this returns: the
        SUBMITTED state is never seen. ``payload`` is the event of a function job."""
        req = check_submit(request)
        job_id = str(uuid.uuid4())

        def fn(pipe: Txn) -> None:
            queue_seq, queue = self._queue(pipe, req.job_queue)
            if queue.detail.state != ENABLED:
                raise ClientException(
                    f"Job queue {queue.detail.job_queue_name} is DISABLED and accepts no new jobs"
                )
            definition = self._definition(pipe, req.job_definition)
            spec = _job_spec(definition, req)
            event = payload
            if event is not None and spec.function is None:
                raise ClientException("a payload is only for function jobs")
            if spec.function is not None and event is None:
                event = rules.function_event(spec.parameters)
            work = _Work(self, pipe)
            targets = self._targets(work, req.depends_on or [])
            size = req.array_properties.size if req.array_properties else None
            plan = rules.plan_dependencies(
                req.depends_on or [],
                size,
                {k: rules.Target(v[1], v[2]) for k, v in targets.items()},
            )
            new = _NewJob(job_id, req.job_name, queue_seq, definition, spec, event, size)
            self._insert(work, new, plan, targets, _ms(now))
            work.commit()

        self._transact(fn)
        return SubmitJobResponse(
            job_name=req.job_name,
            job_id=job_id,
            job_arn=job_arn(self.region, self.account_id, job_id),
        )

    def _targets(
        self, work: _Work, depends_on: Sequence[Any]
    ) -> dict[str, tuple[int, str, int | None]]:
        """seq, status and array size of each job named in dependsOn."""
        ids = sorted({dep.job_id for dep in depends_on if dep.job_id is not None})
        seqs = self._seqs(work.pipe, ids)
        rows = work.load(seqs.values())
        return {
            job_id: (seq, rows[seq].status, rows[seq].array_size)
            for job_id, seq in seqs.items()
            if seq in rows
        }

    def _seqs(self, pipe: Txn, ids: Sequence[str]) -> dict[str, int]:
        out: dict[str, int] = {}
        for chunk in _chunks(list(ids)):
            values = pipe.hmget(self.key("ids"), list(chunk))
            out.update((i, int(v)) for i, v in zip(chunk, values, strict=True) if v is not None)
        return out

    def _insert(
        self,
        work: _Work,
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
        seq = int(work.pipe.get(self.key("job", "seq")) or 0) + 1
        row = _Row(
            id=job.id,
            name=job.name,
            queue=job.queue,
            definition=job.definition.job_definition_arn,
            status=status,
            status_reason=reason,
            created_at=ms,
            updated_at=ms,
            started_at=None,
            stopped_at=ms if status == FAILED else None,
            parent=None,
            array_index=None,
            array_size=job.size,
            pending=len(waiting),
            attempts=0,
            max_attempts=rules.attempts_allowed(job.spec.retry_strategy),
            node=None,
            kill_reason=None,
            cancelled=False,
            terminated=False,
            done=0,
            failed=0,
            vcpus=vcpus,
            memory=memory,
            gpus=gpus,
        )
        work.add(seq, row)
        if state != FAILED:
            for dep in waiting:
                _depend(work.row(dep), seq)
        spec, event, last = _spec_encoder.encode(job.spec), job.payload, seq + (job.size or 0)
        work.later.append(lambda p: p.set(self.key("job", "seq"), last))
        work.later.append(lambda p: p.hset(self.key("ids"), job.id, seq))
        work.later.append(lambda p: p.set(self.key("spec", str(seq)), spec))
        if event is not None:
            work.later.append(lambda p: p.set(self.key("payload", str(seq)), event))
        if job.size is not None:
            self._insert_children(work, seq, row, job, plan, targets, gate=state, ms=ms)

    def _insert_children(
        self,
        work: _Work,
        parent: int,
        parent_row: _Row,
        job: _NewJob,
        plan: rules.DependencyPlan,
        targets: dict[str, tuple[int, str, int | None]],
        *,
        gate: str,
        ms: int,
    ) -> None:
        """An array job's children: child i is ``<id>:<i>`` with seq ``parent + 1 + i``."""
        size = job.size
        assert size is not None
        peers = [work.children(targets[job_id][0]) for job_id in plan.n_to_n]
        doomed: list[_Outcome] = []
        ids: dict[str, int] = {}
        for i in range(size):
            seq = parent + 1 + i
            blockers, failed = rules.child_blockers(
                i,
                gate=gate == PENDING,
                sequential=plan.sequential,
                n_to_n=[peer[i][1].status for peer in peers],
            )
            if failed or gate == FAILED:
                doomed.append((seq, FAILED, rules.DEPENDENCY_FAILED))
            child = msgspec.structs.replace(
                parent_row,
                id=f"{job.id}:{i}",
                status=RUNNABLE if blockers == 0 and not failed else PENDING,
                status_reason=None,
                stopped_at=None,
                parent=parent,
                array_index=i,
                array_size=None,
                pending=blockers,
                dependents=[],
            )
            work.add(seq, child)
            ids[child.id] = seq
            if plan.sequential and i > 0:
                _depend(work.rows[seq - 1], seq)
            for peer_seq, peer in (peer[i] for peer in peers):
                if peer.status not in FINAL_STATUSES:
                    _depend(work.row(peer_seq), seq)
        for chunk in _chunks(list(ids.items())):
            work.later.append(functools.partial(self._put_ids, mapping=dict(chunk)))
        if gate == FAILED:
            parent_row.kill_reason = rules.DEPENDENCY_FAILED
        if doomed:
            self._settle(work, doomed, ms)

    def _put_ids(self, pipe: Txn, mapping: dict[str, int]) -> None:
        pipe.hset(self.key("ids"), mapping=mapping)  # type: ignore[arg-type]

    # -- settling: what follows a job's end, in the same transaction --------------------------

    def _settle(self, work: _Work, outcomes: Sequence[_Outcome], ms: int) -> None:
        """Make jobs final and carry out everything that follows: dependents released or failed
        (cascading), array parents counted and finished when their last child is."""
        items = list(outcomes)
        while items:
            rows = work.load(seq for seq, _, _ in items)
            live: dict[int, tuple[str, str | None]] = {
                seq: (status, reason)
                for seq, status, reason in reversed(items)
                if seq in rows and rows[seq].status not in FINAL_STATUSES
            }
            for seq, (status, reason) in live.items():
                row = rows[seq]
                row.status = status
                if reason is not None:
                    row.status_reason = reason
                row.stopped_at = row.updated_at = ms
            items = self._count_children(work, live)
            self._release(work, [seq for seq, (st, _) in live.items() if st != FAILED], ms)
            items += self._dependents_failing(
                work, [s for s, (st, _) in live.items() if st == FAILED]
            )

    @staticmethod
    def _count_children(work: _Work, live: dict[int, tuple[str, str | None]]) -> list[_Outcome]:
        """Add finished children to their parents' counts; parents now complete come back."""
        counts: dict[int, list[int]] = {}
        for seq, (status, _) in live.items():
            parent = work.rows[seq].parent
            if parent is not None:
                done_failed = counts.setdefault(parent, [0, 0])
                done_failed[0] += 1
                done_failed[1] += status == FAILED
        out: list[_Outcome] = []
        for seq, row in sorted(work.load(counts).items()):
            row.done += counts[seq][0]
            row.failed += counts[seq][1]
            assert row.array_size is not None
            final = rules.array_parent_status(row.array_size, row.done, row.failed)
            if final == FAILED:
                out.append((seq, final, row.kill_reason or rules.ARRAY_CHILD_FAILED))
            elif final is not None:
                out.append((seq, final, None))
        return out

    @staticmethod
    def _release(work: _Work, succeeded: list[int], ms: int) -> None:
        """Each dependent of a job that succeeded waits for one dependency less; those waiting
        for none become RUNNABLE (an array parent opens the gate of its children)."""
        dependents = [d for seq in succeeded for d in work.rows[seq].dependents]
        if not dependents:
            return
        rows = work.load(dependents)
        for seq in dependents:
            if rows[seq].status == PENDING:
                rows[seq].pending -= 1
        for seq in sorted(set(dependents)):
            row = rows[seq]
            if row.status != PENDING or row.pending != 0:
                continue
            if row.array_size is None:
                row.status, row.updated_at = RUNNABLE, ms
                continue
            for _, child in work.children(seq):  # the gate opens
                if child.status == PENDING:
                    child.pending -= 1
                    if child.pending == 0:
                        child.status, child.updated_at = RUNNABLE, ms

    @staticmethod
    def _dependents_failing(work: _Work, failed: list[int]) -> list[_Outcome]:
        """Jobs waiting on a failed job fail with it ("Dependent Job failed"); an array parent
        fails through its children, which all still wait for it."""
        dependents = [d for seq in failed for d in work.rows[seq].dependents]
        rows = work.load(dependents)
        out: list[_Outcome] = []
        for seq in dependents:
            row = rows[seq]
            if row.status != PENDING:
                continue
            if row.array_size is None:
                out.append((seq, FAILED, rules.DEPENDENCY_FAILED))
                continue
            if row.kill_reason is None:
                row.kill_reason = rules.DEPENDENCY_FAILED
            out += [
                (child, FAILED, rules.DEPENDENCY_FAILED)
                for child, kid in work.children(seq)
                if kid.status not in FINAL_STATUSES
            ]
        return out

    # -- cancel and terminate -----------------------------------------------------------------

    def cancel_job(self, job_id: str, reason: str, now: float) -> None:
        """CancelJob: a SUBMITTED, PENDING or RUNNABLE job fails with ``reason``; a STARTING or
        RUNNING one is left alone (use terminate_job). For an array parent, every child not yet
        started is cancelled, and the parent fails with ``reason`` once all children end."""
        ms = _ms(now)

        def fn(pipe: Txn) -> None:
            work = _Work(self, pipe)
            seq, row = self._job(work, job_id)
            if row.array_size is not None and row.status not in FINAL_STATUSES:
                row.cancelled = True
                if row.kill_reason is None:
                    row.kill_reason = reason
                targets = [s for s, kid in work.children(seq) if kid.status in _NOT_STARTED]
            elif rules.cancel_effect(row.status) == rules.FAIL:
                targets = [seq]
            else:
                targets = []
            for target in targets:
                work.rows[target].cancelled = True
            self._settle(work, [(t, FAILED, reason) for t in targets], ms)
            work.commit()

        self._transact(fn)

    def terminate_job(self, job_id: str, reason: str, now: float) -> list[KillOrder]:
        """TerminateJob: a job not yet started fails with ``reason`` at once; a STARTING or
        RUNNING one is marked, and the returned orders tell its runner to stop it (it then
        fails with ``reason``, without retry). An array parent terminates all its children."""

        def fn(pipe: Txn) -> list[KillOrder]:
            work = _Work(self, pipe)
            seq, row = self._job(work, job_id)
            orders = self._terminate(work, (seq, row.status, row.array_size), reason, now)
            work.commit()
            return orders

        return self._transact(fn)

    def _terminate(
        self, work: _Work, job: tuple[int, str, int | None], reason: str, now: float
    ) -> list[KillOrder]:
        seq, status, size = job
        if status in FINAL_STATUSES:
            return []
        if size is not None:
            row = work.row(seq)
            row.terminated = True
            if row.kill_reason is None:
                row.kill_reason = reason
            # SQLite's index gives them by (status, seq)
            targets = sorted(
                (
                    (kid.status, s)
                    for s, kid in work.children(seq)
                    if kid.status not in FINAL_STATUSES
                )
            )
        else:
            targets = [(status, seq)]
        kill = sorted(t for s, t in targets if rules.terminate_effect(s) == rules.KILL)
        fail = [t for s, t in targets if rules.terminate_effect(s) == rules.FAIL]
        for target in kill:
            kid = work.rows[target]
            kid.terminated = True
            if kid.kill_reason is None:
                kid.kill_reason = reason
        for target in fail:
            work.row(target).terminated = True
        self._settle(work, [(t, FAILED, reason) for t in fail], _ms(now))
        return [_kill_order(work.rows[t]) for t in kill]

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
        (None: no limit). DISABLED queues start nothing. The claim is also ``node``'s
        heartbeat; the jobs are held under its lease until they end or it is recovered."""
        if limit < 1:
            return []
        ms = _ms(now)

        def fn(pipe: Txn) -> list[Claim]:
            work = _Work(self, pipe)
            queues = self._queues(pipe)
            picked = self._pick(work, queues, limit, vcpus, memory_mib, gpus)
            for seq in picked:
                row = work.rows[seq]
                row.status, row.node, row.status_reason, row.updated_at = STARTING, node, None, ms
                row.attempts += 1
                work.attempts[seq, row.attempts] = _Attempt(node=node, claimed_at=ms)
            claims = self._claims(work, queues, picked, node)
            work.later.append(lambda p: p.zadd(self._nodes, {node: now}))
            work.commit()
            return claims

        return self._transact(fn)

    def _pick(
        self,
        work: _Work,
        queues: dict[int, _Queue],
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
        for tier in _tiers(queues):
            candidates = sorted(
                seq
                for queue in tier
                for seq in _ints(work.pipe.zrange(self.key("runnable", str(queue)), 0, window - 1))
            )
            rows = work.load(candidates)
            for seq in candidates:
                row = rows[seq]
                if row.vcpus <= free[0] and row.memory <= free[1] and row.gpus <= free[2]:
                    free[0] -= row.vcpus
                    free[1] -= row.memory
                    free[2] -= row.gpus
                    picked.append(seq)
                    if len(picked) == limit:
                        return picked
        return picked

    def _claims(
        self, work: _Work, queues: dict[int, _Queue], picked: list[int], node: str
    ) -> list[Claim]:
        roots = sorted({work.rows[seq].parent or seq for seq in picked})
        specs, payloads = self._specs(work.pipe, roots), self._payloads(work.pipe, roots)
        out = []
        for seq in picked:
            row = work.rows[seq]
            root = row.parent or seq
            detail = queues[row.queue].detail
            claim_row = (
                seq,
                row.id,
                row.name,
                row.definition,
                row.array_index,
                row.attempts,
                row.vcpus,
                row.memory,
                row.gpus,
                root,
                None,
                payloads.get(root),
                detail.job_queue_name,
            )
            ce = self._compute_environment(detail)
            out.append(ClaimsMixin._claim(claim_row, specs[root], node, ce))
        return out

    def _compute_environment(self, detail: JobQueueDetail) -> str:
        order = detail.compute_environment_order
        if not order:
            return self.compute_environment
        first = min(order, key=lambda ce: ce.order).compute_environment
        return first.rpartition("/")[2]

    def _specs(self, pipe: Txn, roots: Sequence[int]) -> dict[int, JobSpec]:
        out: dict[int, JobSpec] = {}
        for chunk in _chunks(list(roots)):
            values = pipe.mget([self.key("spec", str(seq)) for seq in chunk])
            out.update(
                (seq, _spec_decoder.decode(v)) for seq, v in zip(chunk, values, strict=True) if v
            )
        return out

    def _payloads(self, pipe: Txn, roots: Sequence[int]) -> dict[int, bytes]:
        out: dict[int, bytes] = {}
        for chunk in _chunks(list(roots)):
            values = pipe.mget([self.key("payload", str(seq)) for seq in chunk])
            out.update(
                (seq, _blob(v)) for seq, v in zip(chunk, values, strict=True) if v is not None
            )
        return out

    def _spec(self, pipe: Txn, seq: int, row: _Row) -> JobSpec:
        root = row.parent or seq
        return self._specs(pipe, [root])[root]

    def started(self, job_id: str, now: float, attempt: int | None = None) -> KillOrder | None:
        """STARTING → RUNNING. Returns a kill order when the job was terminated meanwhile."""
        ms = _ms(now)

        def fn(pipe: Txn) -> _Row:
            work = _Work(self, pipe)
            seq, row = self._job(work, job_id)
            current = row.attempts
            if row.status != STARTING or (attempt is not None and attempt != current):
                raise ClientException(
                    f"Job {job_id} attempt {attempt or current} is not STARTING (it is "
                    f"{row.status}, attempt {current})"
                )
            row.status, row.started_at, row.updated_at = RUNNING, ms, ms
            record = work.attempt(seq, current)
            if record is not None:
                record.started_at = ms
            if row.parent is not None:
                parent = work.row(row.parent)
                if parent.started_at is None:
                    parent.started_at = ms
            work.commit()
            return row

        row = self._transact(fn)
        if row.kill_reason is None:
            return None
        return _kill_order(row)

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
    ) -> Finish:
        """An attempt ended: ``exit_code`` (None when the container never ran or vanished),
        the container ``reason``, the attempt's ``status_reason`` (None: AWS's default),
        ``timed_out`` when the runner killed it at attemptDurationSeconds. The retry rules
        decide what follows: RUNNABLE for another attempt, or a final status with dependents
        and the array parent settled in the same transaction. ``log`` is kept (its last
        ``log_cap_bytes``), and ``result`` (a function job's response, whole) when given. A
        report for an attempt that is no longer current is ignored."""
        ms = _ms(now)
        kept = log[-self.log_cap_bytes :]

        def fn(pipe: Txn) -> Finish:
            work = _Work(self, pipe)
            seq, row = self._job(work, job_id)
            if row.status not in _LIVE or attempt != row.attempts:
                return Finish(job_id=job_id, status=row.status, applied=False)
            verdict = rules.judge_attempt(
                self._spec(pipe, seq, row).retry_strategy,
                attempt,
                exit_code,
                reason,
                status_reason,
                timed_out=timed_out,
                kill_reason=row.kill_reason,
            )
            _close_attempt(work, seq, attempt, ms, exit_code, reason, verdict.attempt_reason)
            if log:
                work.later.append(lambda p: p.hset(self.key("log", str(seq)), str(attempt), kept))
            if result is not None:
                key = self.key("result", str(seq))
                work.later.append(lambda p: p.hset(key, str(attempt), result))
            self._after_attempt(work, seq, verdict, ms)
            work.commit()
            return Finish(job_id=job_id, status=verdict.status, applied=True)

        return self._transact(fn)

    def _after_attempt(self, work: _Work, seq: int, verdict: rules.Verdict, ms: int) -> None:
        if verdict.status == RUNNABLE:
            row = work.rows[seq]
            row.status, row.node, row.updated_at = RUNNABLE, None, ms
        else:
            self._settle(work, [(seq, verdict.status, verdict.status_reason)], ms)

    def kill_requests(self, node: str) -> list[KillOrder]:
        """Terminations waiting for ``node`` (TerminateJob may come from another node)."""

        def fn(pipe: Txn) -> list[KillOrder]:
            rows = self._held(_Work(self, pipe), node)
            return [_kill_order(row) for _, row in rows if row.kill_reason is not None]

        return self._read(fn)

    def _held(self, work: _Work, node: str) -> list[tuple[int, _Row]]:
        """The STARTING and RUNNING jobs ``node`` holds, by seq."""
        seqs = _ints(work.pipe.zrange(self.key("node", node), 0, -1))
        rows = work.load(seqs)
        return [
            (seq, rows[seq])
            for seq in sorted(rows)
            if rows[seq].status in _LIVE and rows[seq].node == node
        ]

    def recover(self, node: str, now: float) -> Recovery:
        """After ``node``'s runner died (call it when that runner restarts, or for a node found
        by :meth:`stale_nodes`): each of its STARTING/RUNNING attempts counts as failed with
        :func:`rules.runner_died`'s reason and the job is retried or fails per its retry
        strategy, and the node is forgotten (its heartbeat removed from the shared set)."""
        ms = _ms(now)
        reason = rules.runner_died(node)

        def fn(pipe: Txn) -> Recovery:
            work = _Work(self, pipe)
            requeued: list[str] = []
            failed: list[str] = []
            for seq, row in self._held(work, node):
                verdict = rules.judge_attempt(
                    self._spec(pipe, seq, row).retry_strategy,
                    row.attempts,
                    None,
                    None,
                    reason,
                    kill_reason=row.kill_reason,
                )
                _close_attempt(work, seq, row.attempts, ms, None, None, verdict.attempt_reason)
                self._after_attempt(work, seq, verdict, ms)
                (requeued if verdict.status == RUNNABLE else failed).append(row.id)
            work.later.append(lambda p: p.zrem(self._nodes, node))
            work.commit()
            return Recovery(requeued=requeued, failed=failed)

        return self._transact(fn)

    def heartbeat(self, node: str, now: float) -> None:
        """Record that ``node`` is alive (its claims do this too): one ZADD, atomic."""
        self._guard(lambda: self.redis.zadd(self._nodes, {node: now}))

    def stale_nodes(self, now: float, max_silence_s: float) -> list[str]:
        """Nodes not heard from for ``max_silence_s``: candidates for recovery."""
        found = self._guard(
            lambda: self.redis.zrangebyscore(self._nodes, "-inf", f"({now - max_silence_s!r}")
        )
        return sorted(_blob(node).decode() for node in found)

    def read_log(self, job_id: str, attempt: int | None = None) -> bytes:
        """The kept output of one attempt (default: the latest); empty when none was kept."""
        data = self._latest(job_id, attempt, "log")
        return b"" if data is None else data

    def read_result(self, job_id: str, attempt: int | None = None) -> bytes | None:
        """What a function job's handler returned in one attempt (default: the latest that
        reported one): its JSON bytes, or Lambda's error document; None when none was kept."""
        return self._latest(job_id, attempt, "result")

    def _latest(self, job_id: str, attempt: int | None, kind: str) -> bytes | None:
        def fn(pipe: Txn) -> bytes | None:
            seq, _ = self._job(_Work(self, pipe), job_id)
            key = self.key(kind, str(seq))
            n = attempt
            if n is None:
                n = max((int(k) for k in pipe.hkeys(key)), default=None)
                if n is None:
                    return None
            value = pipe.hget(key, str(n))
            return None if value is None else _blob(value)

        return self._read(fn)

    def demand(self) -> Demand:
        """What RUNNABLE jobs of ENABLED queues ask for: a compute environment's desired
        capacity follows it."""

        def fn(pipe: Txn) -> Demand:
            work = _Work(self, pipe)
            enabled = [
                seq
                for seq, q in sorted(self._queues(pipe).items())
                if q.detail.state == ENABLED and q.status == VALID
            ]
            rows = self._runnable(work, enabled)
            return Demand(
                jobs=len(rows),
                vcpus=float(sum(row.vcpus for row in rows)),
                memory_mib=int(sum(row.memory for row in rows)),
            )

        return self._read(fn)

    def _runnable(self, work: _Work, queues: Iterable[int]) -> list[_Row]:
        seqs = [
            seq
            for queue in queues
            for seq in _ints(work.pipe.zrange(self.key("runnable", str(queue)), 0, -1))
        ]
        return [row for row in work.load(seqs).values() if row.status == RUNNABLE]

    def mark_blocked(self, vcpus: float, memory_mib: int, gpus: int, reason: str) -> int:
        """Give RUNNABLE jobs that need more than ``vcpus`` / ``memory_mib`` / ``gpus`` (the
        most any compute environment has) ``reason`` as their statusReason: they stay
        RUNNABLE, as in AWS, and say why. A claim clears the reason. Returns how many."""

        def fn(pipe: Txn) -> int:
            work = _Work(self, pipe)
            count = 0
            for row in self._runnable(work, self._queues(pipe)):
                too_big = row.vcpus > vcpus + 1e-9 or row.memory > memory_mib or row.gpus > gpus
                if too_big and row.status_reason != reason:
                    row.status_reason = reason
                    count += 1
            work.commit()
            return count

        return self._transact(fn)

    # -- describing jobs ----------------------------------------------------------------------

    def describe_jobs(self, job_ids: Sequence[str]) -> list[JobDetail]:
        """DescribeJobs: up to 100 ids; unknown ids are left out, as AWS does."""
        if len(job_ids) > 100:
            raise ClientException("jobs can name up to 100 job ids")
        ids = list(job_ids)

        def fn(pipe: Txn) -> list[JobDetail]:
            work = _Work(self, pipe)
            seqs = self._seqs(pipe, ids)
            if not seqs:
                return []
            # a few round trips for all of them: rows, parents, specs, attempts
            rows = work.load(seqs.values())
            work.load(row.parent for row in rows.values() if row.parent is not None)
            specs = self._specs(pipe, sorted({row.parent or seq for seq, row in rows.items()}))
            reads = self.redis.pipeline(transaction=False)
            for seq in rows:
                reads.hgetall(self.key("attempt", str(seq)))
            attempts = dict(zip(rows, reads.execute(), strict=True))
            queues = self._queues(pipe)
            return [
                self._detail(work, queues, specs, attempts[seqs[job_id]], seqs[job_id], job_id)
                for job_id in ids
                if job_id in seqs
            ]

        return self._read(fn)

    def _detail(
        self,
        work: _Work,
        queues: dict[int, _Queue],
        specs: dict[int, JobSpec],
        stored: dict[bytes, bytes],
        seq: int,
        job_id: str,
    ) -> JobDetail:
        row = work.row(seq)
        spec = specs[row.parent or seq]
        attempts = _attempts(stored, row.definition, job_id)
        container = spec.container
        if container is not None and attempts and attempts[-1].container is not None:
            last = attempts[-1].container
            container = msgspec.structs.replace(
                container,
                exit_code=last.exit_code,
                reason=last.reason,
                log_stream_name=last.log_stream_name,
            )
        parent = None if row.parent is None else work.row(row.parent).id
        depends_on = spec.depends_on
        if parent is not None and row.array_index is not None:
            depends_on = _child_depends_on(spec, parent, row.array_index)
        return JobDetail(
            job_arn=job_arn(self.region, self.account_id, job_id),
            job_name=row.name,
            job_id=job_id,
            job_queue=job_queue_arn(
                self.region, self.account_id, queues[row.queue].detail.job_queue_name
            ),
            status=row.status,
            job_definition=row.definition,
            attempts=attempts,
            status_reason=row.status_reason,
            created_at=row.created_at,
            retry_strategy=spec.retry_strategy,
            started_at=row.started_at,
            stopped_at=row.stopped_at,
            depends_on=depends_on,
            parameters=spec.parameters,
            container=container,
            array_properties=self._array_detail(work.pipe, seq, row),
            timeout=spec.timeout,
            tags=spec.tags,
            propagate_tags=spec.propagate_tags,
            is_cancelled=row.cancelled,
            is_terminated=row.terminated,
        )

    def _array_detail(self, pipe: Txn, seq: int, row: _Row) -> ArrayPropertiesDetail | None:
        if row.array_index is not None:
            return ArrayPropertiesDetail(index=row.array_index)
        if row.array_size is None:
            return None
        reads = self.redis.pipeline(transaction=False)
        for status in JOB_STATUSES:
            reads.zcard(self.key("kids", str(seq), status))
        reads.zrevrange(self.key("kids", str(seq), "updated"), 0, 0, withscores=True)
        *cards, last = reads.execute()
        counts = {status: int(n) for status, n in zip(JOB_STATUSES, cards, strict=True) if n}
        return ArrayPropertiesDetail(
            status_summary=rules.status_summary(counts),
            status_summary_last_updated_at=int(last[0][1]) if last else None,
            size=row.array_size,
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

        def fn(pipe: Txn) -> list[tuple[int, JobSummary]]:
            work = _Work(self, pipe)
            if job_queue is not None:
                queue, _ = self._queue(pipe, job_queue)
                key = self.key("list", str(queue), status)
                found = pipe.zrevrangebyscore(
                    key, f"({after or 2**62}", "-inf", start=0, num=limit + 1
                )
            else:
                parent, _ = self._job(work, array_job_id or "")
                key = self.key("kids", str(parent), status)
                found = pipe.zrangebyscore(key, f"({after or 0}", "+inf", start=0, num=limit + 1)
            seqs = _ints(found)
            rows = work.load(seqs)
            work.prefetch_attempts((seq, row.attempts) for seq, row in rows.items() if row.attempts)
            return [(seq, self._summary(work, seq, rows[seq])) for seq in seqs]

        rows = self._read(fn)
        items = [summary for _, summary in rows[:limit]]
        return Page(items, _token(rows[limit - 1][0]) if len(rows) > limit else None)

    def _summary(self, work: _Work, seq: int, row: _Row) -> JobSummary:
        last = work.attempt(seq, row.attempts) if row.attempts else None
        has_array = row.array_size is not None or row.array_index is not None
        return JobSummary(
            job_arn=job_arn(self.region, self.account_id, row.id),
            job_id=row.id,
            job_name=row.name,
            created_at=row.created_at,
            status=row.status,
            status_reason=row.status_reason,
            started_at=row.started_at,
            stopped_at=row.stopped_at,
            container=(
                ContainerSummary(exit_code=last.exit_code, reason=last.reason)
                if last is not None and last.stopped_at is not None
                else None
            ),
            array_properties=(
                ArrayPropertiesSummary(size=row.array_size, index=row.array_index)
                if has_array
                else None
            ),
            job_definition=row.definition,
            is_cancelled=row.cancelled,
            is_terminated=row.terminated,
        )

    # -- lookups ------------------------------------------------------------------------------

    def _job(self, work: _Work, job_id: str) -> tuple[int, _Row]:
        seq = work.pipe.hget(self.key("ids"), job_id)
        rows = work.load([int(seq)]) if seq is not None else {}
        if not rows:
            raise ClientException(f"Job {job_id} does not exist")
        ((found, row),) = rows.items()
        return found, row


def _blob(value: Any) -> bytes:
    """A value as the client answers it (bytes: it never decodes)."""
    assert isinstance(value, bytes)
    return value


def _ints(values: Iterable[Any]) -> list[int]:
    return [int(v) for v in values]


def _attempts(stored: dict[bytes, bytes], definition: str, job_id: str) -> list[AttemptDetail]:
    """The ended attempts of a job (``stored``: its attempt hash), in order."""
    records = sorted((int(n), _attempt_decoder.decode(_blob(v))) for n, v in stored.items())
    return [
        AttemptDetail(
            container=AttemptContainerDetail(
                exit_code=a.exit_code,
                reason=a.reason,
                log_stream_name=_log_stream(definition, job_id, n),
            ),
            started_at=a.started_at,
            stopped_at=a.stopped_at,
            status_reason=a.status_reason,
        )
        for n, a in records
        if a.stopped_at is not None
    ]


def _tiers(queues: dict[int, _Queue]) -> list[list[int]]:
    """ENABLED queues grouped by priority, highest first."""
    tiers: dict[int, list[int]] = {}
    for seq, queue in sorted(queues.items(), key=lambda q: (-q[1].detail.priority, q[0])):
        if queue.detail.state == ENABLED and queue.status == VALID:
            tiers.setdefault(queue.detail.priority, []).append(seq)
    return list(tiers.values())


def _depend(row: _Row, dependent: int) -> None:
    """``dependent`` waits for ``row`` (once: the deps table's primary key)."""
    if dependent not in row.dependents:
        row.dependents.append(dependent)


def _close_attempt(
    work: _Work,
    seq: int,
    attempt: int,
    ms: int,
    exit_code: int | None,
    reason: str | None,
    status_reason: str,
) -> None:
    record = work.attempt(seq, attempt)
    if record is None:
        return
    record.stopped_at, record.exit_code, record.reason = ms, exit_code, reason
    record.status_reason = status_reason


def _kill_order(row: _Row) -> KillOrder:
    assert row.node is not None
    assert row.kill_reason is not None
    return KillOrder(job_id=row.id, node=row.node, attempt=row.attempts, reason=row.kill_reason)
