"""The span tree of a multi-agent run: causality, fan-out, multi-output, gates, failures."""

from __future__ import annotations

import anyio
import pytest
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import StatusCode
from pydantic import BaseModel

from flock import Flock


class Topic(BaseModel):
    name: str


class Idea(BaseModel):
    text: str


class Summary(BaseModel):
    text: str


class Score(BaseModel):
    value: int


class Verdict(BaseModel):
    text: str


def _parent(span: ReadableSpan, by_id: dict[int, ReadableSpan]) -> ReadableSpan | None:
    return by_id.get(span.parent.span_id) if span.parent else None


def _run(flock: Flock, *items: BaseModel) -> None:
    async def go() -> None:
        async with flock.traced_run("tree"):
            for item in items:
                await flock.publish(item)
            await flock.run_until_idle()

    anyio.run(go)


def test_a_run_is_one_trace_and_activations_hang_under_their_causes(spans: InMemorySpanExporter) -> None:
    flock = Flock()
    flock.agent("brainstorm").consumes(Topic).publishes(Idea, fan_out=3).calls(
        lambda t: [Idea(text=f"{t.name} {i}") for i in range(3)]
    )
    flock.agent("judge").consumes(Idea).publishes(Summary, Score).calls(
        lambda i: [Summary(text=i.text), Score(value=len(i.text))]
    )
    _run(flock, Topic(name="bees"))

    finished = spans.get_finished_spans()
    by_id = {s.context.span_id: s for s in finished}
    assert len({s.context.trace_id for s in finished}) == 1
    (root,) = [s for s in finished if s.parent is None]
    assert root.name == "flock.run tree"
    assert root.attributes["flock.run.activations"] == 4
    assert root.attributes["flock.run.artifacts"] == 1 + 3 + 6

    judge_runs = [s for s in finished if s.name == "flock.activate judge"]
    assert len(judge_runs) == 3
    for activation in judge_runs:
        cause = _parent(activation, by_id)
        assert cause is not None and cause.name == "flock.publish Idea"
        assert list(activation.attributes["flock.input.ids"]) == [cause.attributes["flock.artifact.id"]]
        producer = _parent(cause, by_id)
        assert producer is not None and producer.name == "flock.activate brainstorm"
        under = activation.context.span_id
        children = sorted(s.name for s in finished if s.parent and s.parent.span_id == under)
        # multi-output: one engine evaluation, one publish span per output
        assert children == ["flock.evaluate judge", "flock.publish Score", "flock.publish Summary"]


def test_a_gate_activation_links_its_other_inputs(spans: InMemorySpanExporter) -> None:
    flock = Flock()
    flock.agent("decide").consumes(Summary, Score).publishes(Verdict).calls(
        lambda s, sc: Verdict(text=f"{s.text}:{sc.value}")
    )

    async def go() -> None:
        async with flock.traced_run("gate"):
            summary = await flock.publish(Summary(text="ok"), correlation_id="w1")
            score = await flock.publish(Score(value=3), correlation_id="w1")
            await flock.run_until_idle()
            assert summary.id != score.id

    anyio.run(go)
    finished = spans.get_finished_spans()
    by_id = {s.context.span_id: s for s in finished}
    (activation,) = [s for s in finished if s.name == "flock.activate decide"]
    cause = _parent(activation, by_id)
    assert cause is not None and cause.name == "flock.publish Score"  # the artifact that completed the gate
    (link,) = activation.links
    (summary_span,) = [s for s in finished if s.name == "flock.publish Summary"]
    assert link.context.span_id == summary_span.context.span_id


def test_a_failing_activation_is_marked_and_its_error_is_published(spans: InMemorySpanExporter) -> None:
    flock = Flock()

    def broken(topic: Topic) -> Idea:
        raise RuntimeError("model on fire")

    flock.agent("broken").consumes(Topic).publishes(Idea).calls(broken)
    _run(flock, Topic(name="x"))
    finished = spans.get_finished_spans()
    (activation,) = [s for s in finished if s.name == "flock.activate broken"]
    assert activation.status.status_code is StatusCode.ERROR
    assert activation.attributes["flock.error.kind"] == "agent_error"
    assert any(e.name == "exception" for e in activation.events)
    (error_publish,) = [s for s in finished if s.name == "flock.publish flock.WorkflowError"]
    assert error_publish.parent is not None and error_publish.parent.span_id == activation.context.span_id
    (root,) = [s for s in finished if s.parent is None]
    assert root.attributes["flock.run.errors"] == 1


@pytest.mark.parametrize("traced", [False, True])
def test_payloads_are_not_copied_into_spans(spans: InMemorySpanExporter, traced: bool) -> None:
    flock = Flock()
    flock.agent("echo").consumes(Topic).publishes(Idea).calls(lambda t: Idea(text=t.name))
    _run(flock, Topic(name="secret-payload-sk-test-123"))
    for span in spans.get_finished_spans():
        for value in span.attributes.values():
            assert "secret-payload" not in str(value)
