"""The orchestrator: the one owner that carries out what the router decides.

An artifact travels one way::

    publish ─▶ store ─▶ router ─▶ decisions ─▶ lifecycle/work queue ─▶ runtime ─▶ outcome
       ▲                                                                            │
       └───────────────────────── commit (lifecycle) ◀──────────────────────────────┘

:meth:`Orchestrator.publish` stores an artifact and announces it: the router returns decisions and
:meth:`Orchestrator.apply` carries them out (queue an activation, set a timer, record a failure,
publish an event). :meth:`Orchestrator.drive` runs the loop: due timers, then as many queued
activations as the limits allow, each in a task of the run's task group. An activation's task asks
the runtime for an outcome, commits it through the lifecycle and announces what it committed.
Nothing else moves work.
"""

from __future__ import annotations

import logging
import math
import time
from collections import Counter
from collections.abc import Sequence
from contextlib import nullcontext
from contextvars import ContextVar
from typing import Any
from uuid import uuid4, uuid5

import anyio
from anyio.abc import TaskGroup

from .._live.events import EventHub
from .._tracing.tracing import SpanIndex, publish_span
from .artifact import EXTERNAL, Artifact
from .catalog import Catalog
from .decisions import Activate, CloseTask, Decision, Emit, Fail, RecordFailure, WakeLater
from .errors import ConfigurationError, DuplicateArtifactError, FlockClosedError, RunTimeout
from .lifecycle import Lifecycle
from .outcomes import JoinExpired, RunSummary, WorkflowError
from .routing import Router
from .runtime import Outcome, Runtime, failure_artifact
from .scheduler import Activation
from .timers import Timers
from .types import type_name
from .workqueue import InProcessQueue, Room

log = logging.getLogger("flock")
_WORKFLOW_ERROR = type_name(WorkflowError)
_JOIN_EXPIRED = type_name(JoinExpired)
_DRIVING: ContextVar[object | None] = ContextVar("flock_driving", default=None)


class Orchestrator:
    """Board, routing, queue, runtime and run loop of one Flock, wired one way.

    ``host`` is the :class:`~flock.Flock` facade: it is handed to orchestrator components and
    conditions (their public signatures take the Flock), never read from here.
    """

    def __init__(
        self,
        host: Any,
        *,
        catalog: Catalog,
        store: Any,
        clock: Any,
        router: Router,
        lifecycle: Lifecycle,
        runtime: Runtime,
        spans: SpanIndex,
        components: list[Any],
        max_concurrency: int,
        flush_partial_batches: bool,
        events: EventHub,
    ) -> None:
        self._host = host
        self._catalog = self.catalog = catalog
        self.store = store
        self._clock = clock
        self.router = router
        self.lifecycle = lifecycle
        self.runtime = runtime
        self._spans = spans
        self.components = components
        self.max_concurrency = max_concurrency
        self.flush_partial_batches = flush_partial_batches
        self.events = events
        self.concurrency_override: dict[str, int] = {}  # per-agent bounds set by map(concurrency=)
        self.timers = Timers()
        self.summary = RunSummary()
        self.totals: Counter[str] = Counter()
        self._summary_started = time.perf_counter()
        self._schedules_started: set[str] = set()
        self._wake: anyio.Event | None = None
        self._drive_lock: anyio.Lock | None = None
        self._run_scope: anyio.CancelScope | None = None
        self._halted: BaseException | None = None
        self._active: Counter[str] = Counter()  # activation tasks alive, hooks after commit included
        self._active_total = 0
        self._rooms = Room(self._room, lambda: self._catalog.specs)  # what take() may start
        # Running until idle on the in-process queue, a finished activation's task goes on with
        # the next queued one: starting a task per activation costs more than a small one's work.
        self._chaining = False
        self.closed = False
        # Marks the tasks of this orchestrator's run (a context variable: shutdown() called from one
        # of them must not wait for the run). A plain object, never the orchestrator: contexts can
        # outlive a run (keep-alive connections keep theirs), and must not keep the Flock alive.
        self._run_mark = object()
        # How many artifacts the store held when this process first published: resume() routes
        # those again, never the ones this process has routed itself.
        self.board_mark: int | None = None
        # On a board that several processes share, the queue says how this process takes part in
        # routing it (Router.share); ``flock worker --store`` swaps the queue and sets it again.
        router.share = getattr(lifecycle.queue, "routing", None)

    def rebind(self, store: Any, queue: Any) -> None:
        """Move an orchestrator that has not published anything onto ``store`` and ``queue``
        (``flock worker --store`` does this to the module's in-memory Flock)."""
        self.store = self.lifecycle._store = self.runtime._store = store
        self.router.loop_guard._lookup = store.get
        self.lifecycle.queue = queue
        self.lifecycle.journal = bool(getattr(store, "durable", True))
        self.router.share = getattr(queue, "routing", None)

    # ------------------------------------------------------------------ the board
    async def publish(self, artifact: Artifact, *, once: bool = False) -> bool:
        """Store ``artifact`` and announce it. ``once``: its id is derived from its cause, so one that
        is already stored (met again after a crash) is not published twice. Returns whether stored."""
        if once and await self.store.get(artifact.id) is not None:
            return False
        if self.board_mark is None:
            self.board_mark = await self.store.count()
        try:
            await self.store.put(artifact)
        except DuplicateArtifactError:
            if not once:
                raise
            return False  # stored meanwhile by another task or process: it was published once
        await self.announce(artifact)
        return True

    async def close_task(self, artifacts: Sequence[Artifact]) -> bool:
        """Close a human task: publish its answer (or what its deadline publishes). The first
        artifact carries the task's answer id, so exactly one closing wins, across processes too;
        returns False when the task was already closed."""
        put_all = getattr(self.store, "put_all", None)
        if put_all is None or len(artifacts) == 1:  # a store without it: one by one
            first, *rest = artifacts
            if not await self.publish(first, once=True):
                return False
            for artifact in rest:
                await self.publish(artifact, once=True)
            return True
        # All of the answer or none of it: a failure (or a crash) between two artifacts must not
        # leave the task closed with part of its answer lost.
        if await self.store.get(artifacts[0].id) is not None:
            return False
        if self.board_mark is None:
            self.board_mark = await self.store.count()
        try:
            await put_all(artifacts)
        except DuplicateArtifactError:
            return False  # closed meanwhile by another answer or its deadline
        for artifact in artifacts:
            await self.announce(artifact)
        return True

    async def announce(self, artifact: Artifact) -> None:
        """Count a stored artifact, tell the components, route it and carry out the decisions."""
        with publish_span(self._spans, artifact):
            if self.events.active:
                self.events.artifact(artifact)
            self.summary.artifacts_by_type[artifact.type] += 1
            self.totals["artifacts"] += 1
            if artifact.type == _WORKFLOW_ERROR and artifact.produced_by != EXTERNAL:
                record = WorkflowError.model_validate(artifact.payload)
                log.warning("agent %r failed (%s): %s", record.agent, record.kind, record.message)
                self.summary.errors.append(record)
                self.totals["errors"] += 1
            elif artifact.type == _JOIN_EXPIRED and artifact.produced_by != EXTERNAL:
                self.summary.expired_joins += 1
            for comp in self.components:
                try:
                    await comp.on_artifact_published(self._host, artifact)
                except Exception as exc:  # a broken observer must not strand the artifact unrouted
                    self._component_failed(comp, "on_artifact_published", artifact, exc)
            await self.apply(await self.router.route(artifact))
        self.notify()

    def _component_failed(self, comp: Any, hook: str, artifact: Artifact | None, exc: Exception) -> None:
        name = type(comp).__name__
        log.error("component %s.%s raised %s: %s", name, hook, type(exc).__name__, exc)
        self.summary.errors.append(
            WorkflowError(
                agent=name,
                kind="agent_error",
                error_type=type(exc).__name__,
                message=f"{hook} raised: {exc}",
                input_ids=[str(artifact.id)] if artifact is not None else [],
            )
        )
        self.totals["errors"] += 1

    async def apply(self, decisions: Sequence[Decision]) -> None:
        """Carry out the router's decisions, in order."""
        for decision in decisions:
            if isinstance(decision, Activate):
                await self.lifecycle.enqueue(decision.activation)
                self.notify()
            elif isinstance(decision, WakeLater):
                deadline = self._clock.monotonic() + max(decision.delay, 0.0)
                self.timers.add(deadline, decision.token, blocks_idle=decision.blocks_idle)
                self.notify()
            elif isinstance(decision, RecordFailure):
                spec = self._catalog.specs.get(decision.agent)
                failure = failure_artifact(
                    decision.agent,
                    decision.inputs,
                    kind=decision.kind,
                    error=decision.error,
                    output_group=None,
                    now=self._clock.now(),
                    artifact_id=decision.artifact_id,
                    tenant_id=spec.tenant_id if spec else None,
                )
                await self.publish(failure, once=True)
            elif isinstance(decision, Fail):
                await self._fail(decision)
            elif isinstance(decision, Emit):
                await self.publish(decision.artifact, once=True)
            elif isinstance(decision, CloseTask):
                await self.close_task(decision.artifacts)

    async def _fail(self, decision: Fail) -> None:
        act = decision.activation
        spec = self._catalog.specs.get(act.agent)
        failure = failure_artifact(
            act.agent,
            act.artifacts,
            kind=decision.kind,
            error=decision.error,
            output_group=None,
            now=self._clock.now(),
            artifact_id=uuid5(act.record.id, "failure"),
            tenant_id=spec.tenant_id if spec else None,
        )
        if await self.store.get(failure.id) is None:  # met again after a crash: recorded once
            await self.lifecycle.commit(act, [failure], failed=True)
            await self.announce(failure)

    # ------------------------------------------------------------------ one activation
    async def run_activation(self, act: Activation, dispatched: bool = False) -> None:
        """Run a taken activation: outcome, commit, announce. Never loses it: a cancellation, a halt
        or a failing store puts it back in the queue with its inputs untouched. ``dispatched``: the
        run loop counted it as active (it is uncounted when done)."""
        finished = False
        events = self.events
        if events.active:
            events.started(act)
        try:
            with self.runtime.span(act) as span:
                if self.lifecycle.journal:
                    await self.lifecycle.started(act)
                outcome = await self.runtime.run(act, span)
                if outcome.halt is not None:
                    await self._requeue(act, outcome.halt)
                    return
                with anyio.CancelScope(shield=True):  # committed work is always announced
                    try:
                        await self.lifecycle.commit(
                            act, outcome.committed, failed=outcome.failure is not None
                        )
                    except Exception as exc:  # the store failed: keep the work, stop the run
                        await self._requeue(act, exc)
                        return
                    finished = True
                    if events.active:
                        events.ended(act, outcome.failure is not None)
                    self._count(outcome)
                    for artifact in outcome.committed:
                        await self.announce(artifact)
                if outcome.spec.utilities:
                    for failure in await self.runtime.after_commit(outcome):
                        await self.publish(failure, once=True)
        except anyio.get_cancelled_exc_class():
            if not finished:
                with anyio.CancelScope(shield=True):
                    await self.lifecycle.requeue(act)
                self.events.requeued(act.record.id)
            raise
        finally:
            if dispatched:
                self._release(act)
            self.notify()

    async def invoke(self, act: Activation, publish_outputs: bool) -> list[Artifact]:
        """``Flock.invoke``: run one activation outside the loop; errors raise instead of being recorded."""
        orch = self
        runtime = self.runtime
        with runtime.span(act) as span:
            outcome = await runtime.run(act, span)
            error = outcome.halt or outcome.error
            if error is not None:
                await runtime.terminate(outcome.spec, outcome.ctx, act)
                raise error
            if not publish_outputs:
                await runtime.terminate(outcome.spec, outcome.ctx, act)
                return outcome.outputs
            await orch.lifecycle.commit(act, outcome.outputs, failed=False)
            for artifact in outcome.outputs:
                await orch.announce(artifact)
            for failure in await runtime.after_commit(outcome):
                await orch.publish(failure, once=True)
        return outcome.outputs

    def _count(self, outcome: Outcome) -> None:
        self.router.loop_guard.produced(outcome.committed, outcome.act.chain)
        self.totals["activations"] += 1
        self.summary.activations += 1
        self.summary.agents_run[outcome.act.agent] += 1
        if outcome.metrics:
            self.summary.metrics.update(outcome.metrics)
        self.summary.filtered_outputs += outcome.filtered

    async def _requeue(self, act: Activation, error: BaseException) -> None:
        with anyio.CancelScope(shield=True):
            await self.lifecycle.requeue(act)
        self.events.requeued(act.record.id)
        if self._halted is None:
            log.error(
                "the run stops: %s: %s (activation of %r requeued)", type(error).__name__, error, act.agent
            )
            self._halted = error
        self.notify()

    # ------------------------------------------------------------------ the run loop
    def notify(self) -> None:
        if self._wake is not None:
            self._wake.set()

    def is_idle(self) -> bool:
        return not self.lifecycle.queued and not self._active_total and not self.timers.blocking

    async def drive(self, condition: Any, timeout: float | None) -> bool:
        """Run until idle (``condition`` None), until ``condition`` holds (True) or is idle without
        it (False). Raises :class:`RunTimeout` on ``timeout`` without a condition, a halting error
        (:class:`RunHalted`, a store failure) once running work finished, and
        :class:`FlockClosedError` when ``shutdown()`` ended a run without a condition (one with a
        condition returns False)."""
        if timeout is not None and (
            isinstance(timeout, bool) or not isinstance(timeout, int | float) or not timeout >= 0
        ):
            raise ConfigurationError(f"timeout= takes seconds >= 0 or None, got {timeout!r}")
        if self.closed:
            raise FlockClosedError("this Flock was shut down; create a new Flock to run again")
        if self._drive_lock is None:
            self._drive_lock = anyio.Lock()
        async with self._drive_lock:
            met: bool | None = None  # None: timed out or shut down
            timed_out = False
            token = _DRIVING.set(self._run_mark)
            try:
                with anyio.CancelScope() as scope:
                    self._run_scope = scope
                    with anyio.fail_after(timeout) if timeout is not None else nullcontext():
                        async with anyio.create_task_group() as tg:
                            met = await self._loop(tg, condition)
            except TimeoutError:
                timed_out = True
            finally:
                _DRIVING.reset(token)
                self._wake = None
                self._run_scope = None
            # Commits of activations without outputs were only queued: a run that returns has
            # everything on disk.
            await self.flush_store()
            if self.router.share is not None:  # a script's run gives up routing a shared board
                await self.router.share.run_ended(self.router)
            halted, self._halted = self._halted, None
            if halted is not None:
                raise halted
            if self.closed and condition is None:
                raise FlockClosedError(
                    f"the Flock was shut down during the run; {self.lifecycle.queued} activations stay "
                    "queued (on a durable store, resume() in a new Flock finishes them)"
                )
            if met is not None and not (timed_out and condition is None) and not self.closed:
                return met
            if condition is not None:
                return False
            raise RunTimeout(
                f"the run was not idle after {timeout}s; {self.lifecycle.queued} activations stay queued "
                "and resume on the next run_until_idle()"
            )

    async def _loop(self, tg: TaskGroup, condition: Any) -> bool | None:
        # Only a run until idle on the in-process queue chains: one with a condition must see it
        # after every activation, and a shared queue's take is a round trip to the database.
        in_process = isinstance(self.lifecycle.queue, InProcessQueue)
        self._chaining = condition is None and self.router.share is None and in_process
        try:
            return await self._run_loop(tg, condition)
        finally:
            self._chaining = False

    async def _run_loop(self, tg: TaskGroup, condition: Any) -> bool | None:
        share = self.router.share
        if share is None:  # on a shared board, the process that routes it fires the schedules
            await self.apply(self.router.start_schedules(self._schedules_started))
        first = True
        while True:
            self._wake = anyio.Event()
            if share is not None and not self.closed:
                await self.apply(await share.step(self.router, first=first))
                first = False
            await self._fire_due_timers()
            if self._halted is not None or self.closed:
                if not self._active_total:  # start nothing new; let what runs finish
                    return None
            elif condition is not None and await condition.evaluate(self._host):
                return True
            else:
                await self._dispatch(tg)
            if self._halted is None and self.is_idle():
                if self.flush_partial_batches:
                    flushed = await self.router.flush_partial_batches()
                    if flushed:
                        await self.apply(flushed)
                        continue
                for comp in self.components:
                    await comp.on_idle(self._host)
                if self.is_idle() and (condition is None or not self.timers):
                    return condition is None
            deadline = self.timers.next_deadline() if self._halted is None else math.inf
            await self._clock.wait(self._wake, deadline, idle=not self._active_total)

    async def _dispatch(self, tg: TaskGroup) -> None:
        free = self.max_concurrency - self._active_total
        if free <= 0 or not self.lifecycle.queued:
            return
        for act in await self.lifecycle.take(self._rooms, free):
            self._hold(act)
            tg.start_soon(self._work, act)

    def _room(self, agent: str) -> int:
        """How many more activations of ``agent`` may run now."""
        override = self.concurrency_override
        bound = override[agent] if agent in override else self._catalog.specs[agent].max_concurrency
        return bound - self._active[agent]

    async def _work(self, act: Activation) -> None:
        """Run ``act``; then, while chaining, the next activation that may start, in this task.

        The next one is taken before this task yields (else the run loop, woken by the end of
        this one, would take the free slot and start a task for it); the yield comes after, so
        that the loop, timers, readers and other activations get their turn between two.
        """
        while True:
            await self.run_activation(act, True)
            if not self._chaining or self._halted is not None or self.closed or not self.lifecycle.queued:
                return
            if self._active_total >= self.max_concurrency:
                return
            taken = await self.lifecycle.take(self._rooms, 1)
            if not taken:
                return
            act = taken[0]
            self._hold(act)
            try:
                await anyio.lowlevel.checkpoint()
            except anyio.get_cancelled_exc_class():
                with anyio.CancelScope(shield=True):
                    await self._give_back(act)
                raise
            if self._halted is not None or self.closed:
                await self._give_back(act)
                return

    async def _give_back(self, act: Activation) -> None:
        """An activation taken but not started goes back to the front of the queue."""
        await self.lifecycle.requeue(act)
        self._release(act)
        self.notify()

    def _hold(self, act: Activation) -> None:
        """Count ``act`` against the global and its agent's bounds (until :meth:`_release`)."""
        self._active[act.agent] += 1
        self._active_total += 1

    def _release(self, act: Activation) -> None:
        active = self._active
        active[act.agent] -= 1
        if not active[act.agent]:
            del active[act.agent]
        self._active_total -= 1

    async def _fire_due_timers(self) -> None:
        while (token := self.timers.pop_due(self._clock.monotonic())) is not None:
            await self.apply(await self.router.wake(token))

    async def flush_store(self) -> None:
        flush = getattr(self.store, "flush", None)  # a store that writes before returning has none
        if flush is not None:
            await flush()

    # ------------------------------------------------------------------ summaries and shutdown
    def take_summary(self, usage: dict[str, Any]) -> RunSummary:
        summary, self.summary = self.summary, RunSummary()
        summary.waiting = self.router.waiting()
        summary.deferred = len(self.router.deferred)
        summary.wall_time_s = time.perf_counter() - self._summary_started
        summary.usage = usage
        self.router.loop_guard.forget()
        self._summary_started = time.perf_counter()
        self.runtime.run_id = uuid4().hex
        return summary

    async def close(self) -> None:
        """Stop timers, end a run in progress (its running activations are requeued) and wait for it."""
        self.closed = True
        self.timers.clear()
        self.events.close_all()
        if self._run_scope is not None:
            self._run_scope.cancel()
        self.notify()
        if self._drive_lock is not None and _DRIVING.get() is not self._run_mark:
            async with self._drive_lock:  # the run has ended once its lock is free
                pass
        if self.router.share is not None:  # another process takes over the board's routing
            await self.router.share.release(self.router)
        await self.flush_store()
