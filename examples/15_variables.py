"""Runtime variables and prompt versions: switch an agent's instructions and program while it runs.

Run: python examples/15_variables.py      (offline model; set FLOCK_MODEL for a real one)

The writer's instructions and its DSPy program read runtime variables. The script runs the same
ideas under two instruction styles (an A/B test) and then switches the program to chain of
thought; every pitch carries the prompt version that produced it, so the outputs group by version.
"""

from __future__ import annotations

import asyncio
from collections import Counter

from pydantic import BaseModel

from flock import ConfigurationError, DSPyEngine, Flock, Var, flock_type


@flock_type
class Idea(BaseModel):
    topic: str


@flock_type
class Pitch(BaseModel):
    title: str
    logline: str


STYLES = {
    "A": "Write a short, punchy title and a one-sentence logline.",
    "B": "Write an elegant title and a logline that names the hero.",
}


async def main() -> None:
    flock = Flock()
    flock.agent("writer").consumes(Idea).publishes(Pitch).with_engines(
        DSPyEngine(
            instructions=Var("style", default=STYLES["A"]),
            program=Var("reasoning", default="predict"),
            temperature=Var("creativity", default=0.7),
        )
    )
    topics = ["bees", "lighthouses", "time travel"]
    for arm, style in STYLES.items():
        flock.variables.set("style", style)  # applies from the next activation on
        await flock.publish_many([Idea(topic=t) for t in topics])
        await flock.run_until_idle()
        print(f"arm {arm}: {len(topics)} pitches")

    flock.variables.set("reasoning", "chain_of_thought")
    [pitch] = await flock.invoke("writer", Idea(topic="owls"))
    print(f"chain of thought: {pitch.payload['title']!r} (prompt {pitch.prompt_version})")

    try:
        flock.variables.set("creativity", 5.0)
    except ConfigurationError as exc:
        print(f"refused: {exc}")

    versions = Counter(a.prompt_version for a in await flock.store.list() if a.type == "Pitch")
    for version, count in sorted(versions.items(), key=lambda item: -item[1]):
        print(f"prompt {version}: {count} pitches")


if __name__ == "__main__":
    asyncio.run(main())
