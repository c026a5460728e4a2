"""Artifacts read back from SQL rows, shared by the SQLite and PostgreSQL stores: which rows an
identity may see (visibility is checked in Python: its rules are richer than SQL), and a bounded
cache of parsed artifacts."""

from __future__ import annotations

import threading
from collections.abc import Iterable, Sequence
from datetime import datetime
from functools import lru_cache
from typing import Any

from pydantic import TypeAdapter

from .._core.artifact import Artifact
from .._core.visibility import Visibility
from .sqlite_schema import from_micros

_VISIBILITY: TypeAdapter[Visibility] = TypeAdapter(Visibility)


@lru_cache(maxsize=1024)
def _visibility(text: str) -> Any:
    # Artifacts share few distinct visibilities; parse each once. They are frozen, so sharing is safe.
    return _VISIBILITY.validate_json(text)


def visible_page(
    rows: Iterable[tuple[int, str, str, int]], identity: Any, now: datetime, offset: int, limit: int
) -> tuple[list[int], int]:
    """From ``(seq, visibility kind, visibility JSON, created µs)`` rows in publication order: the
    seqs of the page ``identity`` may see and how many it may see in all (both SQL stores)."""
    total, seqs = 0, []
    for seq, kind, vis, created_us in rows:
        if kind != "public" and not _visibility(vis).allows(
            identity, now=now, published_at=from_micros(created_us)
        ):
            continue
        if offset <= total < offset + limit:
            seqs.append(seq)
        total += 1
    return seqs, total


class Decoded:
    """Artifacts already parsed, by id. Artifacts never change, so an entry is never stale; a
    deleted artifact is simply never asked for again. Bounded; the oldest entries go first."""

    def __init__(self, size: int = 50_000) -> None:
        self._size = size
        self._items: dict[str, Artifact] = {}
        self._lock = threading.Lock()

    def add(self, key: str, artifact: Artifact) -> None:
        with self._lock:
            self._items[key] = artifact
            if len(self._items) > self._size:
                del self._items[next(iter(self._items))]

    def artifacts(self, rows: Sequence[tuple[str, str]]) -> list[Artifact]:
        out = []
        for key, body in rows:
            found = self._items.get(key)
            if found is None:
                found = Artifact.model_validate_json(body)
                self.add(key, found)
            out.append(found)
        return out
