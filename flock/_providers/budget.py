"""Budgets for model calls, and the per-model usage a run reports.

:class:`Budget` is the configuration (``Flock(budget=Budget(...))``); the spending it checks lives in
``ModelSettings.shared`` (per Flock). Before each model call the engine asks :func:`check`; past the
budget no new call starts and :class:`~flock.BudgetExceeded` (a :class:`~flock.RunHalted`) stops the
run with the untouched work still queued. :class:`ModelUsage` is what ``RunSummary.usage`` holds per
model name.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from .._core.errors import BudgetExceeded, ConfigurationError

PER = ("run", "correlation", "tenant")


@dataclass(frozen=True)
class Budget:
    """A spending limit on model calls.

    Args:
        max_tokens: input plus output tokens.
        max_cost_usd: estimated cost in US dollars (calls to models whose price is unknown count their
            tokens, not their cost).
        per: what one budget covers: ``"run"`` (each ``run_until_idle``), ``"correlation"`` (each
            workflow) or ``"tenant"`` (each agent tenant; agents without a tenant share one budget).

    Example::

        Flock("openai/gpt-4.1", budget=Budget(max_tokens=2_000_000, max_cost_usd=5.0, per="run"))
    """

    max_tokens: int | None = None
    max_cost_usd: float | None = None
    per: Literal["run", "correlation", "tenant"] = "run"

    def __post_init__(self) -> None:
        if self.per not in PER:
            raise ConfigurationError(f"Budget(per={self.per!r}): choose one of {', '.join(PER)}")
        if self.max_tokens is not None and (
            isinstance(self.max_tokens, bool) or not isinstance(self.max_tokens, int) or self.max_tokens < 0
        ):
            raise ConfigurationError(
                f"Budget(max_tokens=...) must be an int >= 0 or None, got {self.max_tokens!r}"
            )
        if self.max_cost_usd is not None and (
            isinstance(self.max_cost_usd, bool)
            or not isinstance(self.max_cost_usd, int | float)
            or not self.max_cost_usd >= 0  # NaN too: it compares false, so it would limit nothing
        ):
            raise ConfigurationError(
                f"Budget(max_cost_usd=...) must be a number >= 0 or None, got {self.max_cost_usd!r}"
            )


@dataclass
class ModelUsage:
    """What one model did during a run (``RunSummary.usage[model]``).

    Attributes:
        calls: calls the model answered.
        input_tokens, output_tokens: tokens the provider reported for them.
        cost_usd: their estimated cost, or ``None`` when the model's price is unknown.
        retries: calls repeated after a transient failure (429, 5xx, timeout, broken connection).
        failures: calls that failed (each retry that failed counts).
        fallbacks: calls this model answered in place of an earlier model of the engine's ``fallbacks``.
    """

    calls: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    cost_usd: float | None = None
    retries: int = 0
    failures: int = 0
    fallbacks: int = 0

    @property
    def tokens(self) -> int:
        return self.input_tokens + self.output_tokens


def usage_of(usage: dict[str, Any], model: str) -> ModelUsage:
    found = usage.get(model)
    if not isinstance(found, ModelUsage):
        found = usage[model] = ModelUsage()
    return found


def budget_key(budget: Budget, run_id: Any, correlation_id: str, tenant: str | None) -> str:
    if budget.per == "run":
        return f"run:{run_id}"
    if budget.per == "correlation":
        return f"correlation:{correlation_id}"
    return f"tenant:{tenant or ''}"


def _spent(shared: dict[str, Any], key: str) -> list[float]:
    table: dict[str, list[float]] = shared.setdefault("flock.budget", {})
    found = table.get(key)
    if found is None:
        found = table[key] = [0.0, 0.0]  # tokens, dollars
    return found


def check(shared: dict[str, Any], budget: Budget | None, key: str) -> None:
    """Raise :class:`~flock.BudgetExceeded` when the budget behind ``key`` is spent."""
    if budget is None:
        return
    tokens, dollars = _spent(shared, key)
    what = None
    if budget.max_tokens is not None and tokens >= budget.max_tokens:
        what = f"{int(tokens):,} of {budget.max_tokens:,} tokens"
    elif budget.max_cost_usd is not None and dollars >= budget.max_cost_usd:
        what = f"${dollars:.4f} of ${budget.max_cost_usd:.4f}"
    if what is not None:
        per, _, value = key.partition(":")
        scope = {"run": "of this run", "correlation": f"of workflow {value!r}"}.get(
            per, f"of tenant {value!r}"
        )
        raise BudgetExceeded(
            f"the model budget {scope} is spent ({what}): no new model call starts. "
            "The untouched work stays queued: raise Flock(budget=Budget(...)) and run again."
        )


def spend(shared: dict[str, Any], budget: Budget | None, key: str, tokens: int, cost: float | None) -> None:
    if budget is None:
        return
    spent = _spent(shared, key)
    spent[0] += tokens
    if cost is not None:
        spent[1] += cost
