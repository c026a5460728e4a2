"""The contract under noise: a fake model that is wrong 20% of the time. Prints one JSON document.

A local OpenAI-compatible server (a thread of this process, on 127.0.0.1) answers every request with
a valid JSON answer built from the request's ``response_format`` schema (the engine sends one: its
default ``structured_outputs="auto"``), except that, drawn at random per request (seeded):

* ``--wrong`` of the answers (default 10%) have a wrong count: a fan-out array loses an item, an
  object answer loses a field;
* ``--garbage`` of the answers (default 10%) are prose with no JSON at all.

The kinds are dealt from a shuffled deck of 100 answers, so the rates hold exactly per 100 requests
(re-asks draw from the same deck).

Three workloads (``Idea -> Movie``, ``Topic -> exactly 3 Pitch``, ``Task -> Summary + Verdict``) run
``--n`` inputs each (default 200) with the default engine settings (ChatAdapter, ``max_reasks`` as
the engine defaults). Reported per workload: complete-valid % (every declared output published),
partial publications (some but not all outputs of an input: must be 0) and model calls per
activation. Target: ≥ 95% complete-valid, ≤ 1.3 calls per activation, 0 partial.

Run: ``.venv/bin/python benchmarks/bench_contract.py`` (``--n 50`` for a quick look).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import sys
import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_real_model import Idea, Movie, Pitch, Summary, Task, Topic, Verdict, workload

from flock import DSPyEngine, Flock
from flock._engine.offline_values import Faker


class NoisyModel:
    """Answers from the request's schema; a seeded share of answers is wrong or garbage."""

    def __init__(self, wrong: float, garbage: float, seed: int = 7) -> None:
        self.wrong, self.garbage = wrong, garbage
        self.rng = random.Random(seed)
        self.lock = threading.Lock()
        self.kinds: Counter[str] = Counter()
        self._deck: list[str] = []

    def _draw(self) -> str:
        """The next answer kind from a shuffled deck of 100, so the rates hold exactly per 100."""
        if not self._deck:
            bad, junk = round(100 * self.wrong), round(100 * self.garbage)
            self._deck = ["wrong"] * bad + ["garbage"] * junk + ["valid"] * (100 - bad - junk)
            self.rng.shuffle(self._deck)
        return self._deck.pop()

    def answer(self, body: dict[str, Any]) -> str:
        fmt = body.get("response_format") or {}
        schema = fmt.get("schema") or (fmt.get("json_schema") or {}).get("schema") or {}
        with self.lock:
            kind = self._draw()
            faker = Faker(random.Random(self.rng.random()), "the request")
        faker.defs = dict(schema.get("$defs", {}))
        value = faker.obj(schema, 0) if schema else {}
        if kind == "garbage":
            self.kinds["garbage"] += 1
            return "Sure! Here is a great answer for you, written with care."
        if kind == "wrong":
            self.kinds["wrong"] += 1
            arrays = [k for k, v in value.items() if isinstance(v, list) and v]
            if arrays:
                value[arrays[0]] = value[arrays[0]][:-1]
            elif value:
                value.pop(next(iter(value)))
            return json.dumps(value)
        self.kinds["valid"] += 1
        return json.dumps(value)


def serve(model: NoisyModel) -> tuple[ThreadingHTTPServer, str]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_POST(self) -> None:
            body = json.loads(self.rfile.read(int(self.headers.get("Content-Length") or 0)))
            text = model.answer(body)
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
                    "usage": {"prompt_tokens": 100, "completion_tokens": 20, "total_tokens": 120},
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
        request_queue_size = 256
        daemon_threads = True

    httpd = Server(("127.0.0.1", 0), Handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    return httpd, f"http://127.0.0.1:{httpd.server_address[1]}/v1"


async def run(name: str, n: int, url: str, max_reasks: int | None = None) -> dict[str, Any]:
    extra = {} if max_reasks is None else {"max_reasks": max_reasks}
    engine = DSPyEngine("openai/noisy", lm_kwargs={"api_base": url, "api_key": "k"}, retries=0, **extra)
    flock = Flock()
    if name == "movie":
        flock.agent("director").consumes(Idea).publishes(Movie).with_engines(engine)
    elif name == "pitches":
        flock.agent("pitcher").consumes(Topic).publishes(Pitch, fan_out=3).with_engines(engine)
    else:
        flock.agent("reviewer").consumes(Task).publishes(Summary, Verdict).with_engines(engine)
    inputs, wanted = [], {}
    for i in range(n):
        value, wanted = workload(name, i)
        inputs.append(value)
    start = time.perf_counter()
    published = await flock.publish_many(inputs)
    summary = await flock.run_until_idle()
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
    calls = summary.metrics.get("model_calls", 0)
    return {
        "n": n,
        "complete_valid_pct": round(100 * complete / n, 1),
        "partial_publications": partial,
        "calls_per_activation": round(calls / max(1, summary.activations), 3),
        "wall_s": round(wall, 2),
    }


async def main(args: argparse.Namespace) -> dict[str, Any]:
    model = NoisyModel(args.wrong, args.garbage)
    httpd, url = serve(model)
    try:
        results = {
            name: await run(name, args.n, url, args.max_reasks) for name in ("movie", "pitches", "review")
        }
    finally:
        httpd.shutdown()
    ok = all(
        r["complete_valid_pct"] >= 95 and r["calls_per_activation"] <= 1.3 and r["partial_publications"] == 0
        for r in results.values()
    )
    return {
        "noise": {"wrong": args.wrong, "garbage": args.garbage, "answers": dict(model.kinds)},
        "max_reasks": DSPyEngine().max_reasks if args.max_reasks is None else args.max_reasks,
        "workloads": results,
        "target": "complete_valid_pct >= 95, calls_per_activation <= 1.3, partial_publications == 0",
        "ok": ok,
    }


if __name__ == "__main__":
    import logging

    logging.getLogger("flock").setLevel(logging.CRITICAL)
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=200)
    parser.add_argument("--wrong", type=float, default=0.10)
    parser.add_argument("--garbage", type=float, default=0.10)
    parser.add_argument("--max-reasks", type=int, default=None, help="default: the engine's default")
    print(json.dumps(asyncio.run(main(parser.parse_args())), indent=2))
