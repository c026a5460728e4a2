"""Running one activation: hooks, engines, contracts, publication, failure records."""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any
from uuid import UUID, uuid4, uuid5

import anyio
from pydantic import BaseModel

from ._artifact import Artifact, payload_of
from ._components import Context, EvalInputs, EvalResult, as_eval_result
from ._context import ContextRequest, call_provider
from ._contract import check_group
from ._errors import OutputError
from ._outcomes import WorkflowError
from ._scheduler import Activation
from ._spec import AgentSpec, OutputDecl, OutputGroup
from ._store import output_id
from ._tracing import activation_span, evaluate_span, mark_failed
from ._types import type_name
from ._visibility import PrivateVisibility, Visibility, _Base, most_restrictive

if TYPE_CHECKING:
    from ._flock import Flock

log = logging.getLogger("flock")

_NO_OUTPUTS = OutputGroup(index=0, outputs=())


async def execute(
    flock: Flock, act: Activation, *, publish: bool = True, raise_errors: bool = False
) -> list[Artifact]:
    """Run ``act`` to completion and return its outputs.

    The outputs of every output group, the consumption of the inputs and the activation's
    completion are committed to the store together, after all groups ran. A failure becomes a
    WorkflowError artifact committed with whatever the earlier groups produced (nothing is
    raised) unless ``raise_errors``; with ``publish=False`` outputs are built but not stored.
    """
    with activation_span(
        flock._spans, act.agent, act.subscription, act.artifacts, act.correlation_id
    ) as span:
        return await _execute(flock, act, span, publish=publish, raise_errors=raise_errors)


async def _execute(
    flock: Flock, act: Activation, span: Any, *, publish: bool, raise_errors: bool
) -> list[Artifact]:
    spec = flock._agents[act.agent]
    record = act.record
    inputs = EvalInputs(artifacts=list(act.artifacts), models=[flock._model_of(a) for a in act.artifacts])
    ctx = Context(
        agent=spec.name,
        identity=spec.identity,
        correlation_id=act.correlation_id,
        model=flock.model,
        subscription=act.subscription,
        tick=act.tick,
        settings=flock.settings,
    )
    ctx.state["run_id"] = flock._run_id
    produced: list[Artifact] = []
    failure: Artifact | None = None
    group_index: int | None = None
    utilities = spec.utilities
    try:
        if utilities or any(getattr(e, "needs_context", True) for e in spec.engines or (None,)):
            ctx.artifacts = await _context_for(flock, spec, act)
        for u in utilities:
            await u.on_initialize(spec, ctx)
        for u in utilities:
            inputs = await u.on_pre_consume(spec, ctx, inputs) or inputs
        for group in spec.output_groups or (_NO_OUTPUTS,):
            group_index = group.index
            g_inputs = inputs
            for u in utilities:
                g_inputs = await u.on_pre_evaluate(spec, ctx, g_inputs) or g_inputs
            result = await _evaluate(flock, spec, ctx, g_inputs, group)
            for u in utilities:
                result = await u.on_post_evaluate(spec, ctx, g_inputs, result) or result
            flock._summary.metrics.update(result.metrics)
            kept = check_group(spec.name, group, result.outputs)
            flock._summary.filtered_outputs += len(result.outputs) - len(kept)
            produced.extend(
                _to_artifact(flock, spec, group, act, out, output_id(record.id, group.index, position))
                for position, out in enumerate(kept)
            )
    except Exception as exc:
        kind = "contract" if isinstance(exc, OutputError) else "agent_error"
        spent = getattr(exc, "metrics", None)  # a failed engine call still cost tokens: count them
        if isinstance(spent, dict):
            flock._summary.metrics.update(spent)
        mark_failed(span, exc, kind)
        for u in utilities:
            try:
                await u.on_error(spec, ctx, exc)
            except Exception as hook_exc:  # a failing error hook must not hide the original failure
                log.exception("on_error hook of agent %r raised: %s", spec.name, hook_exc)
        if raise_errors:
            await _terminate(flock, spec, ctx, act)
            raise
        failure = failure_artifact(
            spec.name,
            act.artifacts,
            kind=kind,
            error=exc,
            output_group=group_index,
            now=flock._now(),
            artifact_id=uuid5(record.id, "failure"),
        )
    if publish:
        await flock._commit(record if act.journaled else None, [*produced, *([failure] if failure else [])])
        try:
            for art in produced:
                for u in utilities:
                    await u.on_post_publish(spec, ctx, art)
        except Exception as hook_exc:
            await flock._record_failure(spec.name, act.artifacts, kind="agent_error", error=hook_exc)
    await _terminate(flock, spec, ctx, act)
    return produced


async def _terminate(flock: Flock, spec: AgentSpec, ctx: Context, act: Activation) -> None:
    for u in spec.utilities:
        try:
            await u.on_terminate(spec, ctx)
        except Exception as hook_exc:
            await flock._record_failure(spec.name, act.artifacts, kind="agent_error", error=hook_exc)


async def _context_for(flock: Flock, spec: AgentSpec, act: Activation) -> list[Artifact]:
    provider = spec.context_provider or flock._context_provider
    identity = spec.identity  # a property that builds a model: once, not once per artifact
    request = ContextRequest(
        agent=spec,
        identity=identity,
        correlation_id=act.correlation_id,
        inputs=act.artifacts,
        store=flock.store,
        now=flock._now(),
    )
    found = await call_provider(provider, request)
    now = flock._now()
    # Enforced here, not trusted to the provider: context never shows what the agent may not see.
    return [a for a in found if a.visibility.allows(identity, now=now, published_at=a.created_at)]


async def _evaluate(
    flock: Flock, spec: AgentSpec, ctx: Context, inputs: EvalInputs, group: OutputGroup
) -> EvalResult:
    engines = spec.engines or (flock._default_engine(),)
    with evaluate_span(spec.name, engines, group.index):
        return await _evaluate_in_span(spec, ctx, inputs, group, engines)


async def _evaluate_in_span(
    spec: AgentSpec, ctx: Context, inputs: EvalInputs, group: OutputGroup, engines: Sequence[Any]
) -> EvalResult:
    async def chain() -> EvalResult:
        current, result = inputs, EvalResult()
        spent: Counter[str] = Counter()
        for i, engine in enumerate(engines):
            result = as_eval_result(await engine.evaluate(spec, ctx, current, group))
            spent.update(result.metrics)
            if i + 1 < len(engines):
                # The next engine sees this one's outputs as its inputs (not published).
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

    if spec.best_of is None or spec.best_of[0] == 1:
        return await chain()
    n, score = spec.best_of
    results: list[EvalResult] = []

    async def one() -> None:
        results.append(await chain())

    async with anyio.create_task_group() as tg:
        for _ in range(n):
            tg.start_soon(one)
    return max(results, key=score)


def _to_artifact(
    flock: Flock, spec: AgentSpec, group: OutputGroup, act: Activation, out: BaseModel, artifact_id: UUID
) -> Artifact:
    name = type_name(type(out))
    decl: OutputDecl = next(o for o in group.outputs if o.type_name == name)
    vis: Any = decl.visibility
    if vis is not None and not isinstance(vis, _Base):
        vis = vis(out)
        if not isinstance(vis, _Base):
            raise OutputError(
                f"agent {spec.name!r}: the visibility callable for {name} returned {vis!r}, not a visibility"
            )
    visibility: Visibility = vis if vis is not None else most_restrictive(a.visibility for a in act.artifacts)
    if isinstance(visibility, PrivateVisibility) and visibility.tenant_id is None and spec.tenant_id:
        visibility = PrivateVisibility(agents=visibility.agents, tenant_id=spec.tenant_id)
    # model_construct: every field is built here from validated values, so skip re-validation.
    return Artifact.model_construct(
        id=artifact_id,
        type=name,
        payload=payload_of(out),
        produced_by=spec.name,
        correlation_id=act.correlation_id,
        partition_key=act.artifacts[0].partition_key if act.artifacts else None,
        tags=frozenset(),
        visibility=visibility,
        created_at=flock._now(),
        version=1,
        consumed_from=tuple(a.id for a in act.artifacts),
    )


def failure_artifact(
    agent: str,
    inputs: tuple[Artifact, ...],
    *,
    kind: str,
    error: BaseException | str,
    output_group: int | None,
    now: Any,
    artifact_id: UUID | None = None,
) -> Artifact:
    message = error if isinstance(error, str) else f"{error}"
    record = WorkflowError(
        agent=agent,
        kind=kind,  # type: ignore[arg-type]
        error_type="LoopGuardTripped" if isinstance(error, str) else type(error).__name__,
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
        visibility=most_restrictive(a.visibility for a in inputs),
        created_at=now,
        consumed_from=tuple(a.id for a in inputs),
    )
