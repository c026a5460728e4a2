"""Sessions: earlier turns of the same workflow reach the model through DSPy's History field."""

from __future__ import annotations

from pathlib import Path

import pytest
from engine_support import Summary, Task

from flock import ConfigurationError, DSPyEngine, Flock, SQLiteStore
from flock.testing import FunctionModel

pytestmark = pytest.mark.anyio


def chat(flock: Flock, prompts: list[str], turns: int = 2, seen: list[list[str]] | None = None) -> None:
    def answer(call):  # type: ignore[no-untyped-def]
        prompts.append(call.prompt)
        if seen is not None:  # the History field's turns, as (question, answer) texts
            seen.append(
                [f"{m['task']['text']} -> {m['summary']['text']}" for m in call.inputs["history"].messages]
            )
        return {"summary": Summary(text=f"answer to {call.inputs['task'].text}")}

    flock.agent("chat").consumes(Task).publishes(Summary).with_history(turns=turns).with_engines(
        DSPyEngine(FunctionModel(answer))
    )


async def say(flock: Flock, text: str, session: str = "s1") -> None:
    await flock.publish(Task(text=text), correlation_id=session)
    await flock.run_until_idle()


async def test_earlier_turns_reach_the_model_as_chat_turns_of_their_own_workflow_only() -> None:
    flock = Flock()
    prompts: list[str] = []
    seen: list[list[str]] = []
    chat(flock, prompts, seen=seen)
    await say(flock, "first question")
    await say(flock, "second question")
    await say(flock, "other session", session="s2")
    assert seen == [[], ["first question -> answer to first question"], []]
    # DSPy renders the History field as earlier messages, and the context does not repeat them
    assert prompts[1].count("answer to first question") == 1 and "answer to" not in prompts[2]


async def test_only_the_newest_turns_are_kept() -> None:
    flock = Flock()
    seen: list[list[str]] = []
    chat(flock, [], turns=2, seen=seen)
    for text in ("one", "two", "three", "four"):
        await say(flock, text)
    assert seen == [
        [],
        ["one -> answer to one"],
        ["one -> answer to one", "two -> answer to two"],
        ["two -> answer to two", "three -> answer to three"],
    ]


async def test_history_is_read_from_a_durable_board(tmp_path: Path) -> None:
    path = tmp_path / "board.db"
    async with SQLiteStore(path) as store:
        first = Flock(store=store)
        chat(first, [])
        await say(first, "remember bees")
    seen: list[list[str]] = []
    async with SQLiteStore(path) as store:
        again = Flock(store=store)  # a new process, as far as memory goes
        chat(again, [], seen=seen)
        await say(again, "what did I say?")
    assert seen == [["remember bees -> answer to remember bees"]]


def test_with_history_needs_a_positive_count() -> None:
    with pytest.raises(ConfigurationError, match="with_history"):
        Flock().agent("chat").with_history(turns=0)


async def test_no_context_field_when_the_history_already_shows_all_of_it() -> None:
    flock = Flock()
    prompts: list[str] = []
    chat(flock, prompts)
    await say(flock, "first question")
    await say(flock, "second question")
    assert "answer to first question" in prompts[1]
    assert "[[ ## context ## ]]" not in prompts[1] and "Earlier artifacts" not in prompts[1]
    await flock.publish(Summary(text="a note from outside"), correlation_id="s1")
    await say(flock, "third question")
    # Something of the workflow the history does not show: the context field is back, with only that.
    assert "[[ ## context ## ]]" in prompts[2] and "a note from outside" in prompts[2]
    assert prompts[2].count("answer to first question") == 1
