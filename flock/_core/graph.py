"""The agent/type graph: which agent can ever run, which outputs go nowhere, where the loops are.

Built from the declarations alone (``flock.graph()``); nothing runs. Types are named by their
registered names (``Artifact.type``), agents by their names.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .._stores.store import FilterConfig
from .spec import AgentSpec

if TYPE_CHECKING:
    from .outcomes import RunSummary

log = logging.getLogger("flock")

WORKFLOW_ERROR = "flock.WorkflowError"  # published by the flock itself when an activation fails
JOIN_EXPIRED = "flock.JoinExpired"  # published for an agent with a join when a join window closes
HUMAN_TASK = "flock.HumanTask"  # published by a human agent for each task it opens
_WARNED = "flock.graph.warned"  # key in ModelSettings.shared: agents already warned about
_SEEN = "flock.graph.seen_types"  # ... and every type name published so far
_BOARD = "flock.graph.board_read"  # the types already on a durable board were read
_LAST = "flock.graph.last_check"  # (agents, number of seen types) at the last check


def _uses_language_model(spec: AgentSpec) -> bool:
    """No engine means the default DSPy engine; otherwise look for a DSPy engine by class name
    (so this module never imports DSPy)."""
    if spec.human is not None:
        return False
    if not spec.engines:
        return True
    return any(any(c.__name__ == "DSPyEngine" for c in type(e).__mro__) for e in spec.engines)


def _flock_outputs(spec: AgentSpec) -> frozenset[str]:
    """The records Flock publishes on an agent's behalf: ``JoinExpired`` for an agent with a join,
    ``HumanTask`` for a human agent. They wake their consumers like any output, but no agent
    declares them, so they are neither dead ends nor inputs that must come from outside."""
    found = {JOIN_EXPIRED} if any(sub.join is not None for sub in spec.subscriptions) else set()
    if spec.human is not None:
        found.add(HUMAN_TASK)
    return frozenset(found)


@dataclass(frozen=True)
class AgentGraph:
    """The declared agents as a graph: types flow into the agents that consume them and out of the
    agents that publish them. Returned by :meth:`Flock.graph`::

        graph = flock.graph()
        graph.unreachable(from_types=[Idea])   # agents that can never run if only Ideas arrive
        graph.dead_ends()                      # types published that no agent consumes
        graph.cycles()                         # feedback loops, as lists of agent names
        print(graph.to_mermaid())              # a flowchart for docs and pull requests
        for line in graph.problems(): print(line)
    """

    agents: Mapping[str, AgentSpec]

    @classmethod
    def of(cls, flock: Any) -> AgentGraph:
        return cls({spec.name: spec for spec in flock.agents})

    # ------------------------------------------------------------------ what flows where
    @property
    def consumed(self) -> frozenset[str]:
        """Every type name some agent consumes."""
        return frozenset(n for spec in self.agents.values() for n in spec.consumed_type_names)

    @property
    def published(self) -> frozenset[str]:
        """Every type name some agent declares it publishes."""
        return frozenset(n for spec in self.agents.values() for n in spec.published_type_names)

    def inputs(self) -> list[str]:
        """Types some agent consumes but no agent publishes: they must come from outside."""
        implicit = {t for spec in self.agents.values() for t in _flock_outputs(spec)}
        return sorted(self.consumed - self.published - implicit - {WORKFLOW_ERROR})

    def unreachable(self, from_types: Iterable[Any] | None = None) -> list[str]:
        """Names of agents that can never run when only ``from_types`` are published from outside.

        ``from_types`` holds models or registered type names; by default every type no agent
        publishes (:meth:`inputs`). An AND gate needs all of its types; a scheduled agent always
        runs; failures publish ``WorkflowError``, so its consumers count as reachable, and an agent
        that runs makes the records Flock publishes for it (``JoinExpired`` for a join, ``HumanTask``
        for a human agent) reachable too.
        """
        available = set(self.inputs() if from_types is None else _names(from_types))
        available.add(WORKFLOW_ERROR)
        runs: set[str] = set()
        changed = True
        while changed:
            changed = False
            for name, spec in self.agents.items():
                if name in runs:
                    continue
                if spec.schedule is not None or any(
                    set(sub.type_names) <= available for sub in spec.subscriptions
                ):
                    runs.add(name)
                    available |= spec.published_type_names | _flock_outputs(spec)
                    changed = True
        return sorted(set(self.agents) - runs)

    def dead_ends(self) -> list[str]:
        """Types that agents publish and no agent consumes (fine for final results; a typo otherwise)."""
        return sorted(self.published - self.consumed)

    def edges(self) -> dict[str, set[str]]:
        """Agent → agents its outputs can wake (itself only when ``prevent_self_trigger(False)``;
        a subscription with ``from_agents`` only from those producers)."""
        out: dict[str, set[str]] = {name: set() for name in self.agents}
        for name, spec in self.agents.items():
            for other, ospec in self.agents.items():
                if other == name and ospec.prevent_self_trigger:
                    continue
                if any(
                    (spec.published_type_names | _flock_outputs(spec)) & set(sub.type_names)
                    and (sub.from_agents is None or name in sub.from_agents)
                    for sub in ospec.subscriptions
                ):
                    out[name].add(other)
        return out

    def cycles(self, limit: int = 100) -> list[list[str]]:
        """Feedback loops: each elementary cycle once, as agent names starting from the smallest.

        Loops are allowed (refinement, retries) but must end: bound them with ``where=`` or rely
        on the loop guard (``max_agent_iterations``). At most ``limit`` cycles are listed.
        """
        edges = self.edges()
        order = sorted(edges)
        found: list[list[str]] = []
        for start in order:
            # Cycles through `start` over nodes not smaller than it: each cycle is found once.
            stack: list[tuple[str, list[str]]] = [(start, [start])]
            while stack and len(found) < limit:
                node, path = stack.pop()
                for nxt in sorted(edges[node], reverse=True):
                    if nxt == start:
                        found.append(path)
                    elif nxt > start and nxt not in path:
                        stack.append((nxt, [*path, nxt]))
        return sorted(found, key=lambda c: (len(c), c))[:limit]

    # ------------------------------------------------------------------ pictures and findings
    def to_mermaid(self) -> str:
        """A Mermaid flowchart: types as boxes, agents as rounded nodes, arrows the way data flows.

        An AND gate's arrows are labelled ``and``; a batch's ``batch``; a join's ``join``.
        """
        lines = ["flowchart LR"]
        types = sorted(self.consumed | self.published)
        for t in types:
            lines.append(f'    {_id("t", t)}["{t}"]')
        for name in sorted(self.agents):
            lines.append(f'    {_id("a", name)}(["{name}"])')
        for name in sorted(self.agents):
            spec = self.agents[name]
            for sub in spec.subscriptions:
                label = "batch" if sub.batch else "join" if sub.join else "and" if sub.is_gate else ""
                arrow = f"-->|{label}|" if label else "-->"
                for t in dict.fromkeys(sub.type_names):
                    lines.append(f"    {_id('t', t)} {arrow} {_id('a', name)}")
            for t in sorted(spec.published_type_names):
                lines.append(f"    {_id('a', name)} --> {_id('t', t)}")
        return "\n".join(lines)

    def problems(self, inputs: Iterable[Any] | None = None) -> list[str]:
        """Wiring mistakes, one sentence each with the fix. Empty when the graph looks sound.

        With ``inputs`` (the types published from outside), a consumed type that is neither an
        input nor published by an agent, and agents that cannot run from those inputs, are
        problems too. Without it, types nobody publishes are taken to be the inputs.
        """
        found: list[str] = []
        for name in sorted(self.agents):
            spec = self.agents[name]
            if not spec.subscriptions and spec.schedule is None:
                found.append(
                    f"agent {name!r} consumes nothing and has no schedule, so it never runs: "
                    "add .consumes(SomeType) or .schedule(every=...)"
                )
            if _uses_language_model(spec) and not spec.output_groups:
                found.append(
                    f"agent {name!r} runs a language model but publishes nothing, so its answers "
                    "are thrown away: add .publishes(SomeType)"
                )
            if spec.human is not None and not spec.output_groups:
                found.append(
                    f"agent {name!r} is a human agent that publishes nothing, so nobody could answer "
                    "its tasks: add .publishes(SomeType)"
                )
        if inputs is not None:
            given = set(_names(inputs))
            for t in self.inputs():
                if t not in given:
                    users = sorted(n for n, s in self.agents.items() if t in s.consumed_type_names)
                    found.append(
                        f"type {t!r} is consumed by {', '.join(users)} but no agent publishes it and "
                        "it is not among the inputs: publish it from an agent, or list it as an input"
                    )
            for name in self.unreachable(given):
                if self.agents[name].subscriptions:
                    found.append(f"agent {name!r} can never run from the inputs {sorted(given)}")
        else:
            for name in self.unreachable():
                if self.agents[name].subscriptions:
                    found.append(
                        f"agent {name!r} can never run: what it consumes comes only from agents that "
                        "cannot run themselves (a loop with no way in); publish one of its types from "
                        "outside or from another agent"
                    )
        return found


def _names(types: Iterable[Any]) -> list[str]:
    from .types import type_name

    if isinstance(types, str | type):
        types = [types]
    return [t if isinstance(t, str) else type_name(t) for t in types]


def _id(prefix: str, name: str) -> str:
    return f"{prefix}_{re.sub(r'[^0-9A-Za-z_]', '_', name)}"


async def warn_unreachable(flock: Any, summary: RunSummary) -> None:
    """After a run: log once per agent that it cannot run from anything published so far."""
    if not flock.agents:
        return
    shared = flock.settings.shared
    seen: set[str] = shared.setdefault(_SEEN, set())
    warned: set[str] = shared.setdefault(_WARNED, set())
    for spec in flock.agents:
        if spec.name not in warned and not spec.subscriptions and spec.schedule is None:
            warned.add(spec.name)  # declared, but nothing can ever start it
            log.warning(
                "agent %r consumes nothing and has no schedule, so it never runs: add "
                ".consumes(SomeType) or .schedule(every=...)",
                spec.name,
            )
    for spec in flock.agents:  # ran, and nothing came of it: say so once, not never
        ran = spec.name in summary.agents_run and spec.name not in warned
        if ran and not spec.output_groups and _uses_language_model(spec):
            warned.add(spec.name)
            log.warning(
                "agent %r ran with no .publishes(...), so its language model was not asked anything "
                "and nothing was published: add .publishes(SomeType), or .calls(func) for an agent "
                "that only acts",
                spec.name,
            )
    seen.update(summary.artifacts_by_type)
    if not shared.get(_BOARD) and getattr(flock.store, "durable", True):
        # A durable board holds what earlier processes published (a resumed board, a task answered
        # from another process): that counts as published too. Read once per Flock.
        shared[_BOARD] = True
        for name in {t for spec in flock.agents for t in spec.consumed_type_names} - seen:
            if await flock.store.count(FilterConfig(type_names=frozenset({name}))):
                seen.add(name)
    state = (tuple(s.name for s in flock.agents), len(seen))
    if not seen or shared.get(_LAST) == state:
        return  # nothing published yet to judge by, or nothing changed since the last look
    shared[_LAST] = state
    graph = AgentGraph.of(flock)
    for name in graph.unreachable(from_types=seen):
        spec = graph.agents[name]
        if name in warned or not spec.subscriptions:
            continue
        warned.add(name)
        missing = sorted({t for sub in spec.subscriptions for t in sub.type_names} - seen - graph.published)
        log.warning(
            "agent %r cannot run from what has been published so far: %s. Publish %s, or check the "
            "wiring with flock.graph().problems() or `flock check`",
            name,
            f"nothing published {', '.join(missing)} and no agent publishes it"
            if missing
            else "the agents that publish its inputs cannot run either",
            " or ".join(missing) or "their inputs",
        )
