"""The local trace store: an OpenTelemetry span exporter into one SQLite table (reading it is
:mod:`flock._trace_query`).

Standard library only. The file is written in WAL mode so ``flock traces`` can read it while a run is
still exporting. One row per span; attributes, events, links and the resource are JSON text::

    spans(trace_id, span_id, parent_id, is_root, name, kind, start_ns, end_ns,
          status, status_message, attributes, events, links, resource)

``is_root`` marks the spans that start a trace in this process (no parent, or a parent in another
process); a *run* is one trace, named after its earliest root span.
"""

from __future__ import annotations

import json
import logging
import sqlite3
import threading
from collections.abc import Sequence
from contextlib import closing
from pathlib import Path
from typing import TYPE_CHECKING, Any

from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult

from ._redact import Redactor

if TYPE_CHECKING:
    from opentelemetry.sdk.trace import ReadableSpan

logger = logging.getLogger("flock.tracing")

DEFAULT_STORE = Path(".flock/traces.db")
"""Where :func:`flock.tracing.enable_tracing` writes and ``flock traces`` reads, relative to the cwd."""
SCHEMA_VERSION = 1
# A rowid table, not WITHOUT ROWID: rows are large (JSON attributes and resource, ~500 bytes), and
# keeping them in the (trace_id, span_id) B-tree made each insert 2-3x slower (random span ids split
# big leaf pages). Same columns and keys; files made before still work as they are.
_SCHEMA = """
CREATE TABLE IF NOT EXISTS spans (
    trace_id TEXT NOT NULL,
    span_id TEXT NOT NULL,
    parent_id TEXT,
    is_root INTEGER NOT NULL,
    name TEXT NOT NULL,
    kind TEXT NOT NULL,
    start_ns INTEGER NOT NULL,
    end_ns INTEGER NOT NULL,
    status TEXT NOT NULL,
    status_message TEXT,
    attributes TEXT NOT NULL,
    events TEXT NOT NULL,
    links TEXT NOT NULL,
    resource TEXT NOT NULL,
    PRIMARY KEY (trace_id, span_id)
);
CREATE INDEX IF NOT EXISTS spans_roots ON spans (start_ns) WHERE is_root = 1;
"""
_COLUMNS = (
    "trace_id, span_id, parent_id, is_root, name, kind, start_ns, end_ns, status, status_message, "
    "attributes, events, links, resource"
)

_json = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False, default=str).encode


class SQLiteSpanExporter(SpanExporter):
    """Write finished spans into a SQLite file. Use it behind a ``BatchSpanProcessor``::

        provider.add_span_processor(BatchSpanProcessor(SQLiteSpanExporter(".flock/traces.db")))

    The file and its directory are created on construction, so a bad path fails at once rather than in
    the export thread. Secrets are scrubbed from attributes, event attributes and status messages.
    """

    def __init__(self, path: str | Path, *, redact: bool = True) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._redact = redact
        self._lock = threading.Lock()
        self._conn: sqlite3.Connection | None = sqlite3.connect(
            self.path, check_same_thread=False, timeout=10.0, isolation_level=None
        )
        self._conn.execute("PRAGMA journal_mode=WAL")
        self._conn.execute("PRAGMA synchronous=NORMAL")
        self._conn.executescript(_SCHEMA)
        self._conn.execute(f"PRAGMA user_version={SCHEMA_VERSION}")

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        redactor = Redactor() if self._redact else None
        resources: dict[int, str] = {}  # one provider, one resource: serialize it once per batch
        rows = [_row(span, redactor, resources) for span in spans]
        with self._lock:
            if self._conn is None:
                return SpanExportResult.FAILURE
            try:
                with self._conn:
                    self._conn.execute("BEGIN")
                    self._conn.executemany(
                        f"INSERT OR REPLACE INTO spans ({_COLUMNS}) VALUES ({', '.join('?' * 14)})", rows
                    )
            except sqlite3.Error as exc:  # the export thread must not die; the spans are lost, say so
                logger.warning("could not write %d spans to %s: %s", len(rows), self.path, exc)
                return SpanExportResult.FAILURE
        return SpanExportResult.SUCCESS

    def shutdown(self) -> None:
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return True  # every export commits before it returns


def _row(span: ReadableSpan, redactor: Redactor | None, resources: dict[int, str]) -> tuple[Any, ...]:
    # Runs on the export thread for every span while holding the GIL: kept lean on purpose.
    def attrs(values: Any) -> dict[str, Any]:
        if not values:
            return {}
        return redactor.attributes(values) if redactor is not None else dict(values)

    context = span.context
    parent = span.parent
    status = span.status
    message = status.description
    if message and redactor is not None:
        message = redactor.text(message)
    events = span.events
    links = span.links
    start = span.start_time or 0
    resource = resources.get(id(span.resource))
    if resource is None:
        resource = resources[id(span.resource)] = _json(dict(span.resource.attributes))
    return (
        format(context.trace_id, "032x") if context else "0" * 32,
        format(context.span_id, "016x") if context else "0" * 16,
        format(parent.span_id, "016x") if parent else None,
        1 if parent is None or parent.is_remote else 0,
        span.name,
        span.kind.name,
        start,
        span.end_time or start,
        status.status_code.name,
        message,
        _json(attrs(span.attributes)),
        _json([{"name": e.name, "time_ns": e.timestamp, "attributes": attrs(e.attributes)} for e in events])
        if events
        else "[]",
        _json(
            [
                {
                    "trace_id": format(link.context.trace_id, "032x"),
                    "span_id": format(link.context.span_id, "016x"),
                    "attributes": attrs(link.attributes),
                }
                for link in links
            ]
        )
        if links
        else "[]",
        resource,
    )


def prune(path: str | Path, *, keep: int) -> tuple[int, int]:
    """Delete every run but the ``keep`` newest from a trace store; returns (runs, spans) deleted.

    Only finished runs count: spans of a run still in progress (its root span not yet exported) stay.
    """
    with closing(sqlite3.connect(path, timeout=10.0, isolation_level=None)) as conn:
        conn.execute("BEGIN IMMEDIATE")
        old = [
            r[0]
            for r in conn.execute(
                "SELECT trace_id FROM spans WHERE is_root = 1 GROUP BY trace_id "
                "ORDER BY MIN(start_ns) DESC LIMIT -1 OFFSET ?",
                (keep,),
            )
        ]
        spans = 0
        for start in range(0, len(old), 500):  # stay under SQLite's limit on bound parameters
            chunk = old[start : start + 500]
            marks = ", ".join("?" * len(chunk))
            spans += conn.execute(f"DELETE FROM spans WHERE trace_id IN ({marks})", chunk).rowcount
        conn.execute("COMMIT")
        if old:
            conn.execute("VACUUM")
    return len(old), spans
