"""A work queue that many processes share: ready activations are rows in the board's database.

``put`` inserts a row keyed by the activation's deterministic id: queuing the same work twice is
a no-op, finished work keeps its row (marked done) so it is never queued again, and work whose
inputs were already consumed is not queued either. ``take`` claims
rows with ``SELECT … FOR UPDATE SKIP LOCKED``, so concurrent workers never claim the same row, and
gives each claim a lease. A heartbeat thread extends the leases of the claims this process still
holds; a process that dies (``kill -9``, a lost network) stops extending them, and once a lease
runs out the row is claimable again: another worker runs the activation. The row is marked done
in the transaction that commits the activation (``PostgresStore.commit_activation``), together with its
outputs and the consumption of its inputs, so a run that is repeated publishes nothing twice.

New rows wake idle workers through ``LISTEN``/``NOTIFY`` (a trigger on the table); a slow poll
covers lost notifications and expired leases.
"""

from __future__ import annotations

import json
import threading
import uuid
from collections import deque
from collections.abc import Callable, Iterator
from typing import Any
from uuid import UUID

from .._core.errors import ConfigurationError
from .._core.scheduler import Activation
from .postgres_schema import journal_params

CHANNEL = "flock_work"
# The journal entry (PostgresStore.record_activation) and the work row (put) in one statement;
# neither is written once the inputs were consumed, and a finished activation stays done.
_NOT_CONSUMED = (
    "NOT EXISTS (SELECT 1 FROM consumptions WHERE artifact_id = %(first)s AND agent = %(agent)s "
    "AND subscription = %(sub)s)"
)
_PUT_RECORDED = (
    "WITH journal AS (INSERT INTO activations (id, agent, subscription, input_ids, status, recorded_us) "
    f"SELECT %(id)s, %(agent)s, %(sub)s, %(ids)s, %(status)s, %(us)s WHERE {_NOT_CONSUMED} "
    "ON CONFLICT (id) DO UPDATE SET status = excluded.status, recorded_us = excluded.recorded_us "
    "WHERE activations.status <> 'done') "
    f"INSERT INTO work (id, agent, body) SELECT %(id)s, %(agent)s, %(body)s WHERE {_NOT_CONSUMED} "
    "ON CONFLICT (id) DO NOTHING"
)
# Claim the oldest ready rows of the given agents (released ones first), skipping rows another
# worker is claiming; the inputs of each claimed activation come along (no second round trip).
_CLAIM = (
    "WITH picked AS (SELECT id FROM work "
    "WHERE NOT done AND (lease_until IS NULL OR lease_until < now()) AND agent = ANY(%s) "
    "ORDER BY front DESC, ord LIMIT %s FOR UPDATE SKIP LOCKED), "
    "claimed AS (UPDATE work SET claimed_by = %s, "
    "lease_until = now() + make_interval(secs => %s), "
    "attempts = work.attempts + 1, front = FALSE FROM picked WHERE work.id = picked.id "
    "RETURNING work.id, work.agent, work.body) "
    "SELECT c.id, c.agent, c.body, i.ids, i.bodies FROM claimed c LEFT JOIN LATERAL "
    "(SELECT array_agg(a.id::text) AS ids, array_agg(a.body) AS bodies FROM artifacts a "
    "WHERE a.id = ANY(ARRAY(SELECT jsonb_array_elements_text(c.body::jsonb -> 'inputs'))::uuid[])"
    ") i ON TRUE"
)


class PostgresQueue:
    """The :class:`WorkQueue` of a :class:`PostgresStore`: one queue for every process on the board.

    ``Flock(store=PostgresStore(dsn))`` uses one unless given another ``queue=``.

    Args:
        store: the board whose ``work`` table holds the queue.
        lease: seconds a claim stays valid without a heartbeat; a dead worker's activations run
            again elsewhere after about this long.
        worker: this process's name in the ``claimed_by`` column (default: host, pid and a random part).
    """

    def __init__(self, store: Any, *, lease: float = 30.0, worker: str | None = None) -> None:
        if lease <= 0:
            raise ConfigurationError(f"PostgresQueue(lease={lease}): use a positive number of seconds")
        self.store = store
        self.lease = float(lease)
        if worker is None:
            import os
            import socket

            worker = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"
        self.worker = worker
        self.draining = False  # set by a worker that is shutting down: take() claims nothing more
        self._ready = 1  # 0 once a take found nothing claimable; only a hint for the run loop
        self._local: deque[Activation] = deque()  # work that is not shared (see put)
        self._held: set[UUID] = set()
        self._held_lock = threading.Lock()
        self._beat: threading.Thread | None = None
        self._stop = threading.Event()
        from .postgres_leader import Leadership

        self.routing = Leadership(store)  # this process's part in routing the board (Router.share)

    def __repr__(self) -> str:
        return f"PostgresQueue({self.store!r}, worker={self.worker!r})"

    # ------------------------------------------------------------------ the WorkQueue protocol
    def __len__(self) -> int:
        """Local work plus a hint for the shared rows: 0 once a take found nothing claimable,
        1 after anything suggests there may be some (a put, a notification, a full take)."""
        return len(self._local) + (0 if self.draining else self._ready)

    def __iter__(self) -> Iterator[Activation]:
        """The activations waiting in this process only (shared rows are in the database)."""
        return iter(list(self._local))

    def wake(self) -> None:
        """There may be shared work (a notification came): the next take looks for it."""
        self._ready = 1

    async def put(self, act: Activation) -> None:
        """Queue a ready activation for every worker. Scheduled ticks and ``invoke()`` calls
        (inputs not on the board) stay in this process."""
        if act.tick is not None or not act.journaled or not act.artifacts:
            self._local.append(act)
            return
        record = act.record
        async with self.store.connection() as conn:
            await conn.execute(
                "INSERT INTO work (id, agent, body) SELECT %s, %s, %s WHERE NOT EXISTS "
                "(SELECT 1 FROM consumptions WHERE artifact_id = %s AND agent = %s AND subscription = %s) "
                "ON CONFLICT (id) DO NOTHING",
                (
                    record.id,
                    act.agent,
                    _encode(act),
                    record.input_ids[0],
                    record.agent,
                    record.subscription,
                ),
            )
        self._ready = 1

    async def put_recorded(self, act: Activation) -> None:
        """Journal a ready activation as pending and queue it (what ``Lifecycle.enqueue`` does
        with a store and a queue apart) in one statement: one round trip, one transaction."""
        record = act.record
        if act.tick is not None or not act.artifacts:
            await self.store.record_activation(record)
            self._local.append(act)
            return
        async with self.store.connection() as conn:
            await conn.execute(
                _PUT_RECORDED,
                {**journal_params(record), "body": _encode(act)},
            )
        self._ready = 1

    async def put_front(self, act: Activation) -> None:
        """Give back a claimed activation (cancelled, halted): its lease ends now, and it is the
        first to be claimed again."""
        if act.tick is not None or not act.journaled or not act.artifacts:
            self._local.appendleft(act)
            return
        self._release(act.record.id)
        async with self.store.connection() as conn:
            await conn.execute(
                "UPDATE work SET lease_until = NULL, claimed_by = NULL, front = TRUE "
                "WHERE id = %s AND claimed_by = %s",
                (act.record.id, self.worker),
            )
            await conn.execute("SELECT pg_notify(%s, current_schema())", (CHANNEL,))
        self._ready = 1

    async def take(self, room: Callable[[str], int], limit: int) -> list[Activation]:
        """Claim up to ``limit`` activations, at most ``room(agent)`` per agent, oldest first;
        agents this process does not declare are left to the processes that do. One statement
        when ``room`` can list every declared agent's room (``room.free()``, the run loop's)."""
        taken: list[Activation] = []
        while self._local and len(taken) < limit and (_room(room, self._local[0].agent) or 0) > 0:
            taken.append(self._local.popleft())
        if self.draining or not self._ready or len(taken) >= limit:
            return taken
        async with self.store.connection() as conn:
            free = getattr(room, "free", None)
            if free is not None:
                rooms: dict[str, int] = free()
            else:  # a bare callable: ask which agents have ready work, then each one's room
                cur = await conn.execute(
                    "SELECT DISTINCT agent FROM work "
                    "WHERE NOT done AND (lease_until IS NULL OR lease_until < now())"
                )
                found = {a: _room(room, a) for (a,) in await cur.fetchall()}
                rooms = {a: n for a, n in found.items() if n is not None}
            agents = {a: n for a, n in rooms.items() if n > 0}
            want = min(limit - len(taken), sum(agents.values()))
            if want <= 0:
                # Every agent is at its bound: the run loop asks again when one of them finishes.
                # (Work only for agents we do not declare is not ours.)
                self._ready = 1 if rooms else 0
                return taken
            cur = await conn.execute(_CLAIM, (list(agents), want, self.worker, self.lease))
            rows = await cur.fetchall()
            keep, give_back = [], []
            for row in rows:
                if agents[row[1]] > 0:
                    agents[row[1]] -= 1
                    keep.append(row)
                else:
                    give_back.append(row[0])
            if give_back:
                await conn.execute(
                    "UPDATE work SET lease_until = NULL, claimed_by = NULL WHERE id = ANY(%s)", (give_back,)
                )
        # Fewer than asked for: nothing more is claimable now for the agents that had room. Rows
        # given back, and the work of agents that had none, wait: the run loop asks again when
        # one of those agents' activations finishes.
        self._ready = 1 if len(rows) >= want or give_back or len(agents) < len(rooms) else 0
        for act in await self._activations(keep):
            self._hold(act.record.id)
            taken.append(act)
        return taken

    async def _activations(self, rows: list[Any]) -> list[Activation]:
        bodies = [json.loads(row[2]) for row in rows]
        stored = {i: b for row in rows for i, b in zip(row[3] or (), row[4] or (), strict=True)}
        found = {str(a.id): a for a in self.store._decoded.artifacts(list(stored.items()))}
        out = []
        for row, body in zip(rows, bodies, strict=True):
            row_id = row[0]
            artifacts = tuple(found[i] for i in body["inputs"] if i in found)
            if len(artifacts) != len(body["inputs"]):  # retention deleted an input: nothing to run
                async with self.store.connection() as conn:
                    await conn.execute("UPDATE work SET done = TRUE WHERE id = %s", (row_id,))
                continue
            act = Activation(
                body["agent"], body["subscription"], artifacts, workflow=body["workflow"], chain=body["chain"]
            )
            out.append(act)
        return out

    # ------------------------------------------------------------------ leases
    def _hold(self, activation: UUID) -> None:
        with self._held_lock:
            self._held.add(activation)
        if self._beat is None:
            self._beat = threading.Thread(
                target=self._heartbeat, name=f"flock-lease:{self.worker}", daemon=True
            )
            self._beat.start()

    def _release(self, activation: UUID) -> None:
        with self._held_lock:
            self._held.discard(activation)

    def _heartbeat(self) -> None:
        """Extend the leases still held, every third of a lease; forget the rows that are gone
        (committed) or were claimed by another worker after a lease ran out."""
        import psycopg

        conn: Any = None
        while not self._stop.wait(self.lease / 3):
            with self._held_lock:
                held = list(self._held)
            if not held:
                continue
            try:
                if conn is None or conn.closed:
                    conn = psycopg.connect(
                        self.store.dsn, autocommit=True, options=f"-c search_path={self.store.schema}"
                    )
                kept = {
                    row[0]
                    for row in conn.execute(
                        "UPDATE work SET lease_until = now() + make_interval(secs => %s) "
                        "WHERE id = ANY(%s) AND claimed_by = %s AND NOT done RETURNING id",
                        (self.lease, held, self.worker),
                    )
                }
            except psycopg.Error:  # the server is away: try again at the next beat
                conn = None
                continue
            with self._held_lock:
                self._held -= set(held) - kept
        if conn is not None:
            conn.close()

    def close(self) -> None:
        """Stop the heartbeat (leases still held run out on their own)."""
        self._stop.set()

    async def aclose(self) -> None:
        """Stop the heartbeat and give up routing the board (the store closes)."""
        self.close()
        await self.routing.close()

    async def release_all(self) -> int:
        """End every lease this process holds now (a worker shutting down); returns how many."""
        with self._held_lock:
            held, self._held = list(self._held), set()
        if not held:
            return 0
        async with self.store.connection() as conn:
            cur = await conn.execute(
                "UPDATE work SET lease_until = NULL, claimed_by = NULL, front = TRUE "
                "WHERE id = ANY(%s) AND claimed_by = %s",
                (held, self.worker),
            )
            await conn.execute("SELECT pg_notify(%s, current_schema())", (CHANNEL,))
            return int(cur.rowcount)

    async def queued_ids(self, ids: list[UUID]) -> set[UUID]:
        """Which of these activations have a row here: waiting, claimed, or done since the caller
        looked (``resume()`` checks those against today's declarations but does not queue them
        again; queuing one would change nothing)."""
        async with self.store.connection() as conn:
            cur = await conn.execute("SELECT id FROM work WHERE id = ANY(%s)", (ids,))
            return {row[0] for row in await cur.fetchall()}

    async def pending(self) -> int:
        """How many rows wait in the shared queue, claimed or not (for monitoring and tests)."""
        async with self.store.connection() as conn:
            cur = await conn.execute("SELECT COUNT(*) FROM work WHERE NOT done")
            row = await cur.fetchone()
        return int(row[0]) if row else 0


def _room(room: Callable[[str], int], agent: str) -> int | None:
    try:
        return room(agent)
    except KeyError:  # an agent another process declares
        return None


def _encode(act: Activation) -> str:
    return json.dumps(
        {
            "agent": act.agent,
            "subscription": act.subscription,
            "inputs": [str(a.id) for a in act.artifacts],
            "workflow": act.workflow,
            "chain": dict(act.chain),
        }
    )
