"""The fluent builder: chaining, the immutable spec, and declaration-time errors that say how to fix."""

from __future__ import annotations

import dataclasses
from datetime import timedelta

import pytest
from pydantic import BaseModel

from flock import (
    AgentBuilder,
    AgentComponent,
    AgentSpec,
    BatchSpec,
    ConfigurationError,
    DuplicateAgentError,
    EngineComponent,
    Flock,
    FlockError,
    FunctionEngine,
    JoinSpec,
    NoContext,
    NotAModelError,
    OrchestratorComponent,
    PrivateVisibility,
    flock_type,
)


@flock_type
class Task(BaseModel):
    text: str


@flock_type
class Report(BaseModel):
    text: str


@flock_type
class Note(BaseModel):
    text: str


class Plain:  # not a model
    pass


def report(task: Task) -> Report:
    return Report(text=task.text)


def report_any(*models: BaseModel) -> Report:  # fits every subscription below (gates, batches)
    return Report(text=str(len(models)))


def test_every_builder_method_returns_the_builder() -> None:
    flock = Flock()
    b = flock.agent("writer")
    assert isinstance(b, AgentBuilder)
    calls = [
        lambda: b.description("Write reports."),
        lambda: b.consumes(Task, where=lambda t: True, from_agents="x", tags={"t"}),
        lambda: b.consumes(Note, batch=BatchSpec(size=2)),
        lambda: b.consumes(Task, Note, join=JoinSpec(by=lambda m: m.text, within=timedelta(seconds=5))),
        lambda: b.publishes(Report, fan_out=(1, 2), where=lambda r: True, validate=lambda r: True),
        lambda: b.with_engines(FunctionEngine(report_any)),
        lambda: b.with_tools([len]),
        lambda: b.with_utilities(AgentComponent()),
        lambda: b.with_context(NoContext()),
        lambda: b.max_concurrency(2),
        lambda: b.prevent_self_trigger(False),
        lambda: b.labels("finance"),
        lambda: b.tenant("acme"),
        lambda: b.best_of(2, lambda r: 1.0),
        lambda: b.calls(report_any),
    ]
    for call in calls:
        assert call() is b
    spec = b.spec
    assert spec.description == "Write reports."
    assert len(spec.subscriptions) == 3
    assert spec.max_concurrency == 2
    assert spec.prevent_self_trigger is False
    assert spec.labels == frozenset({"finance"})
    assert spec.tenant_id == "acme"
    assert spec.best_of is not None and spec.best_of[0] == 2
    assert len(spec.tools) == 1
    assert isinstance(spec.engines[0], FunctionEngine)  # calls() replaced with_engines()
    assert b.name == "writer"


def test_spec_is_an_immutable_inspectable_value() -> None:
    flock = Flock()
    b = flock.agent("writer").consumes(Task, where=lambda t: t.text != "", tags="urgent").publishes(Report)
    before = b.spec
    assert isinstance(before, AgentSpec)
    with pytest.raises(dataclasses.FrozenInstanceError):
        before.name = "other"  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        before.subscriptions[0].tags = None  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        before.output_groups[0].outputs[0].fan_out = (1, 9)  # type: ignore[misc]
    sub = before.subscriptions[0]
    assert sub.type_names == ("Task",)
    assert sub.tags == frozenset({"urgent"})
    assert sub.counts == {"Task": 1}
    assert not sub.is_gate
    assert before.output_groups[0].outputs[0].count_text == "exactly 1"
    b.consumes(Note).max_concurrency(7)
    # a later builder call makes a new spec; the old value is untouched
    assert len(before.subscriptions) == 1 and before.max_concurrency == 32
    assert len(b.spec.subscriptions) == 2 and b.spec.max_concurrency == 7
    assert flock.agents == [b.spec]


def test_spec_describes_gates_and_fan_out() -> None:
    flock = Flock()
    spec = (
        flock.agent("a")
        .consumes(Task, Note)
        .consumes(Task, Task)
        .publishes(Report, fan_out=3)
        .publishes(Note, Report, fan_out=(2, 4))
        .spec
    )
    assert spec.subscriptions[0].is_gate and spec.subscriptions[0].counts == {"Task": 1, "Note": 1}
    assert spec.subscriptions[1].counts == {"Task": 2}
    assert spec.output_groups[0].outputs[0].fan_out == (3, 3)
    assert spec.output_groups[0].outputs[0].count_text == "exactly 3"
    assert [o.type_name for o in spec.output_groups[1].outputs] == ["Note", "Report"]
    assert spec.output_groups[1].outputs[0].count_text == "between 2 and 4"
    assert [g.index for g in spec.output_groups] == [0, 1]
    assert spec.consumed_type_names == {"Task", "Note"}
    assert spec.published_type_names == {"Report", "Note"}


@pytest.mark.parametrize(
    ("declare", "error", "hint"),
    [
        (lambda b: b.consumes(Plain), NotAModelError, "`@flock_type` is optional"),
        (lambda b: b.consumes(dict), NotAModelError, "pydantic.BaseModel"),
        (lambda b: b.publishes(Plain), NotAModelError, "not a Pydantic model"),
        (lambda b: b.consumes(Task(text="x")), NotAModelError, "pass Task"),
        (lambda b: b.publishes(Report(text="x")), NotAModelError, "needs the class"),
        (lambda b: b.consumes(), ConfigurationError, "at least one type"),
        (lambda b: b.publishes(), ConfigurationError, "at least one type"),
        (lambda b: b.publishes(Report, fan_out=0), ConfigurationError, ">= 1"),
        (lambda b: b.publishes(Report, fan_out=-2), ConfigurationError, ">= 1"),
        (lambda b: b.publishes(Report, fan_out=(5, 2)), ConfigurationError, "lo <= hi"),
        (lambda b: b.publishes(Report, fan_out=(0, 0)), ConfigurationError, "hi >= 1"),
        (lambda b: b.publishes(Report, fan_out="3"), ConfigurationError, "int or a (lo, hi)"),
        (lambda b: b.publishes(Report, Report), ConfigurationError, "fan_out=N"),
        (lambda b: b.publishes(Report, visibility="private"), ConfigurationError, "PrivateVisibility"),
        (lambda b: b.publishes(Report, where="x"), ConfigurationError, "callable"),
        (lambda b: b.publishes(Report, validate=[1]), ConfigurationError, "(callable, message)"),
        (lambda b: b.consumes(Task, where=["not callable"]), ConfigurationError, "callable"),
        (lambda b: b.consumes(Task, from_agents=set()), ConfigurationError, "non-empty"),
        (lambda b: b.consumes(Task, tags=[]), ConfigurationError, "non-empty"),
        (lambda b: b.consumes(Task, batch=3), ConfigurationError, "BatchSpec"),
        (lambda b: b.consumes(Task, join="x"), ConfigurationError, "JoinSpec"),
        (lambda b: b.consumes(Task, activation=lambda: True), ConfigurationError, "When.correlation"),
        (lambda b: b.max_concurrency(0), ConfigurationError, "int >= 1"),
        (lambda b: b.max_concurrency(True), ConfigurationError, "int >= 1"),
        (lambda b: b.best_of(0, lambda r: 1.0), ConfigurationError, "int >= 1"),
        (lambda b: b.best_of(2, "score"), ConfigurationError, "callable"),
        (lambda b: b.with_engines(object()), ConfigurationError, "EngineComponent"),
        (lambda b: b.with_engines(FunctionEngine), ConfigurationError, "pass an instance"),
        (lambda b: b.with_utilities(object()), ConfigurationError, "subclass flock.AgentComponent"),
        (lambda b: b.with_utilities(print), ConfigurationError, "AgentComponent instances"),
        (lambda b: b.with_utilities(AgentComponent), ConfigurationError, "AgentComponent()"),
        (lambda b: b.with_context("recent"), ConfigurationError, "callable provider"),
        (lambda b: b.with_tools(["nope"]), ConfigurationError, "list of functions"),
        (lambda b: b.tenant(""), ConfigurationError, "non-empty"),
        (lambda b: b.labels(""), ConfigurationError, "non-empty"),
        (lambda b: b.description(42), ConfigurationError, "string"),
        (lambda b: b.calls("report"), ConfigurationError, "takes a function"),
    ],
)
def test_declaration_mistakes_raise_typed_errors_that_say_how_to_fix(declare, error, hint) -> None:
    flock = Flock()
    b = flock.agent("writer")
    before = b.spec
    with pytest.raises(error) as info:
        declare(b)
    assert isinstance(info.value, FlockError)
    assert hint in str(info.value)
    assert "'writer'" in str(info.value)  # the message names the agent
    assert b.spec == before  # a failed declaration changes nothing


def test_not_a_model_messages_name_the_agent() -> None:
    b = Flock().agent("writer")
    with pytest.raises(NotAModelError, match="agent 'writer' consumes"):
        b.consumes(Plain)
    # also a TypeError, so callers catching the builtin still work
    with pytest.raises(TypeError):
        b.publishes(Plain)


def test_duplicate_agent_name_is_an_error() -> None:
    flock = Flock()
    flock.agent("writer").consumes(Task)
    with pytest.raises(DuplicateAgentError, match="choose another name"):
        flock.agent("writer")
    assert len(flock.agents) == 1
    with pytest.raises(ConfigurationError, match="non-empty"):
        flock.agent("")


@pytest.mark.parametrize(
    ("factory", "hint"),
    [
        (lambda: BatchSpec(), "size="),
        (lambda: BatchSpec(size=0), ">= 1"),
        (lambda: BatchSpec(timeout=0), "positive"),
        (lambda: JoinSpec(by="text", within=2), "callable"),
        (lambda: JoinSpec(by=lambda m: m, within=0), "positive"),
        (lambda: Flock(max_concurrency=0), ">= 1"),
        (lambda: Flock(max_agent_iterations=0), ">= 1"),
    ],
)
def test_impossible_specs_and_settings_raise(factory, hint) -> None:
    with pytest.raises(ConfigurationError) as info:
        factory()
    assert hint in str(info.value)


def test_engine_components_with_no_fields_need_no_arguments() -> None:
    class Echo(EngineComponent):
        async def evaluate(self, agent, ctx, inputs, output_group):
            return None

    spec = Flock().agent("a").with_engines(Echo(), Echo()).spec
    assert len(spec.engines) == 2


def test_publishes_visibility_and_validate_are_kept_on_the_spec() -> None:
    vis = PrivateVisibility(agents={"boss"})
    spec = (
        Flock()
        .agent("a")
        .publishes(Report, visibility=vis, validate=(lambda r: bool(r.text), "text must not be empty"))
        .spec
    )
    decl = spec.output_groups[0].outputs[0]
    assert decl.visibility == vis
    assert decl.validate[0][1] == "text must not be empty"


def test_labels_accumulate_and_switches_default_on() -> None:
    b = Flock().agent("a").labels("x").labels("y", "z").prevent_self_trigger(False)
    assert b.spec.labels == frozenset({"x", "y", "z"})
    assert b.spec.identity.labels == frozenset({"x", "y", "z"})
    assert b.prevent_self_trigger().spec.prevent_self_trigger is True
    # an empty where list is "no predicate": every artifact matches
    assert b.consumes(Task, where=[]).spec.subscriptions[0].where == ()


@pytest.mark.parametrize(
    ("options", "hint"),
    [
        ({"store": object()}, "BlackboardStore"),
        ({"context_provider": "recent"}, "CorrelationContext(limit=20)"),
        ({"components": [object()]}, "subclass flock.OrchestratorComponent"),
        ({"components": [OrchestratorComponent]}, "OrchestratorComponent instances"),
    ],
)
def test_flock_settings_are_checked_when_the_flock_is_made(options, hint) -> None:
    with pytest.raises(ConfigurationError) as info:
        Flock(**options)
    assert hint in str(info.value)


def test_add_component_checks_its_argument() -> None:
    flock = Flock()
    with pytest.raises(ConfigurationError, match="OrchestratorComponent"):
        flock.add_component(print)
    flock.add_component(OrchestratorComponent())
