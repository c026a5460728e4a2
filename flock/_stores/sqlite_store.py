"""A durable blackboard store on one SQLite file.

Writes go to one writer thread through a queue. The thread takes everything queued, applies it in
one transaction and commits; only then is each waiting caller woken. Many concurrent publishes thus
share one commit (group commit), and no caller hears "done" before its data is on disk. Reads go
to one reader thread with a read-only connection, which WAL mode lets read while the writer
writes. The threads are in ``_sqlite_worker``, the tables in ``_sqlite_schema``.
"""

from __future__ import annotations

import builtins
import json
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any, Literal, TypeVar
from uuid import UUID

import anyio
import anyio.lowlevel
import anyio.to_thread
from pydantic import BaseModel

from .._core.artifact import Artifact, utcnow
from .._core.errors import ConfigurationError, FlockClosedError
from .._core.types import type_name
from .board_file import WriterLock, typed
from .rows import Decoded, visible_page
from .sqlite_schema import ArtifactRow, filter_sql, insert_artifact, micros, migrate
from .sqlite_worker import Op, Worker, apply_reads, apply_writes
from .store import ActivationRecord, FilterConfig, as_filters

M = TypeVar("M", bound=BaseModel)
T = TypeVar("T")

Durability = Literal["process", "power"]
_SYNCHRONOUS: dict[str, str] = {"process": "NORMAL", "power": "FULL"}
def _select(sql: str, params: Sequence[Any]) -> Callable[[sqlite3.Connection], builtins.list[Any]]:
    """A read that runs ``sql`` with ``params`` on the worker's connection."""
    return lambda c: c.execute(sql, params).fetchall()


class SQLiteStore:
    """A blackboard on a SQLite file that survives the process.

    ::

        flock = Flock(store=SQLiteStore(".flock/board.db"))
        ...                            # after a crash, with the same agents declared:
        await flock.resume()           # finishes the work that was in flight

    ``put`` and ``commit_activation`` return only after their transaction has committed, unless
    ``commit_activation(..., wait=False)``; that and ``record_activation`` are written behind
    (see there), and ``await store.flush()`` waits for them. Reads see every write queued before
    them, written behind or not. ``commit_activation`` stores an
    activation's outputs, its consumption records and its completion in one transaction; outputs
    whose ids exist are skipped, so re-running an interrupted activation never duplicates them.
    Close the store with ``await store.close()`` or ``async with``.

    Args:
        path: the database file (created with its parent folders if missing).
        durability: ``"process"`` (default): a committed write survives the process being killed
            (WAL, ``synchronous=NORMAL``). ``"power"``: it also survives power loss or an OS crash
            (``synchronous=FULL``: every commit waits for the disk), at a cost in throughput.
        read_only: open an existing board only to read it, next to the process that writes it
            (as ``flock store`` does); every write raises :class:`ConfigurationError`.

    One store writes a board file at a time: opening a second one for writing, in another process
    or this one, raises :class:`StoreLockedError` until the first is closed or its process ends
    (``kill -9`` included). Storage failures raise :class:`StoreError` subclasses that name the
    file: :class:`StoreFullError` (disk full; the write was not stored), :class:`StoreCorruptError`.
    """

    def __init__(
        self, path: str | os.PathLike[str], *, durability: Durability = "process", read_only: bool = False
    ) -> None:
        if durability not in _SYNCHRONOUS:
            raise ConfigurationError(
                f"SQLiteStore(durability={durability!r}): choose 'process' (survives a killed process, "
                "the default) or 'power' (also survives power loss; slower)"
            )
        self.path = Path(path)
        self.durability = durability
        self.read_only = read_only
        self._lock_file: WriterLock | None = None
        if not read_only:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._lock_file = WriterLock(self.path)
        try:
            conn = self._connect(readonly=read_only)
            try:
                if read_only:
                    migrate(conn, str(self.path), check_only=True)
                else:
                    conn.execute("PRAGMA journal_mode = WAL")
                    # A checkpoint (two fsyncs) runs inside the commit that crosses this many WAL
                    # pages, while that commit's callers wait. Every 1,000 (SQLite's default) stalled
                    # a busy writer ~8 ms every ~15 commits; 4,000 pages (16 MB of WAL) make that a
                    # quarter as often. Durability does not depend on it: a committed transaction is
                    # safe in the WAL.
                    conn.execute("PRAGMA wal_autocheckpoint = 4000")
                    migrate(conn, str(self.path))
            except BaseException:
                conn.close()
                raise
        except BaseException as exc:
            if self._lock_file is not None:
                self._lock_file.release()
            error = typed(exc, self.path)
            if error is exc:
                raise
            raise error from exc
        self._decoded = Decoded()
        self._lock = threading.Lock()
        self._closed = False
        # Write-behinds are numbered in queue order (``Op.seq``); reads that must see them compare
        # the newest relevant number with the writer's ``applied`` and wait only if it is behind.
        self._behind = 0  # the newest write-behind: journal records and commits not waited for
        self._behind_consumed = 0  # the newest commit not waited for (consumption records)
        self._behind_artifacts = 0  # the newest such commit that carried outputs
        name = self.path.name
        self._writer = Worker(conn, f"flock-sqlite-writer:{name}", apply_writes)
        self._reader = Worker(self._connect(readonly=True), f"flock-sqlite-reader:{name}", apply_reads)

    def _connect(self, *, readonly: bool = False) -> sqlite3.Connection:
        if self.read_only:  # never creates the file
            target = f"{self.path.resolve().as_uri()}?mode=ro"
            conn = sqlite3.connect(target, uri=True, isolation_level=None, check_same_thread=False)
        else:
            conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        conn.execute("PRAGMA busy_timeout = 10000")
        conn.execute(f"PRAGMA synchronous = {_SYNCHRONOUS[self.durability]}")
        if readonly:
            conn.execute("PRAGMA query_only = 1")
        return conn

    def __repr__(self) -> str:
        extra = ", read_only=True" if self.read_only else ""
        return f"SQLiteStore({str(self.path)!r}, durability={self.durability!r}{extra})"

    def _enqueue(self, worker: Worker, op: Op, *, behind: bool = False) -> int:
        """Queue ``op``; a write-behind (``behind``) gets the next number, which is returned."""
        with self._lock:
            if self._closed:
                raise FlockClosedError(f"{self!r} is closed; open a new SQLiteStore to use the file again")
            if worker.broken is not None:
                raise FlockClosedError(
                    f"{self!r} stopped after an internal error: {typed(worker.broken, self.path)}"
                )
            if worker is self._writer and self.read_only:
                raise ConfigurationError(
                    f"{self!r} was opened to read only: open the board without read_only=True "
                    "(in the one process that writes it) to write"
                )
            # A write-behind failed: say so at the next write that is waited for (or flush()),
            # instead of never. Another write-behind is queued regardless: its caller does not wait
            # for an answer (the orchestrator records a requeued activation this way, after a
            # failed commit), and the error stays pending for the next write that does.
            if not behind and worker.late_error is not None:
                late, worker.late_error = worker.late_error, None
                raise typed(late, self.path, late=True)
            if behind:
                self._behind += 1
                op.seq = self._behind
            worker.queue.put(op)
            return op.seq

    async def _submit(self, worker: Worker, op: Op) -> Any:
        token = op.token = anyio.lowlevel.current_token()
        backend = token.backend_class  # found once: anyio.Event() and CancelScope() each look it up
        event = op.event = backend.create_event()
        self._enqueue(worker, op)
        if worker is self._writer:
            # Once queued, a write happens: wait for it even if cancelled, so that no later write
            # of this task can overtake it and no caller leaves with its write undecided.
            with backend.create_cancel_scope(shield=True):
                await event.wait()
        else:
            await event.wait()
        if op.error is not None:
            raise typed(op.error, self.path)
        return op.result

    async def _barrier(self, upto: int) -> None:
        """Return once the write-behinds up to number ``upto`` have committed (read-your-writes).
        Every other write was waited for already, so most reads take no trip through the writer."""
        if self._writer.applied < upto:
            await self._write(lambda conn: None)

    async def flush(self) -> None:
        """Return once every write queued so far has committed, those queued without waiting
        (journal records, completions of activations that published nothing) included. Raises
        the error of such a write if one failed. ``Flock`` calls it before a run returns."""
        if self._writer.applied < self._behind or self._writer.late_error is not None:
            await self._write(lambda conn: None)

    async def _write(self, run: Callable[[sqlite3.Connection], T], *, outside_transaction: bool = False) -> T:
        result: T = await self._submit(self._writer, Op(run, outside_transaction=outside_transaction))
        return result

    async def _read(self, run: Callable[[sqlite3.Connection], T]) -> T:
        result: T = await self._submit(self._reader, Op(run))
        return result

    # ------------------------------------------------------------------ artifacts
    async def put(self, artifact: Artifact) -> None:
        """Add an artifact. Raises :class:`DuplicateArtifactError` if its id exists."""
        row = ArtifactRow.of(artifact)

        def run(conn: sqlite3.Connection) -> bool:
            return insert_artifact(conn, row, skip_existing=False)

        await self._submit(self._writer, Op(run, independent=True))
        self._decoded.add(row.values[0], artifact)

    async def put_all(self, artifacts: Sequence[Artifact]) -> None:
        """Add all of ``artifacts`` in one transaction, or none: :class:`DuplicateArtifactError`
        if one's id exists (the writer rolls a failing operation back to its savepoint)."""
        rows = [ArtifactRow.of(a) for a in artifacts]

        def run(conn: sqlite3.Connection) -> None:
            for row in rows:
                insert_artifact(conn, row, skip_existing=False)

        await self._submit(self._writer, Op(run, independent=True))
        for row, artifact in zip(rows, artifacts, strict=True):
            self._decoded.add(row.values[0], artifact)

    async def get(self, artifact_id: UUID | str) -> Artifact | None:
        try:
            key = str(artifact_id if isinstance(artifact_id, UUID) else UUID(str(artifact_id)))
        except ValueError:
            return None
        await self._barrier(self._behind_artifacts)
        rows = await self._read(
            lambda c: c.execute("SELECT id, body FROM artifacts WHERE id = ?", (key,)).fetchall()
        )
        return self._decoded.artifacts(rows)[0] if rows else None

    async def get_many(self, artifact_ids: Iterable[UUID | str]) -> builtins.list[Artifact]:
        """The artifacts with these ids, in the order asked; unknown or malformed ids are skipped.

        One query per 500 ids (SQLite's bound-parameter limit), each answered by the primary key.
        """
        keys: builtins.list[str] = []
        for artifact_id in artifact_ids:
            try:
                keys.append(str(artifact_id if isinstance(artifact_id, UUID) else UUID(str(artifact_id))))
            except ValueError:
                continue
        if not keys:
            return []
        await self._barrier(self._behind_artifacts)
        by_id: dict[str, Artifact] = {}
        for start in range(0, len(keys), 500):
            chunk = keys[start : start + 500]
            sql = f"SELECT id, body FROM artifacts WHERE id IN ({','.join('?' * len(chunk))})"
            rows = await self._read(_select(sql, chunk))
            by_id.update((str(a.id), a) for a in self._decoded.artifacts(rows))
        return [by_id[k] for k in keys if k in by_id]

    async def list(self) -> builtins.list[Artifact]:
        await self._barrier(self._behind_artifacts)
        rows = await self._read(lambda c: c.execute("SELECT id, body FROM artifacts ORDER BY seq").fetchall())
        return self._decoded.artifacts(rows)

    async def get_by_type(self, model: type[M], *, correlation_id: str | None = None) -> builtins.list[M]:
        where, params = filter_sql(
            FilterConfig(type_names=frozenset([type_name(model)]), correlation_id=correlation_id)
        )
        sql = f"SELECT id, body FROM artifacts{where} ORDER BY seq"
        await self._barrier(self._behind_artifacts)
        rows = await self._read(lambda c: c.execute(sql, params).fetchall())
        return [model.model_validate(a.payload) for a in self._decoded.artifacts(rows)]

    async def query_artifacts(
        self, filters: FilterConfig | None = None, limit: int = 50, offset: int = 0
    ) -> tuple[builtins.list[Artifact], int]:
        filters = as_filters(filters)
        limit, offset = max(limit, 0), max(offset, 0)
        where, params = filter_sql(filters)
        await self._barrier(self._behind_artifacts)
        if filters.visible_to is None:

            def page(c: sqlite3.Connection) -> tuple[builtins.list[Any], int]:
                rows = c.execute(
                    f"SELECT id, body, COUNT(*) OVER () FROM artifacts{where} ORDER BY seq LIMIT ? OFFSET ?",
                    [*params, limit, offset],
                ).fetchall()
                if rows:
                    return [(r[0], r[1]) for r in rows], int(rows[0][2])
                (total,) = c.execute(f"SELECT COUNT(*) FROM artifacts{where}", params).fetchone()
                return [], int(total)

            rows, total = await self._read(page)
            return self._decoded.artifacts(rows), total
        identity, now = filters.visible_to, utcnow()

        def visible_rows(c: sqlite3.Connection) -> tuple[builtins.list[Any], int]:
            # SQL narrows the candidates; visibility is decided here, row by row, in publication
            # order, so the page and the total count only what ``identity`` may see.
            seqs, total = visible_page(
                c.execute(
                    f"SELECT seq, visibility_kind, visibility, created_us FROM artifacts{where} ORDER BY seq",
                    params,
                ),
                identity,
                now,
                offset,
                limit,
            )
            if not seqs:
                return [], total
            marks = ",".join("?" * len(seqs))
            return c.execute(
                f"SELECT id, body FROM artifacts WHERE seq IN ({marks}) ORDER BY seq", seqs
            ).fetchall(), total

        rows, total = await self._read(visible_rows)
        return self._decoded.artifacts(rows), total

    async def count(self, filters: FilterConfig | None = None) -> int:
        filters = as_filters(filters)
        if filters.visible_to is not None:
            return (await self.query_artifacts(filters, limit=0))[1]
        where, params = filter_sql(filters)
        await self._barrier(self._behind_artifacts)
        (total,) = await self._read(
            lambda c: c.execute(f"SELECT COUNT(*) FROM artifacts{where}", params).fetchone()
        )
        return int(total)

    # ------------------------------------------------------------------ the activation journal
    async def record_activation(self, record: ActivationRecord) -> None:
        """Note that an activation is pending or running (insert or update by ``record.id``).

        Write-behind: returns once queued; the record is committed with the next batch, before any
        later write. A crash may lose the newest such records, which is harmless: ``resume()``
        finds that work again from the stored artifacts and consumption records. Skipping the wait
        saves two round trips per activation.
        """
        # The JSON list of the input ids, built directly: UUID strings need no escaping, and
        # json.dumps cost more than the rest of this call.
        ids = '", "'.join([str(i) for i in record.input_ids])
        row = (
            str(record.id),
            record.agent,
            record.subscription,
            f'["{ids}"]' if ids else "[]",
            record.status,
            time.time_ns() // 1000,
        )
        self._enqueue(self._writer, Op(recorded=row), behind=True)

    async def commit_activation(
        self, record: ActivationRecord, outputs: Sequence[Artifact], *, wait: bool = True
    ) -> None:
        """In one transaction: the outputs (existing ids skipped), the consumption of every input
        by (agent, subscription), and the removal of the activation from the in-flight journal.

        With ``wait=False`` it returns once the transaction is queued, as a write-behind: it
        commits with the next batch, before any later write, and reads of this store wait for it.
        A crash may lose it whole (never part of it). The orchestrator passes ``wait=False`` for
        activations that published nothing, which then need not wait for the disk: if the
        completion is lost, ``resume()`` runs the activation again.
        """
        rows = [ArtifactRow.of(a) for a in outputs]
        activation = str(record.id)
        consumed = [(str(i), record.agent, record.subscription, activation) for i in record.input_ids]

        def run(conn: sqlite3.Connection) -> builtins.list[bool]:
            return [insert_artifact(conn, row, skip_existing=True) for row in rows]

        op = Op(run if rows else None, done=activation, consumed=consumed, independent=True)
        if not wait:
            self._behind_consumed = self._enqueue(self._writer, op, behind=True)
            if rows:  # not added to the decoded cache: a skipped re-delivery keeps the stored original
                self._behind_artifacts = self._behind_consumed
            return
        inserted = await self._submit(self._writer, op) or []
        for artifact, new in zip(outputs, inserted, strict=True):
            if new:  # a skipped re-delivery keeps the stored original, which may differ in created_at
                self._decoded.add(str(artifact.id), artifact)

    async def consumptions(self) -> set[tuple[UUID, str, int]]:
        await self._barrier(self._behind_consumed)
        rows = await self._read(
            lambda c: c.execute("SELECT artifact_id, agent, subscription FROM consumptions").fetchall()
        )
        return {(UUID(a), agent, int(sub)) for a, agent, sub in rows}

    async def in_flight(self) -> builtins.list[ActivationRecord]:
        await self._barrier(self._behind)  # see the write-behind journal records
        rows = await self._read(
            lambda c: c.execute(
                "SELECT id, agent, subscription, input_ids, status FROM activations ORDER BY rowid"
            ).fetchall()
        )
        return [
            ActivationRecord(UUID(i), agent, int(sub), tuple(UUID(x) for x in json.loads(ids)), status)
            for i, agent, sub, ids, status in rows
        ]

    # ------------------------------------------------------------------ operations
    async def stats(self) -> dict[str, Any]:
        """Counts for a glance at the board: artifacts (by type), consumption records, activations
        in flight, schema version and file size (the main file; the WAL file comes on top)."""

        def run(c: sqlite3.Connection) -> dict[str, Any]:
            by_type = dict(c.execute("SELECT type, COUNT(*) FROM artifacts GROUP BY type ORDER BY type"))
            return {
                "artifacts": sum(by_type.values()),
                "artifacts_by_type": by_type,
                "consumption_records": c.execute("SELECT COUNT(*) FROM consumptions").fetchone()[0],
                "in_flight": c.execute("SELECT COUNT(*) FROM activations").fetchone()[0],
                "schema_version": c.execute("PRAGMA user_version").fetchone()[0],
            }

        await self._barrier(self._behind)
        found = await self._read(run)
        found["file_bytes"] = self.path.stat().st_size
        return found

    async def recent(self, n: int = 20) -> builtins.list[Artifact]:
        """The ``n`` most recently published artifacts, newest first."""
        await self._barrier(self._behind_artifacts)
        rows = await self._read(
            lambda c: c.execute(
                "SELECT id, body FROM artifacts ORDER BY seq DESC LIMIT ?", (max(n, 0),)
            ).fetchall()
        )
        return self._decoded.artifacts(rows)

    async def delete_before(self, before: datetime) -> int:
        """Retention: delete artifacts published before ``before``; returns how many.

        Kept, whatever their age: the inputs of activations still pending or running (``resume``
        needs them). Deleted with each artifact: its tags and the records of its consumption. A
        consumption record is never deleted while its artifact remains, so no remaining artifact
        is ever processed a second time; an output may outlive its inputs (its ``consumed_from``
        then names deleted ids).
        """
        cutoff = micros(before)

        def run(conn: sqlite3.Connection) -> int:
            keep = {
                i for (ids,) in conn.execute("SELECT input_ids FROM activations") for i in json.loads(ids)
            }
            doomed = [
                (seq, aid)
                for seq, aid in conn.execute("SELECT seq, id FROM artifacts WHERE created_us < ?", (cutoff,))
                if aid not in keep
            ]
            conn.executemany("DELETE FROM artifact_tags WHERE seq = ?", ((s,) for s, _ in doomed))
            conn.executemany("DELETE FROM consumptions WHERE artifact_id = ?", ((a,) for _, a in doomed))
            conn.executemany("DELETE FROM artifacts WHERE seq = ?", ((s,) for s, _ in doomed))
            return len(doomed)

        return await self._write(run)

    async def vacuum(self) -> None:
        """Give the space of deleted rows back to the file system (rewrites the file; may take a while)."""

        def run(conn: sqlite3.Connection) -> None:
            conn.execute("VACUUM")
            conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")

        await self._write(run, outside_transaction=True)

    # ------------------------------------------------------------------ lifecycle
    async def close(self) -> None:
        """Finish queued operations and close the file. Safe to call twice."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            for worker in (self._writer, self._reader):
                worker.queue.put(Op(stop=True))
        for worker in (self._writer, self._reader):
            await anyio.to_thread.run_sync(worker.thread.join)
        if self._lock_file is not None:  # only now: the writer has finished and closed its connection
            self._lock_file.release()

    async def __aenter__(self) -> SQLiteStore:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()
