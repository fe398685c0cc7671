"""A log-linear latency histogram with bounded relative error (the HDR histogram idea).

Values are non-negative integers (the harness records microseconds).  Below ``2 * 10**d``
(rounded up to a power of two, ``sub_count``) every value has its own bucket.  Above it, each
power-of-two range ``[2**k, 2**(k+1))`` is split into ``sub_count / 2`` equal buckets, so a
bucket is never wider than ``1 / (sub_count / 2) <= 10**-d`` of its lowest value.

A percentile is the nearest-rank value of the recorded data (rank ``ceil(q/100 * n)``), given
as the highest value equivalent to it (clamped to the exact maximum): it is never below the
true value and exceeds it by less than ``10**-d`` of it.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Any


class Histogram:
    """Counts of integer values in log-linear buckets; see the module docstring."""

    __slots__ = ("_counts", "_half", "_sub_bits", "count", "digits", "max", "min", "total")

    def __init__(self, significant_digits: int = 3) -> None:
        if not 1 <= significant_digits <= 5:
            raise ValueError(f"significant_digits: {significant_digits} is outside 1-5")
        self.digits = significant_digits
        self._sub_bits = math.ceil(math.log2(2 * 10**significant_digits))
        self._half = 1 << (self._sub_bits - 1)
        self._counts: list[int] = []
        self.count = 0
        self.total = 0
        self.min = 0
        self.max = 0

    # -- buckets ----------------------------------------------------------------------------

    def index(self, value: int) -> int:
        """The bucket of ``value``."""
        shift = value.bit_length() - self._sub_bits
        if shift <= 0:
            return value
        return shift * self._half + (value >> shift)

    def bounds(self, index: int) -> tuple[int, int]:
        """The lowest and highest value of bucket ``index``."""
        sub_count = self._half * 2
        if index < sub_count:
            return index, index
        shift, offset = divmod(index - sub_count, self._half)
        low = (offset + self._half) << (shift + 1)
        return low, low + (1 << (shift + 1)) - 1

    # -- recording --------------------------------------------------------------------------

    def record(self, value: int, count: int = 1) -> None:
        """Add ``count`` occurrences of ``value`` (a negative value counts as 0)."""
        if value < 0:
            value = 0
        i = self.index(value)
        counts = self._counts
        if i >= len(counts):
            counts.extend([0] * (i + 1 - len(counts)))
        counts[i] += count
        if self.count == 0 or value < self.min:
            self.min = value
        if value > self.max:
            self.max = value
        self.count += count
        self.total += value * count

    # -- reading ----------------------------------------------------------------------------

    def percentile(self, q: float) -> int:
        """The nearest-rank ``q``-th percentile (0-100), within the stated precision."""
        if self.count == 0:
            return 0
        if q <= 0:
            return self.min
        rank = max(1, math.ceil(q / 100 * self.count))
        seen = 0
        for i, n in enumerate(self._counts):
            seen += n
            if seen >= rank:
                return max(self.min, min(self.bounds(i)[1], self.max))
        return self.max

    @property
    def mean(self) -> float:
        return self.total / self.count if self.count else 0.0

    def buckets(self) -> Iterator[tuple[int, int, int]]:
        """``(low, high, count)`` of every non-empty bucket, lowest first."""
        for i, n in enumerate(self._counts):
            if n:
                low, high = self.bounds(i)
                yield low, high, n

    # -- serialization ----------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        return {
            "significant_digits": self.digits,
            "count": self.count,
            "min": self.min,
            "max": self.max,
            "total": self.total,
            "buckets": [list(b) for b in self.buckets()],
        }

    def __repr__(self) -> str:
        return f"<Histogram n={self.count} min={self.min} max={self.max} digits={self.digits}>"
