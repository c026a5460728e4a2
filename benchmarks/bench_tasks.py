"""Human tasks: what a board full of answered tasks costs the calls that look at the open ones.

A human agent opens ``--tasks`` tasks on each store (memory, a SQLite file); all but ``--open`` are
answered. Then, in a fresh ``Flock`` on the same board (as after a restart) and in the one that did
the work, it times ``flock.tasks.list()`` and ``flock.tasks.count()`` (what every
``run_until_idle()`` of a flock with human agents pays for ``summary.open_tasks``), an idle
``run_until_idle()``, and answers per second. Prints one JSON document.

Run: ``python benchmarks/bench_tasks.py`` (``--tasks 2000 --open 10`` are the defaults).
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path
from typing import Any

import anyio
from pydantic import BaseModel

from flock import Flock, InMemoryStore, SQLiteStore


class Draft(BaseModel):
    n: int


class Approval(BaseModel):
    ok: bool


def build(store: Any) -> Flock:
    flock = Flock(store=store)
    flock.agent("reviewer").consumes(Draft).publishes(Approval).human(prompt="ok?")
    return flock


async def timed(call: Any, repeat: int = 5) -> float:
    """Median milliseconds of ``repeat`` awaited calls."""
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        await call()
        times.append((time.perf_counter() - start) * 1000)
    return round(sorted(times)[len(times) // 2], 3)


async def measure(kind: str, tasks: int, still_open: int, folder: Path) -> dict[str, Any]:
    store: Any = SQLiteStore(folder / "board.db") if kind == "sqlite" else InMemoryStore()
    flock = build(store)
    for n in range(tasks):
        await flock.publish(Draft(n=n))
    await flock.run_until_idle()
    opened = await flock.tasks.list()
    start = time.perf_counter()
    for task in opened[: tasks - still_open]:
        await flock.tasks.answer(task.id, {"ok": True})
    answer_s = time.perf_counter() - start
    await flock.run_until_idle()
    result: dict[str, Any] = {
        "answers_per_s": round((tasks - still_open) / answer_s, 1),
        "warm_list_ms": await timed(flock.tasks.list),
        "warm_count_ms": await timed(flock.tasks.count),
        "idle_run_until_idle_ms": await timed(flock.run_until_idle),
    }
    if kind == "sqlite":
        await flock.shutdown()
        await store.close()
        store = SQLiteStore(folder / "board.db")
        fresh = build(store)
        start = time.perf_counter()
        assert len(await fresh.tasks.list()) == still_open
        result["first_list_after_restart_ms"] = round((time.perf_counter() - start) * 1000, 3)
        result["then_list_ms"] = await timed(fresh.tasks.list)
        await store.close()
    return result


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--tasks", type=int, default=2000)
    parser.add_argument("--open", type=int, default=10)
    args = parser.parse_args()
    report: dict[str, Any] = {"tasks": args.tasks, "open": args.open}
    with tempfile.TemporaryDirectory() as tmp:
        for kind in ("memory", "sqlite"):
            report[kind] = await measure(kind, args.tasks, args.open, Path(tmp))
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    anyio.run(main)
