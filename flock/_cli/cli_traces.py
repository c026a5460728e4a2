"""``flock traces``: list recorded runs, show one as a tree or an HTML page, prune old ones."""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict
from dataclasses import fields as dataclass_fields
from pathlib import Path
from typing import Any

from .._tracing.trace_query import RunStats, SpanRecord, TraceStore
from .._tracing.trace_store import DEFAULT_STORE, prune


def add_parser(subparsers: Any) -> None:
    traces = subparsers.add_parser(
        "traces",
        help="list and inspect traced runs",
        description="List recent runs from the local trace store (see flock.tracing.enable_tracing).",
    )
    traces.add_argument("--db", type=Path, default=None, help=f"trace store file (default: {DEFAULT_STORE})")
    traces.add_argument("--limit", type=int, default=20, help="how many runs to list (default: 20)")
    traces.add_argument("--json", action="store_true", help="print JSON instead of a table")
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
    show.add_argument("--json", action="store_true", default=argparse.SUPPRESS, help="print the tree as JSON")
    show.set_defaults(handler=show_run)
    clean = sub.add_parser(
        "prune",
        help="delete all but the newest runs",
        description="Delete every run but the newest N from the trace store, and reclaim the space.",
    )
    clean.add_argument("--keep", type=int, required=True, metavar="N", help="how many runs to keep")
    clean.add_argument("--db", type=Path, default=argparse.SUPPRESS, help="trace store file")
    clean.set_defaults(handler=prune_runs)


def _store(args: argparse.Namespace) -> TraceStore:
    return TraceStore(args.db if args.db is not None else DEFAULT_STORE)


def list_runs(args: argparse.Namespace) -> int:
    from .._tracing.trace_view import render_runs

    with _store(args) as store:
        runs = store.list_runs(max(1, args.limit))
    _write(json.dumps([_run_json(r) for r in runs], indent=2) + "\n" if args.json else render_runs(runs))
    return 0


def prune_runs(args: argparse.Namespace) -> int:
    if args.keep < 0:
        sys.stderr.write("flock traces prune: --keep must be 0 or more\n")
        return 2
    _store(args).close()  # the same "no trace store at ..." error as the other subcommands
    runs, spans = prune(args.db if args.db is not None else DEFAULT_STORE, keep=args.keep)
    _write(f"removed {runs} run{'s' if runs != 1 else ''} ({spans} spans)\n")
    return 0


def _run_json(run: RunStats) -> dict[str, Any]:
    return {**asdict(run), "duration_ns": run.duration_ns, "tokens": run.tokens}


def _span_json(span: SpanRecord) -> dict[str, Any]:
    fields = {f.name: getattr(span, f.name) for f in dataclass_fields(span) if f.name != "children"}
    return {**fields, "duration_ns": span.duration_ns}


def show_run(args: argparse.Namespace) -> int:
    with _store(args) as store:
        trace = store.load(store.resolve(args.trace_id))
    if getattr(args, "json", False):
        # flat, in start order, linked by parent_id: deep traces would hit recursion limits when nested
        document = {"run": _run_json(trace.stats), "spans": [_span_json(span) for span in trace.spans]}
        _write(json.dumps(document, indent=2, ensure_ascii=False) + "\n")
        return 0
    if args.html is not None:
        from .._tracing.trace_html import render_html

        args.html.parent.mkdir(parents=True, exist_ok=True)
        args.html.write_text(render_html(trace), encoding="utf-8")
        sys.stdout.write(f"wrote {args.html} (trace {trace.trace_id}, {len(trace.spans)} spans)\n")
        return 0
    from .._tracing.trace_view import render_tree

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
