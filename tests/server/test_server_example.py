"""examples/16_serve.py runs in a fresh interpreter and shows what it claims."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "16_serve.py"


def test_the_serving_example_tours_the_api(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, str(EXAMPLE)], cwd=tmp_path, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0] == "published Ticket once: same id on retry = True"
    assert lines[1:5] == [
        "event: artifact Ticket",
        "event: triage-acme started",
        "event: triage-acme finished",
        "event: artifact Triaged",
    ]
    assert "acme sees 1 Triaged: {'title': 'VPN down', 'team': 'network', 'urgent': True}" in lines
    assert "globex asks for acme's ticket: 404" in lines
    assert "no key: 401" in lines
    assert "an empty title: 422 ['body', 'payload', 'title']" in lines
