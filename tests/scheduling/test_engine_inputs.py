"""Batched and joined inputs reach the DSPy engine (offline model) in one call each."""

from __future__ import annotations

import pytest
from pydantic import BaseModel

from flock import BatchSpec, Flock, JoinSpec, flock_type, inspect_signature
from flock.testing import forbid_real_model_calls

pytestmark = pytest.mark.anyio


@flock_type(name="sched.Ticket")
class Ticket(BaseModel):
    title: str


@flock_type(name="sched.Digest")
class Digest(BaseModel):
    text: str


@flock_type(name="sched.Bug")
class Bug(BaseModel):
    ticket: int


@flock_type(name="sched.Fix")
class Fix(BaseModel):
    ticket: int


@flock_type(name="sched.ReleaseNote")
class ReleaseNote(BaseModel):
    note: str


async def test_a_batch_and_a_join_each_make_one_engine_call() -> None:
    with forbid_real_model_calls():
        async with Flock("offline") as flock:
            digest = flock.agent("digest").consumes(Ticket, batch=BatchSpec(size=3)).publishes(Digest)
            notes = (
                flock.agent("notes")
                .consumes(Bug, Fix, join=JoinSpec(by=lambda m: m.ticket, within=5))
                .publishes(ReleaseNote)
            )
            tickets = await flock.publish_many([Ticket(title=f"t{i}") for i in range(3)], correlation_id="w")
            fix = await flock.publish(Fix(ticket=7))
            bug = await flock.publish(Bug(ticket=7))
            summary = await flock.run_until_idle()

    assert inspect_signature(digest.spec).spec == "tickets: list[Ticket] -> digest: Digest"
    assert inspect_signature(notes.spec).spec == "bug: Bug, fix: Fix -> release_note: ReleaseNote"
    assert summary.ok and summary.agents_run == {"digest": 1, "notes": 1}
    assert summary.metrics["model_calls"] == 2
    by_type = {a.type: a for a in await flock.store.list() if a.produced_by != "external"}
    assert by_type["sched.Digest"].consumed_from == tuple(t.id for t in tickets)
    assert by_type["sched.ReleaseNote"].consumed_from == (bug.id, fix.id)  # declaration order
