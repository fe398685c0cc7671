"""The batch store's DescribeJobs and ListJobs."""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from typing import Any

import msgspec

from .. import rules
from ..model import (
    JOB_STATUSES,
    RUNNING,
    ArrayPropertiesDetail,
    ArrayPropertiesSummary,
    AttemptContainerDetail,
    AttemptDetail,
    ClientException,
    ContainerSummary,
    JobDependency,
    JobDetail,
    JobSpec,
    JobSummary,
    job_arn,
    job_queue_arn,
)
from .schema import (
    Page,
    SqliteBase,
    _after,
    _limit,
    _log_stream,
    _spec_decoder,
    _token,
)


class DescribeMixin(SqliteBase):
    """DescribeJobs and ListJobs."""

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
