"""What a Flock has declared: its agents' specs, its registered types and its runtime variables.

The catalog is the one piece of declaration state that the builder writes and the router and the
runtime read. It knows nothing of running: collaborators get it instead of the ``Flock``.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any
from uuid import UUID, uuid4

from pydantic import BaseModel, ValidationError

from .._live.variables import Variables
from .artifact import EXTERNAL, Artifact, payload_of
from .errors import ConfigurationError, InputInvalid
from .spec import AgentSpec
from .types import TypeRegistry, require_instance
from .visibility import PUBLIC, Visibility, _Base


class Catalog:
    """Agent specs by name and the type registry of one Flock.

    ``version`` grows with every change of a spec, so readers that index the specs (the router)
    know when to rebuild.
    """

    def __init__(self, variables: Variables | None = None) -> None:
        self.specs: dict[str, AgentSpec] = {}
        self.types = TypeRegistry()
        self.variables = variables if variables is not None else Variables()
        self.version = 0

    def add(self, spec: AgentSpec) -> None:
        self.specs[spec.name] = spec
        self.version += 1

    replace = add

    def spec(self, name: str) -> AgentSpec:
        return self.specs[name]

    def check_artifact(self, obj: Artifact, **options: Any) -> Artifact:
        """A ready-made artifact someone publishes: no options beside it, a known type, not in an
        agent's name, a valid payload."""
        given = sorted(f"{name}=" for name, value in options.items() if value is not None)
        if given:
            raise ConfigurationError(
                f"publish() of a ready-made Artifact takes no {', '.join(given)}: the artifact carries "
                "its own. Set them on it (artifact.model_copy(update={...})) or publish the model "
                "instance with these options"
            )
        model = self.types.resolve(obj.type)
        if model is None:
            raise ConfigurationError(
                f"artifact type {obj.type!r} is unknown to this Flock: declare an agent that uses it "
                "or publish the model instance instead"
            )
        if obj.produced_by in self.specs:
            raise ConfigurationError(
                f"artifact {obj.id} claims produced_by={obj.produced_by!r}, an agent of this Flock; "
                "only that agent publishes under its name (from_agents filters trust it). Use another "
                f"producer name, or the default {EXTERNAL!r}"
            )
        try:  # an invalid payload would otherwise fail later, inside routing or an activation
            model.model_validate(obj.payload)
        except ValidationError as exc:
            raise ConfigurationError(
                f"artifact {obj.id} has a payload that is not a valid {obj.type}: {exc}"
            ) from exc
        return obj

    def new_artifact(
        self,
        obj: BaseModel,
        *,
        now: datetime,
        caller: str = "publish()",
        visibility: Visibility | None = None,
        correlation_id: str | UUID | None = None,
        partition_key: str | None = None,
        tags: Iterable[str] | None = None,
    ) -> Artifact:
        """The artifact of a model instance someone publishes (its type registered on the way); a
        new correlation id, a new workflow, unless one is given."""
        if not isinstance(obj, BaseModel):
            require_instance(obj, caller)
        if visibility is not None and not isinstance(visibility, _Base):
            raise ConfigurationError(f"publish(visibility=...) takes a visibility object, got {visibility!r}")
        return Artifact(
            type=self.types.register(type(obj)),
            payload=payload_of(obj),
            correlation_id=str(correlation_id) if correlation_id is not None else str(uuid4()),
            partition_key=partition_key,
            tags=_tags(tags),
            visibility=visibility or PUBLIC,
            created_at=now,
        )

    def model_of(self, artifact: Artifact) -> BaseModel:
        """The artifact's payload as its registered model.

        Raises :class:`InputInvalid` when the stored payload no longer validates (a model changed
        since it was stored), so one activation fails instead of the run.
        """
        model = self.types.resolve(artifact.type)
        if model is None:
            raise ConfigurationError(f"artifact type {artifact.type!r} is not registered in this Flock")
        try:
            return model.model_validate(artifact.payload)
        except ValidationError as exc:
            raise InputInvalid(
                f"artifact {artifact.id} ({artifact.type}) no longer validates as {model.__name__}: "
                f"{_first_lines(str(exc))}. Its stored payload does not fit today's model: make the "
                "model accept it (a default, an Optional field) or publish a corrected artifact",
                artifact_id=str(artifact.id),
            ) from exc


def _first_lines(text: str, n: int = 4) -> str:
    lines = text.splitlines()
    return "; ".join(lines[:n]) + (" …" if len(lines) > n else "")


def _tags(tags: object) -> frozenset[str]:
    if tags is None:
        return frozenset()
    if isinstance(tags, str):
        return frozenset([tags])
    if not isinstance(tags, Iterable) or not all(isinstance(t, str) for t in tags):
        raise ConfigurationError(f"publish(tags=...) takes a tag or a set of tags (strings), got {tags!r}")
    return frozenset(tags)
