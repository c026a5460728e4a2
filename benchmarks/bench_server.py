"""The REST API under load: publishes per second over HTTP from concurrent clients, their latency,
and Server-Sent Events fan-out to many subscribers.

    .venv/bin/python benchmarks/bench_server.py                 # 50 clients, 100 subscribers
    .venv/bin/python benchmarks/bench_server.py --publishes 2000 --clients 50 --subscribers 100

The server is a separate process (``flock.serve`` on 127.0.0.1, in-memory board, one function
agent that consumes every ticket, so each publish also runs an activation; ``--no-agent``: nothing
consumes them, the HTTP and publish path alone). The publishing clients are raw keep-alive
connections in this process (``--client httpx`` uses httpx, which costs about 1 ms of CPU per
request and on a small machine sets the pace itself); the SSE subscribers use httpx. Clients and
server share the machine: on a small one the clients' CPU is part of the numbers. Prints one JSON
object:

- ``publish``: ``per_s`` (publishes per second over the whole run), ``p50_ms``/``p99_ms``/``max_ms``
  per request, ``errors`` (any answer other than 201, or a transport error);
- ``fanout``: ``subscribers`` connected to ``GET /events``, ``events`` published while they listen,
  ``delivered`` (ticket events received in total), ``lost`` (expected minus delivered, for
  subscribers that keep up), ``seconds`` from the first publish until every subscriber had every
  event, ``deliveries_per_s``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import statistics
import subprocess
import sys
import time
from typing import Any

import anyio
import httpx
from pydantic import BaseModel

from flock import ApiKeys, Flock, Principal, flock_type

KEY = "bench-key-123456"


@flock_type
class Ticket(BaseModel):
    title: str
    priority: int = 3


@flock_type
class Triaged(BaseModel):
    title: str
    urgent: bool


def serve(port: int, agent: bool) -> None:
    flock = Flock()
    if agent:
        flock.agent("triage").tenant("bench").consumes(Ticket).publishes(Triaged).calls(
            lambda t: Triaged(title=t.title, urgent=t.priority <= 2)
        )
    else:  # Ticket is registered, nothing consumes it: the HTTP and publish path alone
        flock.agent("idle").consumes(Triaged).publishes(Ticket).calls(lambda t: Ticket(title=t.title))
    auth = ApiKeys({KEY: Principal(tenant="bench", scopes={"publish", "read"})})
    anyio.run(lambda: flock.serve("127.0.0.1", port, auth=auth, log_level="error"))


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def wait_up(client: httpx.AsyncClient) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            if (await client.get("/health")).status_code == 200:
                return
        except httpx.TransportError:
            await anyio.sleep(0.1)
    raise TimeoutError("the server did not start")


class RawClient:
    """A minimal HTTP/1.1 keep-alive client on asyncio streams: a load generator, not a library.

    httpx costs about a millisecond of CPU per request, so on a small machine it, not the server,
    would set the pace; this client spends a few tens of microseconds per request.
    """

    def __init__(self, port: int) -> None:
        self.port = port
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def post(self, path: str, body: dict[str, Any]) -> int:
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection("127.0.0.1", self.port)
        assert self.reader is not None
        data = json.dumps(body).encode()
        head = (
            f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {KEY}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(data)}\r\n\r\n"
        )
        self.writer.write(head.encode() + data)
        status_line = await self.reader.readline()
        length = 0
        while True:
            line = await self.reader.readline()
            if line in (b"\r\n", b""):
                break
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value)
        await self.reader.readexactly(length)
        return int(status_line.split()[1])

    async def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            await self.writer.wait_closed()


async def publishes(client: httpx.AsyncClient | int, total: int, clients: int) -> dict[str, Any]:
    """``total`` publishes from ``clients`` concurrent connections: httpx, or raw ones to a port."""
    latencies: list[float] = []
    errors = 0
    counter = iter(range(total))

    async def worker() -> None:
        nonlocal errors
        raw = RawClient(client) if isinstance(client, int) else None
        for i in counter:
            body = {"type": "Ticket", "payload": {"title": f"t{i}", "priority": 1 + i % 5}}
            t0 = time.perf_counter()
            try:
                if raw is not None:
                    ok = await raw.post("/artifacts", body) == 201
                else:
                    ok = (await client.post("/artifacts", json=body)).status_code == 201  # type: ignore[union-attr]
            except (httpx.HTTPError, OSError, asyncio.IncompleteReadError, ValueError):
                ok = False
            latencies.append(time.perf_counter() - t0)
            errors += not ok
        if raw is not None:
            await raw.close()

    started = time.perf_counter()
    async with anyio.create_task_group() as tg:
        for _ in range(clients):
            tg.start_soon(worker)
    elapsed = time.perf_counter() - started
    ms = sorted(x * 1000 for x in latencies)
    return {
        "clients": clients,
        "publishes": total,
        "seconds": round(elapsed, 3),
        "per_s": round(total / elapsed, 1),
        "p50_ms": round(statistics.median(ms), 2),
        "p99_ms": round(ms[min(len(ms) - 1, int(len(ms) * 0.99))], 2),
        "max_ms": round(ms[-1], 2),
        "errors": errors,
    }


async def fanout(base: str, subscribers: int, events: int) -> dict[str, Any]:
    headers = {"Authorization": f"Bearer {KEY}"}
    limits = httpx.Limits(max_connections=subscribers + 10)
    received = [0] * subscribers
    ready = [anyio.Event() for _ in range(subscribers)]
    done = anyio.Event()
    finished = 0

    async def listen(n: int, client: httpx.AsyncClient) -> None:
        nonlocal finished
        async with client.stream("GET", "/events", params={"buffer": events * 4}) as response:
            async for line in response.aiter_lines():
                if line == ": subscribed":
                    ready[n].set()
                elif line.startswith("data: ") and '"type":"Ticket"' in line:
                    received[n] += 1
                    if received[n] == events:
                        finished += 1
                        if finished == subscribers:
                            done.set()
                        return

    client = httpx.AsyncClient(base_url=base, headers=headers, limits=limits, timeout=120)
    async with client, anyio.create_task_group() as tg:
        for n in range(subscribers):
            tg.start_soon(listen, n, client)
        for event in ready:
            await event.wait()
        started = time.perf_counter()
        for i in range(events):
            await client.post("/artifacts", json={"type": "Ticket", "payload": {"title": f"f{i}"}})
        with anyio.move_on_after(120):
            await done.wait()
        elapsed = time.perf_counter() - started
        tg.cancel_scope.cancel()
    delivered = sum(received)
    return {
        "subscribers": subscribers,
        "events": events,
        "delivered": delivered,
        "lost": subscribers * events - delivered,
        "seconds": round(elapsed, 3),
        "deliveries_per_s": round(delivered / elapsed, 1),
    }


async def main(args: argparse.Namespace) -> dict[str, Any]:
    port = free_port()
    server = await anyio.to_thread.run_sync(
        lambda: subprocess.Popen(
            [sys.executable, __file__, "--serve", str(port), *(["--no-agent"] if args.no_agent else [])]
        )
    )
    base = f"http://127.0.0.1:{port}"
    try:
        limits = httpx.Limits(max_connections=args.clients + 10)
        headers = {"Authorization": f"Bearer {KEY}"}
        async with httpx.AsyncClient(base_url=base, headers=headers, limits=limits, timeout=60) as client:
            await wait_up(client)
            target: httpx.AsyncClient | int = client if args.client == "httpx" else port
            await publishes(target, min(200, args.publishes), args.clients)  # warm-up
            publish = await publishes(target, args.publishes, args.clients)
            publish["client"] = args.client
        fan = await fanout(base, args.subscribers, args.events)
    finally:
        server.terminate()
        await anyio.to_thread.run_sync(lambda: server.wait(timeout=30))
    return {"cpus": os.cpu_count(), "agent": not args.no_agent, "publish": publish, "fanout": fan}


if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--publishes", type=int, default=2000)
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--subscribers", type=int, default=100)
    parser.add_argument("--events", type=int, default=100, help="publishes during the fan-out run")
    parser.add_argument("--no-agent", action="store_true", help="no agent consumes the published tickets")
    parser.add_argument(
        "--client",
        choices=("raw", "httpx"),
        default="raw",
        help="load generator for the publish run: raw keep-alive sockets (default) or httpx",
    )
    parser.add_argument("--serve", type=int, metavar="PORT", help=argparse.SUPPRESS)
    options = parser.parse_args()
    if options.serve:
        serve(options.serve, agent=not options.no_agent)
    else:
        print(json.dumps(anyio.run(main, options), indent=2))
