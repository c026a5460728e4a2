"""What can go wrong with a board file, said in Flock's terms: a second writer, damage, a full disk.

:class:`WriterLock` makes one ``SQLiteStore`` the only writer of a board file. It holds an OS file
lock (``flock``) on a sidecar file, ``<board>-lock``, for as long as the store is open. The kernel
drops such a lock when its process ends in any way, ``kill -9`` included, so a crashed writer never
leaves a stale lock behind and a restarted process can take over at once. The sidecar stays on
disk (deleting it while another process opens it would let two writers in); it holds the process
id of the last writer, for the error message.

:func:`typed` turns the ``sqlite3`` errors a store can meet into :class:`StoreError` subclasses
that name the file and say what to do.
"""

from __future__ import annotations

import os
import sqlite3
import sys
from pathlib import Path

from .._core.errors import FlockError, StoreCorruptError, StoreError, StoreFullError, StoreLockedError

# SQLite's primary result codes (extended codes carry them in the low byte).
_BUSY, _LOCKED, _CORRUPT, _FULL, _CANTOPEN, _NOTADB = 5, 6, 11, 13, 14, 26


def lock_path(board: Path) -> Path:
    """The sidecar file whose lock marks ``board``'s writer."""
    return board.with_name(board.name + "-lock")


class WriterLock:
    """An exclusive, non-blocking lock on ``board`` for one writer; :meth:`release` gives it up."""

    def __init__(self, board: Path) -> None:
        self.board = board
        self.path = lock_path(board)
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            raise StoreError(
                f"cannot create the lock file {self.path} next to the board {board} ({exc.strerror}): "
                "the board's folder must be writable by the process that writes the board",
                path=str(board),
            ) from exc
        try:
            held = _try_lock(fd)
        except BaseException:
            os.close(fd)
            raise
        if not held:
            holder = _read_holder(fd)
            os.close(fd)
            raise StoreLockedError(
                f"the board {board} is already open for writing by another SQLiteStore "
                f"({f'process {holder}' if holder else 'another process'}, or one still open in this "
                "one). One process writes a board at a time, or the same activations would run twice: "
                "stop that process or close its store first, or declare all agents in one Flock. "
                "To only read the board meanwhile, open it with SQLiteStore(path, read_only=True) "
                "or `flock store PATH`",
                path=str(board),
            )
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self._fd: int | None = fd

    def release(self) -> None:
        """Give the lock up (closing the file releases it). Safe to call twice."""
        fd, self._fd = self._fd, None
        if fd is not None:
            os.close(fd)


if sys.platform == "win32":  # pragma: no cover - the suite runs on Linux
    import msvcrt

    def _try_lock(fd: int) -> bool:
        try:
            msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)
        except OSError:
            return False
        return True

    def _read_holder(fd: int) -> str:
        return ""  # the locked byte cannot be read by another process on Windows

else:
    import fcntl

    def _try_lock(fd: int) -> bool:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        return True

    def _read_holder(fd: int) -> str:
        text = os.pread(fd, 32, 0).decode(errors="replace").strip()
        return text if text.isdigit() else ""


def typed(exc: BaseException, board: Path, *, late: bool = False) -> BaseException:
    """``exc`` as the :class:`StoreError` it means for ``board``; Flock's own errors (a duplicate
    id) and anything not from SQLite pass through unchanged. ``late``: ``exc`` is the failure of an
    earlier write that nobody waited for, reported at the next write, which was therefore not made."""
    if isinstance(exc, FlockError) or not isinstance(exc, sqlite3.Error):
        return exc
    error = _typed(exc, board)
    if late:
        error.args = (
            "a write queued earlier without waiting (an activation's journal record, or the completion "
            "of an activation that published nothing) failed, so this write was not made; make it "
            f"again once the cause is fixed. The earlier failure: {error}",
        )
    error.__cause__ = exc
    return error


def _typed(exc: sqlite3.Error, board: Path) -> StoreError:
    code = getattr(exc, "sqlite_errorcode", None)
    primary = code & 0xFF if isinstance(code, int) else None
    error: StoreError
    if primary == _FULL:
        error = StoreFullError(
            f"the board {board} cannot grow: the disk is full ({exc}). The write that raised this "
            "was not stored; everything acknowledged before it is safe in the file. Free space on "
            "that disk (or move the board to a bigger one) and publish or run again",
            path=str(board),
        )
    elif primary in (_CORRUPT, _NOTADB):
        error = StoreCorruptError(
            f"the board {board} is damaged or is not a Flock board ({exc}). Restore it from a backup, "
            f"or move it aside and start a new board; `sqlite3 {board} .recover` may save what is left",
            path=str(board),
        )
    elif primary in (_BUSY, _LOCKED):
        error = StoreLockedError(
            f"the board {board} is locked by another connection ({exc}), one that does not take the "
            "board's writer lock (a sqlite3 shell or another tool?). Close it and try again",
            path=str(board),
        )
    elif primary == _CANTOPEN:
        error = StoreError(
            f"cannot open the board {board} ({exc}): check that the file (for read_only=True) or its "
            "folder exists and that this process may read and write there",
            path=str(board),
        )
    else:
        error = StoreError(
            f"the board {board} failed: {exc} ({getattr(exc, 'sqlite_errorname', type(exc).__name__)}). "
            "Nothing was stored by the operation that raised this; check the disk and the file, then retry",
            path=str(board),
        )
    return error
