"""The engine's spans: model calls, tool calls and re-asks, under the evaluation span."""

from __future__ import annotations

import json
from typing import Any

import dspy
import pytest
from dspy.lm15 import Message, Response, TextPart, Usage
from dspy.utils.callback import BaseCallback
from engine_support import Idea, Summary, Task
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import StatusCode

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
    assert tool.attributes["gen_ai.tool.call.id"].startswith("call_")
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
    assert "summary" in answered[0]["parts"][0]["content"]  # JSON with structured outputs


class ConstantLM(dspy.LM):
    """A ``dspy.LM`` whose in-process engine answers at once (no network), or raises ``error``."""

    # DSPy's own acall: the suite's guard replaces dspy.LM's, and the engine only skips DSPy's
    # callback wrapper on the method DSPy wraps.
    acall = dspy.BaseLM.acall

    def __init__(
        self, text: str, error: Exception | None = None, finish_reason: str = "stop", **kwargs: Any
    ) -> None:
        usage = Usage(input_tokens=100, output_tokens=20, total_tokens=120)
        answer = Response(
            id="c",
            model="const",
            message=Message.assistant([TextPart(text)]),
            finish_reason=finish_reason,  # type: ignore[arg-type]
            usage=usage,
        )

        def complete(request: Any) -> Response:
            if error is not None:
                raise error
            return answer

        class Engine:
            def complete(self, request: Any) -> Response:
                return complete(request)

            def stream(self, request: Any) -> Any:
                raise NotImplementedError

            def close(self) -> None:
                return None

        class AsyncEngine:
            async def complete(self, request: Any) -> Response:
                return complete(request)

            async def stream(self, request: Any) -> Any:
                raise NotImplementedError
                yield

            async def aclose(self) -> None:
                return None

        super().__init__(
            "const", engine=Engine(), async_engine=AsyncEngine(), cache=False, num_retries=0, **kwargs
        )


SUMMARY = '[[ ## summary ## ]]\n{"text": "bees"}\n\n[[ ## completed ## ]]\n'


class LMCalls(BaseCallback):
    def __init__(self) -> None:
        self.started: list[Any] = []

    def on_lm_start(self, call_id: str, instance: Any, inputs: dict[str, Any]) -> None:
        self.started.append(instance)


class ModuleCalls(BaseCallback):
    """Watches modules only: model calls need not go through DSPy's callback wrapper for it."""

    def __init__(self) -> None:
        self.started: list[Any] = []

    def on_module_start(self, call_id: str, instance: Any, inputs: dict[str, Any]) -> None:
        self.started.append(instance)


async def test_a_callback_that_ignores_model_calls_keeps_the_response_details(
    spans: InMemorySpanExporter,
) -> None:
    flock = Flock()
    flock.agent("a").consumes(Task).publishes(Summary).with_engines(DSPyEngine(ConstantLM(SUMMARY)))
    modules = ModuleCalls()
    with dspy.context(callbacks=[modules]):
        await flock.invoke("a", Task(text="bees"))
    assert modules.started  # it still saw the program run
    (chat,) = by_name(spans)["chat const"]
    assert chat.attributes["gen_ai.response.finish_reasons"] == ("stop",)


@pytest.mark.parametrize("listener", [False, True])
async def test_a_model_call_is_one_span_with_or_without_other_dspy_callbacks(
    spans: InMemorySpanExporter, listener: bool
) -> None:
    lm = ConstantLM(SUMMARY, temperature=0.5)
    flock = Flock()
    flock.agent("a").consumes(Task).publishes(Summary).with_engines(DSPyEngine(lm))
    calls = LMCalls()
    with dspy.context(callbacks=[calls] if listener else []):
        outputs = await flock.invoke("a", Task(text="bees"))
    assert [a.payload for a in outputs] == [{"text": "bees"}]
    found = by_name(spans)
    (chat,) = found["chat const"]
    assert chat.parent.span_id == found["flock.evaluate a"][0].context.span_id
    assert chat.attributes["gen_ai.provider.name"] == "flock"
    assert chat.attributes["gen_ai.request.temperature"] == 0.5
    assert chat.attributes["gen_ai.usage.input_tokens"] == 100
    assert chat.attributes["gen_ai.usage.output_tokens"] == 20
    assert "gen_ai.input.messages" not in chat.attributes
    assert len(calls.started) == (1 if listener else 0)
    if listener:  # DSPy's callbacks see only the outputs: no response details
        assert "gen_ai.response.finish_reasons" not in chat.attributes
    else:
        assert chat.attributes["gen_ai.response.finish_reasons"] == ("stop",)
        assert chat.attributes["gen_ai.response.model"] == "const"
        assert chat.attributes["gen_ai.response.id"] == "c"


async def test_a_truncated_answer_says_so_in_its_finish_reasons(
    spans: InMemorySpanExporter, caplog: pytest.LogCaptureFixture
) -> None:
    flock = Flock()
    flock.agent("a").consumes(Task).publishes(Summary).with_engines(
        DSPyEngine(ConstantLM(SUMMARY, finish_reason="length"))
    )
    await flock.invoke("a", Task(text="bees"))
    (chat,) = by_name(spans)["chat const"]
    assert chat.attributes["gen_ai.response.finish_reasons"] == ("length",)
    assert "truncated" in caplog.text  # DSPy's own warning still comes: its finalize step ran


async def test_a_failed_model_call_is_a_failed_span(spans: InMemorySpanExporter) -> None:
    flock = Flock()
    flock.agent("a").consumes(Task).publishes(Summary).with_engines(
        DSPyEngine(ConstantLM(SUMMARY, error=RuntimeError("the model is down")))
    )
    with pytest.raises(Exception, match="the model is down"):
        await flock.invoke("a", Task(text="bees"))
    (chat,) = by_name(spans)["chat const"]
    assert chat.status.status_code is StatusCode.ERROR
    assert chat.attributes["flock.error.kind"] == "model_error"


async def test_the_traced_model_keeps_the_callers_history_and_settings(
    spans: InMemorySpanExporter, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT", "true")
    lm = ConstantLM(SUMMARY)
    flock = Flock()
    flock.agent("a").consumes(Task).publishes(Summary).with_engines(DSPyEngine(lm, history=True))
    await flock.invoke("a", Task(text="bees"))
    lm.kwargs["temperature"] = 0.25  # changed between runs: the next call sees it
    lm.model = "other"
    await flock.invoke("a", Task(text="wasps"))
    assert len(lm.history) == 2 and lm.callbacks == []
    first, second = by_name(spans)["chat const"] + by_name(spans)["chat other"]
    assert "gen_ai.request.temperature" not in first.attributes
    assert second.attributes["gen_ai.request.temperature"] == 0.25
    assert "wasps" in json.loads(second.attributes["gen_ai.input.messages"])[-1]["parts"][0]["content"]
    assert "bees" in json.loads(second.attributes["gen_ai.output.messages"])[0]["parts"][0]["content"]


@pytest.mark.parametrize("given", ["class", "instance"])
async def test_two_step_extraction_calls_are_spans_too(spans: InMemorySpanExporter, given: str) -> None:
    main, extractor = TestModel(), TestModel()
    adapter = dspy.TwoStepAdapter if given == "class" else dspy.TwoStepAdapter(extractor)
    flock = Flock()
    flock.agent("a").consumes(Task).publishes(Summary).with_engines(DSPyEngine(main, adapter=adapter))
    await flock.invoke("a", Task(text="bees"))
    evaluate = by_name(spans)["flock.evaluate a"][0]
    chats = by_name(spans)["chat test"]
    assert len(chats) == 2  # the answer and the extraction, by the engine's model or the adapter's
    assert all(c.parent.span_id == evaluate.context.span_id for c in chats)
    assert len(main.calls) == (2 if given == "class" else 1)


class _Span:
    def __init__(self) -> None:
        self.attributes: dict[str, Any] = {}

    def set_attribute(self, key: str, value: Any) -> None:
        self.attributes[key] = value


@pytest.mark.parametrize("shape", ["dict", "object"])
def test_finish_reasons_of_a_raw_provider_response(shape: str) -> None:
    """The LiteLLM path hands DSPy an OpenAI-shaped response, as a dict or as an object."""
    from types import SimpleNamespace

    from flock._engine.engine_tracing import _describe_response

    choices = [{"finish_reason": "length"}, {"finish_reason": "stop"}, {"finish_reason": None}]
    raw: Any = {"id": "chatcmpl-1", "choices": choices}
    if shape == "object":
        raw = SimpleNamespace(id="chatcmpl-1", choices=[SimpleNamespace(**c) for c in choices])
    span = _Span()
    _describe_response(span, SimpleNamespace(responses=(), raw=raw, response_model="gpt-x"))
    assert span.attributes == {
        "gen_ai.response.finish_reasons": ["length", "stop"],
        "gen_ai.response.model": "gpt-x",
        "gen_ai.response.id": "chatcmpl-1",
    }


def test_a_response_without_details_adds_nothing() -> None:
    from types import SimpleNamespace

    from flock._engine.engine_tracing import _describe_response

    span = _Span()
    _describe_response(span, SimpleNamespace(responses=(), raw=None, response_model=None))
    assert span.attributes == {}
