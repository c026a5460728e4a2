"""Kill -9 random workers of four sharing a board, in a few rounds; nothing is lost, duplicated or
torn (see ``worker_crash``; ``benchmarks/bench_workers.py --crash`` runs hundreds of rounds)."""

from __future__ import annotations

import random

import pytest

pytest.importorskip("psycopg", reason="psycopg is not installed: pip install 'flock[postgres]'")


def test_killed_workers_lose_nothing_and_duplicate_nothing(postgres_dsn: str) -> None:
    from worker_crash import Fleet, round_of_kills

    fleet = Fleet(postgres_dsn, 4)
    try:
        outcomes = [
            round_of_kills(fleet, range(r * 20, (r + 1) * 20), random.Random(20261205 + r)) for r in range(3)
        ]
    finally:
        codes = fleet.stop()
    assert [o["problems"] for o in outcomes] == [[], [], []]
    assert fleet.kills == 6
    assert codes == [0, 0, 0, 0]  # the survivors (and the restarted ones) stop cleanly on SIGTERM


def test_workers_reconnect_after_a_postgres_restart_and_finish(postgres_server: object) -> None:
    import time

    import anyio
    from worker_crash import Fleet, check, progress, publish

    dsn = postgres_server.create_database()  # type: ignore[attr-defined]
    fleet = Fleet(dsn, 2, delay=0.3)
    try:
        publish(dsn, range(30))
        time.sleep(0.1)
        postgres_server.down("fast")  # type: ignore[attr-defined]  # mid-run: commits and claims fail
        time.sleep(1)
        postgres_server.up()  # type: ignore[attr-defined]
        deadline = time.monotonic() + 60
        while progress(dsn, range(30)) != (60, 60, 0, 0, 30) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert anyio.run(check, dsn, range(30)) == []
    finally:
        codes = fleet.stop()
    assert codes == [0, 0]
