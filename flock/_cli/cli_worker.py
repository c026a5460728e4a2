"""``flock worker module:flock --store postgresql://...``: run a worker on a shared board.

Any number of workers, on any number of machines, share one board: each claims ready activations
from the board's queue, runs them and commits them. SIGTERM (or Ctrl-C) stops it gracefully: it
claims nothing more, lets running activations finish for ``--grace`` seconds, then cancels what
still runs and releases those claims so another worker takes them at once. Exit status 0 after a
graceful stop, 1 on an error (a wrong declaration, an unreachable board), 2 when the module cannot
be loaded.
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
from typing import Any


def add_parser(subparsers: Any) -> None:
    worker = subparsers.add_parser(
        "worker",
        help="run a worker on a shared board (PostgreSQL)",
        description="Import MODULE, take its Flock (MODULE:ATTR, default attribute 'flock') and work on "
        "the board it shares with other workers until SIGTERM.",
    )
    worker.add_argument("target", metavar="MODULE[:ATTR]", help="e.g. app:flock")
    worker.add_argument(
        "--store",
        metavar="DSN",
        help="postgresql://user:password@host/db (default: the Flock's own PostgresStore)",
    )
    worker.add_argument("--schema", default="flock", help="the board's PostgreSQL schema (with --store)")
    worker.add_argument(
        "--concurrency",
        type=int,
        metavar="N",
        help="activations this worker runs at once (default: the Flock's)",
    )
    worker.add_argument(
        "--grace",
        type=float,
        default=30.0,
        metavar="SECONDS",
        help="how long running work may finish on SIGTERM",
    )
    worker.add_argument(
        "--lease", type=float, default=30.0, metavar="SECONDS", help="claims of a dead worker run again after"
    )
    worker.add_argument(
        "--poll", type=float, default=5.0, metavar="SECONDS", help="fallback poll for lost notifications"
    )
    worker.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from .._core.errors import ConfigurationError
    from .cli_check import _LoadError, load

    try:
        flock = load(args.target)
    except _LoadError as exc:
        print(f"flock worker: {exc}", file=sys.stderr)
        return 2
    if args.store:
        from .._stores.postgres_store import PostgresStore
        from .._stores.worker import attach

        if not args.store.startswith(("postgresql://", "postgres://")):
            raise ConfigurationError(
                f"--store takes a postgresql:// DSN, got {args.store.split(':')[0]}:...; workers share a "
                "board on PostgreSQL (a SQLite file has one writer): --store postgresql://user:password@host/db"
            )
        attach(flock, PostgresStore(args.store, schema=args.schema), lease=args.lease)
    queue = flock._orchestrator.lifecycle.queue
    if not hasattr(queue, "release_all"):  # before the banner and the event loop: nothing to clean up
        raise ConfigurationError(
            f"flock worker needs a board that workers share, and {args.target} keeps its board in "
            f"{type(flock.store).__name__}: pass --store postgresql://user:password@host/db, or make it "
            "Flock(store=PostgresStore(dsn)) (see docs/scaling-out.md)"
        )
    if hasattr(queue, "lease"):
        queue.lease = args.lease
    if args.concurrency is not None:
        if args.concurrency < 1:
            raise ConfigurationError(f"--concurrency {args.concurrency}: use 1 or more")
        flock._orchestrator.max_concurrency = args.concurrency
    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")

    import anyio

    return int(anyio.run(_main, flock, args, backend="asyncio"))


async def _main(flock: Any, args: argparse.Namespace) -> int:
    import anyio

    from .._stores.worker import serve

    stop = anyio.Event()

    async def on_signals(*, task_status: Any = anyio.TASK_STATUS_IGNORED) -> None:
        with anyio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
            task_status.started()
            async for _ in signals:
                logging.getLogger("flock").info("worker: stopping (signal); no new claims")
                stop.set()

    queue = flock._orchestrator.lifecycle.queue
    async with anyio.create_task_group() as tg:
        await tg.start(on_signals)
        print(  # from here on, SIGTERM stops the worker gracefully
            f"flock worker {getattr(queue, 'worker', '?')}: {flock.store!r}, "
            f"concurrency {flock.max_concurrency}",
            flush=True,
        )
        try:
            stats = await serve(flock, stop, poll=args.poll, grace=args.grace)
        finally:
            tg.cancel_scope.cancel()
            with anyio.CancelScope(shield=True):
                await flock.store.close()
    print(
        f"flock worker: stopped after {stats.activations} activations in {stats.runs} runs; "
        f"{stats.released} claims released",
        flush=True,
    )
    return 0
