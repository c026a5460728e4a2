"""The engine through a real OpenAI-compatible HTTP server on 127.0.0.1, under every adapter."""

from __future__ import annotations

from typing import Any

import dspy
import pytest
from engine_support import (
    ADAPTERS,
    Analysis,
    Idea,
    Summary,
    Task,
    Topic,
    calls_per_answer,
    evaluate,
    make_adapter,
    spec,
)
from openai_server import OpenAIServer, Reply

from flock import ContractViolation, DSPyEngine, ProviderUnavailable

pytestmark = [pytest.mark.anyio, pytest.mark.parametrize("adapter", ADAPTERS)]


def engine(server: OpenAIServer, adapter: str, **kwargs: Any) -> DSPyEngine:
    kwargs.setdefault("retries", 0)
    return DSPyEngine(
        "openai/test-model",
        adapter=make_adapter(adapter),
        lm_kwargs={"api_base": server.base_url, "api_key": "test-key"},
        **kwargs,
    )


async def test_single(server: OpenAIServer, adapter: str) -> None:
    result = await evaluate(
        engine(server, adapter),
        spec(Task, publishes=((Summary, None),)),
        Task(text="bees"),
        recorder=server.recorder,
    )
    assert [type(o) for o in result.outputs] == [Summary]
    assert "bees" in result.outputs[0].text
    assert result.metrics["model_calls"] == calls_per_answer(adapter) == len(server.requests)
    assert result.metrics["input_tokens"] > 0 and result.metrics["output_tokens"] > 0


async def test_multi_input(server: OpenAIServer, adapter: str) -> None:
    agent = spec(Task, Topic, publishes=((Summary, None),))
    result = await evaluate(
        engine(server, adapter), agent, Task(text="bees"), Topic(name="cities"), recorder=server.recorder
    )
    assert [type(o) for o in result.outputs] == [Summary]
    sent = str(server.requests[0]["messages"])
    assert "bees" in sent and "cities" in sent


async def test_multi_output(server: OpenAIServer, adapter: str) -> None:
    agent = spec(Task, publishes=((Summary, None), (Analysis, None)))
    result = await evaluate(engine(server, adapter), agent, Task(text="bees"), recorder=server.recorder)
    assert sorted(type(o).__name__ for o in result.outputs) == ["Analysis", "Summary"]
    analysis = next(o for o in result.outputs if isinstance(o, Analysis))
    assert 0 <= analysis.confidence <= 1 and analysis.points


async def test_fan_out_exact(server: OpenAIServer, adapter: str) -> None:
    result = await evaluate(
        engine(server, adapter),
        spec(Task, publishes=((Idea, (5, 5)),)),
        Task(text="bees"),
        recorder=server.recorder,
    )
    assert len(result.outputs) == 5 and all(isinstance(o, Idea) for o in result.outputs)
    assert len({id(o) for o in result.outputs}) == 5


async def test_fan_out_range(server: OpenAIServer, adapter: str) -> None:
    result = await evaluate(
        engine(server, adapter),
        spec(Task, publishes=((Idea, (2, 4)),)),
        Task(text="bees"),
        recorder=server.recorder,
    )
    assert 2 <= len(result.outputs) <= 4


async def test_react_with_a_tool(server: OpenAIServer, adapter: str) -> None:
    seen: list[str] = []

    def lookup(query: str) -> str:
        """Look a topic up."""
        seen.append(query)
        return f"facts about {query}"

    server.tools = (dspy.Tool(lookup),)
    agent = spec(Task, publishes=((Summary, None),), tools=(lookup,))
    result = await evaluate(engine(server, adapter), agent, Task(text="bees"), recorder=server.recorder)
    assert len(seen) == 1
    assert result.trace["program"] == "react"
    assert any("facts about" in str(v) for v in result.trace["trajectory"].values())
    assert "facts about" not in result.outputs[0].model_dump_json()  # trajectory stays out of outputs


async def test_reask_that_succeeds(server: OpenAIServer, adapter: str) -> None:
    def three_ideas(call: Any) -> Any:
        if "ideas" not in call.output_fields:  # TwoStep's extraction reads the first answer back
            return None
        return {"ideas": [Idea(title="only one idea", score=3)] * 3}

    server.script(three_ideas)
    result = await evaluate(
        engine(server, adapter),
        spec(Task, publishes=((Idea, (5, 5)),)),
        Task(text="bees"),
        recorder=server.recorder,
    )
    assert len(result.outputs) == 5
    assert result.metrics["reasks"] == 1
    assert "exactly 5 Idea, got 3" in result.trace["attempts"][0][0]
    assert "exactly 5 Idea, got 3" in str(server.requests[-calls_per_answer(adapter)]["messages"])


async def test_reask_that_fails(server: OpenAIServer, adapter: str) -> None:
    server.always(Reply(text=None))
    server.script(
        *[
            lambda call: (
                {"ideas": [Idea(title="one idea", score=3)]} if "ideas" in call.output_fields else None
            )
        ]
        * 4
    )
    with pytest.raises(ContractViolation) as info:
        await evaluate(
            engine(server, adapter, max_reasks=1),
            spec(Task, publishes=((Idea, (2, 4)),)),
            Task(text="bees"),
            recorder=server.recorder,
        )
    err = info.value
    assert (err.agent, err.group, err.type_name, err.expected, err.actual) == (
        "agent",
        0,
        "Idea",
        "between 2 and 4",
        "1",
    )
    assert len(server.requests) == 2 * calls_per_answer(adapter)


async def test_malformed_output(server: OpenAIServer, adapter: str) -> None:
    server.always("this is not what was asked for")
    with pytest.raises(ContractViolation) as info:
        await evaluate(
            engine(server, adapter, max_reasks=2),
            spec(Task, publishes=((Summary, None),)),
            Task(text="bees"),
            recorder=server.recorder,
        )
    assert "could not be parsed" in info.value.errors[0]
    assert info.value.actual == "unparseable"
    # Three attempts (the answer, two re-asks); no hidden JSON retries, not even in TwoStep's extraction.
    assert len(server.requests) == 3 * calls_per_answer(adapter)


async def test_malformed_then_valid(server: OpenAIServer, adapter: str) -> None:
    server.script(*["garbage"] * calls_per_answer(adapter))
    result = await evaluate(
        engine(server, adapter),
        spec(Task, publishes=((Summary, None),)),
        Task(text="bees"),
        recorder=server.recorder,
    )
    assert [type(o) for o in result.outputs] == [Summary]
    assert result.metrics["reasks"] == (1 if adapter != "two_step" else result.metrics["reasks"])


async def test_429_then_success(server: OpenAIServer, adapter: str) -> None:
    server.script(Reply(429, headers={"Retry-After": "0"}), Reply(429, headers={"Retry-After": "0"}))
    result = await evaluate(
        engine(server, adapter, retries=3),
        spec(Task, publishes=((Summary, None),)),
        Task(text="bees"),
        recorder=server.recorder,
    )
    assert [type(o) for o in result.outputs] == [Summary]
    assert len(server.requests) == 2 + calls_per_answer(adapter)


async def test_persistent_500(server: OpenAIServer, adapter: str) -> None:
    server.always(Reply(500, headers={"Retry-After": "0"}))
    with pytest.raises(ProviderUnavailable, match="HTTP 500"):
        await evaluate(
            engine(server, adapter, retries=2),
            spec(Task, publishes=((Summary, None),)),
            Task(text="bees"),
            recorder=server.recorder,
        )
    assert len(server.requests) == 3  # one call plus two retries, then the error surfaces
