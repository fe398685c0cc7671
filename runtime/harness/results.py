"""What one benchmark run measured: per-request outcomes folded into histograms and counters.

The ``Recorder`` keeps no per-request list, so a long run costs constant memory: latencies go
into one histogram for the whole run and one per second of the run (by completion time), which
is what the latency-over-time plot draws.  ``RunResult.as_dict`` is the JSON document written
by ``--json`` (one per run: warmstart and each baseline).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from .histogram import Histogram

PERCENTILES = (50.0, 90.0, 99.0, 99.9)
SCHEMA = "warmstart.bench/1"


@dataclass(frozen=True, slots=True)
class Outcome:
    """How one request ended, as far as the target can tell.

    ``error_type`` is Lambda's errorType for a function error (or an exception's class name
    for a transport failure); ``throttle`` is the throttle reason.  ``cold`` is None when the
    target cannot tell (plain HTTP, baselines).
    """

    error_type: str | None = None
    throttle: str | None = None
    cold: bool | None = None
    init_ms: float | None = None
    billed_ms: int | None = None
    memory_mb: int | None = None


OK = Outcome()


def _us(seconds: float) -> int:
    return round(seconds * 1_000_000)


def _ms(us: int | float) -> float:
    return round(us / 1000, 3)


@dataclass
class Recorder:
    """Folds ``(sent, done, outcome)`` samples of one run into counters and histograms."""

    start: float = 0.0
    latency: Histogram = field(default_factory=Histogram)
    per_second: dict[int, Histogram] = field(default_factory=dict)
    init: Histogram = field(default_factory=Histogram)
    errors: Counter[str] = field(default_factory=Counter)
    throttles: Counter[str] = field(default_factory=Counter)
    cold: int = 0
    warm: int = 0
    billed_ms: int = 0
    gb_seconds: float = 0.0
    last_done: float = 0.0

    @property
    def count(self) -> int:
        return self.latency.count

    def begin(self, now: float) -> None:
        self.start = self.last_done = now

    def record(self, sent: float, done: float, outcome: Outcome) -> None:
        """One request: ``done - sent`` is its latency (``sent`` may be an intended time)."""
        us = _us(done - sent)
        self.latency.record(us)
        second = int(done - self.start) if done > self.start else 0
        hist = self.per_second.get(second)
        if hist is None:
            hist = self.per_second[second] = Histogram(self.latency.digits)
        hist.record(us)
        if done > self.last_done:
            self.last_done = done
        if outcome is not OK:
            self._outcome(outcome)

    def _outcome(self, outcome: Outcome) -> None:
        if outcome.error_type is not None:
            self.errors[outcome.error_type] += 1
        if outcome.throttle is not None:
            self.throttles[outcome.throttle] += 1
        if outcome.cold is True:
            self.cold += 1
            if outcome.init_ms is not None:
                self.init.record(_us(outcome.init_ms / 1000))
        elif outcome.cold is False:
            self.warm += 1
        if outcome.billed_ms is not None:
            self.billed_ms += outcome.billed_ms
            if outcome.memory_mb is not None:
                self.gb_seconds += outcome.billed_ms / 1000 * outcome.memory_mb / 1024

    def result(self, label: str) -> RunResult:
        elapsed = max(self.last_done - self.start, 1e-9)
        return RunResult(label, self, elapsed)


@dataclass
class RunResult:
    """The figures of one run, derived from its recorder."""

    label: str
    recorder: Recorder
    elapsed_s: float

    @property
    def requests(self) -> int:
        return self.recorder.count

    @property
    def throughput(self) -> float:
        return self.requests / self.elapsed_s if self.requests else 0.0

    def latency_ms(self, q: float) -> float:
        return _ms(self.recorder.latency.percentile(q))

    def latency_summary(self) -> dict[str, float]:
        hist = self.recorder.latency
        out = {f"p{q:g}": _ms(hist.percentile(q)) for q in PERCENTILES}
        out.update(min=_ms(hist.min), max=_ms(hist.max), mean=_ms(hist.mean))
        return out

    def timeline(self) -> list[dict[str, Any]]:
        """Per second of the run: completions, p50 and p99 latency (ms)."""
        per_second = self.recorder.per_second
        if not per_second:
            return []
        out: list[dict[str, Any]] = []
        for second in range(max(per_second) + 1):
            hist = per_second.get(second)
            if hist is None:
                out.append({"second": second, "requests": 0, "p50_ms": None, "p99_ms": None})
                continue
            out.append(
                {
                    "second": second,
                    "requests": hist.count,
                    "p50_ms": _ms(hist.percentile(50)),
                    "p99_ms": _ms(hist.percentile(99)),
                }
            )
        return out

    def init_summary(self) -> dict[str, float | int] | None:
        init = self.recorder.init
        if not init.count:
            return None
        return {"count": init.count, "p50": _ms(init.percentile(50)), "max": _ms(init.max)}

    def as_dict(self) -> dict[str, Any]:
        rec = self.recorder
        return {
            "label": self.label,
            "requests": self.requests,
            "elapsed_s": round(self.elapsed_s, 6),
            "throughput_rps": round(self.throughput, 3),
            "latency_ms": self.latency_summary(),
            "cold": rec.cold,
            "warm": rec.warm,
            "init_ms": self.init_summary(),
            "errors": dict(sorted(rec.errors.items())),
            "throttles": dict(sorted(rec.throttles.items())),
            "billed_ms_total": rec.billed_ms,
            "gb_seconds": round(rec.gb_seconds, 9),
            "timeline": self.timeline(),
            "histogram_us": rec.latency.to_dict(),
        }


def ratios(ours: RunResult, theirs: RunResult) -> dict[str, float | None]:
    """warmstart's figure divided by the baseline's: throughput, p50 and p99 latency."""

    def div(a: float, b: float) -> float | None:
        return round(a / b, 4) if b else None

    return {
        "throughput": div(ours.throughput, theirs.throughput),
        "p50": div(ours.latency_ms(50), theirs.latency_ms(50)),
        "p99": div(ours.latency_ms(99), theirs.latency_ms(99)),
    }
