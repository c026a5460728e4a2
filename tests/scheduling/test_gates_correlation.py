"""AND and count gates fill per correlation id: they never combine artifacts of different workflows."""

from __future__ import annotations

import pytest
from pydantic import BaseModel

from flock import EvalInputs, Flock, flock_type

pytestmark = pytest.mark.anyio


@flock_type(name="sched.Left")
class Left(BaseModel):
    n: int


@flock_type(name="sched.Right")
class Right(BaseModel):
    n: int


class Recorder:
    def __init__(self) -> None:
        self.calls: list[list[tuple[str, str, int]]] = []

    def __call__(self, *models: BaseModel, inputs: EvalInputs) -> None:
        self.calls.append([(a.correlation_id, a.type, a.payload["n"]) for a in inputs.artifacts])


async def test_an_and_gate_with_two_workflows_interleaved_pairs_within_each() -> None:
    flock = Flock()
    rec = Recorder()
    flock.agent("pair").consumes(Left, Right).calls(rec)
    await flock.publish(Left(n=1), correlation_id="a")
    await flock.publish(Right(n=2), correlation_id="b")  # would complete a's gate if gates ignored workflows
    await flock.publish(Left(n=3), correlation_id="b")
    await flock.publish(Right(n=4), correlation_id="a")
    summary = await flock.run_until_idle()
    assert sorted(rec.calls) == [
        [("a", "sched.Left", 1), ("a", "sched.Right", 4)],
        [("b", "sched.Left", 3), ("b", "sched.Right", 2)],
    ]
    assert summary.waiting == {}


async def test_a_partner_from_another_workflow_leaves_the_gate_waiting() -> None:
    flock = Flock()
    rec = Recorder()
    flock.agent("pair").consumes(Left, Right).calls(rec)
    await flock.publish(Left(n=1), correlation_id="a")
    await flock.publish(Right(n=2), correlation_id="b")
    summary = await flock.run_until_idle()
    assert rec.calls == []
    assert summary.waiting == {"pair": 2}  # both held, each in its own workflow's gate


async def test_a_count_gate_counts_per_workflow() -> None:
    flock = Flock()
    rec = Recorder()
    flock.agent("triple").consumes(Left, Left, Left).calls(rec)
    for i in range(6):
        await flock.publish(Left(n=i), correlation_id="even" if i % 2 == 0 else "odd")
    await flock.publish(Left(n=6), correlation_id="even")
    summary = await flock.run_until_idle()
    assert sorted(rec.calls) == [
        [("even", "sched.Left", 0), ("even", "sched.Left", 2), ("even", "sched.Left", 4)],
        [("odd", "sched.Left", 1), ("odd", "sched.Left", 3), ("odd", "sched.Left", 5)],
    ]
    assert summary.waiting == {"triple": 1}


async def test_a_mixed_gate_fires_in_declaration_order_once_complete_per_workflow() -> None:
    flock = Flock()
    rec = Recorder()
    flock.agent("mix").consumes(Left, Right, Left).calls(rec)
    await flock.publish(Right(n=10), correlation_id="w")
    await flock.publish(Left(n=1), correlation_id="w")
    await flock.publish(Left(n=99), correlation_id="other")
    await flock.publish(Left(n=2), correlation_id="w")
    await flock.run_until_idle()
    assert rec.calls == [[("w", "sched.Left", 1), ("w", "sched.Right", 10), ("w", "sched.Left", 2)]]


async def test_gate_outputs_stay_in_their_workflow() -> None:
    flock = Flock()
    (
        flock.agent("pair")
        .consumes(Left, Right)
        .publishes(Right)
        .calls(lambda left, right: Right(n=left.n + right.n))
    )
    for wf in ("a", "b"):
        await flock.publish(Left(n=1), correlation_id=wf)
        await flock.publish(Right(n=2 if wf == "a" else 20), correlation_id=wf)
    await flock.run_until_idle()
    outputs = [a for a in await flock.store.list() if a.produced_by == "pair"]
    assert sorted((a.correlation_id, a.payload["n"]) for a in outputs) == [("a", 3), ("b", 21)]
