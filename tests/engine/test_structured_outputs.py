"""Structured outputs: the output group's JSON schema as response_format, in the form the server takes."""

from __future__ import annotations

import json
from typing import Any

import dspy
import pytest
from engine_support import Idea, Task, Topic
from openai_server import OpenAIServer, Reply
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from pydantic import BaseModel, Field

from flock import ConfigurationError, ContractViolation, DSPyEngine, Flock, flock_type
from flock._engine.structured import StructuredOutputsRefused
from flock.testing import FunctionModel, TestModel

pytestmark = pytest.mark.anyio


@flock_type
class Verdict(BaseModel):
    label: str
    score: float = Field(ge=0, le=1)


@flock_type
class Note(BaseModel):
    text: str


ADAPTERS = {"chat": None, "json": dspy.JSONAdapter()}


def _flock(server: OpenAIServer, adapter: Any = None, mode: str = "auto", **kwargs: Any) -> Flock:
    flock = Flock()
    engine = DSPyEngine(
        "openai/local",
        adapter=adapter,
        structured_outputs=mode,
        lm_kwargs={"api_base": server.base_url, "api_key": "k"},
        **kwargs,
    )
    flock.agent("ideas").consumes(Topic).publishes(Idea, fan_out=3).with_engines(engine)
    flock.agent("judge").consumes(Task).publishes(Note).publishes(Verdict).with_engines(engine)
    return flock


def _formats(server: OpenAIServer) -> list[Any]:
    return [r.get("response_format") for r in server.requests]


@pytest.mark.parametrize("adapter", list(ADAPTERS))
async def test_the_output_schema_is_sent_and_the_answer_used(server: OpenAIServer, adapter: str) -> None:
    flock = _flock(server, ADAPTERS[adapter])
    with dspy.context(callbacks=[server.recorder]):
        outputs = await flock.invoke("ideas", Topic(name="bees"), publish_outputs=False)
    assert [a.type for a in outputs] == ["Idea"] * 3
    (fmt,) = _formats(server)
    assert fmt["type"] == "json_schema" and fmt["json_schema"]["strict"] is True
    schema = fmt["json_schema"]["schema"]
    assert list(schema["properties"]) == ["ideas"] and schema["required"] == ["ideas"]
    ideas = schema["properties"]["ideas"]
    assert (ideas["type"], ideas["minItems"], ideas["maxItems"]) == ("array", 3, 3)
    item = ideas["items"]["properties"]
    assert (item["score"]["minimum"], item["score"]["maximum"]) == (1, 5)
    assert (item["title"]["minLength"], item["title"]["maxLength"]) == (3, 60)
    assert "title" not in ideas["items"] or isinstance(ideas["items"].get("title"), dict)
    answer = server.requests[0]["messages"]  # the prompt itself carries no schema text of ours
    assert "minItems" not in json.dumps(answer)


async def test_one_property_per_output_field_of_the_group(server: OpenAIServer) -> None:
    flock = _flock(server)
    with dspy.context(callbacks=[server.recorder]):
        outputs = await flock.invoke("judge", Task(text="review the hive"), publish_outputs=False)
    assert sorted(a.type for a in outputs) == ["Note", "Verdict"]
    schemas = [f["json_schema"]["schema"] for f in _formats(server)]
    assert [list(s["properties"]) for s in schemas] == [["note"], ["verdict"]]
    verdict = schemas[1]["properties"]["verdict"]["properties"]["score"]
    assert (verdict["minimum"], verdict["maximum"]) == (0, 1)


@pytest.mark.parametrize("status", [422, 500])  # llama-cpp-python's server answers 500 (a validation message)
async def test_a_refused_json_schema_falls_back_to_the_llama_cpp_form_and_is_remembered(
    server: OpenAIServer, spans: InMemorySpanExporter, status: int
) -> None:
    server.refuse_formats = {"json_schema": status}
    flock = _flock(server, retries=0)
    with dspy.context(callbacks=[server.recorder]):
        await flock.invoke("ideas", Topic(name="bees"), publish_outputs=False)
        await flock.invoke("ideas", Topic(name="ants"), publish_outputs=False)
    kinds = [f["type"] for f in _formats(server)]
    assert kinds == ["json_schema", "json_object", "json_object"]  # the refusal costs one request, once
    assert server.requests[1]["response_format"]["schema"]["properties"]["ideas"]["minItems"] == 3
    evaluate = [s for s in spans.get_finished_spans() if s.name == "flock.evaluate ideas"]
    assert [s.attributes["flock.structured_outputs"] for s in evaluate] == ["json_object", "json_object"]
    # A second Flock in the same process learns on its own: the memory is per Flock.
    other = _flock(server, retries=0)
    with dspy.context(callbacks=[server.recorder]):
        await other.invoke("ideas", Topic(name="wasps"), publish_outputs=False)
    assert [f["type"] for f in _formats(server)][3:] == ["json_schema", "json_object"]


async def test_a_refusal_with_a_500_is_not_retried_as_an_outage(server: OpenAIServer) -> None:
    server.refuse_formats = {"json_schema": 500}
    flock = _flock(server)  # the default retries: a 500 that is an outage would be tried again
    with dspy.context(callbacks=[server.recorder]):
        await flock.invoke("ideas", Topic(name="bees"), publish_outputs=False)
    assert [f["type"] for f in _formats(server)] == ["json_schema", "json_object"]
    usage = flock.settings.take_usage()
    assert usage and all(record.retries == 0 for record in usage.values())


async def test_both_schema_forms_refused_means_prompt_only(server: OpenAIServer) -> None:
    server.refuse_formats = {"json_schema": 400, "json_object+schema": 422}
    flock = _flock(server)
    with dspy.context(callbacks=[server.recorder]):
        first = await flock.invoke("ideas", Topic(name="bees"), publish_outputs=False)
        await flock.invoke("ideas", Topic(name="ants"), publish_outputs=False)
    assert len(first) == 3
    assert _formats(server) == [
        server.requests[0]["response_format"],
        server.requests[1]["response_format"],
        None,
        None,
    ]


async def test_json_schema_mode_insists_and_says_so(server: OpenAIServer) -> None:
    server.refuse_formats = {"json_schema": 422, "json_object+schema": 422}
    flock = _flock(server, mode="json_schema")
    with dspy.context(callbacks=[server.recorder]), pytest.raises(StructuredOutputsRefused, match="'auto'"):
        await flock.invoke("ideas", Topic(name="bees"), publish_outputs=False)
    assert len(server.requests) == 2


async def test_off_sends_no_schema(server: OpenAIServer) -> None:
    flock = _flock(server, mode="off")
    with dspy.context(callbacks=[server.recorder]):
        assert len(await flock.invoke("ideas", Topic(name="bees"), publish_outputs=False)) == 3
    assert _formats(server) == [None]


async def test_other_client_errors_are_not_mistaken_for_a_refusal(server: OpenAIServer) -> None:
    server.always(Reply(400))
    flock = _flock(server, max_reasks=0)
    with dspy.context(callbacks=[server.recorder]), pytest.raises(Exception, match=r"local|400"):
        await flock.invoke("ideas", Topic(name="bees"), publish_outputs=False)
    assert len(server.requests) == 1


async def test_constraints_the_grammar_missed_are_re_asked(server: OpenAIServer) -> None:
    out_of_range = json.dumps({"verdict": {"label": "good", "score": 1.5}})
    server.script(None, out_of_range)  # the Note first, then a Verdict whose score breaks ge/le
    flock = _flock(server)
    with dspy.context(callbacks=[server.recorder]):
        outputs = await flock.invoke("judge", Task(text="rate it"), publish_outputs=False)
    verdict = next(a for a in outputs if a.type == "Verdict")
    assert 0 <= verdict.payload["score"] <= 1
    assert len(server.requests) == 3
    reask = server.requests[2]
    assert reask["response_format"]["json_schema"]["schema"]["properties"]["verdict"]
    prompt = reask["messages"][-1]["content"]
    assert "1.5" in prompt and "less than or equal to 1" in prompt


async def test_two_step_and_react_send_no_schema(server: OpenAIServer) -> None:
    flock = Flock()
    engine = DSPyEngine(
        "openai/local", adapter=dspy.TwoStepAdapter, lm_kwargs={"api_base": server.base_url, "api_key": "k"}
    )
    flock.agent("a").consumes(Topic).publishes(Note).with_engines(engine)
    with dspy.context(callbacks=[server.recorder]):
        await flock.invoke("a", Topic(name="bees"), publish_outputs=False)
    assert _formats(server) == [None, None]


async def test_chain_of_thought_schema_leads_with_reasoning() -> None:
    model = TestModel()
    flock = Flock()
    flock.agent("a").consumes(Topic).publishes(Idea, fan_out=2).with_engines(
        DSPyEngine(model, program="chain_of_thought")
    )
    outputs = await flock.invoke("a", Topic(name="bees"), publish_outputs=False)
    assert len(outputs) == 2
    schema = model.calls[0].schema
    assert schema is not None and list(schema["properties"]) == ["reasoning", "ideas"]


async def test_the_offline_model_answers_from_the_schema() -> None:
    model = TestModel()
    flock = Flock()
    flock.agent("a").consumes(Task).publishes(Verdict).with_engines(DSPyEngine(model))
    (out,) = await flock.invoke("a", Task(text="bees"), publish_outputs=False)
    call = model.calls[0]
    assert call.schema is not None
    answer = json.loads(call.default())
    assert set(answer) == {"verdict"} and 0 <= answer["verdict"]["score"] <= 1
    assert out.payload == answer["verdict"]


async def test_scripted_models_still_answer_in_the_adapter_format() -> None:
    model = FunctionModel(lambda call: {"note": Note(text="plain")})
    flock = Flock()
    flock.agent("a").consumes(Task).publishes(Note).with_engines(DSPyEngine(model, structured_outputs="off"))
    (out,) = await flock.invoke("a", Task(text="bees"), publish_outputs=False)
    assert out.payload == {"text": "plain"} and model.calls[0].schema is None
    assert "[[ ## note ## ]]" in model.calls[0].default()


def test_a_bad_mode_fails_at_construction() -> None:
    with pytest.raises(ConfigurationError, match="structured_outputs"):
        DSPyEngine(structured_outputs="grammar")


async def test_a_contract_violation_still_names_the_problem(server: OpenAIServer) -> None:
    server.always(json.dumps({"ideas": [{"title": "only one", "score": 3}]}))
    flock = _flock(server, max_reasks=0)
    with dspy.context(callbacks=[server.recorder]), pytest.raises(ContractViolation, match="exactly 3"):
        await flock.invoke("ideas", Topic(name="bees"), publish_outputs=False)


async def test_the_llama_cpp_form_spells_small_ranges_as_enums(server: OpenAIServer) -> None:
    # llama.cpp's grammar ignores minimum/maximum on numbers; an enum it does enforce.
    server.refuse_formats = {"json_schema": 422}
    flock = _flock(server, retries=0)
    with dspy.context(callbacks=[server.recorder]):
        outputs = await flock.invoke("judge", Task(text="rate it"), publish_outputs=False)
    verdict = next(a for a in outputs if a.type == "Verdict")
    sent = server.requests[-1]["response_format"]["schema"]["properties"]["verdict"]["properties"]["score"]
    assert "minimum" not in sent and sent["enum"][:3] == [0, 0.01, 0.02] and sent["enum"][-1] == 1
    assert len(sent["enum"]) == 101 and verdict.payload["score"] in sent["enum"]
    with dspy.context(callbacks=[server.recorder]):
        await flock.invoke("ideas", Topic(name="bees"), publish_outputs=False)
    idea = server.requests[-1]["response_format"]["schema"]["properties"]["ideas"]["items"]["properties"]
    assert idea["score"]["enum"] == [1, 2, 3, 4, 5]
    assert idea["title"]["maxLength"] == 60  # other constraints travel as they are
