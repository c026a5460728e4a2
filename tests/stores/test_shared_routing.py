"""One router for a shared board, in one process: ``Flock(store=PostgresStore)`` routes gates,
joins and batches through the board's router (itself, for the length of its run, when no worker
is the router), a second Flock on the board takes the routing over once the first's run returned
and rebuilds what was half collected, and schedules fire in the router only. Runs against a real
PostgreSQL server."""

from __future__ import annotations

from datetime import timedelta
from functools import partial
from typing import Any

import pytest
from pydantic import BaseModel
from stateful_app import Bundle, Match, Pair, build, task

from flock import Flock, Until, flock_type

pytestmark = pytest.mark.anyio
pytest.importorskip("psycopg", reason="psycopg is not installed: pip install 'flock[postgres]'")


def store(dsn: str) -> Any:
    from flock import PostgresStore

    return PostgresStore(dsn)


async def test_one_flock_on_postgres_fires_each_gate_join_and_batch_once(postgres_dsn: str) -> None:
    flock = build(store(postgres_dsn))
    for i in range(8):
        for artifact in task(i):
            await flock.publish(artifact)
    summary = await flock.run_until_idle()
    try:
        assert sorted(p.n for p in await flock.store.get_by_type(Pair)) == list(range(8))
        assert sorted(m.n for m in await flock.store.get_by_type(Match)) == list(range(8))
        assert [b.ns for b in await flock.store.get_by_type(Bundle)] == [[0, 1, 2, 3], [4, 5, 6, 7]]
        assert summary.agents_run == {"pair": 8, "match": 8, "bundle": 2}
    finally:
        await flock.store.close()


async def test_a_second_flock_takes_over_the_routing_and_completes_half_collected_groups(
    postgres_dsn: str,
) -> None:
    first = build(store(postgres_dsn))
    left, right = task(0)
    await first.publish(left)
    summary = await first.run_until_idle()  # routed the board for its run: the gate and join hold it
    assert summary.waiting == {"pair": 1, "match": 1}
    assert summary.agents_run == {"bundle": 1}  # a partial batch, delivered when the run is idle
    second = build(store(postgres_dsn))
    await second.publish(right)
    # The first gave the routing up when its run returned (it does not keep serving the board):
    # the second takes over, rebuilds the half-collected groups from the board and completes them.
    summary = await second.run_until_idle()
    try:
        assert summary.agents_run == {"pair": 1, "match": 1}
        assert await second.store.get_by_type(Pair) == [Pair(n=0)]
        assert await second.store.get_by_type(Match) == [Match(n=0)]
        assert await second.store.get_by_type(Bundle) == [Bundle(ns=[0])]  # once, by the first
        assert (await first.run_until_idle()).agents_run == {}  # nothing left, nothing twice
    finally:
        await first.store.close()
        await second.store.close()


@flock_type(name="shared_routing.Beat")
class Beat(BaseModel):
    iteration: int


async def test_schedules_fire_in_one_process_of_the_board(postgres_dsn: str) -> None:
    import anyio

    def beating(board: Any) -> Flock:
        flock = Flock(store=board)
        flock.agent("heart").schedule(every=timedelta(seconds=0.2), max_repeats=4).publishes(Beat).calls(
            lambda ctx, inputs: Beat(iteration=ctx.tick.iteration)
        )
        return flock

    a, b = beating(store(postgres_dsn)), beating(store(postgres_dsn))
    try:
        async with anyio.create_task_group() as tg:
            for flock in (a, b):  # both run for 2 s; the board's router fires the schedule
                tg.start_soon(partial(flock.run_until, Until.artifact_count(Beat).at_least(9), timeout=2))
        beats = sorted(x.iteration for x in await a.store.get_by_type(Beat))
        assert beats == [1, 2, 3, 4]  # four ticks on the board, not four per process
    finally:
        await a.store.close()
        await b.store.close()
