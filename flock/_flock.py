"""The orchestrator: owns the board, the agents and the task group that runs them."""

from __future__ import annotations

import logging
import time
from collections import Counter, deque
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping, Sequence
from contextlib import asynccontextmanager, nullcontext
from typing import Any
from uuid import UUID, uuid4

import anyio
from pydantic import BaseModel, ValidationError

from ._artifact import EXTERNAL, Artifact, payload_of
from ._builder import AgentBuilder
from ._clock import Clock, SystemClock
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
from ._loop import RunLoop
from ._outcomes import JoinExpired, RunSummary, WorkflowError
from ._resume import restore
from ._routing import Router
from ._runtime import execute, failure_artifact
from ._scheduler import Activation
from ._settings import ModelSettings, resolve_model
from ._spec import AgentSpec
from ._store import ActivationRecord, BlackboardStore, InMemoryStore
from ._tracing import SpanIndex, publish_span, tracer
from ._types import TypeRegistry, require_model, type_name
from ._visibility import PUBLIC, Visibility, _Base

log = logging.getLogger("flock")
_WORKFLOW_ERROR = type_name(WorkflowError)


def _check_component(component: Any) -> None:
    hooks = ("on_artifact_published", "on_schedule", "on_idle", "on_shutdown")
    if isinstance(component, type) or not all(callable(getattr(component, h, None)) for h in hooks):
        raise ConfigurationError(
            f"components take OrchestratorComponent instances, got {component!r}: subclass "
            "flock.OrchestratorComponent and pass an instance"
        )


class Flock(RunLoop):
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
        clock: where time comes from (default :class:`SystemClock`; tests use :class:`ManualClock`).
        lm_kwargs: keyword arguments for ``dspy.LM`` that every ``DSPyEngine`` setting none inherits
            (``api_base``, ``api_key``, ...).
        limits: :class:`RateLimit` values shared by every engine of this Flock.
        budget: a :class:`Budget` for the model calls of this Flock's engines.
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
        clock: Clock | None = None,
        lm_kwargs: Mapping[str, Any] | None = None,
        limits: Sequence[Any] = (),
        budget: Any = None,
    ) -> None:
        if not isinstance(max_agent_iterations, int) or max_agent_iterations < 1:
            raise ConfigurationError(
                f"max_agent_iterations must be an int >= 1, got {max_agent_iterations!r}"
            )
        if not isinstance(max_concurrency, int) or max_concurrency < 1:
            raise ConfigurationError(f"max_concurrency must be an int >= 1, got {max_concurrency!r}")
        if store is not None and not isinstance(store, BlackboardStore):
            raise ConfigurationError(
                f"store= takes a BlackboardStore (such as InMemoryStore()), got {store!r}"
            )
        if context_provider is not None and not callable(context_provider):
            raise ConfigurationError(
                "context_provider= takes a callable provider(request) -> list[Artifact], "
                f"such as CorrelationContext(limit=20); got {context_provider!r}"
            )
        for component in components:
            _check_component(component)
        self.model = resolve_model(model)
        self.settings = ModelSettings(
            model=self.model, lm_kwargs=dict(lm_kwargs or {}), limits=tuple(limits), budget=budget
        )
        self.store: Any = store if store is not None else InMemoryStore()
        # Pending/running journal entries only matter to a store that outlives the process.
        self._journal_in_flight = bool(getattr(self.store, "durable", True))
        self.max_agent_iterations = max_agent_iterations
        self.max_concurrency = max_concurrency
        self.flush_partial_batches = flush_partial_batches
        self._context_provider = context_provider or CorrelationContext()
        self._components = list(components)
        self._types = TypeRegistry()
        self._types.register(WorkflowError)
        self._types.register(JoinExpired)
        self._clock = clock or SystemClock()
        self._agents: dict[str, AgentSpec] = {}
        self._router = Router(self)
        self._pending: dict[str, deque[Activation]] = {}
        self._pending_count = 0
        self._running: Counter[str] = Counter()
        self._running_total = 0
        # (deadline, seq, blocks_idle, fire): AfterVisibility releases block idle; passive deadlines
        # (batch timeouts, join windows, schedules) do not.
        self._timers: list[tuple[float, int, bool, Callable[[], Awaitable[None]]]] = []
        self._timer_seq = 0
        self._blocking_timers = 0
        self._scheduled: set[str] = set()
        self._summary = RunSummary()
        self._summary_started = time.perf_counter()
        self._run_id = uuid4().hex
        self._wake: anyio.Event | None = None
        self._drive_lock: anyio.Lock | None = None
        self._engine: Any = None
        self._closed = False
        self._spans = SpanIndex()
        self._settled: set[UUID] = set()  # ids of running activations whose outputs are committed
        self._totals: Counter[str] = Counter()

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
        self._router.dirty = True
        return AgentBuilder(self, name)

    def _replace_spec(self, spec: AgentSpec) -> None:
        self._agents[spec.name] = spec
        self._router.dirty = True

    @property
    def agents(self) -> list[AgentSpec]:
        """The specs of all declared agents."""
        return list(self._agents.values())

    def add_component(self, component: Any) -> None:
        """Add an :class:`OrchestratorComponent`."""
        _check_component(component)
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
            model = self._types.resolve(obj.type)
            if model is None:
                raise ConfigurationError(
                    f"artifact type {obj.type!r} is unknown to this Flock: declare an agent that uses it "
                    "or publish the model instance instead"
                )
            if obj.produced_by in self._agents:
                raise ConfigurationError(
                    f"artifact {obj.id} claims produced_by={obj.produced_by!r}, an agent of this Flock; "
                    "only that agent publishes under its name (from_agents filters trust it). Use another "
                    f"producer name, or the default {EXTERNAL!r}"
                )
            try:  # an invalid payload would otherwise fail later, inside routing or an activation
                model.model_validate(obj.payload)
            except ValidationError as exc:
                raise ConfigurationError(
                    f"artifact {obj.id} has a payload that is not a valid {obj.type}: {exc}"
                ) from exc
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
                payload=payload_of(obj),
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

    async def _publish_artifact(self, artifact: Artifact, *, once: bool = False) -> None:
        """Store and route. ``once``: the id is derived from its cause, so an artifact that is
        already stored (published before a crash, met again by ``resume()``) is not published twice."""
        if once and await self.store.get(artifact.id) is not None:
            return
        await self.store.put(artifact)
        await self._announce(artifact)

    async def _commit(self, record: ActivationRecord | None, outputs: list[Artifact]) -> None:
        """Store an activation's outputs with its consumption records in one step, then route them."""
        if record is None:
            for artifact in outputs:
                await self.store.put(artifact)
        else:
            # Outputs are on disk before anyone sees them. An activation without outputs only
            # queues its commit: nothing downstream depends on it, and a run flushes before it returns.
            if outputs:
                await self.store.commit_activation(record, outputs)
            else:
                await self.store.commit_activation(record, outputs, wait=False)
            # Committed (or queued, which is as final): a cancellation from here on must not re-queue
            # it. Were it re-run anyway, its outputs' ids and its consumption records are the same.
            self._settled.add(record.id)
        for artifact in outputs:
            await self._announce(artifact)

    async def _announce(self, artifact: Artifact) -> None:
        with publish_span(self._spans, artifact):
            await self._route_new(artifact)

    async def _route_new(self, artifact: Artifact) -> None:
        self._summary.artifacts_by_type[artifact.type] += 1
        self._totals["artifacts"] += 1
        if artifact.type == _WORKFLOW_ERROR and artifact.produced_by != EXTERNAL:
            record = WorkflowError.model_validate(artifact.payload)
            log.warning("agent %r failed (%s): %s", record.agent, record.kind, record.message)
            self._summary.errors.append(record)
            self._totals["errors"] += 1
        for comp in self._components:
            await comp.on_artifact_published(self, artifact)
        if self._router.deferred:  # held artifacts go first: they arrived before this one
            await self._router.recheck_deferred(artifact.correlation_id)
        await self._router.route(artifact)
        self._notify()

    # ----------------------------------------------------------------- internals
    def _model_of(self, artifact: Artifact) -> BaseModel:
        model = self._types.resolve(artifact.type)
        if model is None:
            raise ConfigurationError(f"artifact type {artifact.type!r} is not registered in this Flock")
        return model.model_validate(artifact.payload)

    async def _queue(self, act: Activation) -> None:
        if self._journal_in_flight:
            await self.store.record_activation(act.record)
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
        artifact_id: UUID | None = None,
    ) -> None:
        failure = failure_artifact(
            agent,
            inputs,
            kind=kind,
            error=error,
            output_group=output_group,
            now=self._now(),
            artifact_id=artifact_id,
        )
        await self._publish_artifact(failure, once=artifact_id is not None)

    _resumed = False

    async def resume(self, *, timeout: float | None = None, raise_on_error: bool = False) -> RunSummary:
        """Finish the work a previous process left on a durable store, then run until idle.

        Call it once at start, after declaring the same agents: activations that were pending or
        running are run again (a model call that had completed may be repeated), artifacts that
        were stored but never scheduled are routed, and nothing already committed is published
        twice. Later calls (and a fresh store) just run until idle. See docs/persistence.md.
        """
        if not self._resumed:
            self._resumed = True
            await restore(self)
        return await self.run_until_idle(timeout=timeout, raise_on_error=raise_on_error)

    async def run_until_idle(
        self, *, timeout: float | None = None, raise_on_error: bool = False
    ) -> RunSummary:
        """Run until no work is left: nothing queued or running and no ``AfterVisibility`` release due.

        Incomplete batches are flushed first (unless ``flush_partial_batches=False``). Passive
        deadlines (batch timeouts, join windows, schedules) do not keep the run going; artifacts
        still held by incomplete gates and joins are counted in ``summary.waiting``.

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
        summary.waiting = self._router.waiting()
        summary.deferred = len(self._router.deferred)
        summary.wall_time_s = time.perf_counter() - self._summary_started
        summary.usage = self.settings.take_usage()
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
            type=self._types.register(type(obj)), payload=payload_of(obj), created_at=self._now()
        )
        act = Activation(name, 0, (artifact,), journaled=False)  # its input is not on the board
        try:
            with anyio.fail_after(timeout) if timeout is not None else nullcontext():
                return await execute(self, act, publish=publish_outputs, raise_errors=True)
        except TimeoutError:
            raise RunTimeout(f"invoke({name!r}) did not finish within {timeout}s") from None

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

    @asynccontextmanager
    async def traced_run(self, name: str) -> AsyncIterator[Any]:
        """One root span for everything inside: publishes, activations, model calls.

        ::

            async with flock.traced_run("pitch-review"):
                await flock.publish(Idea(topic="bees"))
                await flock.run_until_idle()

        Spans go to the global OpenTelemetry tracer provider (see :mod:`flock.tracing`). Yields the
        span; at the end it carries ``flock.run.activations``, ``flock.run.artifacts`` and
        ``flock.run.errors``.
        """
        before = Counter(self._totals)
        with tracer().start_as_current_span(f"flock.run {name}", attributes={"flock.run.name": name}) as span:
            try:
                yield span
            finally:
                for key in ("activations", "artifacts", "errors"):
                    span.set_attribute(f"flock.run.{key}", self._totals[key] - before[key])

    # ----------------------------------------------------------------- lifecycle
    async def shutdown(self) -> None:
        """Stop timers, refuse further publishes and wait until the store has every write on disk.
        Safe to call twice."""
        if self._closed:
            return
        self._closed = True
        self._timers.clear()
        self._blocking_timers = 0
        self._notify()  # a run waiting for the next timer ends now instead of at that deadline
        await self._flush_store()
        for comp in self._components:
            await comp.on_shutdown(self)

    async def __aenter__(self) -> Flock:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.shutdown()

    def __repr__(self) -> str:
        return f"Flock(model={self.model!r}, agents={sorted(self._agents)})"
