#!/usr/bin/env python3
"""The project's two commands. Needs only python3 (3.11+) and git.

    python3 scripts/dev.py demo    # run the main example pipeline (offline model, traced, no API key)
    python3 scripts/dev.py check   # the whole quality gate: ruff, mypy, tests, mkdocs --strict

Each command creates the virtual environment ``.venv`` when it is missing and refreshes it when
``pyproject.toml`` changed, so a fresh clone needs nothing else.
"""

from __future__ import annotations

import glob
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
VENV = ROOT / ".venv"
BIN = VENV / ("Scripts" if os.name == "nt" else "bin")
PY = BIN / "python"


def run(*cmd: str | Path, env: dict[str, str] | None = None) -> None:
    print("+", " ".join(str(c) for c in cmd), flush=True)
    result = subprocess.run([str(c) for c in cmd], cwd=ROOT, env=env)
    if result.returncode != 0:
        sys.exit(result.returncode)


def ensure_venv(extras: str) -> None:
    """Create or refresh .venv with the package installed (editable) and ``extras``."""
    stamp = VENV / ".flock-installed"
    want = hashlib.sha256((ROOT / "pyproject.toml").read_bytes() + extras.encode()).hexdigest()
    if stamp.exists() and stamp.read_text() == want and PY.exists():
        return
    if not PY.exists():
        run(sys.executable, "-m", "venv", VENV)
        run(PY, "-m", "pip", "install", "--quiet", "--upgrade", "pip")
    target = f".[{extras}]" if extras else "."
    # setuptools warns on every editable install that a folder named like the package may shadow it
    # (here it is the package): a boxed warning a newcomer cannot act on, so it is not shown.
    quiet = {**os.environ, "PYTHONWARNINGS": "ignore::UserWarning"}
    run(PY, "-m", "pip", "install", "--quiet", "-e", target, env=quiet)
    stamp.write_text(want)


def ensure_chromium() -> None:
    """The trace-page tests render HTML in Debian's chromium: install it when it is missing and we may."""
    apt_install("chromium", present=lambda: bool(shutil.which("chromium")), purpose="the browser tests")


def ensure_postgres() -> None:
    """The PostgreSQL tests start a real server from Debian's binaries: install them when missing."""
    apt_install(
        "postgresql",
        present=lambda: bool(glob.glob("/usr/lib/postgresql/*/bin/initdb") or shutil.which("initdb")),
        purpose="the PostgreSQL tests",
    )


def apt_install(package: str, *, present: Callable[[], bool], purpose: str) -> None:
    """Install Debian's ``package`` when ``present()`` says it is missing and we may.

    Without root or passwordless sudo (or without apt-get) nothing is installed: the tests that
    need it skip, and this says so once instead of stopping the gate.
    """
    if present():
        return
    skip = (
        f"check: {package} is not installed{{why}}; {purpose} will be skipped "
        f"(to run them: apt-get install {package}, as root)"
    )
    if not shutil.which("apt-get"):
        print(skip.format(why=" and apt-get is not available"), flush=True)
        return
    if os.geteuid() == 0:
        sudo: list[str] = []
    elif shutil.which("sudo") and subprocess.run(["sudo", "-n", "true"], capture_output=True).returncode == 0:
        sudo = ["sudo", "-n"]
    else:
        print(skip.format(why=" and installing it needs root (no passwordless sudo)"), flush=True)
        return
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    print(f"+ apt-get install {package} (for {purpose})", flush=True)
    subprocess.run([*sudo, "apt-get", "update", "-qq"], env=env, check=False, stdout=subprocess.DEVNULL)
    subprocess.run(
        [*sudo, "apt-get", "install", "-y", "-qq", "--no-install-recommends", package],
        env=env,
        check=False,
        stdout=subprocess.DEVNULL,
    )
    if not present():
        print(skip.format(why=" and apt-get could not install it"), flush=True)


def demo() -> None:
    ensure_venv("")
    run(PY, ROOT / "examples" / "01_pipeline.py")


def check() -> None:
    ensure_venv("dev")
    ensure_chromium()
    ensure_postgres()
    run(BIN / "ruff", "check", "flock", "tests", "examples", "benchmarks", "scripts")
    run(BIN / "mypy")
    env = {**os.environ, "LITELLM_LOCAL_MODEL_COST_MAP": "True"}
    run(PY, "-m", "pytest", "-q", "--cov=flock", "--cov-report=term-missing:skip-covered", env=env)
    with tempfile.TemporaryDirectory() as site:
        quiet = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}
        run(BIN / "mkdocs", "build", "--strict", "--quiet", "-d", site, env=quiet)
    print("check: all gates passed")


def main() -> None:
    commands = {"demo": demo, "check": check}
    if len(sys.argv) != 2 or sys.argv[1] not in commands:
        print(__doc__)
        sys.exit(2)
    commands[sys.argv[1]]()


if __name__ == "__main__":
    main()
