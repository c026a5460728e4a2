"""DSPy engine benchmark. Prints one JSON document.

Measures
1. prompt size per call (characters, and tokens estimated as characters / 4) for a Task -> Report agent
   and a fan-out agent (Task -> 5 Idea) under each adapter;
2. CPU per model call of engine + DSPy (``engine.evaluate``) and of framework + engine + DSPy
   (``Flock.invoke``) against a zero-latency model;
3. a 5-agent chain (Stage0 -> ... -> Stage5) over 200 inputs through a local OpenAI-compatible HTTP
   server (a separate process) at 0 ms and 50 ms latency, against max(critical path, total CPU);
4. the ChatAdapter request size of the one-field hop Stage0(text, n) -> Stage1(text, n);
5. ``fast_path``: CPU per hop through the local server for a model name the price table knows
   (``openai/gpt-4o-mini``) and one it does not (``openai/bench-local-model``), with the server's URL
   in ``lm_kwargs`` or in ``OPENAI_API_BASE``; each case in a fresh process with
   ``LITELLM_LOCAL_MODEL_COST_MAP`` unset, as a user's process runs: the first call's wall time, whether
   LiteLLM was imported, where DSPy's price table came from, and peak RSS.

Run: ``python benchmarks/bench_engine.py`` (``--quick`` for fewer iterations; ``--only fast_path,cpu``
for some sections: prompt, cpu, chain, fast_path).
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

if "--hop" not in sys.argv:  # a fast-path child runs as a user's process does
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
    from flock._core.components import Context, EvalInputs
    from flock._core.types import type_name

    answer = (
        '[[ ## report ## ]]\n{"summary": "Churn rose with pricing.", "findings": ["price"], '
        '"confidence": 0.7}\n\n[[ ## completed ## ]]\n'
    )
    engine = DSPyEngine(_constant_lm(answer))
    flock = Flock()
    flock.agent("a").description("Analyse the task.").consumes(Task).publishes(Report).with_engines(engine)
    spec = flock.agents[0]
    from flock._core.artifact import Artifact

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


# --------------------------------------------------------------------------- 5: the fast path

# model name, whether the server's URL comes from OPENAI_API_BASE (else lm_kwargs["api_base"])
FAST_PATH_CASES: dict[str, tuple[str, bool]] = {
    "known_model": ("openai/gpt-4o-mini", False),
    "unknown_model": ("openai/bench-local-model", False),
    "known_model_env_base": ("openai/gpt-4o-mini", True),
    "unknown_model_env_base": ("openai/bench-local-model", True),
}


async def hop_child(case: str, port: int, hops: int) -> None:
    """Child process: one agent, ``hops`` sequential hops through the loopback server; prints JSON.

    Runs with ``LITELLM_LOCAL_MODEL_COST_MAP`` unset, as a user's process would."""
    model, env_base = FAST_PATH_CASES[case]
    base = f"http://127.0.0.1:{port}/v1"
    lm_kwargs: dict[str, Any] = {"api_key": "k"}
    if env_base:
        os.environ["OPENAI_API_BASE"] = base
    else:
        lm_kwargs["api_base"] = base
    flock = Flock(model)
    flock.agent("hop").consumes(STAGES[0]).publishes(STAGES[1]).with_engines(DSPyEngine(lm_kwargs=lm_kwargs))
    wall0 = time.perf_counter()
    await flock.invoke("hop", STAGES[0](text="hello", n=0), publish_outputs=False)
    first = time.perf_counter() - wall0
    for _ in range(20):
        await flock.invoke("hop", STAGES[0](text="hello", n=0), publish_outputs=False)
    cpu0 = time.process_time()
    for i in range(hops):
        await flock.invoke("hop", STAGES[0](text="hello", n=i), publish_outputs=False)
    cpu = time.process_time() - cpu0
    from dspy.clients import model_metadata

    print(
        json.dumps(
            {
                "model": model,
                "url_from": "OPENAI_API_BASE" if env_base else "lm_kwargs",
                "first_call_s": round(first, 3),
                "cpu_ms_per_hop": round(cpu * 1000 / hops, 3),
                "litellm_imported": "litellm" in sys.modules,
                "price_table": model_metadata._source.get("source"),
                "price_table_download_failed": model_metadata._source.get("fallback_reason"),
                "max_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
            }
        )
    )


def fast_path(hops: int) -> dict[str, Any]:
    """Each case in a fresh process (imports, tables and caches are per process)."""
    server = subprocess.Popen([sys.executable, __file__, "--serve", "0"], stdout=subprocess.PIPE, text=True)
    env = {
        k: v for k, v in os.environ.items() if k not in ("LITELLM_LOCAL_MODEL_COST_MAP", "OPENAI_API_BASE")
    }
    env.pop("OPENAI_BASE_URL", None)
    out: dict[str, Any] = {"hops": hops}
    try:
        assert server.stdout is not None
        port = server.stdout.readline().strip()
        for case in FAST_PATH_CASES:
            done = subprocess.run(
                [sys.executable, __file__, "--hop", case, port, str(hops)],
                env=env,
                capture_output=True,
                text=True,
                timeout=600,
            )
            if done.returncode != 0:
                out[case] = {"error": done.stderr.strip().splitlines()[-1:]}
                continue
            out[case] = json.loads(done.stdout.strip().splitlines()[-1])
    finally:
        server.terminate()
        server.wait(timeout=5)
    return out


async def main(quick: bool, only: set[str]) -> None:
    results: dict[str, Any] = {"machine": {"cpus": os.cpu_count(), "load_average_before": os.getloadavg()}}
    if not only or "prompt" in only:
        results["prompt_size"] = await prompt_sizes()
        results["one_field_hop"] = await one_field_hop()
    if not only or "cpu" in only:
        results["cpu_per_call"] = await cpu_per_call(100 if quick else 500)
    if not only or "chain" in only:
        results["chain_0ms"] = await chain(200, 0.0)
        results["chain_50ms"] = await chain(200, 0.05)
    if not only or "fast_path" in only:
        results["fast_path"] = fast_path(100 if quick else 300)
    results["machine"]["load_average_after"] = os.getloadavg()  # type: ignore[index]
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    if len(sys.argv) >= 3 and sys.argv[1] == "--serve":
        serve(float(sys.argv[2]))
    elif len(sys.argv) >= 5 and sys.argv[1] == "--hop":
        asyncio.run(hop_child(sys.argv[2], int(sys.argv[3]), int(sys.argv[4])))
    else:
        import logging

        logging.getLogger("flock").setLevel(logging.ERROR)
        chosen = sys.argv[sys.argv.index("--only") + 1] if "--only" in sys.argv else ""
        asyncio.run(main("--quick" in sys.argv, {part for part in chosen.split(",") if part}))
