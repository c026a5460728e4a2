"""The blackboard store protocol and the in-memory store."""

from __future__ import annotations

import builtins
import heapq
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from hashlib import sha1
from typing import Literal, Protocol, TypeVar, runtime_checkable
from uuid import UUID

from pydantic import BaseModel

from .._core.artifact import Artifact, utcnow
from .._core.errors import ConfigurationError, DuplicateArtifactError
from .._core.types import type_name
from .._core.visibility import AgentIdentity

M = TypeVar("M", bound=BaseModel)

_UNSET = (None, None, None, None, None, None)


@dataclass(frozen=True)
class FilterConfig:
    """Which artifacts a query wants. Every field is optional; set fields must all match.

    ``type_names``/``produced_by``/``tags`` match any of their values; ``visibility`` matches the
    visibility kinds (``"public"``, ``"private"``, ...); ``visible_to`` keeps only artifacts that
    identity may see now; ``start``/``end`` bound ``created_at`` (inclusive).
    """

    type_names: frozenset[str] | None = None
    produced_by: frozenset[str] | None = None
    correlation_id: str | None = None
    tags: frozenset[str] | None = None
    visibility: frozenset[str] | None = None
    visible_to: AgentIdentity | None = None
    start: datetime | None = None
    end: datetime | None = None

    def __post_init__(self) -> None:
        for name in ("type_names", "produced_by", "tags", "visibility"):
            value = getattr(self, name)
            if value is not None and not isinstance(value, frozenset):
                object.__setattr__(self, name, frozenset([value] if isinstance(value, str) else value))

    def matches(self, artifact: Artifact, now: datetime | None = None) -> bool:
        if self.type_names is not None and artifact.type not in self.type_names:
            return False
        if self.produced_by is not None and artifact.produced_by not in self.produced_by:
            return False
        if self.correlation_id is not None and artifact.correlation_id != self.correlation_id:
            return False
        if self.tags is not None and not (self.tags & artifact.tags):
            return False
        if self.visibility is not None and artifact.visibility.kind not in self.visibility:
            return False
        if self.start is not None and artifact.created_at < self.start:
            return False
        if self.end is not None and artifact.created_at > self.end:
            return False
        if self.visible_to is not None:
            return artifact.visibility.allows(
                self.visible_to, now=now or utcnow(), published_at=artifact.created_at
            )
        return True


def as_filters(filters: object) -> FilterConfig:
    """``filters``, or the empty filter for ``None``; anything else is refused with what to pass."""
    if filters is None:
        return FilterConfig()
    if not isinstance(filters, FilterConfig):
        raise ConfigurationError(
            "store queries take a FilterConfig(type_names=..., correlation_id=..., ...) or None, "
            f"got {filters!r}"
        )
    return filters


ActivationStatus = Literal["pending", "running", "done"]


@dataclass(frozen=True)
class ActivationRecord:
    """The journal entry of one activation: which agent, which subscription, which inputs.

    ``id`` is derived from agent, subscription and input ids, so the same work always has the same
    id; output ids are derived from it (see :func:`output_id`), which makes re-running an
    interrupted activation idempotent.
    """

    id: UUID
    agent: str
    subscription: int
    input_ids: tuple[UUID, ...]
    status: ActivationStatus = "pending"

    @classmethod
    def for_inputs(
        cls, agent: str, subscription: int, input_ids: Sequence[UUID], *, salt: str = ""
    ) -> ActivationRecord:
        key = f"{agent}|{subscription}|{','.join(map(str, input_ids))}|{salt}"
        return cls(_uuid5(_NAMESPACE, key), agent, subscription, tuple(input_ids))


_NAMESPACE = UUID("6f1c5e2a-4b7d-4c39-9a43-0f1e3d2b8c51")
_V5_CLEAR = ~((0xC000 << 48) | (0xF000 << 64)) & ((1 << 128) - 1)  # variant and version bits
_V5_SET = (0x8000 << 48) | (5 << 76)  # RFC 4122 variant, version 5


def _uuid5(namespace: UUID, name: str) -> UUID:
    """Exactly ``uuid.uuid5(namespace, name)``, in half the time.

    Two run per activation (its id and each output's), so the stdlib's per-call import and
    ``UUID(bytes=..., version=...)`` checks showed up in the orchestration benchmark.
    """
    digest = sha1(namespace.bytes + name.encode()).digest()
    return UUID(int=(int.from_bytes(digest[:16], "big") & _V5_CLEAR) | _V5_SET)


def output_id(activation: UUID, group: int, position: int) -> UUID:
    """The id of the ``position``-th output of output group ``group`` of an activation."""
    return _uuid5(activation, f"{group}:{position}")


@runtime_checkable
class BlackboardStore(Protocol):
    """What the orchestrator needs from a store. Results are in publication order.

    Besides artifacts, a store keeps the activation journal: which activations are pending or
    running, and which (artifact, agent, subscription) pairs were consumed. ``commit_activation``
    writes an activation's outputs, its consumption records and its completion atomically.

    A store may also offer ``put_all(artifacts)``: add all of them in one transaction, or none if
    one's id exists (:class:`DuplicateArtifactError`). Flock uses it to publish the several
    artifacts of a human task's answer at once; without it they are added one by one. The three
    stores Flock ships have it.
    """

    async def put(self, artifact: Artifact) -> None:
        """Add an artifact. Raises :class:`DuplicateArtifactError` if its id exists."""
        ...

    async def get(self, artifact_id: UUID | str) -> Artifact | None: ...

    async def list(self) -> builtins.list[Artifact]: ...

    async def get_by_type(self, model: type[M], *, correlation_id: str | None = None) -> builtins.list[M]: ...

    async def query_artifacts(
        self, filters: FilterConfig | None = None, limit: int = 50, offset: int = 0
    ) -> tuple[builtins.list[Artifact], int]: ...

    async def count(self, filters: FilterConfig | None = None) -> int: ...

    async def record_activation(self, record: ActivationRecord) -> None:
        """Note that an activation is pending or running (insert or update by ``record.id``)."""
        ...

    async def commit_activation(
        self, record: ActivationRecord, outputs: Sequence[Artifact], *, wait: bool = True
    ) -> None:
        """Atomically: add ``outputs`` (ids already present are skipped: idempotent re-delivery),
        mark every input consumed by (agent, subscription), and mark the activation done.

        Idempotent: committing the same activation again changes nothing. With ``wait=False`` a
        durable store may return before the transaction is durable (it must still be atomic, and
        later reads must see it); the orchestrator passes it for activations without outputs.
        """
        ...

    async def consumptions(self) -> set[tuple[UUID, str, int]]:
        """Every recorded (artifact id, agent, subscription) consumption."""
        ...

    async def in_flight(self) -> builtins.list[ActivationRecord]:
        """Activations recorded as pending or running and not yet committed."""
        ...


class InMemoryStore:
    """A store in process memory, indexed by type and by correlation id.

    Not durable (``durable = False``): its activation journal lives and dies with the process, so
    the orchestrator skips journal writes that only matter for resuming after a crash.
    """

    durable = False

    def __init__(self) -> None:
        self._items: dict[UUID, Artifact] = {}
        self._seq: dict[UUID, int] = {}
        self._by_type: dict[str, list[Artifact]] = {}
        self._by_corr: dict[str, list[Artifact]] = {}
        self._consumed: set[tuple[UUID, str, int]] = set()
        self._in_flight: dict[UUID, ActivationRecord] = {}

    def __len__(self) -> int:
        return len(self._items)

    async def put(self, artifact: Artifact) -> None:
        if artifact.id in self._items:
            raise DuplicateArtifactError(
                f"artifact {artifact.id} is already on the board; artifacts are immutable. "
                "Publish a new artifact (a new id) instead of re-publishing one"
            )
        self._add(artifact)

    async def put_all(self, artifacts: Sequence[Artifact]) -> None:
        """Add all of ``artifacts`` or, if one's id exists, none (:class:`DuplicateArtifactError`)."""
        ids = [a.id for a in artifacts]
        taken = next((i for i in ids if i in self._items), None)
        if taken is not None or len(set(ids)) < len(ids):
            raise DuplicateArtifactError(
                f"artifact {taken or ids} is already on the board; nothing of this batch was added"
            )
        for artifact in artifacts:
            self._add(artifact)

    def _add(self, artifact: Artifact) -> None:
        self._items[artifact.id] = artifact
        self._seq[artifact.id] = len(self._seq)
        self._by_type.setdefault(artifact.type, []).append(artifact)
        self._by_corr.setdefault(artifact.correlation_id, []).append(artifact)

    async def get(self, artifact_id: UUID | str) -> Artifact | None:
        try:
            key = artifact_id if isinstance(artifact_id, UUID) else UUID(str(artifact_id))
        except ValueError:
            return None
        return self._items.get(key)

    async def get_many(self, artifact_ids: Iterable[UUID | str]) -> builtins.list[Artifact]:
        """The artifacts with these ids, in the order asked; unknown or malformed ids are skipped."""
        out: builtins.list[Artifact] = []
        for artifact_id in artifact_ids:
            try:
                key = artifact_id if isinstance(artifact_id, UUID) else UUID(str(artifact_id))
            except ValueError:
                continue
            found = self._items.get(key)
            if found is not None:
                out.append(found)
        return out

    async def list(self) -> builtins.list[Artifact]:
        return list(self._items.values())

    async def get_by_type(self, model: type[M], *, correlation_id: str | None = None) -> builtins.list[M]:
        name = type_name(model)
        found: Iterable[Artifact] = self._by_type.get(name, ())
        if correlation_id is not None:
            found = (a for a in found if a.correlation_id == correlation_id)
        return [model.model_validate(a.payload) for a in found]

    def _candidates(self, filters: FilterConfig) -> Iterable[Artifact]:
        if filters.correlation_id is not None:
            return self._by_corr.get(filters.correlation_id, ())
        if filters.type_names is not None:
            lists = [self._by_type.get(n, []) for n in sorted(filters.type_names)]
            if len(lists) == 1:
                return lists[0]
            return heapq.merge(*lists, key=lambda a: self._seq[a.id])
        return self._items.values()

    def _exact(self, filters: FilterConfig) -> builtins.list[Artifact] | None:
        """The full answer to ``filters`` when one index gives it, else ``None``.

        Lets a page of one workflow (the default context) or of one type cost O(page), not a scan
        of every artifact through :meth:`FilterConfig.matches`.
        """
        f = filters
        if (f.produced_by, f.tags, f.visibility, f.visible_to, f.start, f.end) != _UNSET:
            return None
        if f.correlation_id is not None:
            return self._by_corr.get(f.correlation_id, []) if f.type_names is None else None
        if f.type_names is not None:
            return self._by_type.get(next(iter(f.type_names)), []) if len(f.type_names) == 1 else None
        return list(self._items.values())

    async def query_artifacts(
        self, filters: FilterConfig | None = None, limit: int = 50, offset: int = 0
    ) -> tuple[builtins.list[Artifact], int]:
        filters = as_filters(filters)
        matched = self._exact(filters)
        if matched is None:
            now = utcnow()
            matched = [a for a in self._candidates(filters) if filters.matches(a, now)]
        return matched[offset : offset + limit], len(matched)

    async def count(self, filters: FilterConfig | None = None) -> int:
        filters = as_filters(filters)
        if filters == FilterConfig():
            return len(self._items)
        exact = self._exact(filters)
        if exact is not None:
            return len(exact)
        now = utcnow()
        return sum(1 for a in self._candidates(filters) if filters.matches(a, now))

    async def record_activation(self, record: ActivationRecord) -> None:
        self._in_flight[record.id] = record

    async def commit_activation(
        self, record: ActivationRecord, outputs: Sequence[Artifact], *, wait: bool = True
    ) -> None:
        for artifact in outputs:
            if artifact.id not in self._items:
                await self.put(artifact)
        self._consumed.update((i, record.agent, record.subscription) for i in record.input_ids)
        self._in_flight.pop(record.id, None)

    async def consumptions(self) -> set[tuple[UUID, str, int]]:
        return set(self._consumed)

    async def flush(self) -> None:
        """Nothing to wait for: every write is done when its call returns."""

    async def in_flight(self) -> builtins.list[ActivationRecord]:
        return list(self._in_flight.values())

    async def by_correlation(self, correlation_id: str) -> builtins.list[Artifact]:
        """Every artifact of one workflow, in publication order."""
        return list(self._by_corr.get(correlation_id, ()))
