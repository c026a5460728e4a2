"""``flock mcp module:flock [--http --host --port] [--tenant T]``: serve a flock as an MCP server.

Over stdio (the default) an MCP client starts this command and talks to it on stdin/stdout; the
caller is the local user (``--tenant`` narrows it to one tenant). With ``--http`` it serves
streamable HTTP at ``http://HOST:PORT/mcp``, deny by default: keys come from ``FLOCK_API_KEYS``.
The flock is shut down when the server stops.
"""

from __future__ import annotations

import argparse
import signal
import sys
from typing import Any

import anyio


def add_parser(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "mcp",
        help="serve a flock as an MCP server (stdio, or --http; needs flock[mcp])",
        description="Import MODULE, take its Flock (MODULE:ATTR, default attribute 'flock') and serve it as "
        "an MCP server with the tools publish, query, invoke, list_agents and list_types. "
        "Over stdio by default; --http serves streamable HTTP at /mcp with API keys from FLOCK_API_KEYS.",
    )
    parser.add_argument("target", metavar="MODULE[:ATTR]", help="e.g. app:flock")
    parser.add_argument("--http", action="store_true", help="serve streamable HTTP instead of stdio")
    parser.add_argument("--host", default="127.0.0.1", help="interface for --http (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=8000, help="port for --http (default 8000)")
    parser.add_argument(
        "--log-level", default="warning", help="uvicorn log level for --http (default warning)"
    )
    parser.add_argument(
        "--tenant", default=None, help="stdio: act as this tenant (publish into it, read only what it sees)"
    )
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from .._core.errors import ConfigurationError
    from .._core.extras import install_command
    from .._server.auth import ApiKeys, Principal
    from .cli_check import _LoadError, load

    try:
        from .._mcp.serve import LOCAL, serve_http, serve_stdio
    except ImportError as exc:
        raise ConfigurationError(
            f"flock mcp needs the mcp extra ({exc.name} is missing): {install_command('mcp')}"
        ) from None
    keys = ApiKeys.from_env() if args.http else None  # before importing the app: no keys fails fast
    if args.http and args.tenant is not None:
        raise ConfigurationError("--tenant is for stdio; over HTTP each API key names its tenant")
    try:
        flock = load(args.target)
    except _LoadError as exc:
        print(f"flock mcp: {exc}", file=sys.stderr)
        return 2
    if args.http:
        from .._server.address import check_address

        check_address(args.host, args.port)
    principal = LOCAL
    if args.tenant is not None:
        principal = Principal(tenant=args.tenant, scopes=frozenset({"publish", "read"}))

    async def main() -> None:
        try:
            if args.http:
                await serve_http(flock, args.host, args.port, auth=keys, log_level=args.log_level)
            else:
                await serve_stdio(flock, principal)
        finally:
            with anyio.CancelScope(shield=True):
                await flock.shutdown()

    if args.http:  # as `flock serve`: uvicorn stops on the signal, then raises it again for these
        for signum in (signal.SIGINT, signal.SIGTERM):
            signal.signal(signum, _ignore)
    try:
        anyio.run(main)
    except KeyboardInterrupt:
        return 130
    return 0


def _ignore(signum: int, frame: Any) -> None:
    return None
