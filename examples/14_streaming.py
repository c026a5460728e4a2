"""Streaming: watch a pipeline think — artifacts, activations and the writer's text as it arrives.

Run: python examples/14_streaming.py      (offline model; set FLOCK_MODEL for a real one)

A writer drafts a film pitch from an idea and a critic reviews it. The script follows
``flock.events()`` while the run goes on: activations starting and finishing, artifacts as they
are published, and the writer's ``logline`` streamed piece by piece (``TokenEvent``). With a real
model the pieces arrive as the provider streams them; the offline model streams its placeholder
answer the same way, so the script runs without a key. It checks that the streamed pieces,
joined, are exactly the published text.

Then the same without writing a reader: ``run_until_idle(progress="writer")`` shows the status
line and the writer's text, line by line, on stderr (stdout stays clean).
"""

from __future__ import annotations

import os
import sys

import anyio
from pydantic import BaseModel, Field

from flock import ActivationEvent, ArtifactEvent, EventStream, Flock, TokenEvent, flock_type


@flock_type
class Idea(BaseModel):
    topic: str


@flock_type
class Pitch(BaseModel):
    title: str = Field(description="a short film title")
    logline: str = Field(description="one sentence: hero, goal, obstacle")


@flock_type
class Review(BaseModel):
    verdict: str = Field(description="greenlight or pass, with one reason")


async def main() -> None:
    flock = Flock(os.environ.get("FLOCK_MODEL"))
    flock.agent("writer").consumes(Idea).publishes(Pitch)
    flock.agent("critic").consumes(Pitch).publishes(Review)

    streamed: dict[tuple[str, int], str] = {}  # (field, attempt) -> the text so far
    line = [False]  # whether streamed text left the cursor mid-line
    last_attempt = [0]

    async def run(events: EventStream) -> None:
        await flock.publish(Idea(topic="a lighthouse keeper who collects storms"))
        await flock.run_until_idle()
        events.close()

    async with flock.events() as events, anyio.create_task_group() as tg:
        tg.start_soon(run, events)
        async for event in events:
            if isinstance(event, ActivationEvent | ArtifactEvent) and line[0]:
                print()
                line[0] = False
            if isinstance(event, ActivationEvent):
                print(f"[{event.agent} {event.state}]")
            elif isinstance(event, ArtifactEvent):
                print(f"[published {event.artifact.type}]")
            elif isinstance(event, TokenEvent) and event.agent == "writer" and event.field == "logline":
                key = (event.field, event.attempt)
                streamed[key] = streamed.get(key, "") + event.delta
                if event.attempt != last_attempt[0]:  # a re-ask: the field starts over
                    print(f"\n(re-asked, attempt {event.attempt})")
                    last_attempt[0] = event.attempt
                sys.stdout.write(event.delta)  # the text as it arrives
                sys.stdout.flush()
                line[0] = True

    [pitch] = [a for a in await flock.store.list() if a.type == "Pitch"]
    last = max((attempt for _, attempt in streamed), default=0)
    joined = streamed.get(("logline", last), "")
    print(f"streamed logline equals the published one: {joined == pitch.payload['logline']}")
    if events.dropped:
        print(f"(this reader fell behind: {events.dropped} events dropped; the run was not slowed)")

    print("now with run_until_idle(progress='writer'): the writer's text goes to stderr")
    await flock.publish(Idea(topic="a cartographer who maps dreams"))
    summary = await flock.run_until_idle(progress="writer")
    print(f"{summary.activations} activations")


if __name__ == "__main__":
    anyio.run(main)
