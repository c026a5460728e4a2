"""The signature builder: semantic names, plurals, collisions, counts, instructions."""

from __future__ import annotations

import keyword
import re

import pytest
from engine_support import Idea, Summary, Task, Topic, spec
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import BaseModel, create_model

from flock import ConfigurationError, Flock, flock_type, inspect_signature
from flock._core.spec import AgentSpec, OutputDecl, OutputGroup, Subscription
from flock._engine.signature import build_signature, field_base, field_plural, shape_from_subscription


@pytest.mark.parametrize(
    ("name", "single", "plural"),
    [
        ("Task", "task", "tasks"),
        ("ResearchQuestion", "research_question", "research_questions"),
        ("APIResponse", "api_response", "api_responses"),
        ("HTTPServerError", "http_server_error", "http_server_errors"),
        ("Analysis", "analysis", "analyses"),
        ("Story", "story", "stories"),
        ("Idea", "idea", "ideas"),
        ("Person", "person", "people"),
        ("shop.Order", "order", "orders"),
        ("Stage0", "stage0", "stage0s"),
    ],
)
def test_field_names_come_from_inflection(name: str, single: str, plural: str) -> None:
    assert field_base(name) == single
    assert field_plural(name) == plural


def test_single_input_single_output() -> None:
    sig = inspect_signature(spec(Task, publishes=((Summary, None),), description="Summarise."))
    assert sig.spec == "task: Task -> summary: Summary"
    assert sig.instructions == "Summarise.\n\nGenerate summary from task."
    assert sig.field("task").description is None  # no filler


def test_multi_input_and_multi_output_get_one_field_each() -> None:
    sig = inspect_signature(spec(Task, Topic, publishes=((Summary, None), (Idea, None)), description=None))
    assert [f.name for f in sig.inputs] == ["task", "topic"]
    assert [f.name for f in sig.outputs] == ["summary", "idea"]
    assert sig.instructions == "Generate summary and idea from task and topic."


def test_fan_out_is_plural_and_states_its_count() -> None:
    exact = inspect_signature(spec(Task, publishes=((Idea, (5, 5)),)))
    ranged = inspect_signature(spec(Task, publishes=((Idea, (2, 4)),)))
    assert exact.field("ideas").type == list[Idea]
    assert exact.field("ideas").description == "Generate exactly 5 ideas."
    assert ranged.field("ideas").description == "Generate between 2 and 4 ideas."


def test_count_gate_and_batch_are_plural_lists() -> None:
    gate = inspect_signature(spec(Task, Task, publishes=((Summary, None),)))
    assert gate.spec == "tasks: list[Task] -> summary: Summary"
    from flock._core.spec import BatchSpec

    batch = AgentSpec(
        "b",
        None,
        (Subscription(0, (Task,), ("Task",), batch=BatchSpec(size=3)),),
        (OutputGroup(0, (OutputDecl(Summary, "Summary"),)),),
    )
    assert inspect_signature(batch).spec == "tasks: list[Task] -> summary: Summary"


def test_same_type_in_and_out_gets_role_prefixes() -> None:
    @flock_type
    class Text(BaseModel):
        body: str

    sig = inspect_signature(spec(Text, publishes=((Text, None),)))
    assert sig.spec == "input_text: Text -> output_text: Text"


def test_reserved_names_and_duplicates_follow_the_documented_rule() -> None:
    Context = create_model("Context", note=(str, ...))
    Json = create_model("Json", raw=(str, ...))
    other_task = flock_type(name="other.Task")(create_model("Task", x=(int, ...)))
    sig = inspect_signature(spec(Context, Task, other_task, publishes=((Json, None),)))
    assert [f.name for f in sig.inputs] == ["input_context", "task", "task_2"]
    assert [f.name for f in sig.outputs] == ["output_json"]


def test_context_field_only_with_context() -> None:
    agent = spec(Task, publishes=((Summary, None),))
    assert "context" not in [f.name for f in inspect_signature(agent).inputs]
    with_ctx = inspect_signature(agent, context=True)
    assert with_ctx.field("context").input


def test_inspect_through_builder_and_flock() -> None:
    flock = Flock()
    writer = flock.agent("writer").description("Pitch ideas.").consumes(Task).publishes(Idea, fan_out=3)
    by_builder = inspect_signature(writer)
    by_flock = inspect_signature(flock, agent="writer")
    assert by_builder.spec == by_flock.spec == "task: Task -> ideas: list[Idea]"
    text = str(by_builder)
    assert "Generate exactly 3 ideas." in text and "Pitch ideas." in text


def test_dspy_signature_matches_the_inspection() -> None:
    sig = inspect_signature(spec(Task, publishes=((Idea, (2, 4)), (Summary, None))))
    dsig = sig.to_dspy()
    assert list(dsig.input_fields) == ["task"]
    assert list(dsig.output_fields) == ["ideas", "summary"]
    assert dsig.instructions == sig.instructions


# --------------------------------------------------------------------------- properties

_word = st.from_regex(r"[A-Z][a-z]{1,7}", fullmatch=True)
_acronym = st.from_regex(r"[A-Z]{2,4}", fullmatch=True)
camel = (
    st.lists(st.one_of(_word, _acronym), min_size=1, max_size=3)
    .map("".join)
    .filter(lambda s: not re.fullmatch(r"[A-Z]+", s))
)


tricky = st.sampled_from(["Context", "Json", "Text", "Reasoning", "Class", "ModelConfig", "Feedback", "Copy"])
type_names = st.one_of(camel, tricky, st.builds(lambda a, b: f"{a.lower()}.{b}", camel, camel))


@st.composite
def shapes(draw: st.DrawFn) -> tuple[AgentSpec, OutputGroup]:
    names = draw(st.lists(type_names, min_size=2, max_size=6, unique=True))
    types = {n: create_model(n.rsplit(".", 1)[-1], value=(str, ...)) for n in names}
    n_in = draw(st.integers(1, len(names) - 1))
    ins = [draw(st.sampled_from(names)) for _ in range(n_in)]
    outs = draw(st.lists(st.sampled_from(names), min_size=1, max_size=3, unique=True))
    counts = [draw(st.one_of(st.none(), st.tuples(st.integers(1, 3), st.integers(3, 6)))) for _ in outs]
    sub = Subscription(0, tuple(types[n] for n in ins), tuple(ins))
    group = OutputGroup(0, tuple(OutputDecl(types[n], n, c) for n, c in zip(outs, counts, strict=True)))
    return AgentSpec("a", "Do it.", (sub,), (group,)), group


@settings(max_examples=150, deadline=None)
@given(shapes(), st.booleans())
def test_signatures_are_valid_unique_deterministic_and_plural(
    shape: tuple[AgentSpec, OutputGroup], context: bool
) -> None:
    agent, group = shape
    one = build_signature(agent, group, shape_from_subscription(agent.subscriptions[0]), has_context=context)
    two = build_signature(agent, group, shape_from_subscription(agent.subscriptions[0]), has_context=context)
    names = [f.name for f in one.fields]
    assert names == [f.name for f in two.fields] and one.instructions == two.instructions
    assert len(names) == len(set(names))
    for f in one.fields:
        assert f.name.isidentifier() and not keyword.iskeyword(f.name) and f.name == f.name.lower()
    for f in one.outputs:
        assert f.plural == (f.count is not None)
        if f.plural:
            assert f.type_name is not None
            assert re.search(rf"{f.count[0] if f.count[0] == f.count[1] else 'between'}", f.description or "")
    counts = agent.subscriptions[0].counts
    for f in one.inputs:
        if f.type_name is not None:
            assert f.plural == (counts[f.type_name] > 1)
    assert ("context" in names) == context
    dsig = one.to_dspy()  # builds without warnings (warnings are errors in this suite)
    assert list(dsig.fields) == names
    assert one.instructions.startswith("Do it.") and one.instructions.endswith(".")


def test_inspecting_what_does_not_exist_says_what_to_do() -> None:
    agent = spec(Task, publishes=((Summary, None),))
    with pytest.raises(ConfigurationError, match="group=3 does not exist"):
        inspect_signature(agent, group=3)
    with pytest.raises(ConfigurationError, match="agent='name'"):
        inspect_signature(object())


def test_inspect_signature_names_the_agents_it_could_have_meant() -> None:
    from flock import UnknownAgentError

    flock = Flock()
    flock.agent("writer").consumes(Task).publishes(Summary)
    flock.agent("critic").consumes(Summary).publishes(Idea)
    with pytest.raises(UnknownAgentError) as unknown:
        inspect_signature(flock, agent="editor")
    assert str(unknown.value) == (
        "inspect_signature: no agent named 'editor'; declared agents: ['writer', 'critic']"
    )
    with pytest.raises(ConfigurationError) as unnamed:
        inspect_signature(flock)
    assert str(unnamed.value) == (
        "inspect_signature: this Flock has 2 agents; name one: inspect_signature(flock, agent='writer')"
    )
    assert inspect_signature(flock, agent="critic").agent == "critic"


def test_a_missing_signature_field_names_the_fields_there_are() -> None:
    flock = Flock()
    writer = flock.agent("writer").consumes(Task).publishes(Summary)
    fields = r"no field 'summaries' in this signature; its fields: \['task', 'summary'\]"
    with pytest.raises(KeyError, match=fields):
        inspect_signature(writer).field("summaries")
