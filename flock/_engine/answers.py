"""What goes into a DSPy call and what comes back out: the signature's input values from the
input models, and from a prediction the fresh, validated output models with every problem found
(field errors, then the declared counts), in the words a re-ask shows the model."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from dspy.utils.exceptions import AdapterParseError
from pydantic import BaseModel, ValidationError

from .._core.components import Context, EvalInputs
from .._core.contract import contract_errors
from .._core.errors import ConfigurationError
from .._core.spec import AgentSpec, OutputGroup
from .._core.types import type_name
from .signature import CONTEXT_FIELD, AgentSignature


def input_models(agent: AgentSpec, ctx: Context, inputs: EvalInputs) -> list[BaseModel]:
    if len(inputs.models) == len(inputs.artifacts):
        return list(inputs.models)
    known = {n: t for s in agent.subscriptions for t, n in zip(s.types, s.type_names, strict=True)}
    out: list[BaseModel] = []
    for art in inputs.artifacts:
        model = known.get(art.type)
        if model is None:
            raise ConfigurationError(
                f"agent {agent.name!r}: no model class known for input type {art.type!r}"
            )
        out.append(model.model_validate(art.payload))
    return out


def input_values(sig: AgentSignature, models: Sequence[BaseModel], ctx: Context) -> dict[str, Any]:
    values: dict[str, Any] = {}
    for f in sig.inputs:
        if f.type_name is None:
            continue
        found = [m for m in models if type_name(type(m)) == f.type_name]
        values[f.name] = found if f.plural else (found[0] if found else None)
    if any(f.name == CONTEXT_FIELD for f in sig.inputs):
        # Compact: the type names the payload (every character is paid for on every call).
        values[CONTEXT_FIELD] = [{a.type: a.payload} for a in ctx.artifacts]
    return values


def collect(
    sig: AgentSignature, group: OutputGroup, prediction: Any
) -> tuple[list[BaseModel], list[str], tuple[str | None, str, str]]:
    """Fresh, validated output models plus every problem found (field errors, then the contract)."""
    decls = {d.type_name: d for d in group.outputs}
    outputs: list[BaseModel] = []
    errors: list[str] = []
    first: tuple[str | None, str, str] | None = None
    for f in sig.outputs:
        decl = decls[f.type_name]  # type: ignore[index]
        value = getattr(prediction, f.name, None)
        if value is None:
            errors.append(f"`{f.name}` is missing")
            first = first or (f.type_name, f"a value for {f.name}", "missing")
            continue
        items = (value if isinstance(value, list) else [value]) if f.plural else [value]
        for i, item in enumerate(items):
            data = item.model_dump(by_alias=True) if isinstance(item, BaseModel) else item
            try:
                outputs.append(decl.type.model_validate(data))  # always a fresh instance
            except ValidationError as exc:
                where = f"{f.name}[{i}]" if f.plural else f.name
                errors.append(f"`{where}` is not a valid {decl.type_name}: {short(exc)}")
                first = first or (f.type_name, "valid fields", "invalid")
    counted = contract_errors(group, outputs)
    for tname, expected, actual, message in counted:
        field = next((x for x in sig.outputs if x.type_name == tname), None)
        first = first or (tname, expected, actual)
        if field is None or actual == "invalid":
            errors.append(message)
            continue
        invalid = sum(1 for e in errors if e.startswith(f"`{field.name}"))
        note = f" ({invalid} more were invalid)" if invalid else ""
        errors.append(f"`{field.name}` must hold {expected} {tname}, got {actual}{note}")
    return outputs, errors, first or (None, "", "")


def scored_output(sig: AgentSignature, group: OutputGroup, prediction: Any) -> Any:
    """What a reward function scores: the validated output (a list when several), or ``None``."""
    outputs, errors, _ = collect(sig, group, prediction)
    if errors or not outputs:
        return None
    return outputs[0] if len(outputs) == 1 else outputs


def keep_trace(trace: dict[str, Any], prediction: Any) -> None:
    reasoning = getattr(prediction, "reasoning", None)
    if reasoning:
        trace["reasoning"] = str(reasoning)
    trajectory = getattr(prediction, "trajectory", None)
    if trajectory:
        trace["trajectory"] = {
            k: v if isinstance(v, str | int | float | bool | dict | list) else str(v)
            for k, v in dict(trajectory).items()
        }


def short(exc: ValidationError) -> str:
    return "; ".join(f"{'.'.join(str(p) for p in e['loc']) or 'value'}: {e['msg']}" for e in exc.errors())


def parse_message(exc: AdapterParseError) -> str:
    """A short account of a parse failure (DSPy's own message repeats the whole answer)."""
    name = getattr(exc, "adapter_name", "the adapter")
    expected = ", ".join(getattr(getattr(exc, "signature", None), "output_fields", {}) or [])
    parsed = getattr(exc, "parsed_result", None)
    detail = " ".join(str(exc).split(f"Adapter {name} failed", 1)[0].split())
    if len(detail) > 500:
        detail = detail[:500] + " [...]"
    text = f"{name} expected the fields [{expected}]"
    if isinstance(parsed, dict):
        text += f", found [{', '.join(parsed)}]"
    return f"{text}; {detail}" if detail else text
