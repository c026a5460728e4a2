"""The SQLite span exporter and the queries behind `flock traces`, on a real file."""

from __future__ import annotations

import sqlite3
import threading
from contextlib import closing
from pathlib import Path

import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExportResult
from opentelemetry.trace import Status, StatusCode
from trace_support import Recorder, record_run

from flock import FlockError
from flock._tracing.trace_query import TraceNotFound, TraceStore
from flock._tracing.trace_store import SQLiteSpanExporter


def test_schema_is_one_table_of_spans(recorded: tuple[Path, str]) -> None:
    db, _ = recorded
    with closing(sqlite3.connect(db)) as conn:
        tables = [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
        columns = [r[1] for r in conn.execute("PRAGMA table_info(spans)")]
    assert tables == ["spans"]
    for column in (
        "trace_id",
        "span_id",
        "parent_id",
        "name",
        "kind",
        "start_ns",
        "end_ns",
        "status",
        "attributes",
        "events",
        "links",
        "resource",
    ):
        assert column in columns


def test_round_trip_keeps_the_tree_attributes_events_and_links(recorded: tuple[Path, str]) -> None:
    db, trace_id = recorded
    with TraceStore(db) as store:
        trace = store.load(trace_id)
    assert len(trace.spans) == 31
    [root] = trace.roots
    assert root.name == "flock.run research"
    assert root.parent_id is None
    assert root.attributes["flock.run.name"] == "research"

    by_name: dict[str, list] = {}
    for span in trace.spans:
        by_name.setdefault(span.name, []).append(span)
    [idea] = by_name["flock.publish Idea"]
    [planner] = by_name["flock.activate planner"]
    assert planner.parent_id == idea.span_id  # the activation is a child of the publish that woke it
    assert planner.attributes["flock.input.types"] == ["Idea"]  # sequences come back as lists
    assert planner.attributes["flock.subscription"] == 0
    # multi-output with fan-out: Plan and three Tasks published inside the planner's activation
    assert [c.name for c in planner.children] == [
        "flock.evaluate planner",
        "flock.publish Plan",
        "flock.publish Task",
        "flock.publish Task",
        "flock.publish Task",
    ]
    workers = by_name["flock.activate worker"]
    assert {w.parent_id for w in workers} == {t.span_id for t in by_name["flock.publish Task"]}

    [reviewer] = by_name["flock.activate reviewer"]
    results = by_name["flock.publish Result"]
    assert reviewer.parent_id == results[1].span_id  # the join's last input is the parent ...
    assert [link["span_id"] for link in reviewer.links] == [results[0].span_id]  # ... the other a link
    assert reviewer.links[0]["trace_id"] == trace_id

    [failed] = [w for w in workers if w.is_error]
    assert failed.attributes["flock.error.kind"] == "ContractViolation"
    [evaluate] = failed.children
    assert evaluate.events[0]["name"] == "exception"
    assert evaluate.events[0]["attributes"]["exception.type"] == "RuntimeError"
    assert failed.kind == "INTERNAL"
    chat = by_name["chat gpt-4.1"][0]
    assert chat.attributes["gen_ai.usage.input_tokens"] == 420
    assert chat.attributes["gen_ai.response.finish_reasons"] == ["stop"]
    assert chat.duration_ns == 185_000_000


def test_run_stats_aggregate_the_whole_trace(recorded: tuple[Path, str]) -> None:
    db, trace_id = recorded
    with TraceStore(db) as store:
        [run] = store.list_runs()
    assert run.trace_id == trace_id
    assert run.name == "research"
    assert run.agents == ["planner", "worker", "reviewer"]
    assert run.activations == 5
    assert run.artifacts == 8
    assert run.artifacts_by_type == {"Idea": 1, "Plan": 1, "Task": 3, "Result": 2, "Report": 1}
    assert run.model_calls == 8
    assert run.tool_calls == 3
    assert (run.input_tokens, run.output_tokens) == (2870, 840)
    # the failure marks the evaluation and the activation: it is one error, counted where it happened
    assert run.errors == 1
    assert run.duration_ns == 900_000_000


def test_runs_are_listed_newest_first_and_limited(db: Path) -> None:
    exporter = SQLiteSpanExporter(db)
    ids = [record_run(exporter, name=f"run{i}", t0=(1_790_000_000 + i * 60) * 10**9) for i in range(3)]
    exporter.shutdown()
    with TraceStore(db) as store:
        assert [r.trace_id for r in store.list_runs()] == ids[::-1]
        assert [r.name for r in store.list_runs(limit=2)] == ["run2", "run1"]
        assert store.resolve("latest") == ids[2]


def test_batch_processor_from_several_threads_loses_nothing(db: Path) -> None:
    exporter = SQLiteSpanExporter(db)
    provider = TracerProvider()
    provider.add_span_processor(BatchSpanProcessor(exporter, max_export_batch_size=7))
    tracer = provider.get_tracer("flock")

    def work(n: int) -> None:
        for _ in range(50):
            with tracer.start_as_current_span(f"flock.publish T{n}"), tracer.start_as_current_span("child"):
                pass

    threads = [threading.Thread(target=work, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    provider.shutdown()  # flushes the queue, then closes the exporter
    with closing(sqlite3.connect(db)) as conn:
        assert conn.execute("SELECT COUNT(*) FROM spans").fetchone()[0] == 4 * 50 * 2
        roots = conn.execute("SELECT COUNT(*) FROM spans WHERE parent_id IS NULL").fetchone()[0]
    assert roots == 200
    with TraceStore(db) as store:
        assert len(store.list_runs(limit=500)) == 200


def test_a_batch_larger_than_one_insert_statement_is_written_whole(db: Path) -> None:
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    memory = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(memory))
    tracer = provider.get_tracer("flock")
    for n in range(1_234):  # more than two statements' worth of rows (500 each)
        with tracer.start_as_current_span(f"flock.publish T{n}", attributes={"n": n}):
            pass
    spans = memory.get_finished_spans()
    exporter = SQLiteSpanExporter(db)
    assert exporter.export(spans) is SpanExportResult.SUCCESS
    exporter.shutdown()
    with closing(sqlite3.connect(db)) as conn:
        stored = dict(conn.execute("SELECT span_id, name FROM spans").fetchall())
    assert stored == {format(s.context.span_id, "016x"): s.name for s in spans}


def test_export_after_shutdown_fails_cleanly(db: Path) -> None:
    exporter = SQLiteSpanExporter(db)
    exporter.shutdown()
    assert exporter.export([]) is SpanExportResult.FAILURE


def test_exporter_creates_missing_directories(tmp_path: Path) -> None:
    exporter = SQLiteSpanExporter(tmp_path / "a" / "b" / "traces.db")
    exporter.shutdown()
    assert (tmp_path / "a" / "b" / "traces.db").is_file()


def test_resolve_prefixes(recorded: tuple[Path, str]) -> None:
    db, trace_id = recorded
    with TraceStore(db) as store:
        assert store.resolve(trace_id) == trace_id
        assert store.resolve(trace_id[:6].upper()) == trace_id
        with pytest.raises(TraceNotFound, match="flock traces"):
            store.resolve("0" * 32 if not trace_id.startswith("0") else "f" * 32)
        with pytest.raises(TraceNotFound, match="not a trace id"):
            store.resolve("xyz")


def test_ambiguous_prefix_is_an_error(db: Path) -> None:
    exporter = SQLiteSpanExporter(db)
    for i in range(20):
        record_run(exporter, name=f"r{i}")
    exporter.shutdown()
    with TraceStore(db) as store, pytest.raises(TraceNotFound, match="several traces"):
        store.resolve(_shared_first_digit(store))


def _shared_first_digit(store: TraceStore) -> str:
    firsts = [i[0] for i in store.recent_trace_ids(100)]
    return next(c for c in firsts if firsts.count(c) > 1)  # 20 ids, 16 hex digits: one repeats


def test_missing_store_says_how_to_make_one(tmp_path: Path) -> None:
    with pytest.raises(TraceNotFound, match="enable_tracing") as info:
        TraceStore(tmp_path / "nope.db")
    assert isinstance(info.value, FlockError)
    assert not (tmp_path / "nope.db").exists()  # reading never creates the file


def test_listing_aggregates_in_sqlite_exactly_like_loading(db: Path) -> None:
    exporter = SQLiteSpanExporter(db)
    record_run(exporter, name="a")
    record_run(exporter, name="b", capture_content=True, t0=1_790_000_500 * 10**9)
    exporter.shutdown()
    with TraceStore(db) as store:
        for trace_id in store.recent_trace_ids():
            assert store.run_stats(trace_id) == store.load(trace_id).stats


def test_an_error_is_counted_where_it_happened_not_where_it_propagated(db: Path) -> None:
    exporter = SQLiteSpanExporter(db)
    rec = Recorder(exporter)
    failed = Status(StatusCode.ERROR, "boom")
    with rec.span("flock.run r", 0, 10) as run:
        with (
            rec.span("flock.publish A", 1, 2, run) as publish,
            rec.span("flock.activate x", 2, 9, publish) as act,
        ):
            with rec.span("flock.evaluate x", 3, 8, act) as ev:
                ev.set_status(failed)
            act.set_status(failed)
        with rec.span("flock.activate y", 3, 4, publish) as other:
            other.set_status(failed)
        run.set_status(failed)  # the run failed because of them: not a third error
    rec.provider.force_flush()
    with TraceStore(db) as store:
        trace_id = store.resolve("latest")
        assert store.run_stats(trace_id).errors == 2
        assert store.load(trace_id).stats.errors == 2
