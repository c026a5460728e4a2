"""``flock store BOARD``: inspect a board (counts by type, recent artifacts, in-flight work).

``BOARD`` is a SQLite board file (opened read-only, next to the process that writes it) or a
``postgresql://`` URL (``--schema`` picks the board in that database).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import anyio

from .._core.artifact import Artifact
from .._core.errors import ConfigurationError
from .._stores.sqlite_store import SQLiteStore


def add_parser(subparsers: Any) -> None:
    store = subparsers.add_parser(
        "store",
        help="inspect a board (a SQLite file or a postgresql:// URL)",
        description="Inspect a board written by SQLiteStore or PostgresStore: counts by type (stats, the "
        "default), the most recent artifacts (recent), or the activations still in flight (inflight).",
    )
    store.add_argument(
        "path",
        metavar="BOARD",
        help="the board file, e.g. .flock/board.db (or sqlite:///.flock/board.db), or postgresql://user@host/db",
    )
    store.add_argument("--schema", default="flock", help="the board's PostgreSQL schema (with a URL)")
    store.add_argument("--json", action="store_true", help="print JSON instead of a table")
    store.set_defaults(handler=run, what="stats", n=20)
    sub = store.add_subparsers(title="subcommands", metavar="SUBCOMMAND")
    sub.add_parser(
        "stats", help="artifacts by type, consumption records, activations in flight"
    ).set_defaults(what="stats")
    recent = sub.add_parser("recent", help="the most recently published artifacts, newest first")
    recent.add_argument("-n", type=int, default=20, help="how many (default: 20)")
    recent.set_defaults(what="recent")
    sub.add_parser("inflight", help="activations pending or running (resume() re-runs them)").set_defaults(
        what="inflight"
    )


def _is_url(board: str) -> bool:
    return board.startswith(("postgresql://", "postgres://"))


def run(args: argparse.Namespace) -> int:
    if _is_url(args.path):
        from .._stores.postgres_store import PostgresStore

        opened: Any = PostgresStore(args.path, schema=args.schema, max_connections=1)
        _board_exists(opened)
    else:  # a path, or the sqlite:///path form that `flock tasks --store` takes
        path = Path(args.path.removeprefix("sqlite:///"))
        if not path.is_file():
            raise ConfigurationError(
                f"no board at {path}: give the file a SQLiteStore writes, e.g. .flock/board.db, "
                "or a postgresql:// URL"
            )
        # Read only: no writer lock, so it works next to the process that writes the board.
        opened = SQLiteStore(path, read_only=True)
    report = anyio.run(_collect, opened, args.what, args.n)
    if args.json:
        sys.stdout.write(json.dumps(report, indent=2) + "\n")
    else:
        sys.stdout.write(_render(args.what, report))
    return 0


def _board_exists(store: Any) -> None:
    """Refuse a schema that holds no board (opening it would create an empty one)."""
    import psycopg

    try:
        with psycopg.connect(store.dsn, autocommit=True) as conn:
            found = conn.execute(
                "SELECT 1 FROM information_schema.tables WHERE table_schema = %s "
                "AND table_name = 'schema_version'",
                (store.schema,),
            ).fetchone()
    except psycopg.Error as exc:
        from .._stores.postgres_schema import typed

        raise typed(exc, store.where) from exc
    if found is None:
        raise ConfigurationError(
            f"no board at {store.where}: give the URL and --schema of a database a PostgresStore "
            "has written (the default schema is flock)"
        )


async def _collect(opened: Any, what: str, n: int) -> dict[str, Any]:
    async with opened as store:
        if what == "recent":
            return {"artifacts": [_summary(a) for a in await store.recent(n)]}
        if what == "inflight":
            return {
                "in_flight": [
                    {
                        "id": str(r.id),
                        "agent": r.agent,
                        "subscription": r.subscription,
                        "status": r.status,
                        "inputs": [str(i) for i in r.input_ids],
                    }
                    for r in await store.in_flight()
                ]
            }
        return await store.stats()


def _summary(a: Artifact) -> dict[str, Any]:
    return {
        "id": str(a.id),
        "type": a.type,
        "produced_by": a.produced_by,
        "correlation_id": a.correlation_id,
        "created_at": a.created_at.isoformat(),
        "visibility": a.visibility.kind,
        "payload": a.payload,
    }


def _table(headers: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(headers)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)).rstrip()]
    lines += ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows]
    return "\n".join(lines) + "\n"


def _clip(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"


def _render(what: str, report: dict[str, Any]) -> str:
    if what == "recent":
        rows = [
            [
                a["created_at"][:19].replace("T", " "),
                a["type"],
                a["produced_by"],
                _clip(a["correlation_id"], 12),
                a["id"][:8],
                _clip(json.dumps(a["payload"], ensure_ascii=False), 60),
            ]
            for a in report["artifacts"]
        ]
        return _table(["CREATED (UTC)", "TYPE", "PRODUCED BY", "WORKFLOW", "ID", "PAYLOAD"], rows)
    if what == "inflight":
        if not report["in_flight"]:
            return "no activations in flight\n"
        rows = [
            [
                r["id"][:8],
                r["agent"],
                str(r["subscription"]),
                r["status"],
                ", ".join(i[:8] for i in r["inputs"]),
            ]
            for r in report["in_flight"]
        ]
        return _table(["ACTIVATION", "AGENT", "SUB", "STATUS", "INPUTS"], rows)
    by_type = report["artifacts_by_type"]
    if "file_bytes" in report:  # SQLite
        where = f"schema v{report['schema_version']}, {report['file_bytes']:,} bytes"
    else:  # PostgreSQL: the shared queue and the board's router
        router = report.get("router") or "none"
        where = f"schema v{report['schema_version']}, {report['queued']} queued, router {router}"
    head = (
        f"{report['artifacts']} artifacts, {report['consumption_records']} consumption records, "
        f"{report['in_flight']} activations in flight ({where})\n"
    )
    return head + _table(["TYPE", "COUNT"], [[t, str(c)] for t, c in by_type.items()])
