"""Time, injectable. Windows, timeouts, timers and publication times all read a :class:`Clock`.

The default :class:`SystemClock` is the wall clock. Tests use :class:`ManualClock`: time moves only
when told to (``advance``), or, with ``autojump=True``, jumps straight to the next deadline whenever
the run would otherwise sit waiting, so time-based tests run in milliseconds and deterministically.
"""

from __future__ import annotations

import math
import time
from datetime import UTC, datetime, timedelta

import anyio
import anyio.lowlevel

from .errors import ConfigurationError

MAX_DELAY = timedelta(days=36_525)
"""The longest delay Flock accepts (100 years: a visibility's ttl, a schedule's interval, a human
task's timeout). A moment further ahead would lie near or past the end of ``datetime``'s calendar,
where adding to a date raises ``OverflowError`` long after the declaration was accepted."""


class Clock:
    """What the orchestrator asks of time."""

    def now(self) -> datetime:
        """The current time (timezone-aware UTC)."""
        raise NotImplementedError

    def monotonic(self) -> float:
        """Seconds on a clock that never goes back; deadlines are expressed on it."""
        raise NotImplementedError

    async def wait(self, event: anyio.Event, deadline: float, *, idle: bool = False) -> None:
        """Return when ``event`` is set or the monotonic ``deadline`` has passed (``inf``: no deadline).

        ``idle`` tells the clock that nothing is running, so nothing but time can set the event.
        """
        raise NotImplementedError


class SystemClock(Clock):
    """The real clock."""

    def now(self) -> datetime:
        return datetime.now(UTC)

    def monotonic(self) -> float:
        return time.monotonic()

    async def wait(self, event: anyio.Event, deadline: float, *, idle: bool = False) -> None:
        delay = deadline - time.monotonic()
        if math.isinf(delay):
            await event.wait()
            return
        with anyio.move_on_after(max(delay, 0.0)):
            await event.wait()


class ManualClock(Clock):
    """A clock that tests control.

    ::

        clock = ManualClock()
        flock = Flock(clock=clock)          # autojump: waits for timers take no real time
        clock.advance(timedelta(minutes=5)) # or move time yourself
    """

    def __init__(self, start: datetime | None = None, *, autojump: bool = True) -> None:
        self._start = start or datetime(2030, 1, 1, tzinfo=UTC)
        self._offset = 0.0
        self.autojump = autojump
        self._moved: anyio.Event | None = None

    def now(self) -> datetime:
        return self._start + timedelta(seconds=self._offset)

    def monotonic(self) -> float:
        return self._offset

    def advance(self, delta: timedelta | float) -> None:
        """Move time forward by ``delta`` (a timedelta or seconds)."""
        seconds = delta.total_seconds() if isinstance(delta, timedelta) else float(delta)
        if seconds < 0:
            raise ConfigurationError(
                f"ManualClock.advance({delta!r}): a clock cannot go back in time; give a duration >= 0 "
                "(a timedelta or seconds)"
            )
        self._offset += seconds
        if self._moved is not None:
            self._moved.set()

    async def wait(self, event: anyio.Event, deadline: float, *, idle: bool = False) -> None:
        if event.is_set() or deadline <= self._offset:
            return
        if self.autojump and idle and not math.isinf(deadline):
            # Let runnable tasks go first; if none of them sets the event, jump to the deadline.
            for _ in range(3):
                await anyio.lowlevel.checkpoint()
                if event.is_set():
                    return
            self._offset = max(self._offset, deadline)
            return
        self._moved = moved = anyio.Event()
        async with anyio.create_task_group() as tg:

            async def on_move() -> None:
                await moved.wait()
                tg.cancel_scope.cancel()

            tg.start_soon(on_move)
            await event.wait()
            tg.cancel_scope.cancel()
