"""The variables example runs in a fresh interpreter and shows what it claims."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def test_the_variables_example_switches_prompts_and_groups_outputs_by_version(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, str(EXAMPLES / "15_variables.py")],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    out = done.stdout
    assert "arm A: 3 pitches" in out and "arm B: 3 pitches" in out
    assert "refused: variable 'creativity' = 5.0 is refused: it sets temperature=" in out
    counts = sorted(int(n) for n in re.findall(r"prompt [0-9a-f]{12}: (\d+) pitches", out))
    assert counts == [3, 4]  # arm A alone; arm B plus the chain-of-thought pitch (same prompt)
