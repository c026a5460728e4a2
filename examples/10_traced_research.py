"""A traced research run: the one the tracing docs show, to reproduce their listings and page.

    python examples/10_traced_research.py
    flock traces show latest                       # the run as a tree
    flock traces show latest --html trace.html     # the waterfall and flow graph, in a browser

A planner turns a Topic into three Questions and an Outline (two output groups, two model calls).
Researchers answer each Question with a search tool (DSPy's ReAct loop). A writer waits for the
Outline and a Finding of the same workflow (an AND gate) and writes a Report; a reviewer, a plain
function, fails on purpose so the trace shows what a failure looks like. Everything runs on the
built-in offline model and goes to ``.flock/traces.db`` in the working directory.
"""

from __future__ import annotations

import anyio
from pydantic import BaseModel, Field

from flock import DSPyEngine, Flock, flock_type
from flock.tracing import enable_tracing, flush_tracing


@flock_type
class Topic(BaseModel):
    name: str


@flock_type
class Question(BaseModel):
    text: str


@flock_type
class Outline(BaseModel):
    sections: list[str] = Field(min_length=2, max_length=4)


@flock_type
class Finding(BaseModel):
    question: str
    answer: str


@flock_type
class Report(BaseModel):
    title: str
    body: str


@flock_type
class Review(BaseModel):
    approved: bool


async def search_papers(query: str) -> str:
    """Search the literature and return the most relevant abstract."""
    return f"Three field studies on {query} agree on the main effect."


def review(report: Report) -> Review:
    raise RuntimeError("the review board is closed on weekends")


async def main() -> None:
    enable_tracing()
    async with Flock("offline") as flock:
        flock.agent("planner").description("Plan a short research report.").consumes(Topic).publishes(
            Question, fan_out=3
        ).publishes(Outline)
        flock.agent("researcher").consumes(Question).publishes(Finding).with_tools(
            [search_papers]
        ).with_engines(DSPyEngine(max_tool_calls=2))
        flock.agent("writer").consumes(Outline, Finding).publishes(Report)
        flock.agent("reviewer").consumes(Report).publishes(Review).calls(review)

        async with flock.traced_run("bee-research") as run:
            await flock.publish(Topic(name="bees"))
            summary = await flock.run_until_idle()

    flush_tracing()
    print(summary)
    trace_id = format(run.get_span_context().trace_id, "032x")
    print(f"\ntrace {trace_id}: flock traces show {trace_id[:8]} [--html trace.html]")


if __name__ == "__main__":
    anyio.run(main)
