"""examples/19_dashboard.py serves a traced help desk; its dashboard shows the board and the traces
in real headless Chromium, and Ctrl-C stops it cleanly."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from cdp import CHROMIUM, Browser
from server_support import free_port, wait_until_up

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "19_dashboard.py"


@pytest.mark.skipif(
    CHROMIUM is None, reason="Debian's `chromium` is not installed (apt-get install -y chromium)"
)
def test_the_dashboard_example_serves_a_board_to_watch(tmp_path: Path) -> None:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "PYTEST"))}
    server = subprocess.Popen(
        [sys.executable, str(EXAMPLE), "--port", str(port), "--seed", "3"],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until_up(url, "ops-demo-key", timeout=60)
        with Browser(tmp_path) as browser:
            page = browser.page()
            page.navigate(f"{url}/")
            page.evaluate("document.getElementById('key').value = 'ops-demo-key'")
            page.evaluate("document.getElementById('login').submit()")
            page.wait_for("document.documentElement.dataset.ready === 'true'")
            nodes = page.evaluate(
                "Array.from(document.querySelectorAll('#graph .node')).map(n => n.dataset.key)"
            )
            assert set(nodes) == {
                "type:Ticket",
                "agent:triage",
                "type:Triaged",
                "agent:writer",
                "type:Reply",
                "agent:supervisor",
                "type:Approval",
            }
            # the three seeded tickets went through triage and the writer, and wait for the supervisor
            page.evaluate(
                "document.querySelector('#graph [data-key=\"type:Reply\"]').dispatchEvent(new Event('click'))"
            )
            page.wait_for(
                "document.querySelectorAll('#artifacts .artifact[data-type=\"Reply\"]').length === 3"
            )
            page.wait_for(  # Ticket, Triaged, Reply and the supervisor's task in each run
                "Array.from(document.querySelectorAll('#runs tr.run td:nth-child(3)'))"
                ".map(t => t.textContent).join() === '4,4,4'"
            )
            page.wait_for("document.querySelectorAll('#tasks form.task-form').length === 3")
            page.wait_for(  # each run waits for the supervisor
                "Array.from(document.querySelectorAll('#runs tr.run .pill'))"
                ".map(p => p.textContent).join() === 'waiting,waiting,waiting'"
            )
            # the operator sees the traced runs (spans reach the store in batches: refresh until they do)
            page.wait_for(
                "!!document.querySelector('#traces a')"
                " || (document.getElementById('traces-refresh').click(), false)",
                timeout=60,
            )
            page.evaluate("document.querySelector('#traces a').click()")
            page.wait_for(
                "(() => { var f = document.getElementById('trace-frame'); return f.contentDocument"
                " && f.contentDocument.documentElement.dataset.ready === 'true'"
                " && f.contentDocument.querySelector('.wf .row .name').textContent; })()"
            )
            names = page.evaluate(
                "Array.from(document.getElementById('trace-frame').contentDocument"
                ".querySelectorAll('.wf .row .name')).map(e => e.textContent)"
            )
            assert names[0] == "flock.publish Ticket" and "flock.activate writer" in names
            assert not any(name.startswith(("GET ", "POST ")) for name in names)  # no HTTP request spans

            # choosing a run narrows the traces to that run's
            run = page.evaluate("document.querySelector('#runs tr.run').dataset.run")
            page.evaluate("document.querySelector('#runs tr.run').click()")
            page.wait_for(
                f"document.getElementById('traces-of').textContent === 'of run {run[:8]}'"
                " && document.querySelectorAll('#traces tbody tr').length === 1"
                " || (document.getElementById('traces-refresh').click(), false)",
                timeout=60,
            )
            shown = page.evaluate("document.querySelector('#traces a').textContent")
        with httpx.Client(base_url=url, headers={"Authorization": "Bearer ops-demo-key"}) as ops:
            [listed] = ops.get("/traces", params={"correlation_id": run}).json()["items"]
            assert listed["trace_id"].startswith(shown)
            spans = ops.get(f"/traces/{listed['trace_id']}").json()["spans"]
            workflows = {s["attributes"].get("flock.correlation_id") for s in spans} - {None}
            assert workflows == {run}
            assert ops.get("/traces", params={"correlation_id": "no-such-run"}).json()["items"] == []
    finally:
        server.send_signal(signal.SIGINT)
        out, err = server.communicate(timeout=60)
    assert server.returncode == 0, err
    assert out.startswith(f"dashboard: {url}/  (keys: acme-demo-key, ops-demo-key)")
