"""The PostgreSQL board's schema, its versioned migrations and its error mapping.

A board lives in one PostgreSQL schema (``flock`` unless told otherwise), so several boards can
share a database. Its ``schema_version`` table holds the number of migrations applied. Opening a
board runs the missing ones in order, in one transaction under an advisory lock, so processes that
start together migrate once; a board written by a newer Flock is refused rather than misread. To
change the schema, append to ``MIGRATIONS``; never edit one that has shipped.

The tables and indexes are those of the SQLite board (``_sqlite_schema``), plus the work queue
of :class:`~flock.PostgresQueue` (``work``): ready activations as rows that workers claim, and
the marks of the board's router (``artifacts.routed``).
"""

from __future__ import annotations

import re
import time
from typing import Any

from .._core.errors import ConfigurationError, StoreCorruptError, StoreError, StoreFullError

_V1 = """
CREATE TABLE artifacts (
    seq BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    id UUID NOT NULL UNIQUE,
    type TEXT NOT NULL,
    produced_by TEXT NOT NULL,
    correlation_id TEXT NOT NULL,
    partition_key TEXT,
    visibility_kind TEXT NOT NULL,
    visibility TEXT NOT NULL,
    created_us BIGINT NOT NULL,
    body TEXT NOT NULL
);
CREATE INDEX artifacts_type ON artifacts (type, seq);
CREATE INDEX artifacts_correlation ON artifacts (correlation_id, seq);
CREATE INDEX artifacts_producer ON artifacts (produced_by, seq);
CREATE INDEX artifacts_created ON artifacts (created_us);

CREATE TABLE artifact_tags (
    tag TEXT NOT NULL,
    seq BIGINT NOT NULL,
    PRIMARY KEY (tag, seq)
);
CREATE INDEX artifact_tags_seq ON artifact_tags (seq);

-- Pending and running activations (the journal). A row is deleted when its activation commits.
CREATE TABLE activations (
    ord BIGINT GENERATED ALWAYS AS IDENTITY,
    id UUID PRIMARY KEY,
    agent TEXT NOT NULL,
    subscription INTEGER NOT NULL,
    input_ids UUID[] NOT NULL,
    status TEXT NOT NULL,
    recorded_us BIGINT NOT NULL
);

CREATE TABLE consumptions (
    artifact_id UUID NOT NULL,
    agent TEXT NOT NULL,
    subscription INTEGER NOT NULL,
    activation_id UUID NOT NULL,
    PRIMARY KEY (artifact_id, agent, subscription)
);

-- The shared work queue: one row per ready activation until it commits. ``body`` is what a
-- worker needs to run it; ``lease_until`` (NULL: not claimed) is extended by the claimer's
-- heartbeat, and a row whose lease ran out is claimable again.
CREATE TABLE work (
    ord BIGINT GENERATED ALWAYS AS IDENTITY,
    id UUID PRIMARY KEY,
    agent TEXT NOT NULL,
    body TEXT NOT NULL,
    front BOOLEAN NOT NULL DEFAULT FALSE,
    claimed_by TEXT,
    lease_until TIMESTAMPTZ,
    attempts INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX work_ready ON work (front DESC, ord) WHERE lease_until IS NULL;
CREATE INDEX work_lease ON work (lease_until) WHERE lease_until IS NOT NULL;
-- New work wakes the workers listening on channel flock_work (the payload names the board's schema).
CREATE FUNCTION work_notify() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN PERFORM pg_notify('flock_work', TG_TABLE_SCHEMA); RETURN NULL; END $$;
CREATE TRIGGER work_inserted AFTER INSERT ON work FOR EACH ROW EXECUTE FUNCTION work_notify();
"""

_V2 = """
-- Finished work stays as a tombstone (done) instead of being deleted: a worker that queues the same
-- activation again a moment later (it raced with the commit) finds the row and queues nothing.
ALTER TABLE work ADD COLUMN done BOOLEAN NOT NULL DEFAULT FALSE;
DROP INDEX work_ready;
CREATE INDEX work_ready ON work (front DESC, ord) WHERE lease_until IS NULL AND NOT done;
CREATE INDEX activations_in_flight ON activations (ord) WHERE status <> 'done';
"""

_V3 = """
-- Routing a shared board (``_postgres_leader``): ``routed`` is 0 for an artifact the board's router
-- has not seen yet, 1 once it routed the artifact's stateful subscriptions (gates, batches, joins),
-- 2 once it also checked, a little later, that every plain subscription was routed (the process
-- that stored the artifact may have died before routing it). ``stored_at`` is the server's time.
ALTER TABLE artifacts ADD COLUMN routed SMALLINT NOT NULL DEFAULT 0;
ALTER TABLE artifacts ADD COLUMN stored_at TIMESTAMPTZ NOT NULL DEFAULT now();
CREATE INDEX artifacts_unrouted ON artifacts (routed, seq) WHERE routed < 2;
-- New artifacts wake the board's router (channel flock_board, one notification per statement).
CREATE FUNCTION board_notify() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN PERFORM pg_notify('flock_board', TG_TABLE_SCHEMA); RETURN NULL; END $$;
CREATE TRIGGER artifacts_inserted AFTER INSERT ON artifacts FOR EACH STATEMENT
EXECUTE FUNCTION board_notify();
"""

MIGRATIONS: list[str] = [_V1, _V2, _V3]
"""Migration ``i`` takes a board from version ``i`` to ``i + 1`` (SQL run in one transaction)."""

_MIGRATE_LOCK = 0x666C6F636B  # "flock": the advisory lock key under which boards migrate
_IDENTIFIER = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")


def journal_params(record: Any) -> dict[str, Any]:
    """The parameters of a journal entry's insert (``%(id)s``, ``%(agent)s``, ...), stamped now;
    ``first`` is its first input, whose consumption means the work is already done."""
    return {
        "id": record.id,
        "agent": record.agent,
        "sub": record.subscription,
        "ids": list(record.input_ids),
        "status": record.status,
        "us": time.time_ns() // 1000,
        "first": record.input_ids[0] if record.input_ids else None,
    }


def check_schema_name(schema: str) -> str:
    if not _IDENTIFIER.match(schema):
        raise ConfigurationError(
            f"PostgresStore(schema={schema!r}): use a plain lower-case name "
            "(letters, digits, underscores; at most 63 characters)"
        )
    return schema


async def migrate(conn: Any, schema: str, where: str) -> int:
    """Bring the board in ``schema`` up to the current version; returns the version it had."""
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock(%s)", (_MIGRATE_LOCK,))
        await conn.execute(f"CREATE SCHEMA IF NOT EXISTS {schema}")
        await conn.execute(f"CREATE TABLE IF NOT EXISTS {schema}.schema_version (version INTEGER NOT NULL)")
        cur = await conn.execute(f"SELECT version FROM {schema}.schema_version")
        row = await cur.fetchone()
        found = int(row[0]) if row else 0
        if found > len(MIGRATIONS):
            raise ConfigurationError(
                f"the board at {where} has schema version {found}, newer than this Flock understands "
                f"({len(MIGRATIONS)}); upgrade flock to open it"
            )
        await conn.execute(f"SET LOCAL search_path TO {schema}")
        for version in range(found, len(MIGRATIONS)):
            for statement in _statements(MIGRATIONS[version]):
                await conn.execute(statement)
        if row is None:
            await conn.execute("INSERT INTO schema_version (version) VALUES (%s)", (len(MIGRATIONS),))
        elif found != len(MIGRATIONS):
            await conn.execute("UPDATE schema_version SET version = %s", (len(MIGRATIONS),))
        return found


def _statements(script: str) -> list[str]:
    # Statements end with a semicolon at the end of a line (a function body keeps its own inside).
    lines = [line for line in script.splitlines() if not line.strip().startswith("--")]
    return [s for s in re.split(r";[ \t]*\n", "\n".join(lines) + "\n") if s.strip()]


# ------------------------------------------------------------------ errors
_FULL = {"53100", "53200", "53300"}  # disk_full, out_of_memory, too_many_connections: not stored
_CORRUPT = {"XX001", "XX002"}  # data_corrupted, index_corrupted


def typed(exc: BaseException, where: str) -> BaseException:
    """``exc`` (a psycopg error) as the :class:`StoreError` it means for the board at ``where``."""
    import psycopg
    import psycopg_pool

    if isinstance(exc, psycopg_pool.PoolTimeout):
        return StoreError(
            f"no connection to the board at {where} became free in time ({exc}); "
            "raise PostgresStore(max_connections=...) or lower the concurrency"
        )
    if not isinstance(exc, psycopg.Error):
        return exc
    state = getattr(exc, "sqlstate", None) or ""
    detail = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    if state in _FULL:
        return StoreFullError(
            f"the PostgreSQL server of the board at {where} is out of space or resources ({detail}); "
            "the write was not stored: free space (or connections) and retry"
        )
    if state in _CORRUPT:
        return StoreCorruptError(f"the board at {where} is damaged ({detail}); restore it from a backup")
    if isinstance(exc, psycopg.OperationalError):
        return StoreError(
            f"the board at {where} cannot be reached ({detail}); check that the server runs and the "
            "DSN is right. The operation was not applied: retry once the server is back"
        )
    return StoreError(f"the board at {where} failed: {detail}")
