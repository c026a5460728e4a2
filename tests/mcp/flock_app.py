"""The flock the ``flock mcp`` tests serve: tickets are triaged by a function agent."""

from __future__ import annotations

from pydantic import BaseModel, Field

from flock import Flock


class Ticket(BaseModel):
    title: str = Field(min_length=1, max_length=200)
    priority: int = Field(default=3, ge=1, le=5)


class Triaged(BaseModel):
    title: str
    urgent: bool


def triage(ticket: Ticket) -> Triaged:
    return Triaged(title=ticket.title, urgent=ticket.priority <= 2)


flock = Flock()
flock.agent("triage").description("Marks urgent tickets.").consumes(Ticket).publishes(Triaged).calls(triage)
# Tenant "a"'s own triage: a tenant's artifacts are seen by the tenant's agents only.
flock.agent("triage_a").tenant("a").consumes(Ticket).publishes(Triaged).calls(triage)
