"""SpanPipeline: Flock's one export thread, fed records (lean spans) and SDK spans, scrubbing secrets once."""

from __future__ import annotations

import json
import logging
import re
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import StatusCode

from flock._tracing.lean_spans import FlockTracerProvider, LeanSpan
from flock._tracing.redact import REDACTED, Redactor
from flock._tracing.span_export import SpanPipeline
from flock._tracing.span_records import NAME, Record
from flock._tracing.trace_query import TraceStore
from flock._tracing.trace_store import SQLiteSpanExporter

ENV_SECRET = "opaque-secret-value-123456"
QUOTED_SECRET = 'quote"secret-value-42'  # escaped in JSON text: quote\"secret...
SHAPED_KEY = "sk-proj-NOTREAL0123456789abcdef"
BEARER_TOKEN = "tok3nABCDEFGHIJKLMNOP"
# what must not appear anywhere, in any escaping: distinctive tails of each secret
LEAKS = ("secret-value-123456", "secret-value-42", "NOTREAL0123456789", BEARER_TOKEN)


class RecordExporter(SpanExporter):
    """An exporter that takes records, as the trace store does."""

    def __init__(self) -> None:
        self.records: list[Record] = []
        self.batches = 0
        self.shutdowns = 0

    def export_records(self, records: Sequence[Record]) -> SpanExportResult:
        self.records.extend(records)
        self.batches += 1
        return SpanExportResult.SUCCESS

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        raise AssertionError("an exporter with export_records is given records")

    def shutdown(self) -> None:
        self.shutdowns += 1

    def force_flush(self, timeout_millis: int = 30_000) -> bool:
        return True

    def names(self) -> list[str]:
        return [r[NAME] for r in self.records]


class Failing(SpanExporter):
    def __init__(self) -> None:
        self.calls = 0

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        self.calls += 1
        raise RuntimeError("collector unreachable")

    def force_flush(self, timeout_millis: int = 30_000) -> bool:
        return True


@pytest.fixture
def pipelines() -> Iterator[Callable[..., SpanPipeline]]:
    """Make pipelines (no timed wake-ups unless asked) and shut them all down afterwards."""
    made: list[SpanPipeline] = []

    def make(
        exporters: Sequence[SpanExporter],
        *,
        max_queue: int = 65_536,
        batch: int = 2_048,
        delay_s: float = 600.0,
    ) -> SpanPipeline:
        # a long delay: the thread wakes only for a full batch (or shutdown), never on a timer
        pipeline = SpanPipeline(exporters, max_queue=max_queue, batch=batch, delay_s=delay_s)
        made.append(pipeline)
        return pipeline

    yield make
    for pipeline in made:
        pipeline.shutdown()


def records(*names: str, **attributes: str) -> list[Record]:
    """Records of finished lean spans, one per name."""
    made: list[Record] = []
    provider = FlockTracerProvider(shutdown_on_exit=False)
    processor = SpanProcessor()
    provider.add_span_processor(processor)
    provider.use_lean_spans(processor, made.append)
    tracer = provider.get_tracer("flock")
    for name in names:
        tracer.start_span(name, attributes=attributes).end()
    return made


def wait_for(condition: Callable[[], bool], timeout_s: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.005)
    return condition()


def stored_bytes(db: Path) -> bytes:
    return b"".join(p.read_bytes() for p in sorted(db.parent.glob(db.name + "*")))


# ---------------------------------------------------------------------------------------------- delivery


def test_records_and_sdk_spans_reach_every_kind_of_exporter(
    tmp_path: Path, pipelines: Callable[..., SpanPipeline]
) -> None:
    db = tmp_path / "traces.db"
    taker, memory = RecordExporter(), InMemorySpanExporter()
    pipeline = pipelines([taker, memory, SQLiteSpanExporter(db)])
    provider = FlockTracerProvider(shutdown_on_exit=False)
    provider.add_span_processor(pipeline)
    provider.use_lean_spans(pipeline, pipeline.emit)  # as enable_tracing wires it
    flock, other = provider.get_tracer("flock"), provider.get_tracer("other.lib")
    with flock.start_as_current_span("flock.run demo", attributes={"flock.run.name": "demo"}) as run:
        assert isinstance(run, LeanSpan)
        with other.start_as_current_span("http POST") as call:
            assert not isinstance(call, LeanSpan)
            with flock.start_as_current_span("flock.publish Idea"):
                pass
    assert pipeline.force_flush(5_000)

    assert sorted(taker.names()) == ["flock.publish Idea", "flock.run demo", "http POST"]
    assert all(type(r) is tuple for r in taker.records)
    finished = memory.get_finished_spans()
    assert all(isinstance(s, ReadableSpan) for s in finished)
    assert sorted(s.name for s in finished) == sorted(taker.names())

    pipeline.shutdown()
    trace_id = format(run.get_span_context().trace_id, "032x")
    with TraceStore(db) as store:
        assert store.resolve("latest") == trace_id
        loaded = store.load(trace_id)
    (root,) = loaded.roots
    assert root.name == "flock.run demo"
    assert [c.name for c in root.children] == ["http POST"]
    assert [c.name for c in root.children[0].children] == ["flock.publish Idea"]
    assert root.attributes == {"flock.run.name": "demo"}


def test_a_full_batch_is_exported_without_a_flush(pipelines: Callable[..., SpanPipeline]) -> None:
    taker = RecordExporter()
    pipeline = pipelines([taker], batch=3)
    for record in records("a", "b", "c"):
        pipeline.emit(record)
    assert wait_for(lambda: len(taker.records) == 3), "the export thread did not wake for a full batch"
    assert taker.names() == ["a", "b", "c"]
    assert taker.batches == 1


def test_a_full_queue_drops_spans_and_says_how_many(
    pipelines: Callable[..., SpanPipeline], caplog: pytest.LogCaptureFixture
) -> None:
    taker = RecordExporter()
    pipeline = pipelines([taker], max_queue=3, batch=100)
    with caplog.at_level(logging.WARNING, logger="flock.tracing"):
        for record in records("1", "2", "3", "4", "5"):
            pipeline.emit(record)
        assert pipeline.force_flush(5_000)
        pipeline.emit(records("6")[0])  # room again
        assert pipeline.force_flush(5_000)
    assert taker.names() == ["1", "2", "3", "6"]
    warnings = [r for r in caplog.records if r.name == "flock.tracing" and r.levelno == logging.WARNING]
    assert len(warnings) == 1  # said once, and the count starts again
    assert "2 spans were dropped" in warnings[0].getMessage()


def test_a_failing_exporter_stops_neither_the_others_nor_later_batches(
    pipelines: Callable[..., SpanPipeline], caplog: pytest.LogCaptureFixture
) -> None:
    failing, taker, memory = Failing(), RecordExporter(), InMemorySpanExporter()
    pipeline = pipelines([failing, taker, memory], batch=2)
    with caplog.at_level(logging.ERROR, logger="flock.tracing"):
        for record in records("a", "b"):
            pipeline.emit(record)
        assert wait_for(lambda: len(memory.get_finished_spans()) == 2)
        for record in records("c", "d", "e", "f"):  # the thread is still there for the next batches
            pipeline.emit(record)
        assert wait_for(lambda: len(memory.get_finished_spans()) == 6)
        pipeline.emit(records("g")[0])
        assert pipeline.force_flush(5_000)
    names = ["a", "b", "c", "d", "e", "f", "g"]
    assert taker.names() == names
    assert [s.name for s in memory.get_finished_spans()] == names
    failures = [r for r in caplog.records if r.name == "flock.tracing" and r.levelno == logging.ERROR]
    assert len(failures) == failing.calls >= 3  # one per batch, each logged with its traceback
    assert all(r.exc_info is not None and "collector unreachable" in str(r.exc_info[1]) for r in failures)
    counts = [re.fullmatch(r"Failing failed to export (\d+) spans", r.getMessage()) for r in failures]
    assert sum(int(m.group(1)) for m in counts if m is not None) == len(names)


def test_shutdown_exports_what_is_queued_then_drops_new_spans(pipelines: Callable[..., SpanPipeline]) -> None:
    taker, memory = RecordExporter(), InMemorySpanExporter()
    pipeline = pipelines([taker, memory])
    for record in records("queued 1", "queued 2"):
        pipeline.emit(record)
    assert taker.records == []  # nothing flushed yet: no full batch, no timed wake-up
    pipeline.shutdown()
    assert taker.names() == ["queued 1", "queued 2"]
    assert [s.name for s in memory.get_finished_spans()] == ["queued 1", "queued 2"]
    assert taker.shutdowns == 1
    assert memory.export([]) is SpanExportResult.FAILURE  # the in-memory exporter was shut down too
    assert not pipeline._thread.is_alive()

    pipeline.emit(records("late")[0])
    pipeline.force_flush(1_000)
    pipeline.shutdown()  # a second time: nothing happens
    assert taker.names() == ["queued 1", "queued 2"]
    assert taker.shutdowns == 1
    assert "queued=0" in repr(pipeline)


def test_unsampled_sdk_spans_are_not_exported(pipelines: Callable[..., SpanPipeline]) -> None:
    from opentelemetry.sdk.trace.sampling import ALWAYS_OFF, ALWAYS_ON

    taker = RecordExporter()
    pipeline = pipelines([taker])
    for sampler, name in ((ALWAYS_OFF, "dropped"), (ALWAYS_ON, "kept")):
        provider = TracerProvider(sampler=sampler, shutdown_on_exit=False)
        provider.add_span_processor(pipeline)
        provider.get_tracer("other.lib").start_span(name).end()
    assert pipeline.force_flush(5_000)
    assert taker.names() == ["kept"]


# ---------------------------------------------------------------------------------------------- secrets


def leaky_spans(flock: trace.Tracer, other: trace.Tracer) -> None:
    """One lean span and one SDK span, each with secrets in every place a value can hide."""
    for tracer, name in ((flock, "flock.evaluate agent"), (other, f"login {SHAPED_KEY}")):
        with tracer.start_as_current_span(name) as span:
            span.set_attribute("app.note", f"the key is {ENV_SECRET}")
            span.set_attribute("app.keys", ["fine", f"sk shaped {SHAPED_KEY}"])
            span.set_attribute("app.request", json.dumps({"user": "ann", "pw": QUOTED_SECRET}))
            span.set_attribute("http.header", f"Authorization: Bearer\n{BEARER_TOKEN}")
            span.add_event("retry", {"message": f"failed with {ENV_SECRET}", "attempt": 2})
            span.add_event(f"gave up on {ENV_SECRET}")
            span.record_exception(RuntimeError(f"Incorrect API key provided: {SHAPED_KEY} / {ENV_SECRET}"))
            span.set_status(StatusCode.ERROR, f"auth failed for {ENV_SECRET}")


def test_secrets_reach_no_exporter(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, pipelines: Callable[..., SpanPipeline]
) -> None:
    monkeypatch.setenv("MY_SERVICE_API_KEY", ENV_SECRET)
    monkeypatch.setenv("MY_DB_PASSWORD", QUOTED_SECRET)
    db = tmp_path / "traces.db"
    memory = InMemorySpanExporter()
    pipeline = pipelines([SQLiteSpanExporter(db), memory])
    flock_provider = FlockTracerProvider(shutdown_on_exit=False)
    flock_provider.add_span_processor(pipeline)
    flock_provider.use_lean_spans(pipeline, pipeline.emit)
    sdk_provider = TracerProvider(shutdown_on_exit=False)
    sdk_provider.add_span_processor(pipeline)
    leaky_spans(flock_provider.get_tracer("flock"), sdk_provider.get_tracer("other.lib"))
    pipeline.shutdown()

    raw = stored_bytes(db)
    exported = "\n".join(s.to_json() for s in memory.get_finished_spans())
    assert len(memory.get_finished_spans()) == 2
    for leak in LEAKS:
        assert leak.encode() not in raw, leak
        assert leak not in exported, leak
    assert b"[REDACTED]" in raw
    with TraceStore(db) as store:
        spans = {s.name: s for t in store.recent_trace_ids() for s in store.load(t).spans}
    assert set(spans) == {"flock.evaluate agent", f"login {REDACTED}"}
    for stored in spans.values():
        assert stored.attributes["app.note"] == f"the key is {REDACTED}"
        assert stored.attributes["app.keys"] == ["fine", f"sk shaped {REDACTED}"]
        assert json.loads(stored.attributes["app.request"]) == {"user": "ann", "pw": REDACTED}
        assert stored.attributes["http.header"] == f"Authorization: {REDACTED}"
        retry, gave_up, error = stored.events
        assert gave_up["name"] == f"gave up on {REDACTED}"
        assert retry["attributes"] == {"message": f"failed with {REDACTED}", "attempt": 2}
        assert (
            error["attributes"]["exception.message"] == f"Incorrect API key provided: {REDACTED} / {REDACTED}"
        )
        assert stored.status_message == f"auth failed for {REDACTED}"
    for span in memory.get_finished_spans():
        assert span.status.description == f"auth failed for {REDACTED}"
        assert span.attributes is not None and span.attributes["app.note"] == f"the key is {REDACTED}"


def test_a_secret_set_after_the_span_ended_is_still_scrubbed(
    monkeypatch: pytest.MonkeyPatch, pipelines: Callable[..., SpanPipeline]
) -> None:
    memory = InMemorySpanExporter()
    pipeline = pipelines([memory])
    (record,) = records("s", **{"app.note": f"value {ENV_SECRET}"})
    monkeypatch.setenv("LATE_API_KEY", ENV_SECRET)  # a redactor per batch sees it
    pipeline.emit(record)
    assert pipeline.force_flush(5_000)
    (exported,) = memory.get_finished_spans()
    assert exported.attributes is not None and exported.attributes["app.note"] == f"value {REDACTED}"


# ---------------------------------------------------------------------------------------------- Redactor


@pytest.fixture
def redactor() -> Redactor:
    return Redactor(secrets=(ENV_SECRET, QUOTED_SECRET))


@pytest.mark.parametrize(
    "text",
    [
        "plain words, long enough to be scanned",
        '{"gen_ai.usage.input_tokens":12,"flock.agent":"planner"}',
        "sk-short",
        "Bearer\\nshort",
        "opaque-secret-value",  # a prefix of the secret is not the secret
    ],
)
def test_maybe_secret_is_false_for_clean_text(redactor: Redactor, text: str) -> None:
    assert redactor.maybe_secret(text) is False


@pytest.mark.parametrize(
    "text",
    [
        f"key={ENV_SECRET}",
        json.dumps({"a": f"key={ENV_SECRET}"}),
        json.dumps({"pw": QUOTED_SECRET}),  # escaped once: quote\"secret
        json.dumps({"doc": json.dumps({"pw": QUOTED_SECRET})}),  # escaped twice, as in captured messages
        f"error: {SHAPED_KEY}",
        json.dumps({"h": f"Bearer\n{BEARER_TOKEN}"}),  # in JSON text the newline is written \n
        f"Authorization: Bearer {BEARER_TOKEN}",
    ],
)
def test_maybe_secret_is_true_for_secrets_in_any_escaping(redactor: Redactor, text: str) -> None:
    assert redactor.maybe_secret(text) is True


def test_json_escaped_bearer_is_text_the_plain_pattern_misses(redactor: Redactor) -> None:
    text = json.dumps({"h": f"Bearer\n{BEARER_TOKEN}"})
    assert "\\n" in text and "\n" not in text
    assert redactor.maybe_secret(text)
    assert redactor.text(json.loads(text)["h"]) == REDACTED


def test_maybe_secret_sees_environment_secrets(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MY_SERVICE_API_KEY", ENV_SECRET)
    monkeypatch.setenv("MY_DB_PASSWORD", QUOTED_SECRET)
    found = Redactor()
    assert found.maybe_secret(f"x {ENV_SECRET} y")
    assert found.maybe_secret(json.dumps(QUOTED_SECRET))
    monkeypatch.delenv("MY_SERVICE_API_KEY")
    monkeypatch.delenv("MY_DB_PASSWORD")
    assert not Redactor().maybe_secret(f"x {ENV_SECRET} y")


def test_an_exporter_whose_flush_returns_nothing_or_raises(pipelines: Callable[..., SpanPipeline]) -> None:
    class Quiet(SpanExporter):  # the SDK's base force_flush returns None
        def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
            return SpanExportResult.SUCCESS

    class Broken(Quiet):
        def force_flush(self, timeout_millis: int = 30_000) -> bool:
            raise RuntimeError("cannot flush")

    assert pipelines([Quiet()]).force_flush(5_000) is True
    assert pipelines([Quiet(), Broken()]).force_flush(5_000) is False
