"""Suite-wide settings: no network model calls, no shared DSPy cache, no price-list downloads."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator

import pytest
from opentelemetry import metrics, trace
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
os.environ.setdefault("DSPY_CACHEDIR", tempfile.mkdtemp(prefix="flock-dspy-cache-"))
# Tests choose their models explicitly; a developer's FLOCK_MODEL must not leak in.
os.environ.pop("FLOCK_MODEL", None)
os.environ.pop("DEFAULT_MODEL", None)


@pytest.fixture(scope="session")
def _span_exporter_session() -> InMemorySpanExporter:
    """One in-memory exporter behind the global tracer provider (OpenTelemetry allows one per process)."""
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    trace.set_tracer_provider(provider)
    return exporter


@pytest.fixture(scope="session")
def _metric_reader_session() -> InMemoryMetricReader:
    """One in-memory reader behind the global meter provider (OpenTelemetry allows one per process)."""
    reader = InMemoryMetricReader()
    metrics.set_meter_provider(MeterProvider(metric_readers=[reader]))
    return reader


@pytest.fixture
def metric_reader(_metric_reader_session: InMemoryMetricReader) -> InMemoryMetricReader:
    """The global meter provider's reader; read points with ``tests.metric_points(reader, name)``
    (cumulative: compare before and after, or filter by a model name unique to the test)."""
    return _metric_reader_session


@pytest.fixture
def spans(_span_exporter_session: InMemorySpanExporter) -> Iterator[InMemorySpanExporter]:
    """Spans finished during one test (the exporter is cleared before and after)."""
    _span_exporter_session.clear()
    yield _span_exporter_session
    _span_exporter_session.clear()


@pytest.fixture(autouse=True)
def _no_real_model_calls() -> Iterator[None]:
    """Every test fails on a real provider call (see ``flock.testing.forbid_real_model_calls``)."""
    from flock.testing import forbid_real_model_calls

    with forbid_real_model_calls():
        yield


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[object]:
    """One real PostgreSQL server for the whole test session (Debian's binaries, a temporary
    folder, a free local port); skips when PostgreSQL or psycopg is not installed."""
    pytest.importorskip("psycopg", reason="psycopg is not installed: pip install 'flock[postgres]'")
    from tests.postgres_server import INSTALL_HINT, PostgresServer, find_binaries

    if find_binaries() is None:
        pytest.skip(INSTALL_HINT)
    server = PostgresServer.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def postgres_dsn(postgres_server: object) -> str:
    """The DSN of a new, empty database on the session's PostgreSQL server."""
    return postgres_server.create_database()  # type: ignore[attr-defined]
