"""``GET /events``: Server-Sent Events, one JSON event per message, visibility applied per key."""

from __future__ import annotations

import json
import queue
import threading
from typing import Any

import httpx


class Listener:
    """Reads one SSE stream in a thread; ``events`` receives each message's JSON."""

    def __init__(self, url: str, key: str) -> None:
        self.events: queue.Queue[dict[str, Any]] = queue.Queue()
        self.subscribed = threading.Event()
        self._client = httpx.Client(base_url=url, headers={"Authorization": f"Bearer {key}"}, timeout=30)
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()
        assert self.subscribed.wait(10), "the event stream did not start"

    def _read(self) -> None:
        try:
            with self._client.stream("GET", "/events") as response:
                assert response.headers["content-type"].startswith("text/event-stream")
                for line in response.iter_lines():
                    if line == ": subscribed":
                        self.subscribed.set()
                    elif line.startswith("data: "):
                        self.events.put(json.loads(line[len("data: ") :]))
        except httpx.HTTPError:  # the client was closed
            pass

    def until(self, predicate: Any, timeout: float = 10.0) -> list[dict[str, Any]]:
        """Events up to and including the first one ``predicate`` accepts."""
        seen = []
        while True:
            event = self.events.get(timeout=timeout)
            seen.append(event)
            if predicate(event):
                return seen

    def close(self) -> None:
        self._client.close()


def _artifact(event: dict[str, Any], type_name: str) -> bool:
    return event["kind"] == "artifact" and event["artifact"]["type"] == type_name


def test_events_stream_what_each_key_may_see(serve):
    served = serve()
    a = Listener(served.url, "key-a-readonly")
    b = Listener(served.url, "key-tenant-b")
    operator = Listener(served.url, "key-operator")
    try:
        with served.client("key-tenant-a") as pa, served.client("key-tenant-b") as pb:
            secret = pa.post("/artifacts", json={"type": "Ticket", "payload": {"title": "a only"}}).json()
            mine = pb.post("/artifacts", json={"type": "Ticket", "payload": {"title": "b's"}}).json()
        seen_a = a.until(lambda e: _artifact(e, "Triaged"))
        assert seen_a[0] == {"kind": "artifact", "artifact": secret}
        states = [(e["agent"], e["state"]) for e in seen_a if e["kind"] == "activation"]
        assert states == [("triage-a", "started"), ("triage-a", "finished")]
        assert seen_a[-1]["artifact"]["produced_by"] == "triage-a"
        # tenant b sees its own ticket first: nothing of tenant a came before it
        seen_b = b.until(lambda e: _artifact(e, "Triaged"))
        assert seen_b[0]["artifact"]["id"] == mine["id"]
        assert "a only" not in json.dumps(seen_b)
        assert all(e.get("agent") != "triage-a" for e in seen_b)
        # an operator (admin, no tenant) sees both tenants
        triaged: list[str] = []
        seen = operator.until(
            lambda e: _artifact(e, "Triaged") and triaged.append("x") is None and len(triaged) == 2
        )
        assert {e["artifact"]["id"] for e in seen if _artifact(e, "Ticket")} == {secret["id"], mine["id"]}
    finally:
        for listener in (a, b, operator):
            listener.close()


def test_many_subscribers_each_get_every_event(serve):
    served = serve()
    listeners = [Listener(served.url, "key-tenant-a") for _ in range(5)]
    try:
        with served.client("key-tenant-a") as pa:
            sent = [
                pa.post("/artifacts", json={"type": "Ticket", "payload": {"title": f"n{i}"}}).json()["id"]
                for i in range(20)
            ]
        for listener in listeners:
            got: list[str] = []
            seen = listener.until(
                lambda e, got=got: _artifact(e, "Ticket") and got.append(1) is None and len(got) == 20
            )
            assert [e["artifact"]["id"] for e in seen if _artifact(e, "Ticket")] == sent
    finally:
        for listener in listeners:
            listener.close()
