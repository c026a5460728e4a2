"""From artifact to activation: the routing index, gates and the run queue.

Routing an artifact looks up the subscriptions for its type in an index; it never scans every
agent. Gates (AND/count) and batches collect artifacts per correlation id until they are complete.
"""

from __future__ import annotations

import itertools
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any
from uuid import uuid4

from .._stores.store import ActivationRecord
from .artifact import Artifact
from .spec import AgentSpec, Subscription, Tick


@dataclass(frozen=True)
class Activation:
    """One unit of work: an agent, the subscription that fired, and the artifacts it collected.

    Scheduled activations have no artifacts, a ``tick`` and ``subscription == -1``. ``chain`` is
    how often each agent acted in its inputs' causal history, itself included (the loop guard's).
    """

    agent: str
    subscription: int
    artifacts: tuple[Artifact, ...]
    tick: Tick | None = None
    workflow: str = ""
    journaled: bool = True
    chain: Mapping[str, int] = field(default_factory=dict, compare=False)
    correlation_id: str = field(init=False, compare=False, repr=False)
    """The workflow it belongs to: its first input's, or for a scheduled run a new one."""

    def __post_init__(self) -> None:
        # Only a scheduled activation (no inputs to inherit from) starts a workflow of its own;
        # a uuid4 for every activation would cost more than the rest of its bookkeeping.
        if self.artifacts:
            object.__setattr__(self, "correlation_id", self.artifacts[0].correlation_id)
            return
        if not self.workflow:
            object.__setattr__(self, "workflow", str(uuid4()))
        object.__setattr__(self, "correlation_id", self.workflow)

    @cached_property
    def record(self) -> ActivationRecord:
        """The journal entry; its id is stable for the same agent, subscription and inputs."""
        salt = "" if self.artifacts else f"tick:{self.workflow}"
        return ActivationRecord.for_inputs(
            self.agent, self.subscription, [a.id for a in self.artifacts], salt=salt
        )


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
        self._batch_ids: dict[tuple[str, int, str], int] = {}
        self._batch_opened: dict[tuple[str, int, str], float] = {}
        self._counter = itertools.count(1)

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

    @staticmethod
    def batch_key(spec: AgentSpec, sub: Subscription, artifact: Artifact) -> tuple[str, int, str]:
        group = artifact.correlation_id if sub.batch is None or sub.batch.per_correlation else "*"
        return (spec.name, sub.index, group)

    def batch_age(self, key: tuple[str, int, str], now: float) -> float:
        """Seconds since the open batch under ``key`` received its first artifact (0 if none is open)."""
        return now - self._batch_opened[key] if key in self._batches else 0.0

    def add_to_batch(
        self, spec: AgentSpec, sub: Subscription, artifact: Artifact, now: float = 0.0
    ) -> tuple[tuple[str, int, str], int, tuple[Artifact, ...] | None]:
        """Add to a batch. Returns (key, batch number, the full batch once it reaches ``size``).

        The batch number lets a timeout flush exactly the batch it was started for.
        """
        key = self.batch_key(spec, sub, artifact)
        batch = self._batches.get(key)
        if batch is None:
            batch = self._batches[key] = []
            self._batch_ids[key] = next(self._counter)
            self._batch_opened[key] = now
        batch.append(artifact)
        number = self._batch_ids[key]
        size = sub.batch.size if sub.batch else None
        if size is not None and len(batch) >= size:
            self._close_batch(key)
            return key, number, tuple(batch)
        return key, number, None

    def _close_batch(self, key: tuple[str, int, str]) -> list[Artifact] | None:
        # Forget the batch's number and start time too: one entry per workflow would otherwise stay.
        self._batch_ids.pop(key, None)
        self._batch_opened.pop(key, None)
        return self._batches.pop(key, None)

    def batch_started(self, key: tuple[str, int, str]) -> bool:
        return len(self._batches.get(key, ())) == 1

    def take_batch(self, key: tuple[str, int, str], number: int | None = None) -> tuple[Artifact, ...] | None:
        """Remove and return the open batch under ``key`` (only if it is batch ``number``, when given)."""
        if number is not None and self._batch_ids.get(key) != number:
            return None
        batch = self._close_batch(key)
        return tuple(batch) if batch else None

    def partial_batches(self) -> list[tuple[str, int, str]]:
        return list(self._batches)

    def waiting(self) -> dict[tuple[str, int, str], int]:
        """Artifacts held in incomplete gates, by key (for run summaries and debugging)."""
        out = {k: sum(len(q) for q in s.waiting.values()) for k, s in self._gates.items()}
        out.update({k: len(b) for k, b in self._batches.items()})
        return out


@dataclass
class JoinGroup:
    """Members collected so far for one join key."""

    number: int
    key: Any
    opened_at: float
    opened_seq: int
    waiting: dict[str, deque[Artifact]] = field(default_factory=dict)

    def members(self) -> list[Artifact]:
        return [a for q in self.waiting.values() for a in q]


class Joins:
    """Open join groups per (agent, subscription), keyed by the value ``JoinSpec.by`` returns."""

    def __init__(self) -> None:
        self._groups: dict[tuple[str, int], dict[Any, JoinGroup]] = {}
        self._seq: dict[tuple[str, int], int] = {}
        self._counter = itertools.count(1)

    def offer(
        self, spec: AgentSpec, sub: Subscription, artifact: Artifact, key: Any, now: float
    ) -> tuple[JoinGroup, tuple[Artifact, ...] | None]:
        """Add ``artifact`` under ``key``; returns its group and the members once complete."""
        slot = (spec.name, sub.index)
        seq = self._seq[slot] = self._seq.get(slot, 0) + 1
        groups = self._groups.setdefault(slot, {})
        group = groups.get(key)
        if group is None:
            group = groups[key] = JoinGroup(next(self._counter), key, now, seq)
        group.waiting.setdefault(artifact.type, deque()).append(artifact)
        if any(len(group.waiting.get(n, ())) < c for n, c in sub.counts.items()):
            return group, None
        taken = tuple(group.waiting[name].popleft() for name in sub.type_names)
        if not any(group.waiting.values()):
            del groups[key]
        return group, taken

    def overdue(self, slot: tuple[str, int], key: Any, opened_before: float) -> JoinGroup | None:
        """Remove and return the open group under ``key`` if it opened at or before ``opened_before``."""
        group = self._groups.get(slot, {}).get(key)
        if group is None or group.opened_at > opened_before:
            return None
        return self.expire(slot, key, group.number)

    def expire(self, slot: tuple[str, int], key: Any, number: int) -> JoinGroup | None:
        """Remove the group ``number`` under ``key`` if it is still open."""
        group = self._groups.get(slot, {}).get(key)
        if group is None or group.number != number:
            return None
        del self._groups[slot][key]
        return group

    def expire_by_count(self, slot: tuple[str, int], window: int) -> list[JoinGroup]:
        """Remove groups that saw ``window`` further arrivals of their subscription without completing."""
        seq = self._seq.get(slot, 0)
        groups = self._groups.get(slot, {})
        # Groups sit in the dict in the order they opened, so the stale ones come first.
        stale = list(itertools.takewhile(lambda g: seq - g.opened_seq >= window, groups.values()))
        for g in stale:
            del groups[g.key]
        return stale

    def open_count(self) -> int:
        return sum(len(g) for g in self._groups.values())

    def waiting(self) -> dict[tuple[str, int], int]:
        """Artifacts held in open groups, by (agent, subscription)."""
        return {slot: sum(len(g.members()) for g in groups.values()) for slot, groups in self._groups.items()}
