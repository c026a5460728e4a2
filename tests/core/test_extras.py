"""A missing extra says how to install it here: from a checkout, this interpreter's pip on the checkout
(``pip install 'flock[server]'`` would ask a package index for a project of that name)."""

from __future__ import annotations

import shlex
import subprocess
import sys
import textwrap
from pathlib import Path

from flock._core.extras import install_command

ROOT = Path(__file__).resolve().parents[2]


def test_the_install_command_names_this_interpreter_and_this_checkout() -> None:
    command = install_command("server")
    assert shlex.split(command) == [sys.executable, "-m", "pip", "install", "-e", f"{ROOT}[server]"]
    assert (ROOT / "pyproject.toml").is_file()


def _without(module: str, code: str, tmp_path: Path) -> str:
    """Run ``code`` in a fresh interpreter in which ``module`` cannot be imported; its stderr."""
    script = f"import sys\nsys.modules[{module!r}] = None  # as if it were not installed\n" + textwrap.dedent(
        code
    )
    done = subprocess.run(
        [sys.executable, "-c", script], cwd=tmp_path, capture_output=True, text=True, timeout=120
    )
    assert done.returncode != 0
    return done.stderr


def test_serving_without_the_server_extra_says_how_to_install_it(tmp_path: Path) -> None:
    err = _without(
        "fastapi",
        """
        import anyio
        from flock import ApiKeys, Flock, Principal
        anyio.run(lambda: Flock().serve(auth=ApiKeys({"k" * 24: Principal(tenant="a", scopes={"read"})})))
        """,
        tmp_path,
    )
    assert f"serving needs the server extra (fastapi is missing): {install_command('server')}" in err


def test_with_mcp_without_the_mcp_extra_says_how_to_install_it(tmp_path: Path) -> None:
    err = _without(
        "mcp",
        """
        from pydantic import BaseModel
        from flock import Flock, MCPServer
        class Trip(BaseModel):
            city: str
        Flock().agent("packer").consumes(Trip).with_mcp(MCPServer(command="x"))
        """,
        tmp_path,
    )
    assert f"agent 'packer': with_mcp() needs the MCP SDK: {install_command('mcp')}" in err


def test_flock_serve_asks_for_the_extra_before_the_api_keys(tmp_path: Path) -> None:
    err = _without("fastapi", "from flock.cli import main\nsys.exit(main(['serve', 'app:flock']))", tmp_path)
    assert err.strip() == (
        f"flock: error: flock serve needs the server extra (fastapi missing): {install_command('server')}"
    )  # not "no API keys": setting FLOCK_API_KEYS first would not have helped
