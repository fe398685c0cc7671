"""Accepted means durable: a process SIGKILLed while it submits loses nothing it had accepted,
and a transaction cut short (a 500-child array) is all there or not at all."""

from __future__ import annotations

import os
import selectors
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
from batch_store_support import make_store
from helpers import ROOT

from runtime.asyncinvoke.store import SqliteEventStore
from runtime.batch import SqliteStore

# Prints each id once the call that accepted it has returned.
WRITER = r"""
import sys
from runtime.asyncinvoke.store import SqliteEventStore
from runtime.batch import SqliteStore, SubmitJobRequest, parse

store = SqliteStore(sys.argv[1])
events = SqliteEventStore(sys.argv[1])
single = parse(SubmitJobRequest, {"jobName": "j", "jobQueue": "q", "jobDefinition": "def"})
array = parse(SubmitJobRequest, {"jobName": "a", "jobQueue": "q", "jobDefinition": "def",
                                 "arrayProperties": {"size": 500}})
i = 0
while True:
    i += 1
    kind = i % 3
    if kind == 0:
        print("job", store.submit_job(single, float(i)).job_id, flush=True)
    elif kind == 1:
        print("event", events.put_event("f", b"{}", float(i)).id, flush=True)
    else:
        print("array", store.submit_job(array, float(i)).job_id, flush=True)
"""


def read_lines(proc: subprocess.Popen[bytes], count: int, timeout: float) -> bytes:
    """What the writer printed once it has printed ``count`` lines (hard bound: ``timeout``)."""
    assert proc.stdout is not None
    data = b""
    deadline = time.monotonic() + timeout
    with selectors.DefaultSelector() as sel:
        sel.register(proc.stdout, selectors.EVENT_READ)
        while data.count(b"\n") < count:
            left = deadline - time.monotonic()
            if left <= 0 or proc.poll() is not None:
                pytest.fail(f"writer printed {data!r}, exit code {proc.returncode}")
            if sel.select(left):
                data += os.read(proc.stdout.fileno(), 65536)
    return data


@pytest.mark.slow
def test_sigkill_loses_nothing_accepted(tmp_path: Path) -> None:
    path = tmp_path / "batch.sqlite3"
    make_store(path).close()
    proc = subprocess.Popen(
        [sys.executable, "-c", WRITER, str(path)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    try:
        printed = read_lines(proc, 300, timeout=30.0)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
    assert proc.stdout is not None
    printed += proc.stdout.read()
    proc.stdout.close()
    assert proc.returncode == -signal.SIGKILL
    # every complete line names something accepted before the kill
    complete = printed[: printed.rfind(b"\n") + 1]
    _check_reopened(path, [line.split() for line in complete.decode().splitlines()])


def _check_reopened(path: Path, accepted: list[list[str]]) -> None:
    store = SqliteStore(path)
    event_store = SqliteEventStore(path)
    try:
        jobs = [ident for kind, ident in accepted if kind in ("job", "array")]
        for i in range(0, len(jobs), 100):
            chunk = jobs[i : i + 100]
            assert {d.job_id for d in store.describe_jobs(chunk)} == set(chunk)
        events = {ident for kind, ident in accepted if kind == "event"}
        claimed = {e.id for e in event_store.claim_events("check", 10_000.0, 100_000).events}
        assert events <= claimed
    finally:
        event_store.close()
        store.close()
    db = sqlite3.connect(path)
    try:  # every array committed, printed or not, has all its children
        rows = db.execute(
            "SELECT p.array_size, COUNT(c.seq) FROM jobs p LEFT JOIN jobs c ON c.parent = p.seq"
            " WHERE p.array_size IS NOT NULL GROUP BY p.seq"
        ).fetchall()
    finally:
        db.close()
    assert len(rows) >= sum(1 for kind, _ in accepted if kind == "array")
    assert all(size == count for size, count in rows)
