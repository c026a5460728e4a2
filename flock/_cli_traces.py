"""``flock traces``: list recorded runs, show one as a tree, or write it as an HTML page."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from ._trace_store import DEFAULT_STORE, TraceStore


def add_parser(subparsers: Any) -> None:
    traces = subparsers.add_parser(
        "traces",
        help="list and inspect traced runs",
        description="List recent runs from the local trace store (see flock.tracing.enable_tracing).",
    )
    traces.add_argument("--db", type=Path, default=None, help=f"trace store file (default: {DEFAULT_STORE})")
    traces.add_argument("--limit", type=int, default=20, help="how many runs to list (default: 20)")
    traces.set_defaults(handler=list_runs)
    sub = traces.add_subparsers(title="subcommands", metavar="SUBCOMMAND")
    show = sub.add_parser(
        "show",
        help="print one run as a span tree",
        description="Print one run as a tree with durations, tokens and status, or write it as HTML.",
    )
    show.add_argument("trace_id", metavar="ID", help="trace id, a prefix of one, or 'latest'")
    # SUPPRESS: `flock traces --db X show ID` keeps X unless `show --db` overrides it.
    show.add_argument("--db", type=Path, default=argparse.SUPPRESS, help="trace store file")
    show.add_argument("--html", type=Path, metavar="FILE", help="write a self-contained HTML page to FILE")
    show.add_argument("--ascii", action="store_true", help="draw the tree with ASCII characters only")
    show.set_defaults(handler=show_run)


def _store(args: argparse.Namespace) -> TraceStore:
    return TraceStore(args.db if args.db is not None else DEFAULT_STORE)


def list_runs(args: argparse.Namespace) -> int:
    from ._trace_view import render_runs

    with _store(args) as store:
        _write(render_runs(store.list_runs(max(1, args.limit))))
    return 0


def show_run(args: argparse.Namespace) -> int:
    with _store(args) as store:
        trace = store.load(store.resolve(args.trace_id))
    if args.html is not None:
        from ._trace_html import render_html

        args.html.parent.mkdir(parents=True, exist_ok=True)
        args.html.write_text(render_html(trace), encoding="utf-8")
        sys.stdout.write(f"wrote {args.html} (trace {trace.trace_id}, {len(trace.spans)} spans)\n")
        return 0
    from ._trace_view import render_tree

    _write(render_tree(trace, ascii_only=args.ascii or not _can_encode("├─│└")))
    return 0


def _encoding() -> str:
    return getattr(sys.stdout, "encoding", None) or "ascii"


def _can_encode(text: str) -> bool:
    try:
        text.encode(_encoding())
    except (UnicodeEncodeError, LookupError):
        return False
    return True


def _write(text: str) -> None:
    """Write to stdout; characters the terminal cannot show become '?' rather than a traceback."""
    if not _can_encode(text):
        text = text.encode(_encoding(), "replace").decode(_encoding())
    sys.stdout.write(text)
