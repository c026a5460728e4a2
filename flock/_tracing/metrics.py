"""OpenTelemetry metrics of model calls, through the global meter provider.

Flock records metrics the way instrumented libraries do: with OpenTelemetry's *API* and the global
meter provider. A user who installs a meter provider (or calls :func:`flock.tracing.enable_metrics`)
receives them; with none installed every ``record_*`` function returns after one check, builds no
attributes and touches no instrument. Nothing is imported at ``import flock``.

Instruments (GenAI semantic conventions, then Flock's own counters):

* ``gen_ai.client.operation.duration`` (histogram, ``s``): one point per model call, with
  ``gen_ai.operation.name``, ``gen_ai.provider.name`` (and the older ``gen_ai.system``),
  ``gen_ai.request.model`` and, on a failure, ``error.type``.
* ``gen_ai.client.token.usage`` (histogram, ``{token}``): per call, one point for
  ``gen_ai.token.type=input`` and one for ``output``.
* ``flock.model.retries``, ``flock.model.fallbacks``, ``flock.contract.reasks``,
  ``flock.breaker.transitions`` (with ``flock.breaker.state``), ``flock.rate_limit.waits``
  (counters) and ``flock.rate_limit.wait.duration`` (histogram, ``s``).

Model names are split as on spans: ``"openai/gpt-4.1"`` is provider ``openai``, model ``gpt-4.1``;
built-in models (``"offline"``) belong to provider ``flock``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

__all__ = [
    "OPERATION_DURATION",
    "TOKEN_USAGE",
    "metrics_on",
    "record_breaker_transition",
    "record_fallback",
    "record_operation",
    "record_rate_limit_wait",
    "record_reask",
    "record_retry",
]

OPERATION_DURATION = "gen_ai.client.operation.duration"
TOKEN_USAGE = "gen_ai.client.token.usage"
RETRIES = "flock.model.retries"
FALLBACKS = "flock.model.fallbacks"
REASKS = "flock.contract.reasks"
BREAKER_TRANSITIONS = "flock.breaker.transitions"
RATE_LIMIT_WAITS = "flock.rate_limit.waits"
RATE_LIMIT_WAIT_DURATION = "flock.rate_limit.wait.duration"

# The bucket boundaries the GenAI semantic conventions advise.
_DURATION_BUCKETS = (0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28, 2.56, 5.12, 10.24, 20.48, 40.96, 81.92)
_TOKEN_BUCKETS = tuple(float(4**i) for i in range(14))  # 1, 4, 16 ... 67,108,864
_PROVIDER_ENV = "OTEL_PYTHON_METER_PROVIDER"


@dataclass(frozen=True)
class _Instruments:
    duration: Any
    tokens: Any
    retries: Any
    fallbacks: Any
    reasks: Any
    breaker: Any
    waits: Any
    wait_duration: Any


_instruments: _Instruments | None = None
_internal: Any = None  # opentelemetry.metrics._internal, once imported
_attrs: dict[tuple[str, str | None], dict[str, str]] = {}  # (model, error type) -> attributes


def metrics_on() -> bool:
    """Whether a meter provider is installed (so Flock's metrics are recorded at all)."""
    return _active() is not None


def _active() -> _Instruments | None:
    """Flock's instruments once a meter provider is installed, else ``None`` (cheap to ask)."""
    if _instruments is not None:
        return _instruments
    global _internal
    if _internal is None:
        import opentelemetry.metrics._internal as internal

        _internal = internal
    # The API keeps the global provider here until one is set; the proxy it hands out before
    # that would drop every point anyway. If the API's internals change, ask it publicly.
    provider = getattr(_internal, "_METER_PROVIDER", _internal)
    if provider is None and _PROVIDER_ENV not in os.environ:
        return None
    return _make()


def _make() -> _Instruments:
    global _instruments
    from opentelemetry import metrics

    meter = metrics.get_meter("flock")
    _instruments = _Instruments(
        duration=meter.create_histogram(
            OPERATION_DURATION,
            unit="s",
            description="GenAI operation duration",
            explicit_bucket_boundaries_advisory=list(_DURATION_BUCKETS),
        ),
        tokens=meter.create_histogram(
            TOKEN_USAGE,
            unit="{token}",
            description="Measures number of input and output tokens used",
            explicit_bucket_boundaries_advisory=list(_TOKEN_BUCKETS),
        ),
        retries=meter.create_counter(RETRIES, unit="{retry}", description="Model calls retried"),
        fallbacks=meter.create_counter(
            FALLBACKS, unit="{fallback}", description="Model calls answered by a fallback model"
        ),
        reasks=meter.create_counter(
            REASKS, unit="{reask}", description="Re-asks after an output contract violation"
        ),
        breaker=meter.create_counter(
            BREAKER_TRANSITIONS, unit="{transition}", description="Circuit breaker state changes"
        ),
        waits=meter.create_counter(
            RATE_LIMIT_WAITS, unit="{wait}", description="Model calls that waited for rate-limit capacity"
        ),
        wait_duration=meter.create_histogram(
            RATE_LIMIT_WAIT_DURATION,
            unit="s",
            description="Time a model call waited for rate-limit capacity",
            explicit_bucket_boundaries_advisory=list(_DURATION_BUCKETS),
        ),
    )
    return _instruments


def model_attributes(model: str, error_type: str | None = None) -> dict[str, str]:
    """The GenAI attributes of ``model`` (``provider/name``), plus ``error.type`` if given. Cached:
    the same few models are recorded over and over."""
    key = (model, error_type)
    found = _attrs.get(key)
    if found is None:
        provider, sep, name = model.partition("/")
        if not sep:
            provider, name = "flock", model
        found = {
            "gen_ai.operation.name": "chat",
            "gen_ai.provider.name": provider,
            "gen_ai.system": provider,
            "gen_ai.request.model": name,
        }
        if error_type:
            found["error.type"] = error_type
        if len(_attrs) >= 1024:  # bounded: model names come from configuration, but be safe
            _attrs.clear()
        _attrs[key] = found
    return found


def record_operation(
    model: str,
    seconds: float,
    *,
    input_tokens: int | None = None,
    output_tokens: int | None = None,
    error_type: str | None = None,
) -> None:
    """One model call of ``model`` took ``seconds``; its tokens, or ``error_type`` if it failed."""
    inst = _active()
    if inst is None:
        return
    attributes = model_attributes(model, error_type)
    inst.duration.record(seconds, attributes)
    if input_tokens is not None:
        inst.tokens.record(input_tokens, {**attributes, "gen_ai.token.type": "input"})
    if output_tokens is not None:
        inst.tokens.record(output_tokens, {**attributes, "gen_ai.token.type": "output"})


def record_retry(model: str, error_type: str | None = None) -> None:
    """A call to ``model`` is retried (after ``error_type``, e.g. ``"RateLimited"``)."""
    inst = _active()
    if inst is not None:
        inst.retries.add(1, model_attributes(model, error_type))


def record_fallback(model: str, fallback: str) -> None:
    """A call to ``model`` failed over to ``fallback``."""
    inst = _active()
    if inst is not None:
        inst.fallbacks.add(1, {**model_attributes(model), "flock.fallback.model": fallback})


def record_reask(model: str, agent: str) -> None:
    """``agent`` re-asks ``model`` after an output contract violation."""
    inst = _active()
    if inst is not None:
        inst.reasks.add(1, {**model_attributes(model), "flock.agent": agent})


def record_breaker_transition(model: str, state: str) -> None:
    """The circuit breaker of ``model`` moved to ``state`` (``open``, ``half_open``, ``closed``)."""
    inst = _active()
    if inst is not None:
        inst.breaker.add(1, {**model_attributes(model), "flock.breaker.state": state})


def record_rate_limit_wait(model: str, seconds: float) -> None:
    """A call to ``model`` waited ``seconds`` for rate-limit capacity."""
    inst = _active()
    if inst is not None:
        attributes = model_attributes(model)
        inst.waits.add(1, attributes)
        inst.wait_duration.record(seconds, attributes)
