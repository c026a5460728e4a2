"""Immutable agent specifications: what the builder produces and the orchestrator runs.

Nothing here does work; these are values a test can inspect (``flock.agent("x")...spec``).
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, time, timedelta
from functools import cached_property
from typing import Any

from pydantic import BaseModel

from .clock import MAX_DELAY
from .visibility import AgentIdentity, Visibility

Predicate = Callable[[Any], bool]


@dataclass(frozen=True)
class BatchSpec:
    """Deliver artifacts in lists: once ``size`` have arrived, or ``timeout`` after the first one.

    Batches are collected per correlation id; ``per_correlation=False`` batches across workflows.
    A batch may be partial (on timeout, or flushed when the run is otherwise idle), so a function
    engine takes the models as ``*items``::

        def digest(*tickets: Ticket) -> Digest:
            return Digest(count=len(tickets))

        flock.agent("digest").consumes(Ticket, batch=BatchSpec(size=10, timeout=30)).publishes(
            Digest
        ).calls(digest)
    """

    size: int | None = None
    timeout: timedelta | None = None
    per_correlation: bool = True

    def __post_init__(self) -> None:
        from .errors import ConfigurationError

        if self.size is None and self.timeout is None:
            raise ConfigurationError("BatchSpec needs size=, timeout= or both: BatchSpec(size=10)")
        if self.size is not None and (not isinstance(self.size, int) or self.size < 1):
            raise ConfigurationError(f"BatchSpec size must be an int >= 1, got {self.size!r}")
        if self.timeout is not None:
            t = self.timeout
            if isinstance(t, int | float) and not isinstance(t, bool):
                if not 0 < t <= MAX_DELAY.total_seconds():  # NaN, inf or past the calendar too
                    raise ConfigurationError(
                        f"BatchSpec timeout must be positive seconds, at most 100 years, got {t!r}"
                    )
                object.__setattr__(self, "timeout", timedelta(seconds=t))
            elif not isinstance(t, timedelta):
                raise ConfigurationError(f"BatchSpec timeout must be a timedelta or seconds, got {t!r}")
            if self.timeout <= timedelta(0):  # type: ignore[operator,unused-ignore]
                raise ConfigurationError("BatchSpec timeout must be positive")


@dataclass(frozen=True)
class Tick:
    """What a scheduled activation receives in ``ctx.tick``: which firing this is, and when."""

    iteration: int
    fired_at: datetime


@dataclass(frozen=True)
class ScheduleSpec:
    """When a scheduled agent runs. Built by ``AgentBuilder.schedule(...)``.

    ``after`` delays the first run; ``every`` repeats; ``at`` is a daily time of day or one moment;
    ``cron`` a five-field cron expression; ``max_repeats`` caps the number of runs.
    """

    every: timedelta | None = None
    at: time | datetime | None = None
    cron: Any = None
    after: timedelta | None = None
    max_repeats: int | None = None

    def first(self, now: datetime) -> datetime | None:
        """The first firing time at or after ``now``."""
        start = now + (self.after or timedelta(0))
        return self._next(start, inclusive=True)

    def following(self, fired: datetime, iteration: int, now: datetime | None = None) -> datetime | None:
        """The firing after ``fired`` (the ``iteration``-th run), or ``None`` when done.

        Firings that ``now`` has already passed are skipped: when nothing ran the flock while they
        were due, the one late run stands for all of them instead of a burst of catch-up runs.
        """
        if self.max_repeats is not None and iteration >= self.max_repeats:
            return None
        if self.every is None and self.cron is None and not isinstance(self.at, time):
            return None  # a one-off: ``after`` alone, or ``at=datetime``
        following = self._next(fired, inclusive=False)
        if now is None or following is None or following > now:
            return following
        if self.every is not None:  # stay on the every-grid
            return following + self.every * (math.floor((now - following) / self.every) + 1)
        return self._next(now, inclusive=False)

    def _next(self, moment: datetime, *, inclusive: bool) -> datetime | None:
        if self.cron is not None:
            return self.cron.next_after(moment - timedelta(microseconds=1) if inclusive else moment)
        if isinstance(self.at, datetime):
            # A moment already past runs once, late, like a missed repeating firing; never silently not.
            return max(self.at, moment) if inclusive else None
        if isinstance(self.at, time):
            candidate = datetime.combine(moment.date(), self.at, tzinfo=self.at.tzinfo or moment.tzinfo)
            if candidate < moment or (candidate == moment and not inclusive):
                candidate += timedelta(days=1)
            return candidate
        if self.every is not None:
            return moment if inclusive else moment + self.every
        return moment if inclusive else None


@dataclass(frozen=True)
class JoinSpec:
    """Group artifacts of the consumed types by ``by(model)`` within a time window or a count window.

    ``by`` receives a member of every joined type (it may be async); members with equal keys form
    one activation, in the order the types are listed::

        flock.agent("matcher").consumes(
            Order, Payment, join=JoinSpec(by=lambda m: m.order_id, within=timedelta(minutes=5))
        ).calls(lambda order, payment: Receipt(order_id=order.order_id))

    ``within`` is a time window (a ``timedelta``, counted from the group's first member) or a
    count window (an int: the group must complete before that many further artifacts reach the
    subscription); an incomplete group then expires as a :class:`JoinExpired`.
    """

    by: Callable[[Any], Any]
    within: timedelta | int

    def __post_init__(self) -> None:
        from .errors import ConfigurationError

        if not callable(self.by):
            raise ConfigurationError("JoinSpec(by=...) must be a callable that returns the join key")
        w = self.within
        if (
            isinstance(w, bool)
            or not isinstance(w, timedelta | int)
            or (w <= timedelta(0) if isinstance(w, timedelta) else w < 1)
        ):
            raise ConfigurationError(
                f"JoinSpec(within=...) must be a positive timedelta or an artifact count >= 1, got {w!r}"
            )


@dataclass(frozen=True)
class Subscription:
    """One ``consumes()`` call. Several types are an AND gate; a repeated type is a count gate."""

    index: int
    types: tuple[type[BaseModel], ...]
    type_names: tuple[str, ...]
    where: tuple[Predicate, ...] = ()
    from_agents: frozenset[str] | None = None
    tags: frozenset[str] | None = None
    join: JoinSpec | None = None
    batch: BatchSpec | None = None
    activation: Any = None

    @property
    def counts(self) -> dict[str, int]:
        """How many artifacts of each type name one activation needs."""
        return dict(Counter(self.type_names))

    @property
    def is_gate(self) -> bool:
        """True when one activation needs more than one artifact (AND or count gate)."""
        return len(self.type_names) > 1


@dataclass(frozen=True)
class OutputDecl:
    """One declared output type within an output group."""

    type: type[BaseModel]
    type_name: str
    fan_out: tuple[int, int] | None = None
    where: Predicate | None = None
    validate: tuple[tuple[Predicate, str | None], ...] = ()
    visibility: Visibility | Callable[[Any], Visibility] | None = None
    description: str | None = None

    @property
    def is_list(self) -> bool:
        return self.fan_out is not None

    @property
    def count_text(self) -> str:
        """The count contract in words: ``"exactly 1"``, ``"exactly 5"``, ``"between 2 and 4"``."""
        lo, hi = self.fan_out or (1, 1)
        return f"exactly {lo}" if lo == hi else f"between {lo} and {hi}"

    def count_ok(self, n: int) -> bool:
        lo, hi = self.fan_out or (1, 1)
        return lo <= n <= hi


@dataclass(frozen=True)
class OutputGroup:
    """One ``publishes()`` call: the outputs one engine call must produce together."""

    index: int
    outputs: tuple[OutputDecl, ...]
    description: str | None = None


@dataclass(frozen=True)
class HumanSpec:
    """A human answers for the agent (``AgentBuilder.human(...)``): each activation opens a task.

    ``prompt`` is shown with each task (empty: the agent's description); ``timeout`` is in seconds
    (``None``: no deadline); ``default`` is the answer published when the deadline passes (a model
    instance, a list of them, or an answer payload; ``None``: a ``WorkflowError`` of kind
    ``"timeout"`` instead).
    """

    prompt: str
    timeout: float | None = None
    default: Any = None


@dataclass(frozen=True)
class AgentSpec:
    """Everything declared about one agent. Built by :class:`~flock.AgentBuilder`, never mutated."""

    name: str
    description: str | None = None
    subscriptions: tuple[Subscription, ...] = ()
    output_groups: tuple[OutputGroup, ...] = ()
    engines: tuple[Any, ...] = ()
    utilities: tuple[Any, ...] = ()
    tools: tuple[Callable[..., Any], ...] = ()
    toolsets: tuple[Any, ...] = ()  # tools listed at run time, e.g. an MCP server's (.with_mcp)
    context_provider: Any = None
    max_concurrency: int = 32  # see docs/concepts.md, Concurrency: measured with bench_concurrency.py
    prevent_self_trigger: bool = True
    labels: frozenset[str] = frozenset()
    tenant_id: str | None = None
    best_of: tuple[int, Callable[[Any], float]] | None = None
    schedule: ScheduleSpec | None = None
    human: HumanSpec | None = None
    extra: dict[str, Any] = field(default_factory=dict, compare=False, hash=False)

    @cached_property
    def identity(self) -> AgentIdentity:
        return AgentIdentity(name=self.name, labels=self.labels, tenant_id=self.tenant_id)

    @property
    def consumed_type_names(self) -> frozenset[str]:
        return frozenset(n for s in self.subscriptions for n in s.type_names)

    @property
    def published_type_names(self) -> frozenset[str]:
        return frozenset(o.type_name for g in self.output_groups for o in g.outputs)
