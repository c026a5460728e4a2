"""Flock-wide model settings: what every engine of one Flock inherits and shares.

A :class:`ModelSettings` belongs to one :class:`~flock.Flock` and reaches engines through
``Context.settings``. It carries the Flock's model, the keyword arguments every ``DSPyEngine``
that sets none inherits, the rate limits and budget, and ``shared``: per-Flock state that engines
keep between calls (rate-limit buckets, circuit breakers, what a provider accepted). Nothing here
is process-global: two flocks in one process never share it.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from .._engine.model_names import check_model_name
from .._tracing.latency import LatencyStats
from .errors import ConfigurationError


def resolve_model(model: str | None) -> str:
    """explicit > ``FLOCK_MODEL`` > ``DEFAULT_MODEL`` > ``"offline"``, checked (see
    :func:`flock._engine.model_names.check_model_name`): a typo is a ``ConfigurationError`` with a
    "did you mean"."""
    if model:
        return check_model_name(model, "Flock(model=...)")
    for variable in ("FLOCK_MODEL", "DEFAULT_MODEL"):
        value = os.environ.get(variable)
        if value:
            return check_model_name(value, variable)
    return "offline"


def check_limits_and_budget(limits: Any, budget: Any) -> None:
    """Refuse ``Flock(limits=..., budget=...)`` values that are not what they should be."""
    from .._providers.budget import Budget
    from .._providers.ratelimit import RateLimit

    if isinstance(limits, RateLimit) or not isinstance(limits, Iterable):
        raise ConfigurationError(
            f"limits= takes a list of RateLimit values, e.g. limits=[RateLimit('openai/*', "
            f"requests_per_minute=500)]; got {limits!r}"
        )
    for limit in limits:
        if not isinstance(limit, RateLimit):
            raise ConfigurationError(
                f"limits= takes RateLimit values, e.g. RateLimit('openai/*', requests_per_minute=500); "
                f"got {limit!r}"
            )
    if budget is not None and not isinstance(budget, Budget):
        raise ConfigurationError(
            f"budget= takes a Budget, e.g. Budget(max_tokens=2_000_000, max_cost_usd=5.0); got {budget!r}"
        )


@dataclass
class ModelSettings:
    """What one Flock's engines inherit and share.

    Attributes:
        model: the Flock's resolved model name.
        lm_kwargs: keyword arguments for ``dspy.LM`` inherited by every engine that sets none.
        limits: the Flock's :class:`~flock.RateLimit` values.
        budget: the Flock's :class:`~flock.Budget`, or ``None``.
        shared: per-Flock state engines keep between calls.
        usage: per-model usage since the last run summary was taken (model name → record); the
            orchestrator moves it into ``RunSummary.usage`` when a run returns.
        latency: per-model call durations since the last run summary (``RunSummary.latency``).
        concurrency: the Flock's ``max_concurrency``; engines size their HTTP connection pools to it.
    """

    model: str
    lm_kwargs: Mapping[str, Any] = field(default_factory=dict)
    limits: Sequence[Any] = ()
    budget: Any = None
    shared: dict[str, Any] = field(default_factory=dict)
    usage: dict[str, Any] = field(default_factory=dict)
    latency: LatencyStats = field(default_factory=LatencyStats)
    concurrency: int = 0

    async def aclose(self) -> None:
        """Close what engines keep open in ``shared`` (values with an async ``aclose()``, such as the
        Flock's MCP sessions). ``Flock.shutdown()`` calls it."""
        for value in list(self.shared.values()):
            close = getattr(value, "aclose", None)
            if callable(close):
                await close()

    def take_usage(self) -> dict[str, Any]:
        usage, self.usage = self.usage, {}
        return usage
