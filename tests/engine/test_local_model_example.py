"""examples/12_local_model.py against a local OpenAI-compatible server (the loopback fake here)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from openai_server import OpenAIServer

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "12_local_model.py"


def run(url: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "LOCAL_MODEL_URL": url, "LOCAL_MODEL": "openai/smollm2", "PYTHONIOENCODING": "utf-8"}
    return subprocess.run(
        [sys.executable, str(EXAMPLE)], capture_output=True, text=True, env=env, timeout=120
    )


def test_the_example_gets_three_pitches_through_the_llama_cpp_schema_form() -> None:
    with OpenAIServer() as server:
        server.refuse_formats = {"json_schema": 500}  # what llama-cpp-python's server does
        done = run(server.base_url)
        kinds = [(r.get("response_format") or {}).get("type") for r in server.requests]
    assert done.returncode == 0, done.stderr
    assert "3 pitches from openai/smollm2" in done.stdout
    assert "structured outputs: json_object" in done.stdout
    assert kinds[-1] == "json_object" and "json_schema" in kinds


def test_without_a_server_the_example_says_how_to_start_one() -> None:
    done = run("http://127.0.0.1:9/v1")  # the discard port: nothing listens there
    assert done.returncode == 0, done.stderr
    assert "No model server answers at http://127.0.0.1:9/v1" in done.stdout
    assert "python3 scripts/real_model.py serve" in done.stdout
