"""Spans at semantic boundaries: run, publish, activation, evaluation.

Flock uses the OpenTelemetry *API* and the global tracer provider, as instrumented libraries do:
with no provider installed every span is a no-op; a user who installs one (or calls
:func:`flock.tracing.enable_tracing`) receives Flock's spans. The API is imported on first use, not
at ``import flock``.

Causality is the span tree: an activation is a child of the publish span of the artifact that
completed its subscription (other inputs are links), so a whole multi-agent run is one trace.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager, nullcontext
from typing import TYPE_CHECKING, Any
from uuid import UUID

if TYPE_CHECKING:
    from opentelemetry.trace import Span, SpanContext, Tracer

    from ._artifact import Artifact

_tracer: Tracer | None = None
_api: Any = None  # the opentelemetry.trace module, once imported
_OFF: Any = None  # a shared no-op context manager yielding the invalid span
_UNKNOWN = object()


def tracer() -> Tracer:
    """Flock's tracer from the global provider (a proxy until a provider is installed)."""
    global _tracer, _api, _OFF
    if _tracer is None:
        from opentelemetry import trace

        _api, _OFF = trace, nullcontext(trace.INVALID_SPAN)
        _tracer = trace.get_tracer("flock")
    return _tracer


def _off() -> Any:
    """The shared no-op span context when no tracer provider is installed, else ``None``.

    Without a provider every span would be a no-op anyway; skipping them avoids building their
    attributes on the hot path (tens of microseconds per activation).
    """
    tracer()
    provider = getattr(_api, "_TRACER_PROVIDER", _UNKNOWN)
    if provider is _UNKNOWN:  # the API's internals changed: ask it the slow, public way
        provider = _api.get_tracer_provider()
        if isinstance(provider, _api.ProxyTracerProvider):
            provider = None
    if provider is None or isinstance(provider, _api.NoOpTracerProvider):
        return _OFF
    return None


class SpanIndex:
    """Span contexts of published artifacts, so activations can name their causes. Per Flock."""

    def __init__(self, limit: int = 100_000) -> None:
        self._spans: dict[UUID, SpanContext] = {}
        self._limit = limit

    def remember(self, artifact_id: UUID, span: Span) -> None:
        if span.is_recording():
            if len(self._spans) >= self._limit:  # bounded: forget the oldest half
                for key in list(self._spans)[: self._limit // 2]:
                    del self._spans[key]
            self._spans[artifact_id] = span.get_span_context()

    def get(self, artifact_id: UUID) -> SpanContext | None:
        return self._spans.get(artifact_id)


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


@contextmanager
def _publish_span(index: SpanIndex, artifact: Artifact) -> Iterator[Span]:
    with tracer().start_as_current_span(
        f"flock.publish {artifact.type}",
        attributes={
            "flock.artifact.id": str(artifact.id),
            "flock.artifact.type": artifact.type,
            "flock.correlation_id": artifact.correlation_id,
            "flock.produced_by": artifact.produced_by,
        },
    ) as span:
        index.remember(artifact.id, span)
        yield span


@contextmanager
def _activation_span(
    index: SpanIndex, agent: str, subscription: int, inputs: Sequence[Artifact], correlation_id: str
) -> Iterator[Span]:
    from opentelemetry import trace
    from opentelemetry.trace import Link, NonRecordingSpan

    causes = [c for c in (index.get(a.id) for a in inputs) if c is not None]
    context = trace.set_span_in_context(NonRecordingSpan(causes[-1])) if causes else None
    attributes: dict[str, Any] = {
        "flock.agent": agent,
        "flock.subscription": subscription,
        "flock.input.ids": [str(a.id) for a in inputs],
        "flock.input.types": [a.type for a in inputs],
        "flock.correlation_id": correlation_id,
    }
    with tracer().start_as_current_span(
        f"flock.activate {agent}",
        context=context,
        links=[Link(c) for c in causes[:-1]],
        attributes=attributes,
        record_exception=False,
        set_status_on_exception=True,
    ) as span:
        yield span


@contextmanager
def _evaluate_span(agent: str, engines: Sequence[Any], group: int) -> Iterator[Span]:
    with tracer().start_as_current_span(
        f"flock.evaluate {agent}",
        attributes={
            "flock.agent": agent,
            "flock.engine": [type(e).__name__ for e in engines],
            "flock.output_group": group,
        },
    ) as span:
        yield span


def mark_failed(span: Span, error: BaseException, kind: str) -> None:
    """Record a failure on a span: status ERROR, the exception event, and ``flock.error.kind``."""
    from opentelemetry.trace import Status, StatusCode

    if span.is_recording():
        span.set_attribute("flock.error.kind", kind)
        span.record_exception(error)
        span.set_status(Status(StatusCode.ERROR, f"{type(error).__name__}: {error}"))
