"""Take the dashboard screenshots of docs/dashboard.md with headless Chromium.

    .venv/bin/python scripts/dashboard_screenshots.py [--out docs/img]

Serves examples/19_dashboard.py on a free port (in a temporary directory, so its trace store is
fresh), logs in as the demo operator, publishes a ticket while the page is open and saves
``dashboard-login.png``, ``dashboard.png`` and ``dashboard-trace.png``. Needs Debian's ``chromium``;
the browser is driven by the DevTools-protocol client of the tests (tests/cdp.py).
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from cdp import Browser  # noqa: E402  (the tests' folder is not a package)

READY = "document.documentElement.dataset.ready === 'true'"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_up(url: str) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if (
                httpx.get(f"{url}/health", headers={"Authorization": "Bearer ops-demo-key"}).status_code
                == 200
            ):
                return
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    raise SystemExit(f"the example did not start at {url}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "img")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    with tempfile.TemporaryDirectory() as work:
        server = subprocess.Popen(
            [sys.executable, str(ROOT / "examples" / "19_dashboard.py"), "--port", str(port), "--seed", "4"],
            cwd=work,
            env={**os.environ, "LITELLM_LOCAL_MODEL_COST_MAP": "True"},
        )
        try:
            wait_up(url)
            time.sleep(3)  # let the seeded tickets' spans reach the trace store
            with Browser(Path(work), width=1280, height=860) as browser:
                page = browser.page()
                page.navigate(f"{url}/")
                page.screenshot(args.out / "dashboard-login.png")
                page.evaluate("document.getElementById('key').value = 'ops-demo-key'")
                page.evaluate("document.getElementById('login').submit()")
                page.wait_for(READY)
                httpx.post(
                    f"{url}/artifacts",
                    headers={"Authorization": "Bearer acme-demo-key"},
                    json={"type": "Ticket", "payload": {"title": "VPN down again", "priority": 1}},
                )
                page.wait_for("document.querySelectorAll('#artifacts .artifact').length >= 20")
                page.wait_for("document.querySelectorAll('#tasks form.task-form').length >= 5")
                time.sleep(1)  # the highlight of the last update fades
                page.screenshot(args.out / "dashboard.png")
                page.evaluate("document.querySelector('#traces a').click()")
                page.wait_for(
                    "(() => { var f = document.getElementById('trace-frame');"
                    " return f.contentDocument"
                    " && f.contentDocument.documentElement.dataset.ready === 'true'; })()"
                )
                page.evaluate(
                    "(() => { var d = document.getElementById('trace-frame').contentDocument;"
                    " Array.from(d.querySelectorAll('.wf .row')).find(r => r.textContent.includes('chat'))"
                    ".querySelector('.name').click(); d.getElementById('timeline').scrollIntoView(); })()"
                )
                page.evaluate("document.getElementById('trace-frame').scrollIntoView()")
                page.screenshot(args.out / "dashboard-trace.png")
        finally:
            server.send_signal(signal.SIGINT)
            server.wait(timeout=30)
    for name in ("dashboard-login.png", "dashboard.png", "dashboard-trace.png"):
        print(f"wrote {args.out / name} ({(args.out / name).stat().st_size:,} bytes)")


if __name__ == "__main__":
    main()
