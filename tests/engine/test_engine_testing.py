"""flock.testing: scripted models and the guard against real provider calls."""

from __future__ import annotations

import socket

import pytest
from engine_support import Idea, Summary, Task, evaluate, spec
from openai_server import OpenAIServer

from flock import DSPyEngine
from flock.testing import FunctionModel, ModelCall, RealModelCallError, forbid_real_model_calls

pytestmark = pytest.mark.anyio


async def test_script_malformed_then_default_re_asks_once() -> None:
    model = FunctionModel.script("no markers at all", None)
    result = await evaluate(DSPyEngine(model), spec(Task, publishes=((Summary, None),)), Task(text="bees"))
    assert result.metrics == {
        "input_tokens": result.metrics["input_tokens"],
        "output_tokens": result.metrics["output_tokens"],
        "model_calls": 2.0,
        "reasks": 1.0,
    }
    assert "could not be parsed" in model.calls[1].prompt  # the errors went back to the model


async def test_scripted_wrong_count_is_reported_with_expected_and_actual() -> None:
    model = FunctionModel(lambda call: {"ideas": [Idea(title="one idea", score=1)] * 6})
    from flock import ContractViolation

    with pytest.raises(ContractViolation) as info:
        agent = spec(Task, publishes=((Idea, (2, 4)),))
        await evaluate(DSPyEngine(model, max_reasks=2), agent, Task(text="x"))
    assert (info.value.expected, info.value.actual) == ("between 2 and 4", "6")
    assert len(model.calls) == 3


async def test_scripted_tool_call() -> None:
    used: list[int] = []

    def add(a: int, b: int) -> int:
        """Add two numbers."""
        used.append(a + b)
        return a + b

    model = FunctionModel.script(
        {"next_thought": "add them", "next_tool_name": "add", "next_tool_args": {"a": 2, "b": 3}},
        {"next_thought": "done", "next_tool_name": "finish", "next_tool_args": {}},
        None,
    )
    result = await evaluate(
        DSPyEngine(model), spec(Task, publishes=((Summary, None),), tools=(add,)), Task(text="sum")
    )
    assert used == [5]
    assert result.trace["trajectory"]["observation_0"] == 5


async def test_scripted_rate_limit_is_retried() -> None:
    from dspy.lm15 import RateLimitError

    model = FunctionModel.script(RateLimitError("slow down", retry_after=0), None)
    model.num_retries = 2
    result = await evaluate(DSPyEngine(model), spec(Task, publishes=((Summary, None),)), Task(text="bees"))
    assert len(result.outputs) == 1 and len(model.calls) == 2


async def test_guard_refuses_a_real_provider() -> None:
    engine = DSPyEngine("openai/gpt-4o-mini", lm_kwargs={"api_key": "sk-not-real"})
    with pytest.raises(RealModelCallError), forbid_real_model_calls():
        await evaluate(engine, spec(Task, publishes=((Summary, None),)), Task(text="bees"))


def test_guard_refuses_public_network_and_allows_loopback() -> None:
    with pytest.raises(RealModelCallError), forbid_real_model_calls(), socket.socket() as sock:
        sock.connect(("203.0.113.9", 443))
    with forbid_real_model_calls(), socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(1)
        with socket.create_connection(sock.getsockname(), timeout=2):
            pass


async def test_guard_allows_a_local_server(server: OpenAIServer) -> None:
    with forbid_real_model_calls() as guard:
        answer = await server.lm().acall("hello")
    assert guard.refused == [] and len(answer) == 1 and len(server.requests) == 1


async def test_max_tool_calls_bounds_the_react_loop() -> None:
    used: list[str] = []

    def ping(text: str) -> str:
        """Echo the text."""
        used.append(text)
        return text

    def always_ping(call: ModelCall) -> object:
        if "next_tool_name" in call.output_fields:
            return {"next_thought": "again", "next_tool_name": "ping", "next_tool_args": {"text": "hi"}}
        return call.default()

    engine = DSPyEngine(FunctionModel(always_ping), max_tool_calls=3)
    result = await evaluate(engine, spec(Task, publishes=((Summary, None),), tools=(ping,)), Task(text="x"))
    assert used == ["hi", "hi", "hi"]
    assert len(result.outputs) == 1 and result.metrics["model_calls"] == 4  # 3 steps + the extraction
