"""What the router decides, as plain values. One owner (the orchestrator) carries them out.

Routing an artifact, firing a timer or re-checking held artifacts returns a list of these; none of
them has been acted on yet, so a test can look at them and the owner applies them in one place.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import UUID

from .artifact import Artifact
from .scheduler import Activation


@dataclass(frozen=True, slots=True)
class Activate:
    """Queue this activation: its inputs are complete and every check passed."""

    activation: Activation


@dataclass(frozen=True, slots=True)
class WakeLater:
    """Ask the router again (:meth:`Router.wake`) with ``token`` after ``delay`` seconds.

    ``blocks_idle``: the run is not idle while it is pending (an ``AfterVisibility`` release that
    some agent will see); passive deadlines (batch timeouts, join windows, schedules) do not block.
    """

    delay: float
    token: Any
    blocks_idle: bool = False


@dataclass(frozen=True, slots=True)
class RecordFailure:
    """Record a failure that belongs to no running activation (a raising ``where``, the loop guard).

    ``artifact_id`` is derived from the cause, so the same failure met twice is recorded once.
    """

    agent: str
    inputs: tuple[Artifact, ...]
    kind: str
    error: BaseException | str
    artifact_id: UUID


@dataclass(frozen=True, slots=True)
class Fail:
    """Record this activation as failed without running it: the loop guard refused it, or journaled
    work that today's declarations no longer allow. Its inputs count as handled."""

    activation: Activation
    kind: str
    error: str


@dataclass(frozen=True, slots=True)
class Emit:
    """Publish an event the router made (a :class:`~flock.JoinExpired`), once per id."""

    artifact: Artifact


@dataclass(frozen=True, slots=True)
class CloseTask:
    """Close a human task with these artifacts (its deadline passed): the first one's id is the
    task's answer id, so when an answer was stored first nothing is published."""

    artifacts: tuple[Artifact, ...]


Decision = Activate | WakeLater | RecordFailure | Fail | Emit | CloseTask


# Wake tokens: what a timer asks the router to do when it fires.


@dataclass(frozen=True, slots=True)
class Reroute:
    """An ``AfterVisibility`` artifact became visible: route it to one subscription."""

    artifact: Artifact
    agent: str
    subscription: int


@dataclass(frozen=True, slots=True)
class FlushBatch:
    key: tuple[str, int, str]
    number: int | None


@dataclass(frozen=True, slots=True)
class ExpireJoin:
    agent: str
    subscription: int
    key: Any
    number: int


@dataclass(frozen=True, slots=True)
class ExpireTask:
    """A human task's deadline came: close it unless it was answered."""

    task: Artifact


@dataclass(frozen=True, slots=True)
class ScheduleTick:
    agent: str
    iteration: int
    due: datetime
