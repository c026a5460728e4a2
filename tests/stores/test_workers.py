"""Workers sharing one board on a real PostgreSQL server, as separate processes.

``flock worker worker_app:flock --store DSN`` processes and a publishing ``Flock(store=PostgresStore)``
process work on one board: every activation runs once in total, SIGTERM stops a worker cleanly, and
publishing from another process wakes idle workers.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest

psycopg = pytest.importorskip("psycopg", reason="psycopg is not installed: pip install 'flock[postgres]'")

HERE = Path(__file__).resolve().parent


def start_worker(dsn: str, log: Path, *extra: str, delay: float = 0.02) -> subprocess.Popen[str]:
    env = {**os.environ, "FLOCK_RUN_LOG": str(log), "WORKER_APP_DELAY": str(delay)}
    return subprocess.Popen(
        [sys.executable, "-m", "flock", "worker", "worker_app:flock", "--store", dsn, "--poll", "1", *extra],
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


def board(dsn: str) -> tuple[int, int, int]:
    """(Results on the board, tally consumptions, rows still queued)."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        results = conn.execute("SELECT COUNT(*) FROM flock.artifacts WHERE type = 'workers.Result'")
        tallied = conn.execute("SELECT COUNT(*) FROM flock.consumptions WHERE agent = 'tally'")
        queued = conn.execute("SELECT COUNT(*) FROM flock.work WHERE NOT done")
        return results.fetchone()[0], tallied.fetchone()[0], queued.fetchone()[0]  # type: ignore[index]


def wait_for(dsn: str, n: int, timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if board(dsn) == (2 * n, 2 * n, 0):
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
    assert board(postgres_dsn) == (2, 0, 2)  # solved (committed); the tally work waits for a worker


def test_a_declaration_that_cannot_be_shared_is_refused(postgres_dsn: str, tmp_path: Path) -> None:
    app = tmp_path / "joined.py"
    app.write_text(
        "from pydantic import BaseModel\n"
        "from flock import Flock, flock_type\n"
        "@flock_type(name='joined.A')\nclass A(BaseModel):\n    x: int\n"
        "@flock_type(name='joined.B')\nclass B(BaseModel):\n    x: int\n"
        "flock = Flock()\n"
        "flock.agent('both').consumes(A, B).calls(lambda a, b: None)\n"
    )
    done = subprocess.run(
        [sys.executable, "-m", "flock", "worker", "joined:flock", "--store", postgres_dsn],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 1
    assert "gate subscription" in done.stderr and "cannot be shared" in done.stderr


def test_the_workers_example_shares_twenty_summaries_between_two_workers(postgres_dsn: str) -> None:
    example = HERE.parent.parent / "examples" / "13_workers.py"
    done = subprocess.run(
        [sys.executable, str(example), postgres_dsn], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert "20 summaries, each made once, by" in done.stdout
    assert "workers stopped with exit codes [0, 0]" in done.stdout
