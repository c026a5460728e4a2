"""The default context: what the inputs were made from.

:class:`LineageContext` follows ``Artifact.consumed_from`` from the inputs back through the
workflow and shows the agent the ancestors it may see, newest first. A critic of one idea sees the
brief the idea came from, not the nine sibling ideas next to it; a stage of a pipeline sees the
stages before it. Unlike a scan of the whole workflow, the walk fetches artifacts by id, so one
activation costs O(limit) on every store, however large the workflow has grown.
"""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Iterable, Sequence
from uuid import UUID

from .artifact import Artifact
from .context import ContextRequest


class LineageContext:
    """The visible ancestors of the inputs (transitively, same workflow), newest first.

    Args:
        limit: at most this many artifacts (default 20). ``0`` shows nothing.

    The walk is best-first by publication time: an artifact is always newer than what it was made
    from, so the first ``limit`` visible ancestors it pops are the ``limit`` newest ones. Ancestors
    from another workflow (correlation id) end the walk on that branch; ancestors the agent may not
    see are skipped but walked through, so their visible ancestors still show. At most ``limit``
    parents of any one artifact (the last ones listed, i.e. its newest inputs) and ``4 * limit``
    artifacts in all are looked at, which bounds the cost of huge joins and batches.

    Example::

        Flock(context_provider=LineageContext(limit=5))
        flock.agent("critic").consumes(Idea).publishes(Critique).with_context(LineageContext())
    """

    def __init__(self, limit: int = 20) -> None:
        self.limit = limit

    def __repr__(self) -> str:
        return f"LineageContext(limit={self.limit})"

    async def __call__(self, request: ContextRequest) -> list[Artifact]:
        limit = self.limit
        if limit <= 0 or not request.inputs:
            return []
        store, identity, now = request.store, request.identity, request.now
        workflow = request.correlation_id
        seen: set[UUID] = {a.id for a in request.inputs}
        heap: list[tuple[float, int, Artifact]] = []
        order = itertools.count()
        found: list[Artifact] = []
        wanted = _parents(request.inputs, seen, limit)
        budget = 4 * limit
        while True:
            if wanted:
                for a in await fetch_many(store, wanted):
                    if a.correlation_id == workflow:
                        heapq.heappush(heap, (-a.created_at.timestamp(), next(order), a))
            if not heap or budget <= 0:
                break
            _, _, newest = heapq.heappop(heap)
            budget -= 1
            if newest.visibility.allows(identity, now=now, published_at=newest.created_at):
                found.append(newest)
                if len(found) == limit:
                    break
            wanted = _parents((newest,), seen, limit)
        return found


def _parents(artifacts: Iterable[Artifact], seen: set[UUID], limit: int) -> list[UUID]:
    """Ids the artifacts were made from that the walk has not met yet (marks them met)."""
    out: list[UUID] = []
    for a in artifacts:
        for pid in a.consumed_from[-limit:]:
            if pid not in seen:
                seen.add(pid)
                out.append(pid)
    return out


async def fetch_many(store: object, ids: Sequence[UUID]) -> list[Artifact]:
    """``store.get_many(ids)`` when the store has it, else one ``get`` per id."""
    get_many = getattr(store, "get_many", None)
    if get_many is not None:
        return list(await get_many(ids))
    found = [await store.get(i) for i in ids]  # type: ignore[attr-defined]
    return [a for a in found if a is not None]
