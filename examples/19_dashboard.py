"""The live dashboard: a help desk served with tracing on, to watch in a browser.

    .venv/bin/python examples/19_dashboard.py              # serves http://127.0.0.1:8000/ until Ctrl-C

Open http://127.0.0.1:8000/ and log in with one of the demo keys it prints (never use such keys
outside a demo): ``acme-demo-key`` sees tenant acme's board, ``ops-demo-key`` is an operator that
also sees the traces. Publish a ticket from another terminal and watch it flow through the graph::

    curl -s -X POST localhost:8000/artifacts -H 'Authorization: Bearer acme-demo-key' \\
      -H 'Content-Type: application/json' -d '{"type": "Ticket", "payload": {"title": "VPN down"}}'

A triage function routes each ticket; a writer on the built-in offline model drafts a reply, so the
trace page has model calls (content capture is on: prompts, answers and payloads are recorded); a
supervisor (a human agent) approves each reply: answer its task in the dashboard's form.
Options: ``--port N``, ``--seconds S`` (stop after S seconds), ``--seed N`` (tickets published at
the start, default 3).
"""

from __future__ import annotations

import argparse
import contextlib

import anyio
from pydantic import BaseModel, Field

from flock import ApiKeys, Flock, FlockError, Principal, TenantVisibility, flock_type
from flock.tracing import enable_tracing


@flock_type
class Ticket(BaseModel):
    title: str = Field(min_length=1, max_length=200)
    priority: int = Field(default=3, ge=1, le=5)


@flock_type
class Triaged(BaseModel):
    title: str
    team: str
    urgent: bool


@flock_type
class Reply(BaseModel):
    """A short answer to the customer."""

    text: str


@flock_type
class Approval(BaseModel):
    send: bool
    note: str = Field(default="", max_length=200, description="for the customer, if any")


def triage(ticket: Ticket) -> Triaged:
    team = "network" if "vpn" in ticket.title.lower() else "desk"
    return Triaged(title=ticket.title, team=team, urgent=ticket.priority <= 2)


def build() -> Flock:
    flock = Flock("offline")
    flock.agent("triage").tenant("acme").consumes(Ticket).publishes(Triaged).calls(triage)
    flock.agent("writer").tenant("acme").description("Draft a friendly reply to the customer.").consumes(
        Triaged
    ).publishes(Reply)
    flock.agent("supervisor").tenant("acme").consumes(Reply).publishes(Approval).human(
        prompt="Send this reply to the customer?"
    )
    return flock


AUTH = ApiKeys(
    {
        "acme-demo-key": Principal(tenant="acme", scopes={"publish", "read", "answer"}),
        "ops-demo-key": Principal(scopes={"admin"}),
    }
)
SEED = ["VPN down in Berlin", "printer on fire", "new laptop for Ada", "password reset", "coffee machine"]


async def main(port: int, seconds: float | None, seed: int) -> None:
    enable_tracing(capture_content=True)  # .flock/traces.db: the dashboard's trace panel reads it
    flock = build()
    for i, title in enumerate(SEED[:seed]):
        ticket = Ticket(title=title, priority=1 + i % 3)
        await flock.publish(ticket, visibility=TenantVisibility(tenant_id="acme"))
    print(f"dashboard: http://127.0.0.1:{port}/  (keys: acme-demo-key, ops-demo-key)", flush=True)
    with anyio.move_on_after(seconds if seconds is not None else float("inf")):
        await flock.serve("127.0.0.1", port, auth=AUTH, log_level="error")
    await flock.shutdown()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--seconds", type=float, default=None)
    parser.add_argument("--seed", type=int, default=3)
    args = parser.parse_args()
    try:
        with contextlib.suppress(KeyboardInterrupt):  # Ctrl-C: stop serving, quietly
            anyio.run(main, args.port, args.seconds, args.seed)
    except* FlockError as failed:  # the server extra missing, the port taken: say so in one line
        raise SystemExit(f"19_dashboard.py: {failed.exceptions[0]}") from None
