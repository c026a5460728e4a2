"""Spans at semantic boundaries: run, publish, activation, evaluation.

Flock uses the OpenTelemetry *API* and the global tracer provider, as instrumented libraries do:
with no provider installed every span is a no-op; a user who installs one (or calls
:func:`flock.tracing.enable_tracing`) receives Flock's spans. The API is imported on first use, not
at ``import flock``.

Causality is the span tree: an activation is a child of the publish span of the artifact that
completed its subscription (other inputs are links), so a whole multi-agent run is one trace.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from contextlib import AbstractContextManager, nullcontext
from typing import TYPE_CHECKING, Any
from uuid import UUID

if TYPE_CHECKING:
    from opentelemetry.trace import Span, SpanContext, Tracer

    from .._core.artifact import Artifact

_tracer: Tracer | None = None
_api: Any = None  # the opentelemetry.trace module, once imported
_attach: Any = None  # opentelemetry.context.attach / detach, once imported
_detach: Any = None
_OFF: Any = None  # a shared no-op context manager yielding the invalid span
_UNKNOWN = object()
_seen_provider: Any = _UNKNOWN  # the global provider _off() last looked at, and what it decided
_seen_verdict: Any = None


def tracer() -> Tracer:
    """Flock's tracer from the global provider (a proxy until a provider is installed)."""
    global _tracer, _api, _OFF, _attach, _detach
    if _tracer is None:
        from opentelemetry import context, trace

        _api, _OFF = trace, nullcontext(trace.INVALID_SPAN)
        _attach, _detach = context.attach, context.detach
        _tracer = trace.get_tracer("flock")
    return _tracer


def _off() -> Any:
    """The shared no-op span context when no tracer provider is installed, else ``None``.

    Without a provider every span would be a no-op anyway; skipping them avoids building their
    attributes on the hot path (tens of microseconds per activation).
    """
    global _seen_provider, _seen_verdict
    tracer()
    provider = getattr(_api, "_TRACER_PROVIDER", _UNKNOWN)
    if provider is _seen_provider:  # the provider is set once per process: decide once
        return _seen_verdict
    verdict = None
    if provider is _UNKNOWN:  # the API's internals changed: ask it the slow, public way
        found = _api.get_tracer_provider()
        if isinstance(found, _api.ProxyTracerProvider | _api.NoOpTracerProvider):
            verdict = _OFF
    elif provider is None or isinstance(provider, _api.NoOpTracerProvider):
        verdict = _OFF
    if provider is not _UNKNOWN:
        _seen_provider, _seen_verdict = provider, verdict
    return verdict


class SpanIndex:
    """Span contexts of published artifacts, so activations can name their causes. Per Flock.

    Kept as plain ``(trace_id, span_id, flags, trace_state)`` tuples: a SpanContext object (and its
    TraceFlags) per artifact are two more objects for the garbage collector to walk in every full
    collection; a tuple of ints is not tracked at all. The trace state is kept only if not empty.
    """

    def __init__(self, limit: int = 100_000) -> None:
        self._spans: dict[UUID, tuple[int, int, int, Any]] = {}
        self._limit = limit

    def remember(self, artifact_id: UUID, span: Span) -> None:
        if span.is_recording():
            if len(self._spans) >= self._limit:  # bounded: forget the oldest half
                for key in list(self._spans)[: self._limit // 2]:
                    del self._spans[key]
            ids = getattr(span, "flock_ids", None)  # Flock's lean spans have them at hand
            if ids is None:
                context = span.get_span_context()
                state = context.trace_state
                ids = (context.trace_id, context.span_id, int(context.trace_flags), state if state else None)
            self._spans[artifact_id] = ids

    def get(self, artifact_id: UUID) -> SpanContext | None:
        found = self._spans.get(artifact_id)
        if found is None:
            return None
        trace_id, span_id, flags, state = found
        return _api.SpanContext(
            trace_id, span_id, is_remote=False, trace_flags=_api.TraceFlags(flags), trace_state=state
        )


def publish_span(index: SpanIndex, artifact: Artifact) -> AbstractContextManager[Span]:
    """``flock.publish <Type>``; remembered so activations it causes can hang under it."""
    return _off() or _publish_span(index, artifact)


def activation_span(
    index: SpanIndex, agent: str, subscription: int, inputs: Sequence[Artifact], correlation_id: str
) -> AbstractContextManager[Span]:
    """``flock.activate <agent>``, a child of the publish span of its last input (others are links)."""
    return _off() or _activation_span(index, agent, subscription, inputs, correlation_id)


def evaluate_span(agent: str, engines: Sequence[Any], group: int) -> AbstractContextManager[Span]:
    """``flock.evaluate <agent>`` around the engine chain of one output group."""
    return _off() or _evaluate_span(agent, engines, group)


class _CurrentSpan:
    """``tracer.start_as_current_span(...)`` for a started span, without its three generator layers
    (ours, the SDK's and ``use_span``): make it current, on an ``Exception`` record it and set status
    ERROR as ``use_span`` does, end it. Spans are on the hot path of every activation."""

    __slots__ = ("_record", "_set_status", "_span", "_token")

    def __init__(self, span: Span, record_exception: bool = True, set_status: bool = True) -> None:
        self._span = span
        self._record = record_exception
        self._set_status = set_status
        self._token: object = None

    def __enter__(self) -> Span:
        self._token = _attach(_api.set_span_in_context(self._span))
        return self._span

    def __exit__(self, kind: object, error: BaseException | None, tb: object) -> None:
        span = self._span
        try:
            _detach(self._token)
            # Like use_span: only Exception (not CancelledError, GeneratorExit) marks the span.
            if isinstance(error, Exception) and span.is_recording():
                if self._record:
                    span.record_exception(error)
                if self._set_status:
                    span.set_status(_status_error(f"{type(error).__name__}: {error}"))
        finally:
            span.end()


MAX_PAYLOAD_CHARS = 32_000  # a span attribute, not a copy of the board: long payloads are cut


def _capture_on() -> bool:
    from ..tracing import capture_content_enabled  # the public switch; flock.tracing imports this module

    return capture_content_enabled()


def _publish_span(index: SpanIndex, artifact: Artifact) -> _CurrentSpan:
    attributes: dict[str, Any] = {
        "flock.artifact.id": str(artifact.id),
        "flock.artifact.type": artifact.type,
        "flock.correlation_id": artifact.correlation_id,
        "flock.produced_by": artifact.produced_by,
    }
    if _capture_on():  # content capture (prompts, completions) also records what was published
        payload = json.dumps(artifact.payload, default=str, ensure_ascii=False)
        if len(payload) > MAX_PAYLOAD_CHARS:
            payload = payload[:MAX_PAYLOAD_CHARS] + "…(cut)"
        attributes["flock.artifact.payload"] = payload
    span = tracer().start_span(f"flock.publish {artifact.type}", attributes=attributes)
    index.remember(artifact.id, span)
    return _CurrentSpan(span)


def _activation_span(
    index: SpanIndex, agent: str, subscription: int, inputs: Sequence[Artifact], correlation_id: str
) -> _CurrentSpan:
    causes = [c for c in (index.get(a.id) for a in inputs) if c is not None]
    context = _api.set_span_in_context(_api.NonRecordingSpan(causes[-1])) if causes else None
    attributes: dict[str, Any] = {
        "flock.agent": agent,
        "flock.subscription": subscription,
        "flock.input.ids": [str(a.id) for a in inputs],
        "flock.input.types": [a.type for a in inputs],
        "flock.correlation_id": correlation_id,
    }
    span = tracer().start_span(
        f"flock.activate {agent}",
        context=context,
        links=[_api.Link(c) for c in causes[:-1]],
        attributes=attributes,
        record_exception=False,
        set_status_on_exception=True,
    )
    return _CurrentSpan(span, record_exception=False, set_status=True)


def _evaluate_span(agent: str, engines: Sequence[Any], group: int) -> _CurrentSpan:
    span = tracer().start_span(
        f"flock.evaluate {agent}",
        attributes={
            "flock.agent": agent,
            "flock.engine": [type(e).__name__ for e in engines],
            "flock.output_group": group,
        },
    )
    return _CurrentSpan(span)


def _status_error(description: str) -> Any:
    from opentelemetry.trace import Status, StatusCode

    return Status(StatusCode.ERROR, description)


def mark_failed(span: Span, error: BaseException, kind: str) -> None:
    """Record a failure on a span: status ERROR, the exception event, and ``flock.error.kind``."""
    from opentelemetry.trace import Status, StatusCode

    if span.is_recording():
        span.set_attribute("flock.error.kind", kind)
        span.record_exception(error)
        span.set_status(Status(StatusCode.ERROR, f"{type(error).__name__}: {error}"))
