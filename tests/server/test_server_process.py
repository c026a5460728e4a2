"""``flock serve module:flock`` as a real process: keys from FLOCK_API_KEYS, a clean stop on SIGTERM,
and idempotency keys that outlive a restart on a durable board."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import httpx
from server_support import free_port, wait_until_up

HERE = Path(__file__).parent
KEYS = {"process-key-1": {"tenant": "a", "scopes": ["publish", "read"]}}


def start(db: Path, port: int) -> subprocess.Popen[bytes]:
    env = {**os.environ, "FLOCK_API_KEYS": json.dumps(KEYS), "FLOCK_TEST_DB": str(db)}
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "flock",
            "serve",
            "server_app:flock",
            "--port",
            str(port),
            "--log-level",
            "warning",
        ],
        cwd=HERE,
        env=env,
    )


def stop(process: subprocess.Popen[bytes]) -> int:
    process.send_signal(signal.SIGTERM)
    return process.wait(timeout=20)


def test_a_served_process_dedups_idempotency_keys_across_a_restart(tmp_path):
    db = tmp_path / "board.db"
    body = {"type": "Ticket", "payload": {"title": "once"}, "idempotency_key": "order-42"}
    headers = {"Authorization": "Bearer process-key-1"}
    ids = []
    for _ in range(2):
        port = free_port()
        process = start(db, port)
        try:
            url = f"http://127.0.0.1:{port}"
            wait_until_up(url, "process-key-1")
            response = httpx.post(f"{url}/artifacts", json=body, headers=headers)
            assert response.status_code == 201
            ids.append(response.json()["id"])
            assert (
                httpx.get(f"{url}/artifacts", params={"type": "Ticket"}, headers=headers).json()["total"] == 1
            )
            assert (
                httpx.get(f"{url}/artifacts", headers={"Authorization": "Bearer nope-nope"}).status_code
                == 401
            )
        finally:
            assert stop(process) == 0
    assert ids[0] == ids[1]


def test_serve_without_keys_exits_with_an_error(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "FLOCK_API_KEYS"}
    done = subprocess.run(
        [sys.executable, "-m", "flock", "serve", "server_app:flock"],
        cwd=HERE,
        env=env,
        capture_output=True,
        text=True,
    )
    assert done.returncode == 1
    assert "FLOCK_API_KEYS" in done.stderr
