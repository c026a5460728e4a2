"""Run and activation conditions: ``Until`` for ``run_until``, ``When`` for ``consumes(activation=...)``.

Conditions count with store queries (``store.count``), never by loading every artifact, and combine
with ``&``, ``|`` and ``~``.
"""

from __future__ import annotations

import builtins
import copy
from collections.abc import Callable, Iterable
from dataclasses import replace
from typing import Any, Protocol

from pydantic import BaseModel

from .._stores.store import FilterConfig
from .types import require_model, type_name


class Board(Protocol):
    """What a condition evaluates against: a :class:`~flock.Flock` (its store and whether it is idle)."""

    @property
    def store(self) -> Any: ...

    def is_idle(self) -> bool: ...




class SeenBy:
    """The board as one agent sees it: what its activation conditions evaluate against.

    ``store`` counts and reads only the artifacts ``identity`` may see, so an agent is never
    released (or held) by artifacts it may not see: another tenant's, or one private to others.
    """

    def __init__(self, board: Board, identity: Any) -> None:
        self._board = board
        self.store = _VisibleStore(board.store, identity)

    def is_idle(self) -> bool:
        return self._board.is_idle()


class _VisibleStore:
    """The reads of a store, limited to what ``identity`` may see (``FilterConfig.visible_to``)."""

    def __init__(self, store: Any, identity: Any) -> None:
        self._store, self._identity = store, identity

    def _seen(self, filters: FilterConfig | None) -> FilterConfig:
        return replace(filters or FilterConfig(), visible_to=self._identity)

    async def count(self, filters: FilterConfig | None = None) -> int:
        n: int = await self._store.count(self._seen(filters))
        return n

    async def query_artifacts(
        self, filters: FilterConfig | None = None, limit: int = 50, offset: int = 0
    ) -> tuple[builtins.list[Any], int]:
        seen = self._seen(filters)
        found: tuple[builtins.list[Any], int] = await self._store.query_artifacts(seen, limit, offset)
        return found

    async def get(self, artifact_id: Any) -> Any:
        artifact = await self._store.get(artifact_id)
        if artifact is None or not self._seen(None).matches(artifact):
            return None
        return artifact

    async def list(self) -> builtins.list[Any]:
        return (await self.query_artifacts(limit=2**62))[0]

    async def get_by_type(
        self, model: type[BaseModel], *, correlation_id: str | None = None
    ) -> builtins.list[Any]:
        filters = FilterConfig(type_names=frozenset([type_name(model)]), correlation_id=correlation_id)
        found, _ = await self.query_artifacts(filters, limit=2**62)
        return [model.model_validate(a.payload) for a in found]


class Condition:
    """Base class. ``await cond.evaluate(flock, correlation_id=None) -> bool``."""

    async def evaluate(self, flock: Board, correlation_id: str | None = None) -> bool:
        raise NotImplementedError

    @property
    def workflow_scoped(self) -> bool:
        """True when only artifacts of the evaluated workflow can change the answer.

        A held artifact is then re-checked only when its own workflow grows; any other
        condition is re-checked whenever anything is published.
        """
        return False

    def __and__(self, other: Condition) -> Condition:
        return _All((self, other))

    def __or__(self, other: Condition) -> Condition:
        return _Any((self, other))

    def __invert__(self) -> Condition:
        return _Not(self)


class _All(Condition):
    def __init__(self, parts: tuple[Condition, ...]) -> None:
        self.parts = parts

    async def evaluate(self, flock: Board, correlation_id: str | None = None) -> bool:
        for p in self.parts:
            if not await p.evaluate(flock, correlation_id):
                return False
        return True

    @property
    def workflow_scoped(self) -> bool:
        return all(p.workflow_scoped for p in self.parts)

    def __repr__(self) -> str:
        return "(" + " & ".join(map(repr, self.parts)) + ")"


class _Any(Condition):
    def __init__(self, parts: tuple[Condition, ...]) -> None:
        self.parts = parts

    async def evaluate(self, flock: Board, correlation_id: str | None = None) -> bool:
        for p in self.parts:
            if await p.evaluate(flock, correlation_id):
                return True
        return False

    @property
    def workflow_scoped(self) -> bool:
        return all(p.workflow_scoped for p in self.parts)

    def __repr__(self) -> str:
        return "(" + " | ".join(map(repr, self.parts)) + ")"


class _Not(Condition):
    def __init__(self, inner: Condition) -> None:
        self.inner = inner

    async def evaluate(self, flock: Board, correlation_id: str | None = None) -> bool:
        return not await self.inner.evaluate(flock, correlation_id)

    @property
    def workflow_scoped(self) -> bool:
        return self.inner.workflow_scoped

    def __repr__(self) -> str:
        return f"~{self.inner!r}"


class _Idle(Condition):
    async def evaluate(self, flock: Board, correlation_id: str | None = None) -> bool:
        return flock.is_idle()

    def __repr__(self) -> str:
        return "Until.idle()"


def _names(values: str | Iterable[str] | None) -> frozenset[str] | None:
    if values is None:
        return None
    return frozenset([values] if isinstance(values, str) else values)


class ArtifactCount(Condition):
    """Counts artifacts of one type (optionally by correlation, tags, producer); finish with a comparison."""

    def __init__(
        self,
        model: type[BaseModel],
        *,
        correlation_id: str | None = None,
        tags: str | Iterable[str] | None = None,
        produced_by: str | Iterable[str] | None = None,
        per_correlation: bool = False,
    ) -> None:
        self.model = require_model(model, "artifact_count")
        self.correlation_id = correlation_id
        self.tags = _names(tags)
        self.produced_by = _names(produced_by)
        self.per_correlation = per_correlation
        self.op: Callable[[int], bool] = lambda n: n >= 1
        self.text = ">= 1"

    def _compare(self, text: str, op: Callable[[int], bool]) -> ArtifactCount:
        # A new condition, so `base.at_least(1) | base.at_most(0)` keeps both comparisons.
        other = copy.copy(self)
        other.op, other.text = op, text
        return other

    def at_least(self, n: int) -> ArtifactCount:
        return self._compare(f">= {n}", lambda c: c >= n)

    def at_most(self, n: int) -> ArtifactCount:
        return self._compare(f"<= {n}", lambda c: c <= n)

    def exactly(self, n: int) -> ArtifactCount:
        return self._compare(f"== {n}", lambda c: c == n)

    def count_at_least(self, n: int) -> ArtifactCount:
        return self.at_least(n)

    @property
    def workflow_scoped(self) -> bool:
        return self.per_correlation and self.correlation_id is None

    async def evaluate(self, flock: Board, correlation_id: str | None = None) -> bool:
        corr = self.correlation_id or (correlation_id if self.per_correlation else None)
        filters = FilterConfig(
            type_names=frozenset([type_name(self.model)]),
            correlation_id=corr,
            tags=self.tags,
            produced_by=self.produced_by,
        )
        return self.op(await flock.store.count(filters))

    def __repr__(self) -> str:
        return f"count({type_name(self.model)}) {self.text}"


class _AnyField(Condition):
    def __init__(self, model: type[BaseModel], field: str, predicate: Callable[[Any], bool]) -> None:
        self.model, self.field, self.predicate = require_model(model, "any_field"), field, predicate

    async def evaluate(self, flock: Board, correlation_id: str | None = None) -> bool:
        filters = FilterConfig(type_names=frozenset([type_name(self.model)]))
        offset = 0
        while True:
            page, total = await flock.store.query_artifacts(filters, limit=500, offset=offset)
            if any(self.predicate(a.payload.get(self.field)) for a in page):
                return True
            offset += len(page)
            if not page or offset >= total:
                return False


class Until:
    """Stop conditions for ``flock.run_until(condition, timeout=...)``."""

    @staticmethod
    def idle() -> Condition:
        return _Idle()

    @staticmethod
    def artifact_count(
        model: type[BaseModel],
        *,
        correlation_id: str | None = None,
        tags: str | Iterable[str] | None = None,
        produced_by: str | Iterable[str] | None = None,
    ) -> ArtifactCount:
        return ArtifactCount(model, correlation_id=correlation_id, tags=tags, produced_by=produced_by)

    @staticmethod
    def exists(model: type[BaseModel], **filters: Any) -> Condition:
        return ArtifactCount(model, **filters).at_least(1)

    @staticmethod
    def none(model: type[BaseModel], **filters: Any) -> Condition:
        return ArtifactCount(model, **filters).exactly(0)

    @staticmethod
    def any_field(model: type[BaseModel], *, field: str, predicate: Callable[[Any], bool]) -> Condition:
        return _AnyField(model, field, predicate)

    @staticmethod
    def workflow_error() -> Condition:
        from .outcomes import WorkflowError

        return ArtifactCount(WorkflowError).at_least(1)


class When:
    """Activation conditions for ``consumes(..., activation=...)``, evaluated per correlation id."""

    @staticmethod
    def correlation(model: type[BaseModel]) -> ArtifactCount:
        """Count artifacts of ``model`` in the triggering artifact's workflow."""
        return ArtifactCount(model, per_correlation=True)
