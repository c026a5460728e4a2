"""The main example: a small movie studio on a blackboard.

    python3 scripts/dev.py demo

An idea wakes the writer; the writer's pitch wakes a critic (fan-out: two reviews) and a marketer
(two outputs in one call); a producer waits for a pitch AND its tagline (an AND gate) and greenlights
it. Nobody wires agents together: each one only says what it consumes and what it publishes.
"""

from __future__ import annotations

import anyio
from pydantic import BaseModel, Field

from flock import Flock, flock_type


@flock_type
class Idea(BaseModel):
    topic: str
    genre: str


@flock_type
class Pitch(BaseModel):
    title: str
    logline: str


@flock_type
class Review(BaseModel):
    critic: str
    stars: int = Field(ge=1, le=5)


@flock_type
class Tagline(BaseModel):
    text: str


@flock_type
class Poster(BaseModel):
    colors: list[str]


@flock_type
class Greenlight(BaseModel):
    title: str
    tagline: str


def write(idea: Idea) -> Pitch:
    return Pitch(title=f"The {idea.topic.title()}", logline=f"A {idea.genre} about {idea.topic}.")


def review(pitch: Pitch) -> list[Review]:
    return [Review(critic="Ada", stars=4), Review(critic="Bo", stars=3 + len(pitch.title) % 3)]


def market(pitch: Pitch) -> list[BaseModel]:
    return [Tagline(text=f"{pitch.title}: you won't look away."), Poster(colors=["black", "gold"])]


def greenlight(pitch: Pitch, tagline: Tagline) -> Greenlight:
    return Greenlight(title=pitch.title, tagline=tagline.text)


async def main() -> None:
    async with Flock() as flock:
        flock.agent("writer").description("Turn an idea into a pitch.").consumes(
            Idea, where=lambda i: i.genre != "horror"
        ).publishes(Pitch).calls(write)
        flock.agent("critic").consumes(Pitch).publishes(Review, fan_out=2).calls(review)
        flock.agent("marketer").consumes(Pitch).publishes(Tagline, Poster).calls(market)
        flock.agent("producer").consumes(Pitch, Tagline).publishes(Greenlight).calls(greenlight)

        await flock.publish_many([Idea(topic="bees", genre="comedy"), Idea(topic="fog", genre="horror")])
        summary = await flock.run_until_idle()

        for artifact in await flock.store.list():
            print(f"{artifact.produced_by:>9} → {artifact.type:<10} {artifact.payload}")
        print()
        print(summary)


if __name__ == "__main__":
    anyio.run(main)
