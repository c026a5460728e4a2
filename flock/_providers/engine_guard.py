"""The DSPy engine's resilience hooks: its settings, and what wraps each evaluation.

:func:`guarded_evaluation` opens the :class:`~flock._providers.resilience.CallScope` the engine's
guarded model view reads (the Flock's shared state, the budget's key, the secrets to scrub) and
makes sure every error leaving the engine is typed (DSPy's ``LMError`` classes become
:class:`~flock.ProviderError` subclasses) and carries none of the secrets the engine was given.
:func:`finish_evaluation` notes on the result and the span which model answered, what it cost, and
tags outputs a fallback model made.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import replace
from typing import Any

from .._core.components import Context, EvalResult
from .._core.errors import ConfigurationError, ProviderError
from .._tracing.redact import scrub
from .breaker import CircuitBreaker
from .provider_errors import classify
from .resilience import SCOPE, CallScope, make_scope, secrets_of


def check_resilience(
    fallbacks: Sequence[Any], timeout: float | None, tool_timeout: float | None, breaker: Any
) -> tuple[tuple[Any, ...], float | None, float | None, CircuitBreaker | None]:
    """Validate ``DSPyEngine``'s resilience arguments (raising :class:`~flock.ConfigurationError`)."""
    import dspy

    if isinstance(fallbacks, str | dspy.BaseLM):
        fallbacks = (fallbacks,)
    fallbacks = tuple(fallbacks or ())
    for model in fallbacks:
        if not (isinstance(model, str) and model) and not isinstance(model, dspy.BaseLM):
            raise ConfigurationError(
                f"DSPyEngine(fallbacks=...) takes model names or dspy.BaseLM objects, got {model!r}"
            )
    for label, value in (("timeout", timeout), ("tool_timeout", tool_timeout)):
        if value is not None and (
            isinstance(value, bool) or not isinstance(value, int | float) or value <= 0
        ):
            raise ConfigurationError(f"DSPyEngine({label}=...) must be seconds > 0 or None, got {value!r}")
    if breaker is not None and not isinstance(breaker, CircuitBreaker):
        raise ConfigurationError(
            f"DSPyEngine(breaker=...) takes a CircuitBreaker(failures=, reset_after=), got {breaker!r}"
        )
    return fallbacks, timeout, tool_timeout, breaker


@asynccontextmanager
async def guarded_evaluation(engine: Any, ctx: Context) -> AsyncIterator[CallScope]:
    settings = ctx.settings
    secrets = secrets_of(engine.lm_kwargs, getattr(settings, "lm_kwargs", None))
    tenant = getattr(ctx.identity, "tenant_id", None)
    scope = make_scope(
        settings, ctx.state.get("run_id"), str(ctx.correlation_id), tenant, secrets, engine._own_state
    )
    token = SCOPE.set(scope)
    try:
        yield scope
    except ProviderError:
        raise  # typed and scrubbed where it was made
    except Exception as exc:
        model = engine.model if isinstance(engine.model, str) else (ctx.model or "offline")
        typed = classify(exc, str(getattr(engine.model, "model", model)), secrets)
        if typed is not None:
            raise typed from None  # DSPy's error (and the provider's echo of the key) stays behind
        _scrub_in_place(exc, secrets)
        raise
    finally:
        SCOPE.reset(token)


def _scrub_in_place(exc: BaseException, secrets: tuple[str, ...]) -> None:
    """Take ``secrets`` out of an error's message; drop its cause chain when it held one."""
    text = str(exc)
    clean = scrub(text, secrets)
    if clean != text:
        exc.args = (clean,)
        exc.__cause__ = None
        exc.__suppress_context__ = True


def finish_evaluation(scope: CallScope, result: EvalResult) -> EvalResult:
    """Which model answered, what it cost (trace, metrics, span), and the fallback's tag on outputs."""
    if scope.answered_by is not None:
        result.trace["model"] = scope.answered_by
    if scope.fallback_from is not None:
        result.trace["fallback_from"] = scope.fallback_from
        tags = frozenset(f"model:{model}" for model in scope.models)
        result = replace(result, tags=result.tags | tags)
    if scope.cost_usd is not None:
        result.metrics["cost_usd"] = result.metrics.get("cost_usd", 0.0) + scope.cost_usd
    from .._engine.engine_tracing import tracing_on

    if tracing_on():
        from opentelemetry import trace

        span = trace.get_current_span()
        span.set_attribute("flock.usage.input_tokens", scope.input_tokens)
        span.set_attribute("flock.usage.output_tokens", scope.output_tokens)
        if scope.cost_usd is not None:
            span.set_attribute("flock.usage.cost_usd", scope.cost_usd)
    return result
