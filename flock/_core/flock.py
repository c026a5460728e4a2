"""The ``Flock`` facade: declarations, publishing and running. The work happens in collaborators.

``Flock`` builds one of each and wires them one way (see :mod:`flock._core.orchestrator`): the
:class:`~flock._core.catalog.Catalog` of declarations, the :class:`~flock._core.routing.Router` that decides,
the :class:`~flock._core.lifecycle.Lifecycle` and its work queue, the :class:`~flock._core.runtime.Runtime`
that runs activations, and the :class:`~flock._core.orchestrator.Orchestrator` that carries out
decisions and runs the loop.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import AsyncIterator, Iterable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager, nullcontext
from typing import Any
from uuid import UUID

import anyio
from pydantic import BaseModel

from .._live.events import EventHub, EventStream, subscription
from .._live.live_view import LiveView, wanted
from .._live.map import run_map
from .._live.variables import Variables
from .._stores.store import BlackboardStore, InMemoryStore
from .._tracing.tracing import SpanIndex, tracer
from .artifact import Artifact
from .builder import AgentBuilder
from .catalog import Catalog
from .clock import Clock, SystemClock
from .conditions import Condition
from .errors import (
    ConfigurationError,
    DuplicateAgentError,
    FlockClosedError,
    RunTimeout,
    UnknownAgentError,
    WorkflowFailed,
)
from .extras import install_command
from .graph import AgentGraph, warn_unreachable
from .human import HumanTask
from .lifecycle import Lifecycle
from .lineage import LineageContext
from .loop_guard import LoopGuard
from .orchestrator import Orchestrator
from .outcomes import JoinExpired, RunSummary, WorkflowError
from .resume import restore
from .routing import Router
from .runtime import Runtime
from .scheduler import Activation
from .settings import ModelSettings, check_limits_and_budget, resolve_model
from .spec import AgentSpec
from .tasks import Tasks
from .visibility import AgentIdentity, Visibility
from .workqueue import InProcessQueue, WorkQueue


def _check_component(component: Any) -> None:
    hooks = ("on_artifact_published", "on_schedule", "on_idle", "on_shutdown")
    if isinstance(component, type) or not all(callable(getattr(component, h, None)) for h in hooks):
        raise ConfigurationError(
            f"components take OrchestratorComponent instances, got {component!r}: subclass "
            "flock.OrchestratorComponent and pass an instance"
        )


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
        max_agent_iterations: loop guard: how often one agent may act within one causal chain (its
            inputs, what they were made from, and so on). Going past it records a ``loop_guard``
            :class:`WorkflowError` and stops that chain; independent inputs never count.
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
        queue: the :class:`~flock._core.workqueue.WorkQueue` ready activations wait in (default: in process).
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
        queue: WorkQueue | None = None,
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
        if queue is not None and not isinstance(queue, WorkQueue):
            raise ConfigurationError(f"queue= takes a WorkQueue (such as InProcessQueue()), got {queue!r}")
        for component in components:
            _check_component(component)
        check_limits_and_budget(limits, budget)
        self.model = resolve_model(model)
        self.settings = ModelSettings(
            model=self.model,
            lm_kwargs=dict(lm_kwargs or {}),
            limits=tuple(limits),
            budget=budget,
            concurrency=max_concurrency,
        )
        self.store: Any = store if store is not None else InMemoryStore()
        self.max_agent_iterations = max_agent_iterations
        self._clock = clock or SystemClock()
        self._events = EventHub(self._clock.now)
        self._catalog = Catalog(Variables(on_change=self._events.variable))
        self._events.tenant_of = lambda agent: self._catalog.specs[agent].tenant_id
        self._catalog.variables.store = self.store
        self._catalog.types.register(WorkflowError)
        self._catalog.types.register(JoinExpired)
        self._catalog.types.register(HumanTask)
        self._components = list(components)
        self._engine: Any = None
        spans = SpanIndex()
        router = Router(
            self._catalog,
            now=self._clock.now,
            monotonic=self._clock.monotonic,
            veto=self._vetoed,
            scope=self,
            loop_guard=LoopGuard(max_agent_iterations, self._catalog.specs, self.store.get),
        )
        runtime = Runtime(
            self._catalog,
            store=self.store,
            now=self._clock.now,
            settings=self.settings,
            spans=spans,
            default_engine=self._default_engine,
            context_provider=context_provider or LineageContext(),
            events=self._events,
            variables=self._catalog.variables.snapshot,
        )
        # Pending/running journal entries only matter to a store that outlives the process.
        # A store that many processes share offers the queue they share (PostgresStore).
        shared = getattr(self.store, "shared_queue", None)
        queue = queue or (shared() if shared is not None else InProcessQueue())
        lifecycle = Lifecycle(self.store, queue, journal=bool(getattr(self.store, "durable", True)))
        self._orchestrator = Orchestrator(
            self,
            catalog=self._catalog,
            store=self.store,
            clock=self._clock,
            router=router,
            lifecycle=lifecycle,
            runtime=runtime,
            spans=spans,
            components=self._components,
            max_concurrency=max_concurrency,
            flush_partial_batches=flush_partial_batches,
            events=self._events,
        )
        self._resumed = False
        self.tasks = Tasks(self)
        """Human tasks: ``list()``, ``get(id)``, ``answer(id, payload)`` (see :class:`Tasks`)."""

    @property
    def max_concurrency(self) -> int:
        """Global bound on activations running at once."""
        return self._orchestrator.max_concurrency

    @property
    def flush_partial_batches(self) -> bool:
        return self._orchestrator.flush_partial_batches

    # ----------------------------------------------------------------- declaration
    def agent(self, name: str) -> AgentBuilder:
        """Declare a new agent and return its builder. Names are unique within a Flock."""
        if not isinstance(name, str) or not name.strip():
            raise ConfigurationError(f"agent names must be non-empty strings, got {name!r}")
        if name in self._catalog.specs:
            raise DuplicateAgentError(
                f"an agent named {name!r} already exists in this Flock; choose another name"
            )
        self._catalog.add(AgentSpec(name=name))
        return AgentBuilder(self._catalog, name)

    @property
    def agents(self) -> list[AgentSpec]:
        """The specs of all declared agents."""
        return list(self._catalog.specs.values())

    def add_component(self, component: Any) -> None:
        """Add an :class:`OrchestratorComponent`."""
        _check_component(component)
        self._components.append(component)

    @property
    def variables(self) -> Variables:
        """Runtime variables: ``flock.variables.set("creativity", 0.9)``; engines read them through
        ``Var("creativity", default=0.7)`` before each activation (see :class:`Var`)."""
        return self._catalog.variables

    def events(
        self,
        agents: str | Iterable[str] | None = None,
        *,
        tenant: str | None = None,
        identity: AgentIdentity | None = None,
        buffer: int = 1000,
    ) -> AbstractAsyncContextManager[EventStream]:
        """Live events of this flock: ``async with flock.events() as events: async for e in events``.

        Yields :class:`ArtifactEvent`, :class:`ActivationEvent` (started/finished/failed),
        :class:`TokenEvent` (deltas of streamed ``str`` output fields) and :class:`VariableEvent`.
        ``agents`` keeps the events of those agents (artifacts they produced, their activations
        and tokens). ``tenant`` or ``identity`` applies visibility: only artifacts that identity
        may see, only activations whose inputs it may see (of agents of its tenant or of none),
        only tokens of outputs it may see, and no variable changes (flock-wide settings). Each
        subscriber has a bounded ``buffer``; a subscriber that falls behind loses its oldest unread
        events (``events.dropped``) and never slows the run. Iteration ends when ``events.close()``
        is called, the block ends or the flock shuts down.
        """
        if self._orchestrator.closed:  # no event will come and nothing would end the iteration
            raise FlockClosedError(
                "this Flock was shut down; it has no more events (subscribe before shutdown())"
            )
        names, who = subscription(agents, tenant, identity, buffer, self._catalog.specs)
        return self._events.subscribe(names, identity=who, buffer=buffer)

    async def map(
        self,
        agent: str | AgentBuilder,
        inputs: Iterable[BaseModel],
        *,
        concurrency: int | None = None,
        progress: bool = False,
        timeout: float | None = None,
    ) -> list[list[BaseModel] | WorkflowError]:
        """Run ``agent`` over ``inputs``; one slot per input, in input order.

        Each input is published (a workflow of its own) and the flock runs until idle, so other
        agents react as usual. A slot holds the list of models the agent published from that input,
        or the :class:`WorkflowError` when it failed (other inputs are unaffected).
        ``concurrency`` bounds the agent's parallel activations for this call (default: its own
        ``max_concurrency``); ``progress=True`` reports done/failed/rate on stderr. A timeout or
        cancellation keeps what finished on the board.

        ::

            results = await flock.map("writer", [Idea(topic=t) for t in topics], concurrency=16)
        """
        name = agent.name if isinstance(agent, AgentBuilder) else agent
        return await run_map(self, self._orchestrator, name, inputs, concurrency, progress, timeout)

    def _vetoed(self, artifact: Artifact, spec: AgentSpec) -> bool:
        return not all(c.on_schedule(self, artifact, spec) for c in self._components)

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
        :class:`Artifact` keeps its id and its own visibility, correlation id, partition key and
        tags (passing any of those options with it is an error); an id that exists raises
        :class:`DuplicateArtifactError`.
        """
        if self._orchestrator.closed:
            raise FlockClosedError("this Flock was shut down; create a new Flock to publish again")
        options: dict[str, Any] = {"visibility": visibility, "correlation_id": correlation_id}
        options |= {"partition_key": partition_key, "tags": tags}
        if isinstance(obj, Artifact):
            artifact = self._catalog.check_artifact(obj, **options)
        else:
            artifact = self._catalog.new_artifact(obj, now=self._clock.now(), **options)
        if self._catalog.variables.needs_sync:
            await self._catalog.variables.sync()
        await self._orchestrator.publish(artifact)
        return artifact

    async def publish_many(self, objs: Iterable[BaseModel], **options: Any) -> list[Artifact]:
        """Publish several values with the same options."""
        if not isinstance(objs, Iterable) or isinstance(objs, BaseModel):
            raise ConfigurationError(
                f"publish_many() takes a list of model instances (publish() takes one), got {objs!r}"
            )
        return [await self.publish(o, **options) for o in objs]

    # ----------------------------------------------------------------- running
    def is_idle(self) -> bool:
        """True when nothing is queued or running and no ``AfterVisibility`` release is due."""
        return self._orchestrator.is_idle()

    async def resume(self, *, timeout: float | None = None, raise_on_error: bool = False) -> RunSummary:
        """Finish the work a previous process left on a durable store, then run until idle.

        Call it once at start, after declaring the same agents: activations that were pending or
        running are run again (a model call that had completed may be repeated) if today's
        declarations still let the agent consume their inputs (else they are recorded as failed),
        artifacts that were stored but never scheduled are routed, and nothing already committed is
        published twice. Later calls (and a fresh store) just run until idle. See
        docs/persistence.md.
        """
        if not self._resumed:
            self._resumed = True
            await self._catalog.variables.sync()
            orch = self._orchestrator
            queued = [act.record.id for act in orch.lifecycle.queue]
            shared = getattr(orch.lifecycle.queue, "queued_ids", None)  # a queue several processes share
            decisions = await restore(
                self.store, self._catalog, orch.router, queued, orch.board_mark, shared
            )
            await orch.apply(decisions)
        return await self.run_until_idle(timeout=timeout, raise_on_error=raise_on_error)

    async def run_until_idle(
        self,
        *,
        timeout: float | None = None,
        raise_on_error: bool = False,
        progress: bool | str | None = None,
    ) -> RunSummary:
        """Run until no work is left: nothing queued or running and no ``AfterVisibility`` release due.

        Human tasks never keep it going: it returns when only open tasks remain, counted in
        ``summary.open_tasks``; an answer is routed when given and runs on the next run.
        Incomplete batches are flushed first (unless ``flush_partial_batches=False``). Passive
        deadlines (batch timeouts, join windows, schedules) do not keep the run going; artifacts
        still held by incomplete gates and joins are counted in ``summary.waiting``.

        Returns a :class:`RunSummary` of everything since the previous run returned. Failed
        activations are listed in ``summary.errors`` (and published as :class:`WorkflowError`
        artifacts); with ``raise_on_error=True`` they raise :class:`WorkflowFailed` instead.
        Raises :class:`RunTimeout` after ``timeout`` seconds; queued work is kept. An engine
        that raises a :class:`RunHalted` (such as :class:`ProviderConfigError` or
        :class:`BudgetExceeded`), or a store that fails to commit, stops the run: nothing new
        starts, the activation goes back to the queue with its inputs unconsumed, and the error
        is raised here once running activations finished; the next run goes on from there.

        ``progress`` shows a live line on stderr (done, running, queued, failed, rate, tokens,
        cost): ``None`` when stderr is a terminal, ``True`` always, ``False`` never; an agent's
        name shows it and that agent's text as the model streams it, line by line.
        """
        watch = progress if isinstance(progress, str) else None
        if watch is not None and watch not in self._catalog.specs:
            raise UnknownAgentError(
                f"run_until_idle(progress={watch!r}): no agent named {watch!r}; declared agents: "
                f"{sorted(self._catalog.specs)} (or pass progress=True for the status line alone)"
            )
        view = LiveView.attach(self._orchestrator, self.settings, watch) if wanted(progress) else None
        try:
            await self._drive(None, timeout)
        finally:
            if view is not None:
                view.detach()
        summary = self._take_summary()
        if any(spec.human for spec in self._catalog.specs.values()):
            summary.open_tasks = await self.tasks.count()
        await warn_unreachable(self, summary)  # logs once per agent that nothing published can wake
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

    async def _drive(self, condition: Condition | None, timeout: float | None) -> bool:
        if self._catalog.variables.needs_sync:
            await self._catalog.variables.sync()
        specs = self._catalog.specs.values()
        if any(not s.engines and not s.human for s in specs) and not self._orchestrator.closed:
            # Build the default engine (and import DSPy) now, not inside the first activation,
            # so that one-off cost does not show up as that activation's time in traces.
            self._default_engine()
        return await self._orchestrator.drive(condition, timeout)

    def _take_summary(self) -> RunSummary:
        summary = self._orchestrator.take_summary(self.settings.take_usage())
        summary.latency = self.settings.latency.take()
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
        if name not in self._catalog.specs:
            raise UnknownAgentError(
                f"no agent named {name!r}; declared agents: {sorted(self._catalog.specs)}"
            )
        artifact = self._catalog.new_artifact(obj, now=self._clock.now(), caller="invoke()")
        act = Activation(name, 0, (artifact,), journaled=False)  # its input is not on the board
        try:
            with anyio.fail_after(timeout) if timeout is not None else nullcontext():
                return await self._orchestrator.invoke(act, publish_outputs)
        except TimeoutError:
            raise RunTimeout(f"invoke({name!r}) did not finish within {timeout}s") from None

    def _default_engine(self) -> Any:
        if self._engine is None:
            try:
                from .._engine.dspy_engine import DSPyEngine
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
        totals = self._orchestrator.totals
        before = Counter(totals)
        with tracer().start_as_current_span(f"flock.run {name}", attributes={"flock.run.name": name}) as span:
            try:
                yield span
            finally:
                for key in ("activations", "artifacts", "errors"):
                    span.set_attribute(f"flock.run.{key}", totals[key] - before[key])

    async def serve(
        self, host: str = "127.0.0.1", port: int = 8000, *, auth: Any = None, log_level: str = "warning"
    ) -> None:
        """Serve this flock over HTTP (needs ``pip install 'flock[server]'``) until cancelled or
        interrupted, processing artifacts as they arrive. ``auth`` is an :class:`ApiKeys`; without it
        the keys come from ``FLOCK_API_KEYS``, and with none at all it refuses to start. See
        docs/serving.md for the endpoints.

        ::

            await flock.serve(auth=ApiKeys({"key-a": Principal(tenant="a", scopes={"publish", "read"})}))
        """
        try:
            from .._server.server import serve
        except ImportError as exc:
            raise ConfigurationError(
                f"serving needs the server extra ({exc.name} is missing): {install_command('server')}"
            ) from None
        from .._server.address import check_address

        check_address(host, port)
        await serve(self, host, port, auth=auth, log_level=log_level)

    # ----------------------------------------------------------------- lifecycle
    async def shutdown(self) -> None:
        """Stop timers, end a run in progress (its running activations go back to the queue, and
        that ``run_until_idle`` raises :class:`FlockClosedError`), refuse further publishes, wait
        until the store has every write on disk, and close the MCP servers' sessions. Returns only when
        nothing runs any more. Safe to call twice."""
        if self._orchestrator.closed:
            return
        await self._orchestrator.close()
        for comp in self._components:
            await comp.on_shutdown(self)
        await self.settings.aclose()  # sessions engines hold open (MCP servers)

    async def __aenter__(self) -> Flock:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.shutdown()

    def __repr__(self) -> str:
        return f"Flock(model={self.model!r}, agents={sorted(self._catalog.specs)})"

    def graph(self) -> AgentGraph:
        """The declared agents as an :class:`AgentGraph` (reachability, dead ends, cycles, Mermaid)."""
        return AgentGraph.of(self)
