"""The main example: a small movie studio on a blackboard, traced, on the embedded offline model.

    python3 scripts/dev.py demo

An idea wakes the writer (an LLM agent); its pitch wakes a critic (fan-out: exactly two reviews in
one call) and a marketer (two outputs, a tagline and a poster, in one call); a producer waits for a
pitch AND its tagline (an AND gate) and decides in plain Python. Nobody wires agents together: each
one only says what it consumes and what it publishes.

No API key is needed: with no model configured, Flock uses its deterministic "offline" model, which
goes through DSPy's real adapter path and produces schema-valid placeholder content. Set FLOCK_MODEL
(e.g. ``openai/gpt-4.1``) to run the same pipeline on a real model.

The run is traced into .flock/traces.db; look at it with ``flock traces`` / ``flock traces show ID``
(``--html trace.html`` for a page to open in a browser).
"""

from __future__ import annotations

import sys
from pathlib import Path

import anyio
from pydantic import BaseModel, Field

from flock import Flock, flock_type
from flock.tracing import enable_tracing, flush_tracing


@flock_type
class Idea(BaseModel):
    topic: str
    genre: str


@flock_type
class Pitch(BaseModel):
    title: str = Field(description="A short, catchy movie title")
    logline: str = Field(description="One sentence that sells the movie")


@flock_type
class Review(BaseModel):
    critic: str
    stars: int = Field(ge=1, le=5)
    verdict: str


@flock_type
class Tagline(BaseModel):
    text: str = Field(max_length=80)


@flock_type
class Poster(BaseModel):
    colors: list[str] = Field(min_length=2, max_length=4)
    mood: str


@flock_type
class Greenlight(BaseModel):
    title: str
    tagline: str


def greenlight(pitch: Pitch, tagline: Tagline) -> Greenlight:
    """A plain Python agent: no model call."""
    return Greenlight(title=pitch.title, tagline=tagline.text)


def build(flock: Flock) -> None:
    flock.agent("writer").description("Turn a movie idea into a pitch.").consumes(
        Idea, where=lambda idea: idea.genre != "horror"
    ).publishes(Pitch)
    flock.agent("critic").description("Review the pitch as two different critics.").consumes(Pitch).publishes(
        Review, fan_out=2
    )
    flock.agent("marketer").description("Market the pitch.").consumes(Pitch).publishes(Tagline, Poster)
    flock.agent("producer").consumes(Pitch, Tagline).publishes(Greenlight).calls(greenlight)


async def main() -> None:
    enable_tracing()  # spans → .flock/traces.db (and to OTLP if OTEL_EXPORTER_OTLP_ENDPOINT is set)
    async with Flock() as flock:
        build(flock)
        async with flock.traced_run("movie-studio") as run:
            await flock.publish_many([Idea(topic="bees", genre="comedy"), Idea(topic="fog", genre="horror")])
            summary = await flock.run_until_idle()

        for artifact in await flock.store.list():
            print(f"{artifact.produced_by:>9} → {artifact.type:<10} {artifact.payload}")
        print()
        print(summary)
        trace_id = format(run.get_span_context().trace_id, "032x")
        cli = Path(sys.executable).parent / "flock"  # the `flock` command of this environment
        print(f"\ntrace {trace_id} stored in .flock/traces.db; to look at it:")
        print(f"  {cli} traces show {trace_id[:8]}")
        print(f"  {cli} traces show {trace_id[:8]} --html trace.html   # then open trace.html")
    flush_tracing()


if __name__ == "__main__":
    anyio.run(main)
