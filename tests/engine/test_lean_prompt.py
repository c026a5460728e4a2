"""Lean prompts: no schema text the provider already enforces, and every ancestor in the context.

While a schema form of structured outputs is in force, the Chat and JSON adapters frame the answer as
the JSON object the schema makes it, without DSPy's per-field schema notes; prompt-only calls keep
the adapter's full text.
"""

from __future__ import annotations

import json
from typing import Any

import dspy
import pytest
from engine_support import Idea, Task, Topic
from openai_server import OpenAIServer
from pydantic import BaseModel, Field

from flock import DSPyEngine, Flock, flock_type
from flock.testing import FunctionModel, ModelCall, TestModel

pytestmark = pytest.mark.anyio

NOTE = "must adhere to the JSON schema"  # DSPy's note on a typed output field
ADAPTERS = {"chat": None, "json": dspy.JSONAdapter()}


@flock_type
class Critique(BaseModel):
    verdict: str
    score: int = Field(ge=1, le=10)


@flock_type
class Rebuttal(BaseModel):
    text: str


def _prompt(request: dict[str, Any]) -> str:
    return "\n".join(str(m["content"]) for m in request["messages"])


def _ideas_flock(server: OpenAIServer, adapter: Any, mode: str = "auto") -> Flock:
    flock = Flock()
    engine = DSPyEngine(
        "openai/local",
        adapter=adapter,
        structured_outputs=mode,
        lm_kwargs={"api_base": server.base_url, "api_key": "k"},
        retries=0,
    )
    flock.agent("ideas").consumes(Topic).publishes(Idea, fan_out=3).with_engines(engine)
    return flock


@pytest.mark.parametrize("adapter", list(ADAPTERS))
async def test_an_enforced_schema_is_not_repeated_in_the_prompt(server: OpenAIServer, adapter: str) -> None:
    flock = _ideas_flock(server, ADAPTERS[adapter])
    with dspy.context(callbacks=[server.recorder]):
        outputs = await flock.invoke("ideas", Topic(name="bees"), publish_outputs=False)
    assert len(outputs) == 3
    (request,) = server.requests
    assert request["response_format"]["type"] == "json_schema"
    prompt = _prompt(request)
    assert NOTE not in prompt and "maxLength" not in prompt and "valid Python" not in prompt
    # The answer is framed as what the schema makes it, a JSON object, under either adapter.
    assert "Respond with a JSON object in the following order of fields: `ideas`." in prompt
    assert "[[ ## completed ## ]]" not in prompt
    # What the schema does not carry stays: the output field, its type name, the count, the task.
    assert "`ideas` (list[Idea])" in prompt and "Generate exactly 3 ideas." in prompt
    assert "[[ ## topic ## ]]" in prompt and "bees" in prompt


@pytest.mark.parametrize("adapter", list(ADAPTERS))
async def test_without_an_enforced_schema_the_prompt_carries_it(server: OpenAIServer, adapter: str) -> None:
    off = _ideas_flock(server, ADAPTERS[adapter], mode="off")
    with dspy.context(callbacks=[server.recorder]):
        await off.invoke("ideas", Topic(name="bees"), publish_outputs=False)
    assert server.requests[0].get("response_format") is None
    prompt = _prompt(server.requests[0])
    assert NOTE in prompt and "maxLength" in prompt and "valid Python list[Idea]" in prompt
    assert ("[[ ## completed ## ]]" in prompt) == (adapter == "chat")  # the adapter's own framing


async def test_a_server_that_refuses_every_schema_form_gets_the_schema_in_the_prompt(
    server: OpenAIServer,
) -> None:
    server.refuse_formats = {"json_schema": 400, "json_object+schema": 422}
    flock = _ideas_flock(server, None)
    with dspy.context(callbacks=[server.recorder]):
        outputs = await flock.invoke("ideas", Topic(name="bees"), publish_outputs=False)
    assert len(outputs) == 3
    probes, answered = server.requests[:2], server.requests[2]
    assert [r["response_format"]["type"] for r in probes] == ["json_schema", "json_object"]
    assert all(NOTE not in _prompt(r) for r in probes)
    assert answered.get("response_format") is None
    prompt = _prompt(answered)
    assert NOTE in prompt and '"minItems": 3' not in prompt  # DSPy's note: the item schema
    assert '"maxLength": 60' in prompt and "valid Python list[Idea]" in prompt
    assert "[[ ## completed ## ]]" in prompt and "Respond with a JSON object" not in prompt


async def test_a_re_ask_under_an_enforced_schema_stays_lean(server: OpenAIServer) -> None:
    server.script(json.dumps({"ideas": [{"title": "only one", "score": 3}]}), None)
    flock = _ideas_flock(server, None)
    with dspy.context(callbacks=[server.recorder]):
        outputs = await flock.invoke("ideas", Topic(name="bees"), publish_outputs=False)
    assert len(outputs) == 3 and len(server.requests) == 2
    reask = _prompt(server.requests[1])
    assert "exactly 3" in reask and NOTE not in reask


async def test_an_adapter_with_its_own_framing_is_left_as_it_is() -> None:
    model = TestModel()
    flock = Flock()
    flock.agent("a").consumes(Task).publishes(Critique).with_engines(
        DSPyEngine(model, adapter=dspy.XMLAdapter())
    )
    (out,) = await flock.invoke("a", Task(text="bees"), publish_outputs=False)
    call = model.calls[0]
    assert call.schema is not None and 1 <= out.payload["score"] <= 10
    # XMLAdapter spells the output structure its own way; that stays, schema or not.
    assert "<critique><verdict>...</verdict><score>...</score></critique>" in call.prompt


async def test_every_ancestor_is_in_the_default_context_and_the_critic_prompt_is_lean() -> None:
    def critique(call: ModelCall) -> dict[str, Any]:  # one verdict per idea, so each is told apart
        return {"critique": Critique(verdict=f"On {call.inputs['idea'].title}", score=7)}

    critic, rebutter = FunctionModel(critique), TestModel()
    flock = Flock()  # the default context: the lineage of the inputs
    flock.agent("ideator").description("Brainstorm ideas for the topic.").consumes(Topic).publishes(
        Idea, fan_out=10
    ).with_engines(DSPyEngine(TestModel()))
    flock.agent("critic").description("Critique the idea.").consumes(Idea).publishes(Critique).with_engines(
        DSPyEngine(critic)
    )
    flock.agent("rebutter").consumes(Critique).publishes(Rebuttal).with_engines(DSPyEngine(rebutter))
    names = [f"topic {i}: urban beekeeping for schools" for i in range(3)]
    await flock.publish_many([Topic(name=n) for n in names])
    await flock.run_until_idle(raise_on_error=True)

    board = await flock.store.list()
    ideas, critiques, topics = (
        {a.id: a for a in board if a.type == t} for t in ("Idea", "Critique", "Topic")
    )
    assert len(critic.calls) == 30 and len(rebutter.calls) == 30
    for call in critic.calls:
        (idea,) = [i for i in ideas.values() if json.dumps(i.payload) in call.prompt]
        (topic,) = [t for t in topics.values() if t.payload["name"] in call.prompt]
        assert topic.id in idea.consumed_from  # the idea's own topic, no sibling topic
        assert sum(json.dumps(i.payload) in call.prompt for i in ideas.values()) == 1  # no sibling idea
        assert json.dumps({"Topic": topic.payload}) in call.prompt  # attributable: the type names it
        assert call.schema is not None and NOTE not in call.prompt
        assert sum(len(m["content"]) for m in call.messages) <= 1100
    for call in rebutter.calls:  # two generations up: the critique's idea and that idea's topic
        (critique,) = [c for c in critiques.values() if json.dumps(c.payload) in call.prompt]
        (parent,) = [ideas[p] for p in critique.consumed_from]
        (grandparent,) = [topics[p] for p in parent.consumed_from]
        assert json.dumps({"Idea": parent.payload}) in call.prompt
        assert json.dumps({"Topic": grandparent.payload}) in call.prompt


@pytest.mark.parametrize("mode", ["auto", "off"])
async def test_earlier_turns_are_shown_in_the_answer_format_the_call_asks_for(mode: str) -> None:
    model = TestModel()
    flock = Flock()
    engine = DSPyEngine(model, structured_outputs=mode)
    flock.agent("chat").consumes(Task).publishes(Rebuttal).with_history(turns=3).with_engines(engine)
    first = await flock.publish(Task(text="hello"))
    await flock.run_until_idle(raise_on_error=True)
    await flock.publish(Task(text="again"), correlation_id=first.correlation_id)
    await flock.run_until_idle(raise_on_error=True)
    (earlier,) = [m["content"] for m in model.calls[-1].messages if m["role"] == "assistant"]
    (answered, _) = [a.payload for a in await flock.store.list() if a.type == "Rebuttal"]
    if mode == "auto":  # the schema is in force: the earlier answer is the JSON object it was
        assert json.loads(earlier) == {"rebuttal": answered}
    else:  # prompt-only: the ChatAdapter's own markers
        assert earlier.startswith("[[ ## rebuttal ## ]]") and "[[ ## completed ## ]]" in earlier
        assert json.dumps(answered) in earlier
