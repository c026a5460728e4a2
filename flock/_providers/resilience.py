"""One model call, made to survive a real provider.

The engine hands DSPy a *guarded view* of its model: a copy of the model object whose ``acall``
runs every call through :func:`call_chain`. Per call, for each model of the chain (the engine's model,
then its ``fallbacks``):

1. the budget is checked (past it: :class:`~flock.BudgetExceeded`, no call starts);
2. the model endpoint's circuit breaker is asked (open: :class:`~flock.ProviderUnavailable` at once);
3. the Flock's rate limiter for the model admits the call (the caller waits, first come first served);
4. the call runs under a hard deadline (``anyio.fail_after``: bytes trickling in do not extend it);
5. a failure becomes a typed :class:`~flock.ProviderError`; transient ones are retried with
   exponential backoff that honours ``Retry-After``; when retries are spent (or the breaker is open, or
   the deadline passed) the next model of the chain answers.

Usage (calls, tokens, cost, retries, fallbacks) goes to ``ModelSettings.usage``; budgets, breakers,
limiters and prices live in ``ModelSettings.shared``: all per Flock.
"""

from __future__ import annotations

import copy
import logging
import random
from collections.abc import Sequence
from contextlib import nullcontext
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any

import anyio

from .._core.errors import (
    ProviderConfigError,
    ProviderError,
    ProviderTimeout,
    ProviderUnavailable,
    RateLimited,
)
from .._tracing.metrics import (
    record_breaker_transition,
    record_fallback,
    record_rate_limit_wait,
    record_retry,
)
from .breaker import BreakerState, CircuitBreaker
from .budget import Budget, budget_key, check, spend, usage_of
from .provider_errors import PROBING_FORMAT, classify, refused, retryable
from .ratelimit import estimate_tokens, limiter_for

logger = logging.getLogger("flock")

BACKOFF_BASE = 0.25  # seconds before the first retry; doubled per retry, +-25% jitter
BACKOFF_MAX = 20.0
RETRY_AFTER_MAX = 120.0  # a longer hint is capped: the next retry asks again


@dataclass(frozen=True)
class CallPolicy:
    """An engine's resilience settings."""

    timeout: float | None = None
    retries: int = 3
    breaker: CircuitBreaker | None = None


@dataclass
class CallScope:
    """What the calls of one evaluation share: the Flock's state, the budget's key, the secrets."""

    shared: dict[str, Any]
    usage: dict[str, Any]
    limits: Sequence[Any] = ()
    budget: Budget | None = None
    key: str = ""
    secrets: tuple[str, ...] = ()
    answered_by: str | None = None
    fallback_from: str | None = None
    models: list[str] = field(default_factory=list)  # every model that answered, in order
    input_tokens: int = 0
    output_tokens: int = 0
    cost_usd: float | None = None


SCOPE: ContextVar[CallScope | None] = ContextVar("flock_call_scope", default=None)


def make_scope(
    settings: Any,
    run_id: Any,
    correlation_id: str,
    tenant: str | None,
    secrets: tuple[str, ...],
    own: dict[str, Any],
) -> CallScope:
    """A scope on the Flock's settings, or on ``own`` (an engine called outside a Flock)."""
    if settings is None:
        shared = own.setdefault("shared", {})
        return CallScope(shared=shared, usage=own.setdefault("usage", {}), secrets=secrets)
    budget = settings.budget
    key = budget_key(budget, run_id, correlation_id, tenant) if budget is not None else ""
    return CallScope(
        shared=settings.shared,
        usage=settings.usage,
        limits=tuple(settings.limits or ()),
        budget=budget,
        key=key,
        secrets=secrets,
    )


class GuardedModels:
    """Per engine: the guarded view of a chain of models (made once per chain, kept in step)."""

    def __init__(self, policy: CallPolicy) -> None:
        self.policy = policy
        self._views: dict[tuple[int, ...], tuple[tuple[Any, ...], Any]] = {}

    def view(self, chain: Sequence[tuple[str, Any]]) -> Any:
        """A copy of the first model whose ``acall`` goes through :func:`call_chain` over ``chain``."""
        targets = tuple(target for _, target in chain)
        key = tuple(id(t) for t in targets)
        found = self._views.get(key)
        if found is not None and all(a is b for a, b in zip(found[0], targets, strict=True)):
            return found[1]
        names = tuple(name for name, _ in chain)
        view = copy.copy(targets[0])
        policy = self.policy

        async def acall(prompt: Any = None, *, messages: Any = None, **kwargs: Any) -> Any:
            scope = SCOPE.get()
            adapter = _adapter_marked(view, messages)
            if scope is None:  # a call outside an evaluation: nothing to account it to
                with _adapter_call(targets[0], messages, adapter):
                    return await targets[0].acall(prompt, messages=messages, **kwargs)
            chain = list(zip(names, targets, strict=True))
            return await call_chain(chain, policy, scope, prompt, messages, kwargs, adapter)

        view.acall = acall
        self._views[key] = (targets, view)
        return view


async def call_chain(
    chain: Sequence[tuple[str, Any]],
    policy: CallPolicy,
    scope: CallScope,
    prompt: Any,
    messages: Any,
    kwargs: dict[str, Any],
    adapter: bool = False,
) -> Any:
    """Call the first model of ``chain`` that answers (see the module docstring)."""
    failed: list[ProviderError] = []
    for position, (name, target) in enumerate(chain):
        try:
            outputs = await _call_one(name, target, policy, scope, prompt, messages, kwargs, adapter)
        except ProviderError as exc:
            if isinstance(exc, ProviderConfigError) or not _falls_back(exc) or position == len(chain) - 1:
                raise
            failed.append(exc)
            record_fallback(name, chain[position + 1][0])
            logger.warning(
                "model %r failed (%s); falling back to %r", name, type(exc).__name__, chain[position + 1][0]
            )
            continue
        if position:
            scope.fallback_from = chain[0][0]
            usage_of(scope.usage, name).fallbacks += 1
            _span_attributes({"flock.model.fallback_from": chain[0][0]})
        scope.answered_by = name
        scope.models.append(name)
        _span_attributes({"flock.model": name})
        return outputs
    raise AssertionError("unreachable: the last model's failure is raised")  # pragma: no cover


def _falls_back(error: ProviderError) -> bool:
    return isinstance(error, ProviderUnavailable | ProviderTimeout | RateLimited)


async def _call_one(
    name: str,
    target: Any,
    policy: CallPolicy,
    scope: CallScope,
    prompt: Any,
    messages: Any,
    kwargs: dict[str, Any],
    adapter: bool,
) -> Any:
    shared = scope.shared
    usage = usage_of(scope.usage, name)
    breaker = _breaker_for(shared, name, target, policy.breaker) if policy.breaker is not None else None
    limiter = limiter_for(shared, scope.limits, name)
    max_tokens = kwargs.get("max_tokens") or (getattr(target, "kwargs", None) or {}).get("max_tokens")
    attempt = 0
    while True:
        if scope.budget is not None:
            check(shared, scope.budget, scope.key)
        if breaker is not None and not breaker.allow():
            fast = ProviderUnavailable(
                f"the circuit breaker of model {name!r} is open after {breaker.failures} failed calls in a "
                f"row: calls fail fast for {breaker.retry_in():.1f} s more, then one probe call goes "
                "through. Give the engine fallbacks=(...) to keep answering meanwhile.",
                model=name,
            )
            fast.breaker_open = True  # type: ignore[attr-defined]
            raise fast
        estimate = estimate_tokens(messages, prompt, max_tokens) if limiter.tokens else 0.0
        if limiter.limited or limiter.blocked_until:
            waited = await limiter.acquire(estimate)
            if waited > 0.001:
                record_rate_limit_wait(name, waited)
                _span_event("flock.rate_limit.wait", {"flock.model": name, "flock.wait_seconds": waited})
        tracker = _tracker()
        before = getattr(tracker, "calls", None)
        error: ProviderError
        try:
            with _adapter_call(target, messages, adapter):
                if policy.timeout is not None:
                    with anyio.fail_after(policy.timeout):
                        outputs = await target.acall(prompt, messages=messages, **kwargs)
                else:
                    outputs = await target.acall(prompt, messages=messages, **kwargs)
        except TimeoutError as exc:
            if isinstance(exc, ProviderError):
                error = exc
            else:
                error = ProviderTimeout(
                    f"model {name!r} did not finish one call within the deadline of {policy.timeout} s "
                    "(DSPyEngine(timeout=...)). Raise the timeout, or check the provider's status.",
                    model=name,
                )
        except Exception as exc:
            if type(exc).__name__ == "ContextWindowExceededError":
                _release(limiter, estimate, breaker)
                raise  # DSPy's ReAct shortens its history on this one: let it through untouched
            typed = classify(exc, name, scope.secrets)
            if typed is None or (PROBING_FORMAT.get() and refused(exc)):
                # Not a provider failure, or the provider refusing a response_format being tried:
                # the structured-outputs layer falls back to another form; no retry, no breaker count.
                _release(limiter, estimate, breaker)
                raise
            error = typed
        except BaseException:
            _release(limiter, estimate, breaker)
            raise
        else:
            tokens = _usage(tracker, before)
            if limiter.limited or limiter.blocked_until:
                limiter.release(estimate, float(sum(tokens)) if tokens else None)
            if breaker is not None:
                breaker.success()
            _account(scope, usage, name, tokens)
            return outputs
        # The call failed with a typed provider error.
        if limiter.limited or limiter.blocked_until:
            limiter.release(estimate, None)
        usage.failures += 1
        if isinstance(error, RateLimited) or getattr(error, "status", None) == 429:
            limiter.learn(getattr(error, "retry_after", None), getattr(error, "rate_limit_headers", {}) or {})
        if not retryable(error):
            if breaker is not None:
                breaker.release()
            raise error
        if breaker is not None:
            breaker.failure()
        if attempt >= policy.retries:
            raise error
        attempt += 1
        usage.retries += 1
        record_retry(name, type(error).__name__)
        delay = _delay(attempt, getattr(error, "retry_after", None))
        _span_event(
            "flock.retry",
            {
                "flock.model": name,
                "flock.retry.attempt": attempt,
                "flock.retry.error": type(error).__name__,
                "flock.retry.delay": delay,
            },
        )
        logger.info(
            "model %r: %s; retry %d/%d in %.2f s", name, type(error).__name__, attempt, policy.retries, delay
        )
        await anyio.sleep(delay)


def _adapter_marked(view: Any, messages: Any) -> bool:
    """Did a DSPy adapter make this call on the view? (DSPy warns about message lists otherwise.)"""
    try:
        from dspy.clients._deprecation import _adapter_call as marker
    except ImportError:  # another DSPy: nothing to carry over
        return False
    origin = marker.get()
    return origin is not None and origin[0] is view and origin[1] is messages


def _adapter_call(target: Any, messages: Any, adapter: bool) -> Any:
    """Carry the adapter's mark over to the model that really makes the call."""
    if not adapter:
        return nullcontext()
    from dspy.clients._deprecation import adapter_message_call

    return adapter_message_call(target, messages)


def _delay(attempt: int, retry_after: float | None) -> float:
    if retry_after is not None:
        return min(retry_after, RETRY_AFTER_MAX)
    return min(BACKOFF_BASE * 2 ** (attempt - 1), BACKOFF_MAX) * random.uniform(0.75, 1.25)


def _release(limiter: Any, estimate: float, breaker: BreakerState | None) -> None:
    if limiter.limited or limiter.blocked_until:
        limiter.release(estimate, None)
    if breaker is not None:
        breaker.release()


def _tracker() -> Any:
    import dspy

    return dspy.settings.get("usage_tracker", None)


def _usage(tracker: Any, before: int | None) -> tuple[int, int] | None:
    """(input, output) tokens the provider reported for the call just made, if any."""
    if tracker is None or before is None or getattr(tracker, "calls", before) <= before:
        return None
    last = getattr(tracker, "last", None) or {}
    return (
        int(last.get("prompt_tokens") or last.get("input_tokens") or 0),
        int(last.get("completion_tokens") or last.get("output_tokens") or 0),
    )


def _account(scope: CallScope, usage: Any, name: str, tokens: tuple[int, int] | None) -> None:
    tokens_in, tokens_out = tokens or (0, 0)
    usage.calls += 1
    usage.input_tokens += tokens_in
    usage.output_tokens += tokens_out
    scope.input_tokens += tokens_in
    scope.output_tokens += tokens_out
    price = price_of(scope.shared, name)
    cost = None if price is None else tokens_in * price[0] + tokens_out * price[1]
    if cost is not None:
        usage.cost_usd = (usage.cost_usd or 0.0) + cost
        scope.cost_usd = (scope.cost_usd or 0.0) + cost
    if scope.budget is not None:
        spend(scope.shared, scope.budget, scope.key, tokens_in + tokens_out, cost)


def price_of(shared: dict[str, Any], model: str) -> tuple[float, float] | None:
    """USD per input and output token for ``model`` from DSPy's price table (looked up once per Flock)."""
    prices: dict[str, tuple[float, float] | None] = shared.setdefault("flock.prices", {})
    if model in prices:
        return prices[model]
    found: tuple[float, float] | None = None
    provider, sep, bare = model.partition("/")
    if sep:
        try:
            from dspy.clients.model_metadata import model_info, rate

            info = model_info(provider, bare)
            rates = (
                (rate(info, "input_cost_per_token"), rate(info, "output_cost_per_token")) if info else None
            )
            if rates is not None and rates[0] is not None and rates[1] is not None:
                found = (float(rates[0]), float(rates[1]))
        except Exception:  # advisory: an unreadable price table means an unknown price, never a failure
            logger.debug("no price for model %r", model, exc_info=True)
    prices[model] = found
    return found


def _breaker_for(shared: dict[str, Any], name: str, target: Any, policy: CircuitBreaker) -> BreakerState:
    base = (getattr(target, "kwargs", None) or {}).get("api_base") or ""
    endpoint = f"{name} {base}".strip()
    table: dict[str, BreakerState] = shared.setdefault("flock.breakers", {})
    found = table.get(endpoint)
    if found is None or found.policy != policy:

        def moved(endpoint: str, old: str, new: str) -> None:
            log = logger.warning if new == "open" else logger.info
            log("circuit breaker of %s: %s -> %s", endpoint, old, new)
            record_breaker_transition(name, new)
            _span_event(
                f"flock.breaker.{new}", {"flock.breaker.endpoint": endpoint, "flock.breaker.from": old}
            )

        found = table[endpoint] = BreakerState(endpoint, policy, on_change=moved)
    return found


def _span_event(name: str, attributes: dict[str, Any]) -> None:
    from .._engine.engine_tracing import tracing_on

    if tracing_on():
        from opentelemetry import trace

        trace.get_current_span().add_event(name, attributes)


def _span_attributes(attributes: dict[str, Any]) -> None:
    from .._engine.engine_tracing import tracing_on

    if tracing_on():
        from opentelemetry import trace

        span = trace.get_current_span()
        for key, value in attributes.items():
            span.set_attribute(key, value)


def secrets_of(*kwargs: Any) -> tuple[str, ...]:
    """Every credential in the given keyword-argument mappings, registered for span scrubbing too."""
    from .._tracing.redact import register_secrets, secrets_in

    found: set[str] = set()
    for mapping in kwargs:
        found.update(secrets_in(mapping))
    register_secrets(found)
    return tuple(sorted(found, key=len, reverse=True))
