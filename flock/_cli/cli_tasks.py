"""``flock tasks list|show|answer``: the human tasks of a flock, from a terminal.

Two ways to reach the tasks:

- ``--url http://host:port`` talks to a served flock over REST (the key from ``--key`` or
  ``FLOCK_API_KEY``);
- ``MODULE[:ATTR]`` (with ``--store sqlite:///board.db`` or ``--store postgresql://...`` when the
  flock is not declared on its durable store) opens the board directly; after an answer the flock
  runs until idle, so the agents the answer wakes run right there.

``answer`` takes the payload from ``--json``, else asks field by field when stdin is a terminal,
else reads JSON from stdin. Exit status: 0 done, 1 refused (invalid answer, already closed, no
such task), 2 a usage error (no module or URL, a module that does not load, no key, no server).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Any

import anyio

from .._core.errors import ConfigurationError, TaskAnswerInvalid, TaskClosed, TaskNotFound
from .task_prompt import ask_payload, render_task, render_tasks

KEY_VAR = "FLOCK_API_KEY"


class _Usage(Exception):
    """A usage error: exit status 2."""


class _Refused(Exception):
    """The flock refused: exit status 1. ``errors`` are validation errors to print."""

    def __init__(self, message: str, errors: list[dict[str, Any]] | None = None) -> None:
        super().__init__(message)
        self.errors = errors or []


def add_parser(subparsers: Any) -> None:
    tasks = subparsers.add_parser(
        "tasks",
        help="list, show and answer human tasks",
        description="The open tasks of human agents: over REST (--url) or directly on a durable board "
        "(MODULE[:ATTR] [--store URL]).",
    )
    actions = tasks.add_subparsers(title="actions", metavar="ACTION")

    def common(parser: argparse.ArgumentParser) -> None:
        parser.add_argument("target", nargs="?", metavar="MODULE[:ATTR]", help="the flock, e.g. app:flock")
        parser.add_argument(
            "--store", metavar="URL", help="sqlite:///board.db or postgresql://... (with MODULE)"
        )
        parser.add_argument("--url", help="a served flock, e.g. http://127.0.0.1:8000")
        parser.add_argument("--key", help=f"the API key for --url (default: ${KEY_VAR})")

    listing = actions.add_parser("list", help="the open tasks")
    common(listing)
    listing.add_argument("--agent", help="only this agent's tasks")
    listing.add_argument("--json", action="store_true", help="print JSON")
    listing.set_defaults(handler=run, action="list")

    show = actions.add_parser("show", help="one task: inputs, prompt, the answer's fields")
    show.add_argument("task_id", metavar="TASK_ID")
    common(show)
    show.add_argument("--json", action="store_true", help="print JSON")
    show.set_defaults(handler=run, action="show")

    answer = actions.add_parser("answer", help="answer a task")
    answer.add_argument("task_id", metavar="TASK_ID")
    common(answer)
    answer.add_argument(
        "--json", "--payload", dest="payload", metavar="PAYLOAD", help="the answer, e.g. '{\"ok\": true}'"
    )
    answer.set_defaults(handler=run, action="answer")
    tasks.set_defaults(handler=lambda args: _help(tasks))


def _help(parser: argparse.ArgumentParser) -> int:
    parser.print_help()
    return 2


def run(args: argparse.Namespace) -> int:
    if args.action == "answer" and args.payload is None and (args.target or "").lstrip()[:1] in ("{", "["):
        args.payload, args.target = args.target, None  # `flock tasks answer ID '{"ok": true}' --url ...`
    try:
        if bool(args.url) == bool(args.target):
            raise _Usage(
                "name the flock (MODULE[:ATTR]) or a served one (--url http://host:port), one of them"
            )
        if args.url:
            if args.store:
                raise _Usage("--store goes with MODULE, not with --url (the server knows its board)")
            _over_rest(args)
        else:
            anyio.run(_on_board, args)
        return 0
    except _Usage as exc:
        print(f"flock tasks: {exc}", file=sys.stderr)
        return 2
    except _Refused as exc:
        print(f"flock tasks: {exc}", file=sys.stderr)
        for error in exc.errors:
            where = ".".join(str(p) for p in error.get("loc", [])) or "payload"
            print(f"  {where}: {error.get('msg')}", file=sys.stderr)
        return 1


# ------------------------------------------------------------------------------ the payload
def _payload(args: argparse.Namespace, task: dict[str, Any]) -> Any:
    if args.payload is not None:
        text = args.payload
    elif sys.stdin.isatty():
        return ask_payload(task, input, lambda line: print(line, file=sys.stderr))
    else:
        text = sys.stdin.read()
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise _Usage(f"the answer is not JSON ({exc}); pass it as --json '{{\"field\": ...}}'") from None


def _print(args: argparse.Namespace, data: Any) -> None:
    if getattr(args, "json", False):
        print(json.dumps(data, indent=2, default=str))
    elif args.action == "list":
        print(render_tasks(data))
    else:
        print(render_task(data))


# ------------------------------------------------------------------------------ over REST
def _over_rest(args: argparse.Namespace) -> None:
    import httpx

    key = args.key or os.environ.get(KEY_VAR)
    if not key:
        raise _Usage(f"--url needs an API key: --key KEY or the {KEY_VAR} environment variable")
    headers = {"Authorization": f"Bearer {key}"}
    try:
        with httpx.Client(base_url=args.url.rstrip("/"), headers=headers, timeout=30.0) as client:
            if args.action == "list":
                params = {"agent": args.agent} if args.agent else {}
                _print(args, _checked(client.get("/tasks", params=params))["items"])
            elif args.action == "show":
                _print(args, _checked(client.get(f"/tasks/{args.task_id}")))
            else:
                task = _checked(client.get(f"/tasks/{args.task_id}"))
                if task["status"] != "open":
                    raise _Refused(f"task {args.task_id} is {task['status']} already")
                made = _checked(client.post(f"/tasks/{args.task_id}", json={"payload": _payload(args, task)}))
                published = made.get("items", [made])
                print(
                    f"answered task {args.task_id}: published "
                    + ", ".join(f"{a['type']} {a['id']}" for a in published)
                )
    except httpx.TransportError as exc:
        raise _Usage(f"cannot reach {args.url}: {exc}") from None


def _checked(response: Any) -> Any:
    status = response.status_code
    try:
        body = response.json()
    except ValueError:
        body = {"detail": response.text}
    detail = body.get("detail") if isinstance(body, dict) else None
    if status in (401, 403):
        raise _Usage(f"the server refused the key ({status}): {detail}")
    if status == 404:
        raise _Refused(f"{detail} (or this key may not see it)")
    if status == 409:
        raise _Refused(str(detail))
    if status == 422:
        errors = detail if isinstance(detail, list) else []
        for error in errors:  # the CLI sends the body; show where in the answer the problem is
            error["loc"] = [p for p in error.get("loc", []) if p not in ("body", "payload")]
        raise _Refused("the answer is not valid; the task stays open", errors)
    if status >= 400:
        raise _Usage(f"the server answered {status}: {detail}")
    return body


# ------------------------------------------------------------------------------ on the board
async def _on_board(args: argparse.Namespace) -> None:
    from .cli_check import _LoadError, load

    try:
        flock = load(args.target)
    except _LoadError as exc:
        raise _Usage(str(exc)) from None
    if args.store:
        _use_store(flock, args.store)
    if not getattr(flock.store, "durable", True):
        raise _Usage(
            f"{args.target} keeps its board in memory, so no task outlives its process: pass the board "
            "with --store sqlite:///board.db (or postgresql://...), or ask the server with --url"
        )
    try:
        if args.action == "list":
            _print(args, [t.to_json() for t in await flock.tasks.list(agent=args.agent)])
        elif args.action == "show":
            _print(args, (await flock.tasks.get(args.task_id)).to_json())
        else:
            task = (await flock.tasks.get(args.task_id)).to_json()
            if task["status"] != "open":
                raise _Refused(f"task {args.task_id} is {task['status']} already")
            published = await flock.tasks.answer(args.task_id, _payload(args, task))
            print(
                f"answered task {args.task_id}: published " + ", ".join(f"{a.type} {a.id}" for a in published)
            )
            summary = await flock.run_until_idle()
            print(f"ran {summary.activations} activation(s); {summary.open_tasks} task(s) open")
    except TaskAnswerInvalid as exc:
        raise _Refused("the answer is not valid; the task stays open", exc.errors) from None
    except (TaskClosed, TaskNotFound) as exc:
        raise _Refused(str(exc)) from None
    finally:
        await flock.shutdown()
        close = getattr(flock.store, "close", None)
        if close is not None:
            await close()


def _use_store(flock: Any, url: str) -> None:
    """Put the module's Flock (declared without a durable store) on the board at ``url``."""
    if url.startswith(("postgresql://", "postgres://")):
        from .._stores.postgres_store import PostgresStore
        from .._stores.worker import attach

        attach(flock, PostgresStore(url))
        return
    if url.startswith("sqlite:///"):
        path = url[len("sqlite:///") :]
    elif "://" not in url:
        path = url
    else:
        raise _Usage(
            f"--store takes sqlite:///path/board.db or postgresql://..., got {url.split('://')[0]}://..."
        )
    from pathlib import Path

    from .._core.workqueue import InProcessQueue
    from .._stores.sqlite_store import SQLiteStore

    if not Path(path).is_file():
        raise _Usage(f"no board at {path!r}: --store names an existing SQLite file, e.g. sqlite:///board.db")
    orch = flock._orchestrator
    if orch.board_mark is not None or getattr(flock.store, "durable", True):
        raise ConfigurationError(
            f"this Flock already works on {flock.store!r}; drop --store to use it, or declare the Flock "
            "without a store= so that --store can choose one"
        )
    flock.store = store = SQLiteStore(path)
    orch.rebind(store, InProcessQueue())
