"""The activation lifecycle: one object owns every activation's state, and it is how work moves.

::

    queued ──take──▶ running ──commit──▶ committed
       ▲                │ └────fail────▶ failed
       └──requeued──────┘   (cancelled, the run halted, or the store failed)

An activation's inputs count as handled only when it is committed or recorded as failed: both
write its outputs (for a failure, the ``WorkflowError`` and what earlier output groups produced),
the consumption of its inputs and its completion in one store transaction. A requeued activation
goes back to the front of the queue with its inputs untouched. Durable stores journal ``queued``
and ``running`` (``pending``/``running`` records), so ``resume()`` finds unfinished work after a
crash. Finished activations leave no state behind.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Sequence
from enum import StrEnum
from typing import Any
from uuid import UUID

from .._stores.store import ActivationRecord
from .artifact import Artifact
from .scheduler import Activation
from .workqueue import WorkQueue


class State(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    COMMITTED = "committed"
    FAILED = "failed"
    REQUEUED = "requeued"


class Lifecycle:
    """States of the activations of one Flock, their journal entries and the work queue.

    Args:
        store: the board's store (journal and commits).
        queue: where queued activations wait.
        journal: write ``pending``/``running`` journal entries (only durable stores need them).
    """

    def __init__(self, store: Any, queue: WorkQueue, *, journal: bool) -> None:
        self._store = store
        self.queue = queue
        self.journal = journal
        self.running: dict[UUID, Activation] = {}
        self.running_by_agent: Counter[str] = Counter()
        self.listeners: list[Callable[[Activation, State], None]] = []

    @property
    def queued(self) -> int:
        return len(self.queue)

    def _changed(self, act: Activation, state: State) -> None:
        if self.listeners:
            for listener in self.listeners:
                listener(act, state)

    async def enqueue(self, act: Activation) -> None:
        """A ready activation enters the queue (journaled first, so a crash cannot lose it)."""
        if self.journal and act.journaled:
            put_recorded = getattr(self.queue, "put_recorded", None)
            if put_recorded is not None:  # a queue in the store's database: both in one write
                await put_recorded(act)
            else:
                await self._store.record_activation(act.record)
                await self.queue.put(act)
        else:
            await self.queue.put(act)
        self._changed(act, State.QUEUED)

    async def take(self, room: Callable[[str], int], limit: int) -> list[Activation]:
        """Queued activations that may start now; each is ``running`` from here on."""
        taken = await self.queue.take(room, limit)
        for act in taken:
            self.running[act.record.id] = act
            self.running_by_agent[act.agent] += 1
            self._changed(act, State.RUNNING)
        return taken

    async def started(self, act: Activation) -> None:
        """Journal that a taken activation is running (called from its own task)."""
        if self.journal and act.journaled:
            r = act.record  # built directly: dataclasses.replace costs several times more
            await self._store.record_activation(
                ActivationRecord(r.id, r.agent, r.subscription, r.input_ids, "running")
            )

    async def commit(self, act: Activation, outputs: Sequence[Artifact], *, failed: bool) -> None:
        """Outputs, consumption and completion in one transaction; the activation is finished.

        An activation without outputs only queues its commit on a durable store: nothing downstream
        depends on it, and a run flushes the store before it returns.
        """
        if act.journaled:
            await self._store.commit_activation(act.record, outputs, wait=bool(outputs))
        else:  # invoke(): its input is not on the board, so there is nothing to consume
            for artifact in outputs:
                await self._store.put(artifact)
        self._finish(act, State.FAILED if failed else State.COMMITTED)

    async def requeue(self, act: Activation) -> None:
        """Back to the front of the queue, inputs untouched (cancelled, halted or store failure)."""
        self._finish(act, State.REQUEUED)
        await self.queue.put_front(act)
        if self.journal and act.journaled:
            await self._store.record_activation(act.record)

    def _finish(self, act: Activation, state: State) -> None:
        if self.running.pop(act.record.id, None) is not None:
            self.running_by_agent[act.agent] -= 1
            if not self.running_by_agent[act.agent]:
                del self.running_by_agent[act.agent]
        self._changed(act, state)
