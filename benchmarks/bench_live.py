"""Live-run benchmark: what events cost, and how close map() gets to its critical path. Prints JSON.

    python benchmarks/bench_live.py                 # defaults: 500 inputs x 5 stages, 31 rounds
    python benchmarks/bench_live.py --n 1000 --rounds 9

* ``events``: the 5-agent chain of ``bench_core.py`` (pure-Python engines) with no subscriber,
  with one subscriber that reads every event in its own task (its reading counts too: same
  process), and with one whose events wait in its buffer until the run is over (what emitting
  alone costs the run). Every round runs the three modes in one process, in a shuffled order; the
  report gives the median CPU microseconds per activation of each and the medians of the paired
  ratios (round i with a subscriber over round i without). Target: ≤ 1.05. On a shared 2-core
  machine one round's ratio moves by ±3%: the median of 11 rounds still moved from 1.042 to 1.063
  between three runs of the same code, the median of 31-41 rounds by about ±0.005.
* ``--single MODE``: one round of one mode (``off``, ``reading`` or ``buffered``) and nothing else,
  for counting instructions, which the machine's load does not move::

      valgrind --tool=callgrind --callgrind-out-file=/dev/null \
          python benchmarks/bench_live.py --single off --n 200
      valgrind ... --single off --n 1200

  (the difference of the two counts over 5,000 is what one activation costs; same for ``reading``).
* ``map``: ``flock.map`` over 200 inputs with an engine that waits 50 ms (a model's latency) at
  ``concurrency=32``. The critical path is ceil(200 / 32) x 50 ms; the report gives wall time over
  it. Target: ≤ 1.3.
"""

from __future__ import annotations

import argparse
import gc
import json
import math
import os
import platform
import random
import statistics
import time
from typing import Any

import anyio
from pydantic import BaseModel, create_model

STAGES = 5


def _chain() -> tuple[Any, list[type[BaseModel]]]:
    from flock import Flock, flock_type

    stages = [flock_type(create_model(f"Stage{i}", value=(int, ...))) for i in range(STAGES + 1)]
    flock = Flock()
    for i in range(1, STAGES + 1):
        out = stages[i]
        flock.agent(f"stage{i}").consumes(stages[i - 1]).publishes(out).calls(
            lambda item, out=out: out(value=item.value + 1)
        )
    return flock, stages


async def _events_round(n: int, mode: str) -> float:
    """CPU us per activation; ``mode``: ``off`` (no subscriber), ``buffered`` (a subscriber that
    reads after the run: what emitting costs the run), ``reading`` (one that reads as it goes)."""
    flock, stages = _chain()
    inputs = [stages[0](value=i) for i in range(n)]
    received = 0
    gc.collect()

    async def timed() -> float:
        c0 = time.process_time()
        await flock.publish_many(inputs)
        summary = await flock.run_until_idle()
        cpu = time.process_time() - c0
        assert summary.activations == n * STAGES and not summary.errors
        return cpu / summary.activations * 1e6

    # Every mode runs inside a task group, as a run with a reader must: anyio's cancel scopes cost
    # a little more per activation one level deeper, and that is not the events' cost.
    async with anyio.create_task_group() as tg:
        if mode == "off":
            return await timed()
        if mode == "buffered":
            async with flock.events(buffer=n * 20) as events:
                cost = await timed()
                events.close()
                assert len([e async for e in events]) == n * (2 * STAGES + STAGES + 1)
            return cost
        async with flock.events(buffer=n * 20) as events:

            async def read() -> None:
                nonlocal received
                async for _ in events:
                    received += 1

            tg.start_soon(read)
            cost = await timed()
            events.close()
    assert received == n * (2 * STAGES + STAGES + 1), received  # every event of the run was read
    return cost


async def _map_run(n: int, latency: float, concurrency: int) -> dict[str, Any]:
    from flock import Flock, flock_type

    Item = flock_type(create_model("Item", value=(int, ...)))
    Done = flock_type(create_model("Done", value=(int, ...)))

    async def model(item: Any) -> Any:
        await anyio.sleep(latency)
        return Done(value=item.value)

    flock = Flock()
    flock.agent("worker").consumes(Item).publishes(Done).calls(model).max_concurrency(4)
    t0 = time.perf_counter()
    results = await flock.map("worker", [Item(value=i) for i in range(n)], concurrency=concurrency)
    wall = time.perf_counter() - t0
    assert [r[0].value for r in results] == list(range(n))
    critical = math.ceil(n / concurrency) * latency
    return {
        "inputs": n,
        "latency_s": latency,
        "concurrency": concurrency,
        "wall_s": round(wall, 4),
        "critical_path_s": round(critical, 4),
        "ratio": round(wall / critical, 3),
        "target_ratio": 1.3,
    }


async def main(args: argparse.Namespace) -> dict[str, Any]:
    await _events_round(min(args.n, 200), "reading")  # warm imports and code paths
    off: list[float] = []
    buffered: list[float] = []
    on: list[float] = []
    taken = {"off": off, "buffered": buffered, "reading": on}
    shuffle = random.Random(args.seed).shuffle
    for _ in range(args.rounds):
        modes = list(taken)
        shuffle(modes)  # no mode always runs first or last in a round
        for mode in modes:
            taken[mode].append(await _events_round(args.n, mode))
    ratios = [b / a for a, b in zip(off, on, strict=True)]
    emit_ratios = [b / a for a, b in zip(off, buffered, strict=True)]
    return {
        "benchmark": "bench_live",
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
        "load_avg_1m_before": round(os.getloadavg()[0], 2),
        "events": {
            "inputs": args.n,
            "activations": args.n * STAGES,
            "rounds": args.rounds,
            "cpu_us_per_activation_no_subscriber": round(statistics.median(off), 2),
            "cpu_us_per_activation_one_subscriber_reading": round(statistics.median(on), 2),
            "cpu_us_per_activation_one_subscriber_buffered": round(statistics.median(buffered), 2),
            "paired_ratio_median_reading": round(statistics.median(ratios), 3),
            "paired_ratio_median_emitting_only": round(statistics.median(emit_ratios), 3),
            "paired_ratio_reading_quartiles": [round(q, 3) for q in statistics.quantiles(ratios, n=4)],
            "target_ratio": 1.05,
        },
        "map": await _map_run(200, 0.05, 32),
    }


if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--n", type=int, default=500, help="inputs per events round (default 500)")
    parser.add_argument("--rounds", type=int, default=31, help="rounds per mode (default 31)")
    parser.add_argument("--seed", type=int, default=1, help="seed of the order of the modes in a round")
    parser.add_argument("--single", choices=["off", "reading", "buffered"], help="one round of one mode only")
    args = parser.parse_args()
    if args.single:
        anyio.run(_events_round, args.n, args.single)
    else:
        print(json.dumps(anyio.run(main, args), indent=2))
