"""A Flock as a long-running worker on a shared board (``flock worker``; see docs/scaling-out.md).

:func:`serve` picks up what earlier processes left (``resume``), then runs until idle, sleeps until
new work is announced (``LISTEN`` on the board's channel, or a slow poll for lost notifications
and expired leases of dead workers) and runs again, until asked to stop. One of the workers is
also the board's router (``_postgres_leader``): new artifacts wake it too, and the others try to
take over at every poll. Stopping is graceful:
no new claims, running activations finish within ``grace`` seconds, and whatever is still running
then is cancelled and its claim released at once, so another worker takes it over immediately.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import anyio

from .._core.errors import ConfigurationError, FlockError
from .._core.serving import Runner

log = logging.getLogger("flock")
_RECHECK_S = 1.0  # how often the notification connection checks whether this worker routes the board


@dataclass
class WorkerStats:
    activations: int = 0
    runs: int = 0
    released: int = 0
    errors: int = 0


def attach(flock: Any, store: Any, *, lease: float = 30.0) -> None:
    """Put a Flock that has not published anything yet on ``store`` and its shared queue
    (what ``flock worker --store`` does with the module's Flock)."""
    orch = flock._orchestrator
    if orch.board_mark is not None or getattr(flock.store, "durable", False):
        raise ConfigurationError(
            f"this Flock already works on {flock.store!r}; drop --store to use it, or declare the "
            "Flock without a store= (in-memory) so that --store can choose one"
        )
    flock.store = store
    orch.rebind(store, store.shared_queue(lease=lease))


async def serve(
    flock: Any, stop: anyio.Event, *, poll: float = 5.0, grace: float = 30.0, retry: float = 2.0
) -> WorkerStats:
    """Work on the board of ``flock`` (a :class:`PostgresStore` with its shared queue) until
    ``stop`` is set; returns what it did."""
    import psycopg

    store, orch = flock.store, flock._orchestrator
    queue = orch.lifecycle.queue
    if not hasattr(queue, "release_all"):
        raise ConfigurationError(
            "flock worker needs a board that workers share: Flock(store=PostgresStore(dsn)) or --store"
        )
    routing = queue.routing
    # How soon a worker takes over the routing when the router is gone, and how long the router
    # leaves an artifact to the process that stored it before it checks that it was routed.
    routing.retry = routing.lag = poll
    routing.hold = True  # the board's notifications wake it: it may keep routing between runs
    runner = Runner(flock, resume=True, retry=retry)
    finished = anyio.Event()

    def wake() -> None:
        queue.wake()
        runner.wake()

    async def listen() -> None:
        while True:
            board = False  # whether this connection LISTENs on the board's channel
            try:
                async with await psycopg.AsyncConnection.connect(store.dsn, autocommit=True) as conn:
                    await conn.execute("LISTEN flock_work")
                    wake()  # anything queued while we were not listening
                    while True:
                        # Only the router needs to hear of new artifacts: the other workers do not
                        # listen, so a commit wakes one process, not all (checked every second;
                        # until it listens, a new router reads them at every turn of its loop).
                        if board != routing.leading:
                            board = routing.leading
                            await conn.execute("LISTEN flock_board" if board else "UNLISTEN flock_board")
                            routing.listening = board
                            if board:  # route what came before it listened
                                routing.notified()
                                runner.wake()
                        async for note in conn.notifies(timeout=_RECHECK_S):
                            if note.payload != store.schema:
                                continue
                            if note.channel == "flock_work":
                                wake()
                            else:  # new artifacts: the board's router routes them
                                routing.notified()
                                runner.wake()
            except psycopg.Error as exc:
                routing.listening = False  # notifications may be lost: read at every turn
                log.warning("worker: lost the notification connection (%s); reconnecting", exc)
                await anyio.sleep(retry)

    async def poll_now_and_then() -> None:
        while True:
            await anyio.sleep(poll)
            routing.notified()  # in case a notification was lost
            wake()

    async def drain() -> None:
        await stop.wait()
        queue.draining = True
        runner.wake()
        with anyio.move_on_after(grace):
            await finished.wait()  # the run in progress ended: everything running finished
            return
        log.warning("worker: activations still running after %ss; cancelling and releasing them", grace)
        await flock.shutdown()

    async with anyio.create_task_group() as tg:
        tg.start_soon(listen)
        tg.start_soon(poll_now_and_then)
        tg.start_soon(drain)
        await runner.run(stop)  # resume() first; a halted run (the server away) is retried
        finished.set()
        tg.cancel_scope.cancel()
    stats = WorkerStats(runner.activations, runner.runs, 0, runner.errors)
    with anyio.CancelScope(shield=True):
        try:
            stats.released = await queue.release_all()
        except FlockError as exc:
            log.warning("worker: could not release claims (%s); their leases run out instead", exc)
        await routing.release(orch.router)  # another worker takes over the routing at its next poll
        queue.close()
    return stats
