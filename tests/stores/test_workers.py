"""Workers sharing one board on a real PostgreSQL server, as separate processes.

``flock worker worker_app:flock --store DSN`` processes and a publishing ``Flock(store=PostgresStore)``
process work on one board: every activation runs once in total, SIGTERM stops a worker cleanly, and
publishing from another process wakes idle workers.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest

psycopg = pytest.importorskip("psycopg", reason="psycopg is not installed: pip install 'flock[postgres]'")

HERE = Path(__file__).resolve().parent


def start_worker(
    dsn: str, log: Path, *extra: str, delay: float = 0.02, app: str = "worker_app:flock"
) -> subprocess.Popen[str]:
    env = {**os.environ, "FLOCK_RUN_LOG": str(log), "WORKER_APP_DELAY": str(delay)}
    return subprocess.Popen(
        [sys.executable, "-m", "flock", "worker", app, "--store", dsn, "--poll", "1", *extra],
        cwd=HERE,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def publish(dsn: str, n: int, log: Path) -> None:
    env = {**os.environ, "FLOCK_RUN_LOG": str(log), "WORKER_APP_DELAY": "0.02"}
    done = subprocess.run(
        [sys.executable, "worker_app.py", "publish", dsn, str(n)],
        cwd=HERE,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0 and "DONE" in done.stdout, done.stderr


def board(dsn: str) -> tuple[int, int, int, int]:
    """(Results on the board, tally consumptions, rows still queued, Pairs from the gate)."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        results = conn.execute("SELECT COUNT(*) FROM flock.artifacts WHERE type = 'workers.Result'")
        tallied = conn.execute("SELECT COUNT(*) FROM flock.consumptions WHERE agent = 'tally'")
        queued = conn.execute("SELECT COUNT(*) FROM flock.work WHERE NOT done")
        pairs = conn.execute("SELECT COUNT(*) FROM flock.artifacts WHERE type = 'workers.Pair'")
        return (
            results.fetchone()[0],  # type: ignore[index]
            tallied.fetchone()[0],  # type: ignore[index]
            queued.fetchone()[0],  # type: ignore[index]
            pairs.fetchone()[0],  # type: ignore[index]
        )


def wait_for(dsn: str, n: int, timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if board(dsn) == (2 * n, 2 * n, 0, n):
                return
        except psycopg.errors.UndefinedTable:
            pass
        time.sleep(0.1)
    raise AssertionError(f"the board never completed: {board(dsn)}")


def runs(log: Path) -> list[tuple[str, str, int]]:
    if not log.exists():
        return []
    return [(a, key, int(pid)) for a, key, pid in (line.split() for line in log.read_text().splitlines())]


def stop(proc: subprocess.Popen[str]) -> tuple[int, str, str]:
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=60)
    return proc.returncode, out, err


def test_two_workers_and_a_publisher_run_each_activation_once_in_total(
    postgres_dsn: str, tmp_path: Path
) -> None:
    log, n = tmp_path / "runs.log", 40
    workers = [start_worker(postgres_dsn, log, "--concurrency", "4") for _ in range(2)]
    try:
        publish(postgres_dsn, n, log)  # a third process: publishes, then works along until idle
        wait_for(postgres_dsn, n)
    finally:
        stopped = [stop(w) for w in workers]
    for code, out, err in stopped:
        assert code == 0, err
        assert "stopped after" in out
    seen = runs(log)
    counts = Counter((agent, key) for agent, key, _ in seen)
    from worker_app import expected_runs

    want = {(agent, key) for agent, keys in expected_runs(n).items() for key in keys}
    assert set(counts) == want
    assert [k for k, c in counts.items() if c != 1] == []  # each activation ran once in total
    assert len({pid for _, _, pid in seen}) >= 2  # the work really was shared


def test_publishing_from_another_process_wakes_an_idle_worker(postgres_dsn: str, tmp_path: Path) -> None:
    log = tmp_path / "runs.log"
    worker = start_worker(postgres_dsn, log, "--poll", "60")  # no poll in time: only NOTIFY can wake it
    try:
        time.sleep(2)  # idle, listening
        env = {**os.environ, "FLOCK_RUN_LOG": str(log)}
        code = (
            "import anyio, worker_app\n"
            "from flock import PostgresStore\n"
            "async def main():\n"
            f"    b = worker_app.build(PostgresStore({postgres_dsn!r}))\n"
            "    await b.publish(worker_app.task(7))\n"
            "    await b.store.close()\n"
            "anyio.run(main)\n"
        )
        subprocess.run([sys.executable, "-c", code], cwd=HERE, env=env, check=True, timeout=60)
        t0 = time.monotonic()
        while time.monotonic() - t0 < 20 and board(postgres_dsn)[0] < 2:
            time.sleep(0.05)
        assert board(postgres_dsn)[0] == 2
    finally:
        code_, _, err = stop(worker)
    assert code_ == 0, err
    assert {pid for agent, _, pid in runs(log) if agent == "split"} == {worker.pid}


def test_sigterm_lets_running_work_finish(postgres_dsn: str, tmp_path: Path) -> None:
    log = tmp_path / "runs.log"
    worker = start_worker(postgres_dsn, log, "--concurrency", "2", delay=2)
    try:
        env = {**os.environ, "FLOCK_RUN_LOG": str(log)}
        code = (
            "import anyio, worker_app\n"
            "from flock import PostgresStore\n"
            "async def main():\n"
            f"    b = worker_app.build(PostgresStore({postgres_dsn!r}))\n"
            "    await b.publish(worker_app.task(1))\n"
            "    await b.store.close()\n"
            "anyio.run(main)\n"
        )
        subprocess.run([sys.executable, "-c", code], cwd=HERE, env=env, check=True, timeout=60)
        t0 = time.monotonic()
        while time.monotonic() - t0 < 20 and not any(a == "solve" for a, _, _ in runs(log)):
            time.sleep(0.05)
    finally:
        code_, _, err = stop(worker)  # while both solve activations sleep
    assert code_ == 0, err
    results, tallied, queued, _ = board(postgres_dsn)
    assert (results, tallied) == (2, 0)  # solved (committed); the tally work waits for a worker
    assert queued >= 2


def publish_stateful(dsn: str, tasks: range) -> None:
    code = (
        "import anyio, stateful_app\n"
        "from flock import PostgresStore\n"
        "async def main():\n"
        f"    b = stateful_app.build(PostgresStore({dsn!r}))\n"
        f"    for i in range({tasks.start}, {tasks.stop}):\n"
        "        for a in stateful_app.task(i):\n"
        "            await b.publish(a)\n"
        "    await b.store.close()\n"
        "anyio.run(main)\n"
    )
    subprocess.run([sys.executable, "-c", code], cwd=HERE, check=True, timeout=120)


def stateful_board(dsn: str) -> dict[str, list[object]]:
    """Per output type, the payload keys on the board; and the consumption counts per input."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        rows = conn.execute(
            "SELECT type, body::json->'payload' FROM flock.artifacts WHERE type IN "
            "('stateful.Pair', 'stateful.Match', 'stateful.Bundle')"
        ).fetchall()
        consumed = conn.execute(
            "SELECT agent, COUNT(*), COUNT(DISTINCT artifact_id) FROM flock.consumptions GROUP BY agent"
        ).fetchall()
        queued = conn.execute("SELECT COUNT(*) FROM flock.work WHERE NOT done").fetchone()
    out: dict[str, list[object]] = {
        "pair": [],
        "match": [],
        "bundle": [],
        "queued": [queued[0] if queued else 0],
    }
    for kind, payload in rows:
        name = kind.split(".")[1].lower()
        out[name].append(payload["n"] if name != "bundle" else tuple(payload["ns"]))
    out["consumed"] = sorted(consumed)
    return out


def wait_stateful(dsn: str, n: int, timeout: float = 90) -> dict[str, list[object]]:
    deadline = time.monotonic() + timeout
    now: dict[str, list[object]] = {}
    while time.monotonic() < deadline:
        try:
            now = stateful_board(dsn)
        except psycopg.errors.UndefinedTable:
            time.sleep(0.1)
            continue
        members = sum(len(b) for b in now["bundle"])  # type: ignore[arg-type]
        if (len(now["pair"]), len(now["match"]), members, now["queued"]) == (n, n, n, [0]):
            time.sleep(0.5)  # a duplicate would show up now
            return stateful_board(dsn)
        time.sleep(0.1)
    raise AssertionError(f"the board never completed: {now}")


def assert_each_group_once(board: dict[str, list[object]], n: int) -> None:
    assert sorted(board["pair"]) == list(range(n))  # type: ignore[type-var]
    assert sorted(board["match"]) == list(range(n))  # type: ignore[type-var]
    # each Left in exactly one batch (a worker's idle run delivers a partial batch, as a Flock does)
    members = sorted(m for b in board["bundle"] for m in b)  # type: ignore[attr-defined]
    assert members == list(range(n))
    # every input consumed once by each agent (pair and match: a Left and a Right per task)
    assert board["consumed"] == [("bundle", n, n), ("match", 2 * n, 2 * n), ("pair", 2 * n, 2 * n)]


def routers(dsn: str) -> list[int]:
    """The process ids of the board's router (from its lock connection's application name)."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        rows = conn.execute(
            "SELECT a.application_name FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid "
            "WHERE l.locktype = 'advisory' AND l.granted AND a.application_name LIKE 'flock-router:%'"
        ).fetchall()
    return [int(name.split(":")[1]) for (name,) in rows]


def test_gates_joins_and_batches_fire_once_for_each_group_across_workers(
    postgres_dsn: str, tmp_path: Path
) -> None:
    log, n = tmp_path / "runs.log", 24
    workers = [
        start_worker(postgres_dsn, log, "--concurrency", "4", app="stateful_app:flock") for _ in range(2)
    ]
    try:
        publish_stateful(postgres_dsn, range(n))
        board_now = wait_stateful(postgres_dsn, n)
        (router,) = routers(postgres_dsn)  # one router for the board, and `flock store` names it
        assert router in {w.pid for w in workers}
        shown = subprocess.run(
            [sys.executable, "-m", "flock", "store", postgres_dsn],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert f"router {socket.gethostname()}:{router})" in shown.stdout, shown.stderr
    finally:
        stopped = [stop(w) for w in workers]
    for code, _, err in stopped:
        assert code == 0, err
    assert_each_group_once(board_now, n)
    counts = Counter((agent, key) for agent, key, _ in runs(log))
    assert [k for k, c in counts.items() if c != 1] == []  # no worker died: each group ran once
    assert len({pid for _, _, pid in runs(log)}) == 2  # and the work was shared


def test_the_router_routes_new_artifacts_when_notified_without_waiting_for_the_poll(
    postgres_dsn: str, tmp_path: Path
) -> None:
    # A poll of 10 minutes never comes during the test: the gates, joins and batches fire only
    # because the board's notifications tell the router that there are new artifacts to route.
    log, n = tmp_path / "runs.log", 6
    worker = start_worker(postgres_dsn, log, "--poll", "600", app="stateful_app:flock")
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if routers(postgres_dsn) == [worker.pid]:
                    break
            except psycopg.errors.UndefinedTable:
                pass
            time.sleep(0.1)
        assert routers(postgres_dsn) == [worker.pid]
        publish_stateful(postgres_dsn, range(n))
        board_now = wait_stateful(postgres_dsn, n)
    finally:
        code, _, err = stop(worker)
    assert code == 0, err
    assert_each_group_once(board_now, n)


def test_a_killed_router_is_replaced_and_no_group_is_lost_or_doubled(
    postgres_dsn: str, tmp_path: Path
) -> None:
    log, n = tmp_path / "runs.log", 32
    workers = [
        start_worker(
            postgres_dsn, log, "--concurrency", "4", "--lease", "2", delay=0.1, app="stateful_app:flock"
        )
        for _ in range(3)
    ]
    try:
        publish_stateful(postgres_dsn, range(n // 2))
        deadline = time.monotonic() + 30
        while not (leader := routers(postgres_dsn)) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert len(leader) == 1
        victim = next(w for w in workers if w.pid == leader[0])
        publish_stateful(postgres_dsn, range(n // 2, n))
        victim.send_signal(signal.SIGKILL)  # mid-run: it holds groups half collected
        victim.communicate()
        board_now = wait_stateful(postgres_dsn, n)
        deadline = time.monotonic() + 30  # another worker takes over at its next poll
        while routers(postgres_dsn) in ([], leader) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert routers(postgres_dsn) not in ([], leader)
    finally:
        stopped = [stop(w) for w in workers if w.returncode is None]
    for code, _, err in stopped:
        assert code == 0, err
    assert_each_group_once(board_now, n)


def test_an_artifact_stored_by_a_process_that_died_before_routing_it_is_routed(
    postgres_dsn: str, tmp_path: Path
) -> None:
    log = tmp_path / "runs.log"
    worker = start_worker(postgres_dsn, log, "--poll", "0.5")
    try:
        assert worker.stdout is not None
        worker.stdout.readline()  # started: its resume() is behind it
        code = (
            "import anyio, worker_app\n"
            "from flock import PostgresStore\n"
            "async def main():\n"
            f"    async with PostgresStore({postgres_dsn!r}) as s:\n"
            "        await s.put(worker_app.task(5))  # stored, never routed: as if it died here\n"
            "anyio.run(main)\n"
        )
        subprocess.run([sys.executable, "-c", code], cwd=HERE, check=True, timeout=60)
        wait_for(postgres_dsn, 1, timeout=30)  # the board's router found it and queued its work
    finally:
        code_, _, err = stop(worker)
    assert code_ == 0, err
    assert sorted(key for agent, key, _ in runs(log) if agent == "solve") == ["5/0", "5/1"]


LOOPY = """
from pydantic import BaseModel
from flock import Flock, flock_type

@flock_type(name="loopy.Ping")
class Ping(BaseModel):
    n: int

@flock_type(name="loopy.Pong")
class Pong(BaseModel):
    n: int

def build(store=None):
    flock = Flock(store=store, max_agent_iterations=4) if store is not None else Flock(max_agent_iterations=4)
    flock.agent("pong").consumes(Ping).publishes(Pong).calls(lambda p: Pong(n=p.n + 1))
    flock.agent("ping").consumes(Pong).publishes(Ping).calls(lambda p: Ping(n=p.n + 1))
    return flock

flock = build()
"""


KINDS = "SELECT type, produced_by, body::json->'payload'->>'kind' FROM flock.artifacts ORDER BY seq"


def test_the_loop_guard_stops_a_loop_once_across_workers(postgres_dsn: str, tmp_path: Path) -> None:
    (tmp_path / "loopy.py").write_text(LOOPY)
    cmd = [sys.executable, "-m", "flock", "worker", "loopy:flock", "--store", postgres_dsn, "--poll", "1"]
    workers = [
        subprocess.Popen(cmd, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for _ in range(2)
    ]
    code = (
        "import anyio, loopy\n"
        "from flock import PostgresStore\n"
        "async def main():\n"
        f"    async with PostgresStore({postgres_dsn!r}) as s:\n"
        "        await loopy.build(s).publish(loopy.Ping(n=0))\n"
        "anyio.run(main)\n"
    )
    try:
        subprocess.run([sys.executable, "-c", code], cwd=tmp_path, check=True, timeout=60)
        deadline, kinds = time.monotonic() + 60, []
        while time.monotonic() < deadline:
            with psycopg.connect(postgres_dsn, autocommit=True) as conn:
                kinds = conn.execute(KINDS).fetchall()
                queued = conn.execute("SELECT COUNT(*) FROM flock.work WHERE NOT done").fetchone()
            if any(k == "loop_guard" for _, _, k in kinds) and queued == (0,):
                break
            time.sleep(0.1)
        time.sleep(1)  # a second refusal or a fifth turn would show up now
        with psycopg.connect(postgres_dsn, autocommit=True) as conn:
            kinds = conn.execute(KINDS).fetchall()
    finally:
        stopped = [stop(w) for w in workers]
    assert [c for c, _, _ in stopped] == [0, 0]
    made = Counter((t, p) for t, p, _ in kinds)
    # pong and ping act 4 times each in the chain; pong's fifth turn is refused, once
    assert made == {
        ("loopy.Ping", "external"): 1,
        ("loopy.Pong", "pong"): 4,
        ("loopy.Ping", "ping"): 4,
        ("flock.WorkflowError", "pong"): 1,
    }, made
    assert [k for _, _, k in kinds if k] == ["loop_guard"]


def test_the_workers_example_shares_twenty_summaries_between_two_workers(postgres_dsn: str) -> None:
    example = HERE.parent.parent / "examples" / "13_workers.py"
    done = subprocess.run(
        [sys.executable, str(example), postgres_dsn], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert "20 summaries, each made once, by" in done.stdout
    assert "every summary in exactly one: True" in done.stdout
    assert "workers stopped with exit codes [0, 0]" in done.stdout
