"""``flock serve module:flock [--host --port]``: serve a flock's REST API until interrupted.

Keys come from ``FLOCK_API_KEYS`` (a JSON object, see :meth:`flock.ApiKeys.from_env`); without
keys the command refuses to start. The flock is shut down when the server stops (Ctrl-C, SIGTERM).
"""

from __future__ import annotations

import argparse
import importlib.util
import signal
import sys
from typing import Any

import anyio

from .._core.errors import ConfigurationError
from .._core.extras import install_command
from .._server.auth import ApiKeys


def add_parser(subparsers: Any) -> None:
    serve = subparsers.add_parser(
        "serve",
        help="serve a flock's REST API (needs flock[server] and FLOCK_API_KEYS)",
        description="Import MODULE, take its Flock (MODULE:ATTR, default attribute 'flock') and serve it "
        "over HTTP, processing artifacts as they arrive. API keys come from FLOCK_API_KEYS, e.g. "
        '\'{"my-long-key": {"tenant": "acme", "scopes": ["publish", "read"]}}\'.',
    )
    serve.add_argument("target", metavar="MODULE[:ATTR]", help="e.g. app:flock")
    serve.add_argument("--host", default="127.0.0.1", help="interface to listen on (default 127.0.0.1)")
    serve.add_argument("--port", type=int, default=8000, help="port (default 8000)")
    serve.add_argument("--log-level", default="info", help="uvicorn log level (default info)")
    serve.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from .cli_check import _LoadError, load

    missing = [name for name in ("fastapi", "uvicorn") if importlib.util.find_spec(name) is None]
    if missing:  # before asking for keys: setting them would not help
        raise ConfigurationError(
            f"flock serve needs the server extra ({', '.join(missing)} missing): {install_command('server')}"
        )
    keys = ApiKeys.from_env()  # before importing the app: a missing key fails fast
    try:
        flock = load(args.target)
    except _LoadError as exc:
        print(f"flock serve: {exc}", file=sys.stderr)
        return 2

    async def main() -> None:
        try:
            await flock.serve(args.host, args.port, auth=keys, log_level=args.log_level)
        finally:
            with anyio.CancelScope(shield=True):
                await flock.shutdown()

    # uvicorn stops gracefully on SIGINT/SIGTERM and then raises the signal again for the handlers
    # it found; these let that second one through quietly, so the flock is shut down (its store
    # flushed) and the command exits 0.
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, _ignore)
    anyio.run(main)
    return 0


def _ignore(signum: int, frame: Any) -> None:
    return None
