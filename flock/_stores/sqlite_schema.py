"""The SQLite board's schema, its migrations, and the row format of an artifact.

The file's ``PRAGMA user_version`` is the number of migrations applied. Opening a file runs the
missing ones in order, each in its own transaction; a file written by a newer Flock (a version above
``len(MIGRATIONS)``) is refused rather than misread. To change the schema, append a function to
``MIGRATIONS``; never edit one that has shipped.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from typing import Any

from .._core.artifact import Artifact
from .._core.errors import ConfigurationError, DuplicateArtifactError
from .store import FilterConfig


def _v1(conn: sqlite3.Connection) -> None:
    # ``seq`` is the publication order; AUTOINCREMENT keeps it monotonic even after retention
    # deletes rows. ``body`` is the whole artifact as JSON; the other columns are copies that the
    # indexes and filters need.
    _run_script(
        conn,
        """
        CREATE TABLE artifacts (
            seq INTEGER PRIMARY KEY AUTOINCREMENT,
            id TEXT NOT NULL UNIQUE,
            type TEXT NOT NULL,
            produced_by TEXT NOT NULL,
            correlation_id TEXT NOT NULL,
            partition_key TEXT,
            visibility_kind TEXT NOT NULL,
            visibility TEXT NOT NULL,
            created_us INTEGER NOT NULL,
            body TEXT NOT NULL
        );
        CREATE INDEX artifacts_type ON artifacts (type, seq);
        CREATE INDEX artifacts_correlation ON artifacts (correlation_id, seq);
        CREATE INDEX artifacts_producer ON artifacts (produced_by, seq);
        CREATE INDEX artifacts_created ON artifacts (created_us);

        CREATE TABLE artifact_tags (
            tag TEXT NOT NULL,
            seq INTEGER NOT NULL,
            PRIMARY KEY (tag, seq)
        ) WITHOUT ROWID;
        CREATE INDEX artifact_tags_seq ON artifact_tags (seq);

        -- Pending and running activations. A row is deleted when its activation commits.
        CREATE TABLE activations (
            id TEXT PRIMARY KEY,
            agent TEXT NOT NULL,
            subscription INTEGER NOT NULL,
            input_ids TEXT NOT NULL,
            status TEXT NOT NULL,
            recorded_us INTEGER NOT NULL
        );

        CREATE TABLE consumptions (
            artifact_id TEXT NOT NULL,
            agent TEXT NOT NULL,
            subscription INTEGER NOT NULL,
            activation_id TEXT NOT NULL,
            PRIMARY KEY (artifact_id, agent, subscription)
        ) WITHOUT ROWID;
        CREATE INDEX consumptions_activation ON consumptions (activation_id);
        """,
    )


def _run_script(conn: sqlite3.Connection, script: str) -> None:
    # Not ``executescript``: it commits first, and a migration must be one transaction.
    lines = [line for line in script.splitlines() if not line.strip().startswith("--")]
    for statement in "\n".join(lines).split(";"):
        if statement.strip():
            conn.execute(statement)


def _v2(conn: sqlite3.Connection) -> None:
    # No query looks consumptions up by activation, and with random activation ids every
    # committed activation dirtied one more leaf page of this index: about half of the WAL frames
    # of a commit of activations without outputs.
    conn.execute("DROP INDEX consumptions_activation")


def _v3(conn: sqlite3.Connection) -> None:
    # Which prompt produced an artifact (Artifact.prompt_version; the body keeps it too): a table
    # of its own, one row per artifact that has a version, for queries by agent and version (A/B
    # tests). Rows of artifacts stay as they were; a trigger follows retention's deletes.
    _run_script(
        conn,
        """
        CREATE TABLE artifact_prompts (
            seq INTEGER PRIMARY KEY,
            produced_by TEXT NOT NULL,
            prompt_version TEXT NOT NULL
        );
        CREATE INDEX artifact_prompts_version ON artifact_prompts (produced_by, prompt_version);
        INSERT INTO artifact_prompts (seq, produced_by, prompt_version)
            SELECT seq, produced_by, json_extract(body, '$.prompt_version') FROM artifacts
            WHERE json_valid(body) AND json_extract(body, '$.prompt_version') IS NOT NULL;
        """,
    )
    conn.execute(  # one statement (its body's ';' would split it in _run_script)
        "CREATE TRIGGER artifact_prompts_follow AFTER DELETE ON artifacts "
        "BEGIN DELETE FROM artifact_prompts WHERE seq = old.seq; END"
    )


MIGRATIONS: list[Callable[[sqlite3.Connection], None]] = [_v1, _v2, _v3]
"""Migration ``i`` takes a file from version ``i`` to ``i + 1``."""


def migrate(conn: sqlite3.Connection, path: str, *, check_only: bool = False) -> int:
    """Bring the file up to the current schema; returns the version it had before. ``check_only``
    (a reader) only refuses a file from a newer Flock: older schemas read the same."""
    (found,) = conn.execute("PRAGMA user_version").fetchone()
    if found > len(MIGRATIONS):
        raise ConfigurationError(
            f"{path} has board schema version {found}, newer than this Flock understands "
            f"({len(MIGRATIONS)}); upgrade flock to open it"
        )
    if check_only:
        return int(found)
    for version in range(found, len(MIGRATIONS)):
        conn.execute("BEGIN IMMEDIATE")
        try:
            MIGRATIONS[version](conn)
            conn.execute(f"PRAGMA user_version = {version + 1}")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")
    return int(found)


# ------------------------------------------------------------------ the row format of an artifact
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
ARTIFACT_COLUMNS = (
    "id, type, produced_by, correlation_id, partition_key, visibility_kind, visibility, created_us, body"
)


def micros(moment: datetime) -> int:
    """Microseconds since the epoch: how times are stored and compared."""
    if moment.tzinfo is None:  # naive times are taken as UTC, as everywhere in Flock
        moment = moment.replace(tzinfo=UTC)
    return (moment - _EPOCH) // timedelta(microseconds=1)


def from_micros(value: int) -> datetime:
    return _EPOCH + timedelta(microseconds=value)


@dataclass(frozen=True)
class ArtifactRow:
    """An artifact as the ``artifacts`` table holds it (values in ARTIFACT_COLUMNS order), and its tags."""

    values: tuple[Any, ...]
    tags: tuple[str, ...]
    prompt_version: str | None = None

    @property
    def id(self) -> str:
        return str(self.values[0])

    @classmethod
    def of(cls, a: Artifact) -> ArtifactRow:
        vis = a.visibility
        values = (
            str(a.id),
            a.type,
            a.produced_by,
            a.correlation_id,
            a.partition_key,
            vis.kind,
            vis.model_dump_json(),
            micros(a.created_at),
            a.model_dump_json(),
        )
        return cls(values, tuple(sorted(a.tags)), a.prompt_version)


def _duplicate(artifact_id: str) -> DuplicateArtifactError:
    return DuplicateArtifactError(
        f"artifact {artifact_id} is already on the board; artifacts are immutable. "
        "Publish a new artifact (a new id) instead of re-publishing one"
    )


def insert_artifact(conn: sqlite3.Connection, row: ArtifactRow, *, skip_existing: bool) -> bool:
    """Insert one artifact and its tags; returns whether it was new."""
    try:
        cur = conn.execute(
            f"INSERT INTO artifacts ({ARTIFACT_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)", row.values
        )
    except sqlite3.IntegrityError:
        if skip_existing:
            return False
        raise _duplicate(row.id) from None
    if row.tags:
        conn.executemany(
            "INSERT INTO artifact_tags (tag, seq) VALUES (?, ?)", ((t, cur.lastrowid) for t in row.tags)
        )
    if row.prompt_version is not None:
        conn.execute(
            "INSERT INTO artifact_prompts (seq, produced_by, prompt_version) VALUES (?, ?, ?)",
            (cur.lastrowid, row.values[2], row.prompt_version),
        )
    return True


# ------------------------------------------------------------------ journal and consumption rows
JournalRow = tuple[str, str, int, str, str, int]
"""An ``activations`` row: id, agent, subscription, input ids (JSON), status, recorded_us."""
ConsumptionRow = tuple[str, str, int, str]
"""A ``consumptions`` row: artifact id, agent, subscription, activation id."""

_RECORD = (
    "INSERT INTO activations (id, agent, subscription, input_ids, status, recorded_us) VALUES ",
    "(?, ?, ?, ?, ?, ?)",
    " ON CONFLICT (id) DO UPDATE SET status = excluded.status, recorded_us = excluded.recorded_us",
)
_DONE = ("DELETE FROM activations WHERE id IN (", "?", ")")
_CONSUME = (
    "INSERT INTO consumptions (artifact_id, agent, subscription, activation_id) VALUES ",
    "(?, ?, ?, ?)",
    " ON CONFLICT DO NOTHING",
)
_CHUNK = 128  # rows per statement: 128 x 6 parameters stays under SQLite's oldest limit of 999


class JournalWrites:
    """The journal and consumption rows of many operations, written with a few multi-row statements.

    One statement per row cost the writer thread a Python call, a statement-cache lookup and a GIL
    hand-off each, about 30,000 per 1,000 inputs to ten agents; while it runs, the activations
    waiting for that commit (all of them, at the default concurrency) hold their slots. Rows are
    added in queue order and written as if applied one by one: an activation recorded and
    completed within the same batch is never inserted at all.
    """

    def __init__(self) -> None:
        self.recorded: dict[str, JournalRow] = {}
        self.done: list[tuple[str]] = []
        self.consumed: list[ConsumptionRow] = []

    def add(self, recorded: JournalRow | None, done: str | None, consumed: Sequence[ConsumptionRow]) -> None:
        if recorded is not None:
            self.recorded[recorded[0]] = recorded  # a later status replaces an earlier one
        if done is not None:
            self.recorded.pop(done, None)
            self.done.append((done,))
        self.consumed.extend(consumed)

    def write(self, conn: sqlite3.Connection) -> None:
        # Deletions first: a completion can only supersede records added before it (popped above),
        # so a record still here was added after any completion of the same id.
        _many(conn, _DONE, self.done)
        _many(conn, _RECORD, list(self.recorded.values()))
        _many(conn, _CONSUME, self.consumed)
        self.recorded, self.done, self.consumed = {}, [], []


def _many(conn: sqlite3.Connection, sql: tuple[str, str, str], rows: Sequence[tuple[Any, ...]]) -> None:
    """Run ``sql`` for ``rows`` in as few statements as possible. Chunks are powers of two, so at
    most eight distinct statements per kind reach (and stay in) the connection's statement cache."""
    i, n = 0, len(rows)
    while i < n:
        size = min(_CHUNK, 1 << ((n - i).bit_length() - 1))
        conn.execute(_statement(sql, size), [value for row in rows[i : i + size] for value in row])
        i += size


@lru_cache(maxsize=64)
def _statement(sql: tuple[str, str, str], size: int) -> str:
    head, group, tail = sql
    return head + ", ".join([group] * size) + tail


def filter_sql(f: FilterConfig, postgres: bool = False) -> tuple[str, list[Any]]:
    """The WHERE part of a filter (everything except ``visible_to``) and its parameters, with
    SQLite's placeholders or, for ``postgres``, PostgreSQL's (both stores use it)."""
    mark = "%s" if postgres else "?"
    clauses: list[str] = []
    params: list[Any] = []

    def one_of(column: str, values: frozenset[str]) -> str:
        if postgres:  # one array parameter
            params.append(sorted(values))
            return f"{column} = ANY(%s)"
        params.extend(sorted(values))
        return f"{column} IN ({','.join('?' * len(values))})"

    for column, values in (
        ("type", f.type_names),
        ("produced_by", f.produced_by),
        ("visibility_kind", f.visibility),
    ):
        if values is not None:
            clauses.append(one_of(column, values))
    if f.correlation_id is not None:
        clauses.append(f"correlation_id = {mark}")
        params.append(f.correlation_id)
    if f.tags is not None:
        clauses.append(f"seq IN (SELECT seq FROM artifact_tags WHERE {one_of('tag', f.tags)})")
    if f.start is not None:
        clauses.append(f"created_us >= {mark}")
        params.append(micros(f.start))
    if f.end is not None:
        clauses.append(f"created_us <= {mark}")
        params.append(micros(f.end))
    return (" WHERE " + " AND ".join(clauses)) if clauses else "", params
