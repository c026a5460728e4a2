"""Contract-valid outputs from a real local model. Prints a table and one JSON document.

Three workloads, each an agent on the DSPy engine talking to an OpenAI-compatible server:

* ``movie``: ``Idea -> Movie`` (one output);
* ``pitches``: ``Topic -> exactly 3 Pitch`` (fan-out);
* ``review``: ``Task -> Summary + Verdict`` (two outputs in one group; ``Verdict.score`` in [0, 1]).

Each runs ``--n`` inputs (default 20) under ChatAdapter and JSONAdapter, with structured outputs
``auto`` and ``off``. Every activation may use up to ``--max-reasks`` re-asks (default 2); the
engine records on which attempt an activation became valid, so one run also tells what a budget of
0 or 1 re-asks would have reached (``by_reask_budget``).

Numbers per cell: complete-valid % (every declared output published and valid), partial
publications (an input with some but not all of its outputs on the board: must be 0), model calls
per activation, input/output tokens per activation, wall seconds, and the structured-output form
the engine settled on.

Run against the SmolLM2 server that ``scripts/real_model.py serve`` starts::

    python3 scripts/real_model.py bench                    # N=20, everything
    .venv/bin/python benchmarks/bench_real_model.py --n 5 --workloads pitches --adapters chat

``FLOCK_REAL_MODEL_URL`` (default ``http://127.0.0.1:8765/v1``) and ``FLOCK_REAL_MODEL``
(default ``openai/smollm2``) say where the model is.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import sys
import time
from collections import Counter
from typing import Any
from urllib.parse import urlparse

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

from pydantic import BaseModel, Field

from flock import ContractViolation, DSPyEngine, Flock, JSONAdapter, flock_type

URL = os.environ.get("FLOCK_REAL_MODEL_URL", "http://127.0.0.1:8765/v1")
MODEL = os.environ.get("FLOCK_REAL_MODEL", "openai/smollm2")


@flock_type(name="bench.Idea")
class Idea(BaseModel):
    premise: str


@flock_type(name="bench.Movie")
class Movie(BaseModel):
    title: str
    logline: str
    genre: str


@flock_type(name="bench.Topic")
class Topic(BaseModel):
    name: str


@flock_type(name="bench.Pitch")
class Pitch(BaseModel):
    title: str
    hook: str


@flock_type(name="bench.Task")
class Task(BaseModel):
    text: str


@flock_type(name="bench.Summary")
class Summary(BaseModel):
    text: str


@flock_type(name="bench.Verdict")
class Verdict(BaseModel):
    label: str
    score: float = Field(ge=0, le=1)


PREMISES = [
    "a lighthouse keeper finds a door under the sea",
    "two rival bakers must cater the same wedding",
    "a retired astronaut teaches a village to build a rocket",
    "a cat inherits a failing bookshop",
    "the last train of the night never reaches its station",
    "a chess prodigy loses her memory before the final",
    "a city where it rains only on liars",
    "a robot gardener falls for a sunflower",
    "twins swap lives for one summer in Lisbon",
    "a detective who can hear lies investigates her own family",
    "an orchestra plays through a week-long blackout",
    "a farmer discovers his cows predict earthquakes",
]
TOPICS = [
    "urban beekeeping",
    "electric bikes",
    "home composting",
    "learning a language late",
    "night markets",
    "board game cafes",
    "rainwater harvesting",
    "community radio",
    "repair cafes",
    "tiny libraries",
    "rooftop farms",
    "public swimming pools",
]
TASKS = [
    "Review this plan: move the team stand-up from 9:00 to 10:30 so remote colleagues can join.",
    "Review this change: the checkout page now asks for the phone number before the address.",
    "Review this idea: replace printed menus with a QR code on every table.",
    "Review this proposal: close the office on Fridays and work from home.",
    "Review this policy: every pull request needs two approvals before merging.",
    "Review this plan: translate the user manual into Spanish with a volunteer.",
    "Review this decision: raise the monthly subscription price from 8 to 10 euros.",
    "Review this plan: archive every support ticket older than two years.",
    "Review this idea: add dark mode to the mobile app before the next release.",
    "Review this proposal: hold the yearly meetup online instead of in Berlin.",
    "Review this change: the newsletter is sent on Sunday evening instead of Monday morning.",
    "Review this plan: replace the wiki with a shared folder of documents.",
]


def workload(name: str, i: int) -> tuple[BaseModel, dict[str, int]]:
    """The i-th input of a workload and the outputs it must produce (type name -> count)."""
    if name == "movie":
        return Idea(premise=PREMISES[i % len(PREMISES)] + ("" if i < len(PREMISES) else f" (take {i})")), {
            "bench.Movie": 1
        }
    if name == "pitches":
        return Topic(name=TOPICS[i % len(TOPICS)] + ("" if i < len(TOPICS) else f", angle {i}")), {
            "bench.Pitch": 3
        }
    return Task(text=TASKS[i % len(TASKS)] + ("" if i < len(TASKS) else f" (case {i})")), {
        "bench.Summary": 1,
        "bench.Verdict": 1,
    }


class RecordingEngine(DSPyEngine):
    """A DSPyEngine that notes, per activation, how many calls and re-asks it took and how it ended."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.records: list[dict[str, Any]] = []

    async def evaluate(self, agent: Any, ctx: Any, inputs: Any, output_group: Any) -> Any:
        try:
            result = await super().evaluate(agent, ctx, inputs, output_group)
        except ContractViolation as exc:
            metrics = dict(getattr(exc, "metrics", {}))
            trace = getattr(exc, "trace", {})
            self.records.append(
                {"ok": False, **metrics, "form": trace.get("structured_outputs"), "errors": exc.errors[:3]}
            )
            raise
        self.records.append({"ok": True, **result.metrics, "form": result.trace.get("structured_outputs")})
        return result


async def run_cell(name: str, adapter: str, structured: str, n: int, max_reasks: int) -> dict[str, Any]:
    engine = RecordingEngine(
        MODEL,
        adapter=JSONAdapter() if adapter == "json" else None,
        structured_outputs=structured,
        max_reasks=max_reasks,
        temperature=0.2,
        max_tokens=400,
        retries=1,
        lm_kwargs={"api_base": URL, "api_key": "sk-local"},
    )
    flock = Flock(max_concurrency=2)
    if name == "movie":
        builder = flock.agent("director").description("Turn the idea into a movie.").consumes(Idea)
        builder.publishes(Movie).with_engines(engine)
    elif name == "pitches":
        builder = flock.agent("pitcher").description("Write short pitches about the topic.").consumes(Topic)
        builder.publishes(Pitch, fan_out=3).with_engines(engine)
    else:
        builder = flock.agent("reviewer").description("Summarise the task and judge it.").consumes(Task)
        builder.publishes(Summary, Verdict).with_engines(engine)
    inputs, wanted = [], {}
    for i in range(n):
        value, wanted = workload(name, i)
        inputs.append(value)
    start = time.perf_counter()
    published = await flock.publish_many(inputs)
    await flock.run_until_idle()
    wall = time.perf_counter() - start
    by_input: dict[Any, Counter[str]] = {a.id: Counter() for a in published}
    for art in await flock.store.list():
        if art.consumed_from and art.consumed_from[0] in by_input:
            by_input[art.consumed_from[0]][art.type] += 1
    complete = sum(1 for c in by_input.values() if all(c[t] == k for t, k in wanted.items()))
    partial = sum(
        1
        for c in by_input.values()
        if sum(c[t] for t in wanted) and any(c[t] != k for t, k in wanted.items())
    )
    recs = engine.records
    calls = sum(r.get("model_calls", 0) for r in recs)
    budgets = {}
    for k in range(max_reasks + 1):
        ok = sum(1 for r in recs if r["ok"] and r.get("reasks", 0) <= k)
        used = sum(min(r.get("model_calls", 0), k + 1) for r in recs)
        budgets[str(k)] = {
            "complete_valid_pct": round(100 * ok / max(1, n), 1),
            "calls_per_activation": round(used / max(1, len(recs)), 2),
        }
    errors = Counter(e.split(":")[0][:80] for r in recs if not r["ok"] for e in r.get("errors", []))
    return {
        "workload": name,
        "adapter": adapter,
        "structured_outputs": structured,
        "n": n,
        "complete_valid_pct": round(100 * complete / max(1, n), 1),
        "partial_publications": partial,
        "calls_per_activation": round(calls / max(1, len(recs)), 2),
        "input_tokens_per_activation": round(sum(r.get("input_tokens", 0) for r in recs) / max(1, len(recs))),
        "output_tokens_per_activation": round(
            sum(r.get("output_tokens", 0) for r in recs) / max(1, len(recs))
        ),
        "wall_s": round(wall, 1),
        "forms": dict(Counter(str(r.get("form")) for r in recs)),
        "by_reask_budget": budgets,
        "top_errors": dict(errors.most_common(3)),
    }


def reachable(url: str = URL, timeout: float = 2.0) -> bool:
    """Whether a server listens at the URL's host and port (a busy llama.cpp server answers no
    request until its current generation ends, so a connection is the quick sign of life)."""
    parts = urlparse(url)
    try:
        with socket.create_connection((parts.hostname or "127.0.0.1", parts.port or 80), timeout=timeout):
            return True
    except OSError:
        return False


async def main(args: argparse.Namespace) -> dict[str, Any]:
    cells = []
    for name in args.workloads:
        for adapter in args.adapters:
            for structured in args.structured:
                cell = await run_cell(name, adapter, structured, args.n, args.max_reasks)
                cells.append(cell)
                print(_row(cell), file=sys.stderr, flush=True)
    return {"model": MODEL, "url": URL, "max_reasks": args.max_reasks, "cells": cells}


def _row(c: dict[str, Any]) -> str:
    budgets = " ".join(
        f"r{k}={v['complete_valid_pct']}%/{v['calls_per_activation']}"
        for k, v in c["by_reask_budget"].items()
    )
    return (
        f"{c['workload']:8} {c['adapter']:5} {c['structured_outputs']:5} n={c['n']:3} "
        f"valid={c['complete_valid_pct']:5.1f}% partial={c['partial_publications']} "
        f"calls/act={c['calls_per_activation']:.2f} tok_in={c['input_tokens_per_activation']} "
        f"tok_out={c['output_tokens_per_activation']} wall={c['wall_s']}s forms={c['forms']} [{budgets}]"
    )


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--n", type=int, default=20)
    p.add_argument("--max-reasks", type=int, default=2)
    p.add_argument("--workloads", nargs="+", default=["movie", "pitches", "review"])
    p.add_argument("--adapters", nargs="+", default=["chat", "json"])
    p.add_argument("--structured", nargs="+", default=["auto", "off"])
    return p.parse_args(argv)


if __name__ == "__main__":
    import logging

    logging.getLogger("flock").setLevel(logging.ERROR)
    if not reachable():
        sys.exit(f"no model server at {URL}: start one with `python3 scripts/real_model.py serve`")
    print(json.dumps(asyncio.run(main(parse())), indent=2))
