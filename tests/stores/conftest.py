"""Store suite: every test that takes ``store`` runs against each store implementation."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from flock import InMemoryStore, SQLiteStore

STORES = ("memory", "sqlite")


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(params=STORES)
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Any]:
    """A fresh, empty store: in memory, or on a real SQLite file in ``tmp_path``."""
    if request.param == "memory":
        yield InMemoryStore()
        return
    sqlite = SQLiteStore(tmp_path / "board.db")
    try:
        yield sqlite
    finally:
        await sqlite.close()
