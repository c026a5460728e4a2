"""A small pipeline for the worker tests and benchmarks, run by ``flock worker worker_app:flock``.

``split`` turns a Task into two Steps, ``solve`` turns each Step into a Result (after
``WORKER_APP_DELAY`` seconds: the model latency), ``tally`` consumes Results and publishes nothing,
``pair`` is a count gate that waits for the two Results of a task (routed by the board's router
when workers share the board) and publishes a Pair.
Every execution of an agent function appends ``agent input-id pid`` to the file named by
``FLOCK_RUN_LOG`` (when set), so a test can count how often each activation ran, and where.

    python worker_app.py publish DSN N    # publish N tasks (fixed ids) and run until idle
"""

from __future__ import annotations

import os
import sys
from typing import Any
from uuid import UUID, uuid5

import anyio
from pydantic import BaseModel

from flock import Artifact, Flock, flock_type

NAMESPACE = UUID("5d0c2f0e-7c1a-4a4e-b1f7-2f3d8a9e6c11")
OUTPUTS = {"split": 2, "solve": 1, "tally": 0, "pair": 1}


@flock_type(name="workers.Task")
class Task(BaseModel):
    n: int


@flock_type(name="workers.Step")
class Step(BaseModel):
    n: int
    k: int


@flock_type(name="workers.Result")
class Result(BaseModel):
    n: int
    k: int
    value: int


def _ran(agent: str, key: str) -> None:
    log = os.environ.get("FLOCK_RUN_LOG")
    if log:
        with open(log, "a") as f:  # one short append: atomic between processes
            f.write(f"{agent} {key} {os.getpid()}\n")


async def split(task: Task) -> list[Step]:
    _ran("split", f"{task.n}")
    await anyio.sleep(0.001)
    return [Step(n=task.n, k=0), Step(n=task.n, k=1)]


async def solve(step: Step) -> Result:
    _ran("solve", f"{step.n}/{step.k}")
    await anyio.sleep(float(os.environ.get("WORKER_APP_DELAY", "0.01")))
    return Result(n=step.n, k=step.k, value=(step.n * 10 + step.k) ** 2)


async def tally(result: Result) -> None:
    _ran("tally", f"{result.n}/{result.k}")


@flock_type(name="workers.Pair")
class Pair(BaseModel):
    n: int
    total: int


async def pair(first: Result, second: Result) -> Pair:
    _ran("pair", f"{first.n}")
    return Pair(n=first.n, total=first.value + second.value)


@flock_type(name="workers.Job")
class Job(BaseModel):
    n: int


@flock_type(name="workers.Answer")
class Answer(BaseModel):
    n: int


async def think(job: Job) -> Answer:
    delay = float(os.environ.get("WORKER_APP_DELAY", "0.05"))
    if delay:
        await anyio.sleep(delay)  # the model's latency
    return Answer(n=job.n)


def build_bench(store: Any = None) -> Flock:
    """One agent, one activation per Job: what benchmarks/bench_workers.py measures."""
    flock = Flock(store=store) if store is not None else Flock()
    flock.agent("think").consumes(Job).publishes(Answer).calls(think).max_concurrency(64)
    return flock


def build(store: Any = None) -> Flock:
    flock = Flock(store=store) if store is not None else Flock()
    flock.agent("split").consumes(Task).publishes(Step, fan_out=2).calls(split)
    flock.agent("solve").consumes(Step).publishes(Result).calls(solve)
    flock.agent("tally").consumes(Result).calls(tally)
    flock.agent("pair").consumes(Result, Result).publishes(Pair).calls(pair)
    return flock


flock = build()  # in memory: ``flock worker worker_app:flock --store postgresql://...`` moves it
bench = build_bench()


def task(i: int) -> Artifact:
    return Artifact(
        id=uuid5(NAMESPACE, f"task-{i}"),
        type="workers.Task",
        payload={"n": i},
        correlation_id=f"wf-{i}",
    )


def expected_runs(n: int) -> dict[str, set[str]]:
    return {
        "split": {f"{i}" for i in range(n)},
        "solve": {f"{i}/{k}" for i in range(n) for k in (0, 1)},
        "tally": {f"{i}/{k}" for i in range(n) for k in (0, 1)},
        "pair": {f"{i}" for i in range(n)},
    }


async def publish(dsn: str, n: int) -> None:
    from flock import PostgresStore

    board = build(PostgresStore(dsn))
    for i in range(n):
        await board.publish(task(i))
    print("PUBLISHED", flush=True)
    await board.run_until_idle()
    await board.store.close()
    print("DONE", flush=True)


if __name__ == "__main__":
    if sys.argv[1] == "publish":
        anyio.run(publish, sys.argv[2], int(sys.argv[3]))
