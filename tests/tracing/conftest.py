"""Tracing suite: spans come from private TracerProviders (never the global one) into real SQLite files."""

from __future__ import annotations

from pathlib import Path

import pytest
from trace_support import record_run

from flock._tracing.trace_store import SQLiteSpanExporter


@pytest.fixture
def db(tmp_path: Path) -> Path:
    return tmp_path / "traces.db"


@pytest.fixture
def recorded(db: Path) -> tuple[Path, str]:
    """A trace store holding one run (see trace_support.record_run); returns (path, trace id)."""
    exporter = SQLiteSpanExporter(db)
    trace_id = record_run(exporter)
    exporter.shutdown()
    return db, trace_id
