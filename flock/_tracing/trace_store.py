"""The local trace store: an OpenTelemetry span exporter into one SQLite table (reading it is
:mod:`flock._tracing.trace_query`).

Standard library only. The file is written in WAL mode so ``flock traces`` can read it while a run is
still exporting. One row per span; attributes, events, links and the resource are JSON text::

    spans(trace_id, span_id, parent_id, is_root, name, kind, start_ns, end_ns,
          status, status_message, attributes, events, links, resource)

``is_root`` marks the spans that start a trace in this process (no parent, or a parent in another
process); a *run* is one trace, named after its earliest root span.
"""

from __future__ import annotations

import functools
import json
import logging
import os
import sqlite3
import threading
from collections.abc import Sequence
from contextlib import closing
from pathlib import Path
from typing import TYPE_CHECKING, Any

from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult

from .redact import Redactor
from .span_records import (
    ATTRIBUTES,
    END,
    EVENTS,
    KIND,
    KINDS,
    LINKS,
    MESSAGE,
    NAME,
    PARENT_ID,
    PARENT_REMOTE,
    SCOPE,
    SCOPES,
    SPAN_ID,
    START,
    STATUS,
    STATUS_CODES,
    TRACE_ID,
    Record,
    record_of,
    scrubbed,
)

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
        self._conn: sqlite3.Connection | None = self._connect()
        self._pid = os.getpid()

    def _connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self.path, check_same_thread=False, timeout=10.0, isolation_level=None)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")
        conn.executescript(_SCHEMA)
        conn.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
        # An older SQLite may allow only 999 parameters per statement.
        limit = conn.getlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER)
        self._rows_per_insert = max(1, min(_ROWS_PER_INSERT, limit // 14))
        return conn

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        records = [record_of(span) for span in spans]
        if self._redact:
            redactor = Redactor()
            records = [scrubbed(record, redactor) for record in records]
        return self.export_records(records)

    def export_records(self, records: Sequence[Record]) -> SpanExportResult:
        """Write span records (already scrubbed: Flock's export thread scrubs once for every exporter)."""
        resources: dict[int, str] = {}  # one provider, one resource: serialize it once per batch
        rows = [_row(record, resources) for record in records]
        with self._lock:
            if self._conn is None:
                return SpanExportResult.FAILURE
            if self._pid != os.getpid():  # a forked child: SQLite connections must not cross a fork
                self._conn, self._pid = self._connect(), os.getpid()
            try:
                with self._conn:
                    self._conn.execute("BEGIN")
                    for start in range(0, len(rows), self._rows_per_insert):
                        chunk = rows[start : start + self._rows_per_insert]
                        self._conn.execute(_insert(len(chunk)), [value for row in chunk for value in row])
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


# Many rows per INSERT statement, not executemany(): sqlite3 lets go of the GIL around every
# statement it runs, and with one statement per row the export thread gave the GIL away once per
# span. The event loop's thread then kept it for a whole switch interval (5 ms) each time: a
# batch of 2,048 spans could take seconds to write while the run was busy.
_ROWS_PER_INSERT = 500  # 7,000 parameters, well under SQLite's limit of 32,766


@functools.lru_cache(maxsize=8)
def _insert(rows: int) -> str:
    one = f"({', '.join('?' * 14)})"
    return f"INSERT OR REPLACE INTO spans ({_COLUMNS}) VALUES {', '.join([one] * rows)}"


_KIND_NAMES = tuple(kind.name for kind in KINDS)
_STATUS_NAMES = tuple(code.name for code in STATUS_CODES)


def _row(record: Record, resources: dict[int, str]) -> tuple[Any, ...]:
    # Runs on the export thread for every span while holding the GIL: kept lean on purpose.
    scope = record[SCOPE]
    resource = resources.get(scope)
    if resource is None:
        resource = resources[scope] = _json(dict(SCOPES[scope][1].attributes))
    parent = record[PARENT_ID]
    return (
        format(record[TRACE_ID], "032x"),
        format(record[SPAN_ID], "016x"),
        format(parent, "016x") if parent is not None else None,
        1 if parent is None or record[PARENT_REMOTE] else 0,
        record[NAME],
        _KIND_NAMES[record[KIND]],
        record[START],
        record[END],
        _STATUS_NAMES[record[STATUS]],
        record[MESSAGE],
        record[ATTRIBUTES],
        record[EVENTS],
        record[LINKS],
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
