"""The agent/artifact flow graph of one trace, and a layered left-to-right layout for drawing it.

Nodes are agents, artifact types and ``external`` (whoever published from outside any agent). Edges
follow causality as the spans record it: a publish span says who produced an artifact of which type
(producer → type); an activation span says which input types woke an agent (type → agent).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from .trace_query import SpanRecord, Trace

EXTERNAL = "external"


@dataclass
class Node:
    key: str  # "agent:writer", "type:Idea", "source:external"
    kind: str  # "agent", "type" or "source"
    label: str
    activations: int = 0
    artifacts: int = 0
    tokens: int = 0
    model_calls: int = 0
    errors: int = 0
    first_ns: int = 0
    layer: int = 0
    order: float = 0.0
    x: float = 0.0
    y: float = 0.0


@dataclass
class Edge:
    source: str
    target: str
    count: int = 0
    back: bool = False  # drawn against the flow (a cycle, e.g. an agent that refines its own output)


@dataclass
class FlowGraph:
    nodes: dict[str, Node] = field(default_factory=dict)
    edges: dict[tuple[str, str], Edge] = field(default_factory=dict)
    width: float = 0.0
    height: float = 0.0

    def node(self, kind: str, name: str, at_ns: int) -> Node:
        key = f"{kind}:{name}"
        node = self.nodes.get(key)
        if node is None:
            label = "external input" if kind == "source" else name
            node = self.nodes[key] = Node(key=key, kind=kind, label=label, first_ns=at_ns)
        node.first_ns = min(node.first_ns, at_ns)
        return node

    def edge(self, source: Node, target: Node) -> None:
        edge = self.edges.setdefault((source.key, target.key), Edge(source.key, target.key))
        edge.count += 1


def _agent_of(span: SpanRecord, parents: dict[str, SpanRecord]) -> str | None:
    """The agent whose activation encloses ``span`` (the span itself included)."""
    current: SpanRecord | None = span
    while current is not None:
        if current.category == "activate":
            return str(current.attributes.get("flock.agent", current.name.split(" ", 1)[-1]))
        current = parents.get(current.parent_id) if current.parent_id else None
    return None


def _as_strings(value: Any) -> list[str]:
    if value is None:
        return []
    return [str(v) for v in value] if isinstance(value, list | tuple) else [str(value)]


def build_graph(trace: Trace) -> FlowGraph:
    """Agents and artifact types of a trace, linked the way artifacts flowed between them."""
    graph = FlowGraph()
    parents = {s.span_id: s for s in trace.spans}
    for span in trace.spans:  # sorted by start time, so first appearance orders the nodes
        category = span.category
        if category == "publish":
            type_name = str(span.attributes.get("flock.artifact.type", span.name.split(" ", 1)[-1]))
            producer = str(span.attributes.get("flock.produced_by") or _agent_of(span, parents) or EXTERNAL)
            source = graph.node("source" if producer == EXTERNAL else "agent", producer, span.start_ns)
            target = graph.node("type", type_name, span.start_ns)
            target.artifacts += 1
            graph.edge(source, target)
        elif category == "activate":
            agent = graph.node(
                "agent", str(span.attributes.get("flock.agent", span.name.split(" ", 1)[-1])), span.start_ns
            )
            agent.activations += 1
            if span.is_error:
                agent.errors += 1
            for type_name in dict.fromkeys(_as_strings(span.attributes.get("flock.input.types"))):
                graph.edge(graph.node("type", type_name, span.start_ns), agent)
        elif category == "model":
            name = _agent_of(span, parents)
            if name is not None:
                agent = graph.node("agent", name, span.start_ns)
                agent.model_calls += 1
                agent.tokens += sum(span.tokens)
    layout(graph)
    return graph


# ---------------------------------------------------------------------------------------------- layout

NODE_W, NODE_H, COL_GAP, ROW_GAP, MARGIN = 150.0, 46.0, 52.0, 24.0, 22.0


def layout(graph: FlowGraph) -> None:
    """Columns by longest path from the sources (cycles broken at back edges), rows by barycenter."""
    nodes = sorted(graph.nodes.values(), key=lambda n: n.first_ns)
    succ: dict[str, list[str]] = {n.key: [] for n in nodes}
    for source, target in graph.edges:
        succ[source].append(target)
    _mark_back_edges(graph, nodes, succ)
    forward = [(e.source, e.target) for e in graph.edges.values() if not e.back and e.source != e.target]
    for node in _topological(nodes, forward):
        for source, target in forward:
            if source == node.key:
                child = graph.nodes[target]
                child.layer = max(child.layer, node.layer + 1)
    columns: dict[int, list[Node]] = {}
    for node in nodes:
        columns.setdefault(node.layer, []).append(node)
    for index, node in enumerate(nodes):
        node.order = float(index)
    preds: dict[str, list[str]] = {n.key: [] for n in nodes}
    for source, target in forward:
        preds[target].append(source)
    for layer in sorted(columns):  # one barycenter sweep keeps crossings down in typical pipelines
        column = columns[layer]
        for node in column:
            above = [graph.nodes[p].order for p in preds[node.key] if graph.nodes[p].layer < layer]
            node.order = sum(above) / len(above) if above else node.order
        column.sort(key=lambda n: (n.order, n.first_ns))
        for i, node in enumerate(column):
            node.order = float(i)
    tallest = max((len(c) for c in columns.values()), default=0)
    back = 30 if any(e.back for e in graph.edges.values()) else 0
    graph.height = 2 * MARGIN + tallest * NODE_H + max(0, tallest - 1) * ROW_GAP + back
    graph.width = 2 * MARGIN + len(columns) * NODE_W + max(0, len(columns) - 1) * COL_GAP
    for layer, column in columns.items():
        offset = (tallest - len(column)) * (NODE_H + ROW_GAP) / 2
        for i, node in enumerate(column):
            node.x = MARGIN + layer * (NODE_W + COL_GAP)
            node.y = MARGIN + offset + i * (NODE_H + ROW_GAP)


def _mark_back_edges(graph: FlowGraph, nodes: list[Node], succ: dict[str, list[str]]) -> None:
    state: dict[str, int] = {}  # 1 = on the DFS stack, 2 = done
    for start in nodes:
        if start.key in state:
            continue
        stack: list[tuple[str, Iterator[str]]] = [(start.key, iter(succ[start.key]))]
        state[start.key] = 1
        while stack:
            key, children = stack[-1]
            child = next(children, None)
            if child is None:
                state[key] = 2
                stack.pop()
            elif state.get(child) == 1:
                graph.edges[(key, child)].back = True
            elif child not in state:
                state[child] = 1
                stack.append((child, iter(succ[child])))


def _topological(nodes: list[Node], edges: list[tuple[str, str]]) -> list[Node]:
    indegree = {n.key: 0 for n in nodes}
    for _, target in edges:
        indegree[target] += 1
    by_key = {n.key: n for n in nodes}
    ready = [n for n in nodes if indegree[n.key] == 0]
    ordered: list[Node] = []
    while ready:
        node = ready.pop(0)
        ordered.append(node)
        for source, target in edges:
            if source == node.key:
                indegree[target] -= 1
                if indegree[target] == 0:
                    ready.append(by_key[target])
    return ordered


def edge_path(graph: FlowGraph, edge: Edge) -> tuple[str, float, float, float]:
    """SVG path data for an edge, where its count label goes, and the lowest y it reaches.

    Edges go from the right side of a node to the left side of the next. An edge that skips columns
    and would cross a node on the way is routed above (or below) the columns it skips; an edge
    against the flow loops underneath both nodes.
    """
    a, b = graph.nodes[edge.source], graph.nodes[edge.target]
    if edge.back:
        x1, y1, x2, y2 = a.x + NODE_W, a.y + NODE_H * 0.75, b.x, b.y + NODE_H * 0.75
        low = max(a.y, b.y) + NODE_H + 22
        path = f"M{x1:.0f},{y1:.0f} C{x1 + 60:.0f},{low:.0f} {x2 - 60:.0f},{low:.0f} {x2:.0f},{y2:.0f}"
        return path, (x1 + x2) / 2, low - 4, low
    x1, y1, x2, y2 = a.x + NODE_W, a.y + NODE_H / 2, b.x, b.y + NODE_H / 2
    between = [n for n in graph.nodes.values() if a.layer < n.layer < b.layer]
    if not any(_crosses(n, x1, y1, x2, y2) for n in between):
        bend = max(30.0, (x2 - x1) / 2)
        path = f"M{x1:.0f},{y1:.0f} C{x1 + bend:.0f},{y1:.0f} {x2 - bend:.0f},{y2:.0f} {x2:.0f},{y2:.0f}"
        return path, x1 + 16, y1 - 6, max(y1, y2)
    top = min(n.y for n in between) - 12
    bottom = max(n.y + NODE_H for n in between) + 12
    middle = (y1 + y2) / 2
    lane = top if top > 4 and abs(top - middle) <= abs(bottom - middle) else bottom
    xa = min(n.x for n in between) - 14
    xb = max(n.x + NODE_W for n in between) + 14
    b1, b2 = (xa - x1) / 2, (x2 - xb) / 2
    path = (
        f"M{x1:.0f},{y1:.0f} C{x1 + b1:.0f},{y1:.0f} {xa - b1:.0f},{lane:.0f} {xa:.0f},{lane:.0f} "
        f"L{xb:.0f},{lane:.0f} C{xb + b2:.0f},{lane:.0f} {x2 - b2:.0f},{y2:.0f} {x2:.0f},{y2:.0f}"
    )
    return path, (xa + xb) / 2, lane - 4, max(lane, y1, y2)


def _crosses(node: Node, x1: float, y1: float, x2: float, y2: float) -> bool:
    """Would the straight line from (x1, y1) to (x2, y2) pass through ``node``?"""
    t = (node.x + NODE_W / 2 - x1) / (x2 - x1) if x2 != x1 else 0.0
    y = y1 + t * (y2 - y1)
    return node.y - 6 <= y <= node.y + NODE_H + 6
