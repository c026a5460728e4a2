"""Flock's own spans, for the tracer provider that :func:`flock.tracing.enable_tracing` installs.

An OpenTelemetry SDK span costs tens of microseconds to start and end (a sampler, attribute validation
and locking, a ``ReadableSpan`` copy at the end) and leaves a dozen objects per span for the garbage
collector until it is exported. A multi-agent run makes four spans per activation, so on a fast model
that was most of what tracing cost. When Flock installed the provider and nothing else listens to it,
Flock's tracer makes :class:`LeanSpan` objects instead: the same span API, ids, parentage and
attributes, turned into a flat record (:mod:`flock._tracing.span_records`) when they end.

The SDK path is kept whenever the lean one could change what someone sees: a span processor added to
the provider by the application (it expects SDK spans), a configured sampler or span limits, or a
parent span that was not sampled. Other libraries' tracers always get SDK tracers; their spans can be
children of lean spans and vice versa, since both are plain OpenTelemetry spans.
"""

from __future__ import annotations

import os
import traceback
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from random import getrandbits
from time import time_ns
from typing import Any, Literal

from opentelemetry import trace as trace_api
from opentelemetry.context import Context
from opentelemetry.sdk.trace import Tracer, TracerProvider
from opentelemetry.trace import Link, SpanContext, SpanKind, Status, StatusCode, TraceFlags, TraceState

from .span_records import SCOPES, Record, encode_attributes, encode_events, encode_links

_get_current_span = trace_api.get_current_span
_INTERNAL = SpanKind.INTERNAL
_ERROR = StatusCode.ERROR.value
_OK = StatusCode.OK.value
_VALID_TYPES = (str, bool, int, float)
# Span limits the SDK would apply and a lean span does not: when one is set, the lean path steps
# aside. (OTEL_TRACES_SAMPLER does too, unless it names one of _DEFAULT_SAMPLERS.)
_LIMIT_SETTINGS = (
    "OTEL_SPAN_ATTRIBUTE_COUNT_LIMIT",
    "OTEL_SPAN_ATTRIBUTE_VALUE_LENGTH_LIMIT",
    "OTEL_ATTRIBUTE_COUNT_LIMIT",
    "OTEL_ATTRIBUTE_VALUE_LENGTH_LIMIT",
    "OTEL_SPAN_EVENT_COUNT_LIMIT",
    "OTEL_SPAN_LINK_COUNT_LIMIT",
    "OTEL_EVENT_ATTRIBUTE_COUNT_LIMIT",
    "OTEL_LINK_ATTRIBUTE_COUNT_LIMIT",
)
_LIMIT = 128  # the SDK's default limit on attributes, events and links per span
_DEFAULT_SAMPLERS = ("", "parentbased_always_on", "always_on")


_PLAIN = frozenset({str, int, float, bool, type(None)})


def _clean(value: Any) -> Any:
    """An attribute value as the SDK keeps it: primitives as they are, sequences copied into tuples,
    mappings into dicts, anything else as its string."""
    kind = type(value)
    if kind in _PLAIN:  # the common case, without the (slow) abstract-class checks below
        return value
    if kind is list or kind is tuple:
        return tuple(v if type(v) in _PLAIN else _clean(v) for v in value)
    if isinstance(value, _VALID_TYPES):
        return value
    if isinstance(value, Mapping):
        return {str(k): _clean(v) for k, v in value.items() if k}
    if isinstance(value, Sequence) and not isinstance(value, bytes):
        return tuple(_clean(v) for v in value)
    return str(value) if not isinstance(value, bytes) else value


def _set(attributes: dict[str, Any], key: Any, value: Any) -> None:
    if not isinstance(key, str) or not key:
        return
    if key not in attributes and len(attributes) >= _LIMIT:  # full: the oldest goes, as in the SDK
        del attributes[next(iter(attributes))]
    attributes[key] = _clean(value)


class LeanSpan(trace_api.Span):
    """A recording span that becomes a record for ``sink`` when it ends (see the module docstring)."""

    __slots__ = (
        "_attributes",
        "_context",
        "_ended",
        "_events",
        "_flags",
        "_kind",
        "_links",
        "_message",
        "_name",
        "_parent",
        "_parent_remote",
        "_record_exception",
        "_scope",
        "_set_status_on_exception",
        "_sink",
        "_span_id",
        "_start",
        "_state",
        "_status",
        "_trace_id",
    )

    def __init__(
        self,
        name: str,
        trace_id: int,
        span_id: int,
        parent: int | None,
        parent_remote: bool,
        flags: int,
        state: TraceState | None,
        attributes: dict[str, Any],
        links: Sequence[Link],
        kind: SpanKind,
        sink: Callable[[Record], None] | None,
        scope: int,
        start_time: int | None = None,
        record_exception: bool = True,
        set_status_on_exception: bool = True,
    ) -> None:
        self._name = name
        self._trace_id = trace_id
        self._span_id = span_id
        self._parent = parent
        self._parent_remote = parent_remote
        self._flags = flags
        self._state = state
        self._attributes = attributes
        self._links = links
        self._kind = kind
        self._sink = sink
        self._scope = scope
        self._events: list[tuple[str, int, Mapping[str, Any] | None]] | None = None
        self._status = 0
        self._message: str | None = None
        self._context: SpanContext | None = None
        self._ended = False
        self._record_exception = record_exception
        self._set_status_on_exception = set_status_on_exception
        self._start = start_time or time_ns()

    def get_span_context(self) -> SpanContext:
        context = self._context
        if context is None:  # made when first asked: most spans are only ever read by Flock itself
            context = self._context = SpanContext(
                self._trace_id, self._span_id, False, TraceFlags(self._flags), self._state
            )
        return context

    def is_recording(self) -> bool:
        return not self._ended

    @property
    def flock_ids(self) -> tuple[int, int, int, TraceState | None]:
        """``(trace_id, span_id, trace_flags, trace_state)`` without building a ``SpanContext``."""
        return self._trace_id, self._span_id, self._flags, self._state

    def set_attribute(self, key: str, value: Any) -> None:
        if not self._ended:
            _set(self._attributes, key, value)

    def set_attributes(self, attributes: Mapping[str, Any]) -> None:
        for key, value in attributes.items():
            self.set_attribute(key, value)

    def add_event(
        self, name: str, attributes: Mapping[str, Any] | None = None, timestamp: int | None = None
    ) -> None:
        if self._ended:
            return
        if self._events is None:
            self._events = []
        elif len(self._events) >= _LIMIT:
            return  # as the SDK: events beyond the limit are dropped
        clean: dict[str, Any] | None = None
        if attributes:
            clean = {}
            for key, value in attributes.items():
                _set(clean, key, value)
        self._events.append((name, timestamp or time_ns(), clean))

    def add_link(self, context: SpanContext, attributes: Mapping[str, Any] | None = None) -> None:
        if not self._ended and (context.is_valid or attributes) and len(self._links) < _LIMIT:
            self._links = [*self._links, Link(context, attributes)]

    def update_name(self, name: str) -> None:
        if not self._ended:
            self._name = name

    def set_status(self, status: Status | StatusCode, description: str | None = None) -> None:
        # As the SDK: OK is final, UNSET changes nothing, a description belongs to ERROR only.
        if self._ended or self._status == _OK:
            return
        if isinstance(status, Status):
            code, description = status.status_code, status.description
        else:
            code = status
        if code is StatusCode.UNSET:
            return
        self._status = code.value
        self._message = description if code is StatusCode.ERROR else None

    def record_exception(
        self,
        exception: BaseException,
        attributes: Mapping[str, Any] | None = None,
        timestamp: int | None = None,
        escaped: bool = False,
    ) -> None:
        kind = type(exception)
        module = kind.__module__
        event: dict[str, Any] = {
            "exception.type": f"{module}.{kind.__qualname__}"
            if module and module != "builtins"
            else kind.__qualname__,
            "exception.message": str(exception),
            "exception.stacktrace": "".join(traceback.format_exception(exception)),
            "exception.escaped": str(escaped),
        }
        if attributes:
            event.update(attributes)
        self.add_event("exception", event, timestamp)

    def __exit__(self, kind: Any, error: BaseException | None, tb: Any) -> None:
        # `with span:` records and marks an Exception like an SDK span does (not CancelledError).
        if isinstance(error, Exception) and not self._ended:
            if self._record_exception:
                self.record_exception(error, escaped=True)
            if self._set_status_on_exception:
                self.set_status(Status(StatusCode.ERROR, f"{type(error).__name__}: {error}"))
        self.end()

    def end(self, end_time: int | None = None) -> None:
        if self._ended:
            return
        self._ended = True
        sink = self._sink
        if sink is None:  # tracing is switched off: nothing to record
            return
        state = self._state
        sink(
            (
                self._trace_id,
                self._span_id,
                self._parent,
                self._parent_remote,
                self._name,
                self._kind.value,
                self._start,
                end_time or time_ns(),
                self._status,
                self._message,
                encode_attributes(self._attributes) if self._attributes else "{}",
                encode_events(self._events) if self._events else "[]",
                encode_links(self._links) if self._links else "[]",
                self._flags,
                state.to_header() if state else None,
                self._scope,
            )
        )

    def __repr__(self) -> str:
        return f"LeanSpan(name={self._name!r}, span_id={self._span_id:016x})"


class LeanTracer(trace_api.Tracer):
    """The ``flock`` tracer of a :class:`FlockTracerProvider`: lean spans when the provider allows them,
    the SDK tracer's spans otherwise."""

    def __init__(self, provider: FlockTracerProvider, sdk: Tracer) -> None:
        self._provider = provider
        self._sdk = sdk
        self._scope = SCOPES.key(sdk._instrumentation_scope, sdk.resource)

    def start_span(
        self,
        name: str,
        context: Context | None = None,
        kind: SpanKind = _INTERNAL,
        attributes: Mapping[str, Any] | None = None,
        links: Sequence[Link] | None = (),
        start_time: int | None = None,
        record_exception: bool = True,
        set_status_on_exception: bool = True,
    ) -> trace_api.Span:
        sink = self._provider.lean_sink()
        if sink is not False:
            parent = _get_current_span(context)
            if type(parent) is LeanSpan:
                trace_id, parent_id, remote = parent._trace_id, parent._span_id, False
                flags, state = parent._flags, parent._state
            else:
                found = parent.get_span_context()
                if found.is_valid:
                    if not found.trace_flags.sampled:
                        sink = False  # the SDK decides what an unsampled parent means
                    trace_id, parent_id, remote = found.trace_id, found.span_id, found.is_remote
                    flags, state = int(found.trace_flags) | 1, found.trace_state or None
                else:
                    trace_id, parent_id, remote, flags, state = _new_trace_id(), None, False, 3, None
        if sink is False:
            return self._sdk.start_span(
                name, context, kind, attributes, links, start_time, record_exception, set_status_on_exception
            )
        return LeanSpan(
            name,
            trace_id,
            getrandbits(64) or 1,
            parent_id,
            remote,
            flags,
            state,
            dict(attributes) if attributes else {},  # Flock's own attributes: clean already
            [link for link in links if link.context.is_valid or link.attributes] if links else (),
            kind,
            sink,
            self._scope,
            start_time,
            record_exception,
            set_status_on_exception,
        )

    # The API declares a context manager type of its own (private); any context manager does.
    @contextmanager
    def start_as_current_span(  # type: ignore[override]
        self,
        name: str,
        context: Context | None = None,
        kind: SpanKind = _INTERNAL,
        attributes: Mapping[str, Any] | None = None,
        links: Sequence[Link] | None = (),
        start_time: int | None = None,
        record_exception: bool = True,
        set_status_on_exception: bool = True,
        end_on_exit: bool = True,
    ) -> Iterator[trace_api.Span]:
        span = self.start_span(
            name, context, kind, attributes, links, start_time, record_exception, set_status_on_exception
        )
        with trace_api.use_span(
            span,
            end_on_exit=end_on_exit,
            record_exception=record_exception,
            set_status_on_exception=set_status_on_exception,
        ) as current:
            yield current


def _new_trace_id() -> int:
    return getrandbits(128) or 1


class FlockTracerProvider(TracerProvider):
    """The SDK ``TracerProvider`` that ``enable_tracing`` installs, with a lean tracer for Flock's spans.

    ``sink`` receives the record of every lean span (``None`` while tracing is switched off);
    ``processor`` is the span processor Flock adds, through which SDK spans reach the same exporters.
    The lean path is used while that processor is the only one.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # A sampler, limits or id generator of the caller's: only SDK spans honour them.
        own = ("sampler", "span_limits", "id_generator")
        custom = bool(args) or any(kwargs.get(k) is not None for k in own)
        self._sink: Callable[[Record], None] | None = None
        self._expected: Any = None
        # Flock's tracers are cheap to keep; tracers of other libraries are the SDK's own.
        self._lean_tracers: dict[int, LeanTracer] = {}
        sampler = os.environ.get("OTEL_TRACES_SAMPLER", "").strip().lower()
        self._lean_allowed = (
            not custom
            and sampler in _DEFAULT_SAMPLERS
            and not any(os.environ.get(name) for name in _LIMIT_SETTINGS)
        )

    def use_lean_spans(self, processor: Any, sink: Callable[[Record], None] | None) -> None:
        """Route Flock's spans to ``sink`` while ``processor`` is the provider's only span processor."""
        self._sink = sink
        self._expected = (processor,)

    def lean_sink(self) -> Callable[[Record], None] | Literal[False] | None:
        """Where lean spans go now; ``False`` if Flock's spans must be SDK spans."""
        processors = getattr(self._active_span_processor, "_span_processors", None)
        if self._lean_allowed and processors == self._expected:
            return self._sink
        return False

    def get_tracer(
        self,
        instrumenting_module_name: str,
        instrumenting_library_version: str | None = None,
        schema_url: str | None = None,
        attributes: Any = None,
    ) -> trace_api.Tracer:
        tracer = super().get_tracer(
            instrumenting_module_name, instrumenting_library_version, schema_url, attributes
        )
        if instrumenting_module_name != "flock" or not isinstance(tracer, Tracer):
            return tracer
        lean = self._lean_tracers.get(id(tracer))
        if lean is None:
            lean = self._lean_tracers[id(tracer)] = LeanTracer(self, tracer)
        return lean
