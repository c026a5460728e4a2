"""Runtime variables: typed values a running flock reads before every activation.

::

    flock.variables.set("creativity", 0.9)
    DSPyEngine(temperature=Var("creativity", default=0.7))

A variable's type is fixed when it is first declared: by ``Var(name, default=...)`` (the default's
type), by ``flock.variables.declare(name, default, type=...)``, or by its first ``set()``. A value
of the wrong type, or one an engine parameter bound to the variable cannot take, fails at
``set()`` with a :class:`~flock.ConfigurationError` that names the parameter and what it accepts.
Activations read an immutable snapshot when they start, so a change applies to the next
activation, never to one already running. Every change is an event (``flock.events()``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

from pydantic import TypeAdapter, ValidationError

from .._core.errors import ConfigurationError

_MISSING: Any = object()


class Var:
    """Binds an engine parameter to the runtime variable ``name``.

    Args:
        name: the variable's name in ``flock.variables``.
        default: the value while the variable is unset; its type becomes the variable's type.
        type: the variable's type when the default does not say it (``default=None``).
        durable: keep the variable's changes on the Flock's durable store, so a Flock that opens
            the same store later starts from the last value set (see ``Variables.declare``).
    """

    __slots__ = ("default", "durable", "name", "type")

    def __init__(
        self, name: str, default: Any = _MISSING, *, type: Any = None, durable: bool = False
    ) -> None:
        if not isinstance(name, str) or not name.strip():
            raise ConfigurationError(f"Var needs a non-empty variable name, got {name!r}")
        if default is _MISSING and type is None:
            raise ConfigurationError(
                f"Var({name!r}) needs a default (Var({name!r}, default=0.7)) or a type (type=float)"
            )
        self.name = name
        self.default = None if default is _MISSING else default
        self.type = type if type is not None else _type_of(self.default)
        self.durable = durable

    def resolve(self, values: Mapping[str, Any]) -> Any:
        """The variable's current value in ``values``, else the default."""
        return values.get(self.name, self.default)

    def __repr__(self) -> str:
        return f"Var({self.name!r}, default={self.default!r})"


@dataclass(frozen=True)
class Binding:
    """An engine parameter bound to a variable: who binds it and which values it accepts."""

    variable: str
    parameter: str
    owner: str
    accepts: str
    check: Callable[[Any], bool]


def _type_of(value: Any) -> Any:
    return Any if value is None else type(value)


class Variables:
    """The runtime variables of one Flock (``flock.variables``)."""

    def __init__(self, on_change: Callable[[str, Any], None] | None = None) -> None:
        self._values: Mapping[str, Any] = MappingProxyType({})
        self._types: dict[str, Any] = {}
        self._adapters: dict[str, tuple[Any, TypeAdapter[Any]]] = {}
        self._bindings: list[Binding] = []
        self._on_change = on_change
        self._durable: set[str] = set()
        self._unsaved: dict[str, Any] = {}  # durable changes not yet on the store
        self._saved: dict[str, Any] | None = None  # what the store held when first read
        self._dirty = False  # something to save or to read: sync() has work
        self.store: Any = None  # the Flock's store (set by the Flock)

    # ------------------------------------------------------------------ declaring
    def declare(self, name: str, default: Any = _MISSING, *, type: Any = None, durable: bool = False) -> None:
        """Fix the type of ``name`` (and set ``default`` if it has no value yet).

        ``durable=True`` keeps the variable on the Flock's durable store (SQLite, PostgreSQL): each
        change is saved there, and a Flock that opens the same store starts from the last value
        set instead of the default. Changes are written at the next ``publish``, run or
        ``resume`` (or now: ``await flock.variables.sync()``); saved values are read at the first
        of those. On the in-memory store a durable variable is an ordinary one.
        """
        tp = type if type is not None else _type_of(None if default is _MISSING else default)
        known = self._types.get(name)
        if known is not None and known is not Any and tp is not Any and known is not tp:
            raise ConfigurationError(
                f"variable {name!r} is already declared as {_name(known)}; it cannot also be {_name(tp)}"
            )
        if known is None or known is Any:
            self._types[name] = tp
        if durable and name not in self._durable:
            self._durable.add(name)
            self._dirty = True
            if self._saved is not None and name in self._saved and name not in self._unsaved:
                self._restore(name, self._saved[name])
        if default is not _MISSING and name not in self._values:
            self._assign(name, default, save=False)

    def bind(
        self, var: Var, *, parameter: str, owner: str, accepts: str, check: Callable[[Any], bool]
    ) -> None:
        """Record that ``owner``'s ``parameter`` reads ``var``; ``check`` validates new values."""
        self.declare(var.name, type=var.type, durable=var.durable)
        binding = Binding(var.name, parameter, owner, accepts, check)
        if not check(var.default):
            raise ConfigurationError(
                f"{owner}: the default of {var!r} for {parameter}= is not accepted; "
                f"{parameter} takes {accepts}"
            )
        self._bindings.append(binding)

    # ------------------------------------------------------------------ reading and writing
    def set(self, name: str, value: Any) -> None:
        """Set ``name`` to ``value`` (validated now; read by activations that start after this)."""
        self._assign(name, value, save=True)

    def _assign(self, name: str, value: Any, *, save: bool) -> None:
        if not isinstance(name, str) or not name:
            raise ConfigurationError(f"variable names are non-empty strings, got {name!r}")
        tp = self._types.setdefault(name, _type_of(value))
        value = self._checked(name, tp, value)
        for b in self._bindings:
            if b.variable == name and not b.check(value):
                raise ConfigurationError(
                    f"variable {name!r} = {value!r} is refused: it sets {b.parameter}= of {b.owner}, which "
                    f"takes {b.accepts}"
                )
        values = dict(self._values)
        values[name] = value
        self._values = MappingProxyType(values)
        if save and name in self._durable:
            self._unsaved[name] = value
            self._dirty = True
        if self._on_change is not None:
            self._on_change(name, value)

    # ------------------------------------------------------------------ durability
    @property
    def needs_sync(self) -> bool:
        """Whether :meth:`sync` has work: unsaved durable changes, or saved values not read yet."""
        return self._dirty

    async def sync(self) -> None:
        """Save the durable variables' unsaved changes to the store, and (the first time) read
        the values saved by earlier processes. The Flock calls it before it publishes or runs."""
        if not self._dirty:
            return
        self._dirty = False
        store = self.store
        if store is None or not getattr(store, "durable", True):
            self._unsaved.clear()
            return
        from .saved_vars import saved_artifacts, saved_values

        try:
            if self._saved is None:
                self._saved = saved = await saved_values(store)
                for name in self._durable:
                    if name in saved and name not in self._unsaved:
                        self._restore(name, saved[name])
            changes = dict(self._unsaved)
            adapters = {n: self._adapter(n, self._types.get(n, Any)) for n in changes}
            encoded = [(n, adapters[n].dump_python(v, mode="json")) for n, v in changes.items()]
            for (name, value), artifact in zip(changes.items(), saved_artifacts(encoded), strict=True):
                await store.put(artifact)
                self._saved[name] = value
                if self._unsaved.get(name, _MISSING) is value:  # not set again meanwhile
                    del self._unsaved[name]
        except BaseException:
            self._dirty = True  # what was not saved (or read) is tried again by the next sync()
            raise

    def _restore(self, name: str, raw: Any) -> None:
        tp = self._types.get(name, Any)
        try:
            value = self._adapter(name, tp).validate_python(raw)
            self._assign(name, value, save=False)
        except (ValidationError, ConfigurationError) as exc:
            why = exc.errors()[0]["msg"] if isinstance(exc, ValidationError) else str(exc)
            raise ConfigurationError(
                f"durable variable {name!r}: the value saved on the store ({raw!r}) is not accepted "
                f"any more ({why}); set a new value with flock.variables.set({name!r}, ...) or "
                "declare it without durable=True"
            ) from exc

    def get(self, name: str, default: Any = None) -> Any:
        return self._values.get(name, default)

    def __getitem__(self, name: str) -> Any:
        return self._values[name]

    def __contains__(self, name: object) -> bool:
        return name in self._values

    def snapshot(self) -> Mapping[str, Any]:
        """The current values, immutable (what an activation starting now reads)."""
        return self._values

    def types(self) -> dict[str, Any]:
        return dict(self._types)

    def __repr__(self) -> str:
        return f"Variables({dict(self._values)!r})"

    def _adapter(self, name: str, tp: Any) -> TypeAdapter[Any]:
        known = self._adapters.get(name)
        if known is None or known[0] is not tp:
            known = self._adapters[name] = (tp, TypeAdapter(tp))
        return known[1]

    def _checked(self, name: str, tp: Any, value: Any) -> Any:
        if tp is Any:
            return value
        if tp is float and isinstance(value, int) and not isinstance(value, bool):
            return float(value)
        try:
            return self._adapter(name, tp).validate_python(value, strict=True)
        except ValidationError as exc:
            accepts = "; ".join(
                f"{b.parameter}= of {b.owner} takes {b.accepts}" for b in self._bindings if b.variable == name
            )
            raise ConfigurationError(
                f"variable {name!r} holds {_name(tp)} values; {value!r} is not one"
                + (f" ({accepts})" if accepts else "")
                + f": {exc.errors()[0]['msg']}"
            ) from exc


def _name(tp: Any) -> str:
    return getattr(tp, "__name__", repr(tp))
