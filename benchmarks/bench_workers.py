"""Workers on one PostgreSQL board: throughput scaling, store overhead, claim+commit rate, crashes.

Starts its own PostgreSQL server (Debian's binaries, as the tests do) and ``flock worker`` processes
running ``tests/stores/worker_app.py``'s one-agent ``bench`` flock (Job -> Answer; the agent sleeps
``--latency`` seconds, standing in for a model call). Jobs are published first with no worker
running; then the workers start, and the rate is measured between the first and the last Answer's
``created_at`` (worker start-up is not counted). Prints one JSON document.

    .venv/bin/python benchmarks/bench_workers.py                    # scaling + overhead + rate
    .venv/bin/python benchmarks/bench_workers.py --crash 100        # also 100 rounds of kill -9
    .venv/bin/python benchmarks/bench_workers.py --crash 100 --workers ''   # only the kill rounds

A kill round publishes 10 tasks (split → 2 solves → tally, and the ``pair`` count gate that the
board's router decides) and kill -9s one random worker at a random moment; whether it was the
router is counted (``router_kills``).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
APP = ROOT / "tests" / "stores"
sys.path[:0] = [str(ROOT), str(APP)]

import psycopg  # noqa: E402

from tests.postgres_server import PostgresServer  # noqa: E402


def publish_jobs(dsn: str, n: int) -> float:
    """Publish ``n`` Jobs (routing queues one activation each) without running them; returns s."""
    code = (
        "import anyio, time, worker_app\n"
        "from flock import Artifact, PostgresStore\n"
        "async def main():\n"
        f"    b = worker_app.build_bench(PostgresStore({dsn!r}))\n"
        "    t = time.perf_counter()\n"
        f"    for i in range({n}):\n"
        "        await b.publish(worker_app.Job(n=i))\n"
        "    print(time.perf_counter() - t)\n"
        "    await b.store.close()\n"
        "anyio.run(main)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], cwd=APP, capture_output=True, text=True, check=True)
    return float(done.stdout.strip().splitlines()[-1])


def _cpu_s(pid: int) -> float:
    """User + system CPU seconds of a process so far (0 when it is gone or not on Linux)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _server_cpu_s(server: PostgresServer) -> float:
    """CPU seconds of the PostgreSQL server: its postmaster and the processes it started."""
    try:
        master = int((server.data / "postmaster.pid").read_text().split()[0])
        pids = [int(p) for p in os.listdir("/proc") if p.isdigit()]
    except (OSError, ValueError):
        return 0.0
    total = 0.0
    for pid in pids:
        try:
            parent = int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        if pid == master or parent == master:
            total += _cpu_s(pid)
    return total


def run_workers(
    server: PostgresServer, dsn: str, n: int, workers: int, latency: float, concurrency: int
) -> dict[str, float]:
    publish_s = publish_jobs(dsn, n)
    env = {**os.environ, "WORKER_APP_DELAY": str(latency)}
    cmd = [sys.executable, "-m", "flock", "worker", "worker_app:bench", "--store", dsn]
    cmd += ["--concurrency", str(concurrency), "--poll", "1"]
    procs = [
        subprocess.Popen(cmd, cwd=APP, env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        for _ in range(workers)
    ]
    cpu: list[tuple[int, float, float]] = []  # (answers, workers' CPU s, server's CPU s)
    try:
        with psycopg.connect(dsn, autocommit=True) as conn:
            while True:
                row = conn.execute(
                    "SELECT COUNT(*), MIN(created_us), MAX(created_us) FROM flock.artifacts "
                    "WHERE type = 'workers.Answer'"
                ).fetchone()
                assert row is not None
                if row[0] and (not cpu or row[0] >= n):  # the first answers, and the last
                    cpu.append((row[0], sum(_cpu_s(p.pid) for p in procs), _server_cpu_s(server)))
                if row[0] >= n:
                    break
                time.sleep(0.05)
            runs = conn.execute("SELECT COUNT(*) FROM flock.consumptions WHERE agent = 'think'").fetchone()
    finally:
        for proc in procs:
            assert proc.stdout is not None
            proc.stdout.readline()
            proc.send_signal(signal.SIGTERM)
        for proc in procs:
            proc.communicate(timeout=60)
    span = (row[2] - row[1]) / 1e6
    (n0, w0, s0), (n1, w1, s1) = cpu[0], cpu[-1]
    done = max(n1 - n0, 1)
    return {
        "workers": workers,
        "activations": n,
        "committed": runs[0] if runs else 0,
        "seconds": round(span, 3),
        "activations_per_s": round(n / span, 1) if span else float("inf"),
        "publish_per_s": round(n / publish_s, 1),
        "cpu_ms_per_activation": {
            "workers": round((w1 - w0) * 1000 / done, 3),
            "postgres": round((s1 - s0) * 1000 / done, 3),
        },
    }


def fresh(server: PostgresServer) -> str:
    return server.create_database()


def crash_rounds(server: PostgresServer, rounds: int, seed: int) -> dict[str, object]:
    from worker_crash import Fleet, round_of_kills

    dsn = fresh(server)
    fleet = Fleet(dsn, 4)
    failures, started = [], time.perf_counter()
    try:
        for r in range(rounds):
            outcome = round_of_kills(
                fleet, range(r * 10, (r + 1) * 10), random.Random(seed * 1_000_003 + r), kills=1
            )
            if outcome["problems"]:
                failures.append({"round": r, **outcome})
    finally:
        codes = fleet.stop()
    return {
        "rounds": rounds,
        "workers": 4,
        "kills": fleet.kills,
        "router_kills": fleet.router_kills,
        "tasks": rounds * 10,
        "activations": rounds * 10 * 6,
        "rounds_with_violations": len(failures),
        "violations": failures[:10],
        "exit_codes_on_sigterm": codes,
        "wall_s": round(time.perf_counter() - started, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--activations", type=int, default=2000)
    parser.add_argument("--latency", type=float, default=0.05, help="seconds each activation waits")
    parser.add_argument("--concurrency", type=int, default=16, help="per worker")
    parser.add_argument("--workers", default="1,2,4")
    parser.add_argument("--crash", type=int, default=0, metavar="ROUNDS", help="kill -9 rounds (4 workers)")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    server = PostgresServer.start()
    report: dict[str, object] = {"cpus": os.cpu_count()}
    try:
        if not args.workers:
            report["crash"] = crash_rounds(server, args.crash, args.seed)
            print(json.dumps(report, indent=2))
            return
        scaling = [
            run_workers(server, fresh(server), args.activations, int(w), args.latency, args.concurrency)
            for w in args.workers.split(",")
        ]
        base = scaling[0]["activations_per_s"]
        for row in scaling:
            row["speedup"] = round(row["activations_per_s"] / base, 2)
        report["load_average"] = os.getloadavg()
        report["latency_bound"] = {"latency_s": args.latency, "concurrency_per_worker": args.concurrency,
                                   "runs": scaling}  # fmt: skip
        one = run_workers(server, fresh(server), args.activations, 1, 0.0, args.concurrency)
        four = run_workers(server, fresh(server), args.activations, 4, 0.0, args.concurrency)
        report["no_llm"] = {
            "one_worker": one,
            "four_workers": four,
            "per_activation_ms_one_worker": round(1000 / one["activations_per_s"], 3),
        }
        if args.crash:
            report["crash"] = crash_rounds(server, args.crash, args.seed)
    finally:
        server.stop()
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
