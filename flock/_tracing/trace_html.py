"""A self-contained HTML page for one trace: summary cards, the agent/artifact flow graph (SVG) and a
waterfall timeline of every span. Inline CSS, SVG and a little JavaScript (details panel, collapsing);
nothing is fetched from the network, and the page reads fine with scripts off."""

from __future__ import annotations

import json
from html import escape
from typing import Any

from .latency import percentiles
from .trace_graph import NODE_H, NODE_W, FlowGraph, Node, build_graph, edge_path
from .trace_query import SpanRecord, Trace
from .trace_view import fmt_count, fmt_duration, fmt_time, span_details

MAX_ROWS = 5000  # beyond this a browser struggles; the CLI tree has everything

_CSS = """
:root{--run:#64748b;--publish:#10b981;--activate:#3b82f6;--evaluate:#8b5cf6;--model:#f59e0b;
--tool:#ec4899;--reask:#f97316;--other:#94a3b8;--error:#dc2626;--line:#e2e8f0;--ink:#0f172a;
--mute:#64748b}
*{box-sizing:border-box}body{margin:0;
font:13px/1.4 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;
color:var(--ink);background:#f8fafc}header{padding:18px 24px 8px}h1{font-size:20px;margin:0 0 4px}
h2{font-size:14px;margin:0 0 8px;text-transform:uppercase;letter-spacing:.05em;color:var(--mute)}
.meta{color:var(--mute);font-family:ui-monospace,Menlo,Consolas,monospace;font-size:12px}
.cards{display:flex;flex-wrap:wrap;gap:10px;margin-top:12px}.card{background:#fff;
border:1px solid var(--line);
border-radius:8px;padding:8px 14px;min-width:110px}.card b{display:block;font-size:18px}
.card span{color:var(--mute)}
.card.bad{border-color:var(--error)}.card.bad b{color:var(--error)}
section{background:#fff;border:1px solid var(--line);border-radius:8px;margin:12px 24px;
padding:14px 16px}
#flow{overflow-x:auto}#flow svg{max-width:100%;height:auto}
.node rect{stroke-width:1.5}.node.agent rect{fill:#eff6ff;
stroke:var(--activate)}
.node.type rect{fill:#ecfdf5;stroke:var(--publish)}.node.source rect{fill:#f1f5f9;stroke:var(--run);
stroke-dasharray:4 3}.node.failed rect{stroke:var(--error);stroke-width:2.5}
.node text{font-size:12px}
.node .title{font-weight:600}.node .sub{fill:var(--mute);font-size:10.5px}
.node.failed .sub{fill:var(--error)}
.edge{fill:none;stroke:#94a3b8;stroke-width:1.5}.edge.back{stroke-dasharray:5 4}
.elabel{font-size:11px;fill:var(--mute)}
.legend{display:flex;gap:14px;flex-wrap:wrap;color:var(--mute);margin-bottom:8px}
.legend i{display:inline-block;
width:10px;height:10px;border-radius:2px;margin-right:4px;vertical-align:-1px}
.wf{display:grid;grid-template-columns:minmax(260px,38%) 1fr;font-size:12px}.axis{position:relative;
height:18px;
border-bottom:1px solid var(--line);color:var(--mute)}.axis span{position:absolute;
transform:translateX(-50%);
white-space:nowrap}.axis span:first-child{transform:none}.row{display:contents;cursor:pointer}
.row>div{padding:2px 0;border-bottom:1px solid #f1f5f9;min-height:22px}
.row:hover>div{background:#f8fafc}
.row.sel>div{background:#eef2ff}.label{white-space:nowrap;overflow:hidden;text-overflow:ellipsis;
padding-left:calc(var(--d)*14px + 4px)!important}.tog{display:inline-block;width:12px;
color:var(--mute)}
.label .info{color:var(--mute);margin-left:6px}.row.err .name{color:var(--error);font-weight:600}
.track{position:relative}.bar{position:absolute;top:5px;height:12px;min-width:2px;border-radius:2px}
.dur{position:absolute;top:3px;font-size:11px;color:var(--mute);white-space:nowrap;padding-left:4px}
.hidden{display:none!important}#details{font-family:ui-monospace,Menlo,Consolas,monospace;
font-size:12px;
white-space:pre-wrap;word-break:break-word}#details table{border-collapse:collapse}
#details td{padding:1px 10px 1px 0;
vertical-align:top}#details td:first-child{color:var(--mute)}
"""

_JS = """
(function () {
  var data = JSON.parse(document.getElementById("trace-data").textContent);
  var rows = Array.prototype.slice.call(document.querySelectorAll(".wf .row"));
  var panel = document.getElementById("details");
  var entities = {"&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;"};
  function esc(s) {
    return String(s).replace(/[&<>"]/g, function (c) { return entities[c]; });
  }
  function table(obj) {
    var keys = Object.keys(obj || {});
    if (!keys.length) return "<i>none</i>";
    return "<table>" + keys.map(function (k) {
      var v = obj[k];
      return "<tr><td>" + esc(k) + "</td><td>" + esc(typeof v === "string" ? v : JSON.stringify(v)) +
        "</td></tr>";
    }).join("") + "</table>";
  }
  function show(id) {
    var s = data.spans[id];
    if (!s) return;
    rows.forEach(function (r) { r.classList.toggle("sel", r.dataset.id === id); });
    var h = "<b>" + esc(s.name) + "</b>\\nspan " + esc(id) + " · " + esc(s.status) +
      (s.message ? ": " + esc(s.message) : "") + " · " + esc(s.duration) +
      "\\n\\n<b>attributes</b>" + table(s.attributes);
    s.events.forEach(function (e) { h += "\\n<b>event " + esc(e.name) + "</b>" + table(e.attributes); });
    if (s.links.length) {
      h += "\\n<b>links</b>\\n" + s.links.map(function (l) { return esc(l.span_id); }).join(", ");
    }
    panel.innerHTML = h;
  }
  function toggle(row) {
    var depth = +row.dataset.depth, closed = row.classList.toggle("closed");
    row.querySelector(".tog").textContent = closed ? "▸" : "▾";
    for (var i = rows.indexOf(row) + 1; i < rows.length && +rows[i].dataset.depth > depth; i++) {
      rows[i].classList.toggle("hidden", closed);
      rows[i].classList.remove("closed");
      var t = rows[i].querySelector(".tog");
      if (t.textContent) t.textContent = "▾";
    }
  }
  rows.forEach(function (row) {
    row.addEventListener("click", function (ev) {
      if (ev.target.classList.contains("tog") && ev.target.textContent) toggle(row);
      else show(row.dataset.id);
    });
  });
  document.querySelectorAll("#flow .node").forEach(function (node) {
    node.addEventListener("click", function () {
      var agent = node.dataset.agent, first = null;
      if (!agent) return;
      rows.forEach(function (r) {
        var hit = r.dataset.agent === agent;
        r.classList.toggle("sel", hit);
        if (hit && !first) first = r;
      });
      if (first) { first.scrollIntoView({block: "center"}); show(first.dataset.id); }
    });
  });
  // file.html#span=<span id> opens with that span selected (a link to a span, e.g. in a bug report)
  var wanted = /^#span=([0-9a-f]+)$/.exec(location.hash);
  if (wanted && data.spans[wanted[1]]) {
    show(wanted[1]);
    rows.filter(function (r) { return r.dataset.id === wanted[1]; })[0].scrollIntoView({block: "center"});
  }
  document.documentElement.setAttribute("data-ready", "true");
})();
"""


def render_html(trace: Trace) -> str:
    """The whole page for one trace as a string (write it to a ``.html`` file and open it)."""
    stats = trace.stats
    title = f"{stats.name} · Flock trace" if stats.name else "Flock trace"
    rows = _flatten(trace)
    return "".join(
        [
            '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">',
            '<meta name="viewport" content="width=device-width,initial-scale=1">',
            f"<title>{escape(title)}</title><style>{_CSS}</style></head><body>",
            _header(trace),
            _latency(trace),
            '<section id="flow"><h2>Agent and artifact flow</h2>',
            _svg(build_graph(trace)),
            "</section>",
            '<section id="timeline"><h2>Timeline</h2>',
            _legend(),
            _waterfall(trace, rows),
            "</section>",
            '<section id="span-details"><h2>Span details</h2>',
            '<div id="details">Click a span in the timeline.</div></section>',
            f'<script type="application/json" id="trace-data">{_data(trace, rows)}</script>',
            f"<script>{_JS}</script></body></html>",
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
