"""What a run leaves behind besides artifacts: failures and a summary."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import BaseModel

from .._tracing.latency import Latency
from .numbers import human
from .types import flock_type


@flock_type(name="flock.WorkflowError")
class WorkflowError(BaseModel):
    """Published when an activation fails, with the failing input's correlation id and visibility.

    ``kind`` says what happened: ``"agent_error"`` (the agent or an engine raised),
    ``"contract"`` (outputs broke the declaration), ``"loop_guard"`` (iteration limit reached),
    ``"subscription_error"`` (a ``where`` predicate or a join key function raised, or journaled work
    that today's declarations no longer let the agent see), ``"invalid_input"`` (a stored input no
    longer validates as its model), ``"timeout"`` (a human task was not answered by its deadline
    and declared no default).
    Agents may subscribe to it like any other type.
    """

    agent: str
    kind: Literal["agent_error", "contract", "loop_guard", "subscription_error", "invalid_input", "timeout"]
    error_type: str
    message: str
    input_ids: list[str] = []
    output_group: int | None = None


@flock_type(name="flock.JoinExpired")
class JoinExpired(BaseModel):
    """Published when a join group's window closes before all its partners arrived.

    The members stay on the board; this event says they were never delivered together.
    """

    agent: str
    key: str
    received: dict[str, int]
    missing: dict[str, int]
    member_ids: list[str]


@dataclass
class RunSummary:
    """Returned by ``run_until_idle``: what happened since the previous run returned.

    ``waiting`` counts artifacts still held by incomplete gates, batches and joins, by agent;
    ``deferred`` counts artifacts whose activation condition has not been met yet. Neither is lost:
    they are delivered when their partners arrive or their condition holds. ``usage`` holds the
    model usage of the run per model name, as the engines recorded it; ``latency`` the
    p50/p90/p99 duration of its model calls per model name (:class:`~flock.Latency`).
    ``open_tasks`` counts the human tasks still waiting for an answer when the run returned (a run
    never waits for people: see ``flock.tasks``).
    """

    activations: int = 0
    artifacts_by_type: Counter[str] = field(default_factory=Counter)
    agents_run: Counter[str] = field(default_factory=Counter)
    errors: list[WorkflowError] = field(default_factory=list)
    filtered_outputs: int = 0
    expired_joins: int = 0
    waiting: dict[str, int] = field(default_factory=dict)
    deferred: int = 0
    metrics: Counter[str] = field(default_factory=Counter)
    usage: dict[str, Any] = field(default_factory=dict)
    latency: dict[str, Latency] = field(default_factory=dict)
    wall_time_s: float = 0.0
    open_tasks: int = 0

    @property
    def ok(self) -> bool:
        return not self.errors

    @property
    def artifacts_published(self) -> int:
        return sum(self.artifacts_by_type.values())

    def __str__(self) -> str:
        lines = [
            f"run: {self.activations:,} activations, {self.artifacts_published:,} artifacts, "
            f"{len(self.errors):,} errors, {self.wall_time_s:.3f}s"
        ]
        if self.artifacts_by_type:
            lines.append(
                "  artifacts: " + ", ".join(f"{k}={v:,}" for k, v in sorted(self.artifacts_by_type.items()))
            )
        if self.agents_run:
            runs = sorted(self.agents_run.items())
            lines.append("  agents:    " + ", ".join(f"{k}={v:,}" for k, v in runs))
        if self.metrics:
            metrics = sorted(self.metrics.items())
            lines.append("  metrics:   " + ", ".join(f"{k}={human(v)}" for k, v in metrics))
        for model, latency in self.latency.items():
            lines.append(f"  latency:   {model} {latency}")
        if self.expired_joins:
            lines.append(f"  expired joins: {self.expired_joins}")
        if self.waiting:
            lines.append("  waiting:   " + ", ".join(f"{k}={v}" for k, v in sorted(self.waiting.items())))
        if self.open_tasks:
            lines.append(f"  open tasks: {self.open_tasks} (waiting for a human answer)")
        if self.deferred:
            lines.append(f"  deferred:  {self.deferred} (activation conditions not met yet)")
        for err in self.errors:
            lines.append(f"  error [{err.kind}] {err.agent}: {err.message}")
        return "\n".join(lines)
