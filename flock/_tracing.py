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
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any
from uuid import UUID

if TYPE_CHECKING:
    from opentelemetry.trace import Span, SpanContext, Tracer

    from ._artifact import Artifact

_tracer: Tracer | None = None


def tracer() -> Tracer:
    """Flock's tracer from the global provider (a proxy until a provider is installed)."""
    global _tracer
    if _tracer is None:
        from opentelemetry import trace

        _tracer = trace.get_tracer("flock")
    return _tracer


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


@contextmanager
def publish_span(index: SpanIndex, artifact: Artifact) -> Iterator[Span]:
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
def activation_span(
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
def evaluate_span(agent: str, engines: Sequence[Any], group: int) -> Iterator[Span]:
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
