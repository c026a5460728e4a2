"""Store suite: every test that takes ``store`` runs against each store implementation."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from flock import InMemoryStore, SQLiteStore

STORES = ("memory", "sqlite", "postgres")
_schemas = iter(range(1_000_000))


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(params=STORES)
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Any]:
    """A fresh, empty store: in memory, on a real SQLite file in ``tmp_path``, or in a schema of
    its own on a real PostgreSQL server (see ``postgres_server``)."""
    if request.param == "memory":
        yield InMemoryStore()
        return
    if request.param == "postgres":
        from flock import PostgresStore

        # One database for the session; a schema of its own per test is far cheaper than a database.
        server = request.getfixturevalue("postgres_server")
        if not hasattr(server, "suite_dsn"):
            server.suite_dsn = server.create_database()
        pg = PostgresStore(server.suite_dsn, schema=f"conformance_{next(_schemas)}")
        try:
            yield pg
        finally:
            await pg.close()
        return
    sqlite = SQLiteStore(tmp_path / "board.db")
    try:
        yield sqlite
    finally:
        await sqlite.close()
