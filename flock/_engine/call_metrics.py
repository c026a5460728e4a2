"""Where a finished model call is counted: the run summary's latency and OpenTelemetry metrics.

The engine hands :func:`call_sink` to its model-call hook (:class:`flock._engine.engine_tracing.ModelCalls`);
the hook reports every call's model, duration, tokens and failure to it. :class:`CallCounter`
counts one evaluation's calls and tokens for the activation's metrics.
"""

from __future__ import annotations

from typing import Any

from dspy.utils.usage_tracker import UsageTracker

from .._tracing.metrics import record_operation
from .engine_tracing import CallSink

_KEY = "flock.call_sink"


def call_sink(settings: Any) -> CallSink:
    """The sink for calls made under ``settings`` (a Flock's ModelSettings, or ``None``): one per Flock."""
    shared = getattr(settings, "shared", None)
    sink = shared.get(_KEY) if shared is not None else None
    if sink is None:
        sink = _make(getattr(settings, "latency", None))
        if shared is not None:
            shared[_KEY] = sink
    return sink


def _make(latency: Any) -> CallSink:
    def sink(
        model: str, seconds: float, tokens: tuple[int, int] | None, exception: BaseException | None
    ) -> None:
        if latency is not None:
            latency.record(model, seconds)
        record_operation(
            model,
            seconds,
            input_tokens=tokens[0] if tokens is not None else None,
            output_tokens=tokens[1] if tokens is not None else None,
            error_type=type(exception).__name__ if exception is not None else None,
        )

    return sink


class CallCounter(UsageTracker):
    """DSPy usage tracker that also counts calls (DSPy skips entries with empty usage)."""

    def __init__(self) -> None:
        super().__init__()
        self.calls = 0
        self.last: dict[str, Any] = {}

    def add_usage(self, lm: str, usage_entry: dict[str, Any]) -> None:
        self.calls += 1
        self.last = dict(usage_entry or {})
        super().add_usage(lm, usage_entry)

    def latest(self) -> tuple[int, dict[str, Any]]:
        return self.calls, self.last

    def metrics(self) -> dict[str, float]:
        tokens_in = tokens_out = 0
        for entries in self.usage_data.values():
            for entry in entries:
                tokens_in += int(entry.get("prompt_tokens") or entry.get("input_tokens") or 0)
                tokens_out += int(entry.get("completion_tokens") or entry.get("output_tokens") or 0)
        return {
            "input_tokens": float(tokens_in),
            "output_tokens": float(tokens_out),
            "model_calls": float(self.calls),
        }
