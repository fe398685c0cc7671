"""The batch store's job definitions and job queues (the Register/Describe/Deregister
JobDefinition and Create/Update/DescribeJobQueues calls)."""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence

import msgspec

from ..model import (
    ACTIVE,
    INACTIVE,
    VALID,
    ClientException,
    CreateJobQueueRequest,
    JobDefinition,
    JobQueueDetail,
    RegisterJobDefinitionRequest,
    UpdateJobQueueRequest,
    check_queue,
    check_register,
    check_state,
    job_definition_arn,
    job_queue_arn,
)
from .schema import (
    Page,
    SqliteBase,
    _after,
    _definition_decoder,
    _definition_ref,
    _limit,
    _queue_name,
    _select_in,
    _spec_encoder,
    _token,
)


class ResourcesMixin(SqliteBase):
    """Job definitions and job queues."""

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
