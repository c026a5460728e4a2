"""Model resolution, retries and configuration of the engine."""

from __future__ import annotations

import dspy
import pytest
from engine_support import Summary, Task, evaluate, spec
from openai_server import OpenAIServer, Reply

from flock import ChatAdapter, ConfigurationError, DSPyEngine, Flock, ProviderError, ProviderTimeout
from flock._engine.offline import OfflineLM
from flock.testing import FunctionModel, TestModel

pytestmark = pytest.mark.anyio


def test_model_resolution_prefers_the_engine_then_the_flock_then_offline() -> None:
    engine = DSPyEngine()
    assert isinstance(engine.lm_for(None), OfflineLM)
    assert isinstance(engine.lm_for("offline"), OfflineLM)
    real = engine.lm_for("openai/gpt-4o-mini")
    # The engine owns retries (typed errors, breaker, fallbacks): DSPy itself makes one attempt.
    assert real.model == "openai/gpt-4o-mini" and real.cache is False and real.num_retries == 0
    assert engine.lm_for("openai/gpt-4o-mini") is real  # one LM per model name and engine
    own = DSPyEngine("openai/gpt-4.1", cache=True, retries=5, temperature=0.2)
    lm = own.lm_for("offline")
    assert (lm.model, lm.cache, lm.num_retries, lm.kwargs["temperature"]) == ("openai/gpt-4.1", True, 0, 0.2)
    assert own.retries == 5


@pytest.mark.parametrize(
    "kwargs", [{"program": "tree_of_thought"}, {"max_reasks": -1}, {"retries": 1.5}, {"model": 42}]
)
def test_bad_configuration_fails_at_construction(kwargs: dict[str, object]) -> None:
    with pytest.raises(ConfigurationError):
        DSPyEngine(**kwargs)  # type: ignore[arg-type]


async def test_engine_inherits_the_flocks_model(server: OpenAIServer) -> None:
    flock = Flock(model="openai/served-model")
    engine = DSPyEngine(lm_kwargs={"api_base": server.base_url, "api_key": "test-key"})
    flock.agent("a").consumes(Task).publishes(Summary).with_engines(engine)
    with dspy.context(callbacks=[server.recorder]):
        outputs = await flock.invoke("a", Task(text="bees"))
    assert [a.type for a in outputs] == ["Summary"]
    assert server.requests[0]["model"] == "served-model"


async def test_retry_after_is_honoured(server: OpenAIServer) -> None:
    server.script(Reply(429, headers={"Retry-After": "1"}))
    engine = DSPyEngine("openai/m", retries=2, lm_kwargs={"api_base": server.base_url, "api_key": "k"})
    agent = spec(Task, publishes=((Summary, None),))
    await evaluate(engine, agent, Task(text="bees"), recorder=server.recorder)
    assert len(server.arrivals) == 2
    assert server.arrivals[1] - server.arrivals[0] >= 0.9


async def test_timeouts_are_retried() -> None:
    with OpenAIServer(latency=0.4) as slow:
        lm_kwargs = {"api_base": slow.base_url, "api_key": "k", "timeout": 0.1}
        engine = DSPyEngine("openai/m", retries=1, lm_kwargs=lm_kwargs)
        with pytest.raises(ProviderTimeout, match="timed out"):
            await evaluate(
                engine, spec(Task, publishes=((Summary, None),)), Task(text="bees"), recorder=slow.recorder
            )
    assert len(slow.requests) == 2  # the call and one retry


async def test_client_errors_are_not_retried(server: OpenAIServer) -> None:
    server.always(Reply(400))
    engine = DSPyEngine("openai/m", retries=3, lm_kwargs={"api_base": server.base_url, "api_key": "k"})
    with pytest.raises(ProviderError, match="HTTP 400"):
        await evaluate(
            engine, spec(Task, publishes=((Summary, None),)), Task(text="bees"), recorder=server.recorder
        )
    assert len(server.requests) == 1


async def test_a_chat_adapter_instance_never_falls_back_silently() -> None:
    model = FunctionModel(lambda call: "not the format")
    engine = DSPyEngine(model, adapter=ChatAdapter(), max_reasks=1)
    with pytest.raises(Exception, match="could not be parsed"):
        await evaluate(engine, spec(Task, publishes=((Summary, None),)), Task(text="bees"))
    assert len(model.calls) == 2  # the answer and the re-ask; no hidden JSON retries

    opted_in = FunctionModel(lambda call: "not the format")
    engine = DSPyEngine(opted_in, adapter=ChatAdapter(), adapter_fallback=True, max_reasks=0)
    with pytest.raises(Exception, match="could not be parsed"):
        await evaluate(engine, spec(Task, publishes=((Summary, None),)), Task(text="bees"))
    assert len(opted_in.calls) == 2  # ChatAdapter, then DSPy's JSON fallback


async def test_an_agent_without_outputs_does_not_call_the_model() -> None:
    from flock._core.components import Context, EvalInputs
    from flock._core.spec import AgentSpec, OutputGroup

    model = FunctionModel(lambda call: "never")
    agent = AgentSpec("quiet")
    ctx = Context(agent="quiet", identity=agent.identity, correlation_id="c")
    result = await DSPyEngine(model).evaluate(agent, ctx, EvalInputs([]), OutputGroup(0, ()))
    assert result.outputs == [] and model.calls == []


async def test_chain_of_thought_keeps_reasoning_out_of_artifacts() -> None:
    flock = Flock()
    flock.agent("a").consumes(Task).publishes(Summary).with_engines(DSPyEngine(program="chain_of_thought"))
    outputs = await flock.invoke("a", Task(text="bees"))
    assert list(outputs[0].payload) == ["text"]


@pytest.mark.parametrize(("cache", "requests"), [(False, 2), (True, 1)])
async def test_dspy_cache_is_opt_in(server: OpenAIServer, cache: bool, requests: int) -> None:
    lm_kwargs = {"api_base": server.base_url, "api_key": "k"}
    engine = DSPyEngine(f"openai/cache-{cache}", cache=cache, lm_kwargs=lm_kwargs)
    agent = spec(Task, publishes=((Summary, None),))
    for _ in range(2):
        await evaluate(engine, agent, Task(text="the same input"), recorder=server.recorder)
    assert len(server.requests) == requests


async def test_inputs_without_a_fired_subscription_or_validated_models() -> None:
    from flock._core.artifact import Artifact
    from flock._core.components import Context, EvalInputs

    model = TestModel()
    agent = spec(Task, publishes=((Summary, None),))
    arts = [Artifact(type="Task", payload={"text": text}) for text in ("first", "second")]
    ctx = Context(agent="agent", identity=agent.identity, correlation_id="c")  # no subscription index
    result = await DSPyEngine(model).evaluate(agent, ctx, EvalInputs(arts), agent.output_groups[0])
    assert [type(o) for o in result.outputs] == [Summary]
    assert "[[ ## tasks ## ]]" in model.calls[0].prompt  # two inputs of one type: a plural field


@pytest.mark.parametrize(("fallback", "calls"), [(False, 2), (True, 3)])
async def test_a_two_step_instance_extracts_without_hidden_retries(fallback: bool, calls: int) -> None:
    model = FunctionModel(lambda call: "nothing to extract here")
    engine = DSPyEngine(model, adapter=dspy.TwoStepAdapter(model), adapter_fallback=fallback, max_reasks=0)
    with pytest.raises(Exception, match="could not be parsed"):
        await evaluate(engine, spec(Task, publishes=((Summary, None),)), Task(text="bees"))
    assert len(model.calls) == calls  # answer + extraction (+ DSPy's JSON retry only when opted in)


async def test_engines_inherit_the_flocks_lm_kwargs(server: OpenAIServer) -> None:
    flock = Flock("openai/served-model", lm_kwargs={"api_base": server.base_url, "api_key": "flock-key"})
    inherits = DSPyEngine()
    overrides = DSPyEngine(lm_kwargs={"api_key": "own-key"})
    flock.agent("a").consumes(Task).publishes(Summary).with_engines(inherits)
    flock.agent("b").consumes(Task).publishes(Summary).with_engines(overrides)
    with dspy.context(callbacks=[server.recorder]):
        await flock.publish(Task(text="bees"))
        summary = await flock.run_until_idle()
    assert summary.ok and len(server.requests) == 2  # both reached the Flock's api_base
    assert inherits.lm_for(flock.model, flock.settings.lm_kwargs).kwargs["api_key"] == "flock-key"
    assert overrides.lm_for(flock.model, flock.settings.lm_kwargs).kwargs["api_key"] == "own-key"
    other = Flock("openai/served-model", lm_kwargs={"api_base": "http://127.0.0.1:9/v1"})
    assert inherits.lm_for(other.model, other.settings.lm_kwargs).kwargs["api_base"].endswith(":9/v1")
