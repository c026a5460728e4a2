"""Per-model latency of model calls, for the run summary: p50, p90 and p99 in bounded memory.

Each model's call durations go into logarithmic buckets 2% wide (a few hundred buckets cover a
microsecond to an hour), so a run of a million calls costs as little memory as a run of ten, and a
percentile is exact to within 2%.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

_GROWTH = 1.02
_LOG_GROWTH = math.log(_GROWTH)
_FLOOR = 1e-6  # seconds; anything faster lands in the first bucket


@dataclass(frozen=True)
class Latency:
    """Latency of one model's calls in a run (seconds): ``calls``, ``p50``, ``p90``, ``p99``, ``max``."""

    calls: int
    p50: float
    p90: float
    p99: float
    max: float

    def __str__(self) -> str:
        return (
            f"p50={_seconds(self.p50)} p90={_seconds(self.p90)} p99={_seconds(self.p99)} "
            f"max={_seconds(self.max)} ({self.calls} call{'s' if self.calls != 1 else ''})"
        )


class LatencyStats:
    """Bucketed call durations per model name since the last :meth:`take`."""

    __slots__ = ("_models",)

    def __init__(self) -> None:
        self._models: dict[str, _Histogram] = {}

    def record(self, model: str, seconds: float) -> None:
        hist = self._models.get(model)
        if hist is None:
            hist = self._models[model] = _Histogram()
        hist.add(seconds)

    def take(self) -> dict[str, Latency]:
        """The summary per model, and start over."""
        models, self._models = self._models, {}
        return {model: hist.summary() for model, hist in sorted(models.items())}


class _Histogram:
    __slots__ = ("buckets", "count", "max")

    def __init__(self) -> None:
        self.buckets: dict[int, int] = {}
        self.count = 0
        self.max = 0.0

    def add(self, seconds: float) -> None:
        if not seconds > 0 or math.isinf(seconds):  # NaN, zero, negative, inf: the first bucket
            index = 0
        else:
            index = max(0, int(math.log(max(seconds, _FLOOR) / _FLOOR) / _LOG_GROWTH))
            self.max = max(self.max, seconds)
        self.buckets[index] = self.buckets.get(index, 0) + 1
        self.count += 1

    def summary(self) -> Latency:
        return Latency(self.count, self._quantile(0.5), self._quantile(0.9), self._quantile(0.99), self.max)

    def _quantile(self, q: float) -> float:
        rank = max(1, math.ceil(q * self.count))
        seen = 0
        for index in sorted(self.buckets):
            seen += self.buckets[index]
            if seen >= rank:
                # The bucket's geometric middle, never above the largest value seen.
                middle = _FLOOR * _GROWTH ** (index + 0.5)
                return min(middle, self.max) if self.max else middle
        return self.max


def percentiles(values: list[float]) -> tuple[float, float, float, float]:
    """Exact p50, p90, p99 (nearest rank) and max of ``values`` (not empty)."""
    ordered = sorted(values)

    def rank(q: float) -> float:
        return ordered[max(1, math.ceil(q * len(ordered))) - 1]

    return rank(0.5), rank(0.9), rank(0.99), ordered[-1]


def _seconds(value: float) -> str:
    if value >= 1:
        return f"{value:.2f}s"
    if value >= 0.001:
        return f"{value * 1000:.0f}ms" if value >= 0.01 else f"{value * 1000:.1f}ms"
    return f"{value * 1_000_000:.0f}µs"
