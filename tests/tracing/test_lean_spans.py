"""Lean spans: Flock's tracer on a FlockTracerProvider, compared with the OpenTelemetry SDK it stands in for.

Every provider here is private (the session's global provider is never touched): spans end up as records
in a list, or as SDK spans in a collecting span processor.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from decimal import Decimal
from typing import Any

import pytest
from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, SpanProcessor, TracerProvider
from opentelemetry.sdk.trace import Span as SdkSpan
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import (
    Link,
    NonRecordingSpan,
    SpanContext,
    SpanKind,
    Status,
    StatusCode,
    TraceFlags,
    TraceState,
)

from flock._tracing.lean_spans import FlockTracerProvider, LeanSpan
from flock._tracing.redact import REDACTED
from flock._tracing.span_records import (
    ATTRIBUTES,
    EVENTS,
    KIND,
    LINKS,
    MESSAGE,
    NAME,
    PARENT_ID,
    PARENT_REMOTE,
    SCOPE,
    SPAN_ID,
    STATE,
    STATUS,
    TRACE_ID,
    Record,
    readable,
    record_of,
)

REMOTE_TRACE = 0x0AF7651916CD43DD8448EB211C80319C
REMOTE_SPAN = 0xB7AD6B7169203331


class Collect(SpanProcessor):
    """Flock's processor stand-in: keeps the SDK spans that end (lean spans go to the records sink)."""

    def __init__(self) -> None:
        self.spans: list[ReadableSpan] = []

    def on_end(self, span: ReadableSpan) -> None:
        self.spans.append(span)


class Lean:
    """A private FlockTracerProvider on the lean path, its "flock" tracer and the records it made."""

    def __init__(self, resource: Resource | None = None) -> None:
        kwargs: dict[str, Any] = {"shutdown_on_exit": False}
        if resource is not None:
            kwargs["resource"] = resource
        self.provider = FlockTracerProvider(**kwargs)
        self.processor = Collect()
        self.provider.add_span_processor(self.processor)
        self.records: list[Record] = []
        self.provider.use_lean_spans(self.processor, self.records.append)
        self.tracer = self.provider.get_tracer("flock")

    def only(self) -> Record:
        assert len(self.records) == 1, self.records
        return self.records[0]


@pytest.fixture
def lean() -> Lean:
    return Lean()


def sdk_tracer() -> tuple[trace.Tracer, InMemorySpanExporter]:
    provider = TracerProvider(shutdown_on_exit=False)
    memory = InMemorySpanExporter()
    provider.add_span_processor(SimpleSpanProcessor(memory))
    return provider.get_tracer("flock"), memory


def plain(attributes: Mapping[str, Any] | None) -> dict[str, Any]:
    """Attributes as JSON gives them back (the SDK keeps sequences as tuples)."""
    return {k: list(v) if isinstance(v, tuple) else v for k, v in (attributes or {}).items()}


@contextmanager
def remote_parent(flags: int = 1, state: TraceState | None = None) -> Iterator[None]:
    parent = NonRecordingSpan(SpanContext(REMOTE_TRACE, REMOTE_SPAN, True, TraceFlags(flags), state))
    with trace.use_span(parent):
        yield


# ---------------------------------------------------------------------------------------------- tracers


def test_the_flock_tracer_makes_lean_spans_and_other_tracers_sdk_spans(lean: Lean) -> None:
    mine = lean.tracer.start_span("flock.run demo")
    theirs = lean.provider.get_tracer("other.lib").start_span("GET /")
    assert isinstance(mine, LeanSpan)
    assert isinstance(theirs, SdkSpan) and not isinstance(theirs, LeanSpan)
    assert lean.provider.get_tracer("flock") is lean.tracer  # one lean tracer, not one per call
    mine.end()
    theirs.end()
    assert [r[NAME] for r in lean.records] == ["flock.run demo"]
    assert [s.name for s in lean.processor.spans] == ["GET /"]


# ---------------------------------------------------------------------------------------------- parentage


def test_a_root_span_starts_a_new_trace(lean: Lean) -> None:
    lean.tracer.start_span("one").end()
    lean.tracer.start_span("two").end()
    one, two = lean.records
    assert one[PARENT_ID] is None and two[PARENT_ID] is None
    assert one[PARENT_REMOTE] is False
    assert one[TRACE_ID] != two[TRACE_ID]
    assert one[TRACE_ID] != 0 and one[SPAN_ID] != 0


def test_a_lean_child_shares_the_trace_of_its_lean_parent(lean: Lean) -> None:
    with lean.tracer.start_as_current_span("parent") as parent:
        with lean.tracer.start_as_current_span("child"):
            pass
        explicit = lean.tracer.start_span("explicit", context=trace.set_span_in_context(parent))
        explicit.end()
    child, explicit_record, parent_record = lean.records
    for record in (child, explicit_record):
        assert record[TRACE_ID] == parent_record[TRACE_ID]
        assert record[PARENT_ID] == parent_record[SPAN_ID]
        assert record[PARENT_REMOTE] is False
    assert parent.get_span_context().span_id == parent_record[SPAN_ID]


def test_an_sdk_span_inside_a_lean_span_is_its_child(lean: Lean) -> None:
    other = lean.provider.get_tracer("other.lib")
    with (
        lean.tracer.start_as_current_span("flock.activate worker"),
        other.start_as_current_span("http.request"),
    ):
        pass
    (outer,) = lean.records
    (inner,) = lean.processor.spans
    assert inner.context is not None and inner.parent is not None
    assert inner.context.trace_id == outer[TRACE_ID]
    assert inner.parent.span_id == outer[SPAN_ID]
    assert not inner.parent.is_remote


def test_a_lean_span_inside_an_sdk_span_is_its_child(lean: Lean) -> None:
    other = lean.provider.get_tracer("other.lib")
    with (
        other.start_as_current_span("web request"),
        lean.tracer.start_as_current_span("flock.run demo") as inner,
    ):
        assert isinstance(inner, LeanSpan)
    (record,) = lean.records
    (outer,) = lean.processor.spans
    assert outer.context is not None
    assert record[TRACE_ID] == outer.context.trace_id
    assert record[PARENT_ID] == outer.context.span_id
    assert record[PARENT_REMOTE] is False


def test_a_remote_parent_is_recorded_as_remote_with_its_trace_state(lean: Lean) -> None:
    with remote_parent(state=TraceState([("vendor", "v1")])):
        span = lean.tracer.start_span("flock.run served")
    assert isinstance(span, LeanSpan)
    assert span.get_span_context().trace_state.get("vendor") == "v1"
    span.end()
    record = lean.only()
    assert (record[TRACE_ID], record[PARENT_ID], record[PARENT_REMOTE]) == (REMOTE_TRACE, REMOTE_SPAN, True)
    assert record[STATE] == "vendor=v1"
    rebuilt = readable(record)
    assert rebuilt.parent is not None and rebuilt.parent.is_remote
    assert rebuilt.context is not None and rebuilt.context.trace_state.get("vendor") == "v1"


def test_an_unsampled_parent_leaves_the_decision_to_the_sdk(lean: Lean) -> None:
    with remote_parent(flags=0):
        span = lean.tracer.start_span("flock.run unsampled")
    assert not isinstance(span, LeanSpan)
    assert not span.is_recording()
    assert span.get_span_context().trace_id == REMOTE_TRACE
    span.end()
    assert lean.records == [] and lean.processor.spans == []


# ---------------------------------------------------------------------------------------------- fallbacks


def test_another_processor_switches_flock_to_sdk_spans(lean: Lean) -> None:
    memory = InMemorySpanExporter()
    assert isinstance(lean.tracer.start_span("before"), LeanSpan)
    lean.provider.add_span_processor(SimpleSpanProcessor(memory))
    span = lean.tracer.start_span("after")  # the same tracer object, obtained before the processor
    assert isinstance(span, SdkSpan)
    span.end()
    assert [s.name for s in memory.get_finished_spans()] == ["after"]
    assert [s.name for s in lean.processor.spans] == ["after"]
    assert lean.records == []


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("OTEL_SPAN_ATTRIBUTE_COUNT_LIMIT", "4"),
        ("OTEL_ATTRIBUTE_VALUE_LENGTH_LIMIT", "10"),
        ("OTEL_TRACES_SAMPLER", "traceidratio"),
        ("OTEL_EVENT_ATTRIBUTE_COUNT_LIMIT", "2"),
        ("OTEL_LINK_ATTRIBUTE_COUNT_LIMIT", "1"),
    ],
)
def test_sdk_settings_in_the_environment_keep_the_sdk_path(
    monkeypatch: pytest.MonkeyPatch, name: str, value: str
) -> None:
    monkeypatch.setenv(name, value)
    lean = Lean()
    span = lean.tracer.start_span("flock.run limited")
    assert isinstance(span, SdkSpan)
    span.end()
    assert lean.records == []
    assert [s.name for s in lean.processor.spans] == ["flock.run limited"]


@pytest.mark.parametrize("sampler", ["always_on", "parentbased_always_on", " ParentBased_Always_On "])
def test_default_samplers_keep_the_lean_path(monkeypatch: pytest.MonkeyPatch, sampler: str) -> None:
    monkeypatch.setenv("OTEL_TRACES_SAMPLER", sampler)
    lean = Lean()
    assert isinstance(lean.tracer.start_span("x"), LeanSpan)


def test_a_sampler_of_the_callers_keeps_the_sdk_path() -> None:
    from opentelemetry.sdk.trace.sampling import ALWAYS_OFF

    provider = FlockTracerProvider(sampler=ALWAYS_OFF, shutdown_on_exit=False)
    processor = SpanProcessor()
    provider.add_span_processor(processor)
    records: list[Record] = []
    provider.use_lean_spans(processor, records.append)
    span = provider.get_tracer("flock").start_span("sampled out")
    assert not isinstance(span, LeanSpan) and not span.is_recording()
    span.end()
    assert records == []


def test_the_environment_is_read_when_the_provider_is_made(monkeypatch: pytest.MonkeyPatch) -> None:
    lean = Lean()
    monkeypatch.setenv("OTEL_SPAN_ATTRIBUTE_COUNT_LIMIT", "4")
    assert isinstance(lean.tracer.start_span("x"), LeanSpan)


def test_no_sink_means_spans_record_nothing() -> None:
    provider = FlockTracerProvider(shutdown_on_exit=False)
    processor = Collect()
    provider.add_span_processor(processor)
    provider.use_lean_spans(processor, None)
    assert provider.lean_sink() is None
    tracer = provider.get_tracer("flock")
    with tracer.start_as_current_span("flock.run off") as span:
        assert isinstance(span, LeanSpan)
        span.set_attribute("a", 1)
    assert processor.spans == []


def test_without_use_lean_spans_the_sdk_path_is_used() -> None:
    provider = FlockTracerProvider(shutdown_on_exit=False)
    processor = Collect()
    provider.add_span_processor(processor)
    assert provider.lean_sink() is False
    provider.get_tracer("flock").start_span("x").end()
    assert [s.name for s in processor.spans] == ["x"]


# ---------------------------------------------------------------------------------------------- span API


def test_set_attribute_keeps_what_the_sdk_keeps(lean: Lean) -> None:
    def fill(span: Any) -> None:
        span.set_attribute("str", "text")
        span.set_attribute("int", 3)
        span.set_attribute("float", 0.5)
        span.set_attribute("bool", False)
        span.set_attribute("list", ["a", "b"])
        span.set_attribute("none", None)
        span.set_attribute("dict", {"a": 1})
        span.set_attribute("", "no key")
        span.set_attributes({"more": 7, "nested": [{"a": 1}]})
        span.set_attribute("object", Decimal("1.5"))

    tracer, memory = sdk_tracer()
    sdk_span = tracer.start_span("s", attributes={"given": "yes"})
    fill(sdk_span)
    sdk_span.end()
    span = lean.tracer.start_span("s", attributes={"given": "yes"})
    assert isinstance(span, LeanSpan)
    fill(span)
    kept = ["x"]
    span.set_attribute("copied", kept)
    kept.append("later")  # the span keeps the value it was given, not the caller's list
    span.end()
    stored = json.loads(lean.only()[ATTRIBUTES])
    assert stored.pop("copied") == ["x"]
    expected = json.loads(json.dumps(dict(memory.get_finished_spans()[0].attributes or {})))
    assert stored == expected
    assert stored["dict"] == {"a": 1} and stored["object"] == "1.5" and "" not in stored


def test_attributes_and_events_are_bounded_like_the_sdks(lean: Lean) -> None:
    span = lean.tracer.start_span("s")
    for i in range(200):
        span.set_attribute(f"k{i}", i)
        span.add_event(f"e{i}")
    span.end()
    (record,) = lean.records
    attributes = json.loads(record[ATTRIBUTES])
    assert len(attributes) == 128 and "k199" in attributes and "k0" not in attributes  # oldest dropped
    events = json.loads(record[EVENTS])
    assert len(events) == 128 and events[0]["name"] == "e0"


def sdk_status(calls: list[tuple[Any, ...]]) -> tuple[StatusCode, str | None]:
    tracer, memory = sdk_tracer()
    span = tracer.start_span("s")
    for call in calls:
        span.set_status(*call)
    span.end()
    status = memory.get_finished_spans()[0].status
    return status.status_code, status.description


STATUS_CASES: list[tuple[list[tuple[Any, ...]], tuple[StatusCode, str | None]]] = [
    ([(StatusCode.OK,), (StatusCode.ERROR, "too late")], (StatusCode.OK, None)),  # OK is final
    ([(Status(StatusCode.OK),), (Status(StatusCode.ERROR, "late"),)], (StatusCode.OK, None)),
    ([(StatusCode.ERROR, "bad"), (StatusCode.UNSET,)], (StatusCode.ERROR, "bad")),  # UNSET: no change
    ([(StatusCode.ERROR, "bad"), (Status(StatusCode.UNSET),)], (StatusCode.ERROR, "bad")),
    ([(StatusCode.OK, "fine")], (StatusCode.OK, None)),  # a description belongs to ERROR only
    ([(StatusCode.ERROR, "first"), (StatusCode.ERROR, "second")], (StatusCode.ERROR, "second")),
    ([(StatusCode.ERROR, "bad"), (StatusCode.OK,)], (StatusCode.OK, None)),
    ([(Status(StatusCode.ERROR, "as status"),)], (StatusCode.ERROR, "as status")),
    ([(StatusCode.ERROR,)], (StatusCode.ERROR, None)),
]


@pytest.mark.parametrize(("calls", "expected"), STATUS_CASES)
def test_set_status_as_the_sdk_does(
    lean: Lean, calls: list[tuple[Any, ...]], expected: tuple[StatusCode, str | None]
) -> None:
    span = lean.tracer.start_span("s")
    for call in calls:
        span.set_status(*call)
    span.end()
    record = lean.only()
    assert (StatusCode(record[STATUS]), record[MESSAGE]) == expected
    assert sdk_status(calls) == expected


class Outer:
    class Boom(Exception):
        pass


def raised(error: BaseException) -> BaseException:
    try:
        raise error
    except BaseException as caught:  # a traceback, as record_exception normally sees
        return caught


def test_record_exception_adds_the_sdk_exception_event(lean: Lean) -> None:
    error = raised(Outer.Boom("it broke"))
    span = lean.tracer.start_span("s")
    span.record_exception(error, attributes={"extra": 1})
    span.end()
    (event,) = json.loads(lean.only()[EVENTS])
    attributes = event["attributes"]
    assert event["name"] == "exception"
    assert attributes["exception.type"] == f"{Outer.Boom.__module__}.Outer.Boom"
    assert attributes["exception.message"] == "it broke"
    assert "raise error" in attributes["exception.stacktrace"]
    assert attributes["exception.stacktrace"].rstrip().endswith("Outer.Boom: it broke")
    assert attributes["extra"] == 1

    tracer, memory = sdk_tracer()
    sdk = tracer.start_span("s")
    sdk.record_exception(error, attributes={"extra": 1})
    sdk.end()
    (sdk_event,) = memory.get_finished_spans()[0].events
    assert sdk_event.name == "exception"
    assert plain(sdk_event.attributes) == attributes


def test_builtin_exception_types_are_not_qualified(lean: Lean) -> None:
    span = lean.tracer.start_span("s")
    span.record_exception(KeyError("k"))
    span.end()
    (event,) = json.loads(lean.only()[EVENTS])
    assert event["attributes"]["exception.type"] == "KeyError"


def test_with_span_marks_an_exception_as_error(lean: Lean) -> None:
    with pytest.raises(ValueError, match="no good"), lean.tracer.start_span("s"):
        raise ValueError("no good")
    record = lean.only()
    assert (StatusCode(record[STATUS]), record[MESSAGE]) == (StatusCode.ERROR, "ValueError: no good")
    (event,) = json.loads(record[EVENTS])
    assert event["attributes"]["exception.type"] == "ValueError"
    assert event["attributes"]["exception.escaped"] == "True"


def test_with_span_respects_record_exception_and_set_status_flags(lean: Lean) -> None:
    span = lean.tracer.start_span("s", record_exception=False, set_status_on_exception=False)
    with pytest.raises(ValueError), span:
        raise ValueError("quiet")
    record = lean.only()
    assert record[STATUS] == StatusCode.UNSET.value
    assert json.loads(record[EVENTS]) == []


class Cancelled(BaseException):
    """Like anyio's cancellation exception on trio, or asyncio.CancelledError: not an error."""


@pytest.mark.parametrize("cancel", [asyncio.CancelledError, Cancelled])
def test_cancellation_does_not_mark_the_span(lean: Lean, cancel: type[BaseException]) -> None:
    with pytest.raises(cancel), lean.tracer.start_span("with span"):
        raise cancel()
    with pytest.raises(cancel), lean.tracer.start_as_current_span("as current"):
        raise cancel()
    assert [r[NAME] for r in lean.records] == ["with span", "as current"]  # ended all the same
    for record in lean.records:
        assert record[STATUS] == StatusCode.UNSET.value
        assert record[MESSAGE] is None
        assert json.loads(record[EVENTS]) == []


def test_start_as_current_span_marks_an_exception_as_error(lean: Lean) -> None:
    with pytest.raises(RuntimeError), lean.tracer.start_as_current_span("s"):
        raise RuntimeError("down")
    record = lean.only()
    assert (StatusCode(record[STATUS]), record[MESSAGE]) == (StatusCode.ERROR, "RuntimeError: down")
    assert [e["name"] for e in json.loads(record[EVENTS])] == ["exception"]


def test_end_twice_emits_one_record_and_later_changes_are_ignored(lean: Lean) -> None:
    span = lean.tracer.start_span("s", attributes={"a": 1})
    assert isinstance(span, LeanSpan)
    assert span.is_recording()
    span.end()
    assert not span.is_recording()
    span.set_attribute("late", 2)
    span.set_attributes({"later": 3})
    span.add_event("late event")
    span.set_status(StatusCode.ERROR, "late")
    span.record_exception(ValueError("late"))
    span.update_name("renamed")
    span.add_link(SpanContext(REMOTE_TRACE, REMOTE_SPAN, False))
    span.end()
    with span:  # exiting ends it again: still nothing new
        pass
    record = lean.only()
    assert record[NAME] == "s"
    assert json.loads(record[ATTRIBUTES]) == {"a": 1}
    assert (record[STATUS], record[MESSAGE]) == (StatusCode.UNSET.value, None)
    assert (record[EVENTS], record[LINKS]) == ("[]", "[]")
    # the span itself did not change either (nothing public shows it, so look inside)
    assert "renamed" not in repr(span)
    assert span._attributes == {"a": 1}
    assert span._events is None and span._status == StatusCode.UNSET.value


def test_end_time_and_start_time_are_kept(lean: Lean) -> None:
    lean.tracer.start_span("s", start_time=1_000).end(end_time=5_000)
    rebuilt = readable(lean.only())
    assert (rebuilt.start_time, rebuilt.end_time) == (1_000, 5_000)


def test_update_name_and_add_link(lean: Lean) -> None:
    target = SpanContext(REMOTE_TRACE, REMOTE_SPAN, False, TraceFlags(1))
    span = lean.tracer.start_span("draft")
    span.update_name("final")
    span.add_link(target, {"why": "cause"})
    span.add_link(SpanContext(0, 0, False))  # invalid: ignored
    span.end()
    record = lean.only()
    assert record[NAME] == "final"
    assert json.loads(record[LINKS]) == [
        {
            "trace_id": format(REMOTE_TRACE, "032x"),
            "span_id": format(REMOTE_SPAN, "016x"),
            "attributes": {"why": "cause"},
        }
    ]


def test_span_context_is_stable_and_valid(lean: Lean) -> None:
    span = lean.tracer.start_span("s")
    first = span.get_span_context()
    assert span.get_span_context() is first
    assert first.is_valid and not first.is_remote and first.trace_flags.sampled
    span.end()
    assert span.get_span_context() == first
    record = lean.only()
    assert (record[TRACE_ID], record[SPAN_ID]) == (first.trace_id, first.span_id)


# ---------------------------------------------------------------------------------------------- records


def test_record_attributes_decode_and_credential_keys_are_redacted(lean: Lean) -> None:
    span = lean.tracer.start_span(
        "s", attributes={"gen_ai.request.model": "m", "api_key": "sk-not-stored-1234567"}
    )
    span.set_attribute("gen_ai.usage.input_tokens", 12)
    span.add_event("call", {"http.authorization": "Bearer nope", "n": 1})
    span.end()
    record = lean.only()
    assert json.loads(record[ATTRIBUTES]) == {
        "gen_ai.request.model": "m",
        "api_key": REDACTED,
        "gen_ai.usage.input_tokens": 12,
    }
    assert json.loads(record[EVENTS])[0]["attributes"] == {"http.authorization": REDACTED, "n": 1}
    assert "sk-not-stored" not in repr(record)


def test_readable_rebuilds_the_span() -> None:
    lean = Lean(Resource.create({"service.name": "lean-test"}))
    target = SpanContext(REMOTE_TRACE, REMOTE_SPAN, False)
    with lean.tracer.start_as_current_span("parent") as parent:
        child = lean.tracer.start_span(
            "child", kind=SpanKind.CLIENT, attributes={"k": "v", "n": [1, 2]}, links=[Link(target, {"l": 1})]
        )
        child.add_event("happened", {"e": True}, timestamp=123)
        child.set_status(StatusCode.ERROR, "failed")
        child.end()
    child_record, parent_record = lean.records
    rebuilt = readable(child_record)
    assert rebuilt.name == "child"
    assert rebuilt.context is not None and rebuilt.parent is not None
    assert (rebuilt.context.trace_id, rebuilt.context.span_id) == (
        child.get_span_context().trace_id,
        child.get_span_context().span_id,
    )
    assert rebuilt.parent.span_id == parent.get_span_context().span_id
    assert rebuilt.parent.trace_id == parent_record[TRACE_ID]
    assert not rebuilt.parent.is_remote
    assert rebuilt.kind is SpanKind.CLIENT
    assert (rebuilt.status.status_code, rebuilt.status.description) == (StatusCode.ERROR, "failed")
    assert dict(rebuilt.attributes or {}) == {"k": "v", "n": [1, 2]}
    assert [(e.name, dict(e.attributes or {}), e.timestamp) for e in rebuilt.events] == [
        ("happened", {"e": True}, 123)
    ]
    assert [
        (link.context.trace_id, link.context.span_id, dict(link.attributes or {})) for link in rebuilt.links
    ] == [(REMOTE_TRACE, REMOTE_SPAN, {"l": 1})]
    assert rebuilt.instrumentation_scope is not None and rebuilt.instrumentation_scope.name == "flock"
    assert rebuilt.resource.attributes["service.name"] == "lean-test"
    assert readable(parent_record).parent is None
    assert json.loads(rebuilt.to_json())["name"] == "child"  # what the console exporter prints


def test_record_of_an_sdk_span_round_trips() -> None:
    provider = TracerProvider(resource=Resource.create({"service.name": "sdk-test"}), shutdown_on_exit=False)
    memory = InMemorySpanExporter()
    provider.add_span_processor(SimpleSpanProcessor(memory))
    tracer = provider.get_tracer("other.lib", "1.2")
    target = SpanContext(REMOTE_TRACE, REMOTE_SPAN, False)
    with (
        tracer.start_as_current_span("root", kind=SpanKind.SERVER),
        tracer.start_as_current_span(
            "leaf",
            attributes={"a": "b", "xs": ["x", "y"], "password": "hunter2hunter2"},
            links=[Link(target, {"l": 2})],
        ) as leaf,
    ):
        leaf.add_event("tick", {"i": 1})
        leaf.set_status(Status(StatusCode.ERROR, "nope"))
    leaf_span, root_span = memory.get_finished_spans()
    for original in (leaf_span, root_span):
        rebuilt = readable(record_of(original))
        assert rebuilt.name == original.name
        assert rebuilt.context is not None and original.context is not None
        assert (rebuilt.context.trace_id, rebuilt.context.span_id) == (
            original.context.trace_id,
            original.context.span_id,
        )
        assert (rebuilt.parent and rebuilt.parent.span_id) == (original.parent and original.parent.span_id)
        assert rebuilt.kind is original.kind
        assert rebuilt.status.status_code is original.status.status_code
        assert rebuilt.status.description == original.status.description
        assert (rebuilt.start_time, rebuilt.end_time) == (original.start_time, original.end_time)
        assert [(e.name, dict(e.attributes or {}), e.timestamp) for e in rebuilt.events] == [
            (e.name, dict(e.attributes or {}), e.timestamp) for e in original.events
        ]
        assert [(x.context.span_id, dict(x.attributes or {})) for x in rebuilt.links] == [
            (x.context.span_id, dict(x.attributes or {})) for x in original.links
        ]
        assert rebuilt.instrumentation_scope == original.instrumentation_scope
        assert rebuilt.resource.attributes["service.name"] == "sdk-test"
    leaf_rebuilt = readable(record_of(leaf_span))
    assert dict(leaf_rebuilt.attributes or {}) == {"a": "b", "xs": ["x", "y"], "password": REDACTED}
    assert (
        leaf_rebuilt.instrumentation_scope is not None and leaf_rebuilt.instrumentation_scope.version == "1.2"
    )
    assert record_of(root_span)[KIND] == SpanKind.SERVER.value
    assert record_of(root_span)[SCOPE] == record_of(leaf_span)[SCOPE]


# ---------------------------------------------------------------------------------------------- parity


def build_tree(tracer: trace.Tracer) -> None:
    target = SpanContext(REMOTE_TRACE, REMOTE_SPAN, False, TraceFlags(1))
    with tracer.start_as_current_span(
        "flock.run demo", kind=SpanKind.SERVER, attributes={"flock.run.name": "demo", "n": 3, "ok": True}
    ) as root:
        root.set_attribute("flock.run.types", ["Idea", "Task"])
        with tracer.start_as_current_span(
            "flock.publish Idea", links=[Link(target, {"cause": "x"})]
        ) as child:
            child.add_event("published", {"flock.artifact.type": "Idea", "size": 2})
            child.add_link(root.get_span_context(), {"why": "root"})
        with (
            pytest.raises(ValueError, match="bad input"),
            tracer.start_as_current_span("flock.activate worker", kind=SpanKind.CLIENT),
        ):
            raise ValueError("bad input")
        root.set_status(StatusCode.OK)


def summary(spans: list[ReadableSpan]) -> dict[str, Any]:
    by_id = {s.context.span_id: s.name for s in spans if s.context is not None}
    return {
        s.name: {
            "parent": by_id.get(s.parent.span_id) if s.parent is not None else None,
            "kind": s.kind,
            "status": (s.status.status_code, s.status.description),
            "attributes": plain(s.attributes),
            "events": [(e.name, sorted((e.attributes or {}).keys())) for e in s.events],
            "links": len(s.links),
            "scope": s.instrumentation_scope.name if s.instrumentation_scope else None,
        }
        for s in spans
    }


def test_lean_and_sdk_spans_agree() -> None:
    lean = Lean()
    build_tree(lean.tracer)
    assert lean.processor.spans == []

    sdk_provider = FlockTracerProvider(shutdown_on_exit=False)
    flock_processor, second = Collect(), Collect()
    sdk_provider.add_span_processor(flock_processor)
    sdk_provider.use_lean_spans(flock_processor, lambda record: pytest.fail("lean span on the SDK path"))
    sdk_provider.add_span_processor(second)  # someone else listens: the SDK path
    build_tree(sdk_provider.get_tracer("flock"))

    lean_view = summary([readable(r) for r in lean.records])
    sdk_view = summary(list(second.spans))
    assert [s.name for s in flock_processor.spans] == [s.name for s in second.spans]
    assert lean_view == sdk_view
    assert set(lean_view) == {"flock.run demo", "flock.publish Idea", "flock.activate worker"}
    assert lean_view["flock.publish Idea"]["parent"] == "flock.run demo"
    assert lean_view["flock.activate worker"]["status"] == (StatusCode.ERROR, "ValueError: bad input")
    assert lean_view["flock.activate worker"]["events"][0][0] == "exception"
    assert lean_view["flock.publish Idea"]["links"] == 2


def test_keyword_arguments_as_instrumentation_passes_them(lean: Lean) -> None:
    span = lean.tracer.start_span(
        name="k", context=None, kind=SpanKind.PRODUCER, attributes={"a": 1}, links=[]
    )
    span.end()
    record = lean.only()
    assert (record[NAME], record[KIND], json.loads(record[ATTRIBUTES])) == (
        "k",
        SpanKind.PRODUCER.value,
        {"a": 1},
    )
