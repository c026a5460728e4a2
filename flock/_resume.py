"""Picking up a board after a restart: what was in flight runs again, what was never scheduled is.

A store's journal says which activations were pending or running when the process stopped and
which (artifact, agent, subscription) pairs were consumed. :func:`restore` rebuilds the routing
state of a fresh :class:`~flock.Flock` from it:

1. every recorded consumption is marked as seen, so it is never scheduled again;
2. every in-flight activation is queued again with its recorded inputs. It has the same id as
   before, so its outputs get the same ids, and any that were already stored are skipped;
3. every artifact is routed again, in publication order. Pairs from (1) and (2) are skipped, so
   this schedules only work that was never recorded (an artifact stored just before the crash),
   and refills incomplete gates, batches and joins.
"""

from __future__ import annotations

import logging
from collections import deque
from typing import TYPE_CHECKING

from ._scheduler import Activation

if TYPE_CHECKING:
    from ._flock import Flock

log = logging.getLogger("flock")


async def restore(flock: Flock) -> int:
    """Rebuild ``flock``'s routing state from its store; returns how many activations were re-queued."""
    store, router = flock.store, flock._router
    router.seen.update(await store.consumptions())
    requeued = 0
    queued = {act.record.id for acts in flock._pending.values() for act in acts}
    for record in await store.in_flight():
        if record.id in queued:
            continue  # published by this process before resume() and already waiting to run
        if record.subscription < 0:
            continue  # a scheduled tick: the agent's schedule starts again with the run
        if record.agent not in flock._agents:
            log.warning(
                "activation %s of agent %r was in flight, but no such agent is declared; declare it "
                "before resume() to finish that work",
                record.id,
                record.agent,
            )
            continue
        inputs = [await store.get(i) for i in record.input_ids]
        if any(a is None for a in inputs):
            log.warning("in-flight activation %s of %r lost its inputs to retention", record.id, record.agent)
            continue
        act = Activation(record.agent, record.subscription, tuple(a for a in inputs if a is not None))
        router.seen.update((i, record.agent, record.subscription) for i in record.input_ids)
        flock._pending.setdefault(act.agent, deque()).append(act)
        flock._pending_count += 1
        requeued += 1
    for artifact in await store.list():
        await router.route(artifact)
    return requeued
