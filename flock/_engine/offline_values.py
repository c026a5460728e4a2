"""Schema-driven values for the offline model: valid, readable, deterministic.

:class:`Faker` builds JSON values from JSON schemas (enums, ranges, lengths, nested models, lists,
simple ``a|b`` patterns, common string formats) with strings derived from a *subject* taken from the
call's inputs. Fan-out counts come from the field description ("exactly 5", "between 2 and 4"),
the way a real model reads them.
"""

from __future__ import annotations

import json
import random
import re
import uuid
from typing import Any

from pydantic import BaseModel, TypeAdapter

_COUNT = re.compile(r"\b(?:exactly (\d+)|between (\d+) and (\d+))\b")
_SKIP_INPUTS = frozenset({"trajectory", "feedback", "context"})
_ALTERNATION = re.compile(r"\^?\(?((?:[\w .-]+\|)+[\w .-]+)\)?\$?")
_INDEX_SUFFIX = re.compile(r"\s*\(\d+\)$")
# Recursive models (a ``parent: Self | None``, a tree of children) would nest forever. From
# _SHALLOW levels down the faker takes the way out a schema offers (null, a scalar alternative, the
# fewest list items); below _DEEPEST an object is left empty, so a model that demands endless
# nesting gets an answer that fails validation (a typed contract error) instead of a RecursionError.
_SHALLOW = 3
_DEEPEST = 24


class Faker:
    """Builds JSON values from JSON schemas, readable and within every stated constraint."""

    def __init__(self, rng: random.Random, subject: str) -> None:
        self.rng = rng
        self.subject = subject
        self.defs: dict[str, Any] = {}
        self.building: list[str] = []  # the models being filled in, outermost first

    def field(self, name: str, info: Any) -> Any:
        annotation = info.annotation
        if annotation is str:
            return self.text(name, {})
        schema = TypeAdapter(annotation).json_schema()
        self.defs = schema.get("$defs", {})
        desc = (info.json_schema_extra or {}).get("desc") or info.description or ""
        count = count_from(desc)
        if count is not None and schema.get("type") == "array":
            lo, hi = count
            n = lo if lo == hi else self.rng.randint(lo, hi)
            return [self.value(schema.get("items", {}), name, i) for i in range(n)]
        return self.value(schema, name, None)

    def value(self, schema: dict[str, Any], name: str, index: int | None, depth: int = 0) -> Any:
        if "$ref" in schema:
            ref = schema["$ref"].rsplit("/", 1)[-1]
            resolved = {**self.defs.get(ref, {}), **{k: v for k, v in schema.items() if k != "$ref"}}
            self.building.append(ref)
            try:
                return self.value(resolved, name, index, depth)
            finally:
                self.building.pop()
        for key in ("anyOf", "oneOf", "allOf"):
            if key in schema:
                options = [o for o in schema[key] if o.get("type") != "null"] or schema[key]
                if depth >= _SHALLOW and key != "allOf":
                    if len(options) < len(schema[key]):
                        return None
                    ending = [o for o in options if o.get("$ref", "").rsplit("/", 1)[-1] not in self.building]
                    options = [o for o in ending if not _nests(o)] or ending or options
                return self.value(options[0], name, index, depth)
        if "const" in schema:
            return schema["const"]
        if "enum" in schema:
            return self.rng.choice(schema["enum"])
        kind = schema.get("type")
        if isinstance(kind, list):
            kind = next((k for k in kind if k != "null"), "null")
        if kind is None and "properties" in schema:
            kind = "object"
        if kind == "object":
            return self.obj(schema, depth, index) if depth <= _DEEPEST else {}
        if kind == "array":
            items = schema.get("items", {})
            lo = int(schema.get("minItems", 0))
            hi = int(schema.get("maxItems", max(lo, 2)))
            n = min(max(lo, 2), hi) if depth < 3 else lo
            return [self.value(items, name, i, depth + 1) for i in range(n)]
        if kind == "integer":
            return int(self.number(schema, integer=True))
        if kind == "number":
            return self.number(schema, integer=False)
        if kind == "boolean":
            return self.rng.random() < 0.5
        if kind == "null":
            return None
        if "default" in schema:
            return schema["default"]
        return self.text(name, schema, index)

    def obj(self, schema: dict[str, Any], depth: int, index: int | None = None) -> dict[str, Any]:
        props: dict[str, Any] = schema.get("properties", {})
        required = set(schema.get("required", props))
        out: dict[str, Any] = {}
        for prop, sub in props.items():
            if prop not in required and depth >= 2:
                continue
            out[prop] = self.value(sub, prop, index, depth + 1)
        return out

    def number(self, schema: dict[str, Any], *, integer: bool) -> float:
        step = 1 if integer else 0.01
        lo: float | None = schema.get("minimum")
        hi: float | None = schema.get("maximum")
        if lo is None and "exclusiveMinimum" in schema:
            lo = schema["exclusiveMinimum"] + step
        if hi is None and "exclusiveMaximum" in schema:
            hi = schema["exclusiveMaximum"] - step
        span = 10 if integer else 1.0
        if lo is None and hi is None:
            lo, hi = (1, 10) if integer else (0.1, 0.9)
        elif lo is None:
            lo = hi - span  # type: ignore[operator]
        elif hi is None:
            hi = lo + span
        assert lo is not None and hi is not None
        if integer:
            lo_i, hi_i = int(-(-lo // 1)), int(hi // 1)
            value: float = self.rng.randint(lo_i, hi_i) if lo_i <= hi_i else lo_i
            mult = schema.get("multipleOf")
            if isinstance(mult, int) and mult > 0:
                value = -(-lo_i // mult) * mult
            return value
        return round(lo + (hi - lo) * (0.25 + 0.5 * self.rng.random()), 4)

    def text(self, name: str, schema: dict[str, Any], index: int | None = None) -> str:
        fmt = schema.get("format")
        if fmt == "date-time":
            return "2026-01-01T12:00:00Z"
        if fmt == "date":
            return "2026-01-01"
        if fmt == "time":
            return "12:00:00"
        if fmt == "email":
            return "someone@example.com"
        if fmt in ("uri", "url"):
            return "https://example.com/" + re.sub(r"\W+", "-", self.subject.lower()).strip("-")[:40]
        if fmt == "uuid":
            return str(uuid.UUID(int=self.rng.getrandbits(128), version=4))
        pattern = schema.get("pattern")
        if isinstance(pattern, str):
            default = schema.get("default")
            if isinstance(default, str) and re.search(pattern, default):
                return default
            options = _ALTERNATION.fullmatch(pattern)
            if options:
                return str(self.rng.choice(options.group(1).split("|")))
        label = name.replace("_", " ").strip().capitalize() or "Value"
        text = f"{label} about {self.subject}" if self.subject else label
        if index is not None:
            text += f" ({index + 1})"
        lo = int(schema.get("minLength", 0))
        hi = schema.get("maxLength")
        while len(text) < lo:
            text += f" {self.subject or label}"
        if hi is not None:
            text = text[: int(hi)].rstrip() or text[: int(hi)]
            if len(text) < lo:
                text = (text + "x" * lo)[:lo]
        return text


def _nests(schema: dict[str, Any]) -> bool:
    """Whether an option can hold further values (a model, a list, a map) rather than end the nesting."""
    return "$ref" in schema or schema.get("type") in ("object", "array") or "properties" in schema


def count_from(desc: str) -> tuple[int, int] | None:
    m = _COUNT.search(desc)
    if m is None:
        return None
    if m.group(1):
        return int(m.group(1)), int(m.group(1))
    return int(m.group(2)), int(m.group(3))


def subject_of(sig: Any, inputs: dict[str, Any]) -> str:
    for name in sig.input_fields:
        if name in _SKIP_INPUTS or name not in inputs:
            continue
        found = _first_text(inputs[name])
        if found:
            found = _INDEX_SUFFIX.sub("", found)
            words = found.split()
            short = " ".join(words[:8])
            return short if len(short) <= 60 else short[:57].rstrip() + "..."
    return ""


def _first_text(value: Any) -> str | None:
    if isinstance(value, BaseModel):
        value = value.model_dump(mode="json")
    if isinstance(value, str):
        return value.strip() or None
    if isinstance(value, dict):
        value = list(value.values())
    if isinstance(value, list | tuple):
        for item in value:
            found = _first_text(item)
            if found:
                return found
    return None


def jsonable(value: Any) -> Any:
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json", by_alias=True)
    if isinstance(value, list | tuple):
        return [jsonable(v) for v in value]
    if isinstance(value, dict):
        return {k: jsonable(v) for k, v in value.items()}
    return value


def stable_json(value: Any) -> str:
    return json.dumps(jsonable(value), sort_keys=True, default=str)


def list_words(names: list[str]) -> str:
    items = [n.replace("_", " ") for n in names]
    if not items:
        return "the inputs"
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]
