"""Gates, joins and batches on a shared board, run by ``flock worker stateful_app:flock``.

Each task ``i`` is a ``Left`` and a ``Right`` in workflow ``wf-i`` (published from outside).
``pair`` is an AND gate (one Left and one Right of a workflow), ``match`` joins a Left and a Right
by ``n`` across workflows, ``bundle`` takes Lefts in batches of up to 4 across workflows (a batch
is delivered partial when the router's run is idle). Every execution of an agent
function appends ``agent input-ids pid`` to ``FLOCK_RUN_LOG`` (when set): a test counts how often
each group ran, and where.
"""

from __future__ import annotations

import os
from datetime import timedelta
from typing import Any
from uuid import UUID, uuid5

import anyio
from pydantic import BaseModel

from flock import Artifact, BatchSpec, Flock, JoinSpec, flock_type

NAMESPACE = UUID("6a1d7c3e-2b9f-4e0a-8c5d-1f2e3d4c5b6a")


@flock_type(name="stateful.Left")
class Left(BaseModel):
    n: int


@flock_type(name="stateful.Right")
class Right(BaseModel):
    n: int


@flock_type(name="stateful.Pair")
class Pair(BaseModel):
    n: int


@flock_type(name="stateful.Match")
class Match(BaseModel):
    n: int


@flock_type(name="stateful.Bundle")
class Bundle(BaseModel):
    ns: list[int]


def _ran(agent: str, key: str) -> None:
    log = os.environ.get("FLOCK_RUN_LOG")
    if log:
        with open(log, "a") as f:  # one short append: atomic between processes
            f.write(f"{agent} {key} {os.getpid()}\n")


async def _latency() -> None:
    await anyio.sleep(float(os.environ.get("WORKER_APP_DELAY", "0.01")))


async def pair(left: Left, right: Right) -> Pair:
    _ran("pair", f"{left.n}+{right.n}")
    await _latency()
    return Pair(n=left.n)


async def match(left: Left, right: Right) -> Match:
    _ran("match", f"{left.n}+{right.n}")
    await _latency()
    return Match(n=left.n)


async def bundle(*lefts: Left) -> Bundle:
    ns = sorted(x.n for x in lefts)
    _ran("bundle", ",".join(map(str, ns)))
    await _latency()
    return Bundle(ns=ns)


def build(store: Any = None) -> Flock:
    flock = Flock(store=store) if store is not None else Flock()
    flock.agent("pair").consumes(Left, Right).publishes(Pair).calls(pair)
    flock.agent("match").consumes(
        Left, Right, join=JoinSpec(by=lambda m: m.n, within=timedelta(minutes=10))
    ).publishes(Match).calls(match)
    flock.agent("bundle").consumes(Left, batch=BatchSpec(size=4, per_correlation=False)).publishes(
        Bundle
    ).calls(bundle)
    return flock


flock = build()  # in memory: ``flock worker stateful_app:flock --store postgresql://...`` moves it


def task(i: int) -> list[Artifact]:
    return [
        Artifact(
            id=uuid5(NAMESPACE, f"{side}-{i}"),
            type=f"stateful.{side}",
            payload={"n": i},
            correlation_id=f"wf-{i}",
        )
        for side in ("Left", "Right")
    ]


def expected_runs(n: int) -> dict[str, set[str]]:
    """What each agent must run exactly once for tasks ``0..n-1``."""
    return {
        "pair": {f"{i}+{i}" for i in range(n)},
        "match": {f"{i}+{i}" for i in range(n)},
        "bundle_members": {str(i) for i in range(n)},
    }
