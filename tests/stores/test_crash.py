"""Kill -9 a process running a 5-agent pipeline (and a silent sixth agent) on SQLite at random moments,
resume, check the board.

Each iteration (seeded) kills the child at a random point after it opened the board, sometimes
kills the first resuming process too, then resumes in a fresh process and checks every invariant
(see ``crash_pipeline.check``): no acknowledged publish lost, no output duplicated, no activation
torn (outputs without consumption records or the reverse), every Part consumed exactly once by
the silent agent (whose commits are not waited for), nothing left in flight, and the same board as
an uninterrupted run. The same for fan-outs, AND gates and batches (``crash_gates``): each must
finish exactly once. ``benchmarks/bench_crash.py`` runs hundreds of iterations of both.
"""

from __future__ import annotations

import random
from pathlib import Path

import crash_gates
import pytest
from crash_pipeline import crash_and_resume

SEED = 20261121
SEEDS_PER_RUN = 30


@pytest.mark.parametrize("iteration", range(5))
def test_a_killed_pipeline_resumes_without_loss_duplication_or_tearing(
    tmp_path: Path, iteration: int
) -> None:
    outcome = crash_and_resume(tmp_path / "board.db", SEEDS_PER_RUN, random.Random(SEED + iteration))
    assert outcome["problems"] == [], outcome


@pytest.mark.parametrize("iteration", range(3))
def test_killed_fan_outs_gates_and_batches_resume_exactly_once(tmp_path: Path, iteration: int) -> None:
    outcome = crash_gates.crash_and_resume(tmp_path / "board.db", 20, random.Random(SEED - 1 - iteration))
    assert outcome["problems"] == [], outcome
