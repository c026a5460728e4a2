"""The scheduling examples run in a fresh interpreter, finish quickly and print what they show."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        (
            "05_batches.py",
            [
                "sorter → SortRun  warehouse-A  ['A1', 'A2', 'A3']",
                "sorter → SortRun  warehouse-A  ['A4', 'A5']",  # flushed at idle
                "auditor → Audit    warehouse-A  ['A5', 'B1', 'B2']",  # across workflows
                "still waiting: {'sorter': 4, 'auditor': 3}",
                "after the auditor's timeout (clock at +60s):",
                "run: 5 activations, 12 artifacts, 0 errors",
            ],
        ),
        (
            "06_joins.py",
            [
                "after the first run: waiting={'shipper': 2}, expired_joins=0",
                "shipper → Shipment          {'order_id': 1, 'item': 'kettle', 'paid': 25.0}",
                "'key': '2', 'received': {'Order': 1}, 'missing': {'Payment': 1}",
                "'key': '3', 'received': {'Order': 1}, 'missing': {'Payment': 1}",
                "collections → Reminder",
                "expired joins: 2",
                "waiting:   shipper=1",
            ],
        ),
        (
            "07_timers.py",
            [
                "run_until_idle: 1 activation(s) due at the start, then returned",
                "run_until(two standups): True",
                "'agent': 'heartbeat', 'iteration': 3, 'fired_at': 'Tue 00:10'",
                "'agent': 'reminder', 'iteration': 1, 'fired_at': 'Tue 02:00'",
                "'agent': 'standup', 'iteration': 2, 'fired_at': 'Wed 09:00'",
                "clock: Wed 2030-01-02 09:00",
            ],
        ),
        (
            "08_conditions.py",
            [
                "run_until(a decision and no error): True",
                "run_until(an approved decision): True",
                "three votes on 'new kettle': True",
                "run_until(three decisions or an error): False",
                "new kettle        approved",
                "espresso machine  rejected",
                "votes: 8, still deferred: 1",
            ],
        ),
    ],
)
def test_example_runs(name: str, expected: list[str]) -> None:
    env = {k: v for k, v in os.environ.items() if k not in ("FLOCK_MODEL", "DEFAULT_MODEL")}
    done = subprocess.run(
        [sys.executable, str(EXAMPLES / name)],
        capture_output=True,
        text=True,
        timeout=30,
        env={**env, "PYTHONIOENCODING": "utf-8"},
        check=False,
    )
    assert done.returncode == 0, done.stderr
    for line in expected:
        assert line in done.stdout, f"{line!r} missing from the output of {name}:\n{done.stdout}"
    assert "Traceback" not in done.stderr
