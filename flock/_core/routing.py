"""Routing: which agents an artifact wakes, and when their activations are ready.

The router decides; it does not act. Given an artifact it looks up the subscriptions of its type
(an index, never a scan of every agent), checks self-trigger, producer, tags, visibility, ``where``
and the veto of orchestrator components, and hands the artifact to its gate: plain subscriptions
fire at once, AND/count gates wait for their partners in the same correlation id, batches collect,
joins group by key within a window, and activation conditions defer until they hold. What should
happen comes back as :mod:`~flock._core.decisions` values; the orchestrator carries them out.

The router owns its state (gate buffers, held artifacts, the loop guard) and reads the declarations
from the :class:`~flock._core.catalog.Catalog`. It never touches the orchestrator.

On a board that several processes share, :attr:`Router.share` (a :class:`RoutingShare`) says which
subscriptions this process routes as it publishes and whether it fires schedules: subscriptions
whose routing keeps state (gates, batches, joins, activation conditions) are routed by one process
only, which feeds them from the board (see ``flock/_stores/postgres_leader.py``).
"""

from __future__ import annotations

import inspect
import logging
from collections import Counter
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any, Protocol
from uuid import UUID, uuid5

from pydantic import BaseModel

from .artifact import Artifact, payload_of
from .catalog import Catalog
from .conditions import SeenBy
from .decisions import (
    Activate,
    CloseTask,
    Decision,
    Emit,
    ExpireJoin,
    ExpireTask,
    Fail,
    FlushBatch,
    RecordFailure,
    Reroute,
    ScheduleTick,
    WakeLater,
)
from .errors import FlockError
from .human import HUMAN_TASK, is_genuine, timeout_artifacts
from .loop_guard import LoopGuard
from .outcomes import JoinExpired
from .scheduler import Activation, Gates, JoinGroup, Joins, RoutingIndex
from .spec import AgentSpec, Subscription, Tick
from .types import type_name
from .visibility import most_restrictive, within_tenant

log = logging.getLogger("flock")
_EVENTS = UUID("0c0f3a55-5e1d-4c7e-9a53-3f6b2d1e8a77")  # namespace of ids derived from their cause

Pair = tuple[UUID, str, int]  # (artifact id, agent, subscription)
Select = Callable[[AgentSpec, Subscription], bool]


class RoutingShare(Protocol):
    """How a process takes part in routing a board that several processes share."""

    @property
    def leading(self) -> bool:
        """Whether this process routes the stateful subscriptions and fires the schedules now."""
        ...

    def routes_here(self, spec: AgentSpec, sub: Subscription) -> bool:
        """Whether this process routes ``sub`` for the artifacts it publishes and commits."""
        ...

    async def step(self, router: Router, *, first: bool) -> list[Decision]:
        """Called once per turn of the run loop (``first``: the run's first turn): what this
        process owes the board now (taking over the routing, the artifacts it must route as the
        router of the board)."""
        ...

    async def run_ended(self, router: Router) -> None:
        """A run returned: a process that does not keep serving the board gives up routing it."""
        ...

    async def release(self, router: Router) -> None:
        """Give up the routing (the Flock shuts down)."""
        ...

    def held(self) -> dict[str, int]:
        """What the router held per agent when this process last gave up routing (for summaries)."""
        ...


class Router:
    """Routing state of one Flock: the index, gate buffers, joins, held artifacts and the loop guard.

    Args:
        catalog: the declarations to route by.
        now: the current time (the Flock's clock).
        monotonic: the clock's monotonic seconds (batch and join windows).
        veto: ``veto(artifact, spec)`` is true when an orchestrator component refuses the activation.
        scope: what activation conditions evaluate against (the Flock).
        loop_guard: the :class:`LoopGuard`.
    """

    def __init__(
        self,
        catalog: Catalog,
        *,
        now: Callable[[], datetime],
        monotonic: Callable[[], float],
        veto: Callable[[Artifact, AgentSpec], bool],
        scope: Any,
        loop_guard: LoopGuard,
    ) -> None:
        self._catalog = catalog
        self._now = now
        self._monotonic = monotonic
        self._veto = veto
        self._scope = scope
        self.loop_guard = loop_guard
        self._index = RoutingIndex()
        self._indexed = -1
        self.gates = Gates()
        self.joins = Joins()
        self.deferred: list[tuple[str, int, Artifact]] = []
        self.share: RoutingShare | None = None  # set when the board is shared by several processes

    # ------------------------------------------------------------------ routing one artifact
    async def route(
        self,
        artifact: Artifact,
        *,
        only: tuple[str, int] | None = None,
        skip: set[Pair] | None = None,
        select: Select | None = None,
    ) -> list[Decision]:
        """Decisions for a newly published artifact.

        ``only`` limits routing to one (agent, subscription); ``skip`` names pairs already handled
        (``resume()`` passes what the journal says was consumed or is in flight); ``select`` limits
        it to the subscriptions it accepts (default: on a shared board, those this process routes).
        """
        self._refresh()
        out: list[Decision] = []
        if self.deferred and only is None:  # held artifacts go first: they arrived before this one
            out += await self.recheck_deferred(artifact.correlation_id)
        if select is None and only is None and self.share is not None:
            select = self.share.routes_here
        now = self._now()
        if artifact.type == HUMAN_TASK and only is None and is_genuine(artifact):
            out += self._task_deadline(artifact, now)
        model: BaseModel | None = None
        for spec, sub in self._index.routes(artifact.type):
            if only is not None and only != (spec.name, sub.index):
                continue
            if select is not None and not select(spec, sub):
                continue
            if skip is not None and (artifact.id, spec.name, sub.index) in skip:
                continue
            if not self._addressed(spec, sub, artifact):
                continue
            if not artifact.visibility.allows(spec.identity, now=now, published_at=artifact.created_at):
                due = artifact.visibility.available_at(artifact.created_at)
                # AfterVisibility: look again once its time has come, if this agent will see it then.
                if due > now and artifact.visibility.allows(
                    spec.identity, now=due, published_at=artifact.created_at
                ):
                    delay = (due - now).total_seconds()
                    out.append(WakeLater(delay, Reroute(artifact, spec.name, sub.index), blocks_idle=True))
                continue
            if sub.where or sub.join:
                try:
                    if model is None:
                        model = self._catalog.model_of(artifact)
                    if not await _passes(sub, model):
                        continue
                except Exception as exc:
                    out.append(self._subscription_error(spec, sub, (artifact,), exc))
                    continue
            if self._veto(artifact, spec):
                log.info("activation of %r by %s vetoed by a component", spec.name, artifact.id)
                continue
            if sub.activation is not None:
                holds = await self._condition(spec, sub, artifact.correlation_id, (artifact,), out)
                if holds is None:  # the condition raised; that was recorded
                    continue
                if not holds:
                    self.deferred.append((spec.name, sub.index, artifact))
                    continue
            out += await self._accept(spec, sub, artifact, model)
        return out

    def _refresh(self) -> None:
        if self._indexed != self._catalog.version:
            self._index.rebuild(list(self._catalog.specs.values()))
            self._indexed = self._catalog.version

    def subscriptions_of(self, type_name: str) -> list[tuple[AgentSpec, Subscription]]:
        """The (agent, subscription) pairs that consume ``type_name``, before any filter."""
        self._refresh()
        return self._index.routes(type_name)

    @staticmethod
    def _addressed(spec: AgentSpec, sub: Subscription, artifact: Artifact) -> bool:
        if spec.prevent_self_trigger and artifact.produced_by == spec.name:
            return False
        if sub.from_agents is not None and artifact.produced_by not in sub.from_agents:
            return False
        return sub.tags is None or bool(sub.tags & artifact.tags)

    def admits(self, spec: AgentSpec, sub: Subscription, artifact: Artifact) -> bool:
        """Whether ``sub`` of ``spec`` may consume ``artifact`` today (declarations and visibility).

        ``resume()`` asks this of journaled work before running it again.
        """
        return (
            artifact.type in sub.type_names
            and self._addressed(spec, sub, artifact)
            and artifact.visibility.allows(spec.identity, now=self._now(), published_at=artifact.created_at)
        )

    def _subscription_error(
        self, spec: AgentSpec, sub: Subscription, artifacts: tuple[Artifact, ...], error: Exception
    ) -> RecordFailure:
        """A failing ``where``/join key/activation condition, recorded once per cause (stable id)."""
        cause = f"subscription_error|{spec.name}|{sub.index}|" + ",".join(str(a.id) for a in artifacts)
        return RecordFailure(spec.name, artifacts, "subscription_error", error, uuid5(_EVENTS, cause))

    async def _condition(
        self,
        spec: AgentSpec,
        sub: Subscription,
        correlation_id: str,
        artifacts: tuple[Artifact, ...],
        out: list[Decision],
    ) -> bool | None:
        """Evaluate an activation condition; ``None`` when it raised (the failure goes to ``out``)."""
        try:
            # The condition sees the board as the agent does: what it may not see does not count.
            seen = SeenBy(self._scope, spec.identity)
            return bool(await sub.activation.evaluate(seen, correlation_id))
        except Exception as exc:
            out.append(self._subscription_error(spec, sub, artifacts, exc))
            return None

    # ------------------------------------------------------------------ gates, batches, joins
    async def _accept(
        self, spec: AgentSpec, sub: Subscription, artifact: Artifact, model: BaseModel | None
    ) -> list[Decision]:
        if sub.batch is not None:
            return await self._batch(spec, sub, artifact)
        if sub.join is not None:
            return await self._join(spec, sub, artifact, model or self._catalog.model_of(artifact))
        if sub.is_gate:
            ready = self.gates.offer(spec, sub, artifact)
            return await self.activate(spec.name, sub.index, ready) if ready else []
        return await self.activate(spec.name, sub.index, (artifact,))

    async def _batch(self, spec: AgentSpec, sub: Subscription, artifact: Artifact) -> list[Decision]:
        assert sub.batch is not None
        out: list[Decision] = []
        now = self._monotonic()
        timeout = sub.batch.timeout
        key = self.gates.batch_key(spec, sub, artifact)
        if timeout is not None and self.gates.batch_age(key, now) >= timeout.total_seconds():
            # Its timer is due but has not fired (time passed between runs): deliver the overdue
            # batch as it is; the newcomer starts the next one.
            out += await self._flush_batch(key, None)
        key, number, batch = self.gates.add_to_batch(spec, sub, artifact, now)
        if batch:
            out += await self.activate(spec.name, sub.index, batch)
        elif timeout is not None and self.gates.batch_started(key):
            out.append(WakeLater(timeout.total_seconds(), FlushBatch(key, number)))
        return out

    async def _join(
        self, spec: AgentSpec, sub: Subscription, artifact: Artifact, model: BaseModel
    ) -> list[Decision]:
        assert sub.join is not None
        try:
            key = sub.join.by(model)
            if inspect.isawaitable(key):
                key = await key
            hash(key)  # groups are keyed by it: an unhashable key is the key function's error too
        except Exception as exc:
            return [self._subscription_error(spec, sub, (artifact,), exc)]
        out: list[Decision] = []
        now = self._monotonic()
        window = sub.join.within
        if isinstance(window, timedelta):
            # A window that closed while nothing ran to fire its timer: expire the group now, so
            # the newcomer starts a new one instead of completing a group that is already too old.
            overdue = self.joins.overdue((spec.name, sub.index), key, now - window.total_seconds())
            if overdue is not None:
                out.append(self._expired(spec, sub, overdue))
        group, ready = self.joins.offer(spec, sub, artifact, key, now)
        if ready:
            out += await self.activate(spec.name, sub.index, ready)
        if isinstance(window, int):
            out += [
                self._expired(spec, sub, g)
                for g in self.joins.expire_by_count((spec.name, sub.index), window)
            ]
        elif ready is None and len(group.members()) == 1:
            out.append(WakeLater(window.total_seconds(), ExpireJoin(spec.name, sub.index, key, group.number)))
        return out

    def _expired(self, spec: AgentSpec, sub: Subscription, group: JoinGroup) -> Emit:
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
        cause = f"join_expired|{spec.name}|{sub.index}|" + ",".join(sorted(str(a.id) for a in members))
        return Emit(
            Artifact(
                id=uuid5(_EVENTS, cause),
                type=type_name(JoinExpired),
                payload=payload_of(event),
                produced_by=spec.name,
                correlation_id=members[0].correlation_id,
                # the agent's output: kept in its tenant, like every output of a tenant's agent
                visibility=within_tenant(most_restrictive(a.visibility for a in members), spec.tenant_id),
                created_at=self._now(),
                consumed_from=tuple(a.id for a in members),
            )
        )

    async def _flush_batch(self, key: tuple[str, int, str], number: int | None) -> list[Decision]:
        batch = self.gates.take_batch(key, number)
        return await self.activate(key[0], key[1], batch) if batch else []

    async def flush_partial_batches(self) -> list[Decision]:
        """Deliver every incomplete batch now."""
        out: list[Decision] = []
        for key in self.gates.partial_batches():
            out += await self._flush_batch(key, None)
        return out

    @staticmethod
    def _task_deadline(task: Artifact, now: datetime) -> list[Decision]:
        """A human task with a deadline: wake then to close it (also re-armed when resume() routes
        the stored tasks again). A passive timer: runs do not wait for people."""
        deadline = task.payload.get("deadline")
        if not deadline:
            return []
        due = datetime.fromisoformat(deadline)
        return [WakeLater(max((due - now).total_seconds(), 0.0), ExpireTask(task))]

    # ------------------------------------------------------------------ timers and held artifacts
    async def wake(self, token: Any) -> list[Decision]:
        """Decisions when a :class:`WakeLater` comes due."""
        if isinstance(token, ExpireTask):
            agent = token.task.produced_by
            spec = self._catalog.specs.get(agent)
            try:
                closing = timeout_artifacts(token.task, self._catalog.types, spec, self._now())
            except (FlockError, ValueError) as exc:  # its types are no longer declared (or its
                # stored payload no longer reads): leave it open and say why; the run goes on
                log.error("human task %s could not be closed at its deadline: %s", token.task.id, exc)
                return []
            return [CloseTask(tuple(closing))]
        if isinstance(token, Reroute):
            return await self.route(token.artifact, only=(token.agent, token.subscription))
        if isinstance(token, FlushBatch):
            return await self._flush_batch(token.key, token.number)
        if isinstance(token, ExpireJoin):
            group = self.joins.expire((token.agent, token.subscription), token.key, token.number)
            if group is None or token.agent not in self._catalog.specs:
                return []
            spec = self._catalog.spec(token.agent)
            return [self._expired(spec, spec.subscriptions[token.subscription], group)]
        if isinstance(token, ScheduleTick):
            return await self._tick(token)
        raise TypeError(f"unknown wake token {token!r}")  # pragma: no cover - a bug, not a user error

    def start_schedules(self, started: set[str]) -> list[Decision]:
        """First ticks of scheduled agents not in ``started`` (which is updated)."""
        out: list[Decision] = []
        now = self._now()
        for spec in self._catalog.specs.values():
            if spec.schedule is not None and spec.name not in started:
                started.add(spec.name)
                first = spec.schedule.first(now)
                if first is not None:
                    out.append(WakeLater((first - now).total_seconds(), ScheduleTick(spec.name, 1, first)))
        return out

    async def _tick(self, token: ScheduleTick) -> list[Decision]:
        spec = self._catalog.specs.get(token.agent)
        if spec is None or spec.schedule is None:
            return []
        now = self._now()
        out: list[Decision] = []
        # On a shared board only the router fires; a process that is not the router (any more)
        # keeps its schedule's clock going, silent, in case it becomes the router again.
        if self.share is None or self.share.leading:
            out += await self.activate(token.agent, -1, (), tick=Tick(token.iteration, now))
        following = spec.schedule.following(token.due, token.iteration, now)
        if following is not None:
            delay = (following - now).total_seconds()
            out.append(WakeLater(delay, ScheduleTick(token.agent, token.iteration + 1, following)))
        return out

    async def recheck_deferred(self, correlation_id: str) -> list[Decision]:
        """Deliver held artifacts whose activation condition now holds, oldest first.

        Called before each newly published artifact in ``correlation_id`` is routed:
        workflow-scoped conditions (``When.correlation``) are re-checked for that workflow only,
        any other condition for every held artifact. Each (subscription, workflow) is evaluated
        once per call; a condition that raises is recorded once for the artifacts it held, which
        are then released.
        """
        out: list[Decision] = []
        held, self.deferred = self.deferred, []
        slots: dict[tuple[str, int, str], list[Artifact]] = {}
        for name, index, artifact in held:
            spec = self._catalog.specs.get(name)
            if spec is None:
                continue
            sub = spec.subscriptions[index]
            corr = artifact.correlation_id
            if corr == correlation_id or not getattr(sub.activation, "workflow_scoped", False):
                slots.setdefault((name, index, corr), []).append(artifact)
        answers: dict[tuple[str, int, str], bool | None] = {}
        for (name, index, corr), artifacts in slots.items():
            spec = self._catalog.spec(name)
            answers[(name, index, corr)] = await self._condition(
                spec, spec.subscriptions[index], corr, tuple(artifacts), out
            )
        still: list[tuple[str, int, Artifact]] = []
        for name, index, artifact in held:
            answer = answers.get((name, index, artifact.correlation_id), False)
            if answer:
                spec = self._catalog.spec(name)
                out += await self._accept(spec, spec.subscriptions[index], artifact, None)
            elif answer is False and name in self._catalog.specs:
                still.append((name, index, artifact))
        self.deferred[:0] = still
        return out

    # ------------------------------------------------------------------ the loop guard
    async def activate(
        self, agent: str, subscription: int, artifacts: tuple[Artifact, ...], *, tick: Tick | None = None
    ) -> list[Decision]:
        """An activation, unless the loop guard refuses it (which is recorded, never silent)."""
        chain = await self.loop_guard.admit(agent, artifacts)
        if chain is None:
            act = Activation(agent, subscription, artifacts, tick=tick)
            limit = self.loop_guard.limit
            reason = (
                f"agent {agent!r} would act for the {limit + 1}th time in one causal chain of workflow "
                f"{act.correlation_id} (max_agent_iterations={limit}): a feedback loop was stopped here. "
                "Raise Flock(max_agent_iterations=...) if the loop is intended"
            )
            return [Fail(act, "loop_guard", reason)]
        return [Activate(Activation(agent, subscription, artifacts, tick=tick, chain=chain))]

    # ------------------------------------------------------------------ introspection
    def waiting(self) -> dict[str, int]:
        """Artifacts held by incomplete gates, batches and joins, summed per agent."""
        if self.share is not None and not self.share.leading:
            return self.share.held()
        out: Counter[str] = Counter()
        for (agent, _, _), n in self.gates.waiting().items():
            out[agent] += n
        for (agent, _), n in self.joins.waiting().items():
            out[agent] += n
        return {agent: n for agent, n in out.items() if n}


async def _passes(sub: Subscription, model: BaseModel) -> bool:
    """Whether ``model`` passes every ``where`` predicate of ``sub`` (async predicates awaited)."""
    for pred in sub.where:
        verdict = pred(model)
        if inspect.isawaitable(verdict):
            verdict = await verdict
        if not verdict:
            return False
    return True
