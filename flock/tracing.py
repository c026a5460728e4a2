"""Turn on tracing for Flock runs: a local trace store, the console, or any OTLP backend.

Flock's spans go to OpenTelemetry's *global* tracer provider, like any instrumented library. If your
application already installs a provider, you receive them with no Flock-specific setup. Otherwise call
:func:`enable_tracing` once, when you want traces (importing Flock never does it)::

    from flock.tracing import enable_tracing

    enable_tracing()                     # spans -> .flock/traces.db, read with `flock traces`
    enable_tracing(console=True)         # ... and printed to stdout
    # with OTEL_EXPORTER_OTLP_ENDPOINT set, spans also go to that OTLP backend (pip install 'flock[otlp]')

Metrics work the same way through the global meter provider; :func:`enable_metrics` installs one
that keeps them readable in-process (:func:`metrics_snapshot`) and exports them over OTLP.

Prompt and completion text is not recorded unless you opt in, with ``capture_content=True`` or the
standard ``OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT=true``. Secrets are scrubbed from every span
before it is exported.
"""

from __future__ import annotations

import atexit
import os
import sqlite3
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from opentelemetry.sdk.trace import ReadableSpan, SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import SpanExporter

from ._core.errors import ConfigurationError
from ._core.extras import install_command
from ._tracing.lean_spans import FlockTracerProvider
from ._tracing.metrics_export import MetricsSetupError, enable_metrics, flush_metrics, metrics_snapshot
from ._tracing.span_export import SpanPipeline
from ._tracing.span_records import Record
from ._tracing.trace_store import DEFAULT_STORE, SQLiteSpanExporter

if TYPE_CHECKING:
    from opentelemetry.context import Context
    from opentelemetry.sdk.trace import Span

__all__ = [
    "CAPTURE_CONTENT_ENV",
    "DEFAULT_STORE",
    "MetricsSetupError",
    "SQLiteSpanExporter",
    "TracingSetupError",
    "capture_content_enabled",
    "disable_tracing",
    "enable_metrics",
    "enable_tracing",
    "flush_metrics",
    "flush_tracing",
    "metrics_snapshot",
]

CAPTURE_CONTENT_ENV = "OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT"
_TRUE = frozenset({"true", "1", "yes", "on", "span_only", "span_and_event"})
_OTLP_ENDPOINT_ENVS = ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_EXPORTER_OTLP_ENDPOINT")


class TracingSetupError(ConfigurationError):
    """Tracing cannot be set up as asked (e.g. an OTLP endpoint is configured but the exporter is missing)."""


@dataclass(frozen=True)
class _Config:
    store: Path | None
    console: bool
    otlp: bool
    service_name: str | None


@dataclass
class _Installed:
    provider: TracerProvider
    switch: _Switch
    config: _Config | None


_lock = threading.Lock()
_installed: _Installed | None = None
_capture_content: bool | None = None


def capture_content_enabled() -> bool:
    """Should model/tool spans record prompt and completion text?

    ``enable_tracing(capture_content=...)`` decides when given; otherwise the standard
    ``OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT`` environment variable (``true``/``false``,
    read on every call). Off by default.
    """
    if _capture_content is not None:
        return _capture_content
    return os.environ.get(CAPTURE_CONTENT_ENV, "").strip().lower() in _TRUE


def enable_tracing(
    *,
    store: str | Path | None = DEFAULT_STORE,
    console: bool = False,
    otlp: bool | None = None,
    capture_content: bool | None = None,
    service_name: str | None = None,
) -> TracerProvider:
    """Install a tracer provider that exports Flock's spans, and return it.

    Args:
        store: SQLite file for the local trace store (read by ``flock traces``); ``None`` for none.
        console: also print every span to stdout (for debugging).
        otlp: send spans over OTLP/HTTP. ``None`` (default) means "when ``OTEL_EXPORTER_OTLP_ENDPOINT``
            (or ``..._TRACES_ENDPOINT``) is set". Needs ``pip install 'flock[otlp]'``.
        capture_content: record prompts and completions on model spans; ``None`` follows
            ``OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT``.
        service_name: the ``service.name`` resource attribute (default ``OTEL_SERVICE_NAME`` or ``flock``).

    Calling it again with the same arguments does nothing; with different ones it flushes and replaces
    Flock's exporters. If the application already installed an SDK provider, Flock's exporters are added
    to it instead (OpenTelemetry allows one global provider per process). Spans are exported in batches
    from a background thread; :func:`flush_tracing` waits for them and :func:`disable_tracing` stops
    exporting (both also run at interpreter exit).

    Raises:
        TracingSetupError: OTLP is wanted but the exporter package is missing, nothing would be
            exported, or a non-SDK tracer provider is already installed.
    """
    global _installed, _capture_content
    otlp_on = otlp if otlp is not None else any(os.environ.get(name) for name in _OTLP_ENDPOINT_ENVS)
    config = _Config(
        store=Path(store).resolve() if store is not None else None,
        console=console,
        otlp=otlp_on,
        service_name=service_name,
    )
    with _lock:
        if _installed is not None and _installed.config == config:
            _capture_content = capture_content
            return _installed.provider
        queue, batch, delay = _batch_settings()  # these fail before anything global changes,
        exporters = _exporters(config)  # and before an exporter is opened for nothing
        pipeline = SpanPipeline(exporters, max_queue=queue, batch=batch, delay_s=delay)
        if _installed is None:
            provider = _global_provider(service_name)
            switch = _Switch()
            provider.add_span_processor(switch)
            atexit.register(disable_tracing)
            _installed = _Installed(provider, switch, None)
        _installed.switch.replace(pipeline)
        _use_lean_spans(_installed)
        _installed.config = config
        _capture_content = capture_content
        return _installed.provider


def flush_tracing(timeout_millis: int = 30_000) -> bool:
    """Export every finished span now. Returns ``False`` if the timeout expired first."""
    installed = _installed
    return installed.switch.force_flush(timeout_millis) if installed is not None else True


def disable_tracing() -> None:
    """Flush and stop Flock's exporters. The provider stays installed (one per process) but exports
    nothing from Flock until :func:`enable_tracing` is called again."""
    global _capture_content
    with _lock:
        _capture_content = None
        if _installed is not None:
            _installed.switch.replace(None)
            _installed.config = None
            _use_lean_spans(_installed)


def _use_lean_spans(installed: _Installed) -> None:
    """Flock's spans skip the SDK when Flock made the provider (see :mod:`flock._tracing.lean_spans`)."""
    if isinstance(installed.provider, FlockTracerProvider):
        switch = installed.switch
        # Through the switch, not straight to its pipeline: a span that ends after enable_tracing()
        # replaced the pipeline still reaches the new one.
        installed.provider.use_lean_spans(switch, switch.emit if switch.pipeline is not None else None)


def _batch_settings() -> tuple[int, int, float]:
    """Queue size, batch size and export delay (seconds). A deeper queue and bigger batches than the
    SDK's defaults (2048 and 512): a run of a few thousand artifacts makes spans faster than one export
    thread writes them, and a full queue drops spans. The standard OTEL_BSP_* variables still win."""
    queue = _env_int("OTEL_BSP_MAX_QUEUE_SIZE", 65_536)
    batch = min(_env_int("OTEL_BSP_MAX_EXPORT_BATCH_SIZE", 2_048), queue)
    delay = _env_int("OTEL_BSP_SCHEDULE_DELAY", 1_000) / 1000
    return queue, batch, delay


def _env_int(name: str, default: int) -> int:
    value = os.environ.get(name, "").strip()
    if not value:
        return default
    try:
        number = int(value)
    except ValueError:
        raise TracingSetupError(
            f"{name}={value!r} is not a whole number: set it to one greater than zero, or unset it"
        ) from None
    if number <= 0:
        raise TracingSetupError(f"{name}={value!r} must be greater than zero: set it higher, or unset it")
    return number


def _exporters(config: _Config) -> list[SpanExporter]:
    exporters: list[SpanExporter] = []
    try:
        if config.otlp:
            exporters.append(_otlp_exporter())
        if config.console:
            from opentelemetry.sdk.trace.export import ConsoleSpanExporter

            exporters.append(ConsoleSpanExporter())
        if config.store is not None:
            try:
                exporters.append(SQLiteSpanExporter(config.store))
            except (OSError, sqlite3.Error) as exc:  # name the file and the reason, not a bare traceback
                raise TracingSetupError(f"cannot open the trace store {config.store}: {exc}") from exc
    except BaseException:
        for exporter in exporters:
            exporter.shutdown()
        raise
    if not exporters:
        raise TracingSetupError(
            "enable_tracing() has nowhere to send spans: keep store=..., pass console=True, or set "
            "OTEL_EXPORTER_OTLP_ENDPOINT"
        )
    return exporters


def _otlp_exporter() -> SpanExporter:
    protocol = (
        os.environ.get("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL")
        or os.environ.get("OTEL_EXPORTER_OTLP_PROTOCOL")
        or ""
    )
    endpoint = next((os.environ[n] for n in _OTLP_ENDPOINT_ENVS if os.environ.get(n)), "the default endpoint")
    if protocol.strip().lower() == "grpc":
        module, package = (
            "opentelemetry.exporter.otlp.proto.grpc.trace_exporter",
            "opentelemetry-exporter-otlp-proto-grpc",
        )
    else:
        module, package = "opentelemetry.exporter.otlp.proto.http.trace_exporter", ""
    import importlib

    try:
        exporter_class = importlib.import_module(module).OTLPSpanExporter
    except ImportError as exc:
        raise TracingSetupError(
            f"OTLP export to {endpoint} needs the OTLP exporter, which is not installed: "
            f"{f'pip install {package!r}' if package else install_command('otlp')} "
            "(or pass enable_tracing(otlp=False), "
            "or unset OTEL_EXPORTER_OTLP_ENDPOINT)"
        ) from exc
    exporter: SpanExporter = exporter_class()  # reads endpoint, headers and timeouts from OTEL_* variables
    return exporter


def _global_provider(service_name: str | None) -> TracerProvider:
    from opentelemetry import trace
    from opentelemetry.sdk.resources import Resource

    current = trace.get_tracer_provider()
    if isinstance(current, TracerProvider):
        return current  # the application's own provider: add to it, never replace it
    if not isinstance(current, trace.ProxyTracerProvider):
        raise TracingSetupError(
            f"a {type(current).__name__} is installed as the global tracer provider; Flock can only add "
            "exporters to an OpenTelemetry SDK TracerProvider"
        )
    attributes: dict[str, Any] = {}
    if service_name or not os.environ.get("OTEL_SERVICE_NAME"):
        attributes["service.name"] = service_name or "flock"
    provider = FlockTracerProvider(resource=Resource.create(attributes), shutdown_on_exit=False)
    trace.set_tracer_provider(provider)
    return provider


class _Switch(SpanProcessor):
    """The span processor Flock adds to the provider, whose pipeline can be replaced: the global
    provider is set once per process, but tracing can be re-configured, disabled and enabled again."""

    def __init__(self) -> None:
        self.pipeline: SpanPipeline | None = None

    def replace(self, pipeline: SpanPipeline | None) -> None:
        old, self.pipeline = self.pipeline, pipeline
        if old is not None:
            old.shutdown()  # exports what is queued first

    def emit(self, record: Record) -> None:
        pipeline = self.pipeline
        if pipeline is not None:
            pipeline.emit(record)

    def on_start(self, span: Span, parent_context: Context | None = None) -> None:
        return None

    def on_end(self, span: ReadableSpan) -> None:
        pipeline = self.pipeline
        if pipeline is not None:
            pipeline.on_end(span)

    def shutdown(self) -> None:
        self.replace(None)

    def force_flush(self, timeout_millis: int = 30_000) -> bool:
        pipeline = self.pipeline
        return pipeline.force_flush(timeout_millis) if pipeline is not None else True
