"""``flock.map(agent, inputs)``: run one agent over many inputs on the board, results in order.

Every input is published as an artifact of its own workflow (so stores, traces and other agents see
it as usual), the flock runs until idle, and each input's slot holds what the agent published from
it: a list of output models, or the :class:`~flock.WorkflowError` when that input failed. Other
inputs are unaffected by one failure. A cancelled map keeps what finished on the board.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterable
from typing import IO, Any

from pydantic import BaseModel

from .._core.artifact import Artifact
from .._core.catalog import Catalog
from .._core.errors import ConfigurationError, UnknownAgentError
from .._core.lifecycle import State
from .._core.outcomes import WorkflowError
from .._core.scheduler import Activation
from .._core.types import type_name
from .._stores.store import FilterConfig

_WORKFLOW_ERROR = type_name(WorkflowError)


class Progress:
    """A one-line progress report on a stream (stderr): done/failed/total and the rate.

    On a terminal the line is rewritten in place (at most ten times a second); elsewhere a line is
    printed at every tenth of the work.
    """

    def __init__(self, label: str, total: int, stream: IO[str] | None = None) -> None:
        self.label, self.total = label, total
        self.stream = stream if stream is not None else sys.stderr
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self.done = self.failed = 0
        self._started = time.perf_counter()
        self._last = 0.0
        self._last_tenth = 0

    def update(self, failed: bool) -> None:
        self.done += 1
        self.failed += failed
        now = time.perf_counter()
        if self.tty:
            if now - self._last >= 0.1 or self.done == self.total:
                self._last = now
                self.stream.write("\r" + self.line())
                self.stream.flush()
        else:
            tenth = self.done * 10 // max(self.total, 1)
            if tenth > self._last_tenth:
                self._last_tenth = tenth
                self.stream.write(self.line() + "\n")
                self.stream.flush()

    def line(self) -> str:
        elapsed = max(time.perf_counter() - self._started, 1e-9)
        return (
            f"{self.label}: {self.done:,}/{self.total:,} done, {self.failed:,} failed, "
            f"{self.done / elapsed:,.1f}/s"
        )

    def close(self) -> None:
        if self.tty and self.done:
            self.stream.write("\n")
            self.stream.flush()


def check_inputs(catalog: Catalog, agent: str, inputs: Iterable[Any]) -> list[BaseModel]:
    spec = catalog.specs.get(agent)
    if spec is None:
        raise UnknownAgentError(f"no agent named {agent!r}; declared agents: {sorted(catalog.specs)}")
    plain = {
        sub.type_names[0]
        for sub in spec.subscriptions
        if len(sub.type_names) == 1 and sub.batch is None and sub.join is None
    }
    if not isinstance(inputs, Iterable) or isinstance(inputs, BaseModel):
        raise ConfigurationError(
            f"map({agent!r}, ...) takes a list of inputs (model instances), got {inputs!r}"
        )
    items = list(inputs)
    for item in items:
        if not isinstance(item, BaseModel):
            raise ConfigurationError(f"map() takes Pydantic model instances, got {item!r}")
        if type_name(type(item)) not in plain:
            raise ConfigurationError(
                f"map({agent!r}, ...): agent {agent!r} has no plain subscription to "
                f"{type(item).__name__} (one type, no batch or join); map over a type it consumes: "
                f"{sorted(plain) or 'none'}"
            )
    return items


def progress_listener(agent: str, progress: Progress) -> Any:
    def listen(act: Activation, state: State) -> None:
        if act.agent == agent and state in (State.COMMITTED, State.FAILED):
            progress.update(state is State.FAILED)

    return listen


async def collect(store: Any, catalog: Catalog, agent: str, published: list[Artifact]) -> list[Any]:
    """Each input's outputs from ``agent`` (as models), or its WorkflowError, in input order."""
    results: list[Any] = []
    for artifact in published:
        found, _ = await store.query_artifacts(
            FilterConfig(correlation_id=artifact.correlation_id, produced_by=frozenset({agent})),
            limit=100_000,
        )
        mine = [a for a in found if artifact.id in a.consumed_from]
        failure = next((a for a in mine if a.type == _WORKFLOW_ERROR), None)
        if failure is not None:
            results.append(WorkflowError.model_validate(failure.payload))
        else:
            results.append([catalog.model_of(a) for a in mine])
    return results


async def run_map(
    flock: Any,
    orch: Any,
    name: str,
    inputs: Iterable[Any],
    concurrency: int | None,
    progress: bool,
    timeout: float | None,
) -> list[Any]:
    """``Flock.map``: publish, run until idle with the agent's bound and a progress line, collect."""
    catalog = orch.catalog
    items = check_inputs(catalog, name, inputs)
    if concurrency is not None and (not isinstance(concurrency, int) or concurrency < 1):
        raise ConfigurationError(f"map(concurrency=...) must be an int >= 1, got {concurrency!r}")
    meter = Progress(f"map {name}", len(items)) if progress else None
    listener = progress_listener(name, meter) if meter else None
    if concurrency is not None:
        orch.concurrency_override[name] = concurrency
    if listener is not None:
        orch.lifecycle.listeners.append(listener)
    try:
        published = [await flock.publish(item) for item in items]
        await flock.run_until_idle(timeout=timeout, progress=False)
    finally:
        orch.concurrency_override.pop(name, None)
        if listener is not None:
            orch.lifecycle.listeners.remove(listener)
        if meter is not None:
            meter.close()
    return await collect(orch.store, catalog, name, published)
