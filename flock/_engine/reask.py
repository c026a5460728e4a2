"""Re-asks that help weak models: the model's own previous answer plus the exact problems, briefly.

A small model rarely fixes an answer from a vague complaint ("could not be parsed"). What helps is
seeing what it wrote and, per field, what is wrong with it::

    Your previous answer:
    {"verdict": {"label": "good", "score": 1.5}}
    Problems:
    - `verdict.score`: Input should be less than or equal to 1

When the adapter could not parse the answer at all, the problems are found here: the answer is split
into the output fields the way the adapters write them (``[[ ## field ## ]]`` sections, a JSON
object, or ``<field>`` tags), and each field's value is validated against its declared type.
"""

from __future__ import annotations

import json
import re
from typing import Any

from pydantic import BaseModel, TypeAdapter, ValidationError

from .signature import AgentSignature

MAX_ANSWER_CHARS = 800
MAX_ERRORS = 6
_HEADER = re.compile(r"\[\[ ## (\w+) ## \]\]")


def feedback(previous: str | None, errors: list[str]) -> str:
    """The ``feedback`` input of a re-ask."""
    lines = []
    if previous:
        lines += ["Your previous answer:", _clip(previous.strip(), MAX_ANSWER_CHARS)]
    shown = errors[:MAX_ERRORS]
    more = len(errors) - len(shown)
    lines += ["Problems:", *(f"- {e}" for e in shown)]
    if more > 0:
        lines.append(f"- ... and {more} more")
    return "\n".join(lines)


def answer_text(sig: AgentSignature, prediction: Any) -> str:
    """A parsed answer shown back to the model, as one compact JSON object of its output fields."""
    values: dict[str, Any] = {}
    for f in sig.outputs:
        value = getattr(prediction, f.name, None)
        values[f.name] = _jsonable(value)
    return json.dumps(values, ensure_ascii=False, default=str)


def parse_problems(sig: AgentSignature, text: str) -> list[str]:
    """Per-field problems of an answer the adapter could not parse (empty when none are found)."""
    fields = _split(text, [f.name for f in sig.outputs])
    if fields is None:
        names = ", ".join(f"`{f.name}`" for f in sig.outputs)
        return [f"the answer could not be parsed: no output field found; answer with {names}"]
    problems: list[str] = []
    for f in sig.outputs:
        if f.name not in fields:
            problems.append(f"`{f.name}` is missing")
            continue
        value = fields[f.name]
        if isinstance(value, str):
            try:
                value = json.loads(value)
            except ValueError:
                problems.append(f"`{f.name}` is not valid JSON")
                continue
        try:
            TypeAdapter(f.type).validate_python(value)
        except ValidationError as exc:
            problems += [_error(f.name, e) for e in exc.errors()]
        if f.plural and f.count is not None and isinstance(value, list):
            lo, hi = f.count
            if not lo <= len(value) <= hi:
                want = f"exactly {lo}" if lo == hi else f"between {lo} and {hi}"
                problems.append(f"`{f.name}` must hold {want} items, got {len(value)}")
    return problems


def _split(text: str, names: list[str]) -> dict[str, Any] | None:
    """The output fields found in ``text``: ``[[ ## x ## ]]`` sections, a JSON object, or tags."""
    if _HEADER.search(text):
        parts = _HEADER.split(text)
        found = {}
        for name, body in zip(parts[1::2], parts[2::2], strict=False):
            if name in names and name not in found:
                found[name] = body.strip()
        return found or None
    stripped = text.strip()
    start = stripped.find("{")
    if start >= 0:
        end = stripped.rfind("}")
        try:
            obj = json.loads(stripped[start : end + 1])
        except ValueError:
            obj = None
        if isinstance(obj, dict) and any(n in obj for n in names):
            return {k: v for k, v in obj.items() if k in names}
    tags = {n: m.group(1) for n in names if (m := re.search(rf"<{n}>(.*?)</{n}>", text, re.S))}
    return tags or None


def _error(field: str, error: Any) -> str:
    loc = ".".join(str(p) for p in (field, *error.get("loc", ())))
    got = error.get("input")
    shown = ""
    if isinstance(got, int | float | bool) or (isinstance(got, str) and len(got) <= 40):
        shown = f" (got {json.dumps(got)})"
    return f"`{loc}`: {error.get('msg', 'invalid')}{shown}"


def _jsonable(value: Any) -> Any:
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json", by_alias=True)
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    return value


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 5] + " [..]"
