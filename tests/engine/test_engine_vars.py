"""DSPyEngine parameters bound to runtime variables (Var): checked early, read per activation, traced."""

from __future__ import annotations

import dspy
import pytest
from engine_support import Summary, Task
from openai_server import OpenAIServer
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from flock import ConfigurationError, DSPyEngine, Flock, Var
from flock.testing import FunctionModel

pytestmark = pytest.mark.anyio


def served(server: OpenAIServer, **params: object) -> tuple[Flock, DSPyEngine]:
    flock = Flock("openai/base", lm_kwargs={"api_base": server.base_url, "api_key": "k"})
    engine = DSPyEngine(**params)  # type: ignore[arg-type]
    flock.agent("writer").consumes(Task).publishes(Summary).with_engines(engine)
    return flock, engine


async def run_one(flock: Flock, server: OpenAIServer, text: str = "bees") -> None:
    with dspy.context(callbacks=[server.recorder]):
        await flock.publish(Task(text=text))
        summary = await flock.run_until_idle()
    assert summary.ok


async def test_bound_model_temperature_and_max_tokens_apply_from_the_next_activation(
    server: OpenAIServer,
) -> None:
    flock, _ = served(
        server,
        model=Var("model", default="openai/small"),
        temperature=Var("creativity", default=0.2),
        max_tokens=Var("budget", default=300),
    )
    await run_one(flock, server)
    flock.variables.set("creativity", 0.9)
    flock.variables.set("model", "openai/large")
    await run_one(flock, server)
    flock.variables.set("budget", 50)
    await run_one(flock, server)
    sent = [
        (r["model"], r["temperature"], r.get("max_tokens") or r.get("max_completion_tokens"))
        for r in server.requests
    ]
    assert sent == [("small", 0.2, 300), ("large", 0.9, 300), ("large", 0.9, 50)]


async def test_a_change_during_an_activation_applies_to_the_next_one(server: OpenAIServer) -> None:
    flock = Flock()
    seen: list[str] = []

    def answer(call):  # type: ignore[no-untyped-def]
        seen.append(call.prompt)
        if len(seen) == 1:  # while the first activation runs
            flock.variables.set("tone", "Write like a pirate.")
        return {"summary": Summary(text="ok")}

    engine = DSPyEngine(FunctionModel(answer), instructions=Var("tone", default="Write plainly."))
    flock.agent("writer").consumes(Task).publishes(Summary).with_engines(engine)
    await flock.publish(Task(text="a"))
    await flock.run_until_idle()
    await flock.publish(Task(text="b"))
    await flock.run_until_idle()
    assert "Write plainly." in seen[0] and "pirate" not in seen[0]
    assert "Write like a pirate." in seen[1]


async def test_what_did_not_change_is_not_rebuilt(server: OpenAIServer) -> None:
    flock, engine = served(server, temperature=Var("t", default=0.1))
    await run_one(flock, server)
    first = engine._resolver.engine(engine, flock.variables.snapshot(), {})  # type: ignore[union-attr]
    lm = first.lm_for(flock.model, flock.settings.lm_kwargs)
    await run_one(flock, server, text="again")
    assert first.lm_for(flock.model, flock.settings.lm_kwargs) is lm  # same values: same model object
    flock.variables.set("t", 0.5)
    await run_one(flock, server)
    flock.variables.set("t", 0.1)
    await run_one(flock, server)
    back = engine._resolver.engine(engine, flock.variables.snapshot(), {})  # type: ignore[union-attr]
    assert back is first and back.lm_for(flock.model, flock.settings.lm_kwargs) is lm
    assert [r["temperature"] for r in server.requests] == [0.1, 0.1, 0.5, 0.1]


def test_a_wrong_value_fails_at_set_naming_the_parameter() -> None:
    flock = Flock()
    engine = DSPyEngine(
        temperature=Var("creativity", default=0.7),
        program=Var("reasoning", default="predict"),
        adapter=Var("format", default="chat"),
    )
    flock.agent("writer").consumes(Task).publishes(Summary).with_engines(engine)
    with pytest.raises(ConfigurationError, match=r"temperature=.*takes a number from 0 to 2"):
        flock.variables.set("creativity", 7.5)
    with pytest.raises(ConfigurationError, match=r"program=.*tree_of_thought|tree_of_thought.*program="):
        flock.variables.set("reasoning", "tree_of_thought")
    with pytest.raises(ConfigurationError, match=r"program=.*best_of_n and refine need reward="):
        flock.variables.set("reasoning", "refine")  # no reward function on this engine
    with pytest.raises(ConfigurationError, match=r"adapter="):
        flock.variables.set("format", "yaml")
    flock.variables.set("reasoning", "chain_of_thought")
    flock.variables.set("format", "json")
    assert flock.variables["reasoning"] == "chain_of_thought"


@pytest.mark.parametrize(
    ("param", "var"),
    [
        ("temperature", Var("t", default=3.0)),
        ("max_tokens", Var("m", default=0)),
        ("program", Var("p", default="tree_of_thought")),
        ("model", Var("model", default="not a model")),
        ("cache", Var("c", default=1)),
    ],
)
def test_a_bad_default_fails_at_declaration(param: str, var: Var) -> None:
    with pytest.raises(ConfigurationError, match=param):
        DSPyEngine(**{param: var})  # type: ignore[arg-type]


async def test_bound_adapter_and_program_switch_the_real_adapter_path() -> None:
    flock = Flock()
    calls: list[tuple[str, list[str]]] = []

    def answer(call):  # type: ignore[no-untyped-def]
        calls.append((type(call.adapter).__name__, call.output_fields))
        return None  # the offline model's valid answer, in the call's adapter format

    model = FunctionModel(lambda call: answer(call) or call.default())
    engine = DSPyEngine(
        model, adapter=Var("format", default="chat"), program=Var("reasoning", default="predict")
    )
    flock.agent("writer").consumes(Task).publishes(Summary).with_engines(engine)
    await flock.invoke("writer", Task(text="a"))
    flock.variables.set("format", "json")
    flock.variables.set("reasoning", "chain_of_thought")
    await flock.invoke("writer", Task(text="b"))
    assert calls[0][0] == "ChatAdapter" and "reasoning" not in calls[0][1]
    assert calls[1][0] == "JSONAdapter" and calls[1][1][0] == "reasoning"


async def test_spans_record_the_bound_values(spans: InMemorySpanExporter) -> None:
    flock = Flock()
    engine = DSPyEngine(
        temperature=Var("creativity", default=0.7), program=Var("reasoning", default="predict")
    )
    flock.agent("writer").consumes(Task).publishes(Summary).with_engines(engine)
    flock.variables.set("creativity", 0.3)
    await flock.invoke("writer", Task(text="a"))
    evaluate = [s for s in spans.get_finished_spans() if s.name == "flock.evaluate writer"]
    assert evaluate and evaluate[0].attributes is not None
    assert evaluate[0].attributes["flock.var.temperature"] == 0.3
    assert evaluate[0].attributes["flock.var.program"] == "predict"
