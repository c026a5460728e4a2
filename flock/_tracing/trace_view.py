"""Plain-text views of stored traces: the run table of ``flock traces`` and the span tree of
``flock traces show``. (The HTML page lives in :mod:`flock._tracing.trace_html`.)"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from .trace_query import RunStats, SpanRecord, Trace

_NAME_WIDTH = 72


def fmt_duration(ns: int) -> str:
    """``0.42 ms``, ``123.4 ms``, ``1.23 s``, ``2m 03s``."""
    ms = ns / 1e6
    if ms < 10:
        return f"{ms:.2f} ms"
    if ms < 1000:
        return f"{ms:.1f} ms"
    if ms < 60_000:
        return f"{ms / 1000:.2f} s"
    minutes, seconds = divmod(int(ms // 1000), 60)
    return f"{minutes}m {seconds:02d}s"


def fmt_time(ns: int) -> str:
    """Local wall-clock time of a span timestamp."""
    return datetime.fromtimestamp(ns / 1e9).astimezone().strftime("%Y-%m-%d %H:%M:%S")


def fmt_count(n: int) -> str:
    return f"{n:,}"


def _clip(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"


def span_details(span: SpanRecord) -> str:
    """The one-line summary of a span's interesting attributes (tokens for model calls, inputs, ...)."""
    a = span.attributes
    parts: list[str] = []
    category = span.category
    if category == "publish":
        parts.append(
            f"artifact {str(a.get('flock.artifact.id', ''))[:8]} by {a.get('flock.produced_by', '?')}"
        )
    elif category == "activate":
        types = _as_list(a.get("flock.input.types"))
        parts.append(f"inputs {', '.join(map(str, types)) or '-'}")
    elif category == "evaluate":
        engines = _as_list(a.get("flock.engine"))
        if engines:
            parts.append(f"engine {', '.join(map(str, engines))}")
    elif category == "model":
        tokens_in, tokens_out = span.tokens
        parts.append(f"tokens {fmt_count(tokens_in)} in / {fmt_count(tokens_out)} out")
        reasons = _as_list(a.get("gen_ai.response.finish_reasons"))
        if reasons:
            parts.append(f"finish {', '.join(map(str, reasons))}")
    elif category == "tool":
        if a.get("gen_ai.tool.call.id"):
            parts.append(f"call {a['gen_ai.tool.call.id']}")
    elif category == "reask":
        errors = _as_list(a.get("flock.reask.errors"))
        parts.append(f"attempt {a.get('flock.reask.attempt', '?')}")
        if errors:
            parts.append(_clip("; ".join(map(str, errors)), 80))
    elif category == "run":
        for key, label in (("flock.run.activations", "activations"), ("flock.run.artifacts", "artifacts")):
            if key in a:
                parts.append(f"{a[key]} {label}")
    if span.is_error:
        kind = a.get("flock.error.kind")
        message = span.status_message or _exception_message(span) or "failed"
        if kind and not message.startswith(str(kind)):
            message = f"{kind}: {message}"
        parts.append(_clip(message, 100))
    return " · ".join(parts)


def _as_list(value: Any) -> list[Any]:
    if value is None:
        return []
    return list(value) if isinstance(value, list | tuple) else [value]


def _exception_message(span: SpanRecord) -> str | None:
    for event in span.events:
        if event.get("name") == "exception":
            attrs = event.get("attributes", {})
            return f"{attrs.get('exception.type', 'error')}: {attrs.get('exception.message', '')}"
    return None


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


def summary_lines(stats: RunStats) -> list[str]:
    """Header lines for one run: what ran, how long, what it made and cost."""
    by_type = ", ".join(f"{name} {count}" for name, count in stats.artifacts_by_type.items())
    agents = ", ".join(stats.agents)
    return [
        f"{stats.name}  ·  trace {stats.trace_id}",
        f"started {fmt_time(stats.start_ns)}  ·  {fmt_duration(stats.duration_ns)}  ·  {stats.spans} spans",
        f"{_plural(len(stats.agents), 'agent')} ({agents or '-'})  ·  "
        f"{_plural(stats.activations, 'activation')}  ·  "
        f"{_plural(stats.artifacts, 'artifact')} ({by_type or '-'})",
        f"{_plural(stats.model_calls, 'model call')}  ·  {_plural(stats.tool_calls, 'tool call')}  ·  "
        f"{fmt_count(stats.tokens)} tokens ({fmt_count(stats.input_tokens)} in / "
        f"{fmt_count(stats.output_tokens)} out)  ·  {_plural(stats.errors, 'error')}",
    ]


def render_tree(trace: Trace, *, ascii_only: bool = False) -> str:
    """The run as an indented tree: one line per span with duration, status and details."""
    tee, last, pipe, blank = ("|- ", "`- ", "|  ", "   ") if ascii_only else ("├─ ", "└─ ", "│  ", "   ")
    rows: list[tuple[str, SpanRecord]] = []
    # an explicit stack, not recursion: an agent refining its own output can nest spans thousands deep
    stack: list[tuple[SpanRecord, str, str]] = [(root, "", "") for root in reversed(trace.roots)]
    while stack:
        span, prefix, connector = stack.pop()
        rows.append((prefix + connector + span.name, span))
        child_prefix = prefix if not connector else prefix + (blank if connector == last else pipe)
        count = len(span.children)
        stack.extend(
            (child, child_prefix, last if i == count - 1 else tee)
            for i, child in reversed(list(enumerate(span.children)))
        )
    width = min(_NAME_WIDTH, max((len(label) for label, _ in rows), default=4))
    lines = [*summary_lines(trace.stats), ""]
    lines.append(f"{'SPAN':<{width}}  {'DURATION':>10}  {'STATUS':<6}  DETAILS")
    for label, span in rows:
        status = "ERROR" if span.is_error else "ok"
        text = f"{_clip(label, width):<{width}}  {fmt_duration(span.duration_ns):>10}  {status:<6}"
        details = span_details(span)
        lines.append(f"{text}  {details}".rstrip() if details else text.rstrip())
    return "\n".join(lines) + "\n"


_COLUMNS = ("TRACE", "STARTED", "DURATION", "RUN", "AGENTS", "ARTIFACTS", "MODEL CALLS", "TOKENS", "ERRORS")
_NUMERIC = {"DURATION", "AGENTS", "ARTIFACTS", "MODEL CALLS", "TOKENS", "ERRORS"}


def render_runs(runs: list[RunStats]) -> str:
    """The table of ``flock traces``: newest run first."""
    if not runs:
        return "no runs recorded yet\n"
    table = [
        (
            run.trace_id[:12],
            fmt_time(run.start_ns),
            fmt_duration(run.duration_ns),
            _clip(run.name, 40),
            str(len(run.agents)),
            str(run.artifacts),
            str(run.model_calls),
            fmt_count(run.tokens),
            str(run.errors),
        )
        for run in runs
    ]
    widths = [max(len(col), *(len(row[i]) for row in table)) for i, col in enumerate(_COLUMNS)]

    def line(cells: tuple[str, ...]) -> str:
        out = [
            cell.rjust(w) if col in _NUMERIC else cell.ljust(w)
            for cell, w, col in zip(cells, widths, _COLUMNS, strict=True)
        ]
        return "  ".join(out).rstrip()

    return "\n".join([line(_COLUMNS), *(line(row) for row in table)]) + "\n"
