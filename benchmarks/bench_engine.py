"""DSPy engine benchmark. Prints one JSON document.

Measures
1. prompt size per call (characters, and tokens estimated as characters / 4) for a Task -> Report agent
   and a fan-out agent (Task -> 5 Idea) under each adapter;
2. CPU per model call of engine + DSPy (``engine.evaluate``) and of framework + engine + DSPy
   (``Flock.invoke``) against a zero-latency model;
3. a 5-agent chain (Stage0 -> ... -> Stage5) over 200 inputs through a local OpenAI-compatible HTTP
   server (a separate process) at 0 ms and 50 ms latency, against max(critical path, total CPU);
4. the ChatAdapter request size of the one-field hop Stage0(text, n) -> Stage1(text, n).

Run: ``python benchmarks/bench_engine.py`` (``--quick`` for fewer iterations).
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import resource
import subprocess
import sys
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

from pydantic import BaseModel, Field

from flock import DSPyEngine, Flock, flock_type

ADAPTERS = ["chat", "json", "xml", "two_step", "baml"]


@flock_type
class Task(BaseModel):
    title: str
    details: str
    priority: int = Field(ge=1, le=5)


@flock_type
class Report(BaseModel):
    summary: str
    findings: list[str]
    confidence: float = Field(ge=0, le=1)


@flock_type
class Idea(BaseModel):
    title: str
    pitch: str


STAGES: list[type[BaseModel]] = []
for _i in range(6):
    STAGES.append(flock_type(type(f"Stage{_i}", (BaseModel,), {"__annotations__": {"text": str, "n": int}})))

TASK = Task(
    title="Quarterly churn review", details="Find why churn rose in the SMB segment in Q3.", priority=2
)


def _adapter(name: str) -> Any:
    import dspy
    from dspy.adapters.baml_adapter import BAMLAdapter

    return {
        "chat": None,
        "json": dspy.JSONAdapter(),
        "xml": dspy.XMLAdapter(),
        "two_step": dspy.TwoStepAdapter,
        "baml": BAMLAdapter(),
    }[name]


# --------------------------------------------------------------------------- 1 + 4: prompt sizes


async def prompt_sizes() -> dict[str, Any]:
    from flock.testing import TestModel

    out: dict[str, Any] = {}
    for adapter in ADAPTERS:
        row: dict[str, Any] = {}
        for label, fan_out, output in (("task_to_report", None, Report), ("fan_out_5_ideas", 5, Idea)):
            model = TestModel()
            flock = Flock()
            flock.agent("a").description("Analyse the task.").consumes(Task).publishes(
                output, fan_out=fan_out
            ).with_engines(DSPyEngine(model, adapter=_adapter(adapter)))
            await flock.invoke("a", TASK, publish_outputs=False)
            sizes = [sum(len(m["content"]) for m in c.messages) for c in model.calls]
            row[label] = {
                "calls": len(sizes),
                "chars_per_call": sizes,
                "est_tokens_per_call": [s // 4 for s in sizes],
            }
        out[adapter] = row
    return out


async def one_field_hop() -> dict[str, Any]:
    from flock.testing import TestModel

    model = TestModel()
    flock = Flock()
    flock.agent("hop").consumes(STAGES[0]).publishes(STAGES[1]).with_engines(DSPyEngine(model))
    await flock.invoke("hop", STAGES[0](text="hello world", n=1), publish_outputs=False)
    chars = sum(len(m["content"]) for m in model.calls[0].messages)
    return {"adapter": "chat", "request_chars": chars, "target_chars": 850, "ok": chars <= 850}


# --------------------------------------------------------------------------- 2: CPU per call


def _constant_lm(text: str) -> Any:
    """A zero-latency dspy.LM that always answers ``text`` (no offline machinery, no network)."""
    import dspy
    from dspy.lm15 import Message, Response, TextPart, Usage

    response = Response(
        id="c",
        model="const",
        message=Message.assistant([TextPart(text)]),
        finish_reason="stop",
        usage=Usage(input_tokens=100, output_tokens=20, total_tokens=120),
    )

    class Engine:
        def complete(self, request: Any) -> Any:
            return response

        def stream(self, request: Any) -> Any:
            raise NotImplementedError

        def close(self) -> None:
            return None

    class AsyncEngine:
        async def complete(self, request: Any) -> Any:
            return response

        async def stream(self, request: Any) -> Any:
            raise NotImplementedError
            yield

        async def aclose(self) -> None:
            return None

    return dspy.LM("const", engine=Engine(), async_engine=AsyncEngine(), cache=False, num_retries=0)


async def cpu_per_call(n: int) -> dict[str, Any]:
    from flock._components import Context, EvalInputs
    from flock._types import type_name

    answer = (
        '[[ ## report ## ]]\n{"summary": "Churn rose with pricing.", "findings": ["price"], '
        '"confidence": 0.7}\n\n[[ ## completed ## ]]\n'
    )
    engine = DSPyEngine(_constant_lm(answer))
    flock = Flock()
    flock.agent("a").description("Analyse the task.").consumes(Task).publishes(Report).with_engines(engine)
    spec = flock.agents[0]
    from flock._artifact import Artifact

    inputs = EvalInputs([Artifact(type=type_name(Task), payload=TASK.model_dump())], [TASK])
    ctx = Context(agent="a", identity=spec.identity, correlation_id="c", subscription=0)
    for _ in range(20):  # warm caches (signature, program, pydantic schemas)
        await engine.evaluate(spec, ctx, inputs, spec.output_groups[0])
    start = time.process_time()
    for _ in range(n):
        await engine.evaluate(spec, ctx, inputs, spec.output_groups[0])
    engine_ms = (time.process_time() - start) * 1000 / n
    start = time.process_time()
    for _ in range(n):
        await flock.invoke("a", TASK, publish_outputs=False)
    flock_ms = (time.process_time() - start) * 1000 / n
    return {
        "calls": n,
        "engine_plus_dspy_cpu_ms_per_call": round(engine_ms, 3),
        "framework_engine_dspy_cpu_ms_per_call": round(flock_ms, 3),
        "target_ms": 3.0,
        "ok": flock_ms <= 3.0,
    }


# --------------------------------------------------------------------------- 3: the chain


def serve(latency: float) -> None:
    """Child process: a minimal OpenAI-compatible server answering the chain's ChatAdapter prompts."""
    wanted = re.compile(r"starting with the field `\[\[ ## (\w+) ## \]\]`")

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_POST(self) -> None:
            body = json.loads(self.rfile.read(int(self.headers.get("Content-Length") or 0)))
            prompt = str(body["messages"][-1]["content"])
            m = wanted.search(prompt)
            field = m.group(1) if m else "answer"
            if latency:
                time.sleep(latency)
            text = f'[[ ## {field} ## ]]\n{{"text": "carried on", "n": 1}}\n\n[[ ## completed ## ]]'
            data = json.dumps(
                {
                    "id": "x",
                    "object": "chat.completion",
                    "created": 0,
                    "model": body.get("model"),
                    "choices": [
                        {
                            "index": 0,
                            "message": {"role": "assistant", "content": text},
                            "finish_reason": "stop",
                        }
                    ],
                    "usage": {"prompt_tokens": len(prompt) // 4, "completion_tokens": 12, "total_tokens": 0},
                }
            ).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format: str, *args: Any) -> None:
            return None

    class Server(ThreadingHTTPServer):
        request_queue_size = 512
        daemon_threads = True

    httpd = Server(("127.0.0.1", 0), Handler)
    print(httpd.server_address[1], flush=True)
    httpd.serve_forever()


async def chain(inputs: int, latency: float) -> dict[str, Any]:
    # Started before the run is timed; blocking here is fine.
    command = [sys.executable, __file__, "--serve", str(latency)]
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)  # noqa: ASYNC220
    try:
        assert proc.stdout is not None
        port = int(proc.stdout.readline())
        base = f"http://127.0.0.1:{port}/v1"
        engine = DSPyEngine("openai/bench", lm_kwargs={"api_base": base, "api_key": "k"})
        flock = Flock(max_concurrency=inputs)  # "enough concurrency": every input may be in flight
        for i in range(5):
            flock.agent(f"stage{i}").consumes(STAGES[i]).publishes(STAGES[i + 1]).with_engines(
                engine
            ).max_concurrency(inputs)
        await flock.publish_many([STAGES[0](text=f"input {k}", n=k) for k in range(inputs)])
        cpu0, wall0 = time.process_time(), time.perf_counter()
        await flock.run_until_idle(raise_on_error=True)
        wall = time.perf_counter() - wall0
        cpu = time.process_time() - cpu0
        done = len(await flock.store.get_by_type(STAGES[5]))
    finally:
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        proc.terminate()
        proc.wait(timeout=5)
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
    server_cpu = (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)
    critical = 5 * latency
    bound = max(critical, cpu)
    return {
        "latency_ms": latency * 1000,
        "inputs": inputs,
        "model_calls": 5 * inputs,
        "outputs": done,
        "wall_s": round(wall, 3),
        "cpu_s": round(cpu, 3),
        "critical_path_s": critical,
        "ratio_to_max_critical_cpu": round(wall / bound, 3),
        "target_ratio": 1.2,
        "cpu_ms_per_call": round(cpu * 1000 / (5 * inputs), 3),
        "server_process_cpu_s": round(server_cpu, 3),
    }


async def main(quick: bool) -> None:
    results = {
        "machine": {"cpus": os.cpu_count(), "load_average_before": os.getloadavg()},
        "prompt_size": await prompt_sizes(),
        "one_field_hop": await one_field_hop(),
        "cpu_per_call": await cpu_per_call(100 if quick else 500),
        "chain_0ms": await chain(200, 0.0),
        "chain_50ms": await chain(200, 0.05),
    }
    results["machine"]["load_average_after"] = os.getloadavg()  # type: ignore[index]
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    if len(sys.argv) >= 3 and sys.argv[1] == "--serve":
        serve(float(sys.argv[2]))
    else:
        import logging

        logging.getLogger("flock").setLevel(logging.ERROR)
        asyncio.run(main("--quick" in sys.argv))
