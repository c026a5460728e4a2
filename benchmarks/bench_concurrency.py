"""Per-agent concurrency for LLM work: how long N inputs take through LLM agents at each setting.

A two-agent pipeline (Stage0 -> Stage1 -> Stage2, one model call per hop, ChatAdapter) runs on
a local OpenAI-compatible HTTP server in a separate process that answers each request after a
fixed latency, through DSPy's real adapter and LiteLLM client. The Flock keeps its default
global limit; only the agents' ``max_concurrency`` varies ("default" = no ``.max_concurrency()``
call). Prints one JSON document: wall time per setting against the ideal
``ceil(inputs / min(setting, global)) * latency * hops``-ish bounds, and the critical path.

Run: ``python benchmarks/bench_concurrency.py`` (``--latency 0.5 --inputs 100`` are the defaults;
``--quick`` uses 40 inputs).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import time
from typing import Any

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

sys.path.insert(0, os.path.dirname(__file__))
from bench_engine import STAGES, serve

from flock import DSPyEngine, Flock
from flock._core.spec import AgentSpec

HOPS = 2


async def run(base: str, inputs: int, per_agent: int | None) -> dict[str, Any]:
    engine = DSPyEngine("openai/bench", lm_kwargs={"api_base": base, "api_key": "k"})
    flock = Flock()
    for i in range(HOPS):
        agent = flock.agent(f"stage{i}").consumes(STAGES[i]).publishes(STAGES[i + 1]).with_engines(engine)
        if per_agent is not None:
            agent.max_concurrency(per_agent)
    await flock.publish_many([STAGES[0](text=f"ticket {k}", n=k) for k in range(inputs)])
    wall0 = time.perf_counter()
    await flock.run_until_idle(raise_on_error=True)
    wall = time.perf_counter() - wall0
    done = len(await flock.store.get_by_type(STAGES[HOPS]))
    assert done == inputs, done
    return {"wall_s": round(wall, 2), "model_calls": HOPS * inputs}


async def main(inputs: int, latency: float, settings: list[int | None]) -> None:
    server = os.path.join(os.path.dirname(__file__), "bench_engine.py")
    command = [sys.executable, server, "--serve", str(latency)]
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)  # noqa: ASYNC220
    try:
        assert proc.stdout is not None
        base = f"http://127.0.0.1:{int(proc.stdout.readline())}/v1"
        await run(base, 4, None)  # warm up: imports, client pools
        rows = {}
        for setting in settings:
            rows["default" if setting is None else str(setting)] = await run(base, inputs, setting)
    finally:
        proc.terminate()
        proc.wait(timeout=5)
    print(
        json.dumps(
            {
                "machine": {"cpus": os.cpu_count(), "load_average": os.getloadavg()},
                "inputs": inputs,
                "hops": HOPS,
                "latency_s": latency,
                "flock_global_max_concurrency": Flock().max_concurrency,
                "agent_default_max_concurrency": AgentSpec(name="x").max_concurrency,
                "critical_path_s": HOPS * latency,
                "wall_s_by_agent_max_concurrency": rows,
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    if len(sys.argv) >= 3 and sys.argv[1] == "--serve":
        serve(float(sys.argv[2]))
    parser = argparse.ArgumentParser()
    parser.add_argument("--inputs", type=int, default=100)
    parser.add_argument("--latency", type=float, default=0.5)
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    asyncio.run(main(40 if args.quick else args.inputs, args.latency, [4, 8, 16, 32, 64, None]))
