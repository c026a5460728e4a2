"""From artifact to activation: the routing index, gates and the run queue.

Routing an artifact looks up the subscriptions for its type in an index; it never scans every
agent. Gates (AND/count) and batches collect artifacts per correlation id until they are complete.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

from ._artifact import Artifact
from ._spec import AgentSpec, Subscription


@dataclass(frozen=True)
class Activation:
    """One unit of work: an agent, the subscription that fired, and the artifacts it collected."""

    agent: str
    subscription: int
    artifacts: tuple[Artifact, ...]

    @property
    def correlation_id(self) -> str:
        return self.artifacts[0].correlation_id


class RoutingIndex:
    """type name → [(agent spec, subscription)], rebuilt when agents change."""

    def __init__(self) -> None:
        self._routes: dict[str, list[tuple[AgentSpec, Subscription]]] = {}

    def rebuild(self, specs: list[AgentSpec]) -> None:
        routes: dict[str, list[tuple[AgentSpec, Subscription]]] = {}
        for spec in specs:
            for sub in spec.subscriptions:
                for name in dict.fromkeys(sub.type_names):
                    routes.setdefault(name, []).append((spec, sub))
        self._routes = routes

    def routes(self, type_name: str) -> list[tuple[AgentSpec, Subscription]]:
        return self._routes.get(type_name, [])


@dataclass
class _GateState:
    waiting: dict[str, deque[Artifact]] = field(default_factory=dict)


class Gates:
    """Buffers for AND gates, count gates and batches, keyed by (agent, subscription, correlation)."""

    def __init__(self) -> None:
        self._gates: dict[tuple[str, int, str], _GateState] = {}
        self._batches: dict[tuple[str, int, str], list[Artifact]] = {}

    def offer(self, spec: AgentSpec, sub: Subscription, artifact: Artifact) -> tuple[Artifact, ...] | None:
        """Add ``artifact`` to its gate; return the complete set when the gate can fire."""
        key = (spec.name, sub.index, artifact.correlation_id)
        state = self._gates.setdefault(key, _GateState())
        state.waiting.setdefault(artifact.type, deque()).append(artifact)
        counts = sub.counts
        if any(len(state.waiting.get(name, ())) < n for name, n in counts.items()):
            return None
        # Fire with artifacts in declaration order: consumes(A, B, A) → (a1, b1, a2).
        taken = [state.waiting[name].popleft() for name in sub.type_names]
        if not any(state.waiting.values()):
            del self._gates[key]
        return tuple(taken)

    def add_to_batch(
        self, spec: AgentSpec, sub: Subscription, artifact: Artifact
    ) -> tuple[Artifact, ...] | None:
        """Add to a batch; return the batch once it reaches ``size``."""
        key = (spec.name, sub.index, artifact.correlation_id)
        batch = self._batches.setdefault(key, [])
        batch.append(artifact)
        size = sub.batch.size if sub.batch else None
        if size is not None and len(batch) >= size:
            del self._batches[key]
            return tuple(batch)
        return None

    def take_batch(self, key: tuple[str, int, str]) -> tuple[Artifact, ...] | None:
        batch = self._batches.pop(key, None)
        return tuple(batch) if batch else None

    def partial_batches(self) -> list[tuple[str, int, str]]:
        return list(self._batches)

    def waiting(self) -> dict[tuple[str, int, str], int]:
        """Artifacts held in incomplete gates, by key (for run summaries and debugging)."""
        out = {k: sum(len(q) for q in s.waiting.values()) for k, s in self._gates.items()}
        out.update({k: len(b) for k, b in self._batches.items()})
        return out
