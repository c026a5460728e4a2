"""Programs by name: each runs on the offline model through the real adapter path; needs are checked early."""

from __future__ import annotations

import ast
from typing import Any, ClassVar

import dspy
import pytest
from engine_support import Idea, Summary, Task

from flock import ConfigurationError, DSPyEngine, Flock, Var
from flock._engine.programs import deno_available
from flock.testing import FunctionModel

pytestmark = pytest.mark.anyio


def agent_with(engine: DSPyEngine) -> Flock:
    flock = Flock()
    flock.agent("writer").consumes(Task).publishes(Idea).with_engines(engine)
    return flock


def recording(seed: int = 0) -> tuple[FunctionModel, list[Any]]:
    calls: list[Any] = []

    def answer(call):  # type: ignore[no-untyped-def]
        calls.append(call)
        return call.default()

    return FunctionModel(answer, seed=seed), calls


@pytest.mark.parametrize(
    ("program", "fields"),
    [
        ("predict", [["idea"]]),
        ("chain_of_thought", [["reasoning", "idea"]]),
        ("multi_chain_comparison", [["reasoning", "idea"]] * 3 + [["rationale", "idea"]]),
    ],
)
async def test_a_program_by_name_shapes_the_model_calls(program: str, fields: list[list[str]]) -> None:
    model, calls = recording()
    flock = agent_with(DSPyEngine(model, program=program))
    [out] = await flock.invoke("writer", Task(text="bees"))
    assert out.type == "Idea" and Idea.model_validate(out.payload)
    assert [c.output_fields for c in calls] == fields
    if program == "multi_chain_comparison":  # the comparison sees every attempt
        assert {"reasoning_attempt_1", "reasoning_attempt_2", "reasoning_attempt_3"} <= set(calls[-1].inputs)


async def test_react_by_name_calls_the_agents_tools() -> None:
    used: list[str] = []

    def look_up(topic: str) -> str:
        """Facts about a topic."""
        used.append(topic)
        return f"{topic} are great"

    model, calls = recording()
    flock = Flock()
    flock.agent("writer").consumes(Task).publishes(Idea).with_tools(look_up).with_engines(
        DSPyEngine(model, program="react")
    )
    [out] = await flock.invoke("writer", Task(text="bees"))
    assert out.type == "Idea" and used and "next_tool_name" in calls[0].output_fields


@pytest.mark.parametrize("program", ["best_of_n", "refine"])
async def test_best_of_n_and_refine_keep_the_best_scored_attempt(program: str) -> None:
    scores: list[int] = []
    titles = iter(["Tiny", "A much longer title", "Mid title", "Another one", "More"])

    def answer(call):  # type: ignore[no-untyped-def]
        if call.output_fields == ["idea"]:
            return {"idea": Idea(title=next(titles), score=3)}
        return call.default()  # refine's feedback step

    def reward(idea: Idea) -> float:
        scores.append(len(idea.title))
        return len(idea.title)

    flock = agent_with(DSPyEngine(FunctionModel(answer), program=program, reward=reward, n=3))
    [out] = await flock.invoke("writer", Task(text="bees"))
    assert scores[:3] == [4, 19, 9]
    assert out.payload["title"] == "A much longer title"


async def test_a_threshold_stops_at_the_first_good_enough_attempt() -> None:
    scored: list[str] = []

    def reward(idea: Idea) -> float:
        scored.append(idea.title)
        return 1.0

    flock = agent_with(DSPyEngine(program="best_of_n", reward=reward, n=5, threshold=1.0))
    await flock.invoke("writer", Task(text="bees"))
    assert len(scored) == 1


class InProcessInterpreter:
    """A CodeInterpreter running the generated Python in this process (tests only: not sandboxed)."""

    ran: ClassVar[list[str]] = []

    @property
    def tools(self) -> dict[str, Any]:
        return {}

    def start(self) -> None:
        return None

    def execute(self, code: str, variables: dict[str, Any] | None = None) -> Any:
        InProcessInterpreter.ran.append(code)
        tree = ast.parse(code)
        last = tree.body.pop() if tree.body and isinstance(tree.body[-1], ast.Expr) else None
        scope: dict[str, Any] = dict(variables or {})
        exec(compile(tree, "<generated>", "exec"), scope)
        return eval(compile(ast.Expression(last.value), "<generated>", "eval"), scope) if last else None

    def shutdown(self) -> None:
        return None


async def test_program_of_thought_runs_the_generated_code_in_the_interpreter() -> None:
    finals: list[dict[str, Any]] = []

    def answer(call):  # type: ignore[no-untyped-def]
        if "generated_code" in call.output_fields:
            return {"reasoning": "count the letters", "generated_code": "n = len('bees') * 10"}
        finals.append(call.inputs)
        return call.default()

    InProcessInterpreter.ran.clear()
    engine = DSPyEngine(FunctionModel(answer), program="program_of_thought", interpreter=InProcessInterpreter)
    [out] = await agent_with(engine).invoke("writer", Task(text="bees"))
    assert out.type == "Idea"
    assert InProcessInterpreter.ran == ["n = len('bees') * 10\nn"]
    assert finals[0]["code_output"] == "40"


def test_program_of_thought_without_deno_or_an_interpreter_fails_at_declaration(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("PATH", "")
    if deno_available():
        pytest.skip("the deno package is installed: DSPy's PythonInterpreter can run")
    with pytest.raises(ConfigurationError, match=r"needs Deno: pip install 'dspy\[deno\]'"):
        DSPyEngine(program="program_of_thought")


@pytest.mark.parametrize("program", ["best_of_n", "refine"])
def test_reward_programs_without_a_reward_fail_at_declaration(program: str) -> None:
    with pytest.raises(ConfigurationError, match="pass reward=fn"):
        DSPyEngine(program=program)
    with pytest.raises(ConfigurationError, match="pass reward=fn"):
        DSPyEngine(program=Var("p", default=program))


def test_unknown_programs_and_bad_registrations_fail_at_declaration() -> None:
    with pytest.raises(ConfigurationError, match="unknown program 'tree_of_thought'"):
        DSPyEngine(program="tree_of_thought")
    with pytest.raises(ConfigurationError, match="new, non-empty name"):
        DSPyEngine(programs={"predict": dspy.Predict})
    with pytest.raises(ConfigurationError, match="DSPy module class or a callable"):
        DSPyEngine(programs={"mine": 3})


class TwoDrafts(dspy.Module):
    """A program of one's own: a draft, then a final answer that sees the draft."""

    def __init__(self, signature: Any) -> None:
        super().__init__()
        self.draft = dspy.Predict(signature)
        self.final = dspy.ChainOfThought(signature)

    async def aforward(self, **kwargs: Any) -> Any:
        await self.draft.acall(**kwargs)
        return await self.final.acall(**kwargs)


async def test_a_registered_program_runs_by_name_and_through_a_variable() -> None:
    model, calls = recording()
    engine = DSPyEngine(
        model, program=Var("reasoning", default="predict"), programs={"two_drafts": TwoDrafts}
    )
    flock = agent_with(engine)
    await flock.invoke("writer", Task(text="bees"))
    flock.variables.set("reasoning", "two_drafts")
    await flock.invoke("writer", Task(text="wasps"))
    assert [c.output_fields for c in calls] == [["idea"], ["idea"], ["reasoning", "idea"]]
    flock2 = Flock()
    with pytest.raises(ConfigurationError, match="two_drafts"):
        flock2.agent("w").consumes(Task).publishes(Summary).with_engines(
            DSPyEngine(program=Var("reasoning", default="predict"))
        )
        flock2.variables.set("reasoning", "two_drafts")  # registered on the other engine only
