"""Batches: an agent that receives its inputs in lists.

    python examples/05_batches.py

A ``sorter`` takes shipping labels in batches of three per warehouse (batches are kept per
workflow); an ``auditor`` takes labels of every warehouse together, four at a time or whatever
arrived within a minute of the first.

Part 1: five labels for warehouse A, two for B. Full batches fire at once; when the run has nothing
else to do, the incomplete ones are delivered as they are, so nothing is left behind.

Part 2: the same with ``Flock(flush_partial_batches=False)``: incomplete batches wait (the summary
counts them) until the auditor's one-minute timeout delivers its batch. A ManualClock makes the
minute pass instantly.
"""

from __future__ import annotations

from datetime import timedelta

import anyio
from pydantic import BaseModel

from flock import BatchSpec, Flock, ManualClock, Until, flock_type


@flock_type
class Label(BaseModel):
    parcel: str


@flock_type
class SortRun(BaseModel):
    parcels: list[str]


@flock_type
class Audit(BaseModel):
    parcels: list[str]


def sort(*labels: Label) -> SortRun:
    return SortRun(parcels=[label.parcel for label in labels])


def audit(*labels: Label) -> Audit:
    return Audit(parcels=[label.parcel for label in labels])


def build(flock: Flock) -> None:
    flock.agent("sorter").consumes(Label, batch=BatchSpec(size=3)).publishes(SortRun).calls(sort)
    (
        flock.agent("auditor")
        .consumes(Label, batch=BatchSpec(size=4, timeout=timedelta(minutes=1), per_correlation=False))
        .publishes(Audit)
        .calls(audit)
    )


async def publish_labels(flock: Flock) -> None:
    await flock.publish_many([Label(parcel=f"A{i}") for i in range(1, 6)], correlation_id="warehouse-A")
    await flock.publish_many([Label(parcel=f"B{i}") for i in range(1, 3)], correlation_id="warehouse-B")


async def show(flock: Flock) -> None:
    for artifact in await flock.store.list():
        if artifact.produced_by != "external":
            who, kind, corr = artifact.produced_by, artifact.type, artifact.correlation_id
            print(f"  {who:>8} → {kind:<8} {corr:<12} {artifact.payload['parcels']}")


async def main() -> None:
    print("Part 1: partial batches are flushed at idle")
    async with Flock(clock=ManualClock()) as flock:
        build(flock)
        await publish_labels(flock)
        summary = await flock.run_until_idle()
        await show(flock)
        print(summary, end="\n\n")

    print("Part 2: flush_partial_batches=False")
    clock = ManualClock()
    async with Flock(clock=clock, flush_partial_batches=False) as flock:
        build(flock)
        await publish_labels(flock)
        summary = await flock.run_until_idle()
        await show(flock)
        print(summary)
        print(f"  still waiting: {summary.waiting}")
        # The auditor's timeout is a passive deadline: run_until waits for it (instantly here).
        await flock.run_until(Until.artifact_count(Audit).at_least(2), timeout=5)
        summary = await flock.run_until_idle()
        print(f"after the auditor's timeout (clock at +{clock.monotonic():.0f}s):")
        await show(flock)
        print(summary)


if __name__ == "__main__":
    anyio.run(main)
