"""Spans shaped like Flock's instrumentation emits them, on a private TracerProvider.

A pipeline with an external input, a multi-output agent with fan-out (planner → Plan + 3 Tasks),
three workers (model and tool calls, one contract re-ask, one failure) and a join (reviewer, woken by
two Results, the second linked). Times are explicit so the waterfall has a stable shape.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExporter
from opentelemetry.trace import Link, Span, Status, StatusCode

MS = 1_000_000
FAKE_KEY = "sk-test-FAKE0123456789abcdefXYZ"


class Recorder:
    def __init__(self, exporter: SpanExporter, t0: int = 1_790_000_000_000 * MS) -> None:
        self.provider = TracerProvider()
        self.provider.add_span_processor(SimpleSpanProcessor(exporter))
        self.tracer = self.provider.get_tracer("flock")
        self.t0 = t0

    @contextmanager
    def span(
        self,
        name: str,
        start_ms: float,
        end_ms: float,
        parent: Span | None = None,
        links: list[Link] | None = None,
        **attributes: Any,
    ) -> Iterator[Span]:
        context = trace.set_span_in_context(parent) if parent is not None else None
        span = self.tracer.start_span(
            name,
            context=context,
            links=links or [],
            attributes={k.replace("__", "."): v for k, v in attributes.items()},
            start_time=self.t0 + int(start_ms * MS),
        )
        yield span
        span.end(end_time=self.t0 + int(end_ms * MS))


def record_run(
    exporter: SpanExporter,
    *,
    capture_content: bool = False,
    api_key: str = FAKE_KEY,
    name: str = "research",
    t0: int | None = None,
) -> str:
    """Record one run; returns its trace id (hex)."""
    rec = Recorder(exporter) if t0 is None else Recorder(exporter, t0)
    cid = str(uuid.uuid4())

    def publish(parent: Span, at: float, type_name: str, by: str) -> Span:
        with rec.span(
            f"flock.publish {type_name}",
            at,
            at + 0.3,
            parent,
            flock__artifact__id=str(uuid.uuid4()),
            flock__artifact__type=type_name,
            flock__correlation_id=cid,
            flock__produced_by=by,
        ) as span:
            return span

    def chat(parent: Span, start: float, end: float, tokens_in: int, tokens_out: int, prompt: str) -> None:
        content: dict[str, Any] = {}
        if capture_content:
            content = {
                "gen_ai__input__messages": json.dumps([{"role": "user", "parts": [{"content": prompt}]}]),
                "gen_ai__output__messages": json.dumps([{"role": "assistant", "parts": [{"content": "ok"}]}]),
            }
        with rec.span(
            "chat gpt-4.1",
            start,
            end,
            parent,
            gen_ai__operation__name="chat",
            gen_ai__provider__name="openai",
            gen_ai__request__model="gpt-4.1",
            gen_ai__usage__input_tokens=tokens_in,
            gen_ai__usage__output_tokens=tokens_out,
            gen_ai__response__finish_reasons=["stop"],
            **content,
        ):
            pass

    def activation(agent: str, cause: Span, start: float, end: float, types: list[str], links=None):
        return rec.span(
            f"flock.activate {agent}",
            start,
            end,
            cause,
            links,
            flock__agent=agent,
            flock__subscription=0,
            flock__input__ids=[str(uuid.uuid4()) for _ in types],
            flock__input__types=types,
            flock__correlation_id=cid,
        )

    with rec.span(f"flock.run {name}", 0, 900, flock__run__name=name) as run:
        idea = publish(run, 1, "Idea", "external")
        with activation("planner", idea, 2, 200, ["Idea"]) as act:
            with rec.span(
                "flock.evaluate planner", 3, 195, act, flock__engine=["DSPyEngine"], flock__output_group=0
            ) as ev:
                chat(ev, 5, 190, 420, 180, "plan the research on bees")
            publish(act, 196, "Plan", "planner")
            tasks = [publish(act, 197 + i, "Task", "planner") for i in range(3)]
        results = []
        for i, task in enumerate(tasks):
            start = 205 + i * 10
            with activation("worker", task, start, start + 400, ["Task"]) as act:
                with rec.span(
                    "flock.evaluate worker", start + 1, start + 390, act, flock__engine=["DSPyEngine"]
                ) as ev:
                    chat(ev, start + 2, start + 150, 300, 90, f"task {i}")
                    with rec.span(
                        "execute_tool web_search",
                        start + 151,
                        start + 250,
                        ev,
                        gen_ai__operation__name="execute_tool",
                        gen_ai__tool__name="web_search",
                        gen_ai__tool__call__id=f"call_{i}",
                    ):
                        pass
                    if i == 2:  # contract violation: re-ask, then give up
                        with rec.span(
                            "flock.reask",
                            start + 251,
                            start + 380,
                            ev,
                            flock__reask__attempt=1,
                            flock__reask__errors=["expected exactly 1 Result, got 0"],
                        ) as reask:
                            chat(reask, start + 252, start + 379, 350, 20, "again")
                        error = RuntimeError(f"AuthenticationError: Incorrect API key provided: {api_key}")
                        ev.record_exception(error)
                        ev.set_status(Status(StatusCode.ERROR, str(error)))
                        act.set_attribute("flock.error.kind", "ContractViolation")
                        act.set_status(
                            Status(StatusCode.ERROR, "ContractViolation: expected exactly 1 Result")
                        )
                    else:
                        chat(ev, start + 251, start + 380, 200, 60, "finish")
                if i < 2:
                    results.append(publish(act, start + 395, "Result", "worker"))
        first, second = results
        with activation(
            "reviewer", second, 640, 880, ["Result", "Result"], links=[Link(first.get_span_context())]
        ) as act:
            with rec.span("flock.evaluate reviewer", 641, 870, act, flock__engine=["DSPyEngine"]) as ev:
                chat(ev, 642, 860, 800, 250, "review")
            publish(act, 875, "Report", "reviewer")
        run.set_attribute("flock.run.activations", 5)
        run.set_attribute("flock.run.artifacts", 8)
        run.set_attribute("flock.run.errors", 1)
    rec.provider.force_flush()
    return format(run.get_span_context().trace_id, "032x")
