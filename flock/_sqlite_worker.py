"""The SQLite store's threads: one writer with group commit, one reader.

Each thread owns one connection and a queue. It takes everything queued, applies it as one batch
and only then wakes the callers, with one call into each caller's event loop. For the writer a
batch is one transaction: concurrent publishes and activations share a commit (and its fsync).
"""

from __future__ import annotations

import contextlib
import queue
import sqlite3
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import anyio

Apply = Callable[[sqlite3.Connection, Sequence["Op"]], None]


@dataclass(eq=False)
class Op:
    """One queued operation.

    ``run`` applies it (``None``: the request to stop the thread). ``event`` is ``None`` for a
    write-behind, whose caller does not wait.
    """

    run: Callable[[sqlite3.Connection], Any] | None
    token: Any = None
    event: anyio.Event | None = None
    outside_transaction: bool = False
    result: Any = None
    error: BaseException | None = None


class Worker:
    """A thread that owns one connection and applies queued operations in batches."""

    def __init__(self, conn: sqlite3.Connection, name: str, apply: Apply) -> None:
        self.queue: queue.SimpleQueue[Op] = queue.SimpleQueue()
        self.broken: BaseException | None = None
        self.late_error: BaseException | None = None  # of a write-behind, raised at the next write
        self.thread = threading.Thread(target=self._loop, args=(conn, apply), name=name, daemon=True)
        self.thread.start()

    def _loop(self, conn: sqlite3.Connection, apply: Apply) -> None:
        try:
            while True:
                batch = [self.queue.get()]
                while True:
                    try:
                        batch.append(self.queue.get_nowait())
                    except queue.Empty:
                        break
                ops = [op for op in batch if op.run is not None]
                try:
                    if ops:
                        apply(conn, ops)
                except BaseException as exc:  # the thread must never die silently
                    self.broken = exc
                    for op in ops:
                        op.error = op.error or exc
                    raise
                finally:
                    _wake(batch)
                for op in ops:
                    if op.event is None and op.error is not None:
                        self.late_error = op.error
                if len(ops) < len(batch):
                    return
        finally:
            conn.close()


# ---------------------------------------------------------------------------------- writes
def apply_writes(conn: sqlite3.Connection, ops: Sequence[Op]) -> None:
    _transaction(conn, [op for op in ops if not op.outside_transaction])
    for op in ops:
        if op.outside_transaction:  # VACUUM cannot run inside a transaction
            try:
                op.result, op.error = op.run(conn) if op.run else None, None
            except Exception as exc:
                op.error = exc


class _Retry(Exception):
    pass


def _transaction(conn: sqlite3.Connection, ops: Sequence[Op], *, isolated: bool = False) -> None:
    """Apply ``ops`` in one transaction. The first attempt runs them back to back; if one fails,
    everything is rolled back and applied again with a savepoint around each operation, so only
    the failing one is undone. Failures (a duplicate id) are rare; savepoints for all would cost
    two statements per operation every time."""
    if not ops:
        return
    try:
        conn.execute("BEGIN IMMEDIATE")
        for op in ops:
            assert op.run is not None
            if isolated:
                conn.execute("SAVEPOINT op")
            try:
                op.result, op.error = op.run(conn), None
            except Exception as exc:
                if not isolated:
                    raise _Retry from exc
                conn.execute("ROLLBACK TO op")
                op.result, op.error = None, exc
            if isolated:
                conn.execute("RELEASE op")
        conn.execute("COMMIT")
    except _Retry:
        conn.execute("ROLLBACK")
        _transaction(conn, ops, isolated=True)
    except sqlite3.Error as exc:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        for op in ops:
            op.result, op.error = None, op.error or exc


# ---------------------------------------------------------------------------------- reads
def apply_reads(conn: sqlite3.Connection, ops: Sequence[Op]) -> None:
    # One read transaction for the batch: every read sees one snapshot, taken after every write
    # acknowledged before the read was asked for.
    conn.execute("BEGIN")
    try:
        for op in ops:
            assert op.run is not None
            try:
                op.result = op.run(conn)
            except Exception as exc:
                op.error = exc
    finally:
        conn.execute("COMMIT")


# ---------------------------------------------------------------------------------- waking callers
def _wake(batch: Sequence[Op]) -> None:
    """Wake the callers of an applied batch: one call into each caller's event loop."""
    by_loop: dict[int, tuple[Any, list[anyio.Event]]] = {}
    for op in batch:
        if op.event is not None:
            by_loop.setdefault(id(op.token.native_token), (op.token, []))[1].append(op.event)
    for token, events in by_loop.values():
        # A finished event loop has no caller left to wake.
        with contextlib.suppress(anyio.RunFinishedError):
            token.backend_class.run_sync_soon(_set_all, (events,), token.native_token)


def _set_all(events: Sequence[anyio.Event]) -> None:
    for event in events:
        event.set()
