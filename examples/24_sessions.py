"""A conversation: .with_history() shows an agent its earlier turns of the same workflow.

    .venv/bin/python examples/24_sessions.py

Two sessions (two correlation ids) talk to one assistant. Each question is published into its
session; the assistant's DSPy signature gets a `history` input with the session's earlier questions
and answers, which the adapter renders as earlier user/assistant messages. A scripted model
(`flock.testing.FunctionModel`, no API key) answers "what is my name?" from what it was sent, so the
output shows that each session remembers its own name and never the other's.
"""

from __future__ import annotations

import re

import anyio
from pydantic import BaseModel

from flock import DSPyEngine, Flock, flock_type
from flock.testing import FunctionModel, ModelCall


@flock_type
class Question(BaseModel):
    text: str


@flock_type
class Answer(BaseModel):
    text: str


def reply(call: ModelCall) -> dict[str, Answer]:
    """A stand-in for a real model: it reads the whole conversation it was sent."""
    sent = " ".join(str(m["content"]) for m in call.messages)
    names = re.findall(r"My name is (\w+)", sent)
    if "What is my name?" in call.messages[-1]["content"]:
        return {"answer": Answer(text=f"Your name is {names[-1]}." if names else "You have not told me.")}
    return {"answer": Answer(text="Nice to meet you.")}


async def main() -> None:
    async with Flock() as flock:
        flock.agent("assistant").description("A friendly assistant.").consumes(Question).publishes(
            Answer
        ).with_engines(DSPyEngine(FunctionModel(reply))).with_history(turns=10)

        turns = [
            ("ada", "My name is Ada."),
            ("bob", "My name is Bob."),
            ("ada", "What is my name?"),
            ("bob", "What is my name?"),
            ("eve", "What is my name?"),
        ]
        for session, text in turns:
            await flock.publish(Question(text=text), correlation_id=session)
            await flock.run_until_idle()
            answer = (await flock.store.get_by_type(Answer, correlation_id=session))[-1]
            print(f"{session}: {text:18} -> {answer.text}")


if __name__ == "__main__":
    anyio.run(main)
