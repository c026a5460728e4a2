"""Routing: which agents an artifact wakes, and when their activations are ready.

For each subscription of the artifact's type (an index lookup, never a scan of every agent) the
router checks self-trigger, producer, tags, visibility, ``where`` and at-most-once, then hands the
artifact to its gate: plain subscriptions fire at once, AND/count gates wait for their partners in
the same correlation id, batches collect, joins group by key within a window, and activation
conditions defer until they hold.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import TYPE_CHECKING
from uuid import UUID, uuid5

from pydantic import BaseModel

from ._artifact import Artifact, payload_of
from ._outcomes import JoinExpired
from ._scheduler import Activation, Gates, JoinGroup, Joins, RoutingIndex
from ._spec import AgentSpec, Subscription
from ._types import type_name
from ._visibility import most_restrictive

if TYPE_CHECKING:
    from ._flock import Flock

log = logging.getLogger("flock")
_EVENTS = UUID("0c0f3a55-5e1d-4c7e-9a53-3f6b2d1e8a77")  # namespace of ids derived from their cause


class Router:
    """Routing state of one Flock: the index, gate buffers, joins, dedup and the loop guard."""

    def __init__(self, flock: Flock) -> None:
        self._flock = flock
        self.index = RoutingIndex()
        self.dirty = True
        self.gates = Gates()
        self.joins = Joins()
        self.seen: set[tuple[UUID, str, int]] = set()
        self.iterations: Counter[tuple[str, str]] = Counter()
        self.tripped: set[tuple[str, str]] = set()
        self.deferred: list[tuple[str, int, Artifact]] = []

    async def route(self, artifact: Artifact, only: tuple[str, int] | None = None) -> None:
        flock = self._flock
        if self.dirty:
            self.index.rebuild(list(flock._agents.values()))
            self.dirty = False
        now = flock._now()
        model: BaseModel | None = None
        for spec, sub in self.index.routes(artifact.type):
            if only is not None and only != (spec.name, sub.index):
                continue
            if spec.prevent_self_trigger and artifact.produced_by == spec.name:
                continue
            if sub.from_agents is not None and artifact.produced_by not in sub.from_agents:
                continue
            if sub.tags is not None and not (sub.tags & artifact.tags):
                continue
            if not artifact.visibility.allows(spec.identity, now=now, published_at=artifact.created_at):
                due = artifact.visibility.available_at(artifact.created_at)
                if due > now:  # AfterVisibility: look again once its time has come
                    flock._later((due - now).total_seconds(), self._reroute(artifact, spec.name, sub.index))
                continue
            key = (artifact.id, spec.name, sub.index)
            if key in self.seen:
                continue
            if sub.where or sub.join:
                if model is None:
                    model = flock._model_of(artifact)
                try:
                    if not all(pred(model) for pred in sub.where):
                        continue
                except Exception as exc:
                    await self._subscription_error(spec, sub, (artifact,), exc)
                    continue
            if not all(c.on_schedule(flock, artifact, spec) for c in flock._components):
                log.info("activation of %r by %s vetoed by a component", spec.name, artifact.id)
                continue
            self.seen.add(key)
            if sub.activation is not None:
                holds = await self._activation_holds(spec, sub, artifact.correlation_id, (artifact,))
                if holds is None:  # the condition raised; that was recorded
                    continue
                if not holds:
                    self.deferred.append((spec.name, sub.index, artifact))
                    continue
            await self.accept(spec, sub, artifact, model)

    async def _subscription_error(
        self, spec: AgentSpec, sub: Subscription, artifacts: tuple[Artifact, ...], error: Exception
    ) -> None:
        """Record a failing ``where``/join key/activation condition, once per cause (stable id)."""
        cause = f"subscription_error|{spec.name}|{sub.index}|" + ",".join(str(a.id) for a in artifacts)
        await self._flock._record_failure(
            spec.name, artifacts, kind="subscription_error", error=error, artifact_id=uuid5(_EVENTS, cause)
        )

    async def _activation_holds(
        self, spec: AgentSpec, sub: Subscription, correlation_id: str, artifacts: tuple[Artifact, ...]
    ) -> bool | None:
        """Evaluate an activation condition; ``None`` when it raised (recorded as a WorkflowError)."""
        try:
            return bool(await sub.activation.evaluate(self._flock, correlation_id))
        except Exception as exc:
            await self._subscription_error(spec, sub, artifacts, exc)
            return None

    async def accept(
        self, spec: AgentSpec, sub: Subscription, artifact: Artifact, model: BaseModel | None
    ) -> None:
        flock = self._flock
        if sub.batch is not None:
            now = flock._clock.monotonic()
            timeout = sub.batch.timeout
            key = self.gates.batch_key(spec, sub, artifact)
            if timeout is not None and self.gates.batch_age(key, now) >= timeout.total_seconds():
                # Its timer is due but has not fired (time passed between runs): deliver the
                # overdue batch as it is; the newcomer starts the next one.
                await self._flush_batch(key, None)()
            key, number, batch = self.gates.add_to_batch(spec, sub, artifact, now)
            if batch:
                await self.enqueue(Activation(spec.name, sub.index, batch))
            elif sub.batch.timeout is not None and self.gates.batch_started(key):
                flock._later(
                    sub.batch.timeout.total_seconds(), self._flush_batch(key, number), blocks_idle=False
                )
        elif sub.join is not None:
            await self._join(spec, sub, artifact, model or flock._model_of(artifact))
        elif sub.is_gate:
            ready = self.gates.offer(spec, sub, artifact)
            if ready:
                await self.enqueue(Activation(spec.name, sub.index, ready))
        else:
            await self.enqueue(Activation(spec.name, sub.index, (artifact,)))

    async def _join(self, spec: AgentSpec, sub: Subscription, artifact: Artifact, model: BaseModel) -> None:
        flock = self._flock
        assert sub.join is not None
        try:
            key = sub.join.by(model)
            hash(key)  # groups are keyed by it: an unhashable key is the key function's error too
        except Exception as exc:
            await self._subscription_error(spec, sub, (artifact,), exc)
            return
        now = flock._clock.monotonic()
        window = sub.join.within
        if isinstance(window, timedelta):
            # A window that closed while nothing ran to fire its timer: expire the group now, so
            # the newcomer starts a new one instead of completing a group that is already too old.
            overdue = self.joins.overdue((spec.name, sub.index), key, now - window.total_seconds())
            if overdue is not None:
                await self._expired(spec, sub, overdue)
        group, ready = self.joins.offer(spec, sub, artifact, key, now)
        if ready:
            await self.enqueue(Activation(spec.name, sub.index, ready))
        if isinstance(window, int):
            for stale in self.joins.expire_by_count((spec.name, sub.index), window):
                await self._expired(spec, sub, stale)
        elif ready is None and len(group.members()) == 1:
            flock._later(
                window.total_seconds(), self._expire_join(spec, sub, key, group.number), blocks_idle=False
            )

    def _expire_join(
        self, spec: AgentSpec, sub: Subscription, key: object, number: int
    ) -> Callable[[], Awaitable[None]]:
        async def fire() -> None:
            group = self.joins.expire((spec.name, sub.index), key, number)
            if group is not None:
                await self._expired(spec, sub, group)

        return fire

    async def _expired(self, spec: AgentSpec, sub: Subscription, group: JoinGroup) -> None:
        flock = self._flock
        members = group.members()
        received = Counter(a.type for a in members)
        missing = {n: c - received.get(n, 0) for n, c in sub.counts.items() if received.get(n, 0) < c}
        event = JoinExpired(
            agent=spec.name,
            key=repr(group.key),
            received=dict(received),
            missing=missing,
            member_ids=[str(a.id) for a in members],
        )
        log.warning("join of agent %r expired for key %r; missing %s", spec.name, group.key, missing)
        flock._summary.expired_joins += 1
        cause = f"join_expired|{spec.name}|{sub.index}|" + ",".join(sorted(str(a.id) for a in members))
        await flock._publish_artifact(
            Artifact(
                id=uuid5(_EVENTS, cause),
                type=type_name(JoinExpired),
                payload=payload_of(event),
                produced_by=spec.name,
                correlation_id=members[0].correlation_id,
                visibility=most_restrictive(a.visibility for a in members),
                created_at=flock._now(),
                consumed_from=tuple(a.id for a in members),
            ),
            once=True,  # a resumed run may meet the same expiry again
        )

    def _reroute(self, artifact: Artifact, agent: str, sub: int) -> Callable[[], Awaitable[None]]:
        async def fire() -> None:
            await self.route(artifact, only=(agent, sub))

        return fire

    def _flush_batch(self, key: tuple[str, int, str], number: int | None) -> Callable[[], Awaitable[None]]:
        async def fire() -> None:
            batch = self.gates.take_batch(key, number)
            if batch:
                await self.enqueue(Activation(key[0], key[1], batch))

        return fire

    async def flush_partial_batches(self) -> bool:
        """Deliver every incomplete batch now. Returns whether there were any."""
        keys = self.gates.partial_batches()
        for key in keys:
            await self._flush_batch(key, None)()
        return bool(keys)

    async def recheck_deferred(self, correlation_id: str) -> None:
        """Deliver held artifacts whose activation condition now holds, oldest first.

        Called after each publish in ``correlation_id``: workflow-scoped conditions
        (``When.correlation``) are re-checked for that workflow only, any other condition for every
        held artifact. Each (subscription, workflow) is evaluated once per call; a condition that
        raises is recorded once for the artifacts it held, which are then released.
        """
        flock = self._flock
        held, self.deferred = self.deferred, []
        slots: dict[tuple[str, int, str], list[Artifact]] = {}
        for name, index, artifact in held:
            sub = flock._agents[name].subscriptions[index]
            corr = artifact.correlation_id
            if corr == correlation_id or not getattr(sub.activation, "workflow_scoped", False):
                slots.setdefault((name, index, corr), []).append(artifact)
        answers: dict[tuple[str, int, str], bool | None] = {}
        for (name, index, corr), artifacts in slots.items():
            spec = flock._agents[name]
            answers[(name, index, corr)] = await self._activation_holds(
                spec, spec.subscriptions[index], corr, tuple(artifacts)
            )
        still: list[tuple[str, int, Artifact]] = []
        for name, index, artifact in held:
            answer = answers.get((name, index, artifact.correlation_id), False)
            if answer:
                spec = flock._agents[name]
                await self.accept(spec, spec.subscriptions[index], artifact, None)
            elif answer is False:
                still.append((name, index, artifact))
        # Accepting may publish (an expired join), which may hold new artifacts: keep those too.
        self.deferred[:0] = still

    async def enqueue(self, act: Activation) -> None:
        """Queue an activation unless the loop guard refuses it (which is recorded, never silent)."""
        flock = self._flock
        key = (act.agent, act.correlation_id)
        self.iterations[key] += 1
        if self.iterations[key] > flock.max_agent_iterations:
            if key not in self.tripped:
                self.tripped.add(key)
                await flock._record_failure(
                    act.agent,
                    act.artifacts,
                    kind="loop_guard",
                    error=(
                        f"agent {act.agent!r} reached max_agent_iterations={flock.max_agent_iterations} in "
                        f"workflow {act.correlation_id}; further activations in this workflow are refused. "
                        "Raise Flock(max_agent_iterations=...) if the loop is intended"
                    ),
                )
            else:
                log.debug("loop guard refused %s for %s", act.agent, act.correlation_id)
            return
        await flock._queue(act)

    def waiting(self) -> dict[str, int]:
        """Artifacts held by incomplete gates, batches and joins, summed per agent."""
        out: Counter[str] = Counter()
        for (agent, _, _), n in self.gates.waiting().items():
            out[agent] += n
        for (agent, _), groups in self.joins._groups.items():
            out[agent] += sum(len(g.members()) for g in groups.values())
        return {agent: n for agent, n in out.items() if n}
