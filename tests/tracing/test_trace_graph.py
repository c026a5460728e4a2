"""The agent/artifact flow graph: nodes, causal edges and a layout that keeps the flow left to right."""

from __future__ import annotations

from itertools import pairwise
from pathlib import Path

from trace_support import Recorder

from flock._tracing.trace_graph import NODE_H, NODE_W, build_graph, edge_path
from flock._tracing.trace_html import render_html
from flock._tracing.trace_query import Trace, TraceStore
from flock._tracing.trace_store import SQLiteSpanExporter


def load(db: Path) -> Trace:
    with TraceStore(db) as store:
        return store.load(store.resolve("latest"))


def test_graph_of_the_recorded_run(recorded: tuple[Path, str]) -> None:
    db, _ = recorded
    graph = build_graph(load(db))
    columns = {key: node.layer for key, node in graph.nodes.items()}
    assert columns == {
        "source:external": 0,
        "type:Idea": 1,
        "agent:planner": 2,
        "type:Plan": 3,
        "type:Task": 3,
        "agent:worker": 4,
        "type:Result": 5,
        "agent:reviewer": 6,
        "type:Report": 7,
    }
    counts = {key: edge.count for key, edge in graph.edges.items()}
    assert counts[("agent:planner", "type:Task")] == 3
    assert counts[("type:Task", "agent:worker")] == 3
    assert counts[("type:Result", "agent:reviewer")] == 1  # one activation, two inputs of one type
    worker = graph.nodes["agent:worker"]
    assert (worker.activations, worker.errors, worker.model_calls, worker.tokens) == (3, 1, 6, 2060)
    assert graph.nodes["type:Task"].artifacts == 3
    assert not any(edge.back for edge in graph.edges.values())
    # nodes never overlap
    boxes = sorted((n.x, n.y) for n in graph.nodes.values())
    for (x1, y1), (x2, y2) in pairwise(boxes):
        assert x1 != x2 or abs(y1 - y2) >= NODE_H


def test_a_refinement_loop_is_a_back_edge_drawn_under_the_nodes(db: Path) -> None:
    exporter = SQLiteSpanExporter(db)
    rec = Recorder(exporter)
    with rec.span("flock.run loop", 0, 100, flock__run__name="loop") as run:
        parent = run
        for i in range(3):  # editor consumes Draft and publishes Draft
            with (
                rec.span(
                    "flock.publish Draft",
                    i * 30,
                    i * 30 + 1,
                    parent,
                    flock__artifact__type="Draft",
                    flock__produced_by="external" if i == 0 else "editor",
                ) as publish,
                rec.span(
                    "flock.activate editor",
                    i * 30 + 2,
                    i * 30 + 29,
                    publish,
                    flock__agent="editor",
                    flock__input__types=["Draft"],
                ) as activation,
            ):
                parent = activation
    rec.provider.force_flush()
    exporter.shutdown()
    trace = load(db)
    graph = build_graph(trace)
    back = [edge for edge in graph.edges.values() if edge.back]
    assert [(e.source, e.target) for e in back] == [("agent:editor", "type:Draft")]
    path, _, _, lowest = edge_path(graph, back[0])
    assert lowest > max(n.y for n in graph.nodes.values()) + NODE_H  # loops below every node
    assert path.startswith(f"M{graph.nodes['agent:editor'].x + NODE_W:.0f},")
    html = render_html(trace)
    assert 'class="edge back"' in html


def test_an_empty_trace_still_renders(db: Path) -> None:
    exporter = SQLiteSpanExporter(db)
    rec = Recorder(exporter)
    with rec.span("some other library", 0, 5):
        pass
    rec.provider.force_flush()
    html = render_html(load(db))
    assert "No agents or artifacts in this trace." in html
    assert "some other library" in html
