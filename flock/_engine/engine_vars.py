"""Engine parameters bound to runtime variables (``DSPyEngine(temperature=Var("creativity", default=0.7))``).

Any :class:`~flock.DSPyEngine` parameter listed in :data:`CHECKS` may be a :class:`~flock.Var`.
The engine then

* checks the variable's default when it is constructed (a declaration-time
  :class:`~flock.ConfigurationError`),
* registers every binding with ``flock.variables`` when it is attached with ``.with_engines()``,
  so that ``flock.variables.set()`` refuses a value the parameter cannot take, naming the
  parameter and what it accepts,
* resolves the bound values from the activation's snapshot (``ctx.variables``) when an activation
  starts, into an engine whose parameters hold plain values. Those engines are cached by the
  resolved values, so a model, adapter or program is built once per distinct value and setting
  a variable back reuses what was built before.
"""

from __future__ import annotations

import copy
from collections import OrderedDict
from collections.abc import Callable, Mapping
from typing import Any

from .._core.errors import ConfigurationError
from .._live.variables import Var

ADAPTER_NAMES = ("chat", "json", "xml", "two_step")


def _is_int(low: int) -> Callable[[Any], bool]:
    return lambda v: isinstance(v, int) and not isinstance(v, bool) and v >= low


def _model_ok(value: Any) -> bool:
    import dspy

    from .model_names import check_model_name

    if value is None or isinstance(value, dspy.BaseLM):
        return True
    try:
        check_model_name(value)
    except ConfigurationError:
        return False
    return True


def _adapter_ok(value: Any) -> bool:
    import dspy

    if value is None or value in ADAPTER_NAMES:
        return True
    if isinstance(value, type):
        return issubclass(value, dspy.Adapter)
    return isinstance(value, dspy.Adapter)


def _temperature_ok(value: Any) -> bool:
    return value is None or (
        isinstance(value, int | float) and not isinstance(value, bool) and 0 <= value <= 2
    )


CHECKS: dict[str, tuple[str, Callable[[Any], bool]]] = {
    "model": ("a model name such as 'openai/gpt-4.1' or 'offline', a dspy.BaseLM, or None", _model_ok),
    "instructions": ("a string or None", lambda v: v is None or isinstance(v, str)),
    "adapter": (
        f"a DSPy adapter (class or instance), one of {', '.join(map(repr, ADAPTER_NAMES))}, or None",
        _adapter_ok,
    ),
    "temperature": ("a number from 0 to 2, or None", _temperature_ok),
    "max_tokens": ("an int >= 1, or None", lambda v: v is None or _is_int(1)(v)),
    "max_tool_calls": ("an int >= 1", _is_int(1)),
    "max_reasks": ("an int >= 0", _is_int(0)),
    "retries": ("an int >= 0", _is_int(0)),
    "seed": ("an int", _is_int(-(2**63))),
    "cache": ("True or False", lambda v: isinstance(v, bool)),
    "adapter_fallback": ("True or False", lambda v: isinstance(v, bool)),
    "lm_kwargs": ("a dict of dspy.LM keyword arguments, or None", lambda v: v is None or isinstance(v, dict)),
    "n": ("an int >= 1", _is_int(1)),
    "threshold": ("a number", lambda v: isinstance(v, int | float) and not isinstance(v, bool)),
}
"""Bindable parameters: what each accepts (for messages) and the check of a value.

``program`` is checked by the engine itself: what it accepts depends on the programs it knows
and on whether it has a reward function."""


def take_vars(
    found: dict[str, Var], program_check: tuple[str, Callable[[Any], bool]], **params: Any
) -> dict[str, Any]:
    """Record the ``Var`` parameters in ``found`` and return every parameter with plain values.

    A ``Var``'s default is checked here (declaration time) and stands in for the parameter.
    """
    plain: dict[str, Any] = {}
    for name, value in params.items():
        if isinstance(value, Var):
            accepts, check = program_check if name == "program" else CHECKS[name]
            if not check(value.default):
                raise ConfigurationError(
                    f"DSPyEngine({name}={value!r}): the default {value.default!r} is not accepted; "
                    f"{name} takes {accepts}"
                )
            found[name] = value
            value = value.default
        plain[name] = value
    return plain


def _key(value: Any) -> Any:
    try:
        hash(value)
    except TypeError:
        return ("unhashable", type(value).__name__, repr(value))
    return (type(value).__name__, value)


class Resolver:
    """The engine's bound parameters, resolved per activation into cached plain-valued engines."""

    __slots__ = ("_engines", "bound", "limit")

    def __init__(self, bound: dict[str, Var], limit: int = 32) -> None:
        self.bound = bound
        self.limit = limit
        self._engines: OrderedDict[Any, Any] = OrderedDict()

    def values(self, variables: Mapping[str, Any]) -> dict[str, Any]:
        """The bound parameters' values in ``variables`` (defaults where unset)."""
        return {name: var.resolve(variables) for name, var in self.bound.items()}

    def engine(self, owner: Any, variables: Mapping[str, Any], checks: Mapping[str, Any]) -> Any:
        """``owner`` with the bound parameters set from ``variables`` (made once per distinct value)."""
        values = self.values(variables)
        key = tuple((name, _key(v)) for name, v in values.items())
        made = self._engines.get(key)
        if made is not None:
            self._engines.move_to_end(key)
            return made
        for name, value in values.items():
            accepts, check = checks[name]
            if not check(value):  # a value set without the binding (an engine outside a Flock)
                raise ConfigurationError(
                    f"variable {self.bound[name].name!r} = {value!r} cannot set DSPyEngine({name}=...): "
                    f"{name} takes {accepts}"
                )
        made = owner.resolved_copy(values)
        self._engines[key] = made
        if len(self._engines) > self.limit:
            self._engines.popitem(last=False)
        return made


def plain_copy(engine: Any, values: Mapping[str, Any], fresh: Mapping[str, Callable[[], Any]]) -> Any:
    """A shallow copy of ``engine`` with ``values`` set, no bindings, and fresh caches."""
    made = copy.copy(engine)
    for name, value in values.items():
        setattr(made, name, dict(value or {}) if name == "lm_kwargs" else value)
    for name, factory in fresh.items():
        setattr(made, name, factory())
    return made


def record_bound(values: Mapping[str, Any]) -> None:
    """Put the bound values on the current span (``flock.var.<parameter>``), when tracing."""
    from .engine_tracing import tracing_on

    if not values or not tracing_on():
        return
    from opentelemetry import trace

    span = trace.get_current_span()
    for name, value in values.items():
        shown = value if isinstance(value, str | bool | int | float) else repr(value)
        span.set_attribute(f"flock.var.{name}", shown)


def named_adapter(value: Any) -> Any:
    """An adapter given by name (``"json"``) as its DSPy class; anything else unchanged."""
    if not isinstance(value, str):
        return value
    import dspy

    classes = {"chat": dspy.ChatAdapter, "json": dspy.JSONAdapter, "xml": dspy.XMLAdapter}
    if value == "two_step":
        return dspy.TwoStepAdapter
    if value not in classes:
        raise ConfigurationError(f"unknown adapter {value!r}; choose one of {', '.join(ADAPTER_NAMES)}")
    return classes[value]
