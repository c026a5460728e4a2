"""End to end through Flock: publish, run, read the board."""

from __future__ import annotations

import logging
from typing import Any

import pytest
from engine_support import ADAPTERS, Analysis, Idea, Summary, Task, calls_per_answer, make_adapter
from openai_server import OpenAIServer

from flock import ContractViolation, DSPyEngine, Flock, WorkflowError
from flock.testing import FunctionModel, TestModel

pytestmark = pytest.mark.anyio


async def test_default_engine_runs_on_the_offline_model_and_announces_once(
    capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    flock = Flock()
    flock.agent("brainstorm").description("Pitch ideas.").consumes(Task).publishes(Idea, fan_out=3)
    flock.agent("summarise").consumes(Task).publishes(Summary)
    with caplog.at_level(logging.WARNING, logger="flock"):
        await flock.publish_many([Task(text="bees in the city"), Task(text="urban gardens")])
        await flock.run_until_idle(raise_on_error=True)
    ideas = await flock.store.get_by_type(Idea)
    assert len(ideas) == 6 and all(isinstance(i, Idea) for i in ideas)
    assert any("bees" in i.title for i in ideas)
    assert len(await flock.store.get_by_type(Summary)) == 2
    notices = [r for r in caplog.records if "offline" in r.getMessage()]
    assert len(notices) == 1
    assert capsys.readouterr().err.count("built-in 'offline' model") == 1


async def test_multi_output_artifacts_each_get_their_own_id() -> None:
    flock = Flock()
    flock.agent("a").consumes(Task).publishes(Summary, Analysis).with_engines(DSPyEngine(TestModel()))
    await flock.publish(Task(text="bees"))
    await flock.run_until_idle(raise_on_error=True)
    arts, total = await flock.store.query_artifacts()
    produced = [a for a in arts if a.produced_by == "a"]
    assert total == 3 and len({a.id for a in produced}) == 2
    assert sorted(a.type for a in produced) == ["Analysis", "Summary"]


async def test_contract_violation_publishes_nothing_and_is_recorded() -> None:
    wrong = FunctionModel(lambda call: {"ideas": [Idea(title="just one", score=2)]})
    flock = Flock()
    flock.agent("a").consumes(Task).publishes(Idea, fan_out=3).with_engines(DSPyEngine(wrong))
    await flock.publish(Task(text="bees"))
    summary = await flock.run_until_idle()
    assert await flock.store.get_by_type(Idea) == []
    errors = await flock.store.get_by_type(WorkflowError)
    assert len(errors) == 1 and errors[0].kind == "contract"
    assert "exactly 3 Idea, got 1" in errors[0].message
    assert len(wrong.calls) == 3  # the first answer and two re-asks (the default max_reasks)
    assert summary.errors


async def test_invoke_raises_the_typed_violation() -> None:
    flock = Flock()
    flock.agent("a").consumes(Task).publishes(Idea, fan_out=(2, 3)).with_engines(
        DSPyEngine(FunctionModel.script("garbage"), max_reasks=0)
    )
    with pytest.raises(ContractViolation) as info:
        await flock.invoke("a", Task(text="bees"))
    assert info.value.agent == "a" and info.value.type_name == "Idea"


async def test_tools_through_flock_on_the_offline_model() -> None:
    looked_up: list[str] = []

    async def lookup(query: str) -> str:
        """Look a topic up."""
        looked_up.append(query)
        return "bees like flowers"

    flock = Flock(model="offline")
    flock.agent("researcher").consumes(Task).publishes(Summary).with_tools([lookup])
    outputs = await flock.invoke("researcher", Task(text="bees"))
    assert len(looked_up) == 1 and [a.type for a in outputs] == ["Summary"]


async def test_count_gate_sends_every_collected_artifact() -> None:
    model = TestModel()
    flock = Flock()
    flock.agent("pair").consumes(Task, Task).publishes(Summary).with_engines(DSPyEngine(model))
    await flock.publish_many([Task(text="first task"), Task(text="second task")], correlation_id="c1")
    await flock.run_until_idle(raise_on_error=True)
    prompt = model.calls[0].prompt
    assert "[[ ## tasks ## ]]" in prompt and "first task" in prompt and "second task" in prompt


async def test_twenty_agents_call_the_model_concurrently() -> None:
    with OpenAIServer(latency=0.1) as server:
        flock = Flock()
        engine = DSPyEngine(
            "openai/test-model", lm_kwargs={"api_base": server.base_url, "api_key": "test-key"}
        )
        for i in range(20):
            flock.agent(f"agent{i}").consumes(Task).publishes(Summary).with_engines(engine)
        import dspy

        with dspy.context(callbacks=[server.recorder]):
            await flock.publish(Task(text="bees"))
            await flock.run_until_idle(raise_on_error=True)
    assert len(await flock.store.get_by_type(Summary)) == 20
    assert len(server.requests) == 20
    # Behaviour, not timing (the machine is shared): the server saw the calls overlap.
    assert server.max_in_flight >= 10, f"at most {server.max_in_flight} of 20 calls were in flight at once"


@pytest.mark.parametrize("adapter", ADAPTERS)
async def test_a_fan_out_pipeline_under_every_adapter(adapter: str) -> None:
    flock = Flock()
    engine = DSPyEngine(TestModel(), adapter=make_adapter(adapter))
    flock.agent("ideas").consumes(Task).publishes(Idea, fan_out=(2, 3)).with_engines(engine)
    flock.agent("summaries").consumes(Idea).publishes(Summary, Analysis).with_engines(engine)
    await flock.publish(Task(text="bees in the city"))
    summary = await flock.run_until_idle(raise_on_error=True)
    ideas = await flock.store.get_by_type(Idea)
    assert 2 <= len(ideas) <= 3
    summaries, analyses = await flock.store.get_by_type(Summary), await flock.store.get_by_type(Analysis)
    assert len(summaries) == len(analyses) == len(ideas)
    assert summary.metrics["model_calls"] == (1 + len(ideas)) * calls_per_answer(adapter)


async def test_tokens_of_a_failed_contract_are_counted_in_the_run_summary() -> None:
    calls: list[int] = []

    def always_malformed(call: Any) -> str:
        calls.append(call.index)
        return "this is not in the requested format"

    flock = Flock()
    flock.agent("w").consumes(Task).publishes(Summary).with_engines(
        DSPyEngine(FunctionModel(always_malformed), max_reasks=1)
    )
    await flock.publish(Task(text="bees"))
    summary = await flock.run_until_idle()
    assert [e.kind for e in summary.errors] == ["contract"]
    assert summary.metrics["model_calls"] == len(calls) == 2
    assert summary.metrics["input_tokens"] > 0
