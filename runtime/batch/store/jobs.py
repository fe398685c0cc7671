"""The batch store's jobs: SubmitJob, what follows a job's end (dependents released or failed,
array parents counted) in the same transaction, CancelJob, TerminateJob and DeleteJobQueue."""

from __future__ import annotations

import sqlite3
import uuid
from collections.abc import Sequence
from dataclasses import dataclass

import msgspec

from .. import rules
from ..model import (
    DELETED,
    DISABLED,
    ENABLED,
    FAILED,
    FINAL_STATUSES,
    PENDING,
    RUNNABLE,
    SUBMITTED,
    ClientException,
    JobDefinition,
    JobDependency,
    JobSpec,
    KillOrder,
    SubmitJobRequest,
    SubmitJobResponse,
    check_submit,
    job_arn,
)
from .resources import ResourcesMixin
from .schema import (
    _FINAL_SQL,
    _ms,
    _Outcome,
    _select_in,
    _spec_encoder,
)


class JobsMixin(ResourcesMixin):
    """Submitting jobs and settling their ends."""

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
