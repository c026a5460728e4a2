"""Artifact types: the ``@flock_type`` decorator and the per-Flock type registry.

The decorator only stamps a name on the class; there is no process-global registry. Each ``Flock``
owns a :class:`TypeRegistry` that learns types as agents declare them or artifacts are published, so
two flocks in one process never see each other's types.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar, overload

from pydantic import BaseModel

from ._errors import NotAModelError, TypeConflictError

M = TypeVar("M", bound=type[BaseModel])

_NAME_ATTR = "__flock_type_name__"


@overload
def flock_type(cls: M, /) -> M: ...
@overload
def flock_type(*, name: str | None = None) -> Callable[[M], M]: ...
def flock_type(cls: Any = None, /, *, name: str | None = None) -> Any:
    """Mark a Pydantic model as a blackboard artifact type.

    ``@flock_type`` names the type after the class; ``@flock_type(name="custom.Name")`` chooses
    the name, which is what artifacts record in ``Artifact.type``::

        @flock_type
        class Idea(BaseModel):
            topic: str
    """

    def mark(model: Any) -> Any:
        require_model(model, "@flock_type")
        if name is not None and (not isinstance(name, str) or not name.strip()):
            raise TypeConflictError(f"@flock_type(name=...) needs a non-empty string, got {name!r}")
        # Set on the class itself (not inherited lookups) so subclasses get their own default name.
        type.__setattr__(model, _NAME_ATTR, name or model.__name__)
        return model

    if cls is None:
        return mark
    return mark(cls)


def require_model(obj: Any, where: str) -> type[BaseModel]:
    """Return ``obj`` if it is a Pydantic model class, else raise a helpful :class:`NotAModelError`."""
    if isinstance(obj, type) and issubclass(obj, BaseModel):
        return obj
    shown = getattr(obj, "__name__", repr(obj))
    if isinstance(obj, BaseModel):
        raise NotAModelError(
            f"{where} got an instance of {type(obj).__name__}, but needs the class: pass {type(obj).__name__}"
        )
    raise NotAModelError(
        f"{where} got `{shown}`, which is not a Pydantic model: "
        "make it a `pydantic.BaseModel` subclass and decorate it with `@flock_type`"
    )


def type_name(model: type[BaseModel]) -> str:
    """The registered name of a model class: its ``@flock_type`` name, else the class name."""
    own = model.__dict__.get(_NAME_ATTR)
    return own if isinstance(own, str) else model.__name__


class TypeRegistry:
    """Name ↔ class map owned by one Flock."""

    def __init__(self) -> None:
        self._by_name: dict[str, type[BaseModel]] = {}

    def register(self, model: type[BaseModel]) -> str:
        """Register ``model`` and return its name. Registering the same class twice is fine."""
        name = type_name(model)
        known = self._by_name.get(name)
        if known is None:
            self._by_name[name] = model
        elif known is not model:
            raise TypeConflictError(
                f"two different classes are named {name!r} ({known.__module__}.{known.__qualname__} and "
                f"{model.__module__}.{model.__qualname__}): give one a distinct name with "
                f'@flock_type(name="...")'
            )
        return name

    def resolve(self, name: str) -> type[BaseModel] | None:
        """The class registered under ``name``, or ``None``."""
        return self._by_name.get(name)

    def names(self) -> list[str]:
        return sorted(self._by_name)
