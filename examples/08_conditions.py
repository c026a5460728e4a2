"""Conditions: run until something is true, and hold work back until its workflow is ready.

    python examples/08_conditions.py

Three voters vote on every proposal (the cautious one skips proposals over budget). A ``chair``
consumes proposals with ``activation=When.correlation(Vote).count_at_least(3)``: a proposal waits,
deferred, not dropped, until its own workflow holds three votes. ``run_until`` stops as soon as a
condition holds; conditions count with store queries and combine with ``&``, ``|`` and ``~``.
"""

from __future__ import annotations

from collections.abc import Callable

import anyio
from pydantic import BaseModel

from flock import Context, CorrelationContext, Flock, Until, When, WorkflowError, flock_type


@flock_type
class Proposal(BaseModel):
    title: str
    budget: int


@flock_type
class Vote(BaseModel):
    voter: str
    yes: bool


@flock_type
class Decision(BaseModel):
    title: str
    approved: bool


def decide(proposal: Proposal, ctx: Context) -> Decision:
    # ctx.artifacts: the proposal's whole workflow (CorrelationContext, set on the chair below), so
    # the votes cast on it. The default context (LineageContext) shows only what an input was made
    # from, and votes are made from the proposal, not the other way round.
    votes = [a.as_model(Vote) for a in ctx.artifacts if a.is_a(Vote)]
    return Decision(title=proposal.title, approved=sum(v.yes for v in votes) >= 2)


def voter(name: str, *, threshold: int) -> Callable[[Proposal], Vote]:
    def vote(proposal: Proposal) -> Vote:
        return Vote(voter=name, yes=proposal.budget <= threshold)

    return vote


async def main() -> None:
    async with Flock() as flock:
        flock.agent("ada").consumes(Proposal).publishes(Vote).calls(voter("ada", threshold=100))
        flock.agent("bo").consumes(Proposal).publishes(Vote).calls(voter("bo", threshold=50))
        (
            flock.agent("cy")
            .consumes(Proposal, where=lambda p: p.budget <= 500)  # skips the expensive one
            .publishes(Vote)
            .calls(voter("cy", threshold=80))
        )

        (
            flock.agent("chair")
            .consumes(Proposal, activation=When.correlation(Vote).count_at_least(3))
            .publishes(Decision)
            .calls(decide)
            .with_context(CorrelationContext())
        )

        cheap = await flock.publish(Proposal(title="new kettle", budget=40))
        await flock.publish(Proposal(title="espresso machine", budget=90))
        await flock.publish(Proposal(title="roof garden", budget=900))

        first = await flock.run_until(Until.exists(Decision) & ~Until.workflow_error(), timeout=5)
        print(f"run_until(a decision and no error): {first}")
        approved = Until.any_field(Decision, field="approved", predicate=lambda ok: ok is True)
        print(f"run_until(an approved decision): {await flock.run_until(approved, timeout=5)}")
        three = Until.artifact_count(Vote, correlation_id=cheap.correlation_id).exactly(3)
        print(f"three votes on {cheap.payload['title']!r}: {await flock.run_until(three, timeout=5)}")
        everything = Until.artifact_count(Decision).at_least(3) | Until.exists(WorkflowError)
        found = await flock.run_until(everything, timeout=5)  # False: idle without it
        print(f"run_until(three decisions or an error): {found} (the roof garden got two votes only)")
        summary = await flock.run_until_idle()

        for decision in await flock.store.get_by_type(Decision):
            print(f"  {decision.title:<17} {'approved' if decision.approved else 'rejected'}")
        print(f"votes: {len(await flock.store.get_by_type(Vote))}, still deferred: {summary.deferred}")
        print()
        print(summary)


if __name__ == "__main__":
    anyio.run(main)
