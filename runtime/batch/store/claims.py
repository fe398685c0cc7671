"""The batch store's runner side: claims within free capacity, attempts started and finished
(judged by :mod:`runtime.batch.rules`), terminations, recovery of dead nodes (their heartbeats
are :class:`runtime.node.NodeTable`'s), kept logs and results, and the demand a compute
environment scales with."""

from __future__ import annotations

import sqlite3
from typing import Any

from .. import rules
from ..model import (
    ENABLED,
    RUNNABLE,
    RUNNING,
    STARTING,
    VALID,
    Claim,
    ClientException,
    Finish,
    JobSpec,
    KillOrder,
    Recovery,
)
from .jobs import JobsMixin
from .schema import (
    Demand,
    _log_stream,
    _ms,
    _queue_decoder,
    _select_in,
    _spec_decoder,
)


class ClaimsMixin(JobsMixin):
    """What a job runner calls."""

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
                " status_reason = NULL, updated_at = ? WHERE seq = ?",
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
            if result is not None:
                db.execute(
                    "INSERT OR REPLACE INTO results (job, n, data) VALUES (?, ?, ?)",
                    (seq, attempt, result),
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
        strategy, and the node is forgotten. Its async invocations, if it claimed any, are the
        event store's to give back (:meth:`runtime.asyncinvoke.store.SqliteEventStore.recover`)."""
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
            self._forget(db, node)
        return Recovery(requeued=requeued, failed=failed)

    def read_log(self, job_id: str, attempt: int | None = None) -> bytes:
        """The kept output of one attempt (default: the latest); empty when none was kept."""
        data = self._latest(job_id, attempt, "logs")
        return b"" if data is None else data

    def read_result(self, job_id: str, attempt: int | None = None) -> bytes | None:
        """What a function job's handler returned in one attempt (default: the latest that
        reported one): its JSON bytes, or Lambda's error document; None when none was kept."""
        return self._latest(job_id, attempt, "results")

    def _latest(self, job_id: str, attempt: int | None, table: str) -> bytes | None:
        """``table``'s data of one attempt of the job (None: of its latest attempt there)."""
        with self._read() as db:
            seq, _, _ = self._job_row(db, job_id)
            row = db.execute(
                f"SELECT data FROM {table} WHERE job = ? AND (? IS NULL OR n = ?)"
                " ORDER BY n DESC LIMIT 1",
                (seq, attempt, attempt),
            ).fetchone()
        return bytes(row[0]) if row else None

    def demand(self) -> Demand:
        """What RUNNABLE jobs of ENABLED queues ask for: a compute environment's desired
        capacity follows it."""
        with self._read() as db:
            count, vcpus, memory = db.execute(
                "SELECT COUNT(*), COALESCE(SUM(j.vcpus), 0), COALESCE(SUM(j.memory), 0)"
                " FROM jobs j JOIN queues q ON q.seq = j.queue"
                " WHERE j.status = 'RUNNABLE' AND q.state = ? AND q.status = ?",
                (ENABLED, VALID),
            ).fetchone()
        return Demand(jobs=count, vcpus=float(vcpus), memory_mib=int(memory))

    def mark_blocked(self, vcpus: float, memory_mib: int, gpus: int, reason: str) -> int:
        """Give RUNNABLE jobs that need more than ``vcpus`` / ``memory_mib`` / ``gpus`` (the
        most any compute environment has) ``reason`` as their statusReason: they stay
        RUNNABLE, as in AWS, and say why. A claim clears the reason. Returns how many."""
        with self._write() as db:
            return db.execute(
                "UPDATE jobs SET status_reason = ? WHERE status = 'RUNNABLE'"
                " AND (vcpus > ? OR memory > ? OR gpus > ?)"
                " AND (status_reason IS NULL OR status_reason != ?)",
                (reason, vcpus + 1e-9, memory_mib, gpus, reason),
            ).rowcount
