"""Running one activation: hooks, engines, contracts. It returns an outcome; it commits nothing.

:meth:`Runtime.run` takes an activation and gives back an :class:`Outcome`: the outputs of every
output group, or a failure (the ``WorkflowError`` artifact, with what earlier groups produced), or
a halt (a :class:`~flock.RunHalted` an engine raised: the activation goes back to the queue). The
orchestrator commits the outcome to the board; then :meth:`Runtime.after_commit` runs the
``on_post_publish`` and ``on_terminate`` hooks. The runtime reads declarations from the catalog
and context from the store; it never touches the orchestrator.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from uuid import UUID, uuid4, uuid5

import anyio
from pydantic import BaseModel

from .._live.events import EventHub
from .._stores.store import output_id
from .._tracing.redact import scrub
from .._tracing.tracing import SpanIndex, activation_span, evaluate_span, mark_failed
from .artifact import Artifact, payload_of
from .catalog import Catalog
from .components import Context, EvalInputs, EvalResult, as_eval_result
from .context import ContextRequest, CorrelationContext, call_provider
from .contract import check_group
from .errors import InputInvalid, OutputError, RunHalted
from .human import HUMAN_TASK, open_task
from .outcomes import WorkflowError
from .scheduler import Activation
from .spec import AgentSpec, OutputDecl, OutputGroup
from .types import type_name
from .visibility import (
    Visibility,
    _Base,
    most_restrictive,
    narrowed,
    within_tenant,
)

log = logging.getLogger("flock")

_NO_OUTPUTS = OutputGroup(index=0, outputs=())


@dataclass
class Outcome:
    """What one activation produced, before anything is committed.

    ``outputs`` are the validated artifacts of every output group that ran; ``failure`` is the
    ``WorkflowError`` artifact when a group failed (committed together with ``outputs``); ``halt``
    is a :class:`RunHalted` that stops the run (then nothing is committed and the activation is
    requeued).
    """

    act: Activation
    spec: AgentSpec
    ctx: Context
    outputs: list[Artifact] = field(default_factory=list)
    failure: Artifact | None = None
    error: BaseException | None = None
    halt: RunHalted | None = None
    metrics: Counter[str] = field(default_factory=Counter)
    filtered: int = 0

    @property
    def committed(self) -> list[Artifact]:
        return [*self.outputs, *([self.failure] if self.failure else [])]


class Runtime:
    """Runs activations of one Flock.

    Args:
        catalog: the agents and types.
        store: read for context.
        now: the current time.
        settings: the Flock-wide :class:`~flock._core.settings.ModelSettings` given to engines.
        spans: span contexts of published artifacts (activations hang under their causes).
        default_engine: builds the engine of agents that declare none.
        context_provider: the Flock's default context provider.
        events: the Flock's event hub (token deltas go there while someone listens).
        variables: the current runtime variables (an immutable snapshot per call).
    """

    def __init__(
        self,
        catalog: Catalog,
        *,
        store: Any,
        now: Callable[[], datetime],
        settings: Any,
        spans: SpanIndex,
        default_engine: Callable[[], Any],
        context_provider: Any,
        events: EventHub,
        variables: Callable[[], Mapping[str, Any]],
    ) -> None:
        self._catalog = catalog
        self._store = store
        self._now = now
        self._settings = settings
        self._spans = spans
        self._default_engine = default_engine
        self.context_provider = context_provider
        self._workflow_context = CorrelationContext()
        self._events = events
        self._variables = variables
        self.run_id = uuid4().hex

    def span(self, act: Activation) -> AbstractContextManager[Any]:
        """``flock.activate <agent>`` for ``act``: commit and routing of its outputs go inside it."""
        return activation_span(self._spans, act.agent, act.subscription, act.artifacts, act.correlation_id)

    async def run(self, act: Activation, span: Any = None) -> Outcome:
        """Run ``act`` up to (not including) its commit."""
        spec = self._catalog.spec(act.agent)
        ctx = Context(
            agent=spec.name,
            identity=spec.identity,
            correlation_id=act.correlation_id,
            model=self._settings.model,
            subscription=act.subscription,
            tick=act.tick,
            settings=self._settings,
            activation_id=act.record.id,
            variables=self._variables(),
        )
        if self._events.active:
            ctx.on_token = self._events.token
        ctx.state["run_id"] = self.run_id
        outcome = Outcome(act, spec, ctx)
        group_index: int | None = None
        utilities = spec.utilities
        try:
            models = [self._catalog.model_of(a) for a in act.artifacts]
            inputs = EvalInputs(artifacts=list(act.artifacts), models=models)
            if spec.human is not None:  # a person answers later: the outcome is the open task
                outcome.outputs = [self._task(spec, act)]
                return outcome
            if utilities or any(getattr(e, "needs_context", True) for e in spec.engines or (None,)):
                ctx.artifacts = await self._context_for(spec, act)
            for u in utilities:
                await u.on_initialize(spec, ctx)
            for u in utilities:
                inputs = await u.on_pre_consume(spec, ctx, inputs) or inputs
            shown = most_restrictive(a.visibility for a in (*act.artifacts, *ctx.artifacts))
            if self._events.watching:  # streamed tokens are outputs: shown to who may see those
                self._events.outputs_visible(act.record.id, _outputs_bound(spec, shown))
            for group in spec.output_groups or (_NO_OUTPUTS,):
                group_index = group.index
                g_inputs = inputs
                for u in utilities:
                    g_inputs = await u.on_pre_evaluate(spec, ctx, g_inputs) or g_inputs
                result = await self._evaluate(spec, ctx, g_inputs, group)
                for u in utilities:
                    result = await u.on_post_evaluate(spec, ctx, g_inputs, result) or result
                if result.metrics:
                    outcome.metrics.update(result.metrics)
                kept = check_group(spec.name, group, result.outputs)
                outcome.filtered += len(result.outputs) - len(kept)
                outcome.outputs.extend(
                    self._to_artifact(
                        spec,
                        group,
                        act,
                        out,
                        shown,
                        output_id(act.record.id, group.index, i),
                        result.prompt_version,
                        result.tags,
                    )
                    for i, out in enumerate(kept)
                )
        except RunHalted as exc:
            outcome.halt = exc
            outcome.outputs = []
            return outcome
        except Exception as exc:
            if isinstance(exc, OutputError):
                kind = "contract"
            elif isinstance(exc, InputInvalid):
                kind = "invalid_input"
            else:
                kind = "agent_error"
            spent = getattr(exc, "metrics", None)  # a failed engine call still cost tokens: count them
            if isinstance(spent, dict):
                outcome.metrics.update(spent)
            if span is not None:
                mark_failed(span, exc, kind)
            for u in utilities:
                try:
                    await u.on_error(spec, ctx, exc)
                except Exception as hook_exc:  # a failing error hook must not hide the original failure
                    log.exception("on_error hook of agent %r raised: %s", spec.name, hook_exc)
            outcome.error = exc
            outcome.failure = failure_artifact(
                spec.name,
                act.artifacts,
                kind=kind,
                error=exc,
                output_group=group_index,
                now=self._now(),
                artifact_id=uuid5(act.record.id, "failure"),
                tenant_id=spec.tenant_id,
                shown=ctx.artifacts,  # the message may quote what the engine read
            )
        return outcome

    async def after_commit(self, outcome: Outcome) -> list[Artifact]:
        """``on_post_publish`` per committed output, then ``on_terminate``.

        Returns failure artifacts for hooks that raised (the caller publishes them).
        """
        spec, ctx, act = outcome.spec, outcome.ctx, outcome.act
        failures: list[Artifact] = []
        try:
            for art in outcome.outputs:
                for u in spec.utilities:
                    await u.on_post_publish(spec, ctx, art)
        except Exception as hook_exc:
            failures.append(
                self._hook_failure(spec, act, hook_exc, "post_publish", (*ctx.artifacts, *outcome.outputs))
            )
        failures += await self.terminate(spec, ctx, act)
        return failures

    async def terminate(self, spec: AgentSpec, ctx: Context, act: Activation) -> list[Artifact]:
        failures: list[Artifact] = []
        for u in spec.utilities:
            try:
                await u.on_terminate(spec, ctx)
            except Exception as hook_exc:
                failures.append(self._hook_failure(spec, act, hook_exc, "terminate", ctx.artifacts))
        return failures

    def _hook_failure(
        self, spec: AgentSpec, act: Activation, error: Exception, hook: str, shown: Sequence[Artifact]
    ) -> Artifact:
        """A hook that raised: its message may quote the context and outputs the hook was handed."""
        return failure_artifact(
            spec.name,
            act.artifacts,
            kind="agent_error",
            error=error,
            output_group=None,
            now=self._now(),
            artifact_id=uuid5(act.record.id, f"hook:{hook}"),
            tenant_id=spec.tenant_id,
            shown=shown,
        )

    async def _context_for(self, spec: AgentSpec, act: Activation) -> list[Artifact]:
        provider = spec.context_provider or self.context_provider
        if spec.context_provider is None and spec.extra.get("history_turns"):
            # .with_history(): earlier turns of the workflow are not ancestors of this input, so
            # such an agent reads its workflow (the lineage default would show none of them).
            provider = self._workflow_context
        identity = spec.identity  # a property that builds a model: once, not once per artifact
        request = ContextRequest(
            agent=spec,
            identity=identity,
            correlation_id=act.correlation_id,
            inputs=act.artifacts,
            store=self._store,
            now=self._now(),
        )
        found = await call_provider(provider, request)
        now = self._now()
        # Enforced here, not trusted to the provider: context never shows what the agent may not see.
        return [a for a in found if a.visibility.allows(identity, now=now, published_at=a.created_at)]

    async def _evaluate(
        self, spec: AgentSpec, ctx: Context, inputs: EvalInputs, group: OutputGroup
    ) -> EvalResult:
        engines = spec.engines or (self._default_engine(),)
        with evaluate_span(spec.name, engines, group.index):
            if spec.best_of is None or spec.best_of[0] == 1:
                return await _chain(spec, ctx, inputs, group, engines)
            return await _best_of(spec, ctx, inputs, group, engines)

    def _task(self, spec: AgentSpec, act: Activation) -> Artifact:
        """The :class:`HumanTask` a human agent's activation opens (its id derived from the
        activation's, so a re-run after a crash opens it once)."""
        now = self._now()
        shown = most_restrictive(a.visibility for a in act.artifacts)
        return Artifact(
            id=output_id(act.record.id, 0, 0),
            type=HUMAN_TASK,
            payload=payload_of(open_task(spec, act.artifacts, now)),
            produced_by=spec.name,
            correlation_id=act.correlation_id,
            partition_key=act.artifacts[0].partition_key if act.artifacts else None,
            visibility=within_tenant(shown, spec.tenant_id),
            created_at=now,
            consumed_from=tuple(a.id for a in act.artifacts),
        )

    def _to_artifact(
        self,
        spec: AgentSpec,
        group: OutputGroup,
        act: Activation,
        out: BaseModel,
        shown: Visibility,
        artifact_id: UUID,
        prompt_version: str | None = None,
        tags: frozenset[str] = frozenset(),
    ) -> Artifact:
        name = type_name(type(out))
        decl: OutputDecl = next(o for o in group.outputs if o.type_name == name)
        vis: Any = decl.visibility
        if vis is not None and not isinstance(vis, _Base):
            vis = vis(out)
            if not isinstance(vis, _Base):
                raise OutputError(
                    f"agent {spec.name!r}: the visibility callable for {name} returned {vis!r}, "
                    "not a visibility"
                )
        # At least as restricted as everything the agent was shown (inputs and context), whatever
        # it declares, and kept within the agent's tenant.
        visibility = shown if vis is None else narrowed(vis, shown)
        visibility = within_tenant(visibility, spec.tenant_id)
        # model_construct: every field is built here from validated values, so skip re-validation.
        return Artifact.model_construct(
            id=artifact_id,
            type=name,
            payload=payload_of(out),
            produced_by=spec.name,
            correlation_id=act.correlation_id,
            partition_key=act.artifacts[0].partition_key if act.artifacts else None,
            tags=tags,
            visibility=visibility,
            created_at=self._now(),
            version=1,
            consumed_from=tuple(a.id for a in act.artifacts),
            prompt_version=prompt_version,
        )


async def _chain(
    spec: AgentSpec, ctx: Context, inputs: EvalInputs, group: OutputGroup, engines: Sequence[Any]
) -> EvalResult:
    """Run the engines in order; each sees the previous one's outputs as inputs (not published)."""
    current, result = inputs, EvalResult()
    spent: Counter[str] = Counter()
    for i, engine in enumerate(engines):
        result = as_eval_result(await engine.evaluate(spec, ctx, current, group))
        spent.update(result.metrics)
        if i + 1 < len(engines):
            arts = [
                Artifact(
                    type=type_name(type(m)),
                    payload=payload_of(m),
                    produced_by=spec.name,
                    correlation_id=ctx.correlation_id,
                )
                for m in result.outputs
            ]
            current = EvalInputs(artifacts=arts, models=list(result.outputs), state=dict(result.state))
    result.metrics = dict(spent)  # what the whole chain spent, not only its last engine
    return result


async def _best_of(
    spec: AgentSpec, ctx: Context, inputs: EvalInputs, group: OutputGroup, engines: Sequence[Any]
) -> EvalResult:
    """``best_of(n, score)``: n chains at once; the best-scoring success wins.

    Candidates that fail are logged; if every candidate fails, the first failure is raised as it
    is (never wrapped in a task-group error), and a :class:`RunHalted` always wins.
    """
    assert spec.best_of is not None
    n, score = spec.best_of
    results: list[EvalResult] = []
    errors: list[Exception] = []

    async def one() -> None:
        try:
            results.append(await _chain(spec, ctx, inputs, group, engines))
        except Exception as exc:
            errors.append(exc)

    async with anyio.create_task_group() as tg:
        for _ in range(n):
            tg.start_soon(one)
    halted = next((e for e in errors if isinstance(e, RunHalted)), None)
    if halted is not None:
        raise halted
    if not results:
        raise errors[0]
    if errors:
        log.warning(
            "agent %r: %d of %d best_of candidates failed (first: %s: %s)",
            spec.name,
            len(errors),
            n,
            type(errors[0]).__name__,
            errors[0],
        )
    return max(results, key=score)


def _outputs_bound(spec: AgentSpec, shown: Visibility) -> Visibility | None:
    """What every output of an activation will at most be visible to, before any is made: what
    the agent was shown, every declared ``visibility=``, the agent's tenant. ``None`` when a
    declared visibility is computed from each output (only the artifacts themselves can tell)."""
    bound = shown
    for group in spec.output_groups:
        for decl in group.outputs:
            vis: Any = decl.visibility
            if vis is None:
                continue
            if not isinstance(vis, _Base):
                return None
            bound = narrowed(vis, bound)  # type: ignore[arg-type]
    return within_tenant(bound, spec.tenant_id)


_STRING_ERRORS = {"loop_guard": "LoopGuardTripped", "subscription_error": "SubscriptionChanged"}


def failure_artifact(
    agent: str,
    inputs: tuple[Artifact, ...],
    *,
    kind: str,
    error: BaseException | str,
    output_group: int | None,
    now: Any,
    artifact_id: UUID | None = None,
    tenant_id: str | None = None,
    shown: Sequence[Artifact] = (),
) -> Artifact:
    """The WorkflowError artifact of a failure: as restricted as the inputs and whatever else the
    agent was ``shown`` (its context), since the message may quote them, and kept in its tenant."""
    # Out of the message: environment secrets and credential shapes (an error may echo a key, such
    # as an HTTP client's that names the URL); the record goes on the board, the summary, the log.
    message = scrub(error if isinstance(error, str) else f"{error}")
    record = WorkflowError(
        agent=agent,
        kind=kind,  # type: ignore[arg-type]
        error_type=_STRING_ERRORS.get(kind, "FlockError") if isinstance(error, str) else type(error).__name__,
        message=message,
        input_ids=[str(a.id) for a in inputs],
        output_group=output_group,
    )
    first = inputs[0] if inputs else None
    return Artifact(
        id=artifact_id or uuid4(),
        type=type_name(WorkflowError),
        payload=payload_of(record),
        produced_by=agent,
        correlation_id=first.correlation_id
        if first
        else Artifact.model_fields["correlation_id"].get_default(call_default_factory=True),
        partition_key=first.partition_key if first else None,
        visibility=within_tenant(most_restrictive(a.visibility for a in (*inputs, *shown)), tenant_id),
        created_at=now,
        consumed_from=tuple(a.id for a in inputs),
    )
