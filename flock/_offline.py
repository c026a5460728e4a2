"""The embedded ``"offline"`` model: deterministic, schema-faithful, no network.

It is a real ``dspy.LM`` with a custom engine, so every call goes through the real adapter path:
the adapter formats the prompt, the engine answers with text, the same adapter parses it. To know
what to answer, the engine reads the signature, adapter and input values of the call from a context
variable that a DSPy callback (:class:`SignatureTap`) sets when the adapter formats the prompt; the
engine installs that callback only for offline-family models. The answer is then rendered with the
adapter's own ``format_assistant_message_content`` (the code DSPy uses for few-shot demos), so it is
exactly what the adapter parses, for Chat, JSON, XML, BAML and TwoStep alike.

Values follow each output field's JSON schema: enums, ranges, string lengths, list lengths, nested
models, and fan-out counts stated in the field description ("exactly 5", "between 2 and 4").
Strings are readable and derived from the inputs. Regex ``pattern`` constraints are not solved.
"""

from __future__ import annotations

import hashlib
import inspect
import json
import random
import re
import uuid
from collections import OrderedDict
from collections.abc import Callable
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any, get_args

import dspy
from dspy.lm15 import Message, Response, TextPart, Usage
from dspy.utils.callback import BaseCallback
from pydantic import BaseModel, TypeAdapter

_CALL: ContextVar[tuple[Any, Any, dict[str, Any]] | None] = ContextVar("flock_offline_call", default=None)
_TOOLS: ContextVar[tuple[Any, ...]] = ContextVar("flock_offline_tools", default=())
_COUNT = re.compile(r"\b(?:exactly (\d+)|between (\d+) and (\d+))\b")
_SKIP_INPUTS = frozenset({"trajectory", "feedback", "context"})
_ALTERNATION = re.compile(r"\^?\(?((?:[\w .-]+\|)+[\w .-]+)\)?\$?")
_INDEX_SUFFIX = re.compile(r"\s*\(\d+\)$")


class SignatureTap(BaseCallback):
    """DSPy callback that records the signature, adapter and inputs of the prompt being formatted."""

    def on_adapter_format_start(self, call_id: str, instance: Any, inputs: dict[str, Any]) -> None:
        signature = inputs.get("signature")
        if signature is not None and hasattr(signature, "output_fields"):
            _CALL.set((instance, signature, dict(inputs.get("inputs") or {})))


def set_tools(tools: tuple[Any, ...]) -> Any:
    """Tell the offline model which ``dspy.Tool`` objects a ReAct program offers. Returns a reset token."""
    return _TOOLS.set(tools)


def reset_tools(token: Any) -> None:
    _TOOLS.reset(token)


@dataclass
class ModelCall:
    """One call to an offline-family model, as a scripted :class:`~flock.testing.FunctionModel` sees it.

    Attributes:
        index: 0 for the first call of this model, then 1, 2, ...
        messages: the chat messages as ``{"role", "content"}`` dicts, exactly as sent.
        signature: the ``dspy.Signature`` being answered (``None`` if unknown).
        adapter: the adapter that formatted the prompt.
        inputs: the input values of the call.
    """

    index: int
    messages: list[dict[str, str]]
    signature: Any
    adapter: Any
    inputs: dict[str, Any]
    _model: OfflineEngine = field(repr=False)

    @property
    def prompt(self) -> str:
        """All message contents joined, for ``in`` checks."""
        return "\n\n".join(m["content"] for m in self.messages)

    @property
    def output_fields(self) -> list[str]:
        return list(self.signature.output_fields) if self.signature is not None else []

    def values(self) -> dict[str, Any]:
        """The valid output values the offline model would produce."""
        return self._model.values(self)

    def format(self, values: dict[str, Any]) -> str:
        """Render output values (models, lists, dicts, strings) in this call's adapter format."""
        return self._model.render(self, values)

    def default(self) -> str:
        """The completion the offline model would send."""
        return self.format(self.values())


Responder = Callable[[ModelCall], Any]


class OfflineEngine:
    """A ``dspy.LM`` engine (``complete(Request) -> Response``) that answers without a network."""

    def __init__(self, seed: int = 0, responder: Responder | None = None) -> None:
        self.seed = seed
        self.responder = responder
        self.calls: list[ModelCall] = []

    # -- the engine protocol ------------------------------------------------------------
    def complete(self, request: Any) -> Response:
        call = self._call(request)
        result = self.responder(call) if self.responder is not None else call.default()
        if inspect.isawaitable(result):
            raise TypeError("an async responder needs the async path (await program.acall(...))")
        return self._response(call, result)

    async def acomplete(self, request: Any) -> Response:
        call = self._call(request)
        result = self.responder(call) if self.responder is not None else call.default()
        if inspect.isawaitable(result):
            result = await result
        return self._response(call, result)

    def stream(self, request: Any) -> Any:
        from dspy.lm15 import response_to_events

        return response_to_events(self.complete(request))

    def close(self) -> None:
        return None

    # -- internals ----------------------------------------------------------------------
    def _call(self, request: Any) -> ModelCall:
        messages: list[dict[str, str]] = []
        system = request.system
        if system is not None:
            text = system if isinstance(system, str) else "".join(getattr(p, "text", "") for p in system)
            messages.append({"role": "system", "content": text})
        messages.extend({"role": m.role, "content": m.text or ""} for m in request.messages)
        tapped = _CALL.get()
        adapter, signature, inputs = tapped if tapped is not None else (None, None, {})
        call = ModelCall(len(self.calls), messages, signature, adapter, inputs, self)
        self.calls.append(call)
        return call

    def _response(self, call: ModelCall, result: Any) -> Response:
        if isinstance(result, BaseException):
            raise result
        text = result if isinstance(result, str) else call.format(dict(result))
        n_in = max(1, len(call.prompt) // 4)
        n_out = max(1, len(text) // 4)
        return Response(
            id=f"offline-{call.index}",
            model="offline",
            message=Message.assistant([TextPart(text)]),
            finish_reason="stop",
            usage=Usage(input_tokens=n_in, output_tokens=n_out, total_tokens=n_in + n_out),
        )

    def values(self, call: ModelCall) -> dict[str, Any]:
        sig = call.signature
        if sig is None:
            return {}
        digest = hashlib.sha256(
            f"{self.seed}|{list(sig.output_fields)}|{_stable(call.inputs)}".encode()
        ).digest()
        faker = _Faker(random.Random(int.from_bytes(digest[:8], "big")), _subject(sig, call.inputs))
        if "text" in sig.input_fields and isinstance(call.inputs.get("text"), str):
            # TwoStepAdapter's extraction step: read back what the first step wrote.
            found = _read_two_step(call.inputs["text"], sig)
            if found is not None:
                return found
        if "next_tool_name" in sig.output_fields:
            return _react_step(faker, sig, call.inputs)
        values: dict[str, Any] = {}
        for name, info in sig.output_fields.items():
            if name == "reasoning":
                values[name] = (
                    f"Work out {_list_words([n for n in sig.output_fields if n != name])} "
                    f"from {_list_words(list(sig.input_fields))}."
                )
                continue
            values[name] = faker.field(name, info)
        return values

    def render(self, call: ModelCall, values: dict[str, Any]) -> str:
        sig, adapter = call.signature, call.adapter
        if sig is None:
            return json.dumps(_jsonable(values))
        if type(adapter).__name__ == "TwoStepAdapter":
            # Free text for the first step; values as JSON so the extraction step can read them back.
            return "\n\n".join(f"{k}: {json.dumps(_jsonable(v))}" for k, v in values.items())
        if adapter is None:
            adapter = dspy.ChatAdapter()
        # JSON data, not model instances: instances would be dumped by field name, but the schema
        # the model is shown (and the parser) uses aliases.
        data = {k: _jsonable(v) for k, v in values.items()}
        return str(adapter.format_assistant_message_content(sig, data))


class OfflineLM(dspy.LM):
    """The ``"offline"`` language model as a ``dspy.LM``. Deterministic for a given ``seed``.

    ``responder`` (used by :class:`~flock.testing.FunctionModel`) replaces the answer: it receives a
    :class:`ModelCall` and returns raw text, a dict of output values, or an exception to raise.
    """

    flock_offline = True

    def __init__(
        self,
        seed: int = 0,
        *,
        responder: Responder | None = None,
        model: str = "offline",
        announce: bool = True,
    ) -> None:
        engine = OfflineEngine(seed, responder)
        super().__init__(model, engine=engine, async_engine=_AsyncEngine(engine), cache=False, num_retries=0)
        self.offline_engine = engine
        self.announce = announce

    @property
    def calls(self) -> list[ModelCall]:
        """Every call this model answered, in order."""
        return self.offline_engine.calls


class _AsyncEngine:
    def __init__(self, engine: OfflineEngine) -> None:
        self.engine = engine

    async def complete(self, request: Any) -> Response:
        return await self.engine.acomplete(request)

    async def stream(self, request: Any) -> Any:
        for event in self.engine.stream(request):
            yield event

    async def aclose(self) -> None:
        return None


# --------------------------------------------------------------------------- value generation


class _Faker:
    """Builds JSON values from JSON schemas, readable and within every stated constraint."""

    def __init__(self, rng: random.Random, subject: str) -> None:
        self.rng = rng
        self.subject = subject
        self.defs: dict[str, Any] = {}

    def field(self, name: str, info: Any) -> Any:
        annotation = info.annotation
        if annotation is str:
            return self.text(name, {})
        schema = TypeAdapter(annotation).json_schema()
        self.defs = schema.get("$defs", {})
        desc = (info.json_schema_extra or {}).get("desc") or info.description or ""
        count = _count_from(desc)
        if count is not None and schema.get("type") == "array":
            lo, hi = count
            n = lo if lo == hi else self.rng.randint(lo, hi)
            return [self.value(schema.get("items", {}), name, i) for i in range(n)]
        return self.value(schema, name, None)

    def value(self, schema: dict[str, Any], name: str, index: int | None, depth: int = 0) -> Any:
        if "$ref" in schema:
            schema = {
                **self.defs.get(schema["$ref"].rsplit("/", 1)[-1], {}),
                **{k: v for k, v in schema.items() if k != "$ref"},
            }
        for key in ("anyOf", "oneOf", "allOf"):
            if key in schema:
                options = [o for o in schema[key] if o.get("type") != "null"] or schema[key]
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
            return self.obj(schema, depth, index)
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


def _react_step(faker: _Faker, sig: Any, inputs: dict[str, Any]) -> dict[str, Any]:
    names = list(get_args(sig.output_fields["next_tool_name"].annotation))
    trajectory = str(inputs.get("trajectory") or "")
    tools = {t.name: t for t in _TOOLS.get()}
    real = [n for n in names if n != "finish"]
    if "observation_" in trajectory or not real:
        return {"next_thought": "I have what I need.", "next_tool_name": "finish", "next_tool_args": {}}
    name = real[0]
    tool = tools.get(name)
    args_schema = {"type": "object", "properties": dict(getattr(tool, "args", {}) or {})}
    args = faker.obj(args_schema, 0)
    return {
        "next_thought": f"Call {name} to learn about {faker.subject}.",
        "next_tool_name": name,
        "next_tool_args": args,
    }


def _read_two_step(text: str, sig: Any) -> dict[str, Any] | None:
    found: dict[str, Any] = {}
    for block in text.split("\n\n"):
        key, sep, rest = block.partition(": ")
        if sep and key.strip() in sig.output_fields:
            try:
                found[key.strip()] = json.loads(rest)
            except ValueError:
                return None
    return found if set(found) == set(sig.output_fields) else None


def _count_from(desc: str) -> tuple[int, int] | None:
    m = _COUNT.search(desc)
    if m is None:
        return None
    if m.group(1):
        return int(m.group(1)), int(m.group(1))
    return int(m.group(2)), int(m.group(3))


def _subject(sig: Any, inputs: dict[str, Any]) -> str:
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


def _jsonable(value: Any) -> Any:
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json", by_alias=True)
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    return value


def _stable(value: Any) -> str:
    return json.dumps(_jsonable(value), sort_keys=True, default=str)


def _list_words(names: list[str]) -> str:
    items = [n.replace("_", " ") for n in names]
    if not items:
        return "the inputs"
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


_ANNOUNCED: OrderedDict[str, None] = OrderedDict()


def announce_once(run_id: str) -> bool:
    """True the first time ``run_id`` is seen. Remembers the last 1,024 runs.

    Module level on purpose: the offline notice is once per *run*, across every engine in it, and
    run ids are unique, so two Flocks never see each other's entries.
    """
    if run_id in _ANNOUNCED:
        return False
    _ANNOUNCED[run_id] = None
    while len(_ANNOUNCED) > 1024:
        _ANNOUNCED.popitem(last=False)
    return True


def is_offline(lm: Any) -> bool:
    """Whether ``lm`` is an offline-family model (offline, TestModel, FunctionModel)."""
    return bool(getattr(lm, "flock_offline", False))
