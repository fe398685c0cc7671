"""The latency histogram: percentiles within the stated precision of the sorted-list truth."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from runtime.harness.histogram import Histogram

QS = (0.0, 1.0, 25.0, 50.0, 90.0, 99.0, 99.9, 100.0)

values = st.lists(
    st.one_of(
        st.integers(0, 5_000),  # the exact range and just above it
        st.integers(0, 10**7),  # up to 10 s in µs
        st.integers(0, 2**45),
    ),
    min_size=1,
    max_size=400,
)


def nearest_rank(ordered: list[int], q: float) -> int:
    if q <= 0:
        return ordered[0]
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[rank - 1]


def within(reported: int, truth: int, digits: int) -> bool:
    """Never below the truth, and above it by less than 10**-digits of it."""
    return truth <= reported and reported - truth <= truth / 10**digits


@settings(max_examples=200, deadline=None)
@given(values, st.sampled_from([1, 2, 3, 4]))
def test_percentiles_within_precision(data: list[int], digits: int) -> None:
    hist = Histogram(digits)
    for v in data:
        hist.record(v)
    ordered = sorted(data)
    for q in QS:
        assert within(hist.percentile(q), nearest_rank(ordered, q), digits), q
    assert (hist.count, hist.min, hist.max, hist.total) == (
        len(data),
        ordered[0],
        ordered[-1],
        sum(data),
    )
    assert hist.percentile(100) == ordered[-1]


@given(st.integers(0, 2**50))
def test_bucket_holds_its_value_and_is_narrow(value: int) -> None:
    hist = Histogram(3)
    low, high = hist.bounds(hist.index(value))
    assert low <= value <= high
    assert high - low < max(low, 1) / 1000


def test_values_below_the_exact_limit_are_exact() -> None:
    hist = Histogram(3)
    for v in (0, 1, 999, 1000, 2047):
        assert hist.bounds(hist.index(v)) == (v, v)


def test_buckets_tile_the_number_line() -> None:
    hist = Histogram(2)
    previous_high = -1
    for i in range(5000):
        low, high = hist.bounds(i)
        assert low == previous_high + 1
        assert hist.index(low) == hist.index(high) == i
        previous_high = high


def test_counts_negative_values_as_zero_and_empty_reads_zero() -> None:
    hist = Histogram()
    assert hist.percentile(50) == 0
    assert hist.mean == 0.0
    hist.record(-5)
    assert (hist.min, hist.max, hist.percentile(99)) == (0, 0, 0)


def test_refuses_precision_outside_the_range() -> None:
    with pytest.raises(ValueError, match="significant_digits"):
        Histogram(0)
