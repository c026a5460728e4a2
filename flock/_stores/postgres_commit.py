"""Group commit for :class:`~flock.PostgresStore`: activations that finish together commit together.

``commit_activation`` writes an activation's outputs (existing ids skipped), the consumption of its
inputs, its journal entry marked done and its work-queue row marked done. All of that is one SQL
statement (data-modifying CTEs run in one transaction, each exactly once), and the statement takes
the activations of a whole group: whoever commits while another commit of the same process is in
flight waits for it, and the next commit takes everything that queued up meanwhile. A group is one
transaction, so each activation in it is still all-or-nothing (the group is, too); every caller
returns once its own activation has committed. When a group fails, its activations are committed
again one by one, so that each caller sees its own error and only its own.

Outputs travel as one array per column (``unnest`` keeps their order, so ``seq`` follows the
order of the outputs), tags as (artifact id, tag) pairs, inputs as one array with the activation
each belongs to, and all arrays in binary: no quoting and escaping of every JSON body.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any
from uuid import UUID

import anyio

from .._core.artifact import Artifact
from .sqlite_schema import ArtifactRow

_COLUMNS = (
    "id, type, produced_by, correlation_id, partition_key, visibility_kind, visibility, created_us, body"
)
_JOURNAL = (
    "acts AS (SELECT * FROM unnest(%(ids)b::uuid[], %(agents)b::text[], %(subs)b::int[], "
    "%(inputs)b::text[], %(us)b::bigint[]) AS a(id, agent, sub, inputs, us)), "
    "used AS (INSERT INTO consumptions (artifact_id, agent, subscription, activation_id) "
    "SELECT i::uuid, a.agent, a.sub, a.id FROM acts a, unnest(string_to_array(a.inputs, ',')) AS i "
    "ON CONFLICT DO NOTHING), "
    "journal AS (INSERT INTO activations (id, agent, subscription, input_ids, status, recorded_us) "
    "SELECT id, agent, sub, string_to_array(inputs, ',')::uuid[], 'done', us FROM acts "
    "ON CONFLICT (id) DO UPDATE SET status = 'done'), "
    "finished AS (UPDATE work SET done = TRUE, lease_until = NULL, claimed_by = NULL "
    "WHERE id = ANY(%(ids)b::uuid[])) "
)
COMMIT = (
    f"WITH new AS (INSERT INTO artifacts ({_COLUMNS}) "
    "SELECT c1, c2, c3, c4, c5, c6, c7, c8, c9 FROM unnest(%(c1)b::uuid[], %(c2)b::text[], "
    "%(c3)b::text[], %(c4)b::text[], %(c5)b::text[], %(c6)b::text[], %(c7)b::text[], %(c8)b::bigint[], "
    "%(c9)b::text[]) WITH ORDINALITY AS o(c1, c2, c3, c4, c5, c6, c7, c8, c9, n) ORDER BY n "
    "ON CONFLICT (id) DO NOTHING RETURNING id, seq), "
    "tags AS (INSERT INTO artifact_tags (tag, seq) SELECT t.tag, new.seq FROM new "
    "JOIN unnest(%(tag_ids)b::uuid[], %(tags)b::text[]) AS t(id, tag) ON t.id = new.id), "
    f"{_JOURNAL}SELECT id FROM new"
)
# Without outputs the artifacts table is not written at all (its statement trigger wakes the router).
COMMIT_NO_OUTPUTS = f"WITH {_JOURNAL}SELECT NULL::uuid WHERE FALSE"


@dataclass(eq=False)
class _Commit:
    record: Any  # ActivationRecord
    outputs: Sequence[Artifact]
    done: bool = False
    error: BaseException | None = None
    new: set[str] = field(default_factory=set)


class GroupCommit:
    """The commits of one :class:`PostgresStore`; see the module docstring."""

    def __init__(self, store: Any) -> None:
        self.store = store
        self._pending: list[_Commit] = []
        self._flushing = False
        self._flushed: anyio.Event | None = None
        self.groups = 0  # statements sent (for benchmarks and tests)

    async def commit(self, record: Any, outputs: Sequence[Artifact]) -> set[str]:
        """Commit one activation; returns the ids of its outputs that were new."""
        item = _Commit(record, outputs)
        self._pending.append(item)
        try:
            while not item.done:
                if self._flushing:
                    assert self._flushed is not None
                    await self._flushed.wait()
                    continue
                await self._flush()
        finally:
            if not item.done and item in self._pending:  # cancelled before its group was sent
                self._pending.remove(item)
        if item.error is not None:
            raise item.error
        return item.new

    async def _flush(self) -> None:
        self._flushing, self._flushed = True, anyio.Event()
        group, seen = [], set()
        for item in self._pending:  # one activation twice (a re-run) waits for the next group
            if item.record.id not in seen:
                seen.add(item.record.id)
                group.append(item)
        self._pending = [item for item in self._pending if item not in group]
        try:
            with anyio.CancelScope(shield=True):  # the waiters depend on this group's outcome
                try:
                    await self._send(group)
                except Exception as exc:
                    if len(group) == 1:
                        group[0].error = exc
                    else:  # each on its own: every caller gets its own outcome
                        for item in group:
                            try:
                                await self._send([item])
                            except Exception as single:
                                item.error = single
                for item in group:
                    item.done = True
        finally:
            self._flushing = False
            self._flushed.set()

    async def _send(self, group: list[_Commit]) -> None:
        rows = [(item, ArtifactRow.of(a)) for item in group for a in item.outputs]
        us = time.time_ns() // 1000
        params: dict[str, Any] = {
            "ids": [item.record.id for item in group],
            "agents": [item.record.agent for item in group],
            "subs": [item.record.subscription for item in group],
            "inputs": [",".join(map(str, item.record.input_ids)) for item in group],
            "us": [us] * len(group),
        }
        if rows:
            params.update({f"c{k + 1}": [row.values[k] for _, row in rows] for k in range(9)})
            params["c1"] = [UUID(i) for i in params["c1"]]
            params["tag_ids"] = [UUID(row.id) for _, row in rows for _ in row.tags]
            params["tags"] = [t for _, row in rows for t in row.tags]
        self.groups += 1
        async with self.store.connection() as conn:
            cur = await conn.execute(COMMIT if rows else COMMIT_NO_OUTPUTS, params)
            new = {str(i) for (i,) in await cur.fetchall()}
        for item, row in rows:
            if row.id in new:
                item.new.add(row.id)
