"""Reading the local trace store: runs with their numbers, and whole traces as span trees.

Read-only (the file is opened with ``mode=ro``); ``flock traces`` and the views are built on this.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .._core.errors import FlockError

MODEL_OPERATIONS = frozenset({"chat", "text_completion", "generate_content"})


class TraceNotFound(FlockError, LookupError):
    """No trace store at the path, or no trace (or more than one) matches the id given."""


class NotATraceStore(FlockError):
    """The file exists but is not a Flock trace store (not SQLite, or no ``spans`` table)."""


@dataclass
class SpanRecord:
    """One stored span, with its children once loaded as part of a :class:`Trace`."""

    trace_id: str
    span_id: str
    parent_id: str | None
    name: str
    kind: str
    start_ns: int
    end_ns: int
    status: str
    status_message: str | None
    attributes: dict[str, Any]
    events: list[dict[str, Any]]
    links: list[dict[str, Any]]
    children: list[SpanRecord] = field(default_factory=list)

    @property
    def duration_ns(self) -> int:
        return max(0, self.end_ns - self.start_ns)

    @property
    def is_error(self) -> bool:
        return self.status == "ERROR"

    @property
    def category(self) -> str:
        """``run``, ``publish``, ``activate``, ``evaluate``, ``model``, ``tool``, ``reask`` or ``other``."""
        operation = self.attributes.get("gen_ai.operation.name")
        if operation in MODEL_OPERATIONS:
            return "model"
        if operation == "execute_tool":
            return "tool"
        head = self.name.split(" ", 1)[0]
        return {
            "flock.run": "run",
            "flock.publish": "publish",
            "flock.activate": "activate",
            "flock.evaluate": "evaluate",
            "flock.reask": "reask",
        }.get(head, "other")

    @property
    def tokens(self) -> tuple[int, int]:
        """(input, output) tokens recorded on this span."""
        return (
            _int(self.attributes.get("gen_ai.usage.input_tokens")),
            _int(self.attributes.get("gen_ai.usage.output_tokens")),
        )


def _int(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


@dataclass
class RunStats:
    """What ``flock traces`` shows for one run (one trace)."""

    trace_id: str
    name: str
    start_ns: int
    end_ns: int
    spans: int = 0
    agents: list[str] = field(default_factory=list)
    activations: int = 0
    artifacts: int = 0
    artifacts_by_type: dict[str, int] = field(default_factory=dict)
    model_calls: int = 0
    tool_calls: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    errors: int = 0

    @property
    def duration_ns(self) -> int:
        return max(0, self.end_ns - self.start_ns)

    @property
    def tokens(self) -> int:
        return self.input_tokens + self.output_tokens


@dataclass
class Trace:
    """A whole trace as a forest (normally one root): spans sorted by start time, children likewise."""

    trace_id: str
    spans: list[SpanRecord]
    roots: list[SpanRecord]
    stats: RunStats


def build_trace(trace_id: str, spans: Iterable[SpanRecord]) -> Trace:
    """Link spans into a tree and aggregate the run's numbers. Spans whose parent is missing are roots."""
    ordered = sorted(spans, key=lambda s: (s.start_ns, s.end_ns))
    by_id = {s.span_id: s for s in ordered}
    roots: list[SpanRecord] = []
    for span in ordered:
        span.children = []
    for span in ordered:
        parent = by_id.get(span.parent_id) if span.parent_id else None
        (parent.children if parent is not None else roots).append(span)
    return Trace(trace_id, ordered, roots, _stats(trace_id, ordered, roots))


def _stats(trace_id: str, spans: list[SpanRecord], roots: list[SpanRecord]) -> RunStats:
    stats = RunStats(
        trace_id=trace_id,
        name=str(roots[0].attributes.get("flock.run.name") or roots[0].name) if roots else "",
        start_ns=min((s.start_ns for s in spans), default=0),
        end_ns=max((s.end_ns for s in spans), default=0),
        spans=len(spans),
    )
    agents: dict[str, None] = {}
    for span in spans:
        category = span.category
        if category == "activate":
            stats.activations += 1
            agents.setdefault(str(span.attributes.get("flock.agent", span.name.split(" ", 1)[-1])))
        elif category == "publish":
            stats.artifacts += 1
            kind = str(span.attributes.get("flock.artifact.type", span.name.split(" ", 1)[-1]))
            stats.artifacts_by_type[kind] = stats.artifacts_by_type.get(kind, 0) + 1
        elif category == "model":
            stats.model_calls += 1
        elif category == "tool":
            stats.tool_calls += 1
        tokens_in, tokens_out = span.tokens
        stats.input_tokens += tokens_in
        stats.output_tokens += tokens_out
    stats.agents = list(agents)
    stats.errors = _error_origins(
        {s.span_id: s.parent_id for s in spans}, {s.span_id for s in spans if s.is_error}
    )
    return stats


def _error_origins(parent_of: dict[str, str | None], errors: set[str]) -> int:
    """How many failures happened: a failure marks every span it propagates through, so count only the
    failed spans with no failed span below them."""
    above: set[str] = set()
    for span_id in errors:
        parent = parent_of.get(span_id)
        while parent is not None and parent not in above:
            above.add(parent)
            parent = parent_of.get(parent)
    return len(errors - above)


_OPERATION = """json_extract(attributes, '$."gen_ai.operation.name"')"""
_MODEL_OPS = ", ".join(f"'{op}'" for op in sorted(MODEL_OPERATIONS))
_MODEL = f"{_OPERATION} IN ({_MODEL_OPS})"
_NOT_GENAI = f"COALESCE({_OPERATION}, '') NOT IN ('execute_tool', {_MODEL_OPS})"
_TOKENS = """CASE json_type(attributes, '$."gen_ai.usage.{0}_tokens"') WHEN 'integer'
    THEN json_extract(attributes, '$."gen_ai.usage.{0}_tokens"') ELSE 0 END"""
_TOTALS_SQL = f"""
SELECT COUNT(*), MIN(start_ns), MAX(end_ns), SUM({_TOKENS.format("input")}), SUM({_TOKENS.format("output")}),
       SUM({_MODEL}), SUM({_OPERATION} = 'execute_tool')
FROM spans WHERE trace_id = ?"""
_AGENTS_SQL = f"""
SELECT COALESCE(json_extract(attributes, '$."flock.agent"'), substr(name, 16)) AS agent_name, COUNT(*)
FROM spans WHERE trace_id = ? AND (name = 'flock.activate' OR name GLOB 'flock.activate *') AND {_NOT_GENAI}
GROUP BY agent_name ORDER BY MIN(start_ns)"""
_ARTIFACTS_SQL = f"""
SELECT COALESCE(json_extract(attributes, '$."flock.artifact.type"'), substr(name, 15)) AS artifact_type,
       COUNT(*)
FROM spans WHERE trace_id = ? AND (name = 'flock.publish' OR name GLOB 'flock.publish *') AND {_NOT_GENAI}
GROUP BY artifact_type ORDER BY MIN(start_ns)"""


class TraceStore:
    """Read-only queries over a trace store file (``flock traces`` uses this)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        if not self.path.exists():
            raise TraceNotFound(
                f"no trace store at {self.path}: call flock.tracing.enable_tracing() before a run "
                "(or pass --db PATH)"
            )
        self._conn = sqlite3.connect(f"{self.path.resolve().as_uri()}?mode=ro", uri=True, timeout=10.0)
        try:
            self._conn.execute("SELECT trace_id, span_id, is_root, attributes FROM spans LIMIT 1").fetchall()
        except sqlite3.DatabaseError as exc:
            self._conn.close()
            raise NotATraceStore(f"{self.path} is not a Flock trace store ({exc})") from exc

    def close(self) -> None:
        self._conn.close()

    def __enter__(self) -> TraceStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def recent_trace_ids(self, limit: int = 20) -> list[str]:
        rows = self._conn.execute(
            "SELECT trace_id, MIN(start_ns) AS started FROM spans WHERE is_root = 1 "
            "GROUP BY trace_id ORDER BY started DESC LIMIT ?",
            (limit,),
        ).fetchall()
        return [r[0] for r in rows]

    def traces_of(self, correlation_id: str, limit: int = 20) -> list[str]:
        """The newest traces whose root span belongs to workflow ``correlation_id`` (in a served flock
        every artifact published from outside starts one). Empty without SQLite's JSON functions."""
        try:
            rows = self._conn.execute(
                "SELECT trace_id, MIN(start_ns) AS started FROM spans WHERE is_root = 1 "
                "AND json_extract(attributes, '$.\"flock.correlation_id\"') = ? "
                "GROUP BY trace_id ORDER BY started DESC LIMIT ?",
                (correlation_id, limit),
            ).fetchall()
        except sqlite3.OperationalError:
            return []
        return [r[0] for r in rows]

    def list_runs(self, limit: int = 20, *, correlation_id: str | None = None) -> list[RunStats]:
        """The most recent runs, newest first, with their numbers aggregated from all their spans (only
        those of one workflow with ``correlation_id``)."""
        if correlation_id is None:
            ids = self.recent_trace_ids(limit)
        else:
            ids = self.traces_of(correlation_id, limit)
        return [self.run_stats(trace_id) for trace_id in ids]

    def run_stats(self, trace_id: str) -> RunStats:
        """The numbers of one run, aggregated inside SQLite (the same as ``load(trace_id).stats`` without
        parsing every span). Falls back to loading the trace where SQLite lacks the JSON functions."""
        try:
            return self._run_stats_sql(trace_id)
        except sqlite3.OperationalError:  # SQLite built without JSON support (before 3.38 it was optional)
            return self.load(trace_id).stats

    def _run_stats_sql(self, trace_id: str) -> RunStats:
        q = self._conn.execute
        [(count, start, end, tokens_in, tokens_out, model_calls, tool_calls)] = q(_TOTALS_SQL, (trace_id,))
        if not count:
            raise TraceNotFound(f"no trace with id {trace_id!r} in {self.path}")
        roots = q(
            "SELECT s.name, json_extract(s.attributes, '$.\"flock.run.name\"') FROM spans s "
            "WHERE s.trace_id = ?1 AND (s.parent_id IS NULL OR NOT EXISTS "
            "(SELECT 1 FROM spans p WHERE p.trace_id = ?1 "
            "AND p.span_id = s.parent_id)) ORDER BY s.start_ns, s.end_ns LIMIT 1",
            (trace_id,),
        ).fetchall()
        stats = RunStats(
            trace_id=trace_id,
            name=str(roots[0][1] or roots[0][0]) if roots else "",
            start_ns=start,
            end_ns=end,
            spans=count,
            input_tokens=tokens_in or 0,
            output_tokens=tokens_out or 0,
            model_calls=model_calls or 0,
            tool_calls=tool_calls or 0,
        )
        for agent, activations in q(_AGENTS_SQL, (trace_id,)):
            stats.agents.append(str(agent))
            stats.activations += activations
        for type_name, artifacts in q(_ARTIFACTS_SQL, (trace_id,)):
            stats.artifacts_by_type[str(type_name)] = artifacts
            stats.artifacts += artifacts
        parent_of = dict(q("SELECT span_id, parent_id FROM spans WHERE trace_id = ?", (trace_id,)).fetchall())
        errors = {
            r[0] for r in q("SELECT span_id FROM spans WHERE trace_id = ? AND status = 'ERROR'", (trace_id,))
        }
        stats.errors = _error_origins(parent_of, errors)
        return stats

    def resolve(self, ident: str) -> str:
        """A full trace id from a prefix of one, or ``latest``."""
        if ident == "latest":
            recent = self.recent_trace_ids(1)
            if not recent:
                raise TraceNotFound(f"the trace store {self.path} holds no runs yet")
            return recent[0]
        prefix = ident.strip().lower()
        if not prefix or any(c not in "0123456789abcdef" for c in prefix):
            raise TraceNotFound(f"{ident!r} is not a trace id: give the hex id (or a prefix) or 'latest'")
        rows = self._conn.execute(
            "SELECT DISTINCT trace_id FROM spans WHERE trace_id >= ? AND trace_id < ? LIMIT 6",
            (prefix, prefix + "g"),
        ).fetchall()
        if not rows:
            raise TraceNotFound(f"no trace with id {ident!r} in {self.path}: list them with `flock traces`")
        if len(rows) > 1:
            shown = ", ".join(r[0][:16] for r in rows[:5])
            raise TraceNotFound(f"{ident!r} matches several traces ({shown}, ...): give more of the id")
        return str(rows[0][0])

    def load(self, trace_id: str) -> Trace:
        """One trace as a tree. ``trace_id`` must be complete (see :meth:`resolve`)."""
        rows = self._conn.execute(
            "SELECT trace_id, span_id, parent_id, name, kind, start_ns, end_ns, status, status_message, "
            "attributes, events, links FROM spans WHERE trace_id = ?",
            (trace_id,),
        ).fetchall()
        if not rows:
            raise TraceNotFound(f"no trace with id {trace_id!r} in {self.path}")
        spans = [
            SpanRecord(
                trace_id=r[0],
                span_id=r[1],
                parent_id=r[2],
                name=r[3],
                kind=r[4],
                start_ns=r[5],
                end_ns=r[6],
                status=r[7],
                status_message=r[8],
                attributes=json.loads(r[9]),
                events=json.loads(r[10]),
                links=json.loads(r[11]),
            )
            for r in rows
        ]
        return build_trace(trace_id, spans)
