"""Declaration-time checks: wiring mistakes fail where they are written, not in the middle of a run.

The builder calls these while it assembles an :class:`~flock.AgentSpec`. Each failure is a
:class:`~flock.ConfigurationError` that names the agent, the ``consumes()``/``publishes()`` call
and the fix. Checks that need what a signature can tell (how many arguments, annotated types) are
skipped for callables whose signature Python cannot read (some builtins).

Async callables: ``consumes(where=...)`` predicates and ``JoinSpec(by=...)`` may be async (the
router awaits them), as may ``calls()`` functions and tools. ``publishes(validate=..., where=...)``
and ``best_of`` scores run inside the engine's synchronous contract check, where a coroutine would
be truthy (a check that always passes), so async ones are refused here, and a sync one that
*returns* an awaitable fails its check when called instead of passing.
"""

from __future__ import annotations

import inspect
import typing
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from pydantic import BaseModel

from .errors import ConfigurationError
from .human import check_human

if typing.TYPE_CHECKING:
    from .spec import AgentSpec, Subscription


def describe(sub: Subscription) -> str:
    """``consumes(Ticket, Triage)`` plus what kind of subscription it is."""
    call = f"consumes({', '.join(t.__name__ for t in sub.types)})"
    if sub.batch is not None:
        return f"{call} with a batch"
    if sub.join is not None:
        return f"{call} (a join)"
    if len(set(sub.types)) > 1:
        return f"{call} (an AND gate)"
    if len(sub.types) > 1:
        return f"{call} (a count gate)"
    return call


def callable_name(func: Any) -> str:
    return str(getattr(func, "__name__", None) or type(func).__name__)


def is_async(func: Any) -> bool:
    """True for ``async def`` functions, partials of them and objects with an ``async __call__``."""
    call = getattr(func, "__call__", None)  # noqa: B004 - the bound __call__ of callable objects
    return any(
        inspect.iscoroutinefunction(f) or inspect.isasyncgenfunction(f) for f in (func, call) if f is not None
    )


def _signature(func: Any) -> inspect.Signature | None:
    try:
        return inspect.signature(func)
    except (TypeError, ValueError):  # builtins without a readable signature
        return None


def accepts(func: Any, positional: int, keywords: Sequence[str] = ()) -> bool | None:
    """Whether ``func(*[None] * positional, **{k: None for k in keywords})`` binds (None: unknown)."""
    sig = _signature(func)
    if sig is None:
        return None
    try:
        sig.bind(*([None] * positional), **dict.fromkeys(keywords))
    except TypeError:
        return False
    return True


def _positional_types(func: Any) -> list[Any] | None:
    """The annotated types of ``func``'s positional parameters (``None`` where not annotated)."""
    sig = _signature(func)
    if sig is None:
        return None
    try:
        hints = typing.get_type_hints(func)
    except Exception:  # unresolvable forward references: nothing to check against
        return None
    kinds = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    return [hints.get(p.name) for p in sig.parameters.values() if p.kind in kinds]


def _wrong_type(annotation: Any, model: type[BaseModel]) -> bool:
    """True only when ``annotation`` is a model class that ``model`` is not (unions etc. pass)."""
    return (
        isinstance(annotation, type)
        and issubclass(annotation, BaseModel)
        and not issubclass(model, annotation)
    )


class Checked:
    """A sync predicate/key function that refuses to return an awaitable (that would fail open)."""

    __slots__ = ("func", "what")

    def __init__(self, func: Callable[[Any], Any], what: str) -> None:
        self.func = func
        self.what = what

    def __call__(self, model: Any) -> Any:
        value = self.func(model)
        if inspect.isawaitable(value):
            if inspect.iscoroutine(value):
                value.close()  # never awaited on purpose: say so instead of a RuntimeWarning
            raise ConfigurationError(
                f"{self.what} returned an awaitable; it must be a plain (sync) function returning "
                "a value, e.g. lambda m: m.priority > 2"
            )
        return value

    def __repr__(self) -> str:
        return f"{callable_name(self.func)}"


class ForType:
    """A ``where=`` predicate that applies to members of one type of a gate; others pass.

    An async predicate's awaitable is returned as it is: the router awaits it.
    """

    __slots__ = ("func", "type")

    def __init__(self, type_: type[BaseModel], func: Callable[[Any], Any]) -> None:
        self.func = func
        self.type = type_

    def __call__(self, model: Any) -> Any:
        return not isinstance(model, self.type) or self.func(model)

    def __repr__(self) -> str:
        return f"{callable_name(self.func)} (for {self.type.__name__})"


def check_one_arg(
    func: Any, agent: str, what: str, model: type[BaseModel] | None = None, *, sync: bool = True
) -> None:
    """A predicate/key/validator: takes one model, annotated (if at all) with a fitting type, and
    with ``sync`` is not async."""
    if not callable(func):
        raise ConfigurationError(f"agent {agent!r}: {what} must be a callable, got {func!r}")
    name = callable_name(func)
    if sync and is_async(func):
        raise ConfigurationError(
            f"agent {agent!r}: {what} is async ({name}); it runs in the engine's synchronous output "
            "check, where a coroutine would count as true. Use a plain def (do any I/O in the "
            "agent's engine instead)"
        )
    if accepts(func, 1) is False:
        raise ConfigurationError(
            f"agent {agent!r}: {what} ({name}{_signature(func)}) must take exactly one argument, "
            "the artifact's model, e.g. lambda t: t.priority > 2"
        )
    types = _positional_types(func)
    if model is not None and types and _wrong_type(types[0], model):
        raise ConfigurationError(
            f"agent {agent!r}: {what} ({name}) is annotated for {types[0].__name__} but receives "
            f"{model.__name__} models; fix the annotation or the type it is attached to"
        )


def where_predicates(
    where: Any, models: tuple[type[BaseModel], ...], agent: str
) -> tuple[Callable[[Any], Any], ...]:
    """Normalise ``consumes(where=...)``: a callable, a list of callables or ``{Type: predicate}``.

    On a subscription with several distinct types a predicate must say which type it is for
    (``where={Triage: pred}``): a plain one would be called with members of every type.
    """
    call = f"consumes({', '.join(m.__name__ for m in models)})"
    if where is None:
        return ()
    if isinstance(where, Mapping):
        out: list[Callable[[Any], Any]] = []
        for key, value in where.items():
            if key not in models:
                known = ", ".join(m.__name__ for m in dict.fromkeys(models))
                raise ConfigurationError(
                    f"agent {agent!r}: {call} where= has a key {getattr(key, '__name__', key)!r} that is "
                    f"not one of its types ({known}); key the dict by those types"
                )
            preds = list(value) if isinstance(value, list | tuple) else [value]
            for pred in preds:
                check_one_arg(pred, agent, f"{call} where= predicate for {key.__name__}", key, sync=False)
                out.append(ForType(key, pred))
        return tuple(out)
    plain = [where] if callable(where) else list(where) if isinstance(where, list | tuple) else None
    if plain is None or not all(callable(p) for p in plain):
        raise ConfigurationError(
            f"agent {agent!r}: where= must be a callable, a list of callables, or a dict "
            f"{{Type: predicate}} per consumed type, got {where!r}"
        )
    distinct = list(dict.fromkeys(models))
    if plain and len(distinct) > 1:
        example = ", ".join(f"{m.__name__}: lambda {m.__name__[0].lower()}: ..." for m in distinct)
        raise ConfigurationError(
            f"agent {agent!r}: {call} is an AND gate of several types, so a plain where= would be "
            f"called with members of every type. Give one predicate per type: where={{{example}}} "
            "(a type without a predicate accepts every member)"
        )
    for pred in plain:
        check_one_arg(pred, agent, f"{call} where=", models[0], sync=False)
    return tuple(plain)


def check_join_by(join: Any, models: tuple[type[BaseModel], ...], agent: str) -> None:
    """``JoinSpec(by=...)`` is called with a member of each joined type."""
    by = join.by
    call = f"consumes({', '.join(m.__name__ for m in models)}) JoinSpec(by=...)"
    check_one_arg(by, agent, call, sync=False)
    types = _positional_types(by)
    if types:
        wrong = [m.__name__ for m in dict.fromkeys(models) if _wrong_type(types[0], m)]
        if wrong:
            raise ConfigurationError(
                f"agent {agent!r}: {call} ({callable_name(by)}) is annotated for "
                f"{types[0].__name__} but is also called with {', '.join(wrong)}; it receives a "
                "member of every joined type"
            )


def _inputs_per_activation(sub: Subscription) -> tuple[int, ...]:
    """How many positional models a function engine may receive for one activation."""
    if sub.batch is not None:
        return (1, sub.batch.size or 2)  # partial batches are flushed at idle or on timeout
    return (len(sub.types),)


def check_function_engine(spec: AgentSpec) -> None:
    """A ``calls(func)`` engine must accept the models each of the agent's subscriptions delivers."""
    from .function_engine import FunctionEngine

    if not spec.engines or not isinstance(spec.engines[0], FunctionEngine):
        return  # a later engine in a chain receives the previous engine's outputs instead
    engine = spec.engines[0]
    func, name = engine.func, callable_name(engine.func)
    keywords = sorted(engine._extras)
    for sub in spec.subscriptions:
        for n in _inputs_per_activation(sub):
            if accepts(func, n, keywords) is False:
                shape = ", ".join(t.__name__.lower() for t in sub.types) if sub.batch is None else "*items"
                raise ConfigurationError(
                    f"agent {spec.name!r}: calls({name}) cannot take what {describe(sub)} delivers: "
                    f"{n} model{'s' if n != 1 else ''} per activation, positionally, in declaration "
                    f"order. Its signature is {name}{_signature(func)}; write it as "
                    f"def {name if name.isidentifier() else 'handle'}({shape}): ..."
                )
        types = _positional_types(func)
        if types and sub.batch is None:
            for position, (annotation, model) in enumerate(zip(types, sub.types, strict=False)):
                if _wrong_type(annotation, model):
                    raise ConfigurationError(
                        f"agent {spec.name!r}: calls({name}) argument {position + 1} is annotated "
                        f"{annotation.__name__}, but {describe(sub)} passes a {model.__name__} there "
                        "(models arrive in the order the types are listed in consumes())"
                    )


def check_spec(spec: AgentSpec) -> None:
    """Checks that need several builder calls together (run after every builder change)."""
    check_function_engine(spec)
    if spec.human is not None:
        check_human(spec, spec.human)
