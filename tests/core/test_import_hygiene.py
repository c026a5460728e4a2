"""`import flock` has no side effects: no output, no .env, no DSPy/LiteLLM/exporters, no logging setup."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

MARKER = "FLOCK_HYGIENE_MARKER"

PROBE = """
import json, logging, sys, time
before = set(sys.modules)
t0 = time.perf_counter()
import flock
seconds = time.perf_counter() - t0
new = sorted(set(sys.modules) - before)
roots = ("dspy", "litellm", "fastapi", "starlette", "uvicorn", "psycopg", "psycopg_pool")  # on use
heavy = [m for m in new if m.split(".")[0] in roots or m.startswith("opentelemetry.exporter")]
import os
sys.stdout.write(json.dumps({
    "seconds": seconds,
    "heavy": heavy,
    "marker": os.environ.get(%(marker)r),
    "root_handlers": len(logging.getLogger().handlers),
    "flock_handlers": [type(h).__name__ for h in logging.getLogger("flock").handlers],
}))
"""


def run_python(code: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != MARKER and not k.startswith("PYTEST")}
    return subprocess.run(
        [sys.executable, "-c", code], cwd=cwd, env=env, capture_output=True, text=True, timeout=60
    )


@pytest.fixture
def dotenv_dir(tmp_path: Path) -> Path:
    (tmp_path / ".env").write_text(f"{MARKER}=leaked\nFLOCK_MODEL=from-dotenv\n")
    return tmp_path


def test_import_prints_nothing(dotenv_dir: Path) -> None:
    result = run_python("import flock", dotenv_dir)
    assert result.returncode == 0, result.stderr
    assert result.stdout == ""
    assert result.stderr == ""


def test_import_is_side_effect_free(dotenv_dir: Path, record_property) -> None:
    result = run_python(PROBE % {"marker": MARKER}, dotenv_dir)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    record_property("import_flock_seconds", round(report["seconds"], 3))
    assert report["heavy"] == []  # no dspy, litellm, server stack or OpenTelemetry exporters
    assert report["marker"] is None  # .env in the working directory was not read
    assert report["root_handlers"] == 0  # no logging configuration
    assert report["flock_handlers"] in ([], ["NullHandler"])


def test_dotenv_does_not_choose_the_model(dotenv_dir: Path) -> None:
    code = "import flock; print(flock.Flock().model)"
    env_free = run_python(code, dotenv_dir)
    assert env_free.returncode == 0, env_free.stderr
    assert env_free.stdout.strip() != "from-dotenv"
