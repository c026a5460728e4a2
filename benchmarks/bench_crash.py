"""Crash-and-resume, many times: kill -9 agents on a SQLite board at random moments and check.

Runs a crash test scenario ``--iterations`` times (``--scenario pipeline``, the default: a 6-agent
pipeline, tests/stores/crash_pipeline.py; ``--scenario gates``: fan-out, AND gates and batches,
tests/stores/crash_gates.py) with a seeded random kill point each time (and a killed first resume
in about 30 % of iterations), then prints one JSON document: how many kills landed mid-run, how
many acknowledged publishes were checked, and every invariant violation found (there must be none).

    .venv/bin/python benchmarks/bench_crash.py --iterations 300
    .venv/bin/python benchmarks/bench_crash.py --iterations 200 --scenario gates --seeds 20
"""

from __future__ import annotations

import argparse
import json
import logging
import random
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests" / "stores"))

import crash_gates
import crash_pipeline

SCENARIOS = {"pipeline": crash_pipeline.crash_and_resume, "gates": crash_gates.crash_and_resume}


def main() -> None:
    logging.getLogger("flock").setLevel(logging.ERROR)  # the pipeline fails on purpose; no noise
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--iterations", type=int, default=200)
    parser.add_argument("--seeds", type=int, default=30, help="seed artifacts each run publishes")
    parser.add_argument("--window", type=float, default=0.2, help="kill within this many seconds of start")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument(
        "--scenario",
        choices=sorted(SCENARIOS),
        default="pipeline",
        help="pipeline: 6 agents, failures, a silent agent; gates: fan-out, AND gates, batches",
    )
    args = parser.parse_args()
    started = time.perf_counter()
    failures, mid_run, resume_killed, acked = [], 0, 0, 0
    with tempfile.TemporaryDirectory(prefix="flock-bench-crash-") as tmp:
        for i in range(args.iterations):
            rng = random.Random(args.seed * 1_000_003 + i)
            outcome = SCENARIOS[args.scenario](
                Path(tmp) / f"board-{i}.db", args.seeds, rng, window=args.window
            )
            mid_run += outcome["killed_mid_run"]
            resume_killed += outcome["resume_killed"]
            acked += outcome["acked"]
            if outcome["problems"]:
                failures.append({"iteration": i, **outcome})
    report = {
        "scenario": args.scenario,
        "iterations": args.iterations,
        "seeds_per_run": args.seeds,
        "killed_mid_run": mid_run,
        "resume_also_killed": resume_killed,
        "acknowledged_publishes_checked": acked,
        "iterations_with_violations": len(failures),
        "violations": failures[:20],
        "wall_s": round(time.perf_counter() - started, 1),
    }
    print(json.dumps(report, indent=2))
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
