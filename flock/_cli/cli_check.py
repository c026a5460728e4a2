"""``flock check module:flock``: load a flock, print its agent/type graph and the wiring problems.

Exit status: 0 when the graph is sound (warnings may be printed), 1 when there are problems (or
the declarations themselves raise a ``ConfigurationError``), 2 when the module or attribute
cannot be loaded.
"""

from __future__ import annotations

import argparse
import importlib
import inspect
import os
import sys
from typing import Any

from .._core.errors import ConfigurationError
from .._core.flock import Flock
from .._core.graph import WORKFLOW_ERROR


def add_parser(subparsers: Any) -> None:
    check = subparsers.add_parser(
        "check",
        help="check a flock's wiring: unreachable agents, dead ends, cycles",
        description="Import MODULE, take its Flock (MODULE:ATTR, default attribute 'flock'), print the "
        "agent/type graph and the wiring problems. Exit 1 when there are problems.",
    )
    check.add_argument("target", metavar="MODULE[:ATTR]", help="e.g. app:flock or examples.pipeline")
    check.add_argument(
        "--inputs",
        metavar="TYPES",
        help="comma-separated type names published from outside; then a consumed type that is neither "
        "an input nor published by an agent, and agents the inputs cannot reach, are problems",
    )
    check.add_argument("--mermaid", action="store_true", help="print only the Mermaid flowchart")
    check.set_defaults(handler=run)


def load(target: str) -> Flock:
    """``module:attr`` (or ``module``, attribute ``flock``) → the Flock; a callable is called first."""
    module_name, _, attr = target.partition(":")
    sys.path.insert(0, os.getcwd())  # like `python -m`: modules next to the caller are importable
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        raise _LoadError(f"cannot import {module_name!r}: {exc}") from exc
    finally:
        sys.path.remove(os.getcwd())
    value = getattr(module, attr or "flock", None)
    if inspect.isfunction(value):  # a factory: flock check app:make_flock
        value = value()
    if not isinstance(value, Flock):
        raise _LoadError(
            f"{module_name}:{attr or 'flock'} is {type(value).__name__}, not a Flock: name the attribute "
            "that holds it, e.g. flock check app:flock"
        )
    return value


class _LoadError(Exception):
    pass


def run(args: argparse.Namespace) -> int:
    try:
        flock = load(args.target)
    except _LoadError as exc:
        print(f"flock check: {exc}", file=sys.stderr)
        return 2
    except ConfigurationError as exc:  # a mistake caught while the module declared its agents
        print(f"problem: {exc}")
        print("1 problem: the declarations do not load")
        return 1
    graph = flock.graph()
    if args.mermaid:
        print(graph.to_mermaid())
        return 0
    inputs = [t.strip() for t in args.inputs.split(",") if t.strip()] if args.inputs else None
    problems = graph.problems(inputs)
    out = [
        f"{len(graph.agents)} agents, {len(graph.consumed | graph.published)} types",
        "",
        graph.to_mermaid(),
        "",
    ]
    if inputs is None and graph.inputs():
        out.append(
            "inputs (no agent publishes them, so they must be published from outside): "
            + ", ".join(graph.inputs())
        )
        out.append(
            "  hint: a type here that is not meant to come from outside lacks a publisher; "
            "pass --inputs to make that a problem"
        )
    if graph.dead_ends():
        out.append(
            "dead ends (published, consumed by no agent: final results, or a missing consumer): "
            + ", ".join(graph.dead_ends())
        )
    for cycle in graph.cycles():
        out.append("cycle: " + " -> ".join([*cycle, cycle[0]]) + " (bound it with where= or the loop guard)")
    consumers = [n for n, s in graph.agents.items() if WORKFLOW_ERROR in s.consumed_type_names]
    if consumers:
        out.append("error handlers (consume WorkflowError): " + ", ".join(sorted(consumers)))
    for problem in problems:
        out.append(f"problem: {problem}")
    out.append(
        f"{len(problems)} problem{'s' if len(problems) != 1 else ''}" if problems else "no problems found"
    )
    print("\n".join(out))
    return 1 if problems else 0
