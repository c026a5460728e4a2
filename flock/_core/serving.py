"""Keep a flock working: run until idle, sleep until something is published or a timer is due, run
again. The one "keep running" loop of the core: the HTTP server (:mod:`flock._server.server`) runs
one beside itself, and a worker on a shared board (:mod:`flock._stores.worker`) runs one that its
``LISTEN`` connection and slow poll wake.

Standard library and anyio only: nothing here knows about HTTP or databases.
"""

from __future__ import annotations

import logging
from typing import Any

import anyio

from .artifact import Artifact
from .components import OrchestratorComponent
from .errors import FlockClosedError

log = logging.getLogger("flock")

MAX_BACKOFF_S = 60.0


class _Waker(OrchestratorComponent):
    """Sets the runner's event whenever anything is published, wherever it comes from."""

    name = "flock.serve"

    def __init__(self, runner: Runner) -> None:
        self._runner = runner

    async def on_artifact_published(self, flock: Any, artifact: Artifact) -> None:
        self._runner.wake()


class Runner:
    """Runs ``flock`` continuously: each publish (or :meth:`wake`) wakes it, each wake runs it until idle.

    A run that halts (a :class:`~flock.RunHalted` such as ``BudgetExceeded``, a failing store) is
    logged and kept in :attr:`halted`; the runner tries again on the next publish, or after a delay
    that doubles from ``retry`` up to a minute, so a broken provider is not hammered. Each run's
    summary is taken (the loop guard and the summary do not grow while the server lives).

    Args:
        flock: the Flock to keep working.
        resume: the first run is ``resume()`` (finish what earlier processes left on a durable
            board), and so is the first run after a halt (outputs committed just before a store
            failure may not have been routed; ``resume()`` routes what is not consumed yet).
        retry: seconds before the first retry after a halt.
    """

    def __init__(self, flock: Any, *, resume: bool = False, retry: float = 1.0) -> None:
        self.flock = flock
        self.halted: BaseException | None = None
        self.runs = 0
        self.activations = 0  # run by this runner, over all its runs
        self.errors = 0  # runs that halted
        self.running = False
        self._resume = resume
        self._retry = retry
        self._work = anyio.Event()
        self._waker = _Waker(self)
        self._started = 0  # runs begun
        self._finished = 0  # runs ended
        self._ran = anyio.Event()  # set (and replaced) whenever a run ends

    def wake(self) -> None:
        """Something may need doing (published here or elsewhere): a run in progress looks at once,
        an idle runner starts the next run."""
        self._work.set()
        self.flock._orchestrator.notify()

    async def settled(self, timeout: float) -> bool:
        """Wait until a run that began after this call has ended: what was published before the call
        has then been processed (and what that published, and so on). ``False`` when ``timeout``
        seconds pass first or the runner stops."""
        target = self._started + 1
        self.wake()
        with anyio.move_on_after(timeout):
            while self._finished < target:
                ran = self._ran
                if not self.running:
                    return False
                await ran.wait()
            return True
        return False

    def _ended_run(self) -> None:
        self._finished = self._started
        ran, self._ran = self._ran, anyio.Event()
        ran.set()

    async def run(self, stop: anyio.Event | None = None) -> None:
        """Loop until the flock shuts down, ``stop`` is set (the run in progress ends first), or the
        surrounding scope is cancelled."""
        flock = self.flock
        orch = flock._orchestrator
        flock.add_component(self._waker)
        self.running = True
        backoff = self._retry
        resume = self._resume
        try:
            while not orch.closed and not (stop is not None and stop.is_set()):
                self._work = anyio.Event()
                self._started += 1
                try:
                    if resume:
                        flock._resumed = False  # route again what is on the board
                        summary = await flock.resume()
                    else:
                        summary = await flock.run_until_idle()
                    self.activations += summary.activations
                    self.halted = None
                    resume = False
                    backoff = self._retry
                except FlockClosedError:
                    return
                except Exception as exc:  # a halted run: keep serving, retry later
                    log.error("the served flock halted: %s: %s", type(exc).__name__, exc, exc_info=exc)
                    self.halted = exc
                    self.errors += 1
                    resume = self._resume
                self.runs += 1
                self._ended_run()
                if stop is not None and stop.is_set():
                    return
                deadline = orch.timers.next_deadline()
                if self.halted is not None:
                    deadline = min(deadline, flock._clock.monotonic() + backoff)
                    backoff = min(backoff * 2, MAX_BACKOFF_S)
                if not self._work.is_set():
                    await flock._clock.wait(self._work, deadline, idle=True)
        finally:
            self.running = False
            self._ran.set()  # nobody waits for a run that will not come
            if self._waker in orch.components:
                orch.components.remove(self._waker)
