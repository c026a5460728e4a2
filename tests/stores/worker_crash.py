"""Kill -9 workers that share a board on PostgreSQL, at random moments, and check the board.

:class:`Fleet` keeps ``size`` ``flock worker worker_app:flock`` processes on one board (short
leases, so a dead worker's claims run again quickly). Each round publishes a batch of tasks from
a separate process, kills random workers at random moments while the batch is processed (each
killed worker is restarted, as a supervisor would), waits until the batch is finished and checks
what :func:`check` states: no published task lost, no output duplicated, no activation torn
(outputs without the consumption of their inputs, or the reverse), every Result consumed exactly
once by the silent ``tally`` agent and by the ``pair`` gate (routed by whichever worker is the
board's router; a killed router is replaced), nothing left queued or in flight, and the same board
as an uninterrupted run. ``benchmarks/bench_workers.py --crash`` runs hundreds of rounds.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import anyio
import psycopg

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import worker_app  # noqa: E402

from flock import Artifact, InMemoryStore  # noqa: E402


class Fleet:
    """``size`` worker processes on the board at ``dsn``, restarted when killed."""

    def __init__(self, dsn: str, size: int, *, lease: float = 1.0, delay: float = 0.005) -> None:
        self.dsn, self.lease, self.delay = dsn, lease, delay
        self.procs: list[subprocess.Popen[str]] = [self._start() for _ in range(size)]
        self.kills = 0
        self.router_kills = 0  # kills of the worker that was the board's router at that moment

    def _start(self) -> subprocess.Popen[str]:
        env = {**os.environ, "WORKER_APP_DELAY": str(self.delay)}
        cmd = [sys.executable, "-m", "flock", "worker", "worker_app:flock", "--store", self.dsn]
        cmd += ["--lease", str(self.lease), "--poll", "0.5", "--concurrency", "8"]
        return subprocess.Popen(
            cmd, cwd=HERE, env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True
        )

    def kill_one(self, rng: random.Random) -> None:
        i = rng.randrange(len(self.procs))
        self.router_kills += self.procs[i].pid in routers(self.dsn)
        self.procs[i].send_signal(signal.SIGKILL)
        self.procs[i].communicate()
        self.kills += 1
        self.procs[i] = self._start()

    def stop(self) -> list[int]:
        for proc in self.procs:
            assert proc.stdout is not None
            proc.stdout.readline()  # its banner: it stops gracefully on SIGTERM from now on
            proc.send_signal(signal.SIGTERM)
        for proc in self.procs:
            proc.communicate(timeout=60)
        return [proc.returncode for proc in self.procs]


def routers(dsn: str) -> list[int]:
    """Process ids of the board's router (its lock connection's application name)."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        rows = conn.execute(
            "SELECT a.application_name FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid "
            "WHERE l.locktype = 'advisory' AND l.granted AND a.application_name LIKE 'flock-router:%'"
        ).fetchall()
    return [int(name.split(":")[1]) for (name,) in rows]


def publish(dsn: str, tasks: range) -> None:
    code = (
        "import anyio, sys, worker_app\n"
        "from flock import PostgresStore\n"
        "async def main():\n"
        f"    b = worker_app.build(PostgresStore({dsn!r}))\n"
        f"    for i in range({tasks.start}, {tasks.stop}):\n"
        "        await b.publish(worker_app.task(i))\n"
        "    await b.store.close()\n"
        "anyio.run(main)\n"
    )
    subprocess.run([sys.executable, "-c", code], cwd=HERE, check=True, timeout=120)


def progress(dsn: str, tasks: range) -> tuple[int, int, int, int, int]:
    """(Results of ``tasks``, their tally consumptions, rows queued, activations in flight, Pairs)."""
    wfs = [f"wf-{i}" for i in tasks]
    with psycopg.connect(dsn, autocommit=True) as conn:
        row = conn.execute(
            "SELECT (SELECT COUNT(*) FROM flock.artifacts WHERE type = 'workers.Result' "
            "AND correlation_id = ANY(%s)), (SELECT COUNT(*) FROM flock.consumptions c JOIN "
            "flock.artifacts a ON a.id = c.artifact_id "
            "WHERE c.agent = 'tally' AND a.correlation_id = ANY(%s)), "
            "(SELECT COUNT(*) FROM flock.work WHERE NOT done), "
            "(SELECT COUNT(*) FROM flock.activations WHERE status <> 'done'), "
            "(SELECT COUNT(*) FROM flock.artifacts WHERE type = 'workers.Pair' AND correlation_id = ANY(%s))",
            (wfs, wfs, wfs),
        ).fetchone()
    assert row is not None
    return row[0], row[1], row[2], row[3], row[4]


def round_of_kills(fleet: Fleet, tasks: range, rng: random.Random, *, kills: int = 2) -> dict[str, Any]:
    """Publish ``tasks``, kill ``kills`` random workers at random moments, wait, check."""
    publish(fleet.dsn, tasks)
    moments = sorted(rng.uniform(0.0, 0.6) for _ in range(kills))
    started = time.monotonic()
    for moment in moments:
        time.sleep(max(0.0, moment - (time.monotonic() - started)))
        fleet.kill_one(rng)
    deadline = time.monotonic() + 30
    done = (2 * len(tasks), 2 * len(tasks), 0, 0, len(tasks))
    while (now := progress(fleet.dsn, tasks)) != done:
        if time.monotonic() > deadline:
            with psycopg.connect(fleet.dsn, autocommit=True) as conn:
                stale = conn.execute(
                    "SELECT agent, status, input_ids, EXISTS (SELECT 1 FROM flock.consumptions c "
                    "WHERE c.artifact_id = a.input_ids[1] AND c.agent = a.agent) "
                    "FROM flock.activations a WHERE status <> 'done'"
                ).fetchall()
            return {"problems": [f"not finished 30 s after the last kill: {now}, want {done}; {stale}"]}
        time.sleep(0.05)
    return {"problems": anyio.run(check, fleet.dsn, tasks)}


async def reference(tasks: range) -> set[tuple[Any, ...]]:
    flock = worker_app.build(InMemoryStore())
    for i in tasks:
        await flock.publish(worker_app.task(i))
    await flock.run_until_idle()
    return _signature(await flock.store.list())


def _signature(arts: list[Artifact]) -> set[tuple[Any, ...]]:
    # A gate's inputs come in the order they arrived (which Result of a task was solved first), and
    # its activation's id (so its output's) follows that order: compare the set, not the order.
    return {
        (
            None if a.type == "workers.Pair" else a.id,
            a.type,
            repr(sorted(a.payload.items())),
            a.produced_by,
            tuple(sorted(a.consumed_from)),
        )
        for a in arts
    }


async def check(dsn: str, tasks: range) -> list[str]:
    from flock import PostgresStore

    wfs = {f"wf-{i}" for i in tasks}
    async with PostgresStore(dsn) as store:
        arts = [a for a in await store.list() if a.correlation_id in wfs]
        consumed = await store.consumptions()
        in_flight = await store.in_flight()
        queued = (await store.stats())["queued"]
    problems: list[str] = []
    ids = {a.id for a in arts}
    lost = {worker_app.task(i).id for i in tasks} - ids
    if lost:
        problems.append(f"{len(lost)} published tasks lost")
    outputs = Counter((a.produced_by, a.consumed_from) for a in arts if a.type != "workers.Task")
    problems += [
        f"duplicated: {agent} made {count} outputs from {inputs}"
        for (agent, inputs), count in outputs.items()
        if count > worker_app.OUTPUTS[agent]
    ]
    mine = {(i, agent) for i, agent, _ in consumed if i in ids}
    made = {(i, a.produced_by) for a in arts for i in a.consumed_from}
    problems += [f"torn: {a.produced_by}'s output {a.id} without consumption" for a in arts
                 for i in a.consumed_from if (i, a.produced_by) not in mine]  # fmt: skip
    problems += [f"torn: {agent} consumed {i} with nothing made" for i, agent in mine
                 if agent != "tally" and (i, agent) not in made]  # fmt: skip
    results = {a.id for a in arts if a.type == "workers.Result"}
    for agent in ("tally", "pair"):
        took = Counter(i for i, a, _ in consumed if a == agent and i in ids)
        if set(took) != results or any(c != 1 for c in took.values()):
            problems.append(f"{agent} consumption records: {len(results - set(took))} results without one")
    if in_flight or queued:
        problems.append(f"{len(in_flight)} activations in flight and {queued} queued after the batch")
    if _signature(arts) != await reference(tasks):
        problems.append("the board differs from an uninterrupted run")
    return problems
