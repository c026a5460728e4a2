"""Model calls of a real run: GenAI metrics through the global meter provider, latency in the summary."""

from __future__ import annotations

import dspy
import pytest
from metric_support import count, metric_points
from openai_server import OpenAIServer, Reply
from pydantic import BaseModel

from flock import DSPyEngine, Flock, flock_type

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def server():
    with OpenAIServer() as srv:
        yield srv


@flock_type
class Question(BaseModel):
    text: str


@flock_type
class Answer(BaseModel):
    text: str
    confidence: float


def _flock(server: OpenAIServer, model: str, **engine: object) -> Flock:
    flock = Flock(model, lm_kwargs={"api_base": server.base_url, "api_key": "k"})
    flock.agent("answerer").consumes(Question).publishes(Answer).with_engines(DSPyEngine(**engine))
    return flock


async def test_every_model_call_records_duration_and_tokens(server: OpenAIServer, metric_reader) -> None:
    flock = _flock(server, "openai/metrics-ok")
    with dspy.context(callbacks=[server.recorder]):
        await flock.publish_many([Question(text=f"q{i}") for i in range(3)])
        summary = await flock.run_until_idle()
    model = {"gen_ai.request.model": "metrics-ok", "gen_ai.provider.name": "openai"}
    assert count(metric_reader, "gen_ai.client.operation.duration", **model) == 3
    [point] = metric_points(metric_reader, "gen_ai.client.operation.duration", **model)
    assert "error.type" not in point.attributes and point.attributes["gen_ai.operation.name"] == "chat"
    prompt_tokens = sum(
        p.sum
        for p in metric_points(
            metric_reader, "gen_ai.client.token.usage", **model, **{"gen_ai.token.type": "input"}
        )
    )
    sent = sum(max(1, sum(len(m["content"]) for m in r["messages"]) // 4) for r in server.requests)
    assert prompt_tokens == sent  # the server's reported usage, per call
    assert count(metric_reader, "gen_ai.client.token.usage", **model, **{"gen_ai.token.type": "output"}) == 3
    # The run summary: per-model latency percentiles.
    latency = summary.latency["openai/metrics-ok"]
    assert latency.calls == 3 and 0 < latency.p50 <= latency.p90 <= latency.p99 <= latency.max
    assert "latency:   openai/metrics-ok p50=" in str(summary)


async def test_a_failed_call_is_recorded_with_its_error_type(server: OpenAIServer, metric_reader) -> None:
    server.always(Reply(400))
    flock = _flock(server, "openai/metrics-failing", retries=0)
    with dspy.context(callbacks=[server.recorder]):
        await flock.publish(Question(text="q"))
        summary = await flock.run_until_idle()
    assert len(summary.errors) == 1
    points = metric_points(
        metric_reader, "gen_ai.client.operation.duration", **{"gen_ai.request.model": "metrics-failing"}
    )
    assert len(points) == 1 and points[0].attributes.get("error.type")
    assert summary.latency["openai/metrics-failing"].calls == 1


async def test_reasks_are_counted(server: OpenAIServer, metric_reader) -> None:
    broken = '[[ ## answer ## ]]\n{"text": "no confidence"}\n\n[[ ## completed ## ]]'
    server.script(broken, None)
    flock = _flock(server, "openai/metrics-reask", max_reasks=1)
    with dspy.context(callbacks=[server.recorder]):
        await flock.publish(Question(text="q"))
        summary = await flock.run_until_idle()
    assert summary.ok
    reasks = metric_points(
        metric_reader, "flock.contract.reasks", **{"gen_ai.request.model": "metrics-reask"}
    )
    assert [(p.value, p.attributes["flock.agent"]) for p in reasks] == [(1, "answerer")]
    assert summary.latency["openai/metrics-reask"].calls == 2
