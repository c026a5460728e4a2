"""Live events of a run: artifacts as they are published, activations as they start and end, and
token deltas as engines stream them.

::

    async with flock.events() as events:          # or events(agents=["writer"], tenant="acme")
        async for event in events:                # ArtifactEvent | ActivationEvent | TokenEvent | ...
            ...

Each subscriber has a bounded buffer. A subscriber that falls behind by more than its buffer loses
the oldest events it has not read (counted in ``events.dropped`` and logged when it closes); it
never slows the run. With no subscriber the hub costs one attribute check per artifact and per
activation. A waiting reader is woken at once when the first event arrives, and while events keep
coming at most every 5 ms; it then takes all that arrived in one go (each wake-up of a busy
reader cost the run more than the events it read).
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import AsyncIterator, Callable, Collection, Iterable, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any, ClassVar, Literal
from uuid import UUID

from .._core.artifact import Artifact, utcnow
from .._core.errors import ConfigurationError, UnknownAgentError
from .._core.visibility import AgentIdentity, Visibility

if TYPE_CHECKING:
    from .._core.scheduler import Activation

log = logging.getLogger("flock")

WAKE_EVERY = 0.005  # seconds: while events keep coming, a reader is woken at most this often


@dataclass(slots=True, unsafe_hash=True)  # not frozen: a frozen dataclass is 4x slower to build
class ArtifactEvent:
    """An artifact was published on the board."""

    artifact: Artifact
    kind: ClassVar[Literal["artifact"]] = "artifact"


@dataclass(slots=True, unsafe_hash=True)  # not frozen: a frozen dataclass is 4x slower to build
class ActivationEvent:
    """An activation ``started``, ``finished`` (committed) or ``failed`` (a WorkflowError was committed)."""

    agent: str
    activation_id: UUID
    state: Literal["started", "finished", "failed"]
    correlation_id: str = ""
    kind: ClassVar[Literal["activation"]] = "activation"


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
    kind: ClassVar[Literal["token"]] = "token"
    attempt: int = 0


@dataclass(slots=True, unsafe_hash=True)  # not frozen: a frozen dataclass is 4x slower to build
class VariableEvent:
    """A runtime variable (``flock.variables``) changed."""

    name: str
    value: Any
    kind: ClassVar[Literal["variable"]] = "variable"


Event = ArtifactEvent | ActivationEvent | TokenEvent | VariableEvent


def subscription(
    agents: str | Iterable[str] | None,
    tenant: str | None,
    identity: AgentIdentity | None,
    buffer: int,
    declared: Collection[str],
) -> tuple[list[str] | None, AgentIdentity | None]:
    """The checked arguments of ``flock.events()``: the agents whose events to keep (each one
    declared: a misspelt name would give a stream that stays silent) and who reads."""
    if tenant is not None and identity is not None:
        raise ConfigurationError("flock.events() takes tenant= or identity=, not both")
    if tenant is not None and (not isinstance(tenant, str) or not tenant.strip()):
        raise ConfigurationError(
            f"flock.events(tenant=...) takes a tenant id (a non-empty string), got {tenant!r}"
        )
    names: list[str] | None = None
    if agents is not None:
        if isinstance(agents, str):
            names = [agents]
        elif isinstance(agents, Iterable):
            names = list(agents)  # once: a generator is read only once
        if names is None or not all(isinstance(n, str) for n in names):
            raise ConfigurationError(
                f"flock.events(agents=...) takes agent names (a name or a list of them), got {agents!r}"
            )
        unknown = sorted(set(names) - set(declared))
        if unknown:
            raise UnknownAgentError(
                f"no agent named {unknown[0]!r}; declared agents: {sorted(declared)} "
                "(declare the agents before subscribing to their events)"
            )
    if not isinstance(buffer, int) or buffer < 1:
        raise ConfigurationError(f"flock.events(buffer=...) must be an int >= 1, got {buffer!r}")
    if identity is None and tenant is not None:
        # a tenant's subscriber reads as no agent: no agent can have the empty name
        identity = AgentIdentity(name="", tenant_id=tenant)
    return names, identity


@dataclass
class _Running:
    agent: str
    inputs: tuple[Artifact, ...]
    tenant: str | None
    # What the outputs will be visible to at most, once the engine's context is known (the runtime
    # tells the hub): tokens spell out the outputs before they are published. ``None``: not known
    # (yet, or ever: a visibility computed from each output), and no identity sees the tokens.
    outputs: Visibility | None = None


class EventStream:
    """What ``flock.events()`` yields: iterate it with ``async for``.

    Iteration ends when :meth:`close` is called, when the ``async with`` block ends or when the
    flock shuts down. ``dropped`` counts events this subscriber lost because its buffer was full
    (the oldest unread ones go first).
    """

    def __init__(
        self,
        agents: frozenset[str] | None,
        identity: AgentIdentity | None,
        buffer: int,
        hub: EventHub,
    ) -> None:
        self.agents = agents
        self.identity = identity
        self.buffer = buffer
        # A full deque drops its oldest item as a new one arrives: what the run gives a reader
        # costs one append, and the losses are counted when someone asks (``dropped``).
        self._queue: deque[Event] = deque(maxlen=buffer)
        self._taken = 0  # events taken from the buffer by the reader
        self._batch: Iterator[Event] = iter(())  # taken, not yet returned
        self._seen = 0  # events given to this stream (a plain stream counts on the hub instead)
        self._hub: EventHub | None = hub  # None once closed
        self._since = hub.emitted  # the hub's count when it subscribed
        self._waiters: list[asyncio.Future[None]] = []  # one per reader waiting for an event
        self._woken = -WAKE_EVERY  # loop time of the last wake-up
        self._wake_due = False  # a timed wake-up is scheduled
        self._closed = False

    @property
    def plain(self) -> bool:
        """No agent filter and no identity: sees every event."""
        return self.agents is None and self.identity is None

    @property
    def dropped(self) -> int:
        """Events lost because the reader fell behind by more than ``buffer``."""
        return self._given() - self._taken - len(self._queue)

    @property
    def delivered(self) -> int:
        """Events read or waiting to be read."""
        return self._taken + len(self._queue)

    def _given(self) -> int:
        hub = self._hub
        if hub is not None and self.plain:  # counted once per event for every plain stream
            return hub.emitted - self._since
        return self._seen

    def __aiter__(self) -> AsyncIterator[Event]:
        return self

    async def __anext__(self) -> Event:
        try:
            return next(self._batch)  # what the last refill took from the buffer
        except StopIteration:
            pass
        # The reader takes everything that arrived at once (one count, no trip through the
        # scheduler per event); it waits, and the run wakes it once, only when nothing is left.
        queue = self._queue
        while not queue:
            if self._closed:
                raise StopAsyncIteration
            # Each waiting reader has a bare future of its own (anyio.Event costs several times
            # more per wake-up; Flock runs on asyncio: DSPy does): a reader cancelled while it
            # waits (a keep-alive timer) cancels only its own, and every reader of the stream is
            # woken, by the next event or by close().
            waiter = asyncio.get_running_loop().create_future()
            if not self._waiters and self._hub is not None and self.plain:
                self._hub.sleeping(self)
            self._waiters.append(waiter)
            try:
                await waiter
            except asyncio.CancelledError:
                if waiter in self._waiters:
                    self._waiters.remove(waiter)
                raise
        batch = list(queue)
        queue.clear()
        self._taken += len(batch)
        self._batch = it = iter(batch)
        return next(it)

    def close(self) -> None:
        """End the iteration (events already buffered are still delivered first); no event
        arrives after it."""
        if not self._closed:
            self._closed = True
            if self._hub is not None:
                self._hub.detach(self)
        self._wake()

    def _offer(self, event: Event) -> None:
        """Give one event to a stream that filters (plain streams are appended to by the hub)."""
        self._seen += 1
        self._queue.append(event)
        self._wake_soon()

    def _wake_soon(self) -> None:
        """Wake the readers now, or, if they were woken less than ``WAKE_EVERY`` ago, then: a busy
        run wakes its readers every few milliseconds, not once per activation."""
        if not self._waiters or self._wake_due:
            return
        loop = self._waiters[0].get_loop()
        due = self._woken + WAKE_EVERY
        if loop.time() >= due:
            self._wake()
        else:
            self._wake_due = True
            loop.call_at(due, self._wake)

    def _wake(self) -> None:
        self._wake_due = False
        waiters, self._waiters = self._waiters, []
        for waiter in waiters:
            if not waiter.done():
                self._woken = waiter.get_loop().time()
                waiter.set_result(None)

    def __repr__(self) -> str:
        return f"EventStream(agents={self.agents!r}, delivered={self.delivered}, dropped={self.dropped})"


class _Listener(EventStream):
    """A subscriber inside the process: each event goes to a callback at once, no buffer."""

    def __init__(self, agents: frozenset[str], callback: Callable[[Event], None], hub: EventHub) -> None:
        super().__init__(agents, None, 1, hub)
        self._callback = callback

    def _offer(self, event: Event) -> None:
        self._callback(event)


class EventHub:
    """The subscribers of one Flock and what they are allowed to see.

    ``_deliver`` gives an event to every subscriber. In the common case (one subscriber that sees
    everything, its reader busy) it is that subscriber's ``deque.append``, and an event costs the
    run its construction, that one call and one count (``emitted``). Otherwise it is
    :meth:`_deliver_all`: several buffers, a waiting reader to wake, subscribers that filter.
    """

    def __init__(self, now: Callable[[], datetime] = utcnow) -> None:
        self._subscribers: list[EventStream] = []
        self._appends: tuple[Callable[[Event], None], ...] = ()  # the plain subscribers' buffers
        self._picky: tuple[EventStream, ...] = ()  # subscribers with an agent filter or an identity
        self._deliver: Callable[[Event], None] = self._deliver_all
        self._running: dict[UUID, _Running] = {}
        self._now = now
        self.emitted = 0  # events given to the plain subscribers
        self.sleepers: list[EventStream] = []  # plain subscribers whose reader waits for an event
        self.tenant_of: Callable[[str], str | None] = lambda agent: None  # set by the Flock
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
        # (the arguments come checked by subscription(): agent names, an identity, a buffer >= 1)
        stream = EventStream(frozenset(agents) if agents is not None else None, identity, buffer, self)
        self._subscribers.append(stream)
        self._changed()
        try:
            yield stream
        finally:
            stream.close()
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
        stream = _Listener(frozenset(agents), callback, self)
        self._subscribers.append(stream)
        self._changed()
        return stream.close

    def detach(self, stream: EventStream) -> None:
        """Stop giving events to ``stream`` (it was closed); its counts are kept."""
        if stream in self._subscribers:
            if stream.plain:
                stream._seen = self.emitted - stream._since  # what it was given, frozen
            stream._hub = None
            self._subscribers.remove(stream)
            self._changed()
            if not self.active:
                self._running.clear()

    def close_all(self) -> None:
        for stream in list(self._subscribers):
            stream.close()

    def sleeping(self, stream: EventStream) -> None:
        """The reader of plain ``stream`` waits: the next event wakes it."""
        self.sleepers.append(stream)
        self._deliver = self._deliver_all

    def _changed(self) -> None:
        subscribers = self._subscribers
        self.active = bool(subscribers)
        self.watching = any(s.identity is not None for s in subscribers)
        self._appends = tuple(s._queue.append for s in subscribers if s.plain)
        self._picky = tuple(s for s in subscribers if not s.plain)
        self._choose()

    def _choose(self) -> None:
        one = len(self._appends) == 1 and not self._picky and not self.sleepers
        self._deliver = self._appends[0] if one else self._deliver_all

    def _deliver_all(self, event: Event) -> None:
        for append in self._appends:
            append(event)
        if self.sleepers:  # wake them (each at most once per WAKE_EVERY)
            sleepers, self.sleepers = self.sleepers, []
            for stream in sleepers:
                stream._wake_soon()
            self._choose()
        for stream in self._picky:
            if self._may_see(stream, event):
                stream._offer(event)

    # ------------------------------------------------------------------ emission
    # These run for every activation: each builds its event, gives it (``_deliver``) and counts it.
    def artifact(self, artifact: Artifact) -> None:
        event = ArtifactEvent(artifact)
        self._deliver(event)
        self.emitted += 1

    def started(self, act: Activation) -> None:
        if self.watching:  # only subscribers with an identity need the inputs
            self._running[act.record.id] = _Running(act.agent, act.artifacts, self.tenant_of(act.agent))
        event = ActivationEvent(act.agent, act.record.id, "started", act.correlation_id)
        self._deliver(event)
        self.emitted += 1

    def ended(self, act: Activation, failed: bool) -> None:
        state: Literal["finished", "failed"] = "failed" if failed else "finished"
        event = ActivationEvent(act.agent, act.record.id, state, act.correlation_id)
        self._deliver(event)
        self.emitted += 1
        if self._running:
            self._running.pop(event.activation_id, None)

    def outputs_visible(self, activation_id: UUID, visibility: Visibility | None) -> None:
        """The outputs of a running activation will be at most as visible as ``visibility``
        (``None``: unknown until each is made); its tokens are shown to identities it allows."""
        running = self._running.get(activation_id) if self._running else None
        if running is not None:
            running.outputs = visibility

    def requeued(self, activation_id: UUID) -> None:
        if self._running:
            self._running.pop(activation_id, None)

    def token(self, agent: str, activation_id: UUID, field_name: str, delta: str, attempt: int = 0) -> None:
        if delta:
            self._deliver(TokenEvent(agent, activation_id, field_name, delta, attempt=attempt))
            self.emitted += 1

    def variable(self, name: str, value: Any) -> None:
        self._deliver(VariableEvent(name, value))
        self.emitted += 1

    # ------------------------------------------------------------------ visibility
    def _may_see(self, stream: EventStream, event: Event) -> bool:
        """Whether a subscriber that filters gets ``event``: its agents' events only, and what its
        identity may see. Variable changes are flock-wide settings: not for a tenant or identity."""
        if isinstance(event, VariableEvent):
            return stream.identity is None
        if isinstance(event, ArtifactEvent):
            artifact = event.artifact
            if stream.agents is not None and artifact.produced_by not in stream.agents:
                return False
            who = stream.identity
            now = self._now()
            return who is None or artifact.visibility.allows(who, now=now, published_at=artifact.created_at)
        if stream.agents is not None and event.agent not in stream.agents:
            return False
        if stream.identity is None:
            return True
        return self._may_watch(stream.identity, self._running.get(event.activation_id), event)

    def _may_watch(self, who: AgentIdentity, running: _Running | None, event: Event) -> bool:
        """An identity sees an activation's events only if it may see every input and the agent is
        of its tenant or of none; its tokens only if it may also see the outputs they spell out."""
        if running is None:
            return False
        if running.tenant is not None and running.tenant != who.tenant_id:
            return False
        now = self._now()
        if isinstance(event, TokenEvent):
            shown = running.outputs
            return shown is not None and shown.allows(who, now=now, published_at=now)
        return all(a.visibility.allows(who, now=now, published_at=a.created_at) for a in running.inputs)
