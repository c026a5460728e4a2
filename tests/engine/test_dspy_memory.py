"""Flock's engine calls leave nothing in DSPy's process-wide trace or history (issue 10, defect 15).

DSPy appends every Predict call's inputs and outputs to ``dspy.settings.trace`` (up to 10,000 calls)
and, unless disabled, every model call to its global history; both outlive the Flock."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import dspy
import pytest
from dspy.clients import base_lm
from engine_support import Summary, Task
from openai_server import OpenAIServer

from flock import DSPyEngine, Flock

pytestmark = pytest.mark.anyio
ROOT = Path(__file__).resolve().parents[2]


async def test_calls_through_http_leave_no_trace_or_history() -> None:
    trace_before, history_before = len(dspy.settings.trace), len(base_lm.GLOBAL_HISTORY)
    with OpenAIServer() as server:
        server.always('[[ ## summary ## ]]\n{"text": "done"}\n\n[[ ## completed ## ]]')
        flock = Flock("openai/m", lm_kwargs={"api_base": server.base_url, "api_key": "k"})
        flock.agent("a").consumes(Task).publishes(Summary).with_engines(DSPyEngine())
        await flock.publish_many([Task(text=f"task {i}") for i in range(20)])
        summary = await flock.run_until_idle()
    assert summary.ok and len(server.requests) == 20
    assert len(dspy.settings.trace) == trace_before  # before: one entry per call
    assert len(base_lm.GLOBAL_HISTORY) == history_before


# A fresh process: no tracer provider, no other test's leftovers in the measurement.
MEASURE = """
import asyncio, gc, json, sys, tracemalloc
import dspy
from dspy.clients import base_lm
from pydantic import BaseModel
from flock import Flock, flock_type

@flock_type
class Task(BaseModel):
    text: str

@flock_type
class Summary(BaseModel):
    text: str

async def run(inputs):
    flock = Flock()
    flock.agent("a").consumes(Task).publishes(Summary)
    await flock.publish_many([Task(text=f"task {i} " + "x" * 2_000) for i in range(inputs)])
    assert (await flock.run_until_idle()).ok

async def main():
    await run(5)  # imports, tables and caches that stay for any user of DSPy
    gc.collect()
    tracemalloc.start()
    start, _ = tracemalloc.get_traced_memory()
    await run(60)
    # The worker threads that served the model calls let go of their last call a moment after
    # the run returns: measure what stays, not what is still on its way out.
    await asyncio.sleep(0.2)
    gc.collect()
    kept, _ = tracemalloc.get_traced_memory()
    print(json.dumps({"kept_bytes": kept - start, "trace": len(dspy.settings.trace),
                      "history": len(base_lm.GLOBAL_HISTORY)}))

asyncio.run(main())
"""


def test_a_finished_flock_leaves_its_inputs_nowhere() -> None:
    done = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(MEASURE)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    got = json.loads(done.stdout.strip().splitlines()[-1])
    assert got["trace"] == 0 and got["history"] == 0  # before: 65 trace entries
    # 60 inputs of 2 kB: DSPy's trace alone held them all (about 300 kB measured before the fix).
    assert got["kept_bytes"] < 60 * 2_000 // 2, got
