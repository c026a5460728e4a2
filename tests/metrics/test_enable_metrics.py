"""enable_metrics(): a global meter provider that keeps Flock's metrics readable, and OTLP export.

OpenTelemetry allows one global meter provider per process (the suite installs its own), so each
scenario runs in a fresh interpreter."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import textwrap
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, ClassVar

ROOT = Path(__file__).resolve().parents[2]


def _python(code: str, env: dict[str, str] | None = None) -> dict[str, Any]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "PYTEST"))}
    done = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        cwd=ROOT,
        env={**clean, **(env or {})},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


RUN = """
import asyncio, json
from pydantic import BaseModel
from flock import Flock, flock_type
from flock.tracing import MetricsSetupError, enable_metrics, flush_metrics, metrics_snapshot

@flock_type
class Question(BaseModel):
    text: str

@flock_type
class Answer(BaseModel):
    text: str

async def main():
    provider = enable_metrics()
    assert enable_metrics() is provider  # same arguments: nothing changes
    try:
        enable_metrics(console=True)
        again = "allowed"
    except MetricsSetupError as exc:
        again = str(exc)
    flock = Flock()
    flock.agent("a").consumes(Question).publishes(Answer)
    await flock.publish_many([Question(text=str(i)) for i in range(4)])
    summary = await flock.run_until_idle()
    flushed = flush_metrics()
    snap = metrics_snapshot()
    [duration] = snap["gen_ai.client.operation.duration"]
    tokens = {r["attributes"]["gen_ai.token.type"]: r["count"] for r in snap["gen_ai.client.token.usage"]}
    print(json.dumps({"count": duration["count"], "attributes": duration["attributes"], "tokens": tokens,
                      "again": again, "flushed": flushed, "summary_calls": summary.latency["offline"].calls}))

asyncio.run(main())
"""


def test_enable_metrics_collects_flocks_metrics_locally() -> None:
    got = _python(RUN)
    assert got["count"] == 4 == got["summary_calls"]
    assert got["attributes"]["gen_ai.request.model"] == "offline"
    assert got["attributes"]["gen_ai.provider.name"] == "flock"
    assert got["tokens"] == {"input": 4, "output": 4}
    assert "one meter provider per process" in got["again"]
    assert got["flushed"] is True


class _Collector(BaseHTTPRequestHandler):
    received: ClassVar[list[tuple[str, bytes]]] = []

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        _Collector.received.append((self.path, body))
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        return None


def test_metrics_go_to_an_otlp_collector() -> None:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Collector)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        endpoint = f"http://127.0.0.1:{server.server_address[1]}"
        got = _python(RUN, {"OTEL_EXPORTER_OTLP_ENDPOINT": endpoint})
    finally:
        server.shutdown()
        server.server_close()
    assert got["flushed"] is True
    paths = [path for path, _ in _Collector.received]
    assert "/v1/metrics" in paths
    body = b"".join(b for path, b in _Collector.received if path == "/v1/metrics")
    assert b"gen_ai.client.operation.duration" in body and b"gen_ai.client.token.usage" in body


def test_an_installed_provider_is_not_replaced() -> None:
    got = _python(
        """
        import json
        from opentelemetry import metrics
        from opentelemetry.sdk.metrics import MeterProvider
        from flock.tracing import MetricsSetupError, enable_metrics
        metrics.set_meter_provider(MeterProvider())
        try:
            enable_metrics()
            print(json.dumps({"error": None}))
        except MetricsSetupError as exc:
            print(json.dumps({"error": str(exc)}))
        """
    )
    assert "already the global meter provider" in got["error"]


def test_the_docs_metrics_block_runs() -> None:
    """The block in docs/tracing.md installs the process-wide provider, so it runs here, alone."""
    page = (ROOT / "docs" / "tracing.md").read_text(encoding="utf-8")
    section = page.split("## Metrics", 1)[1]
    block = re.search(r"```python\n(.*?)```", section, re.DOTALL)
    assert block is not None
    code = "import asyncio\n\nasync def main():\n" + textwrap.indent(block.group(1), "    ")
    code += "\nasyncio.run(main())\nimport json; print(json.dumps({'ok': True}))\n"
    assert _python(code) == {"ok": True}
