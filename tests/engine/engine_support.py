"""Shared models and helpers of the engine tests."""

from __future__ import annotations

from typing import Any
from uuid import uuid4

import dspy
from dspy.adapters.baml_adapter import BAMLAdapter
from pydantic import BaseModel, Field

from flock import flock_type
from flock._core.artifact import Artifact
from flock._core.components import Context, EvalInputs, EvalResult
from flock._core.spec import AgentSpec, OutputDecl, OutputGroup, Subscription
from flock._core.types import type_name

ADAPTERS = ["chat", "json", "xml", "two_step", "baml"]


def make_adapter(name: str) -> Any:
    """The adapter for ``name``; TwoStep as a class so the engine's own model extracts."""
    return {
        "chat": None,
        "json": dspy.JSONAdapter(),
        "xml": dspy.XMLAdapter(),
        "two_step": dspy.TwoStepAdapter,
        "baml": BAMLAdapter(),
    }[name]


def calls_per_answer(adapter: str) -> int:
    return 2 if adapter == "two_step" else 1


@flock_type
class Task(BaseModel):
    text: str


@flock_type
class Topic(BaseModel):
    name: str


@flock_type
class Idea(BaseModel):
    title: str = Field(min_length=3, max_length=60)
    score: int = Field(ge=1, le=5)


@flock_type
class Summary(BaseModel):
    text: str


@flock_type
class Analysis(BaseModel):
    points: list[str] = Field(min_length=1)
    confidence: float = Field(ge=0, le=1)


def spec(
    *consumes: type[BaseModel],
    publishes: tuple[tuple[type[BaseModel], tuple[int, int] | None], ...],
    tools: tuple[Any, ...] = (),
    description: str | None = "Help with the task.",
    name: str = "agent",
) -> AgentSpec:
    """A hand-built agent spec with one subscription and one output group."""
    sub = Subscription(0, tuple(consumes), tuple(type_name(t) for t in consumes))
    group = OutputGroup(0, tuple(OutputDecl(t, type_name(t), fan_out) for t, fan_out in publishes))
    return AgentSpec(name, description, (sub,), (group,), tools=tools)


async def evaluate(
    engine: Any, agent: AgentSpec, *inputs: BaseModel, recorder: Any = None, run_id: str | None = None
) -> EvalResult:
    """Call ``engine.evaluate`` directly, as the orchestrator would."""
    arts = [Artifact(type=type_name(type(m)), payload=m.model_dump(mode="json")) for m in inputs]
    ctx = Context(agent=agent.name, identity=agent.identity, correlation_id="c1", model=None, subscription=0)
    ctx.state["run_id"] = run_id or uuid4().hex
    callbacks = [*(dspy.settings.callbacks or []), recorder] if recorder is not None else None
    with dspy.context(callbacks=callbacks) if callbacks else _nothing():
        result = await engine.evaluate(agent, ctx, EvalInputs(arts, list(inputs)), agent.output_groups[0])
    assert isinstance(result, EvalResult)
    return result


class _nothing:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> None:
        return None
