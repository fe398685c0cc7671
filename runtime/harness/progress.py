"""The live display while a benchmark runs (rich, on stderr), and its silent stand-in.

The display reads the run's ``Recorder`` from an asyncio task a few times a second and
refreshes itself from that task (no refresh thread), so it never touches the request path.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any, Protocol

from .load import LoadShape
from .results import Recorder

if TYPE_CHECKING:
    from rich.console import Console


class Progress(Protocol):
    def track(
        self, label: str, recorder: Recorder, shape: LoadShape
    ) -> contextlib.AbstractAsyncContextManager[None]: ...


class NoProgress:
    """No display (``--quiet``, or stderr is not a terminal)."""

    @contextlib.asynccontextmanager
    async def track(self, label: str, recorder: Recorder, shape: LoadShape) -> AsyncIterator[None]:
        yield


def status_line(recorder: Recorder, now: float) -> str:
    """Requests done, rate, p50 so far, errors and throttles."""
    n = recorder.count
    elapsed = now - recorder.start if recorder.start else 0.0
    rate = n / elapsed if elapsed > 0 else 0.0
    p50 = recorder.latency.percentile(50) / 1000
    errors = sum(recorder.errors.values())
    throttles = sum(recorder.throttles.values())
    return f"{n:,} done  {rate:,.0f}/s  p50 {p50:.3f} ms  errors {errors}  throttles {throttles}"


class LiveProgress:
    """One progress line per run (warmstart, then each baseline), drawn on ``console``."""

    def __init__(self, console: Console | None = None, interval: float = 0.2) -> None:
        from rich.console import Console
        from rich.progress import BarColumn, TextColumn, TimeElapsedColumn
        from rich.progress import Progress as RichProgress

        self.interval = interval
        self._progress = RichProgress(
            TextColumn("{task.description:>10}"),
            BarColumn(),
            TextColumn("{task.fields[status]}"),
            TimeElapsedColumn(),
            console=console or Console(stderr=True),
            auto_refresh=False,
            redirect_stdout=False,
            redirect_stderr=False,
        )

    def __enter__(self) -> LiveProgress:
        self._progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._progress.stop()

    @contextlib.asynccontextmanager
    async def track(self, label: str, recorder: Recorder, shape: LoadShape) -> AsyncIterator[None]:
        total = shape.requests if shape.requests is not None else shape.duration_s
        task = self._progress.add_task(label, total=total, status="starting")
        refresher = asyncio.ensure_future(self._refresh(task, recorder, shape))
        try:
            yield
        finally:
            refresher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await refresher
            self._update(task, recorder, shape, time.perf_counter(), done=True)

    async def _refresh(self, task: Any, recorder: Recorder, shape: LoadShape) -> None:
        while True:
            self._update(task, recorder, shape, time.perf_counter())
            await asyncio.sleep(self.interval)

    def _update(
        self, task: Any, recorder: Recorder, shape: LoadShape, now: float, done: bool = False
    ) -> None:
        if shape.requests is not None:
            completed: float = recorder.count
        else:
            completed = min(now - recorder.start, shape.duration_s or 0) if recorder.start else 0
        if done:
            completed = shape.requests or shape.duration_s or 0
        status = status_line(recorder, now) if recorder.start else "warming up"
        self._progress.update(task, completed=completed, status=status)
        self._progress.refresh()
