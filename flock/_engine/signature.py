"""Semantic signatures: how an agent's declaration becomes one DSPy signature per output group.

Field names come from type names with ``inflection``::

    Task             -> task                  ResearchQuestion -> research_question
    APIResponse      -> api_response          fan-out Idea     -> ideas: list[Idea]
    consumes(Task, Task) or a batch of Task   -> tasks: list[Task]

Collision rules, applied in this order (deterministic, independent of dict or set order):

1. A name used on both sides (``consumes(Text).publishes(Text)``) gets a role prefix on both sides:
   ``input_text`` / ``output_text``. Names the engine or Python reserve (``context``, ``feedback``,
   ``reasoning``, ``trajectory``, keywords, attributes of Pydantic models such as ``json``) get the
   role prefix too: a type named ``Context`` becomes ``input_context``.
2. Any name still taken (two types that normalise to one name, e.g. ``app.Report`` and ``lib.Report``)
   gets ``_2``, ``_3``, ... in declaration order: inputs first, then outputs.

Nothing here imports DSPy until :meth:`AgentSignature.to_dspy` is called.
"""

from __future__ import annotations

import keyword
import re
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, get_args, get_origin

import inflection
from pydantic import BaseModel

from .._core.errors import ConfigurationError, UnknownAgentError
from .._core.spec import AgentSpec, OutputGroup, Subscription
from .._core.types import type_name

if TYPE_CHECKING:
    import dspy

CONTEXT_FIELD = "context"
FEEDBACK_FIELD = "feedback"
_ENGINE_NAMES = frozenset(
    {
        CONTEXT_FIELD,
        FEEDBACK_FIELD,
        "reasoning",
        "trajectory",
        "next_thought",
        "next_tool_name",
        "next_tool_args",
        "instructions",
        "signature",
        "input_fields",
        "output_fields",
        "fields",
        "append",
        "prepend",
        "insert",
        "delete",
        "equals",
    }
)
_RESERVED = _ENGINE_NAMES | frozenset(dir(BaseModel))
CONTEXT_DESCRIPTION = "Earlier artifacts, for reference."
FEEDBACK_DESCRIPTION = "Problems found in your previous answer. Produce a corrected answer."


@dataclass(frozen=True)
class SignatureField:
    """One field of a signature.

    Attributes:
        name: the field name the model sees, e.g. ``research_question``.
        type: the Python annotation, e.g. ``Task`` or ``list[Idea]``.
        description: what the model is told about the field, or ``None``.
        input: ``True`` for inputs, ``False`` for outputs.
        type_name: the registered artifact type behind the field (``None`` for ``context``).
        plural: whether the field holds a list of artifacts.
        count: for fan-out outputs, the declared ``(lo, hi)`` count.
    """

    name: str
    type: Any
    description: str | None
    input: bool
    type_name: str | None = None
    plural: bool = False
    count: tuple[int, int] | None = None

    @property
    def type_label(self) -> str:
        """The annotation as short text: ``Task``, ``list[Idea]``."""
        return _label(self.type)


@dataclass(frozen=True)
class AgentSignature:
    """The exact signature the engine sends for one output group of one agent.

    ``str()`` gives a readable summary; :meth:`to_dspy` the ``dspy.Signature`` class itself.
    """

    agent: str
    group: int
    inputs: tuple[SignatureField, ...]
    outputs: tuple[SignatureField, ...]
    instructions: str
    _dspy: list[Any] = field(default_factory=list, repr=False, compare=False, hash=False)

    @property
    def fields(self) -> tuple[SignatureField, ...]:
        """Inputs then outputs."""
        return self.inputs + self.outputs

    def field(self, name: str) -> SignatureField:
        """The field called ``name``; raises ``KeyError`` (naming the fields there are) if there is none."""
        for f in self.fields:
            if f.name == name:
                return f
        raise KeyError(f"no field {name!r} in this signature; its fields: {[f.name for f in self.fields]}")

    @property
    def spec(self) -> str:
        """The compact form: ``"task: Task -> summary: Summary, ideas: list[Idea]"``."""
        ins = ", ".join(f"{f.name}: {f.type_label}" for f in self.inputs)
        outs = ", ".join(f"{f.name}: {f.type_label}" for f in self.outputs)
        return f"{ins} -> {outs}"

    def with_feedback(self) -> AgentSignature:
        """This signature plus a ``feedback`` input, used to re-ask after a contract violation."""
        extra = SignatureField(FEEDBACK_FIELD, str, FEEDBACK_DESCRIPTION, input=True)
        return replace(self, inputs=(*self.inputs, extra), _dspy=[])

    def to_dspy(self) -> type[dspy.Signature]:
        """Build (once) and return the ``dspy.Signature`` class for this signature."""
        if not self._dspy:
            import dspy

            spec: dict[str, Any] = {}
            for f in self.fields:
                kind = dspy.InputField if f.input else dspy.OutputField
                tp = f.type if f.input else _prompt_type(f.type)
                spec[f.name] = (tp, kind(desc=f.description) if f.description else kind())
            self._dspy.append(dspy.Signature(spec, self.instructions))
        return self._dspy[0]

    def __str__(self) -> str:
        lines = [f"agent {self.agent!r}, output group {self.group}: {self.spec}", "instructions:"]
        lines += [f"    {line}" for line in self.instructions.splitlines()]
        for title, group in (("inputs:", self.inputs), ("outputs:", self.outputs)):
            lines.append(title)
            for f in group:
                desc = f"  # {f.description}" if f.description else ""
                lines.append(f"    {f.name}: {f.type_label}{desc}")
        return "\n".join(lines)


def _prompt_type(tp: Any) -> Any:
    """``tp`` with the Pydantic ``title`` noise removed from the JSON schema the model is shown.

    Output models are shown to the model as a JSON schema; every property carries a ``title`` that
    repeats its name. A same-named subclass drops them (about 15 characters per property). The engine
    re-validates every parsed value into the declared class, so the subclass never leaves the engine.
    """
    if get_origin(tp) is list:
        (item,) = get_args(tp)
        return list[_prompt_type(item)]  # type: ignore[misc]
    if not (isinstance(tp, type) and issubclass(tp, BaseModel)):
        return tp
    original: Any = tp.model_config.get("json_schema_extra")

    def strip(schema: dict[str, Any], cls: Any) -> None:
        if callable(original):
            original(schema, cls)
        elif isinstance(original, dict):
            schema.update(original)
        schema.pop("title", None)
        for prop in schema.get("properties", {}).values():
            if isinstance(prop, dict):
                prop.pop("title", None)

    config = {**tp.model_config, "json_schema_extra": strip}
    namespace = {
        "model_config": config,
        "__module__": tp.__module__,
        "__qualname__": tp.__qualname__,
        "__doc__": tp.__doc__,
    }
    try:
        return type(tp.__name__, (tp,), namespace)
    except (TypeError, ValueError):
        return tp  # a model that cannot be subclassed is shown with its titles, nothing worse


# --------------------------------------------------------------------------- naming


def field_base(name: str) -> str:
    """The singular field name for a registered type name: ``"APIResponse"`` -> ``"api_response"``.

    Dotted names keep their last part (``"shop.Order"`` -> ``"order"``); anything that is not a
    letter, digit or underscore becomes ``_``.
    """
    last = name.rsplit(".", 1)[-1]
    last = re.sub(r"[^0-9A-Za-z_]+", "_", last)
    out = re.sub(r"_+", "_", inflection.underscore(last)).strip("_").lower()
    if not out:
        out = "value"
    if out[0].isdigit():
        out = f"t_{out}"
    return out


def field_plural(name: str) -> str:
    """The plural field name: ``"Analysis"`` -> ``"analyses"``, ``"Story"`` -> ``"stories"``."""
    return str(inflection.pluralize(field_base(name)))


def _reserved(name: str, role: str = "input") -> bool:
    # TwoStepAdapter's extraction signature adds an input called ``text`` next to the outputs.
    if role == "output" and name == "text":
        return True
    return name in _RESERVED or keyword.iskeyword(name) or name.startswith("model_")


def _label(tp: Any) -> str:
    args = get_args(tp)
    origin = get_origin(tp)
    if origin is not None and args:
        name = getattr(origin, "__name__", str(origin))
        return f"{name}[{', '.join(_label(a) for a in args)}]"
    if isinstance(tp, type):
        return tp.__name__
    return str(tp).replace("typing.", "")


def _words(names: Sequence[str]) -> str:
    items = [n.replace("_", " ") for n in names]
    if len(items) <= 1:
        return "".join(items)
    return ", ".join(items[:-1]) + " and " + items[-1]


# --------------------------------------------------------------------------- shapes


@dataclass(frozen=True)
class InputShape:
    """One input field before naming: a type and whether it arrives as a list."""

    type: type[BaseModel]
    type_name: str
    plural: bool


def shape_from_subscription(sub: Subscription) -> tuple[InputShape, ...]:
    """Input shapes of a subscription: one per distinct type, plural for count gates and batches."""
    counts = sub.counts
    seen: dict[str, InputShape] = {}
    for tp, name in zip(sub.types, sub.type_names, strict=True):
        if name not in seen:
            seen[name] = InputShape(tp, name, plural=counts[name] > 1 or sub.batch is not None)
    return tuple(seen.values())


def shape_from_models(models: Sequence[BaseModel]) -> tuple[InputShape, ...]:
    """Input shapes of concrete input values (used when no subscription fired, e.g. ``invoke``)."""
    counts: dict[str, int] = {}
    types: dict[str, type[BaseModel]] = {}
    for m in models:
        name = type_name(type(m))
        counts[name] = counts.get(name, 0) + 1
        types.setdefault(name, type(m))
    return tuple(InputShape(types[n], n, plural=counts[n] > 1) for n in types)


# --------------------------------------------------------------------------- builder


def build_signature(
    agent: AgentSpec,
    group: OutputGroup,
    inputs: Sequence[InputShape],
    *,
    has_context: bool = False,
    instructions: str | None = None,
) -> AgentSignature:
    """Build the signature for one output group and one input shape. Pure and deterministic."""
    in_fields: list[SignatureField] = []
    for shape in inputs:
        name = field_plural(shape.type_name) if shape.plural else field_base(shape.type_name)
        tp: Any = list[shape.type] if shape.plural else shape.type  # type: ignore[name-defined]
        in_fields.append(SignatureField(name, tp, None, True, shape.type_name, shape.plural))

    out_fields: list[SignatureField] = []
    for decl in group.outputs:
        plural = decl.fan_out is not None
        name = field_plural(decl.type_name) if plural else field_base(decl.type_name)
        desc_parts: list[str] = []
        if decl.fan_out is not None:
            hi = decl.fan_out[1]
            noun = field_base(decl.type_name) if hi == 1 else name
            desc_parts.append(f"Generate {decl.count_text} {noun.replace('_', ' ')}.")
        if decl.description:
            desc_parts.append(decl.description)
        tp = list[decl.type] if plural else decl.type  # type: ignore[name-defined]
        out_fields.append(
            SignatureField(
                name, tp, " ".join(desc_parts) or None, False, decl.type_name, plural, decl.fan_out
            )
        )

    in_names = {f.name for f in in_fields}
    out_names = {f.name for f in out_fields}
    both = in_names & out_names
    in_fields = [_prefix(f, "input", both) for f in in_fields]
    out_fields = [_prefix(f, "output", both) for f in out_fields]
    if has_context:
        in_fields.append(SignatureField(CONTEXT_FIELD, list[dict], CONTEXT_DESCRIPTION, True))
    named = _dedupe([*in_fields, *out_fields])
    ins, outs = tuple(named[: len(in_fields)]), tuple(named[len(in_fields) :])

    if not outs:
        raise ConfigurationError(f"agent {agent.name!r}: output group {group.index} declares no outputs")
    text = _instructions(agent, group, ins, outs, instructions)
    return AgentSignature(agent.name, group.index, ins, outs, text)


def _prefix(f: SignatureField, role: str, both: set[str]) -> SignatureField:
    if f.name in both or _reserved(f.name, role):
        return replace(f, name=f"{role}_{f.name}")
    return f


def _dedupe(fields: list[SignatureField]) -> list[SignatureField]:
    taken: set[str] = set()
    out: list[SignatureField] = []
    for f in fields:
        name, n = f.name, 1
        while name in taken or (name != f.name and _reserved(name)):
            n += 1
            name = f"{f.name}_{n}"
        taken.add(name)
        out.append(f if name == f.name else replace(f, name=name))
    return out


def _instructions(
    agent: AgentSpec,
    group: OutputGroup,
    ins: Sequence[SignatureField],
    outs: Sequence[SignatureField],
    override: str | None,
) -> str:
    parts = [p.strip() for p in (override or agent.description, group.description) if p and p.strip()]
    data_ins = [f.name for f in ins if f.type_name is not None]
    sentence = f"Generate {_words([f.name for f in outs])}"
    sentence += f" from {_words(data_ins)}." if data_ins else "."
    parts.append(sentence)
    return "\n\n".join(parts)


# --------------------------------------------------------------------------- public inspection


def inspect_signature(
    target: Any,
    group: int = 0,
    *,
    agent: str | None = None,
    subscription: int = 0,
    context: bool = False,
) -> AgentSignature:
    """The signature the DSPy engine would send for an agent, without calling any model.

    ``target`` is an agent builder, an :class:`AgentSpec`, or a ``Flock`` together with
    ``agent="name"``. ``group`` picks the output group (the n-th ``publishes()`` call),
    ``subscription`` the ``consumes()`` call, ``context=True`` shows the ``context`` field that
    appears when the activation has context artifacts::

        sig = inspect_signature(writer)     # or inspect_signature(flock, agent="writer")
        print(sig)                # fields, types, descriptions and instructions
        sig.field("ideas").description   # 'Generate exactly 5 ideas.'
    """
    spec = _resolve_spec(target, agent)
    if not spec.output_groups:
        raise ConfigurationError(f"agent {spec.name!r} publishes nothing, so it has no signature")
    try:
        out_group = spec.output_groups[group]
    except IndexError:
        raise ConfigurationError(
            f"agent {spec.name!r} has {len(spec.output_groups)} output group(s); group={group} does not exist"
        ) from None
    shapes: tuple[InputShape, ...] = ()
    if spec.subscriptions:
        try:
            shapes = shape_from_subscription(spec.subscriptions[subscription])
        except IndexError:
            raise ConfigurationError(
                f"agent {spec.name!r} has {len(spec.subscriptions)} subscription(s); "
                f"subscription={subscription} does not exist"
            ) from None
    override = next((e.instructions for e in spec.engines if getattr(e, "instructions", None)), None)
    return build_signature(spec, out_group, shapes, has_context=context, instructions=override)


def _resolve_spec(target: Any, agent: str | None) -> AgentSpec:
    if isinstance(target, AgentSpec):
        return target
    spec = getattr(target, "spec", None)
    if isinstance(spec, AgentSpec):
        return spec
    specs_attr = getattr(target, "agents", None)
    if agent is None and isinstance(specs_attr, list | tuple) and len(specs_attr) == 1:
        only = getattr(specs_attr[0], "spec", specs_attr[0])
        if isinstance(only, AgentSpec):
            return only  # a Flock with a single agent needs no name
    if agent is not None:
        for attr in ("agent_spec", "get_agent"):
            fn = getattr(target, attr, None)
            if callable(fn):
                found = fn(agent)
                found = getattr(found, "spec", found)
                if isinstance(found, AgentSpec):
                    return found
        specs = getattr(target, "agents", None)
        if isinstance(specs, dict) and agent in specs:
            found = getattr(specs[agent], "spec", specs[agent])
            if isinstance(found, AgentSpec):
                return found
        if isinstance(specs, list | tuple):
            for item in specs:
                found = getattr(item, "spec", item)
                if isinstance(found, AgentSpec) and found.name == agent:
                    return found
    names = [getattr(getattr(s, "spec", s), "name", None) for s in specs_attr or ()]
    if isinstance(specs_attr, list | tuple) and names:
        if agent is not None:
            raise UnknownAgentError(f"inspect_signature: no agent named {agent!r}; declared agents: {names}")
        raise ConfigurationError(
            f"inspect_signature: this Flock has {len(names)} agents; name one: "
            f"inspect_signature(flock, agent={names[0]!r})"
        )
    raise ConfigurationError(
        f"inspect_signature needs an agent builder, an AgentSpec, or a Flock with agent='name'; "
        f"got {type(target).__name__}" + (f" and agent={agent!r}" if agent else "")
    )
