"""``examples/18_mcp.py`` runs offline and shows both directions of MCP."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def test_the_mcp_example_uses_a_servers_tool_and_serves_the_flock(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, str(EXAMPLES / "18_mcp.py")],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert done.returncode == 0, done.stderr
    assert "1. packer -> PackingList (1 published, 0 errors)" in done.stdout
    assert "weather server: forecast(" in done.stderr  # the agent's ReAct loop called the MCP tool
    assert "alerts(" not in done.stderr  # allow=["forecast"] hid the other tool
    assert "2. flock mcp offers: publish, query, invoke, list_agents, list_types" in done.stdout
    assert "downstream: ['packer -> PackingList']" in done.stdout
    assert (
        "an invalid Trip is a tool error: invalid Trip payload: city: String should have at least 1"
        in done.stdout
    )
    assert "the served board holds 1 PackingList" in done.stdout
