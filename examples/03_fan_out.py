"""Fan-out: one call, exactly five ideas, then between two and four reviews per idea.

    python examples/03_fan_out.py

``publishes(Idea, fan_out=5)`` becomes the plural field ``ideas: list[Idea]`` described as
"Generate exactly 5 ideas."; the engine checks the count and re-asks the model if it is wrong.
Every idea becomes its own artifact and wakes the critic separately. Runs on the offline model.
"""

from __future__ import annotations

from typing import Literal

import anyio
from pydantic import BaseModel, Field

from flock import Flock, flock_type, inspect_signature


@flock_type
class Brief(BaseModel):
    topic: str
    audience: str


@flock_type
class Idea(BaseModel):
    title: str = Field(max_length=80)
    angle: Literal["funny", "serious", "surprising"]


@flock_type
class Review(BaseModel):
    comment: str
    stars: int = Field(ge=1, le=5)


async def main() -> None:
    async with Flock() as flock:
        brainstorm = (
            flock.agent("brainstorm")
            .description("Pitch short video ideas.")
            .consumes(Brief)
            .publishes(Idea, fan_out=5)
        )
        flock.agent("critic").consumes(Idea).publishes(Review, fan_out=(2, 4))
        print(inspect_signature(brainstorm), end="\n\n")

        await flock.publish(Brief(topic="urban beekeeping", audience="city families"))
        summary = await flock.run_until_idle(raise_on_error=True)

        ideas = await flock.store.get_by_type(Idea)
        reviews = await flock.store.get_by_type(Review)
        print(f"published {len(ideas)} ideas and {len(reviews)} reviews")
        for idea in ideas:
            print(f"  idea   {idea.angle:<10} {idea.title}")
        for review in reviews[:4]:
            print(f"  review {review.stars}* {review.comment}")
        print(f"  ... and {len(reviews) - 4} more reviews (each idea got between 2 and 4)")
        print()
        print(summary)


if __name__ == "__main__":
    anyio.run(main)
