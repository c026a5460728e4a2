"""Extension points and the values that flow through an activation.

An activation runs the agent's components in this order::

    on_initialize → on_pre_consume
    → for each output group: on_pre_evaluate → engines (chained) → on_post_evaluate → outputs checked
    → every group's outputs published together → on_post_publish (per artifact)
    → on_terminate           (on failure: on_error, then on_terminate)

All outputs of one activation are committed in one step with the consumption of its inputs, so
a crash never leaves half an activation on the board. If a later group fails, the earlier groups'
outputs are still published, together with the WorkflowError.

Every hook is optional; a hook that returns ``None`` leaves its value unchanged.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar

from pydantic import BaseModel

from .artifact import Artifact
from .types import type_name
from .visibility import AgentIdentity

if TYPE_CHECKING:
    from .spec import AgentSpec, OutputGroup

M = TypeVar("M", bound=BaseModel)


@dataclass
class Context:
    """What an activation knows besides its inputs.

    Attributes:
        agent: the agent's name.
        identity: the agent's visibility identity.
        correlation_id: the workflow of the inputs.
        artifacts: context artifacts: by default the visible artifacts of the same correlation id
            (inputs excluded, newest last, bounded); ``with_context(provider)`` changes this.
        model: the Flock's resolved model name, for engines that inherit it.
        subscription: index of the ``consumes()`` call that fired (``-1`` for a scheduled run).
        tick: for scheduled runs, the :class:`~flock.Tick` (iteration and fire time); else ``None``.
        state: scratch space shared by the components of this activation.
        settings: the Flock-wide :class:`~flock._core.settings.ModelSettings` (model, inherited
            ``lm_kwargs``, rate limits, budget, per-Flock engine state); ``None`` outside a Flock.
        activation_id: the id of this activation (its journal id).
        variables: the Flock's runtime variables as they were when this activation started
            (``flock.variables``); later changes apply to later activations.
        on_token: set while someone listens to ``flock.events()``, called as
            ``on_token(agent, activation_id, field_name, delta, attempt)``: engines that stream call
            :meth:`emit_token` for every piece of a ``str`` output field.
    """

    agent: str
    identity: AgentIdentity
    correlation_id: str
    artifacts: list[Artifact] = field(default_factory=list)
    model: str | None = None
    subscription: int | None = None
    tick: Any = None
    state: dict[str, Any] = field(default_factory=dict)
    settings: Any = None
    activation_id: Any = None
    variables: Mapping[str, Any] = field(default_factory=dict)
    on_token: Callable[..., None] | None = None

    @property
    def streaming(self) -> bool:
        """Whether anyone listens for token deltas (engines may skip streaming otherwise)."""
        return self.on_token is not None

    def emit_token(self, field_name: str, delta: str, attempt: int = 0) -> None:
        """Report a streamed piece of output field ``field_name`` (a no-op when nobody listens).

        ``attempt`` counts re-asks: 0 for the first answer, 1 for the first re-ask, ...
        """
        if self.on_token is not None:
            self.on_token(self.agent, self.activation_id, field_name, delta, attempt)


@dataclass
class EvalInputs:
    """The inputs of one evaluation.

    ``artifacts`` lists every input :class:`Artifact` (for gates, joins and batches every collected
    artifact, in order); ``models`` holds the same inputs as validated Pydantic models.
    """

    artifacts: list[Artifact]
    models: list[BaseModel] = field(default_factory=list)
    state: dict[str, Any] = field(default_factory=dict)

    def all(self, model: type[M]) -> list[M]:
        """Every input of type ``model``."""
        name = type_name(model)
        return [m for a, m in zip(self.artifacts, self.models, strict=False) if a.type == name]  # type: ignore[misc]

    def first(self, model: type[M]) -> M:
        """The first input of type ``model``; raises ``LookupError`` if there is none."""
        found = self.all(model)
        if not found:
            raise LookupError(f"no input of type {type_name(model)} in this activation")
        return found[0]


@dataclass
class EvalResult:
    """What an engine returns: output models plus anything worth keeping about the call.

    Attributes:
        outputs: the output values (Pydantic models of the declared types).
        state: passed on to the next engine in the chain.
        metrics: numbers about the call (tokens, latency, re-asks), summed into run summaries.
        trace: reasoning, tool trajectories and similar material kept for tracing, never published.
        prompt_version: the version of the prompt behind the outputs; the runtime puts it on
            every artifact made from them (``Artifact.prompt_version``).
        tags: added to the tags of every output artifact (a fallback model tags ``model:<name>``).
    """

    outputs: list[BaseModel] = field(default_factory=list)
    state: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, float] = field(default_factory=dict)
    trace: dict[str, Any] = field(default_factory=dict)
    prompt_version: str | None = None
    tags: frozenset[str] = frozenset()

    @classmethod
    def of(cls, *outputs: BaseModel, **metrics: float) -> EvalResult:
        """Shorthand: ``EvalResult.of(Report(...), tokens=12)``."""
        return cls(outputs=list(outputs), metrics=dict(metrics))


def as_eval_result(value: Any) -> EvalResult:
    """Accept what engines may return: an EvalResult, one model, a sequence of models, or None."""
    if isinstance(value, EvalResult):
        return value
    if value is None:
        return EvalResult()
    if isinstance(value, BaseModel):
        return EvalResult(outputs=[value])
    if isinstance(value, Sequence) and not isinstance(value, str | bytes):
        items = list(value)
        if all(isinstance(v, BaseModel) for v in items):
            return EvalResult(outputs=items)
    raise TypeError(
        f"an engine returned {type(value).__name__}; return an EvalResult, a Pydantic model, "
        "a list of models, or None"
    )


class AgentComponent:
    """Base class for utilities attached with ``.with_utilities(...)``. Override any hook.

    Hooks run per activation, in the order shown in the module docs (see the Extension points
    page)::

        class Audit(AgentComponent):
            async def on_post_publish(self, agent, ctx, artifact):
                print(agent.name, "published", artifact.type)

        flock.agent("support").consumes(Ticket).publishes(Reply).with_utilities(Audit())
    """

    name: str | None = None

    async def on_initialize(self, agent: AgentSpec, ctx: Context) -> None:
        """First, once per activation, after its context (``ctx.artifacts``) is built."""
        return None

    async def on_pre_consume(self, agent: AgentSpec, ctx: Context, inputs: EvalInputs) -> EvalInputs | None:
        """Once per activation, before any engine; return replacement inputs or ``None``."""
        return None

    async def on_pre_evaluate(self, agent: AgentSpec, ctx: Context, inputs: EvalInputs) -> EvalInputs | None:
        """Before each output group's engines; return replacement inputs for that group or ``None``."""
        return None

    async def on_post_evaluate(
        self, agent: AgentSpec, ctx: Context, inputs: EvalInputs, result: EvalResult
    ) -> EvalResult | None:
        """After each output group's engines, before the output contract is checked; return a
        replacement result or ``None``."""
        return None

    async def on_post_publish(self, agent: AgentSpec, ctx: Context, artifact: Artifact) -> None:
        """For each output, after the activation's outputs are committed to the board."""
        return None

    async def on_error(self, agent: AgentSpec, ctx: Context, error: BaseException) -> None:
        """When the activation fails (engine error, contract violation, invalid input), before
        ``on_terminate``. A hook that raises is logged; it never hides the original error."""
        return None

    async def on_terminate(self, agent: AgentSpec, ctx: Context) -> None:
        """Last, once per activation, after success or failure."""
        return None


class EngineComponent(AgentComponent):
    """Base class for engines: turn inputs into the outputs of one output group.

    ``evaluate`` may return an :class:`EvalResult`, a single model, a list of models, or ``None``.
    An engine that never reads ``ctx.artifacts`` may set ``needs_context = False`` so the
    orchestrator does not build the context for it.
    """

    needs_context: bool = True

    async def evaluate(
        self, agent: AgentSpec, ctx: Context, inputs: EvalInputs, output_group: OutputGroup
    ) -> EvalResult | BaseModel | Sequence[BaseModel] | None:
        """Produce the outputs of ``output_group`` (one ``publishes()`` call) from ``inputs``.

        Runs once per output group, between ``on_pre_evaluate`` and ``on_post_evaluate``::

            class Echo(EngineComponent):
                async def evaluate(self, agent, ctx, inputs, output_group):
                    return Reply(text=inputs.first(Ticket).text.upper())
        """
        raise NotImplementedError(f"{type(self).__name__} must implement evaluate()")


class OrchestratorComponent:
    """Base class for Flock-wide hooks, added with ``Flock(components=[...])`` or ``add_component``.

    ``on_schedule`` may return ``False`` to veto an activation; the veto is logged. A progress
    printer::

        class Progress(OrchestratorComponent):
            async def on_artifact_published(self, flock, artifact):
                print(artifact.type, "from", artifact.produced_by)

        flock = Flock(components=[Progress()])
    """

    name: str | None = None

    async def on_artifact_published(self, flock: Any, artifact: Artifact) -> None:
        """Every stored artifact (from outside, from agents, Flock's own records), before it is
        routed. A hook that raises is logged and recorded; the artifact is still routed."""
        return None

    def on_schedule(self, flock: Any, artifact: Artifact, agent: AgentSpec) -> bool:
        """Before ``artifact`` queues an activation of ``agent`` (sync); ``False`` vetoes it."""
        return True

    async def on_idle(self, flock: Any) -> None:
        """Each time a run has nothing left to do; it may publish, and the run then goes on."""
        return None

    async def on_shutdown(self, flock: Any) -> None:
        """Once, from ``flock.shutdown()`` (also when leaving ``async with Flock() as flock``)."""
        return None
