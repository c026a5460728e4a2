"""MCP benchmark. Prints one JSON document.

Measures, with the offline model (a ReAct loop that calls one tool, then finishes):
1. ``start_s``: the first activation of an agent with ``.with_mcp(...)`` over stdio, which starts the
   server process, connects and lists the tools, minus the same activation once connected;
2. ``activation_ms``: wall time per activation (median of N, one at a time) with the tool from an MCP
   server over stdio, and with the same function as ``.with_tools([...])``; the difference is the
   cost of one MCP round trip plus its span;
3. ``concurrent``: N activations at once on the one shared session, and their wall time.

Run: ``python benchmarks/bench_mcp.py [--n 50]`` (needs ``pip install 'flock[mcp]'``).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

import anyio
from pydantic import BaseModel

from flock import DSPyEngine, Flock
from flock.testing import FunctionModel

SERVER = Path(__file__).resolve().parents[1] / "tests" / "mcp" / "mcp_tool_server.py"


class Pair(BaseModel):
    a: int
    b: int


class Total(BaseModel):
    value: int


def add(a: int, b: int) -> int:
    """Add two integers."""
    return a + b


def react(call: Any) -> Any:
    if "next_tool_name" not in call.output_fields:
        return call.values()
    if "observation_0" in str(call.inputs.get("trajectory") or ""):
        return {"next_thought": "done", "next_tool_name": "finish", "next_tool_args": {}}
    return {"next_thought": "add", "next_tool_name": "add", "next_tool_args": {"a": 2, "b": 3}}


def flock_with(tools: str) -> Flock:
    flock = Flock()
    agent = (
        flock.agent("adder").consumes(Pair).publishes(Total).with_engines(DSPyEngine(FunctionModel(react)))
    )
    if tools == "mcp":
        agent.with_mcp([sys.executable, str(SERVER)], allow=["add"])
    else:
        agent.with_tools([add])
    return flock


async def timed_invokes(flock: Flock, n: int) -> list[float]:
    times = []
    for i in range(n):
        started = time.perf_counter()
        await flock.invoke("adder", Pair(a=i, b=1))
        times.append(time.perf_counter() - started)
    return times


async def main(n: int) -> dict[str, Any]:
    out: dict[str, Any] = {"n": n}
    async with flock_with("mcp") as flock:
        first = await timed_invokes(flock, 1)
        mcp_times = await timed_invokes(flock, n)
        started = time.perf_counter()
        async with anyio.create_task_group() as tg:
            for i in range(n):
                tg.start_soon(flock.invoke, "adder", Pair(a=i, b=2))
        out["concurrent"] = {"activations": n, "wall_s": round(time.perf_counter() - started, 3)}
    async with flock_with("function") as flock:
        await timed_invokes(flock, 1)  # warm up
        function_times = await timed_invokes(flock, n)
    out["start_s"] = round(first[0] - statistics.median(mcp_times), 3)
    out["activation_ms"] = {
        "mcp_stdio": round(statistics.median(mcp_times) * 1000, 2),
        "function_tool": round(statistics.median(function_times) * 1000, 2),
    }
    out["mcp_extra_ms_per_call"] = round(
        out["activation_ms"]["mcp_stdio"] - out["activation_ms"]["function_tool"], 2
    )
    return out


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=50)
    print(json.dumps(anyio.run(main, parser.parse_args().n), indent=2))
