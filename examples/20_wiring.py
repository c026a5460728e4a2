"""Checking the wiring before anything runs: flock.graph() and `flock check`.

    .venv/bin/python examples/20_wiring.py
    cd examples && ../.venv/bin/flock check 20_wiring:flock --inputs Ticket   # the same, from a terminal

A help desk with three things no single declaration shows: the escalation agent waits for an
`Escalation` nobody publishes, the `Survey` the closer sends goes to no agent, and the reviewer and
the fixer feed each other (a loop, which needs a way out). The graph finds each from the
declarations alone; no model is called and nothing is published. The flock is made at module level,
so `flock check` can import it.
"""

from __future__ import annotations

from pydantic import BaseModel

from flock import Flock, flock_type


@flock_type
class Ticket(BaseModel):
    text: str


@flock_type
class Fix(BaseModel):
    patch: str


@flock_type
class Review(BaseModel):
    ok: bool


@flock_type
class Escalation(BaseModel):
    reason: str


@flock_type
class Survey(BaseModel):
    question: str


flock = Flock()
flock.agent("fixer").consumes(Ticket).consumes(Review, where=lambda r: not r.ok).publishes(Fix).calls(
    lambda item: Fix(patch="try again")
)
flock.agent("reviewer").consumes(Fix).publishes(Review).calls(lambda fix: Review(ok=True))
flock.agent("closer").consumes(Review, where=lambda r: r.ok).publishes(Survey).calls(
    lambda r: Survey(question="How did we do?")
)
flock.agent("escalator").consumes(Escalation).calls(print)  # nobody publishes Escalation


def main() -> None:
    graph = flock.graph()
    print("inputs (nobody publishes them):", graph.inputs())
    print("dead ends (nobody consumes them):", graph.dead_ends())
    print("cycles:", graph.cycles())
    print("can never run when only Tickets arrive:", graph.unreachable(from_types=[Ticket]))
    print()
    print("problems, given that only Tickets come from outside:")
    for problem in graph.problems(inputs=[Ticket]):
        print("  -", problem)
    print()
    print(graph.to_mermaid())


if __name__ == "__main__":
    main()
