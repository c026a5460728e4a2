"""Run summaries print numbers for people: thousands separators, no scientific notation."""

from __future__ import annotations

from collections import Counter

import pytest

from flock import RunSummary
from flock._core.numbers import human


def test_a_summary_prints_large_token_counts_with_separators() -> None:
    summary = RunSummary(
        activations=12_345,
        artifacts_by_type=Counter({"Ticket": 10_000, "Triage": 2_345}),
        agents_run=Counter({"triage": 12_345}),
        metrics=Counter({"input_tokens": 1_078_520.0, "output_tokens": 96_410.0, "cost_usd": 0.01234}),
    )
    text = str(summary)
    assert text.startswith("run: 12,345 activations, 12,345 artifacts, 0 errors")
    assert "artifacts: Ticket=10,000, Triage=2,345" in text
    assert "agents:    triage=12,345" in text
    assert "cost_usd=0.0123, input_tokens=1,078,520, output_tokens=96,410" in text
    assert "e+0" not in text


@pytest.mark.parametrize(
    ("value", "shown"),
    [
        (3, "3"),
        (1_078_520.0, "1,078,520"),
        (12.345, "12.3"),
        (0.001234, "0.00123"),
        (1234.56, "1,234.6"),
        (-2_500.0, "-2,500"),
        (float("inf"), "inf"),
        (True, "True"),
    ],
)
def test_human(value: float, shown: str) -> None:
    assert human(value) == shown
