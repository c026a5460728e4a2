"""The engine's spans: model calls, tool calls and re-asks, under the evaluation span."""

from __future__ import annotations

import json
from typing import Any

import pytest
from engine_support import Idea, Summary, Task
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from flock import DSPyEngine, Flock
from flock.testing import FunctionModel, TestModel

pytestmark = pytest.mark.anyio


def by_name(spans: InMemorySpanExporter) -> dict[str, list[Any]]:
    found: dict[str, list[Any]] = {}
    for span in spans.get_finished_spans():
        found.setdefault(span.name, []).append(span)
    return found


async def test_model_and_tool_calls_are_spans_under_the_evaluation(spans: InMemorySpanExporter) -> None:
    def lookup(query: str) -> str:
        """Look a topic up."""
        return "bees like flowers"

    flock = Flock()
    flock.agent("a").consumes(Task).publishes(Summary).with_tools([lookup]).with_engines(
        DSPyEngine(TestModel())
    )
    await flock.invoke("a", Task(text="bees"))
    found = by_name(spans)
    evaluate = found["flock.evaluate a"][0]
    chats = found["chat test"]
    assert len(chats) == 3  # two ReAct steps and the extraction
    for chat in chats:
        assert chat.parent.span_id == evaluate.context.span_id
        assert chat.attributes["gen_ai.operation.name"] == "chat"
        assert chat.attributes["gen_ai.provider.name"] == "flock"
        assert chat.attributes["gen_ai.usage.input_tokens"] > 0
        assert "gen_ai.input.messages" not in chat.attributes  # content is opt-in
    tool = found["execute_tool lookup"][0]
    assert tool.attributes["gen_ai.tool.name"] == "lookup"
    assert tool.parent.span_id == evaluate.context.span_id


async def test_a_reask_is_a_span_with_its_errors_and_its_model_call(spans: InMemorySpanExporter) -> None:
    model = FunctionModel.script({"ideas": [Idea(title="only one", score=1)]}, None)
    flock = Flock()
    flock.agent("a").consumes(Task).publishes(Idea, fan_out=2).with_engines(DSPyEngine(model))
    await flock.invoke("a", Task(text="bees"))
    found = by_name(spans)
    reask = found["flock.reask"][0]
    assert reask.attributes["flock.reask.attempt"] == 1
    assert "exactly 2 Idea, got 1" in reask.attributes["flock.reask.errors"][0]
    parents = [c.parent.span_id for c in found["chat function"]]
    assert parents.count(reask.context.span_id) == 1


async def test_content_is_recorded_only_when_asked(
    spans: InMemorySpanExporter, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT", "true")
    flock = Flock()
    flock.agent("a").consumes(Task).publishes(Summary).with_engines(DSPyEngine(TestModel()))
    await flock.invoke("a", Task(text="bees in the city"))
    chat = by_name(spans)["chat test"][0]
    sent = json.loads(chat.attributes["gen_ai.input.messages"])
    answered = json.loads(chat.attributes["gen_ai.output.messages"])
    assert "bees in the city" in sent[-1]["parts"][0]["content"]
    assert "[[ ## summary ## ]]" in answered[0]["parts"][0]["content"]
