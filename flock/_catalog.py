"""What a Flock has declared: its agents' specs and its registered types.

The catalog is the one piece of declaration state that the builder writes and the router and the
runtime read. It knows nothing of running: collaborators get it instead of the ``Flock``.
"""

from __future__ import annotations

from pydantic import BaseModel, ValidationError

from ._artifact import Artifact
from ._errors import ConfigurationError, InputInvalid
from ._spec import AgentSpec
from ._types import TypeRegistry


class Catalog:
    """Agent specs by name and the type registry of one Flock.

    ``version`` grows with every change of a spec, so readers that index the specs (the router)
    know when to rebuild.
    """

    def __init__(self) -> None:
        self.specs: dict[str, AgentSpec] = {}
        self.types = TypeRegistry()
        self.version = 0

    def add(self, spec: AgentSpec) -> None:
        self.specs[spec.name] = spec
        self.version += 1

    replace = add

    def spec(self, name: str) -> AgentSpec:
        return self.specs[name]

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
