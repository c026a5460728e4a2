"""Provider failures as Flock's typed errors, and which of them are worth another try.

DSPy reports a failed model call as one of its ``LMError`` classes (with the HTTP ``status``, the
provider's ``retry_after`` hint and rate-limit headers when it had them), LiteLLM's and the HTTP
client's errors already folded in. :func:`classify` turns any of them into a
:class:`~flock.ProviderError` subclass whose message says what went wrong and what to do, scrubbed
of the secrets the engine was given.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from contextvars import ContextVar

from .._core.errors import (
    ProviderConfigError,
    ProviderError,
    ProviderTimeout,
    ProviderUnavailable,
    RateLimited,
)
from .._tracing.redact import scrub

_CONFIG_CODES = {"auth", "billing", "unsupported_model", "configuration", "not_configured"}
_RETRYABLE_CODES = {"rate_limit", "timeout", "server", "transport", "lock_timeout"}


def retryable(error: ProviderError) -> bool:
    """Transient failures: rate limits, timeouts, 5xx and broken connections."""
    return isinstance(error, RateLimited | ProviderTimeout | ProviderUnavailable) and not getattr(
        error, "breaker_open", False
    )


def classify(exc: BaseException, model: str, secrets: Iterable[str] = ()) -> ProviderError | None:
    """The typed error for a failed model call, or ``None`` when ``exc`` is not a provider failure."""
    if isinstance(exc, ProviderError):
        return exc
    code = getattr(exc, "code", None)
    status = getattr(exc, "status", None)
    status = status if isinstance(status, int) else None
    if code is None and status is None and not _is_dspy_lm_error(exc):
        return None
    detail = " ".join(scrub(str(exc), secrets).split())
    if len(detail) > 600:
        detail = detail[:600] + " [...]"
    where = f"model {model!r}" + (f" (HTTP {status})" if status else "")
    error: ProviderError
    keys = [k for k in getattr(exc, "env_keys", None) or () if isinstance(k, str)]
    if code == "not_configured" and keys:
        # DSPy's own text tells a DSPy user to pass api_key= to dspy.LM; a Flock user passes lm_kwargs.
        error = ProviderConfigError(
            f"{where} has no API key: set {' or '.join(keys)} in the environment, or pass the key as "
            f"Flock({model!r}, lm_kwargs={{'api_key': ...}}) (or DSPyEngine(lm_kwargs=...) for one agent). "
            "To try Flock without a key, use the built-in 'offline' model (Flock() with FLOCK_MODEL unset). "
            "The run stopped and every input stays queued for the next run.",
            model=model,
        )
    elif code in _CONFIG_CODES or status in (401, 402, 403, 404):
        error = ProviderConfigError(
            f"{where} refused the configuration: {detail}. Check the API key (api_key= in lm_kwargs or "
            "the provider's environment variable), the model name and the api_base; the run stopped and "
            "every input stays queued for the next run.",
            model=model,
        )
    elif code == "rate_limit" or status == 429:
        error = RateLimited(
            f"{where} kept rate-limiting the calls: {detail}. Raise retries=, add a RateLimit for this "
            "model to Flock(limits=[...]) or ask the provider for a higher quota.",
            model=model,
        )
    elif code == "timeout" or status in (408, 504) or (code == "transport" and "timed out" in detail):
        error = ProviderTimeout(
            f"{where} did not answer in time: {detail}. Raise DSPyEngine(timeout=...) or retries=.",
            model=model,
        )
    elif code in _RETRYABLE_CODES or (status is not None and (status >= 500 or 200 <= status < 300)):
        # A 2xx with an unreadable body is a gateway's or proxy's hiccup: as transient as a 502.
        error = ProviderUnavailable(
            f"{where} is unavailable: {detail}. Retry later, raise retries=, or give the engine "
            "fallbacks=(...).",
            model=model,
        )
    else:
        error = ProviderError(
            f"{where} failed: {detail}. Check the request (prompt size, parameters) and the provider's "
            "status.",
            model=model,
        )
    error.status = status  # type: ignore[attr-defined]
    error.retry_after = retry_after(exc)  # type: ignore[attr-defined]
    error.rate_limit_headers = _headers(exc)  # type: ignore[attr-defined]
    return error


def retry_after(exc: BaseException) -> float | None:
    """The provider's hint, in seconds (``Retry-After``, ``retry-after-ms``), when it gave one."""
    hint = getattr(exc, "retry_after", None)
    if isinstance(hint, int | float) and not isinstance(hint, bool) and math.isfinite(hint) and hint >= 0:
        return float(hint)
    return None


def _headers(exc: BaseException) -> dict[str, str]:
    found = getattr(exc, "rate_limit_headers", None)
    if not isinstance(found, Mapping):
        return {}
    out: dict[str, str] = {}
    for name, values in found.items():
        if isinstance(values, list | tuple) and values:
            out[str(name).lower()] = str(values[0])
        elif isinstance(values, str):
            out[str(name).lower()] = values
    return out


def _is_dspy_lm_error(exc: BaseException) -> bool:
    return any(cls.__name__ == "LMError" and cls.__module__.startswith("dspy") for cls in type(exc).__mro__)


PROBING_FORMAT: ContextVar[bool] = ContextVar("flock_probing_format", default=False)
"""True while a call tries a ``response_format`` form not yet known to work for its model."""


def refused(exc: BaseException) -> bool:
    """Whether ``exc`` (or what it wraps) says the provider does not take this ``response_format``.

    Yes for an "unsupported feature" error raised before sending, for 422 (a server that validates
    the request body), and for 400/415/500 whose text names the response format (llama-cpp-python's
    server answers 500 with a validation message to ``{"type": "json_schema"}``). Any other error is
    not a refusal of the format.
    """
    node: BaseException | None = exc
    for _ in range(8):
        if node is None:
            return False
        if "Unsupported" in type(node).__name__:
            return True
        status = getattr(node, "status", None) or getattr(node, "status_code", None)
        try:
            code = int(status) if status is not None else None
        except (TypeError, ValueError):
            code = None
        if code == 422:
            return True
        if code in (400, 415, 500) and any(w in str(node).lower() for w in _FORMAT_WORDS):
            return True
        node = node.__cause__ or node.__context__
    return False


_FORMAT_WORDS = ("response_format", "json_schema", "json_object", "schema", "structured output")
