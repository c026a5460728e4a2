"""How to install one of Flock's optional extras into the running environment.

Error messages for a missing extra use :func:`install_command`. Flock is installed from a clone
(``pip install -e /path/to/flock``), where ``pip install 'flock[server]'`` would look the name up on
a package index instead; so from a source checkout the command names the checkout and this
interpreter's pip, and it can be pasted as it is.
"""

from __future__ import annotations

import sys
from pathlib import Path

# The checkout when Flock is installed editable (else a folder with no Flock pyproject.toml in it).
_ROOT = Path(__file__).resolve().parents[2]


def install_command(extra: str) -> str:
    """The command that installs ``flock[extra]`` here.

    From a checkout: ``/venv/bin/python -m pip install -e '/src/flock[server]'``; otherwise
    ``pip install 'flock[server]'``.
    """
    import shlex

    pyproject = _ROOT / "pyproject.toml"
    if pyproject.is_file() and 'name = "flock"' in pyproject.read_text(encoding="utf-8", errors="replace"):
        return f"{shlex.quote(sys.executable)} -m pip install -e {shlex.quote(f'{_ROOT}[{extra}]')}"
    return f"pip install 'flock[{extra}]'"
