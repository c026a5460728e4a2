"""Picking up a board after a restart: what was in flight runs again, what was never scheduled is.

A store's journal says which activations were pending or running when the process stopped and
which (artifact, agent, subscription) pairs were consumed. :func:`restore` turns it into decisions
for a fresh :class:`~flock.Flock`:

1. every in-flight activation is checked against today's declarations: the agent and subscription
   must still exist and every input must still be addressed to and visible to the agent. Work that
   passes is queued again with its recorded inputs (same id, so outputs that were already stored are
   not published twice); work that does not is recorded as failed, never run. On a queue that
   several processes share, work that still has its row there is checked but not queued again: the
   row (with the causal chain the loop guard gave it) is claimed as it is, and work of an agent this
   process does not declare is left to the processes that do;
2. every stored artifact is routed again, in publication order, skipping the pairs that were
   consumed or are in flight. That schedules only work that was never recorded (an artifact stored
   just before the crash) and refills incomplete gates, batches and joins.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Iterable
from uuid import UUID

from .._stores.store import ActivationRecord
from .artifact import Artifact
from .catalog import Catalog
from .decisions import Decision, Fail
from .routing import Router
from .scheduler import Activation

log = logging.getLogger("flock")
_CHUNK = 1000  # ids per get_many query


Shared = Callable[[list[UUID]], Awaitable[set[UUID]]]


async def restore(
    store: object,
    catalog: Catalog,
    router: Router,
    queued: Iterable[UUID],
    upto: int | None,
    shared: Shared | None = None,
) -> list[Decision]:
    """Decisions that finish a previous process's work on ``store``.

    ``queued``: ids of activations this process already queued; ``upto``: how many of the stored
    artifacts predate this process's own publishing (``None``: all of them); ``shared``: for a
    queue that several processes share, which of the given activation ids have a row in it
    (waiting, claimed, or done meanwhile; one query for all of them).
    """
    skip: set[tuple[UUID, str, int]] = set(await store.consumptions())  # type: ignore[attr-defined]
    already = set(queued)
    out: list[Decision] = []
    records = [
        r
        for r in await store.in_flight()  # type: ignore[attr-defined]
        # queued by this process before resume(); or a scheduled tick (restarts with the run)
        if r.id not in already and r.subscription >= 0
    ]
    inputs = await _inputs(store, {i for r in records for i in r.input_ids})
    in_queue = await shared([r.id for r in records]) if shared is not None and records else set()
    for record in records:
        skip.update((i, record.agent, record.subscription) for i in record.input_ids)
        out += await _requeue(catalog, router, record, inputs, record.id in in_queue)
    stored = await store.list()  # type: ignore[attr-defined]
    for artifact in stored if upto is None else stored[:upto]:
        out += await router.route(artifact, skip=skip)
    return out


async def _inputs(store: object, ids: set[UUID]) -> dict[str, Artifact]:
    """The in-flight activations' inputs that are still stored, read in a few queries (a store
    without ``get_many`` is asked one id at a time)."""
    get_many = getattr(store, "get_many", None)
    keys = sorted(ids, key=str)  # a stable order: the same queries every time
    if get_many is None:
        found = [await store.get(i) for i in keys]  # type: ignore[attr-defined]
        return {str(a.id): a for a in found if a is not None}
    out: dict[str, Artifact] = {}
    for start in range(0, len(keys), _CHUNK):
        out.update((str(a.id), a) for a in await get_many(keys[start : start + _CHUNK]))
    return out


async def _requeue(
    catalog: Catalog, router: Router, record: ActivationRecord, stored: dict[str, Artifact], in_queue: bool
) -> list[Decision]:
    """Queue ``record`` again, or fail it if today's declarations refuse its inputs. ``in_queue``:
    it still has its row in a shared queue, which runs it once it passes the check."""
    spec = catalog.specs.get(record.agent)
    if spec is None:
        if in_queue:  # a process that declares the agent claims it
            return []
        log.warning(
            "activation %s of agent %r was in flight, but no such agent is declared; declare it before "
            "resume() to finish that work",
            record.id,
            record.agent,
        )
        return []
    inputs = [stored.get(str(i)) for i in record.input_ids]
    found = tuple(a for a in inputs if a is not None)
    if len(found) != len(inputs):
        log.warning("in-flight activation %s of %r lost its inputs to retention", record.id, record.agent)
        return []
    sub = spec.subscriptions[record.subscription] if record.subscription < len(spec.subscriptions) else None
    refused = [a for a in found if sub is None or not router.admits(spec, sub, a)]
    if refused:
        reason = (
            f"journaled activation {record.id} of agent {record.agent!r} was not run again on resume(): "
            f"under today's declarations the agent may not consume {', '.join(str(a.id) for a in refused)} "
            "(its subscription, producer/tag filters or the artifacts' visibility changed)"
        )
        log.warning("%s", reason)
        act = Activation(record.agent, record.subscription, found)
        return [Fail(act, "subscription_error", reason)]
    if in_queue:  # its row waits (or runs) with the chain the loop guard gave it when it was queued
        return []
    return await router.activate(record.agent, record.subscription, found)
