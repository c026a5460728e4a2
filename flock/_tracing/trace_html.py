"""A self-contained HTML page for one trace: summary cards, the agent/artifact flow graph (SVG) and a
waterfall timeline of every span. Inline CSS, SVG and a little JavaScript (details panel, collapsing);
nothing is fetched from the network, and the page reads fine with scripts off (the style sheet and
script are in :mod:`flock._tracing.trace_assets`)."""

from __future__ import annotations

import json
from html import escape
from typing import Any

from .latency import percentiles
from .trace_assets import CSS, JS
from .trace_graph import NODE_H, NODE_W, FlowGraph, Node, build_graph, edge_path
from .trace_query import SpanRecord, Trace
from .trace_view import fmt_count, fmt_duration, fmt_time, span_details

MAX_ROWS = 5000  # beyond this a browser struggles; the CLI tree has everything

_FILTERS = (
    '<div class="filters"><label>agent <select id="filter-agent"><option value="">all agents</option>'
    '</select></label><label><input type="checkbox" id="filter-errors"> errors only</label>'
    '<input type="search" id="filter-search" placeholder="search names, attributes, payloads"'
    ' aria-label="search spans"><span id="match-count"></span></div>'
)


def render_html(trace: Trace) -> str:
    """The whole page for one trace as a string (write it to a ``.html`` file and open it)."""
    stats = trace.stats
    title = f"{stats.name} · Flock trace" if stats.name else "Flock trace"
    rows = _flatten(trace)
    return "".join(
        [
            '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">',
            '<meta name="viewport" content="width=device-width,initial-scale=1">',
            f"<title>{escape(title)}</title><style>{CSS}</style></head><body>",
            _header(trace),
            _latency(trace),
            '<section id="flow"><h2>Agent and artifact flow</h2>',
            _svg(build_graph(trace)),
            "</section>",
            '<section id="timeline"><h2>Timeline</h2>',
            _legend(),
            _FILTERS,
            _waterfall(trace, rows),
            "</section>",
            '<section id="span-details"><h2>Span details</h2>',
            '<div id="details">Click a span in the timeline.</div></section>',
            f'<script type="application/json" id="trace-data">{_data(trace, rows)}</script>',
            f"<script>{JS}</script></body></html>",
        ]
    )


def _header(trace: Trace) -> str:
    s = trace.stats
    cards = [
        ("Duration", fmt_duration(s.duration_ns), False),
        ("Agents", str(len(s.agents)), False),
        ("Activations", str(s.activations), False),
        ("Artifacts", str(s.artifacts), False),
        ("Model calls", str(s.model_calls), False),
        ("Tokens", f"{fmt_count(s.input_tokens)} in / {fmt_count(s.output_tokens)} out", False),
        ("Errors", str(s.errors), s.errors > 0),
    ]
    html_cards = "".join(
        f'<div class="card{" bad" if bad else ""}" id="card-{escape(label.lower().replace(" ", "-"))}">'
        f"<b>{escape(value)}</b><span>{escape(label)}</span></div>"
        for label, value, bad in cards
    )
    return (
        f"<header><h1>{escape(s.name or 'trace')}</h1>"
        f'<div class="meta">trace {escape(s.trace_id)} · started {escape(fmt_time(s.start_ns))} · '
        f'{s.spans} spans</div><div class="cards">{html_cards}</div></header>'
    )


def _latency(trace: Trace) -> str:
    """p50/p90/p99 of each model's calls in this trace (from the model-call spans), or nothing."""
    durations: dict[str, list[float]] = {}
    for span in trace.spans:
        if span.category == "model":
            provider = span.attributes.get("gen_ai.provider.name")
            name = span.attributes.get("gen_ai.request.model") or span.name.split(" ", 1)[-1]
            model = f"{provider}/{name}" if provider and provider != "flock" else str(name)
            durations.setdefault(model, []).append((span.end_ns - span.start_ns) / 1e9)
    if not durations:
        return ""
    rows = "".join(
        f"<tr><td>{escape(model)}</td><td>{len(values)}</td>"
        + "".join(f"<td>{escape(fmt_duration(int(q * 1e9)))}</td>" for q in percentiles(values))
        + "</tr>"
        for model, values in sorted(durations.items())
    )
    return (
        '<section id="latency"><h2>Model latency</h2><table class="latency"><tr><th>model</th>'
        f"<th>calls</th><th>p50</th><th>p90</th><th>p99</th><th>max</th></tr>{rows}</table></section>"
    )


def _legend() -> str:
    items = [
        ("run", "run"),
        ("publish", "publish"),
        ("activate", "activation"),
        ("evaluate", "engine"),
        ("model", "model call"),
        ("tool", "tool call"),
        ("reask", "re-ask"),
        ("error", "error"),
    ]
    return (
        '<div class="legend">'
        + "".join(f'<span><i style="background:var(--{k})"></i>{label}</span>' for k, label in items)
        + "</div>"
    )


def _compact(n: int) -> str:
    return str(n) if n < 1000 else f"{n / 1000:.1f}k" if n < 1_000_000 else f"{n / 1e6:.1f}M"


def _node_lines(node: Node) -> str:
    if node.kind == "agent":
        parts = [f"{node.activations} run{'s' if node.activations != 1 else ''}"]
        if node.model_calls:
            parts.append(f"{_compact(node.tokens)} tok")
        if node.errors:
            parts.append(f"{node.errors} failed")
        return " · ".join(parts)
    if node.kind == "type":
        return f"{node.artifacts} artifact{'s' if node.artifacts != 1 else ''}"
    return "published from outside"


def _svg(graph: FlowGraph) -> str:
    if not graph.nodes:
        return "<p>No agents or artifacts in this trace.</p>"
    out = [
        "",  # the <svg> tag, once the edges say how tall the drawing is
        '<defs><marker id="arrow" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="7" markerHeight="7" '
        'orient="auto-start-reverse"><path d="M0,0L10,5L0,10z" fill="#94a3b8"/></marker></defs>',
    ]
    height = graph.height
    for edge in graph.edges.values():
        path, mx, my, lowest = edge_path(graph, edge)
        height = max(height, lowest + 12)
        out.append(
            f'<path class="edge{" back" if edge.back else ""}" d="{path}" marker-end="url(#arrow)" '
            f'data-from="{escape(edge.source)}" data-to="{escape(edge.target)}"/>'
        )
        if edge.count > 1:
            out.append(
                f'<text class="elabel" x="{mx:.0f}" y="{my:.0f}" text-anchor="middle">'
                f"&#215;{edge.count}</text>"
            )
    for node in graph.nodes.values():
        failed = " failed" if node.errors else ""
        agent = f' data-agent="{escape(node.label)}"' if node.kind == "agent" else ""
        radius = 8 if node.kind == "agent" else NODE_H / 2
        label = node.label if len(node.label) <= 22 else node.label[:21] + "…"
        out.append(
            f'<g class="node {node.kind}{failed}" data-key="{escape(node.key)}"{agent}>'
            f"<title>{escape(node.key)}</title>"
            f'<rect x="{node.x:.0f}" y="{node.y:.0f}" width="{NODE_W:.0f}" height="{NODE_H:.0f}" '
            f'rx="{radius:.0f}"/>'
            f'<text class="title" x="{node.x + NODE_W / 2:.0f}" y="{node.y + 19:.0f}" text-anchor="middle">'
            f"{escape(label)}</text>"
            f'<text class="sub" x="{node.x + NODE_W / 2:.0f}" y="{node.y + 35:.0f}" text-anchor="middle">'
            f"{escape(_node_lines(node))}</text></g>"
        )
    out.append("</svg>")
    out[0] = (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{graph.width:.0f}" height="{height:.0f}" '
        f'viewBox="0 0 {graph.width:.0f} {height:.0f}" role="img" aria-label="agent and artifact flow" '
        # shrink a wide graph to fit, but not below 60%: beyond that the section scrolls instead
        f'style="min-width:{graph.width * 0.6:.0f}px">'
    )
    return "".join(out)


def _flatten(trace: Trace) -> list[tuple[int, SpanRecord, str | None]]:
    rows: list[tuple[int, SpanRecord, str | None]] = []
    stack: list[tuple[int, SpanRecord, str | None]] = [(0, root, None) for root in reversed(trace.roots)]
    while stack and len(rows) < MAX_ROWS:
        depth, span, agent = stack.pop()
        if span.category == "activate":
            agent = str(span.attributes.get("flock.agent", ""))
        rows.append((depth, span, agent))
        stack.extend((depth + 1, child, agent) for child in reversed(span.children))
    return rows


def _waterfall(trace: Trace, rows: list[tuple[int, SpanRecord, str | None]]) -> str:
    t0, total = trace.stats.start_ns, max(1, trace.stats.duration_ns)
    ticks = "".join(
        f'<span style="left:{i * 20}%">{"0" if i == 0 else fmt_duration(total * i // 5)}</span>'
        for i in range(5)
    )
    out = [f'<div class="wf"><div class="axis"></div><div class="axis">{ticks}</div>']
    for depth, span, agent in rows:
        left = (span.start_ns - t0) / total * 100
        width = span.duration_ns / total * 100
        color = "error" if span.is_error else span.category
        info = span_details(span)
        err = " err" if span.is_error else ""
        toggle = "▾" if span.children else ""
        agent_attr = f' data-agent="{escape(agent)}"' if agent else ""
        # the label goes right of the bar; left of it when the bar ends near the right edge; inside a
        # bar that spans (almost) the whole track
        if left + width < 86:
            where = f"left:{left + width:.3f}%"
        elif left > 14:
            where = f"right:{100 - left:.3f}%"
        else:
            where = f"right:{max(0.0, 100 - left - width):.3f}%;color:#fff;padding-right:6px"
        duration = escape(fmt_duration(span.duration_ns))
        out.append(
            f'<div class="row{err} cat-{span.category}" data-id="{span.span_id}" '
            f'data-depth="{depth}"{agent_attr}><div class="label" style="--d:{depth}" '
            f'title="{escape(span.name)}"><span class="tog">{toggle}</span>'
            f'<span class="name">{escape(span.name)}</span><span class="info">{escape(info)}</span></div>'
            f'<div class="track"><div class="bar" style="left:{left:.3f}%;width:{width:.3f}%;'
            f'background:var(--{color})" title="{escape(span.name)}: {duration}">'
            f'</div><span class="dur" style="{where}">{duration}'
            f"</span></div></div>"
        )
    out.append("</div>")
    if len(trace.spans) > MAX_ROWS:
        out.append(
            f"<p>Showing the first {MAX_ROWS} of {len(trace.spans)} spans; `flock traces show` lists all.</p>"
        )
    return "".join(out)


def _data(trace: Trace, rows: list[tuple[int, SpanRecord, str | None]]) -> str:
    """Every shown span's attributes, events and links, for the details panel."""
    spans: dict[str, Any] = {
        s.span_id: {
            "name": s.name,
            "status": s.status,
            "message": s.status_message,
            "duration": fmt_duration(s.duration_ns),
            "attributes": s.attributes,
            "events": s.events,
            "links": s.links,
        }
        for _, s, _ in rows
    }
    text = json.dumps({"trace_id": trace.trace_id, "spans": spans}, ensure_ascii=False, default=str)
    # Inside <script> only "</" and "<!--" are dangerous; escaping every < > & makes both impossible.
    return text.replace("&", "\\u0026").replace("<", "\\u003c").replace(">", "\\u003e")
