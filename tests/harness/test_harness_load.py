"""Load shapes, driven by virtual time: the open loop counts from intended send times."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest
from fakes import AutojumpClock

from runtime.harness.load import LoadShape, run_load
from runtime.harness.results import OK, Outcome, Recorder


class SingleServer:
    """One request at a time, each taking ``service`` seconds (FIFO)."""

    def __init__(self, clock: AutojumpClock, service: float) -> None:
        self.clock = clock
        self.service = service
        self.lock = asyncio.Lock()
        self.calls = 0

    async def call(self, payload: bytes) -> Outcome:
        self.calls += 1
        async with self.lock:
            await self.clock.sleep(self.service)
        return OK


class ParallelServer:
    """Any number of requests at once, each taking ``service`` seconds; counts the peak."""

    def __init__(self, sleep: Callable[[float], Any], service: float) -> None:
        self.sleep = sleep
        self.service = service
        self.in_flight = 0
        self.peak = 0
        self.calls = 0

    async def call(self, payload: bytes) -> Outcome:
        self.calls += 1
        self.in_flight += 1
        self.peak = max(self.peak, self.in_flight)
        try:
            await self.sleep(self.service)
        finally:
            self.in_flight -= 1
        return Outcome(error_type=f"call{self.calls}")


def collect() -> tuple[list[tuple[float, float, Outcome]], Callable[..., None]]:
    samples: list[tuple[float, float, Outcome]] = []

    def sink(sent: float, done: float, outcome: Outcome) -> None:
        samples.append((sent, done, outcome))

    return samples, sink


def us(seconds: float) -> int:
    return round(seconds * 1e6)


def test_open_loop_latency_counts_from_the_intended_send_time(arun: Any) -> None:
    """Arrivals every 0.1 s, service 0.25 s on one server: request i waits for the i before
    it, so its latency is 0.25 + 0.15 i, not the 0.25 a closed loop would report."""
    clock = AutojumpClock()
    server = SingleServer(clock, 0.25)
    samples, sink = collect()
    shape = LoadShape(rate=10, requests=12)
    arun(clock.run(run_load(shape, server.call, b"{}", sink, clock=clock)))
    assert [us(sent) for sent, _, _ in samples] == [us(i / 10) for i in range(12)]
    assert [us(done - sent) for sent, done, _ in samples] == [
        250_000 + 150_000 * i for i in range(12)
    ]


def test_closed_loop_on_the_same_server_hides_the_queue(arun: Any) -> None:
    clock = AutojumpClock()
    server = SingleServer(clock, 0.25)
    samples, sink = collect()
    arun(clock.run(run_load(LoadShape(requests=12), server.call, b"{}", sink, clock=clock)))
    assert [us(done - sent) for sent, done, _ in samples] == [250_000] * 12
    assert clock.now() == pytest.approx(3.0)


def test_open_loop_waits_for_a_slot_but_keeps_the_intended_time(arun: Any) -> None:
    """At most 2 in flight, each 1 s, arrivals every 0.1 s: pairs finish at 1, 2, 3 s."""
    clock = AutojumpClock()
    server = ParallelServer(clock.sleep, 1.0)
    samples, sink = collect()
    shape = LoadShape(concurrency=2, rate=10, requests=6)
    arun(clock.run(run_load(shape, server.call, b"{}", sink, clock=clock)))
    assert server.peak == 2
    done = sorted(us(d) for _, d, _ in samples)
    assert done == [1_000_000, 1_100_000, 2_000_000, 2_100_000, 3_000_000, 3_100_000]
    latencies = sorted(us(d - s) for s, d, _ in samples)
    assert latencies == [1_000_000, 1_000_000, 1_800_000, 1_800_000, 2_600_000, 2_600_000]


def test_open_loop_duration_sends_rate_times_duration(arun: Any) -> None:
    clock = AutojumpClock()
    server = ParallelServer(clock.sleep, 0.01)
    samples, sink = collect()
    shape = LoadShape(rate=10, duration_s=1.0)
    arun(clock.run(run_load(shape, server.call, b"{}", sink, clock=clock)))
    assert len(samples) == server.calls == 10


def test_closed_loop_honours_concurrency(arun: Any) -> None:
    clock = AutojumpClock()
    server = ParallelServer(clock.sleep, 0.5)
    samples, sink = collect()
    arun(
        clock.run(
            run_load(LoadShape(concurrency=4, requests=12), server.call, b"{}", sink, clock=clock)
        )
    )
    assert server.peak == 4
    assert len(samples) == server.calls == 12
    assert clock.now() == pytest.approx(1.5)  # three rounds of four


def test_closed_loop_duration_stops_issuing_at_the_end(arun: Any) -> None:
    clock = AutojumpClock()
    server = ParallelServer(clock.sleep, 0.3)
    samples, sink = collect()
    shape = LoadShape(concurrency=2, duration_s=1.0)
    arun(clock.run(run_load(shape, server.call, b"{}", sink, clock=clock)))
    assert len(samples) == 8  # each caller starts at 0, 0.3, 0.6, 0.9


def test_warmup_requests_are_sent_but_not_recorded(arun: Any) -> None:
    clock = AutojumpClock()
    server = ParallelServer(clock.sleep, 0.1)
    samples, sink = collect()
    starts: list[float] = []
    shape = LoadShape(requests=10, warmup=5)
    arun(clock.run(run_load(shape, server.call, b"{}", sink, clock=clock, on_start=starts.append)))
    assert server.calls == 15
    assert [o.error_type for _, _, o in samples] == [f"call{i}" for i in range(6, 16)]
    assert starts == [pytest.approx(0.5)]


def test_a_target_exception_is_an_error_of_its_type(arun: Any) -> None:
    async def broken(payload: bytes) -> Outcome:
        raise ConnectionResetError("gone")

    recorder = Recorder()
    arun(run_load(LoadShape(requests=3), broken, b"{}", recorder.record, on_start=recorder.begin))
    assert recorder.errors == {"ConnectionResetError": 3}


def test_real_clock_closed_loop_concurrency(arun: Any) -> None:
    server = ParallelServer(asyncio.sleep, 0.002)
    recorder = Recorder()
    shape = LoadShape(concurrency=3, requests=30)
    arun(run_load(shape, server.call, b"{}", recorder.record, on_start=recorder.begin))
    assert server.peak == 3
    assert recorder.count == 30
    assert recorder.latency.min >= 1_000  # µs: loop timers may wake up to 1 ms early


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({}, "exactly one"),
        ({"requests": 1, "duration_s": 1.0}, "exactly one"),
        ({"requests": 0}, "requests"),
        ({"requests": 1, "concurrency": 0}, "concurrency"),
        ({"requests": 1, "rate": 0.0}, "rate"),
        ({"duration_s": -1.0}, "duration"),
        ({"requests": 1, "warmup": -1}, "warmup"),
    ],
)
def test_load_shape_rejects(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        LoadShape(**kwargs)


def test_recorder_folds_outcomes() -> None:
    rec = Recorder()
    rec.begin(10.0)
    rec.record(10.0, 10.5, Outcome(cold=True, init_ms=2.5, billed_ms=3, memory_mb=1024))
    rec.record(10.5, 11.2, Outcome(cold=False, billed_ms=1, memory_mb=1024))
    rec.record(11.2, 12.1, Outcome(error_type="ValueError", cold=False))
    rec.record(12.1, 12.2, Outcome(throttle="ReservedFunctionConcurrentInvocationLimitExceeded"))
    result = rec.result("warmstart").as_dict()
    assert (result["requests"], result["cold"], result["warm"]) == (4, 1, 2)
    assert result["init_ms"] == {"count": 1, "p50": 2.5, "max": 2.5}
    assert result["errors"] == {"ValueError": 1}
    assert result["throttles"] == {"ReservedFunctionConcurrentInvocationLimitExceeded": 1}
    assert result["billed_ms_total"] == 4
    assert result["gb_seconds"] == pytest.approx(0.004)
    assert [t["requests"] for t in result["timeline"]] == [1, 1, 2]
    assert result["elapsed_s"] == pytest.approx(2.2)
    assert result["latency_ms"]["max"] == 900.0
