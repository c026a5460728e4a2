"""The flock the server tests serve: tickets are triaged by a function agent.

``FLOCK_TEST_DB`` set: the board is that SQLite file (the restart tests use it).
"""

from __future__ import annotations

import os

from pydantic import BaseModel, Field

from flock import ApiKeys, Flock, Principal, SQLiteStore, flock_type


@flock_type
class Ticket(BaseModel):
    title: str = Field(min_length=1, max_length=200)
    priority: int = Field(default=3, ge=1, le=5)


@flock_type
class Triaged(BaseModel):
    title: str
    urgent: bool


KEYS = {
    "key-tenant-a": Principal(tenant="a", scopes={"publish", "read"}),
    "key-tenant-b": Principal(tenant="b", scopes={"publish", "read"}),
    "key-a-readonly": Principal(tenant="a", scopes={"read"}),
    "key-a-publish-only": Principal(tenant="a", scopes={"publish"}),
    "key-operator": Principal(scopes={"admin"}),
}
AUTH = ApiKeys(KEYS)


def triage(ticket: Ticket) -> Triaged:
    return Triaged(title=ticket.title, urgent=ticket.priority <= 2)


def make_flock() -> Flock:
    path = os.environ.get("FLOCK_TEST_DB")
    flock = Flock(store=SQLiteStore(path) if path else None)
    flock.agent("triage").consumes(Ticket).publishes(Triaged).calls(triage)
    for tenant in ("a", "b"):  # a tenant's tickets are only visible to that tenant's agents
        flock.agent(f"triage-{tenant}").tenant(tenant).consumes(Ticket).publishes(Triaged).calls(triage)
    return flock


flock = make_flock
