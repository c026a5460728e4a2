"""Durable publishes per second: SQLiteStore at each durability setting against InMemoryStore.

One run: ``--n`` (1,000) ``Signal`` artifacts published concurrently (one task each, each its own
workflow) to ten subscribed agents, pure-Python functions that answer every signal with one tiny
``Ack`` artifact (``--output tiny``, the default) or with nothing (``--output none``); then
``run_until_idle()``. With tiny outputs that stores n + 10 n artifacts (1,000 + 10,000), each
activation's consumption record committed with its output, plus two journal entries per
activation (pending, running). Rates are per second of wall time from the first publish to idle:
``artifacts_per_s`` (stored artifacts), ``activations_per_s`` (activations committed, each one
transaction-worth of outputs + consumption + completion) and ``inputs_per_s`` (published signals
fully processed by all ten agents); ``store_us_per_activation`` is what the setting adds to each
activation over the in-memory store (best wall times). Each setting runs ``--runs`` times on a
fresh file; the best and the medians are reported. Prints one JSON document.

    .venv/bin/python benchmarks/bench_store.py
    .venv/bin/python benchmarks/bench_store.py --n 2000 --runs 5 --output none
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import anyio
from pydantic import BaseModel

from flock import Flock, InMemoryStore, SQLiteStore, flock_type


@flock_type
class Signal(BaseModel):
    n: int


@flock_type
class Ack(BaseModel):
    agent: int
    n: int


def build(store: Any, agents: int, output: str) -> Flock:
    flock = Flock(store=store, max_agent_iterations=10**6)
    for i in range(agents):
        builder = flock.agent(f"agent{i}").consumes(Signal)
        if output == "tiny":
            builder.publishes(Ack).calls(lambda s, i=i: Ack(agent=i, n=s.n))
        else:
            builder.calls(lambda s: None)
    return flock


async def one_run(setting: str, n: int, agents: int, output: str, folder: Path) -> dict[str, Any]:
    store: Any = InMemoryStore()
    if setting != "memory":
        store = SQLiteStore(folder / f"{setting}.db", durability="power" if setting == "power" else "process")
    flock = build(store, agents, output)
    started, cpu = time.perf_counter(), time.process_time()
    async with anyio.create_task_group() as tg:
        for i in range(n):
            tg.start_soon(flock.publish, Signal(n=i))
    published = time.perf_counter()
    summary = await flock.run_until_idle()
    wall, cpu = time.perf_counter() - started, time.process_time() - cpu
    stored = await store.count()
    consumed = len(await store.consumptions())
    in_flight = len(await store.in_flight())
    expected = n + (n * agents if output == "tiny" else 0)
    if stored != expected or consumed != n * agents or in_flight or summary.errors:
        sys.exit(
            f"{setting}: wrong board: {stored} artifacts, {consumed} consumptions, {in_flight} in flight"
        )
    if isinstance(store, SQLiteStore):
        await store.close()
    return {
        "wall_s": round(wall, 3),
        "cpu_s": round(cpu, 3),
        "publish_s": round(published - started, 3),
        "artifacts": stored,
        "consumption_records": consumed,
        "artifacts_per_s": round(stored / wall),
        "activations_per_s": round(n * agents / wall),
        "inputs_per_s": round(n / wall),
        "publishes_per_s": round(n / (published - started)),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=1000, help="concurrent external publishes")
    parser.add_argument("--agents", type=int, default=10, help="agents subscribed to every publish")
    parser.add_argument(
        "--output", choices=("tiny", "none"), default="tiny", help="what each agent publishes"
    )
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--settings", default="memory,process,power")
    args = parser.parse_args()
    report: dict[str, Any] = {
        "n": args.n,
        "agents": args.agents,
        "output": args.output,
        "runs": args.runs,
        "load_avg_1m_before": round(os.getloadavg()[0], 2),
        "settings": {},
    }
    with tempfile.TemporaryDirectory(prefix="flock-bench-store-") as tmp:
        for setting in args.settings.split(","):
            runs = []
            for r in range(args.runs):
                folder = Path(tmp) / f"{setting}-{r}"
                folder.mkdir()
                runs.append(anyio.run(one_run, setting, args.n, args.agents, args.output, folder))
            best = min(runs, key=lambda x: x["wall_s"])
            report["settings"][setting] = {
                "best": best,
                "median_artifacts_per_s": round(statistics.median(x["artifacts_per_s"] for x in runs)),
                "median_activations_per_s": round(statistics.median(x["activations_per_s"] for x in runs)),
                "median_inputs_per_s": round(statistics.median(x["inputs_per_s"] for x in runs)),
            }
    memory = report["settings"].get("memory")
    if memory:
        for result in report["settings"].values():
            result["slowdown_vs_memory"] = round(result["best"]["wall_s"] / memory["best"]["wall_s"], 2)
            extra = result["best"]["wall_s"] - memory["best"]["wall_s"]
            result["store_us_per_activation"] = round(extra / (args.n * args.agents) * 1e6, 1)
    default = report["settings"].get("process")
    if default:
        report["target_artifacts_per_s"] = 1000
        report["meets_target"] = default["best"]["artifacts_per_s"] >= 1000
    report["load_avg_1m_after"] = round(os.getloadavg()[0], 2)
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
