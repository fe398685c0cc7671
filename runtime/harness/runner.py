"""One benchmark: the target, then each baseline, with the same payload and load shape.

The result is a JSON-ready document (``--json`` writes it as it is); the text summary and the
HTML report are both drawn from it.
"""

from __future__ import annotations

import os
import platform
from dataclasses import dataclass
from typing import Any

from ..stamps import iso_now
from .baselines import make_baseline
from .load import Clock, LoadShape, run_load
from .progress import NoProgress, Progress
from .results import SCHEMA, Recorder, RunResult, ratios
from .targets import Target


@dataclass
class BenchPlan:
    """What to measure: a target, a load shape, a payload, and baselines to compare with."""

    target: Target
    shape: LoadShape
    payload: bytes
    baselines: tuple[str, ...] = ()
    baseline_workers: int = 1


async def measure(
    target: Target,
    shape: LoadShape,
    payload: bytes,
    progress: Progress | None = None,
    clock: Clock | None = None,
) -> RunResult:
    """Start ``target``, offer it the load, close it; the recorded figures."""
    progress = progress or NoProgress()
    recorder = Recorder()
    await target.start()
    try:
        async with progress.track(target.label, recorder, shape):
            await run_load(
                shape, target.call, payload, recorder.record, clock=clock, on_start=recorder.begin
            )
    finally:
        await target.close()
    return recorder.result(target.label)


async def run_bench(plan: BenchPlan, progress: Progress | None = None) -> dict[str, Any]:
    """Measure the plan's target, then each baseline; the document of all results."""
    main = await measure(plan.target, plan.shape, plan.payload, progress)
    compared = {}
    for name in plan.baselines:
        baseline = make_baseline(name, plan.baseline_workers)
        compared[name] = await measure(baseline, plan.shape, plan.payload, progress)
    return document(plan, main, compared)


def document(plan: BenchPlan, main: RunResult, compared: dict[str, RunResult]) -> dict[str, Any]:
    """Everything measured, as JSON-ready data (the ``--json`` file)."""
    shape = plan.shape
    doc: dict[str, Any] = {
        "schema": SCHEMA,
        "created": iso_now(),
        "host": {
            "python": platform.python_version(),
            "implementation": platform.python_implementation(),
            "platform": platform.platform(),
            "cpus": os.cpu_count(),
        },
        "target": plan.target.describe(),
        "load": {
            "mode": "open" if shape.open else "closed",
            "concurrency": shape.in_flight,
            "rate": shape.rate,
            "requests": shape.requests,
            "duration_s": shape.duration_s,
            "warmup": shape.warmup,
            "payload_bytes": len(plan.payload),
            "description": shape.describe(),
        },
        "result": main.as_dict(),
        "cold_check": _cold_check(plan.target, main),
        "baselines": {
            name: {**run.as_dict(), "workers": plan.baseline_workers, "ratios": ratios(main, run)}
            for name, run in compared.items()
        },
    }
    return doc


def _cold_check(target: Target, main: RunResult) -> dict[str, Any] | None:
    """In cold mode every sample must be a cold start; this says whether they were."""
    if not getattr(target, "expect_cold", False):
        return None
    rec = main.recorder
    return {
        "expected": "cold",
        "cold": rec.cold,
        "warm": rec.warm,
        "ok": rec.warm == 0 and rec.cold > 0,
    }
