"""The run loop: dispatching queued activations within their limits, timers, and the drive loop.

The loop runs only inside ``run_until_idle`` / ``run_until`` / ``resume``, in one task group that
it owns: every activation task has that owner, and errors and cancellation propagate through it.
"""

from __future__ import annotations

import heapq
import math
from collections import Counter, deque
from collections.abc import Awaitable, Callable
from contextlib import nullcontext
from datetime import datetime
from typing import TYPE_CHECKING, Any

import anyio
from anyio.abc import TaskGroup

from ._conditions import Condition
from ._errors import FlockClosedError, RunTimeout
from ._runtime import execute
from ._scheduler import Activation
from ._spec import Tick
from ._store import ActivationRecord

if TYPE_CHECKING:
    from ._clock import Clock
    from ._flock import Flock
    from ._outcomes import RunSummary
    from ._routing import Router
    from ._spec import AgentSpec


class RunLoop:
    """Mixin of :class:`~flock.Flock` holding the scheduling machinery."""

    _agents: dict[str, AgentSpec]
    _clock: Clock
    _router: Router
    _components: list[Any]
    _summary: RunSummary
    _totals: Counter[str]
    _pending: dict[str, deque[Activation]]
    _pending_count: int
    _running: Counter[str]
    _running_total: int
    _timers: list[tuple[float, int, bool, Callable[[], Awaitable[None]]]]
    _timer_seq: int
    _blocking_timers: int
    _scheduled: set[str]
    _wake: anyio.Event | None
    _drive_lock: anyio.Lock | None
    _closed: bool
    _settled: set[Any]
    _journal_in_flight: bool
    _rotation: int = -1  # index of the agent that was served first by the last dispatch
    max_concurrency: int
    flush_partial_batches: bool
    store: Any

    def _now(self) -> datetime:
        return self._clock.now()

    @property
    def _flock(self) -> Flock:
        return self  # type: ignore[return-value]  # RunLoop is only ever mixed into Flock

    def _notify(self) -> None:
        if self._wake is not None:
            self._wake.set()

    def _later(self, delay: float, fire: Callable[[], Awaitable[None]], *, blocks_idle: bool = True) -> None:
        """Call ``fire`` after ``delay`` seconds (while the Flock runs)."""
        self._timer_seq += 1
        deadline = self._clock.monotonic() + max(delay, 0.0)
        heapq.heappush(self._timers, (deadline, self._timer_seq, blocks_idle, fire))
        self._blocking_timers += blocks_idle
        self._notify()

    def _is_idle(self) -> bool:
        return self._pending_count == 0 and self._running_total == 0 and not self._blocking_timers

    def _dispatch(self, tg: TaskGroup) -> None:
        names = list(self._pending)
        if self._running_total >= self.max_concurrency or not names:
            return
        # Rotate the starting agent so that, under the global bound, no agent starves the others.
        self._rotation = (self._rotation + 1) % len(names)
        for name in names[self._rotation :] + names[: self._rotation]:
            queue = self._pending[name]
            limit = self._agents[name].max_concurrency
            while queue and self._running[name] < limit and self._running_total < self.max_concurrency:
                act = queue.popleft()
                self._pending_count -= 1
                self._running[name] += 1
                self._running_total += 1
                tg.start_soon(self._run_one, act)
            if not queue:
                del self._pending[name]

    async def _run_one(self, act: Activation) -> None:
        try:
            if self._journal_in_flight:
                r = act.record  # built directly: dataclasses.replace costs several times more
                await self.store.record_activation(
                    ActivationRecord(r.id, r.agent, r.subscription, r.input_ids, "running")
                )
            await execute(self._flock, act)
            self._totals["activations"] += 1
            self._summary.activations += 1
            self._summary.agents_run[act.agent] += 1
        except anyio.get_cancelled_exc_class():
            # Cancelled by a timeout: keep the work for the next run instead of losing it, unless
            # its outputs were already committed (then only its after-publish hooks were cut short).
            if act.record.id not in self._settled:
                self._pending.setdefault(act.agent, deque()).appendleft(act)
                self._pending_count += 1
            raise
        finally:
            self._settled.discard(act.record.id)
            self._running[act.agent] -= 1
            self._running_total -= 1
            self._notify()

    async def _fire_due_timers(self) -> None:
        now = self._clock.monotonic()
        while self._timers and self._timers[0][0] <= now:
            _, _, blocks, fire = heapq.heappop(self._timers)
            self._blocking_timers -= blocks
            await fire()

    def _start_schedules(self) -> None:
        for spec in self._agents.values():
            if spec.schedule is not None and spec.name not in self._scheduled:
                self._scheduled.add(spec.name)
                first = spec.schedule.first(self._now())
                if first is not None:
                    self._later(
                        (first - self._now()).total_seconds(),
                        self._tick(spec.name, 1, first),
                        blocks_idle=False,
                    )

    def _tick(self, agent: str, iteration: int, due: datetime) -> Callable[[], Awaitable[None]]:
        async def fire() -> None:
            spec = self._agents[agent]
            if spec.schedule is None:
                return
            await self._router.enqueue(Activation(agent, -1, (), tick=Tick(iteration, self._now())))
            following = spec.schedule.following(due, iteration, self._now())
            if following is not None:
                delay = (following - self._now()).total_seconds()
                self._later(delay, self._tick(agent, iteration + 1, following), blocks_idle=False)

        return fire

    async def _drive(self, condition: Condition | None, timeout: float | None) -> bool:
        if self._closed:
            raise FlockClosedError("this Flock was shut down; create a new Flock to run again")
        if self._drive_lock is None:
            self._drive_lock = anyio.Lock()
        if any(not spec.engines for spec in self._agents.values()):
            # Build the default engine (and import DSPy) now, not inside the first activation,
            # so that one-off cost does not show up as that activation's time in traces.
            self._flock._default_engine()
        async with self._drive_lock:
            met: bool | None = None  # None: timed out
            try:
                with anyio.fail_after(timeout) if timeout is not None else nullcontext():
                    async with anyio.create_task_group() as tg:
                        met = await self._loop(tg, condition)
            except TimeoutError:
                pass
            finally:
                self._wake = None
            # Commits of activations without outputs were only queued: a run that returns has
            # everything on disk.
            await self._flush_store()
            if met is not None:
                return met
            if condition is not None:
                return False
            raise RunTimeout(
                f"the run was not idle after {timeout}s; {self._pending_count} activations stay queued "
                "and resume on the next run_until_idle()"
            )

    async def _flush_store(self) -> None:
        flush = getattr(self.store, "flush", None)  # a store that writes before returning has none
        if flush is not None:
            await flush()

    async def _loop(self, tg: TaskGroup, condition: Condition | None) -> bool:
        self._start_schedules()
        while True:
            self._wake = anyio.Event()
            await self._fire_due_timers()
            if condition is not None and await condition.evaluate(self._flock):
                return True
            self._dispatch(tg)
            if self._is_idle():
                if self.flush_partial_batches and await self._router.flush_partial_batches():
                    continue
                for comp in self._components:
                    await comp.on_idle(self)
                if self._is_idle() and (condition is None or not self._timers):
                    return condition is None
            deadline = self._timers[0][0] if self._timers else math.inf
            await self._clock.wait(self._wake, deadline, idle=self._running_total == 0)
