"""The artifact: one immutable, typed value on the blackboard."""

from __future__ import annotations

import builtins
from datetime import UTC, datetime
from typing import Any, TypeVar
from uuid import UUID, uuid4

from pydantic import BaseModel, ConfigDict, Field

from .types import type_name
from .visibility import PUBLIC, Visibility

M = TypeVar("M", bound=BaseModel)

EXTERNAL = "external"
"""``produced_by`` of artifacts published from outside any agent."""


def utcnow() -> datetime:
    return datetime.now(UTC)


def payload_of(model: BaseModel) -> dict[str, Any]:
    """A model as an artifact payload: JSON-compatible, keyed by alias so it validates back."""
    return model.model_dump(mode="json", by_alias=True)


class Artifact(BaseModel):
    """A published value. Frozen: artifacts are never changed or overwritten.

    Attributes:
        id: unique id (UUID4).
        type: registered type name (see ``@flock_type``).
        payload: the model's fields as JSON-compatible data.
        produced_by: the agent's name, or ``"external"``.
        correlation_id: the workflow this artifact belongs to. New for external publishes unless
            given; inherited by every output of an agent.
        partition_key: optional key for the user's own partitioning, inherited like the correlation id.
        tags: free-form labels for subscriptions (``consumes(..., tags={...})``) and queries.
        visibility: who may see it (see :mod:`flock` visibility types).
        created_at: publication time (UTC).
        version: schema/record version, 1 for now.
        consumed_from: lineage, the ids of the artifacts this one was made from.
        prompt_version: for outputs of an LLM engine, the version of the prompt that produced
            them (a short content hash, or the label from ``.prompt_version("v2")``); else ``None``.
    """

    # NaN and the infinities are valid floats that JSON has no words for: written as the constants
    # NaN / Infinity / -Infinity (as Python's json module does), they read back as the same floats.
    # Pydantic's default writes null, which a float field then refuses.
    model_config = ConfigDict(frozen=True, ser_json_inf_nan="constants")

    id: UUID = Field(default_factory=uuid4)
    type: str
    payload: dict[str, Any]
    produced_by: str = EXTERNAL
    correlation_id: str = Field(default_factory=lambda: str(uuid4()))
    partition_key: str | None = None
    tags: frozenset[str] = frozenset()
    visibility: Visibility = PUBLIC
    created_at: datetime = Field(default_factory=utcnow)
    version: int = 1
    consumed_from: tuple[UUID, ...] = ()
    prompt_version: str | None = None

    @property
    def lineage(self) -> tuple[UUID, ...]:
        """The ids this artifact was made from (alias of ``consumed_from``)."""
        return self.consumed_from

    def is_a(self, model: builtins.type[BaseModel]) -> bool:
        """Whether this artifact holds a ``model`` (compared by registered type name)."""
        return self.type == type_name(model)

    def as_model(self, model: builtins.type[M]) -> M:
        """Validate the payload into ``model``."""
        return model.model_validate(self.payload)
