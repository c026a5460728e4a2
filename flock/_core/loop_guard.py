"""The loop guard: stops feedback loops, never independent inputs.

An artifact's *chain* says how often each agent acted in its causal history: the activation that
produced it, the ones that produced that activation's inputs, and so on back to artifacts published
from outside (which start with an empty chain). An activation of agent ``A`` is refused when ``A``
would appear more than ``max_agent_iterations`` times in its own chain — a loop ``A → B → A → …``
grows the chain on every turn, while a thousand unrelated inputs in one conversation each start
a chain of their own.

Chains of recent artifacts are kept in a bounded cache, emptied when a run ends; an artifact that
is not in it (or was stored by an earlier process) has its chain rebuilt from the store by
following ``consumed_from``.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Container, Iterable, Mapping
from uuid import UUID

from .artifact import Artifact

Chain = Mapping[str, int]  # never mutated once made: shared by every output of an activation
EMPTY: Chain = {}


class LoopGuard:
    def __init__(
        self,
        limit: int,
        agents: Container[str],
        lookup: Callable[[UUID], Awaitable[Artifact | None]],
        *,
        cache_size: int = 20_000,
    ) -> None:
        self.limit = limit
        self._agents = agents  # the declared agents' names (a live view, never copied)
        self._lookup = lookup
        self._cache: dict[UUID, Chain] = {}
        self._cache_size = cache_size

    def __len__(self) -> int:
        return len(self._cache)

    async def admit(self, agent: str, inputs: Iterable[Artifact]) -> Chain | None:
        """The chain of an activation of ``agent`` on ``inputs``, or ``None`` if it would loop."""
        merged: dict[str, int] = {}
        for artifact in inputs:
            chain = self._cache.get(artifact.id)
            if chain is None:
                chain = await self.chain(artifact)
            for name, n in chain.items():
                if n > merged.get(name, 0):
                    merged[name] = n
        turns = merged.get(agent, 0) + 1
        if turns > self.limit:
            return None
        merged[agent] = turns
        return merged

    def produced(self, outputs: Iterable[Artifact], chain: Chain) -> None:
        """Remember the chain of an activation's committed outputs."""
        for artifact in outputs:
            self._remember(artifact.id, chain)

    async def chain(self, artifact: Artifact) -> Chain:
        found = self._cache.get(artifact.id)
        if found is not None:
            return found
        if not artifact.consumed_from or artifact.produced_by not in self._agents:
            return EMPTY  # published from outside: a chain of its own
        return await self._rebuild(artifact)

    async def _rebuild(self, artifact: Artifact) -> Chain:
        """Chain of an artifact that is not cached, from its stored ancestors (iteratively)."""
        agents = self._agents
        stack: list[tuple[Artifact, bool]] = [(artifact, False)]
        done: dict[UUID, Chain] = {}
        while stack:
            current, expanded = stack.pop()
            if current.id in done:
                continue
            cached = self._cache.get(current.id)
            if cached is not None:
                done[current.id] = cached
                continue
            if not current.consumed_from or current.produced_by not in agents:
                done[current.id] = EMPTY
                continue
            parents = [p for p in [await self._lookup(i) for i in current.consumed_from] if p is not None]
            if not expanded:
                stack.append((current, True))
                stack.extend((p, False) for p in parents if p.id not in done)
                continue
            merged: dict[str, int] = {}
            for parent in parents:
                for name, n in done.get(parent.id, EMPTY).items():
                    merged[name] = max(merged.get(name, 0), n)
            merged[current.produced_by] = merged.get(current.produced_by, 0) + 1
            done[current.id] = merged
            self._remember(current.id, done[current.id])
        return done[artifact.id]

    def forget(self) -> None:
        """Drop the cache (a run ended): memory returns to its baseline; chains of artifacts still
        waiting in gates are rebuilt from the store when they are consumed."""
        self._cache.clear()

    def _remember(self, artifact_id: UUID, chain: Chain) -> None:
        cache = self._cache
        cache[artifact_id] = chain
        if len(cache) > self._cache_size:  # the oldest entry goes (dicts keep insertion order)
            del cache[next(iter(cache))]
