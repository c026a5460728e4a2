"""Live events of a run: artifacts as they are published, activations as they start and end, and
token deltas as engines stream them.

::

    async with flock.events() as events:          # or events(agents=["writer"], tenant="acme")
        async for event in events:                # ArtifactEvent | ActivationEvent | TokenEvent | ...
            ...

Each subscriber has a bounded buffer. A subscriber that falls behind loses events (counted in
``events.dropped`` and logged when it closes); it never slows the run. With no subscriber the hub
costs one attribute check per artifact. A waiting reader is woken at once when the first event
arrives, and while events keep coming at most once a millisecond (it then reads all that arrived):
waking it per activation cost a busy run more than emitting the events.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import AsyncIterator, Callable, Iterable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal
from uuid import UUID

from .._core.artifact import Artifact, utcnow
from .._core.visibility import AgentIdentity

log = logging.getLogger("flock")

WAKE_EVERY = 0.001  # seconds: while events keep coming, a reader is woken at most this often


@dataclass(slots=True, unsafe_hash=True)  # not frozen: a frozen dataclass is 4x slower to build
class ArtifactEvent:
    """An artifact was published on the board."""

    artifact: Artifact
    kind: Literal["artifact"] = "artifact"


@dataclass(slots=True, unsafe_hash=True)  # not frozen: a frozen dataclass is 4x slower to build
class ActivationEvent:
    """An activation ``started``, ``finished`` (committed) or ``failed`` (a WorkflowError was committed)."""

    agent: str
    activation_id: UUID
    state: Literal["started", "finished", "failed"]
    correlation_id: str = ""
    kind: Literal["activation"] = "activation"


@dataclass(slots=True, unsafe_hash=True)  # not frozen: a frozen dataclass is 4x slower to build
class TokenEvent:
    """A piece of an output field, as the model streamed it. The deltas of one field, concatenated,
    equal the published value.

    ``attempt`` is 0 for the first answer and counts up on each re-ask (an answer that broke the
    contract is asked again, and the new answer streams too): the deltas of the last attempt are
    the published ones, so a reader that shows text starts over when ``attempt`` changes.
    """

    agent: str
    activation_id: UUID
    field: str
    delta: str
    kind: Literal["token"] = "token"
    attempt: int = 0


@dataclass(slots=True, unsafe_hash=True)  # not frozen: a frozen dataclass is 4x slower to build
class VariableEvent:
    """A runtime variable (``flock.variables``) changed."""

    name: str
    value: Any
    kind: Literal["variable"] = "variable"


Event = ArtifactEvent | ActivationEvent | TokenEvent | VariableEvent


@dataclass
class _Running:
    agent: str
    inputs: tuple[Artifact, ...]
    tenant: str | None


class EventStream:
    """What ``flock.events()`` yields: iterate it with ``async for``.

    Iteration ends when :meth:`close` is called, when the ``async with`` block ends or when the
    flock shuts down. ``dropped`` counts events this subscriber lost because its buffer was full.
    """

    def __init__(self, agents: frozenset[str] | None, identity: AgentIdentity | None, buffer: int) -> None:
        self.agents = agents
        self.identity = identity
        self.buffer = buffer
        self.dropped = 0
        self.delivered = 0
        self._queue: deque[Event] = deque()
        self._waiter: asyncio.Future[None] | None = None
        self._woken = -WAKE_EVERY  # loop time of the last wake-up
        self._wake_due = False  # a timed wake-up is scheduled
        self._closed = False

    def __aiter__(self) -> AsyncIterator[Event]:
        return self

    async def __anext__(self) -> Event:
        # A reader drains what arrived without a trip through the scheduler per event; it waits
        # (and the run wakes it once) only when nothing is left.
        while not self._queue:
            if self._closed:
                raise StopAsyncIteration
            # A bare future: anyio.Event costs several times more per wake-up (Flock runs on
            # asyncio: DSPy does).
            self._waiter = asyncio.get_running_loop().create_future()
            await self._waiter
        return self._queue.popleft()

    def close(self) -> None:
        """End the iteration (events already buffered are still delivered first)."""
        self._closed = True
        self._wake()

    def _offer(self, event: Event) -> None:
        if self._closed:
            return
        queue = self._queue
        if len(queue) >= self.buffer:
            self.dropped += 1
            return
        queue.append(event)
        self.delivered += 1
        if self._waiter is not None and not self._wake_due:
            self._wake_soon(self._waiter.get_loop())

    def _wake_soon(self, loop: asyncio.AbstractEventLoop) -> None:
        """Wake the reader now, or, if it was woken less than ``WAKE_EVERY`` ago, then: a busy run
        wakes its reader about once a millisecond, not once per activation."""
        due = self._woken + WAKE_EVERY
        if loop.time() >= due:
            self._wake()
        else:
            self._wake_due = True
            loop.call_at(due, self._wake)

    def _wake(self) -> None:
        self._wake_due = False
        waiter = self._waiter
        if waiter is not None:
            self._waiter = None
            if not waiter.done():
                self._woken = waiter.get_loop().time()
                waiter.set_result(None)

    def __repr__(self) -> str:
        return f"EventStream(agents={self.agents!r}, delivered={self.delivered}, dropped={self.dropped})"


class _Listener(EventStream):
    """A subscriber inside the process: each event goes to a callback at once, no buffer."""

    def __init__(self, agents: frozenset[str], callback: Callable[[Event], None]) -> None:
        super().__init__(agents, None, 1)
        self._callback = callback

    def _offer(self, event: Event) -> None:
        if not self._closed:
            self._callback(event)


class EventHub:
    """The subscribers of one Flock and what they are allowed to see."""

    def __init__(self, now: Callable[[], datetime] = utcnow) -> None:
        self._subscribers: list[EventStream] = []
        self._plain: tuple[EventStream, ...] = ()  # subscribers with no agent filter and no identity
        self._picky: tuple[EventStream, ...] = ()  # the others
        self._running: dict[UUID, _Running] = {}
        self._now = now
        self.active = False  # any subscriber: emission sites check this one attribute
        self.watching = False  # any subscriber with an identity: only they need activation inputs

    @asynccontextmanager
    async def subscribe(
        self,
        agents: Iterable[str] | None = None,
        *,
        identity: AgentIdentity | None = None,
        buffer: int = 1000,
    ) -> AsyncIterator[EventStream]:
        names = frozenset([agents] if isinstance(agents, str) else agents) if agents is not None else None
        stream = EventStream(names, identity, buffer)
        self._subscribers.append(stream)
        self._changed()
        try:
            yield stream
        finally:
            self._unsubscribe(stream)
            if stream.dropped:
                log.warning(
                    "an events subscriber fell behind and lost %d of %d events; read faster or pass "
                    "flock.events(buffer=...) a larger buffer",
                    stream.dropped,
                    stream.dropped + stream.delivered,
                )

    def listen(self, agents: Iterable[str], callback: Callable[[Event], None]) -> Callable[[], None]:
        """Call ``callback`` with each event of ``agents`` as it happens (in-process listeners such
        as the live view); returns the function that stops it."""
        stream = _Listener(frozenset(agents), callback)
        self._subscribers.append(stream)
        self._changed()
        return lambda: self._unsubscribe(stream)

    def _unsubscribe(self, stream: EventStream) -> None:
        if stream in self._subscribers:
            self._subscribers.remove(stream)
            self._changed()
            if not self.active:
                self._running.clear()
        stream.close()

    def _changed(self) -> None:
        subscribers = self._subscribers
        self.active = bool(subscribers)
        self.watching = any(s.identity is not None for s in subscribers)
        self._plain = tuple(s for s in subscribers if s.agents is None and s.identity is None)
        self._picky = tuple(s for s in subscribers if s.agents is not None or s.identity is not None)

    def close_all(self) -> None:
        for stream in list(self._subscribers):
            stream.close()

    # ------------------------------------------------------------------ emission
    def artifact(self, artifact: Artifact) -> None:
        event = ArtifactEvent(artifact)
        for stream in self._plain:
            stream._offer(event)
        for stream in self._picky:
            if stream.agents is not None and artifact.produced_by not in stream.agents:
                continue
            who = stream.identity
            if who is not None and not artifact.visibility.allows(
                who, now=self._now(), published_at=artifact.created_at
            ):
                continue
            stream._offer(event)

    def started(
        self,
        agent: str,
        activation_id: UUID,
        inputs: tuple[Artifact, ...],
        correlation_id: str,
        tenant: str | None,
    ) -> None:
        if self.watching:  # only subscribers with an identity need the inputs
            self._running[activation_id] = _Running(agent, inputs, tenant)
        event = ActivationEvent(agent, activation_id, "started", correlation_id)
        for stream in self._plain:  # (the common case spelled out: this runs for every activation)
            stream._offer(event)
        if self._picky:
            self._to_picky(event)

    def ended(self, agent: str, activation_id: UUID, correlation_id: str, failed: bool) -> None:
        event = ActivationEvent(agent, activation_id, "failed" if failed else "finished", correlation_id)
        for stream in self._plain:
            stream._offer(event)
        if self._picky:
            self._to_picky(event)
        if self._running:
            self._running.pop(activation_id, None)

    def requeued(self, activation_id: UUID) -> None:
        if self._running:
            self._running.pop(activation_id, None)

    def token(self, agent: str, activation_id: UUID, field_name: str, delta: str, attempt: int = 0) -> None:
        if delta:
            self._activation(TokenEvent(agent, activation_id, field_name, delta, attempt=attempt))

    def variable(self, name: str, value: Any) -> None:
        event = VariableEvent(name, value)
        for stream in self._subscribers:
            stream._offer(event)

    def _activation(self, event: ActivationEvent | TokenEvent) -> None:
        for stream in self._plain:
            stream._offer(event)
        if self._picky:
            self._to_picky(event)

    def _to_picky(self, event: ActivationEvent | TokenEvent) -> None:
        running = self._running.get(event.activation_id) if self._running else None
        for stream in self._picky:
            if stream.agents is not None and event.agent not in stream.agents:
                continue
            if stream.identity is not None and not self._may_watch(stream.identity, running):
                continue
            stream._offer(event)

    def _may_watch(self, who: AgentIdentity, running: _Running | None) -> bool:
        """An identity sees an activation's events only if it may see every input (and, for a
        tenant's subscriber, only activations of agents of its own tenant or none)."""
        if running is None:
            return False
        if who.tenant_id is not None and running.tenant not in (None, who.tenant_id):
            return False
        now = self._now()
        return all(a.visibility.allows(who, now=now, published_at=a.created_at) for a in running.inputs)
