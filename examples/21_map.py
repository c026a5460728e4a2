"""One agent over many inputs: flock.map(), results in input order, failures in their own slot.

    .venv/bin/python examples/21_map.py

A translator agent (an LLM agent on the offline model) and a glossary checker (plain Python that
refuses one of the inputs) each run over a list of phrases. `map()` publishes every input as a
workflow of its own, runs until idle, and returns one slot per input, in input order: the list of
what the agent published from it, or the `WorkflowError` when that input failed; the other inputs are
unaffected. `concurrency=` bounds the agent's parallel activations for the call; `progress=True`
reports done/failed/rate on stderr as it goes.
"""

from __future__ import annotations

import anyio
from pydantic import BaseModel, Field

from flock import Flock, WorkflowError, flock_type


@flock_type
class Phrase(BaseModel):
    text: str


@flock_type
class Translation(BaseModel):
    french: str = Field(description="The phrase in French")


@flock_type
class Checked(BaseModel):
    text: str
    words: int


def check(phrase: Phrase) -> Checked:
    if not phrase.text.strip():
        raise ValueError("an empty phrase has nothing to check")
    return Checked(text=phrase.text, words=len(phrase.text.split()))


async def main() -> None:
    phrases = [Phrase(text=t) for t in ("good morning", "the bees are back", "", "see you soon")]
    # Two flocks, one agent each: map() publishes the inputs, so every agent that consumes Phrase
    # would react to them, as it would to any publish.
    async with Flock() as flock:  # FLOCK_MODEL, else the offline model
        flock.agent("translator").description("Translate to French.").consumes(Phrase).publishes(Translation)
        translations = await flock.map("translator", phrases, concurrency=2, progress=True)
        for phrase, slot in zip(phrases, translations, strict=True):
            print(f"translator  {phrase.text!r:22} -> {slot}")

    async with Flock() as flock:
        flock.agent("checker").consumes(Phrase).publishes(Checked).calls(check)
        checked = await flock.map("checker", phrases)
        for phrase, slot in zip(phrases, checked, strict=True):
            if isinstance(slot, WorkflowError):
                print(f"checker     {phrase.text!r:22} -> failed ({slot.error_type}): {slot.message}")
            else:
                print(f"checker     {phrase.text!r:22} -> {slot[0].words} words")


if __name__ == "__main__":
    anyio.run(main)
