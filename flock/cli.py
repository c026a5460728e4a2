"""The ``flock`` command.

Each subcommand lives in its own module with an ``add_parser(subparsers)`` function that adds its
parser and sets ``handler`` (a callable taking the parsed arguments and returning the exit code)::

    def add_parser(subparsers: argparse._SubParsersAction) -> None:
        parser = subparsers.add_parser("store", help="inspect a blackboard store")
        parser.set_defaults(handler=run)

To add a command, write such a module and list it in :data:`COMMANDS`. Modules are imported only
when ``flock`` runs, so this file stays cheap to import.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from ._core.errors import FlockError

COMMANDS: tuple[str, ...] = (
    "flock._cli.cli_traces",
    "flock._cli.store_cli",
    "flock._cli.cli_check",
    "flock._cli.cli_prompts",
    "flock._cli.cli_serve",
    "flock._cli.cli_worker",
    "flock._cli.cli_tasks",
    "flock._cli.cli_mcp",
)
"""Modules that contribute subcommands, in the order ``flock --help`` lists them."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="flock", description="Flock: multi-agent LLM systems on a typed blackboard."
    )
    parser.add_argument("--version", action="version", version=f"flock {_version()}")
    subparsers = parser.add_subparsers(title="commands", metavar="COMMAND")
    for module in COMMANDS:
        importlib.import_module(module).add_parser(subparsers)
    return parser


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("flock")
    except PackageNotFoundError:  # running from a source tree that was never installed
        return "(not installed)"


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``flock`` command; returns the exit status (0 ok, 1 failure, 2 usage error)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    handler = getattr(args, "handler", None)
    if handler is None:
        parser.print_help()
        return 2
    try:
        return int(handler(args))
    except FlockError as exc:
        print(f"flock: error: {exc}", file=sys.stderr)
        return 1
    except BrokenPipeError:  # `flock traces | head`
        return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
