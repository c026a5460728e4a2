"""Context benchmark: what the default context costs in prompt characters and in time. Prints JSON.

1. ``critic_prompt``: the W3 shape — 50 topics, each fanned out into 10 ideas (``fan_out=10``), and a
   critic per idea (``Idea -> Critique``) on the DSPy engine with ``ChatAdapter`` and the offline
   model. Reports the characters of each critic prompt (all messages) with ``LineageContext(20)``
   (the default), ``CorrelationContext(50)`` (the default before) and ``NoContext()``, and checks
   that every ancestor (the idea's topic) is in the lineage prompt. Target: ≤ 1,100 characters by
   default.
2. ``one_workflow``: issue 10 defect 16 — a 5-agent chain of function engines that read their
   context, with every input in ONE workflow (``--activations`` activations in all, default 1,500),
   on an in-memory store and a SQLite file, with each context provider. Reports wall seconds and
   µs per activation; the default must cost O(limit) per activation on every store, so its time
   per activation must not grow with the workflow (see ``growth``).

Run: ``.venv/bin/python benchmarks/bench_context.py`` (``--activations 1500``, ``--quick``).
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from statistics import median
from typing import Any

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

from pydantic import BaseModel, Field, create_model

from flock import (
    CorrelationContext,
    DSPyEngine,
    Flock,
    InMemoryStore,
    LineageContext,
    NoContext,
    SQLiteStore,
    flock_type,
)


@flock_type
class Topic(BaseModel):
    name: str
    audience: str


@flock_type
class Idea(BaseModel):
    title: str
    pitch: str


@flock_type
class Critique(BaseModel):
    verdict: str
    score: int = Field(ge=1, le=10)


PROVIDERS: dict[str, Any] = {
    "lineage_20 (default)": lambda: LineageContext(limit=20),
    "correlation_50": lambda: CorrelationContext(limit=50),
    "no_context": NoContext,
}


async def critic_prompt(topics: int) -> dict[str, Any]:
    from flock.testing import TestModel

    out: dict[str, Any] = {}
    for label, make in PROVIDERS.items():
        critic_model = TestModel()
        flock = Flock(context_provider=make())
        flock.agent("ideator").description("Brainstorm ideas for the topic.").consumes(Topic).publishes(
            Idea, fan_out=10
        ).with_engines(DSPyEngine(TestModel()))
        flock.agent("critic").description("Critique the idea.").consumes(Idea).publishes(
            Critique
        ).with_engines(DSPyEngine(critic_model))
        names = [f"topic {i}: urban beekeeping for schools" for i in range(topics)]
        await flock.publish_many([Topic(name=n, audience="teachers") for n in names])
        await flock.run_until_idle(raise_on_error=True)
        sizes = [sum(len(m["content"]) for m in c.messages) for c in critic_model.calls]
        with_topic = sum(1 for c in critic_model.calls if any(n in c.prompt for n in names))
        out[label] = {
            "critic_calls": len(sizes),
            "chars_median": median(sizes),
            "chars_max": max(sizes),
            "prompts_with_their_topic": with_topic,
        }
    default = out["lineage_20 (default)"]
    out["target_chars"] = 1100
    out["ok"] = (
        default["chars_max"] <= 1100 and default["prompts_with_their_topic"] == default["critic_calls"]
    )
    return out


async def _chain_run(store_kind: str, provider: str, activations: int) -> dict[str, Any]:
    stages = [flock_type(create_model(f"CtxStage{i}", value=(int, ...))) for i in range(6)]
    inputs = activations // 5
    with tempfile.TemporaryDirectory() as tmp:
        store: Any = InMemoryStore() if store_kind == "memory" else SQLiteStore(Path(tmp) / "board.db")
        flock = Flock(store=store, context_provider=PROVIDERS[provider](), max_agent_iterations=10**9)
        seen = [0]

        def make_step(out: Any) -> Any:
            def step(x: Any, ctx: Any) -> Any:
                seen[0] += len(ctx.artifacts)
                return out(value=x.value + 1)

            return step

        for i in range(1, 6):
            flock.agent(f"s{i}").consumes(stages[i - 1]).publishes(stages[i]).calls(make_step(stages[i]))
        start = time.perf_counter()
        await flock.publish_many([stages[0](value=0) for _ in range(inputs)], correlation_id="one")
        summary = await flock.run_until_idle(raise_on_error=True)
        wall = time.perf_counter() - start
        if store_kind == "sqlite":
            await store.close()
    return {
        "activations": summary.activations,
        "wall_s": round(wall, 3),
        "us_per_activation": round(wall * 1e6 / max(1, summary.activations), 1),
        "context_artifacts_seen": seen[0],
    }


def one_workflow(activations: int) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for store_kind in ("memory", "sqlite"):
        for provider in ("lineage_20 (default)", "correlation_50"):
            small = _fresh(store_kind, provider, max(50, activations // 6))
            large = _fresh(store_kind, provider, activations)
            large["growth_vs_one_sixth_size"] = round(
                large["us_per_activation"] / small["us_per_activation"], 2
            )
            out[f"{store_kind} / {provider}"] = large
    return out


def _fresh(store_kind: str, provider: str, activations: int) -> dict[str, Any]:
    """One run in a fresh interpreter, so no run warms another's caches."""
    import subprocess

    code = [sys.executable, __file__, "--one", store_kind, provider, str(activations)]
    done = subprocess.run(code, capture_output=True, text=True, check=True)
    return dict(json.loads(done.stdout.strip().splitlines()[-1]))


def main() -> None:
    args = sys.argv[1:]
    if args and args[0] == "--one":
        import logging

        logging.getLogger("flock").setLevel(logging.ERROR)
        print(json.dumps(asyncio.run(_chain_run(args[1], args[2], int(args[3])))))
        return
    activations = 1500
    if "--activations" in args:
        activations = int(args[args.index("--activations") + 1])
    quick = "--quick" in args
    import logging

    logging.getLogger("flock").setLevel(logging.ERROR)
    results = {
        "machine": {"cpus": os.cpu_count(), "load_average_before": os.getloadavg()},
        "critic_prompt": asyncio.run(critic_prompt(5 if quick else 50)),
        "one_workflow": one_workflow(300 if quick else activations),
    }
    results["machine"]["load_average_after"] = os.getloadavg()
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
