"""Artifact types: the ``@flock_type`` decorator and the per-Flock type registry.

The decorator only stamps a name on the class; there is no process-global registry. Each ``Flock``
owns a :class:`TypeRegistry` that learns types as agents declare them or artifacts are published, so
two flocks in one process never see each other's types.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar, get_args, get_origin, overload

from pydantic import BaseModel, Secret, SecretBytes, SecretStr

from .errors import ConfigurationError, NotAModelError, TypeConflictError

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

    Secret fields (``SecretStr``, ``SecretBytes``, ``Secret[...]``, also inside nested models and
    containers) raise :class:`ConfigurationError`: an artifact is stored on the board, shown to
    other agents as context and recorded in traces, so a secret has no place in one. Read it where
    it is used (environment, a tool, ``lm_kwargs``) and keep a reference in a plain field.
    """

    def mark(model: Any) -> Any:
        require_model(model, "@flock_type")
        refuse_secrets(model)
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
        f"{where} got `{shown}`, which is not a Pydantic model: make it a `pydantic.BaseModel` "
        "subclass (`@flock_type` is optional; it chooses the name artifacts record)"
    )


def require_instance(obj: Any, where: str) -> BaseModel:
    """Return ``obj`` if it is a Pydantic model instance, else raise a helpful :class:`NotAModelError`."""
    if isinstance(obj, BaseModel):
        return obj
    if isinstance(obj, type) and issubclass(obj, BaseModel):
        raise NotAModelError(
            f"{where} got the class {obj.__name__}, but needs an instance: pass {obj.__name__}(...) "
            "with its field values"
        )
    require_model(obj, where)  # raises: not a model at all
    raise AssertionError("unreachable")  # pragma: no cover


_SECRETS = (SecretStr, SecretBytes, Secret)


def refuse_secrets(model: type[BaseModel]) -> None:
    """Raise :class:`ConfigurationError` if ``model`` (or a model inside it) has a secret field.

    An artifact is stored, shown to other agents as context and recorded in traces; pydantic's
    secret types would reach the consuming agent as ``'**********'`` (silently useless) and must
    never be stored in clear either. So they are refused where the type is declared.
    """
    found = _secret_field(model, model.__name__, set())
    if found is not None:
        path, kind = found
        raise ConfigurationError(
            f"{path} is a {kind}: artifacts are stored on the board, shown to other agents as context "
            f"and recorded in traces, so Flock does not carry secrets in them (a {kind} would reach "
            "the consuming agent as '**********'). Keep the secret out of the artifact: read it from "
            "the environment, a tool or DSPyEngine(lm_kwargs=...) where it is used, and put a reference "
            "(the name of the key or account) in a plain str field instead"
        )


def _secret_field(model: type[BaseModel], path: str, seen: set[type]) -> tuple[str, str] | None:
    if model in seen:
        return None
    seen.add(model)
    for name, field in model.model_fields.items():
        found = _secret_in(field.annotation, f"{path}.{name}", seen)
        if found is not None:
            return found
    return None


def _secret_in(annotation: Any, path: str, seen: set[type]) -> tuple[str, str] | None:
    origin = get_origin(annotation)
    if isinstance(origin, type) and issubclass(origin, _SECRETS):
        return path, origin.__name__
    if isinstance(annotation, type):
        if issubclass(annotation, _SECRETS):
            return path, annotation.__name__
        if issubclass(annotation, BaseModel):
            return _secret_field(annotation, path, seen)
    for arg in get_args(annotation):  # Optional, unions, lists, dicts, Annotated
        found = _secret_in(arg, path, seen)
        if found is not None:
            return found
    return None


def type_name(model: type[BaseModel]) -> str:
    """The registered name of a model class: its ``@flock_type`` name, else the class name."""
    try:
        own = model.__dict__.get(_NAME_ATTR)
        return own if isinstance(own, str) else model.__name__
    except AttributeError:  # not a class: say so here rather than deep inside a store
        if isinstance(model, str):
            raise NotAModelError(
                f"got the type name {model!r} where a model class is needed: pass the class itself "
                f"({model.rsplit('.', 1)[-1]}), not its name"
            ) from None
        require_model(model, "a call that takes a model class")
        raise


class TypeRegistry:
    """Name ↔ class map owned by one Flock."""

    def __init__(self) -> None:
        self._by_name: dict[str, type[BaseModel]] = {}

    def register(self, model: type[BaseModel]) -> str:
        """Register ``model`` and return its name. Registering the same class twice is fine."""
        name = type_name(model)
        known = self._by_name.get(name)
        if known is None:
            refuse_secrets(model)  # once per type; a @flock_type class was checked already
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
