"""A served flock: a help desk behind a REST API, two tenants, live events.

    .venv/bin/python examples/16_serve.py          # a scripted tour: server and clients in one process

or serve it and talk to it yourself (needs ``pip install 'flock[server]'``)::

    export FLOCK_API_KEYS='{"acme-key-123": {"tenant": "acme", "scopes": ["publish", "read"]}}'
    cd examples && flock serve 16_serve:flock --port 8000
    curl -s -X POST localhost:8000/artifacts -H 'Authorization: Bearer acme-key-123' \\
      -H 'Content-Type: application/json' -d '{"type": "Ticket", "payload": {"title": "VPN down"}}'

The tour starts the server on a free port, follows ``GET /events`` as tenant acme, publishes a ticket
twice with one idempotency key (published once), waits for the triage agent's answer, and shows that
the other tenant and a request without a key see nothing.
"""

from __future__ import annotations

import json
import socket

import anyio
import httpx
from pydantic import BaseModel, Field

from flock import ApiKeys, Flock, FlockError, Principal, flock_type


@flock_type
class Ticket(BaseModel):
    title: str = Field(min_length=1)
    priority: int = Field(default=3, ge=1, le=5)


@flock_type
class Triaged(BaseModel):
    title: str
    team: str
    urgent: bool


def triage(ticket: Ticket) -> Triaged:
    team = "network" if "vpn" in ticket.title.lower() else "desk"
    return Triaged(title=ticket.title, team=team, urgent=ticket.priority <= 2)


flock = Flock()
# One triage agent per tenant: a tenant's tickets are visible only to that tenant's agents.
for tenant in ("acme", "globex"):
    flock.agent(f"triage-{tenant}").tenant(tenant).consumes(Ticket).publishes(Triaged).calls(triage)

AUTH = ApiKeys(
    {
        "acme-key-123": Principal(tenant="acme", scopes={"publish", "read"}),
        "globex-key-456": Principal(tenant="globex", scopes={"publish", "read"}),
    }
)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def follow(base: str, subscribed: anyio.Event, seen: list[str]) -> None:
    """Print acme's live events until its ticket is triaged."""
    headers = {"Authorization": "Bearer acme-key-123"}
    client = httpx.AsyncClient(base_url=base, headers=headers, timeout=30)
    async with client, client.stream("GET", "/events") as response:
        async for line in response.aiter_lines():
            if line == ": subscribed":
                subscribed.set()
            if not line.startswith("data: "):
                continue
            event = json.loads(line[len("data: ") :])
            if event["kind"] == "artifact":
                seen.append(f"event: artifact {event['artifact']['type']}")
                if event["artifact"]["type"] == "Triaged":
                    return
            elif event["kind"] == "activation":
                seen.append(f"event: {event['agent']} {event['state']}")


async def tour() -> None:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    acme = {"Authorization": "Bearer acme-key-123"}
    async with anyio.create_task_group() as tg:
        tg.start_soon(lambda: flock.serve("127.0.0.1", port, auth=AUTH, log_level="error"))
        async with httpx.AsyncClient(base_url=base, headers=acme, timeout=30) as client:
            while True:  # wait for the server
                try:
                    if (await client.get("/health")).status_code == 200:
                        break
                except httpx.TransportError:
                    await anyio.sleep(0.05)
            seen: list[str] = []
            subscribed = anyio.Event()
            async with anyio.create_task_group() as listeners:
                listeners.start_soon(follow, base, subscribed, seen)
                await subscribed.wait()
                body = {
                    "type": "Ticket",
                    "payload": {"title": "VPN down", "priority": 1},
                    "idempotency_key": "t-1",
                }
                first = (await client.post("/artifacts", json=body)).json()
                again = (await client.post("/artifacts", json=body)).json()
                print(f"published {first['type']} once: same id on retry = {first['id'] == again['id']}")
            print("\n".join(seen))
            triaged = (await client.get("/artifacts", params={"type": "Triaged"})).json()
            print(f"acme sees {triaged['total']} Triaged: {triaged['items'][0]['payload']}")
            globex = {"Authorization": "Bearer globex-key-456"}
            hidden = await client.get(f"/artifacts/{first['id']}", headers=globex)
            print(f"globex asks for acme's ticket: {hidden.status_code}")
            print(f"no key: {(await client.get('/artifacts', headers={'Authorization': ''})).status_code}")
            bad = await client.post("/artifacts", json={"type": "Ticket", "payload": {"title": ""}})
            print(f"an empty title: {bad.status_code} {bad.json()['detail'][0]['loc']}")
        tg.cancel_scope.cancel()
    await flock.shutdown()


if __name__ == "__main__":
    try:
        anyio.run(tour)
    except* FlockError as failed:  # e.g. the server extra is missing: say so in one line
        raise SystemExit(f"16_serve.py: {failed.exceptions[0]}") from None
