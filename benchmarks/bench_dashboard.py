"""The dashboard in headless Chromium: how much it ships, how long it takes to show a board, and how
soon a published artifact appears on an open page.

    .venv/bin/python benchmarks/bench_dashboard.py                    # 2,000 artifacts, 30 live publishes
    .venv/bin/python benchmarks/bench_dashboard.py --board 10000 --live 50

The server runs in this process's own thread (``flock.serve`` on 127.0.0.1, in-memory board, one
function agent, so each ticket makes two artifacts); Chromium is driven over the DevTools pipe of
the tests (tests/cdp.py). Prints one JSON object:

- ``page_bytes``: the HTML, script and style sheet the page loads (the assets in the package);
- ``ready_ms``: from navigating to ``/`` (logged in) until every panel has loaded (the page sets
  ``data-ready``), with ``--board`` artifacts on the board;
- ``live``: for each of ``--live`` tickets published over HTTP while the page is open, the time
  from just before the POST until the page inserted the agent's answer (its ``Triaged`` artifact)
  into the list: ``p50_ms``, ``p90_ms``, ``max_ms``. Both ends read the same wall clock.
"""

from __future__ import annotations

import argparse
import json
import socket
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

import anyio
import httpx
from pydantic import BaseModel

from flock import ApiKeys, Flock, Principal, flock_type

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from cdp import Browser

KEY = "bench-dashboard-key"


@flock_type
class Ticket(BaseModel):
    title: str


@flock_type
class Triaged(BaseModel):
    title: str
    urgent: bool


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def serve(flock: Flock, port: int, stop: threading.Event) -> None:
    async def main() -> None:
        auth = ApiKeys({KEY: Principal(scopes={"admin"})})
        async with anyio.create_task_group() as tg:
            tg.start_soon(lambda: flock.serve("127.0.0.1", port, auth=auth, log_level="error"))
            await anyio.to_thread.run_sync(stop.wait)
            tg.cancel_scope.cancel()
        await flock.shutdown()

    anyio.run(main)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--board", type=int, default=2000, help="artifacts on the board before the page opens"
    )
    parser.add_argument("--live", type=int, default=30, help="tickets published while the page is open")
    args = parser.parse_args()

    flock = Flock()
    flock.agent("triage").consumes(Ticket).publishes(Triaged).calls(
        lambda t: Triaged(title=t.title, urgent="!" in t.title)
    )
    port, stop = free_port(), threading.Event()
    url = f"http://127.0.0.1:{port}"
    server = threading.Thread(target=serve, args=(flock, port, stop), daemon=True)
    server.start()
    headers = {"Authorization": f"Bearer {KEY}"}
    with httpx.Client(base_url=url, headers=headers, timeout=30) as client:
        while True:
            try:
                if client.get("/health").status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.05)
        for i in range(args.board // 2):  # each ticket adds its Triaged answer
            client.post("/artifacts", json={"type": "Ticket", "payload": {"title": f"ticket {i}"}})
        while client.get("/artifacts", params={"limit": 1}).json()["total"] < args.board // 2 * 2:
            time.sleep(0.1)
        page_bytes = sum(
            len(client.get(path).content)
            for path in ("/", "/static/dashboard.js", "/static/tasks.js", "/static/dashboard.css")
        )
        with tempfile.TemporaryDirectory() as profile, Browser(Path(profile)) as browser:
            page = browser.page()
            page.navigate(f"{url}/")
            page.evaluate(f"document.getElementById('key').value = {json.dumps(KEY)}")
            page.evaluate("document.getElementById('login').submit()")
            page.wait_for("document.documentElement.dataset.ready === 'true'", timeout=120)
            started = time.perf_counter()
            page.navigate(f"{url}/")
            page.wait_for("document.documentElement.dataset.ready === 'true'", timeout=120)
            ready_ms = (time.perf_counter() - started) * 1000
            page.wait_for("document.getElementById('live').textContent === 'live'")
            page.evaluate(
                "window.seen = {}; new MutationObserver(function (records) { records.forEach(function (r) {"
                " r.addedNodes.forEach(function (n) { if (n.dataset && n.dataset.type === 'Triaged')"
                " window.seen[JSON.parse(n.querySelector('pre').textContent).title] = Date.now(); }); }); })"
                ".observe(document.getElementById('artifacts'), {childList: true})"
            )
            sent: dict[str, float] = {}
            for i in range(args.live):
                title = f"live {i}"
                sent[title] = time.time() * 1000
                client.post("/artifacts", json={"type": "Ticket", "payload": {"title": title}})
                page.wait_for(f"window.seen[{json.dumps(title)}]")
            seen = page.evaluate("window.seen")
    stop.set()
    server.join(timeout=30)
    latencies = sorted(seen[t] - sent[t] for t in sent)
    print(
        json.dumps(
            {
                "board": args.board,
                "page_bytes": page_bytes,
                "ready_ms": round(ready_ms, 1),
                "live": {
                    "publishes": args.live,
                    "p50_ms": round(statistics.median(latencies), 1),
                    "p90_ms": round(latencies[int(0.9 * (len(latencies) - 1))], 1),
                    "max_ms": round(latencies[-1], 1),
                },
            }
        )
    )


if __name__ == "__main__":
    main()
