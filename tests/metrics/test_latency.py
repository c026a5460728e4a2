"""Per-model latency percentiles in bounded memory."""

from __future__ import annotations

import random

import pytest

from flock._tracing.latency import LatencyStats


def test_percentiles_are_within_two_percent_of_the_exact_ones() -> None:
    rng = random.Random(7)
    values = [rng.lognormvariate(-1.5, 0.8) for _ in range(20_000)]
    stats = LatencyStats()
    for v in values:
        stats.record("openai/m", v)
    exact = sorted(values)
    got = stats.take()["openai/m"]
    assert got.calls == 20_000 and got.max == exact[-1]
    for q, value in ((0.5, got.p50), (0.9, got.p90), (0.99, got.p99)):
        assert value == pytest.approx(exact[int(q * len(exact)) - 1], rel=0.02)
    assert stats.take() == {}  # taken: the next run starts over


def test_models_are_kept_apart_and_odd_values_do_not_break_it() -> None:
    stats = LatencyStats()
    for v in (0.0, -1.0, float("nan"), 0.2):
        stats.record("a", v)
    stats.record("b", 3.0)
    taken = stats.take()
    assert taken["a"].calls == 4 and taken["a"].max == 0.2
    assert taken["b"].p50 == taken["b"].p99 == 3.0
    assert str(taken["b"]) == "p50=3.00s p90=3.00s p99=3.00s max=3.00s (1 call)"
