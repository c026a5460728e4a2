"""enable_tracing() installs a global provider, so every test that calls it runs in a subprocess."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import textwrap
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import ClassVar

import pytest

from flock import ConfigurationError
from flock._core.extras import install_command
from flock._tracing.trace_query import TraceStore
from flock.tracing import CAPTURE_CONTENT_ENV, TracingSetupError, capture_content_enabled, enable_tracing

PRELUDE = """
import json, os, sys
from opentelemetry import trace
from flock.tracing import enable_tracing, disable_tracing, flush_tracing, capture_content_enabled

def run(name, n=2):
    tracer = trace.get_tracer("flock")
    with tracer.start_as_current_span(f"flock.run {name}", attributes={"flock.run.name": name}):
        for i in range(n):
            attributes = {"flock.artifact.type": "Idea"}
            with tracer.start_as_current_span("flock.publish Idea", attributes=attributes):
                pass
"""


def python(code: str, cwd: Path, **env: str) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "PYTEST"))}
    return subprocess.run(
        [sys.executable, "-c", PRELUDE + textwrap.dedent(code)],
        cwd=cwd,
        env={**clean, **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def runs(db: Path) -> list[tuple[str, int]]:
    with TraceStore(db) as store:
        return [(r.name, r.spans) for r in store.list_runs()]


def test_default_store_under_dot_flock_flushed_at_exit(tmp_path: Path) -> None:
    result = python(
        """
        provider = enable_tracing()
        assert enable_tracing() is provider            # idempotent
        assert trace.get_tracer_provider() is provider
        run("demo")                                     # no flush: the exit handler exports the batch
        """,
        tmp_path,
    )
    assert result.returncode == 0, result.stderr
    assert (result.stdout, result.stderr) == ("", "")
    assert runs(tmp_path / ".flock" / "traces.db") == [("demo", 3)]


def test_import_installs_nothing(tmp_path: Path) -> None:
    result = python(
        """
        import flock, flock.tracing, flock.cli
        print(type(trace.get_tracer_provider()).__name__)
        print(sorted(m for m in sys.modules if m.startswith("opentelemetry.exporter")))
        """,
        tmp_path,
        OTEL_EXPORTER_OTLP_ENDPOINT="http://127.0.0.1:9",
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split("\n")[:2] == ["ProxyTracerProvider", "[]"]
    assert not (tmp_path / ".flock").exists()


def test_disable_flushes_and_enable_again_and_reconfigure(tmp_path: Path) -> None:
    result = python(
        """
        enable_tracing(store="a.db")
        run("one")
        disable_tracing()
        run("dropped")                                  # nothing exports while disabled
        enable_tracing(store="a.db")
        run("two")
        assert flush_tracing()
        enable_tracing(store="b.db")                    # new configuration: a.db is flushed and closed
        run("three")
        """,
        tmp_path,
    )
    assert result.returncode == 0, result.stderr
    assert runs(tmp_path / "a.db") == [("two", 3), ("one", 3)]
    assert runs(tmp_path / "b.db") == [("three", 3)]


def test_a_span_open_while_tracing_is_reconfigured_reaches_the_new_exporters(tmp_path: Path) -> None:
    result = python(
        """
        enable_tracing(store="a.db")
        tracer = trace.get_tracer("flock")
        span = tracer.start_span("flock.run across", attributes={"flock.run.name": "across"})
        enable_tracing(store="b.db")
        span.end()
        assert flush_tracing()
        """,
        tmp_path,
    )
    assert result.returncode == 0, result.stderr
    assert runs(tmp_path / "a.db") == []
    assert runs(tmp_path / "b.db") == [("across", 1)]


def test_a_forked_child_exports_its_own_spans(tmp_path: Path) -> None:
    result = python(
        """
        enable_tracing(store="t.db")
        run("parent")
        child = os.fork()
        if child == 0:                                  # the child: spans go out on its own export thread
            import sqlite3, time
            run("child")                                # no flush: wait for the thread to write them
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline:
                with sqlite3.connect("t.db") as db:
                    if db.execute("SELECT 1 FROM spans WHERE name = 'flock.run child'").fetchone():
                        os._exit(0)
                time.sleep(0.05)
            os._exit(1)
        _, status = os.waitpid(child, 0)
        assert os.waitstatus_to_exitcode(status) == 0
        run("parent again")
        """,
        tmp_path,
        OTEL_BSP_SCHEDULE_DELAY="50",
    )
    assert result.returncode == 0, result.stderr
    assert sorted(runs(tmp_path / "t.db")) == [("child", 3), ("parent", 3), ("parent again", 3)]


def test_joins_an_application_provider_instead_of_replacing_it(tmp_path: Path) -> None:
    result = python(
        """
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import SimpleSpanProcessor
        from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
        mine = TracerProvider()
        memory = InMemorySpanExporter()
        mine.add_span_processor(SimpleSpanProcessor(memory))
        trace.set_tracer_provider(mine)
        assert enable_tracing(store="t.db") is mine
        run("shared")
        print(len(memory.get_finished_spans()))
        """,
        tmp_path,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "3"
    assert runs(tmp_path / "t.db") == [("shared", 3)]


def test_console_exporter_prints_spans(tmp_path: Path) -> None:
    result = python(
        """
        enable_tracing(store=None, console=True, service_name="my-service")
        run("shown", n=1)
        disable_tracing()
        """,
        tmp_path,
    )
    assert result.returncode == 0, result.stderr
    assert '"name": "flock.run shown"' in result.stdout
    assert '"service.name": "my-service"' in result.stdout
    assert not (tmp_path / ".flock").exists()


def test_capture_content_setting_wins_over_the_environment(tmp_path: Path) -> None:
    result = python(
        """
        print(capture_content_enabled())
        enable_tracing(store="t.db", capture_content=False)
        print(capture_content_enabled())
        enable_tracing(store="t.db", capture_content=None)
        print(capture_content_enabled())
        """,
        tmp_path,
        **{CAPTURE_CONTENT_ENV: "true"},
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["True", "False", "True"]


@pytest.mark.parametrize(
    ("value", "expected"),
    [("true", True), ("TRUE", True), ("1", True), ("false", False), ("", False), ("no", False)],
)
def test_capture_content_follows_the_standard_variable(
    monkeypatch: pytest.MonkeyPatch, value: str, expected: bool
) -> None:
    monkeypatch.setenv(CAPTURE_CONTENT_ENV, value)
    assert capture_content_enabled() is expected


def test_capture_content_is_off_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(CAPTURE_CONTENT_ENV, raising=False)
    assert capture_content_enabled() is False


def test_otlp_endpoint_without_the_extra_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:4318")
    monkeypatch.setitem(sys.modules, "opentelemetry.exporter.otlp.proto.http.trace_exporter", None)
    with pytest.raises(TracingSetupError, match=re.escape(install_command("otlp"))) as info:
        enable_tracing(store=None)  # fails before anything global is touched
    assert isinstance(info.value, ConfigurationError)
    assert "http://127.0.0.1:4318" in str(info.value)


@pytest.mark.parametrize(("value", "says"), [("lots", "is not a whole number"), ("0", "greater than zero")])
def test_a_bad_batch_setting_is_a_clear_error(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, value: str, says: str
) -> None:
    monkeypatch.setenv("OTEL_BSP_MAX_QUEUE_SIZE", value)
    with pytest.raises(TracingSetupError, match=says) as info:
        enable_tracing(store=tmp_path / "traces.db")
    assert "OTEL_BSP_MAX_QUEUE_SIZE" in str(info.value) and "unset it" in str(info.value)
    assert not (tmp_path / "traces.db").exists()  # nothing was opened


def test_nowhere_to_export_is_an_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OTEL_EXPORTER_OTLP_ENDPOINT", raising=False)
    monkeypatch.delenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", raising=False)
    with pytest.raises(TracingSetupError, match="nowhere to send spans"):
        enable_tracing(store=None)


def test_unusable_store_path_fails_at_once(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("not a directory")
    with pytest.raises(TracingSetupError, match="cannot open the trace store"):
        enable_tracing(store=tmp_path / "file" / "traces.db", otlp=False)


class _Collector(BaseHTTPRequestHandler):
    bodies: ClassVar[list[tuple[str, bytes]]] = []

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        _Collector.bodies.append((self.path, body))
        self.send_response(200)
        self.send_header("Content-Type", "application/x-protobuf")
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


def test_otlp_http_export_to_a_local_collector(tmp_path: Path) -> None:
    pytest.importorskip(
        "opentelemetry.exporter.otlp.proto.http.trace_exporter",
        reason="the OTLP extra is not installed (pip install 'flock[otlp]')",
    )
    _Collector.bodies.clear()
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Collector)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        result = python(
            """
            enable_tracing(store=None)
            run("remote")
            disable_tracing()
            """,
            tmp_path,
            OTEL_EXPORTER_OTLP_ENDPOINT=f"http://127.0.0.1:{server.server_address[1]}",
        )
    finally:
        server.shutdown()
        server.server_close()
    assert result.returncode == 0, result.stderr
    paths = {path for path, _ in _Collector.bodies}
    assert paths == {"/v1/traces"}
    payload = b"".join(body for _, body in _Collector.bodies)
    assert b"flock.run remote" in payload and b"flock.publish Idea" in payload


def test_otlp_export_scrubs_secrets(tmp_path: Path) -> None:
    pytest.importorskip("opentelemetry.exporter.otlp.proto.http.trace_exporter")
    _Collector.bodies.clear()
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Collector)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    key = "sk-proj-NOTREAL0123456789abcdef"
    try:
        result = python(
            f"""
            enable_tracing(store="t.db")
            tracer = trace.get_tracer("flock")
            with tracer.start_as_current_span("chat m", attributes={{"llm.api_key": {key!r}}}) as span:
                key = os.environ["OPENAI_API_KEY"]
                span.record_exception(RuntimeError("Incorrect API key provided: " + key))
            disable_tracing()
            """,
            tmp_path,
            OPENAI_API_KEY=key,
            OTEL_EXPORTER_OTLP_ENDPOINT=f"http://127.0.0.1:{server.server_address[1]}",
        )
    finally:
        server.shutdown()
        server.server_close()
    assert result.returncode == 0, result.stderr
    payload = b"".join(body for _, body in _Collector.bodies)
    assert b"chat m" in payload and b"[REDACTED]" in payload
    assert key.encode() not in payload
    stored = b"".join(p.read_bytes() for p in tmp_path.glob("t.db*"))
    assert b"[REDACTED]" in stored and key.encode() not in stored


def test_a_burst_of_spans_is_not_dropped(tmp_path: Path) -> None:
    # 20,000 spans as fast as one thread can make them: the SDK's default queue (2,048) would drop most
    result = python(
        """
        tracer = trace.get_tracer("flock")
        enable_tracing(store="t.db")
        with tracer.start_as_current_span("flock.run burst"):
            for _ in range(19_999):
                tracer.start_span("flock.publish Idea").end()
        """,
        tmp_path,
    )
    assert result.returncode == 0, result.stderr
    assert "dropping" not in result.stderr
    assert runs(tmp_path / "t.db") == [("flock.run burst", 20_000)]
