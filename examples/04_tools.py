"""Tools: an agent with tools runs DSPy's ReAct loop (program="auto" picks it).

    python examples/04_tools.py

Tools are plain functions, sync or async. ``DSPyEngine(max_tool_calls=...)`` bounds the loop. The
trajectory (thoughts, tool calls, observations) is kept for tracing in the engine's result, never
published. On the offline model the agent calls its first tool once, then finishes.
"""

from __future__ import annotations

import anyio
from pydantic import BaseModel

from flock import DSPyEngine, Flock, flock_type


@flock_type
class Question(BaseModel):
    text: str


@flock_type
class Answer(BaseModel):
    text: str
    sources: list[str]


CALLS: list[str] = []


async def search_docs(query: str) -> str:
    """Search the product documentation and return the best passage."""
    CALLS.append(f"search_docs({query!r})")
    return "Flock agents consume and publish typed artifacts on a shared blackboard."


def word_count(text: str) -> int:
    """Count the words in a text."""
    CALLS.append(f"word_count({text!r})")
    return len(text.split())


async def main() -> None:
    async with Flock() as flock:
        flock.agent("support").description("Answer questions about Flock.").consumes(Question).publishes(
            Answer
        ).with_tools([search_docs, word_count]).with_engines(DSPyEngine(max_tool_calls=4))

        await flock.publish(Question(text="How do Flock agents talk to each other?"))
        await flock.run_until_idle(raise_on_error=True)

        print("tool calls:", *CALLS, sep="\n  ")
        for answer in await flock.store.get_by_type(Answer):
            print("published Answer:", answer.model_dump())


if __name__ == "__main__":
    anyio.run(main)
