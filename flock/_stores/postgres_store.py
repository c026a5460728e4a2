"""A durable blackboard store on PostgreSQL, shared by any number of processes.

The board's tables and indexes are those of :class:`~flock.SQLiteStore`, in a PostgreSQL schema of
their own (``_postgres_schema``). Every write is one transaction and returns once it has committed;
``commit_activation`` writes an activation's outputs, the consumption of its inputs, its completion
and the removal of its work-queue row (``_postgres_queue``) in one. Connections come from a pool
(psycopg 3 and psycopg-pool, the ``flock[postgres]`` extra), opened at the first operation.
"""

from __future__ import annotations

import builtins
from collections.abc import AsyncIterator, Iterable, Sequence
from contextlib import asynccontextmanager
from datetime import datetime
from typing import Any, TypeVar
from uuid import UUID

import anyio
from pydantic import BaseModel

from .._core.artifact import Artifact, utcnow
from .._core.errors import ConfigurationError, DuplicateArtifactError, FlockClosedError, FlockError
from .._core.extras import install_command
from .._core.types import type_name
from .postgres_commit import GroupCommit
from .postgres_leader import _LEADER_LOCK
from .postgres_schema import check_schema_name, journal_params, migrate, typed
from .rows import Decoded, visible_page
from .sqlite_schema import ArtifactRow, filter_sql, micros
from .store import ActivationRecord, FilterConfig, as_filters

M = TypeVar("M", bound=BaseModel)

_COLUMNS = (
    "id, type, produced_by, correlation_id, partition_key, visibility_kind, visibility, created_us, body"
)
_INSERT = (
    f"WITH new AS (INSERT INTO artifacts ({_COLUMNS}) "
    "VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s){conflict} "
    "RETURNING seq) INSERT INTO artifact_tags (tag, seq) SELECT unnest(%s::text[]), seq FROM new "
    "RETURNING 1"
)
_PUT = _INSERT.format(conflict="")


def _router_name(application_name: str) -> str:
    """``host:pid`` from the router's connection name (``flock-router:PID:HOST``)."""
    _, pid, host = [*application_name.split(":", 2), "", ""][:3]
    return f"{host}:{pid}" if host else pid


def _row_values(row: ArtifactRow) -> builtins.list[Any]:
    values = list(row.values)
    values[0] = UUID(values[0])
    return [*values, list(row.tags)]


class PostgresStore:
    """A blackboard in a PostgreSQL database that many processes on many machines share.

    ::

        store = PostgresStore("postgresql://flock:secret@db.internal/flock")
        flock = Flock(store=store)     # the same in every process that works on the board

    It keeps what :class:`SQLiteStore` keeps (artifacts, the activation journal, consumption
    records) with the same guarantees: ``commit_activation`` stores outputs, consumption and
    completion in one transaction and skips outputs whose ids exist, so re-running an interrupted
    activation never publishes twice. Needs the ``flock[postgres]`` extra and an asyncio event loop.

    Args:
        dsn: a libpq connection string or URL (``postgresql://user:password@host:5432/db``).
        schema: the PostgreSQL schema that holds this board (created if missing); several boards
            can share one database under different schemas.
        max_connections: the size of this process's connection pool.

    Close it with ``await store.close()`` or ``async with``. Failures raise :class:`StoreError`
    subclasses naming the server: :class:`StoreFullError` (out of disk; the write was not stored),
    :class:`StoreCorruptError`, and :class:`StoreError` itself when the server cannot be reached.
    """

    durable = True

    def __init__(self, dsn: str, *, schema: str = "flock", max_connections: int = 10) -> None:
        try:
            import psycopg
            import psycopg_pool  # noqa: F401
        except ImportError as exc:
            raise ConfigurationError(
                f"PostgresStore needs psycopg 3 and psycopg-pool: {install_command('postgres')}"
            ) from exc
        self.dsn = dsn
        self.schema = check_schema_name(schema)
        if max_connections < 1:
            raise ConfigurationError(f"PostgresStore(max_connections={max_connections}): use 1 or more")
        self.max_connections = max_connections
        try:
            info = psycopg.conninfo.conninfo_to_dict(dsn)
        except psycopg.ProgrammingError as exc:
            raise ConfigurationError(f"PostgresStore: {dsn!r} is not a PostgreSQL DSN ({exc})") from exc
        host = str(info.get("host") or "localhost")
        self.where = f"postgresql://{host}:{info.get('port') or 5432}/{info.get('dbname') or ''}#{schema}"
        self._pool: Any = None
        self._opening: anyio.Lock | None = None
        self._closed = False
        self._decoded = Decoded()
        self._commits = GroupCommit(self)
        self._queues: builtins.list[Any] = []

    def shared_queue(self, *, lease: float = 30.0) -> Any:
        """A :class:`PostgresQueue` on this board: the work queue ``Flock(store=...)`` uses, which
        every process on the board shares."""
        from .postgres_queue import PostgresQueue

        queue = PostgresQueue(self, lease=lease)
        self._queues.append(queue)
        return queue

    def __repr__(self) -> str:
        return f"PostgresStore({self.where!r})"

    # ------------------------------------------------------------------ connections
    async def _open(self) -> Any:
        if self._closed:
            raise FlockClosedError(f"{self!r} is closed; open a new PostgresStore to use the board again")
        if self._pool is not None:
            return self._pool
        if self._opening is None:
            self._opening = anyio.Lock()
        async with self._opening:
            if self._pool is None:
                import psycopg
                import psycopg_pool

                try:
                    async with await psycopg.AsyncConnection.connect(self.dsn, autocommit=True) as conn:
                        await migrate(conn, self.schema, self.where)
                except (psycopg.Error, OSError) as exc:
                    raise typed(exc, self.where) from exc
                pool = psycopg_pool.AsyncConnectionPool(
                    self.dsn,
                    min_size=1,
                    max_size=self.max_connections,
                    kwargs={"autocommit": True, "options": f"-c search_path={self.schema}"},
                    open=False,
                    name=f"flock:{self.schema}",
                )
                await pool.open()
                self._pool = pool
        return self._pool

    @asynccontextmanager
    async def connection(self) -> AsyncIterator[Any]:
        """A pooled connection (autocommit; ``search_path`` set to the board's schema). Errors
        come out as :class:`StoreError`s; Flock's own errors pass through."""
        pool = await self._open()
        try:
            async with pool.connection() as conn:
                yield conn
        except FlockError:
            raise
        except Exception as exc:
            error = typed(exc, self.where)
            if error is exc:
                raise
            raise error from exc

    async def _rows(self, sql: str, params: Sequence[Any] = ()) -> builtins.list[Any]:
        async with self.connection() as conn:
            cur = await conn.execute(sql, params)
            return await cur.fetchall()

    # ------------------------------------------------------------------ artifacts
    async def put(self, artifact: Artifact) -> None:
        """Add an artifact. Raises :class:`DuplicateArtifactError` if its id exists."""
        await self.put_all([artifact])

    async def put_all(self, artifacts: Sequence[Artifact]) -> None:
        """Add all of ``artifacts`` in one transaction, or none: :class:`DuplicateArtifactError`
        if one's id exists."""
        import psycopg

        rows = [ArtifactRow.of(a) for a in artifacts]
        try:
            async with self.connection() as conn:
                if len(rows) == 1:
                    await conn.execute(_PUT, _row_values(rows[0]))
                else:
                    async with conn.transaction():
                        for row in rows:
                            await conn.execute(_PUT, _row_values(row))
        except Exception as exc:
            if isinstance(exc.__cause__, psycopg.errors.UniqueViolation):
                which = artifacts[0].id if len(rows) == 1 else [a.id for a in artifacts]
                raise DuplicateArtifactError(
                    f"artifact {which} is already on the board; artifacts are immutable. "
                    "Publish a new artifact (a new id) instead of re-publishing one"
                ) from None
            raise
        for row, artifact in zip(rows, artifacts, strict=True):
            self._decoded.add(row.id, artifact)

    async def get(self, artifact_id: UUID | str) -> Artifact | None:
        try:
            key = artifact_id if isinstance(artifact_id, UUID) else UUID(str(artifact_id))
        except ValueError:
            return None
        rows = await self._rows("SELECT id::text, body FROM artifacts WHERE id = %s", (key,))
        return self._decoded.artifacts(rows)[0] if rows else None

    async def get_many(self, artifact_ids: Iterable[UUID | str]) -> builtins.list[Artifact]:
        """The artifacts with these ids, in the order asked; unknown or malformed ids are skipped.

        One query, answered by the primary key."""
        keys: builtins.list[UUID] = []
        for artifact_id in artifact_ids:
            try:
                keys.append(artifact_id if isinstance(artifact_id, UUID) else UUID(str(artifact_id)))
            except ValueError:
                continue
        if not keys:
            return []
        rows = await self._rows("SELECT id::text, body FROM artifacts WHERE id = ANY(%s)", (keys,))
        by_id = {str(a.id): a for a in self._decoded.artifacts(rows)}
        return [by_id[str(k)] for k in keys if str(k) in by_id]

    async def list(self) -> builtins.list[Artifact]:
        return self._decoded.artifacts(await self._rows("SELECT id::text, body FROM artifacts ORDER BY seq"))

    async def get_by_type(self, model: type[M], *, correlation_id: str | None = None) -> builtins.list[M]:
        where, params = filter_sql(
            FilterConfig(type_names=frozenset([type_name(model)]), correlation_id=correlation_id),
            postgres=True,
        )
        rows = await self._rows(f"SELECT id::text, body FROM artifacts{where} ORDER BY seq", params)
        return [model.model_validate(a.payload) for a in self._decoded.artifacts(rows)]

    async def query_artifacts(
        self, filters: FilterConfig | None = None, limit: int = 50, offset: int = 0
    ) -> tuple[builtins.list[Artifact], int]:
        filters = as_filters(filters)
        limit, offset = max(limit, 0), max(offset, 0)
        where, params = filter_sql(filters, postgres=True)
        if filters.visible_to is None:
            rows = await self._rows(
                f"SELECT id::text, body, COUNT(*) OVER () FROM artifacts{where} "
                "ORDER BY seq LIMIT %s OFFSET %s",
                [*params, limit, offset],
            )
            if rows:
                return self._decoded.artifacts([(r[0], r[1]) for r in rows]), int(rows[0][2])
            return [], await self.count(filters)
        identity, now = filters.visible_to, utcnow()
        # SQL narrows the candidates; visibility is decided here, row by row, in publication
        # order, so the page and the total count only what ``identity`` may see.
        seqs, total = visible_page(
            await self._rows(
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
        rows = await self._rows(
            "SELECT id::text, body FROM artifacts WHERE seq = ANY(%s) ORDER BY seq", (seqs,)
        )
        return self._decoded.artifacts(rows), total

    async def count(self, filters: FilterConfig | None = None) -> int:
        filters = as_filters(filters)
        if filters.visible_to is not None:
            return (await self.query_artifacts(filters, limit=0))[1]
        where, params = filter_sql(filters, postgres=True)
        ((total,),) = await self._rows(f"SELECT COUNT(*) FROM artifacts{where}", params)
        return int(total)

    # ------------------------------------------------------------------ the activation journal
    async def record_activation(self, record: ActivationRecord) -> None:
        """Note that an activation is pending or running (insert or update by ``record.id``).

        A committed activation is never recorded again (another process may try, having queued it
        a moment before it committed): its row stays, marked done, and its inputs are consumed."""
        if record.status == "running" and self._queues:
            return  # on a shared queue the claim's lease says it runs; the row stays "pending"
        async with self.connection() as conn:
            await conn.execute(
                "INSERT INTO activations (id, agent, subscription, input_ids, status, recorded_us) "
                "SELECT %(id)s, %(agent)s, %(sub)s, %(ids)s, %(status)s, %(us)s WHERE NOT EXISTS "
                "(SELECT 1 FROM consumptions WHERE artifact_id = %(first)s AND agent = %(agent)s "
                "AND subscription = %(sub)s) ON CONFLICT (id) DO UPDATE "
                "SET status = excluded.status, recorded_us = excluded.recorded_us "
                "WHERE activations.status <> 'done'",
                journal_params(record),
            )

    async def commit_activation(
        self, record: ActivationRecord, outputs: Sequence[Artifact], *, wait: bool = True
    ) -> None:
        """In one transaction: the outputs (existing ids skipped), the consumption of every input
        by (agent, subscription), and the activation marked done in the journal and in the shared
        work queue (rows that stay as tombstones, so that no process queues it again). Always
        waits for the commit (``wait`` is accepted for the protocol)."""
        # One statement, shared with the activations that finish meanwhile (_postgres_commit).
        new = await self._commits.commit(record, outputs)
        for artifact in outputs:
            if str(artifact.id) in new:  # a skipped re-delivery keeps the stored original
                self._decoded.add(str(artifact.id), artifact)

    async def consumptions(self) -> set[tuple[UUID, str, int]]:
        rows = await self._rows("SELECT artifact_id, agent, subscription FROM consumptions")
        return {(a, agent, int(sub)) for a, agent, sub in rows}

    async def in_flight(self) -> builtins.list[ActivationRecord]:
        rows = await self._rows(
            "SELECT id, agent, subscription, input_ids, status FROM activations "
            "WHERE status <> 'done' ORDER BY ord"
        )
        return [
            ActivationRecord(i, agent, int(sub), tuple(ids), status) for i, agent, sub, ids, status in rows
        ]

    async def flush(self) -> None:
        """Nothing to wait for: every write has committed when its call returns."""

    # ------------------------------------------------------------------ operations
    async def stats(self) -> dict[str, Any]:
        """Counts for a glance at the board: artifacts (by type), consumption records,
        activations in flight, queued work, the schema version and the router (``host:pid`` of
        the process that routes gates, batches, joins and schedules; ``None`` when none does)."""
        by_type = dict(await self._rows("SELECT type, COUNT(*) FROM artifacts GROUP BY type ORDER BY type"))
        ((consumed,),) = await self._rows("SELECT COUNT(*) FROM consumptions")
        ((in_flight,),) = await self._rows("SELECT COUNT(*) FROM activations WHERE status <> 'done'")
        ((queued,),) = await self._rows("SELECT COUNT(*) FROM work WHERE NOT done")
        ((version,),) = await self._rows("SELECT version FROM schema_version")
        router = await self._rows(
            "SELECT a.application_name FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid "
            "WHERE l.locktype = 'advisory' AND l.granted AND l.classid = %s "
            "AND l.objid = hashtext(current_schema())::oid AND a.application_name LIKE 'flock-router:%%'",
            (_LEADER_LOCK,),
        )
        return {
            "artifacts": sum(by_type.values()),
            "artifacts_by_type": by_type,
            "consumption_records": consumed,
            "in_flight": in_flight,
            "queued": queued,
            "schema_version": version,
            "router": _router_name(router[0][0]) if router else None,
        }

    async def recent(self, n: int = 20) -> builtins.list[Artifact]:
        """The ``n`` most recently published artifacts, newest first."""
        sql = "SELECT id::text, body FROM artifacts ORDER BY seq DESC LIMIT %s"
        rows = await self._rows(sql, (max(n, 0),))
        return self._decoded.artifacts(rows)

    async def delete_before(self, before: datetime) -> int:
        """Retention: delete artifacts published before ``before`` (with their tags and consumption
        records); returns how many. The inputs of activations still in flight are kept."""
        async with self.connection() as conn, conn.transaction():
            cur = await conn.execute(
                "DELETE FROM artifacts WHERE created_us < %s AND NOT EXISTS "
                "(SELECT 1 FROM activations "
                "WHERE status <> 'done' AND artifacts.id = ANY(activations.input_ids)) "
                "RETURNING seq, id",
                (micros(before),),
            )
            doomed = await cur.fetchall()
            await conn.execute("DELETE FROM artifact_tags WHERE seq = ANY(%s)", ([s for s, _ in doomed],))
            await conn.execute(
                "DELETE FROM consumptions WHERE artifact_id = ANY(%s)", ([a for _, a in doomed],)
            )
        return len(doomed)

    # ------------------------------------------------------------------ lifecycle
    async def close(self) -> None:
        """Close the connection pool. Safe to call twice."""
        self._closed = True
        for queue in self._queues:
            await queue.aclose()
        pool, self._pool = self._pool, None
        if pool is not None:
            await pool.close()

    async def __aenter__(self) -> PostgresStore:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()
