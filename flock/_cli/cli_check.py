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
from pathlib import Path
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
    attr = attr or "flock"
    if module_name.endswith(".py") or "/" in module_name or "\\" in module_name:
        path = Path(module_name)
        ways = [] if path.is_absolute() else [f"{'.'.join(path.with_suffix('').parts)}:{attr} from here"]
        if path.parent != Path("."):
            ways.append(f"{path.stem}:{attr} from {path.parent}/")
        raise _LoadError(
            f"{module_name!r} is a file path; give a module name, as for `python -m`: {', or '.join(ways)}"
        )
    sys.path.insert(0, os.getcwd())  # like `python -m`: modules next to the caller are importable
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name and not (module_name == exc.name or module_name.startswith(exc.name + ".")):
            # the module was found, but it imports something that is not installed
            raise _LoadError(
                f"importing {module_name!r} failed: it needs {exc.name!r}, which is not installed ({exc}); "
                "install it into this environment"
            ) from exc
        raise _LoadError(
            f"cannot import {module_name!r}: {exc}. Run from the directory that holds "
            f"{module_name.split('.')[0]} (it is looked up there and on sys.path), or check the name"
        ) from exc
    finally:
        sys.path.remove(os.getcwd())
    if not hasattr(module, attr):
        found = sorted(name for name, value in vars(module).items() if isinstance(value, Flock))
        raise _LoadError(
            f"module {module_name!r} has no attribute {attr!r}; "
            + (
                f"the Flocks it defines: {', '.join(f'{module_name}:{n}' for n in found)}"
                if found
                else "it defines no Flock at module level (a Flock made inside a function cannot be "
                f"loaded): add `flock = Flock(...)` at module level, or name a function that returns "
                f"one, e.g. {module_name}:build"
            )
        )
    value = getattr(module, attr)
    if inspect.isfunction(value):  # a factory: flock check app:make_flock
        try:
            inspect.signature(value).bind()
        except TypeError:
            raise _LoadError(
                f"{module_name}:{attr} is a function that needs arguments "
                f"({', '.join(inspect.signature(value).parameters)}); name a "
                "module-level Flock, or a function that takes none and returns one"
            ) from None
        value = value()
    if not isinstance(value, Flock):
        raise _LoadError(
            f"{module_name}:{attr} is {type(value).__name__}, not a Flock: name the attribute "
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
