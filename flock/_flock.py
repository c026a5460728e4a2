"""The orchestrator: owns the board, the agents and the task group that runs them."""

from __future__ import annotations

import heapq
import logging
import math
import os
import time
from collections import Counter, deque
from collections.abc import Awaitable, Callable, Iterable, Sequence
from contextlib import nullcontext
from datetime import datetime
from typing import Any
from uuid import UUID, uuid4

import anyio
from anyio.abc import TaskGroup
from pydantic import BaseModel

from ._artifact import Artifact, utcnow
from ._builder import AgentBuilder
from ._conditions import Condition
from ._context import CorrelationContext
from ._errors import (
    ConfigurationError,
    DuplicateAgentError,
    FlockClosedError,
    RunTimeout,
    UnknownAgentError,
    WorkflowFailed,
)
from ._outcomes import RunSummary, WorkflowError
from ._runtime import execute, failure_artifact
from ._scheduler import Activation, Gates, RoutingIndex
from ._spec import AgentSpec, Subscription
from ._store import BlackboardStore, InMemoryStore
from ._types import TypeRegistry, require_model
from ._visibility import PUBLIC, Visibility, _Base

log = logging.getLogger("flock")


def resolve_model(model: str | None) -> str:
    """explicit > ``FLOCK_MODEL`` > ``DEFAULT_MODEL`` > ``"offline"``."""
    return model or os.environ.get("FLOCK_MODEL") or os.environ.get("DEFAULT_MODEL") or "offline"


class Flock:
    """A blackboard and the agents that work on it.

    ::

        flock = Flock()                       # model: FLOCK_MODEL, DEFAULT_MODEL, else "offline"
        flock.agent("writer").consumes(Idea).publishes(Movie).calls(write)
        await flock.publish(Idea(topic="bees"))
        summary = await flock.run_until_idle()

    Args:
        model: default model for engines that do not name one.
        store: a :class:`BlackboardStore` (default: :class:`InMemoryStore`).
        max_agent_iterations: loop guard: activations one agent may have within one workflow
            (correlation id). Reaching it records a ``loop_guard`` :class:`WorkflowError`.
        context_provider: default context provider for every agent.
        max_concurrency: global bound on activations running at once.
        components: :class:`OrchestratorComponent` hooks.
        flush_partial_batches: when all other work is done, deliver incomplete batches instead of
            leaving them waiting (default ``True``).
    """

    def __init__(
        self,
        model: str | None = None,
        *,
        store: BlackboardStore | None = None,
        max_agent_iterations: int = 100,
        context_provider: Any = None,
        max_concurrency: int = 32,
        components: Sequence[Any] = (),
        flush_partial_batches: bool = True,
    ) -> None:
        if not isinstance(max_agent_iterations, int) or max_agent_iterations < 1:
            raise ConfigurationError(
                f"max_agent_iterations must be an int >= 1, got {max_agent_iterations!r}"
            )
        if not isinstance(max_concurrency, int) or max_concurrency < 1:
            raise ConfigurationError(f"max_concurrency must be an int >= 1, got {max_concurrency!r}")
        self.model = resolve_model(model)
        self.store: Any = store if store is not None else InMemoryStore()
        self.max_agent_iterations = max_agent_iterations
        self.max_concurrency = max_concurrency
        self.flush_partial_batches = flush_partial_batches
        self._context_provider = context_provider or CorrelationContext()
        self._components = list(components)
        self._types = TypeRegistry()
        self._types.register(WorkflowError)
        self._agents: dict[str, AgentSpec] = {}
        self._index = RoutingIndex()
        self._index_dirty = False
        self._gates = Gates()
        self._pending: dict[str, deque[Activation]] = {}
        self._pending_count = 0
        self._running: Counter[str] = Counter()
        self._running_total = 0
        self._seen: set[tuple[UUID, str, int]] = set()
        self._iterations: Counter[tuple[str, str]] = Counter()
        self._tripped: set[tuple[str, str]] = set()
        self._deferred: list[tuple[str, int, Artifact]] = []
        self._timers: list[tuple[float, int, Callable[[], Awaitable[None]]]] = []
        self._timer_seq = 0
        self._summary = RunSummary()
        self._summary_started = time.perf_counter()
        self._run_id = uuid4().hex
        self._wake: anyio.Event | None = None
        self._drive_lock: anyio.Lock | None = None
        self._engine: Any = None
        self._closed = False

    # ----------------------------------------------------------------- declaration
    def agent(self, name: str) -> AgentBuilder:
        """Declare a new agent and return its builder. Names are unique within a Flock."""
        if not isinstance(name, str) or not name.strip():
            raise ConfigurationError(f"agent names must be non-empty strings, got {name!r}")
        if name in self._agents:
            raise DuplicateAgentError(
                f"an agent named {name!r} already exists in this Flock; choose another name"
            )
        self._agents[name] = AgentSpec(name=name)
        self._index_dirty = True
        return AgentBuilder(self, name)

    def _replace_spec(self, spec: AgentSpec) -> None:
        self._agents[spec.name] = spec
        self._index_dirty = True

    @property
    def agents(self) -> list[AgentSpec]:
        """The specs of all declared agents."""
        return list(self._agents.values())

    def add_component(self, component: Any) -> None:
        """Add an :class:`OrchestratorComponent`."""
        self._components.append(component)

    # ----------------------------------------------------------------- publishing
    async def publish(
        self,
        obj: BaseModel | Artifact,
        *,
        visibility: Visibility | None = None,
        correlation_id: str | UUID | None = None,
        partition_key: str | None = None,
        tags: Iterable[str] | None = None,
    ) -> Artifact:
        """Put a value on the board and wake its subscribers. Returns the new :class:`Artifact`.

        A new correlation id starts a new workflow unless one is given. Publishing a ready-made
        :class:`Artifact` keeps its id; an id that exists raises :class:`DuplicateArtifactError`.
        """
        if self._closed:
            raise FlockClosedError("this Flock was shut down; create a new Flock to publish again")
        if isinstance(obj, Artifact):
            if self._types.resolve(obj.type) is None:
                raise ConfigurationError(
                    f"artifact type {obj.type!r} is unknown to this Flock: declare an agent that uses it "
                    "or publish the model instance instead"
                )
            artifact = obj
        else:
            if not isinstance(obj, BaseModel):
                require_model(obj, "publish()")
            if visibility is not None and not isinstance(visibility, _Base):
                raise ConfigurationError(
                    f"publish(visibility=...) takes a visibility object, got {visibility!r}"
                )
            artifact = Artifact(
                type=self._types.register(type(obj)),
                payload=obj.model_dump(mode="json"),
                correlation_id=str(correlation_id) if correlation_id is not None else str(uuid4()),
                partition_key=partition_key,
                tags=frozenset([tags] if isinstance(tags, str) else (tags or ())),
                visibility=visibility or PUBLIC,
                created_at=self._now(),
            )
        await self._publish_artifact(artifact)
        return artifact

    async def publish_many(self, objs: Iterable[BaseModel], **options: Any) -> list[Artifact]:
        """Publish several values with the same options."""
        return [await self.publish(o, **options) for o in objs]

    async def _publish_artifact(self, artifact: Artifact) -> None:
        await self.store.put(artifact)
        self._summary.artifacts_by_type[artifact.type] += 1
        for comp in self._components:
            await comp.on_artifact_published(self, artifact)
        await self._route(artifact)
        if self._deferred:
            await self._recheck_deferred(artifact.correlation_id)
        self._notify()

    # ----------------------------------------------------------------- routing
    def _now(self) -> datetime:
        return utcnow()

    def _model_of(self, artifact: Artifact) -> BaseModel:
        model = self._types.resolve(artifact.type)
        if model is None:
            raise ConfigurationError(f"artifact type {artifact.type!r} is not registered in this Flock")
        return model.model_validate(artifact.payload)

    async def _route(self, artifact: Artifact, only: tuple[str, int] | None = None) -> None:
        if self._index_dirty:
            self._index.rebuild(list(self._agents.values()))
            self._index_dirty = False
        now = self._now()
        model: BaseModel | None = None
        for spec, sub in self._index.routes(artifact.type):
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
                    self._later((due - now).total_seconds(), self._reroute(artifact, spec.name, sub.index))
                continue
            key = (artifact.id, spec.name, sub.index)
            if key in self._seen:
                continue
            if sub.where:
                if model is None:
                    model = self._model_of(artifact)
                try:
                    if not all(pred(model) for pred in sub.where):
                        continue
                except Exception as exc:
                    await self._record_failure(spec.name, (artifact,), kind="subscription_error", error=exc)
                    continue
            if not all(c.on_schedule(self, artifact, spec) for c in self._components):
                log.info("activation of %r by %s vetoed by a component", spec.name, artifact.id)
                continue
            self._seen.add(key)
            if sub.activation is not None and not await sub.activation.evaluate(
                self, artifact.correlation_id
            ):
                self._deferred.append((spec.name, sub.index, artifact))
                continue
            await self._accept(spec, sub, artifact)

    async def _accept(self, spec: AgentSpec, sub: Subscription, artifact: Artifact) -> None:
        if sub.batch is not None:
            batch = self._gates.add_to_batch(spec, sub, artifact)
            if sub.batch.timeout is not None and batch is None:
                key = (spec.name, sub.index, artifact.correlation_id)
                if self._gates.waiting().get(key) == 1:  # first of a new batch starts its clock
                    self._later(sub.batch.timeout.total_seconds(), self._flush_batch(key))
            if batch:
                await self._enqueue(Activation(spec.name, sub.index, batch))
        elif sub.is_gate:
            ready = self._gates.offer(spec, sub, artifact)
            if ready:
                await self._enqueue(Activation(spec.name, sub.index, ready))
        else:
            await self._enqueue(Activation(spec.name, sub.index, (artifact,)))

    def _reroute(self, artifact: Artifact, agent: str, sub: int) -> Callable[[], Awaitable[None]]:
        async def fire() -> None:
            await self._route(artifact, only=(agent, sub))

        return fire

    def _flush_batch(self, key: tuple[str, int, str]) -> Callable[[], Awaitable[None]]:
        async def fire() -> None:
            batch = self._gates.take_batch(key)
            if batch:
                await self._enqueue(Activation(key[0], key[1], batch))

        return fire

    async def _recheck_deferred(self, correlation_id: str) -> None:
        still: list[tuple[str, int, Artifact]] = []
        for name, index, artifact in self._deferred:
            spec = self._agents[name]
            sub = spec.subscriptions[index]
            if artifact.correlation_id == correlation_id and await sub.activation.evaluate(
                self, correlation_id
            ):
                await self._accept(spec, sub, artifact)
            else:
                still.append((name, index, artifact))
        self._deferred = still

    async def _enqueue(self, act: Activation) -> None:
        key = (act.agent, act.correlation_id)
        self._iterations[key] += 1
        if self._iterations[key] > self.max_agent_iterations:
            if key not in self._tripped:
                self._tripped.add(key)
                await self._record_failure(
                    act.agent,
                    act.artifacts,
                    kind="loop_guard",
                    error=(
                        f"agent {act.agent!r} reached max_agent_iterations={self.max_agent_iterations} in "
                        f"workflow {act.correlation_id}; further activations in this workflow are refused. "
                        "Raise Flock(max_agent_iterations=...) if the loop is intended"
                    ),
                )
            else:
                log.debug("loop guard refused %s for %s", act.agent, act.correlation_id)
            return
        self._pending.setdefault(act.agent, deque()).append(act)
        self._pending_count += 1
        self._notify()

    async def _record_failure(
        self,
        agent: str,
        inputs: tuple[Artifact, ...],
        *,
        kind: str,
        error: BaseException | str,
        output_group: int | None = None,
    ) -> None:
        art = failure_artifact(
            agent, inputs, kind=kind, error=error, output_group=output_group, now=self._now()
        )
        record = WorkflowError.model_validate(art.payload)
        log.warning("agent %r failed (%s): %s", agent, kind, record.message)
        self._summary.errors.append(record)
        await self._publish_artifact(art)

    # ----------------------------------------------------------------- running
    def _notify(self) -> None:
        if self._wake is not None:
            self._wake.set()

    def _later(self, delay: float, fire: Callable[[], Awaitable[None]]) -> None:
        self._timer_seq += 1
        heapq.heappush(self._timers, (time.monotonic() + max(delay, 0.0), self._timer_seq, fire))
        self._notify()

    def _is_idle(self) -> bool:
        return self._pending_count == 0 and self._running_total == 0 and not self._timers

    def _dispatch(self, tg: TaskGroup) -> None:
        for name in list(self._pending):
            queue = self._pending[name]
            limit = self._agents[name].max_concurrency
            while queue and self._running[name] < limit and self._running_total < self.max_concurrency:
                act = queue.popleft()
                self._pending_count -= 1
                self._running[name] += 1
                self._running_total += 1
                tg.start_soon(self._run_one, act)
            if not queue:
                del self._pending[name]

    async def _run_one(self, act: Activation) -> None:
        try:
            await execute(self, act)
            self._summary.activations += 1
            self._summary.agents_run[act.agent] += 1
        except anyio.get_cancelled_exc_class():
            # Cancelled by a timeout: keep the work for the next run instead of losing it.
            self._pending.setdefault(act.agent, deque()).appendleft(act)
            self._pending_count += 1
            raise
        finally:
            self._running[act.agent] -= 1
            self._running_total -= 1
            self._notify()

    async def _fire_due_timers(self) -> None:
        now = time.monotonic()
        while self._timers and self._timers[0][0] <= now:
            _, _, fire = heapq.heappop(self._timers)
            await fire()

    async def _drive(self, condition: Condition | None, timeout: float | None) -> bool:
        if self._closed:
            raise FlockClosedError("this Flock was shut down; create a new Flock to run again")
        if self._drive_lock is None:
            self._drive_lock = anyio.Lock()
        async with self._drive_lock:
            try:
                with anyio.fail_after(timeout) if timeout is not None else nullcontext():
                    async with anyio.create_task_group() as tg:
                        met = await self._loop(tg, condition)
                    return met
            except TimeoutError:
                if condition is not None:
                    return False
                raise RunTimeout(
                    f"the run was not idle after {timeout}s; {self._pending_count} activations stay queued "
                    "and resume on the next run_until_idle()"
                ) from None
            finally:
                self._wake = None

    async def _loop(self, tg: TaskGroup, condition: Condition | None) -> bool:
        while True:
            self._wake = anyio.Event()
            await self._fire_due_timers()
            if condition is not None and await condition.evaluate(self):
                return True
            self._dispatch(tg)
            if self._pending_count == 0 and self._running_total == 0:
                if self.flush_partial_batches and not self._timers and self._gates.partial_batches():
                    for key in self._gates.partial_batches():
                        await self._flush_batch(key)()
                    continue
                if not self._timers:
                    for comp in self._components:
                        await comp.on_idle(self)
                    if self._pending_count == 0:
                        return condition is None
                    continue
            delay = self._timers[0][0] - time.monotonic() if self._timers else math.inf
            with anyio.move_on_after(max(delay, 0.0)):
                await self._wake.wait()

    async def run_until_idle(
        self, *, timeout: float | None = None, raise_on_error: bool = False
    ) -> RunSummary:
        """Run until no work is left: no queued or running activations, no pending timers.

        Returns a :class:`RunSummary` of everything since the previous run returned. Failed
        activations are listed in ``summary.errors`` (and published as :class:`WorkflowError`
        artifacts); with ``raise_on_error=True`` they raise :class:`WorkflowFailed` instead.
        Raises :class:`RunTimeout` after ``timeout`` seconds; queued work is kept.
        """
        await self._drive(None, timeout)
        summary = self._take_summary()
        if raise_on_error and summary.errors:
            raise WorkflowFailed(
                f"{len(summary.errors)} activation(s) failed: "
                + "; ".join(f"{e.agent}: {e.message}" for e in summary.errors[:5]),
                summary.errors,
            )
        return summary

    async def run_until(self, condition: Condition, *, timeout: float | None = None) -> bool:
        """Run until ``condition`` holds (True), or until idle or ``timeout`` without it (False)."""
        if not isinstance(condition, Condition):
            raise ConfigurationError("run_until() takes a condition such as Until.exists(Report)")
        return await self._drive(condition, timeout)

    def _take_summary(self) -> RunSummary:
        summary, self._summary = self._summary, RunSummary()
        summary.wall_time_s = time.perf_counter() - self._summary_started
        self._summary_started = time.perf_counter()
        self._run_id = uuid4().hex
        return summary

    async def invoke(
        self,
        agent: str | AgentBuilder,
        obj: BaseModel,
        *,
        publish_outputs: bool = True,
        timeout: float | None = None,
    ) -> list[Artifact]:
        """Run one agent directly on ``obj`` and return its outputs.

        The input is not put on the board. With ``publish_outputs`` the outputs are published (and
        wake their subscribers on the next run); errors raise instead of becoming WorkflowErrors.
        """
        name = agent.name if isinstance(agent, AgentBuilder) else agent
        if name not in self._agents:
            raise UnknownAgentError(f"no agent named {name!r}; declared agents: {sorted(self._agents)}")
        if not isinstance(obj, BaseModel):
            require_model(obj, "invoke()")
        artifact = Artifact(
            type=self._types.register(type(obj)), payload=obj.model_dump(mode="json"), created_at=self._now()
        )
        with anyio.fail_after(timeout) if timeout is not None else nullcontext():
            return await execute(
                self, Activation(name, 0, (artifact,)), publish=publish_outputs, raise_errors=True
            )

    def _default_engine(self) -> Any:
        if self._engine is None:
            try:
                from ._dspy_engine import DSPyEngine
            except ImportError as exc:  # pragma: no cover - only without the engine module
                raise ConfigurationError(
                    "this agent declares no engine and the DSPy engine is unavailable: add .calls(func) or "
                    ".with_engines(...)"
                ) from exc
            self._engine = DSPyEngine()
        return self._engine

    # ----------------------------------------------------------------- lifecycle
    async def shutdown(self) -> None:
        """Stop timers and refuse further publishes. Safe to call twice."""
        if self._closed:
            return
        self._closed = True
        self._timers.clear()
        for comp in self._components:
            await comp.on_shutdown(self)

    async def __aenter__(self) -> Flock:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.shutdown()

    def __repr__(self) -> str:
        return f"Flock(model={self.model!r}, agents={sorted(self._agents)})"
