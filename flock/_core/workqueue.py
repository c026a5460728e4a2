"""The work queue: where ready activations wait until the run loop has room for them.

The run loop takes activations from a :class:`WorkQueue`; it never looks at how they are kept.
:class:`InProcessQueue` keeps them in memory, one FIFO per agent, and serves agents in rotation so
that, under the global bound, no agent starves the others. A shared queue (rows in a database that
several workers claim) is another implementation of the same protocol.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable, Iterator
from typing import Protocol, runtime_checkable

from .scheduler import Activation


@runtime_checkable
class WorkQueue(Protocol):
    """Ready activations waiting for a worker."""

    def __len__(self) -> int:
        """How many activations are waiting."""
        ...

    async def put(self, act: Activation) -> None:
        """Add a ready activation at the back of its agent's line."""
        ...

    async def put_front(self, act: Activation) -> None:
        """Give back an activation that was taken but did not finish (it runs first next time)."""
        ...

    async def take(self, room: Callable[[str], int], limit: int) -> list[Activation]:
        """Up to ``limit`` activations, at most ``room(agent)`` for each agent, fairly across agents.

        The run loop passes a :class:`Room`: a queue may also ask it for every declared agent's
        room at once (``room.free()``) instead of asking agent by agent."""
        ...

    def __iter__(self) -> Iterator[Activation]:
        """The waiting activations (for resume and inspection), in no promised order."""
        ...


class Room:
    """How many more activations of each agent may start now: what the run loop gives ``take``.

    Call it with an agent's name (``room(agent)``, a ``KeyError`` for an agent that is not
    declared), or ask :meth:`free` for every declared agent at once: a queue in a database claims
    for all of them in one statement.
    """

    def __init__(self, of: Callable[[str], int], agents: Callable[[], Iterable[str]]) -> None:
        self._of = of
        self._agents = agents

    def __call__(self, agent: str) -> int:
        return self._of(agent)

    def free(self) -> dict[str, int]:
        """The room of every declared agent (0 for an agent at its bound)."""
        of = self._of
        return {agent: max(of(agent), 0) for agent in self._agents()}


class InProcessQueue:
    """One FIFO per agent in process memory; agents are served in rotation."""

    def __init__(self) -> None:
        self._lines: dict[str, deque[Activation]] = {}
        self._count = 0
        self._rotation = -1  # index of the agent that was served first by the last take

    def __len__(self) -> int:
        return self._count

    def __iter__(self) -> Iterator[Activation]:
        return (act for line in list(self._lines.values()) for act in line)

    async def put(self, act: Activation) -> None:
        self._lines.setdefault(act.agent, deque()).append(act)
        self._count += 1

    async def put_front(self, act: Activation) -> None:
        self._lines.setdefault(act.agent, deque()).appendleft(act)
        self._count += 1

    async def take(self, room: Callable[[str], int], limit: int) -> list[Activation]:
        names = list(self._lines)
        if limit <= 0 or not names:
            return []
        # Rotate the starting agent so that, under the global bound, no agent starves the others.
        self._rotation = (self._rotation + 1) % len(names)
        taken: list[Activation] = []
        for name in names[self._rotation :] + names[: self._rotation]:
            line = self._lines[name]
            n = min(room(name), limit - len(taken), len(line))
            taken.extend(line.popleft() for _ in range(max(n, 0)))
            if not line:
                del self._lines[name]
            if len(taken) >= limit:
                break
        self._count -= len(taken)
        return taken
