"""Timers of one Flock: wake tokens due at a monotonic time, in a heap.

A timer holds a plain value (a wake token the router understands), never a closure, so what is
pending can be inspected. ``blocks_idle`` timers (an ``AfterVisibility`` release some agent will
see) keep a run going until they fire; passive ones (batch timeouts, join windows, schedules) do not.
"""

from __future__ import annotations

import heapq
import math
from typing import Any


class Timers:
    def __init__(self) -> None:
        self._heap: list[tuple[float, int, bool, Any]] = []
        self._seq = 0
        self.blocking = 0

    def __bool__(self) -> bool:
        return bool(self._heap)

    def add(self, deadline: float, token: Any, *, blocks_idle: bool) -> None:
        self._seq += 1
        heapq.heappush(self._heap, (deadline, self._seq, blocks_idle, token))
        self.blocking += blocks_idle

    def pop_due(self, now: float) -> Any | None:
        """The next token due at ``now`` (removed), or ``None``."""
        if not self._heap or self._heap[0][0] > now:
            return None
        _, _, blocks, token = heapq.heappop(self._heap)
        self.blocking -= blocks
        return token

    def next_deadline(self) -> float:
        return self._heap[0][0] if self._heap else math.inf

    def clear(self) -> None:
        self._heap.clear()
        self.blocking = 0
