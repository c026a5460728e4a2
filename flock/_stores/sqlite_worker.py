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

from .sqlite_schema import ConsumptionRow, JournalRow, JournalWrites

Apply = Callable[[sqlite3.Connection, Sequence["Op"]], None]


@dataclass(eq=False, slots=True)
class Op:
    """One queued operation.

    ``run`` applies it on its own; ``recorded``, ``done`` and ``consumed`` are activation journal
    and consumption rows, which the writer gathers over a batch and writes with a few multi-row
    statements (see ``JournalWrites``). A ``run`` that only inserts artifacts is ``independent``:
    it may be applied before rows queued ahead of it; any other ``run`` sees them written first.
    ``event`` is ``None`` for a write-behind, whose caller does not wait; ``seq`` numbers the
    write-behinds in queue order, so a reader can tell whether they have all committed. ``stop``
    asks the thread to finish.
    """

    run: Callable[[sqlite3.Connection], Any] | None = None
    token: Any = None
    event: anyio.Event | None = None
    recorded: JournalRow | None = None
    done: str | None = None
    consumed: Sequence[ConsumptionRow] = ()
    independent: bool = False
    outside_transaction: bool = False
    seq: int = 0
    stop: bool = False
    result: Any = None
    error: BaseException | None = None


class Worker:
    """A thread that owns one connection and applies queued operations in batches."""

    def __init__(self, conn: sqlite3.Connection, name: str, apply: Apply) -> None:
        self.queue: queue.SimpleQueue[Op] = queue.SimpleQueue()
        self.broken: BaseException | None = None
        self.late_error: BaseException | None = None  # of a write-behind, raised at the next write
        self.applied = 0  # the ``seq`` of the last write-behind applied (committed or failed)
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
                ops = [op for op in batch if not op.stop]
                try:
                    if ops:
                        apply(conn, ops)
                        self.applied = max([self.applied, *(op.seq for op in ops)])
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
    """Apply ``ops`` in one transaction. The first attempt runs them back to back, journal and
    consumption rows gathered into a few statements; if one fails, everything is rolled back and
    applied again with a savepoint around each operation, so only the failing one is undone.
    Failures (a duplicate id) are rare; savepoints for all would cost two statements per
    operation every time."""
    if not ops:
        return
    try:
        conn.execute("BEGIN IMMEDIATE")
        if isolated:
            for op in ops:
                _isolated(conn, op)
        else:
            try:
                _together(conn, ops)
            except Exception as exc:
                raise _Retry from exc
        conn.execute("COMMIT")
    except _Retry:
        conn.execute("ROLLBACK")
        _transaction(conn, ops, isolated=True)
    except sqlite3.Error as exc:
        if conn.in_transaction:
            with contextlib.suppress(sqlite3.Error):  # the error is reported below either way
                conn.execute("ROLLBACK")
        for op in ops:
            op.result, op.error = None, op.error or exc


def _together(conn: sqlite3.Connection, ops: Sequence[Op]) -> None:
    rows = JournalWrites()
    for op in ops:
        if op.run is not None:
            if not op.independent:
                rows.write(conn)  # what it reads must see the rows queued before it
            op.result, op.error = op.run(conn), None
        rows.add(op.recorded, op.done, op.consumed)
    rows.write(conn)


def _isolated(conn: sqlite3.Connection, op: Op) -> None:
    conn.execute("SAVEPOINT op")
    try:
        result = op.run(conn) if op.run is not None else None
        rows = JournalWrites()
        rows.add(op.recorded, op.done, op.consumed)
        rows.write(conn)
        op.result, op.error = result, None
    except Exception as exc:
        conn.execute("ROLLBACK TO op")
        op.result, op.error = None, exc
    conn.execute("RELEASE op")


# ---------------------------------------------------------------------------------- reads
def apply_reads(conn: sqlite3.Connection, ops: Sequence[Op]) -> None:
    # One read transaction for the batch: every read sees one snapshot, taken after every write
    # acknowledged before the read was asked for.
    # A failure (a damaged page) fails the reads it hits, never the thread: it is reported to
    # each caller, typed by the store, and the next batch starts afresh.
    try:
        conn.execute("BEGIN")
    except sqlite3.Error as exc:
        for op in ops:
            op.error = exc
        return
    for op in ops:
        try:
            op.result = op.run(conn) if op.run is not None else None
        except Exception as exc:
            op.error = exc
    try:
        conn.execute("COMMIT")
    except sqlite3.Error:  # ending a read transaction loses nothing; the reads' answers stand
        if conn.in_transaction:
            with contextlib.suppress(sqlite3.Error):
                conn.execute("ROLLBACK")


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
