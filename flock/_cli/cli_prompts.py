"""``flock prompts module:flock``: each agent's current prompt version; ``--diff A B`` diffs two.

Current versions are rendered from the declarations (with the flock's current variables). Older
versions come from a trace store (``--traces PATH``, default ``$FLOCK_TRACES`` when set), where an
engine leaves a ``flock.prompt`` event with the rendered text the first time it uses a version.
Exit status: 0, 1 when a version to diff is not found, 2 when the module cannot be loaded.
"""

from __future__ import annotations

import argparse
import difflib
import json
import os
import sqlite3
import sys
from contextlib import closing
from typing import Any

from .._core.errors import ConfigurationError
from .._engine.prompt_versions import PromptVersion


def add_parser(subparsers: Any) -> None:
    prompts = subparsers.add_parser(
        "prompts",
        help="list each agent's prompt version, or diff two versions",
        description="Import MODULE, take its Flock (MODULE:ATTR, default attribute 'flock') and list each "
        "agent's current prompt version per output group. --diff A B prints a unified diff of two "
        "versions' rendered prompts.",
    )
    prompts.add_argument("target", metavar="MODULE[:ATTR]", help="e.g. app:flock")
    prompts.add_argument("--diff", nargs=2, metavar=("A", "B"), help="two versions (or labels) to diff")
    prompts.add_argument(
        "--traces",
        metavar="PATH",
        default=os.environ.get("FLOCK_TRACES"),
        help="a trace store with older versions",
    )
    prompts.add_argument("--show", metavar="VERSION", help="print one version's rendered prompt")
    prompts.set_defaults(handler=run)


def current_versions(flock: Any) -> list[PromptVersion]:
    """Every agent's current prompt version per output group (agents run by DSPyEngine)."""
    from .._engine.dspy_engine import DSPyEngine
    from .._engine.prompt_versions import version_for
    from .._engine.signature import shape_from_subscription

    found: list[PromptVersion] = []
    variables = flock.variables.snapshot()
    for builder in flock.agents:
        spec = getattr(builder, "spec", builder)
        engines = [e for e in spec.engines if isinstance(e, DSPyEngine)] or (
            [] if spec.engines else [DSPyEngine()]
        )
        if not engines or not spec.output_groups:
            continue
        engine = engines[-1].for_variables(variables)
        shapes = shape_from_subscription(spec.subscriptions[0]) if spec.subscriptions else ()
        for group in spec.output_groups:
            if group.outputs:
                found.append(version_for(engine, spec, group, shapes))
    return found


def traced_versions(path: str) -> list[PromptVersion]:
    """The versions recorded as ``flock.prompt`` events in the trace store at ``path``."""
    found: list[PromptVersion] = []
    with closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as conn:
        rows = conn.execute("SELECT events FROM spans WHERE events LIKE '%flock.prompt%'").fetchall()
    for (events,) in rows:
        for event in json.loads(events):
            if event.get("name") != "flock.prompt":
                continue
            a = event.get("attributes") or {}
            found.append(
                PromptVersion(
                    str(a.get("flock.agent")),
                    int(a.get("flock.output_group") or 0),
                    str(a.get("version")),
                    str(a.get("text")),
                )
            )
    return found


def run(args: argparse.Namespace) -> int:
    from .cli_check import _LoadError, load

    try:
        flock = load(args.target)
        current = current_versions(flock)
    except _LoadError as exc:
        print(f"flock prompts: {exc}", file=sys.stderr)
        return 2
    except ConfigurationError as exc:
        print(f"flock prompts: {exc}", file=sys.stderr)
        return 2
    known: dict[str, PromptVersion] = {}
    if args.traces:
        try:
            for v in traced_versions(args.traces):
                known.setdefault(v.version, v)
        except sqlite3.Error as exc:
            print(f"flock prompts: cannot read the trace store {args.traces}: {exc}", file=sys.stderr)
            return 2
    for v in current:
        known[v.version] = v
    if args.diff or args.show:
        wanted = args.diff or [args.show]
        missing = [w for w in wanted if w not in known]
        if missing:
            print(
                f"flock prompts: version {', '.join(missing)} not found; known: {', '.join(known) or 'none'}"
                + ("" if args.traces else " (older versions: --traces PATH)"),
                file=sys.stderr,
            )
            return 1
        if args.show:
            print(known[args.show].text)
            return 0
        a, b = (known[w] for w in wanted)
        diff = difflib.unified_diff(
            a.text.splitlines(),
            b.text.splitlines(),
            f"{a.agent} {a.version}",
            f"{b.agent} {b.version}",
            lineterm="",
        )
        print("\n".join(diff) or f"{a.version} and {b.version} render the same prompt")
        return 0
    if not current:
        print(
            f"{args.target}: no agent runs the DSPy engine, so there are no prompts (agents with .calls(), "
            "other engines or .human() send none)"
        )
        return 0
    width = max((len(v.agent) for v in current), default=5)
    print(f"{'agent':<{width}}  group  version")
    for v in current:
        print(f"{v.agent:<{width}}  {v.group:>5}  {v.version}")
    return 0
