"""One router for a shared board: the process that holds the board's leader lock.

Most routing depends on nothing but the artifact: every process routes what it publishes and
commits, and two processes that route the same artifact queue the same activation id (a no-op the
second time). Gates, batches, joins and activation conditions are different: they collect parts
in memory, and two processes collecting the parts of one group would each see half of it. So on a
shared board those subscriptions are routed by one process, the **router**, which holds a
session-level advisory lock (``pg_try_advisory_lock``) on a connection of its own:

- every process skips the stateful subscriptions when it routes (:meth:`Leadership.routes_here`);
- the router reads the artifacts it has not routed yet (``artifacts.routed = 0``, in publication
  order; new artifacts wake it through ``NOTIFY flock_board``), offers them to its gates, batches and
  joins, and marks them ``routed = 1``. Queuing a group's activation is keyed by its deterministic
  id, like any other;
- a little later (``lag`` seconds) it routes their plain subscriptions too and queues what is
  missing: outputs whose worker was killed between its commit and its routing are not stranded
  (``routed = 2``);
- it fires the schedules (a process that stops being the router keeps its ticks coming, silent,
  and fires them again if it becomes the router again);
- a worker keeps the role between its runs (new artifacts wake it); any other process gives it up
  when its run returns, so a script that ran once cannot keep gates and schedules from the workers;
- when the router dies its session ends and the lock is free: the next process to try (at the
  start of each run, and every ``retry`` seconds while it runs) takes over. It rebuilds the gates,
  batches and joins from the board — every stored artifact of a stateful subscription's types
  that is neither consumed by it nor an input of an activation in flight, in publication order,
  read in one snapshot — as ``resume()`` does; a group the old router journaled but did not get
  to queue is queued.

The sweep runs on the lock's own connection: if that connection is gone, so is the lock, and the
process stops routing at once instead of routing beside a new router. A router that listens to the
board's notifications (a worker, once it knows it routes: :attr:`Leadership.listening`) reads the
unrouted artifacts only after a notification (:meth:`Leadership.notified`, which its slow poll also
calls, in case one was lost); one that does not (a script) reads them at every turn of its run loop.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import time
from collections.abc import Iterable
from typing import Any

from .._core.decisions import Activate, Decision
from .._core.errors import FlockError
from .._core.spec import AgentSpec, Subscription
from .postgres_schema import typed
from .store import ActivationRecord

log = logging.getLogger("flock")

_LEADER_LOCK = 0x666C6F63  # "floc": first key of the board's leader lock; the second is the schema's hash
_PAGE = 500


def stateful(sub: Subscription) -> bool:
    """Whether routing ``sub`` keeps state between artifacts (one process must route it)."""
    return sub.is_gate or sub.batch is not None or sub.join is not None or sub.activation is not None


def _plain(spec: AgentSpec, sub: Subscription) -> bool:
    return not stateful(sub)


def _stateful(spec: AgentSpec, sub: Subscription) -> bool:
    return stateful(sub)


class Leadership:
    """This process's part in routing a :class:`PostgresStore` board (``Router.share``).

    Args:
        store: the board.
        retry: seconds between attempts to become the router while another process is.
        lag: seconds after which the router checks that an artifact's plain subscriptions were
            routed by the process that stored it.
    """

    def __init__(self, store: Any, *, retry: float = 5.0, lag: float = 5.0) -> None:
        self.store = store
        self.retry = retry
        self.lag = lag
        self.leading = False
        self.hold = False  # keep the routing between runs (a worker sets it; see run_ended)
        self.takeovers = 0  # how often this process became the router (for logs and tests)
        # Schedules this process started: their ticks keep coming (silent while another process is
        # the router), so a second takeover does not start them twice.
        self.schedules_started: set[str] = set()
        self._conn: Any = None
        self._held: dict[str, int] = {}
        self._next_try = 0.0
        self._next_check = 0.0
        # Set while this process LISTENs on the board's channel: then the router reads the
        # unrouted artifacts only after a notification said there are new ones (``notified``).
        self.listening = False
        self._new = True

    def __repr__(self) -> str:
        return f"Leadership({self.store!r}, leading={self.leading})"

    def notified(self) -> None:
        """New artifacts may wait to be routed (a board notification came, or the slow poll ran)."""
        self._new = True

    def routes_here(self, spec: AgentSpec, sub: Subscription) -> bool:
        return not stateful(sub)

    # ------------------------------------------------------------------ the run loop's turn
    async def step(self, router: Any, *, first: bool = False) -> list[Decision]:
        try:
            if not self.leading:
                if time.monotonic() < self._next_try and not first:
                    return []
                self._next_try = time.monotonic() + self.retry
                if not await self._acquire():
                    return []
                return await self._take_over(router)
            return await self._sweep(router)
        except FlockError:
            raise
        except Exception as exc:
            import psycopg

            if not isinstance(exc, psycopg.Error):
                raise
            await self._lost(router, exc)
            raise typed(exc, self.store.where) from exc

    async def run_ended(self, router: Any) -> None:
        """Give the routing up when a run returns, unless this process keeps serving the board
        (``hold``: a worker, woken by the board's notifications). A script that ran once, or a
        notebook that sits idle, must not keep gates and schedules from the workers."""
        if self.hold or not self.leading:
            return
        self._held = router.waiting()
        log.info("board router: %s gives up routing %r (its run returned)", _me(), self.store)
        self._forget(router)
        conn = self._conn
        if conn is not None and not conn.closed:
            try:
                await conn.execute("SELECT pg_advisory_unlock_all()")
            except Exception:  # the connection broke: its session, and the lock, are gone
                await self.close()

    def held(self) -> dict[str, int]:
        return dict(self._held)

    async def release(self, router: Any) -> None:
        """Stop routing and free the lock (the Flock shuts down or the store closes)."""
        if self.leading:
            log.info("board router: %s gives up routing %r", _me(), self.store)
        self._forget(router)
        await self.close()

    async def close(self) -> None:
        """Free the lock and close its connection: the next process to try becomes the router."""
        self.leading = False
        conn, self._conn = self._conn, None
        if conn is not None and not conn.closed:
            # Unlock first: the server ends a closed session a moment later, not at once. A broken
            # connection's session is over anyway.
            with contextlib.suppress(Exception):
                await conn.execute("SELECT pg_advisory_unlock_all()")
            with contextlib.suppress(Exception):
                await conn.close()

    # ------------------------------------------------------------------ becoming the router
    async def _connect(self) -> Any:
        if self._conn is None or self._conn.closed:
            import psycopg

            self._conn = await psycopg.AsyncConnection.connect(
                self.store.dsn,
                autocommit=True,
                application_name=f"flock-router:{os.getpid()}:{socket.gethostname()}"[:63],
                options=f"-c search_path={self.store.schema}",
            )
        return self._conn

    async def _acquire(self) -> bool:
        await self.store._open()  # the board is migrated
        conn = await self._connect()
        cur = await conn.execute(
            "SELECT pg_try_advisory_lock(%s, hashtext(current_schema()))", (_LEADER_LOCK,)
        )
        row = await cur.fetchone()
        return bool(row and row[0])

    async def _take_over(self, router: Any) -> list[Decision]:
        """Rebuild the stateful routing from one snapshot of the board; start the schedules."""
        self._forget(router)
        specs = list(router._catalog.specs.values())
        pairs = {(s.name, sub.index) for s in specs for sub in s.subscriptions if stateful(sub)}
        types = sorted({t for s in specs for sub in s.subscriptions if stateful(sub) for t in sub.type_names})
        agents = sorted({a for a, _ in pairs})
        conn = self._conn
        async with conn.transaction():
            await conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
            cur = await conn.execute(
                "SELECT agent, subscription, input_ids, EXISTS (SELECT 1 FROM work WHERE work.id = a.id) "
                "FROM activations a WHERE status <> 'done' AND agent = ANY(%s) AND subscription >= 0 "
                "ORDER BY ord",
                (agents,),
            )
            journaled = await cur.fetchall()
            skip = {(i, a, int(s)) for a, s, ids, _ in journaled for i in ids}
            cur = await conn.execute(
                "SELECT artifact_id, agent, subscription FROM consumptions WHERE agent = ANY(%s)", (agents,)
            )
            skip.update((i, a, int(s)) for i, a, s in await cur.fetchall())
            cur = await conn.execute(
                "SELECT id::text, body FROM artifacts WHERE type = ANY(%s) ORDER BY seq", (types,)
            )
            stored = self.store._decoded.artifacts(await cur.fetchall())
            cur = await conn.execute("SELECT seq FROM artifacts WHERE routed = 0")
            unrouted = [s for (s,) in await cur.fetchall()]
        out: list[Decision] = []
        # A group the old router completed and journaled but did not get to queue (it died between
        # the two): queue it now, as resume() does with journaled work.
        for agent, sub, ids, queued in journaled:
            if not queued and (agent, int(sub)) in pairs:
                inputs = await self.store.get_many(ids)
                if len(inputs) == len(ids):
                    out += await router.activate(agent, int(sub), tuple(inputs))
        for artifact in stored:
            out += await router.route(artifact, skip=skip, select=_stateful)
        await self._mark(unrouted, 0, 1)
        self.leading = True
        self.takeovers += 1
        self._next_check = time.monotonic() + self.lag
        out += router.start_schedules(self.schedules_started)
        log.info(
            "board router: %s routes %r now (%d stored artifacts replayed into gates, batches and joins)",
            _me(),
            self.store,
            len(stored),
        )
        return out

    # ------------------------------------------------------------------ routing the board
    async def _sweep(self, router: Any) -> list[Decision]:
        out: list[Decision] = []
        conn = self._conn
        # Without a notification since the last read there is nothing new (when listening).
        read, self._new = self._new or not self.listening, False
        while read:
            cur = await conn.execute(
                "SELECT seq, id::text, body FROM artifacts WHERE routed = 0 ORDER BY seq LIMIT %s", (_PAGE,)
            )
            rows = await cur.fetchall()
            for artifact in self.store._decoded.artifacts([(i, b) for _, i, b in rows]):
                out += await router.route(artifact, select=_stateful)
            await self._mark([s for s, _, _ in rows], 0, 1)
            read = len(rows) == _PAGE
        if time.monotonic() >= self._next_check:
            out += await self._check_plain(router)
            self._next_check = time.monotonic() + self.lag
        return out

    async def _check_plain(self, router: Any) -> list[Decision]:
        """Queue the plain activations that the process that stored an artifact did not (it died
        between its commit and its routing). Routing is repeated; only what is missing is queued."""
        conn = self._conn
        cur = await conn.execute(
            "SELECT seq, id::text, body FROM artifacts WHERE routed = 1 "
            "AND stored_at < now() - make_interval(secs => %s) ORDER BY seq LIMIT %s",
            (self.lag, _PAGE),
        )
        rows = await cur.fetchall()
        if not rows:
            return []
        artifacts = self.store._decoded.artifacts([(i, b) for _, i, b in rows])
        # First only look up the activations each artifact's plain subscriptions would have queued
        # (ids are derived from agent, subscription and input): an artifact whose are all there
        # needs no routing. The rest (one whose process died, or a where=/visibility that refused
        # an agent) are routed again, and what is still missing is queued.
        expected = {
            a.id: [
                ActivationRecord.for_inputs(spec.name, sub.index, [a.id]).id
                for spec, sub in router.subscriptions_of(a.type)
                if not stateful(sub)
            ]
            for a in artifacts
        }
        cur = await conn.execute(
            "SELECT id FROM work WHERE id = ANY(%s)", ([i for ids in expected.values() for i in ids],)
        )
        queued = {i for (i,) in await cur.fetchall()}
        decisions: list[Decision] = []
        for artifact in artifacts:
            if not all(i in queued for i in expected[artifact.id]):
                decisions += await router.route(artifact, select=_plain)
        ids = [d.activation.record.id for d in decisions if isinstance(d, Activate)]
        if ids:
            cur = await conn.execute("SELECT id FROM work WHERE id = ANY(%s)", (ids,))
            queued.update(i for (i,) in await cur.fetchall())
        missing = [d for d in decisions if not (isinstance(d, Activate) and d.activation.record.id in queued)]
        found = sum(isinstance(d, Activate) for d in missing)
        if found:
            log.warning(
                "board router: %d activations were never queued (their inputs' process stopped before "
                "routing them); queuing them now",
                found,
            )
        await self._mark([s for s, _, _ in rows], 1, 2)
        if len(rows) == _PAGE:
            self._next_check = 0.0
        return missing

    async def _mark(self, seqs: Iterable[int], old: int, new: int) -> None:
        seqs = list(seqs)
        if seqs:
            await self._conn.execute(
                "UPDATE artifacts SET routed = %s WHERE seq = ANY(%s) AND routed = %s", (new, seqs, old)
            )

    # ------------------------------------------------------------------ losing the role
    async def _lost(self, router: Any, exc: BaseException) -> None:
        if self.leading:
            log.warning("board router: %s lost the board's connection (%s); stops routing", _me(), exc)
        self._forget(router)
        await self.close()

    def _forget(self, router: Any) -> None:
        """Drop the stateful routing (another process owns it now, or will)."""
        from .._core.scheduler import Gates, Joins

        self.leading = False
        router.gates = Gates()
        router.joins = Joins()
        router.deferred = []


def _me() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"
