"""Durable runtime variables: their changes are kept on the board of a durable store.

A variable declared with ``durable=True`` (``Var(name, default=..., durable=True)`` or
``flock.variables.declare(name, default, durable=True)``) is saved as a ``flock.Variable``
artifact each time it changes, and read back when a Flock opens the same store: the latest saved
value of each durable variable wins over its default. The artifacts are private to no agent (no
agent sees them, none is woken by them) and are never routed; they also leave a history of who
changed what when on the board.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any
from uuid import uuid4

from pydantic import BaseModel

from .._core.artifact import Artifact, utcnow
from .._core.types import flock_type, type_name
from .._core.visibility import PrivateVisibility
from .._stores.store import FilterConfig

OWNER = "flock.variables"
"""The name the saved values are private to (no agent is called this)."""


@flock_type(name="flock.Variable")
class SavedVariable(BaseModel):
    """One saved value of a durable runtime variable (``value`` as JSON text)."""

    name: str
    value: str


def saved_artifacts(changes: Iterable[tuple[str, Any]]) -> list[Artifact]:
    """The artifacts that save ``changes`` (name, JSON-ready value), oldest first."""
    return [
        Artifact(
            id=uuid4(),
            type=type_name(SavedVariable),
            payload={"name": name, "value": json.dumps(value)},
            correlation_id=OWNER,
            produced_by=OWNER,
            visibility=PrivateVisibility(agents={OWNER}),
            created_at=utcnow(),
        )
        for name, value in changes
    ]


async def saved_values(store: Any) -> dict[str, Any]:
    """The latest saved value of each durable variable on ``store`` (decoded JSON)."""
    found: list[Artifact] = []
    filters = FilterConfig(type_names=frozenset({type_name(SavedVariable)}))
    while True:
        page, total = await store.query_artifacts(filters, limit=500, offset=len(found))
        found.extend(page)
        if not page or len(found) >= total:
            break
    found.sort(key=lambda a: a.created_at)
    return {a.payload["name"]: json.loads(a.payload["value"]) for a in found}
