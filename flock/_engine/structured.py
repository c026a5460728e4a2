"""Structured outputs: send the output group's JSON schema so the provider constrains decoding.

The schema is one JSON object with one property per output field of the engine's semantic
signature (``movie``, ``pitches``, ...). A fan-out field is an array with ``minItems``/``maxItems``
set to the declared count; each item is the output model's own JSON schema, so the constraints
JSON Schema can state (``minimum``, ``maxLength``, ``enum``, ``pattern``, ...) travel with it.
Whatever a grammar cannot enforce is still checked by the engine after parsing, with re-asks.

Providers spell the request differently. In ``"auto"`` mode the engine tries, per model:

1. ``{"type": "json_schema", "json_schema": {"name", "schema", "strict"}}`` (OpenAI, vLLM, Ollama,
   LM Studio, Gemini's OpenAI endpoint, ...);
2. ``{"type": "json_object", "schema": {...}}`` when (1) is refused (llama-cpp-python's server
   answers 422 to the first form);
3. no ``response_format`` at all (prompt-only) when (2) is refused too.

What worked is remembered per model (and server address) in the Flock's per-Flock engine state
(``ModelSettings.shared``), so the probing costs one refused request per model and Flock, and the
form used is set on the evaluate span as ``flock.structured_outputs``.
"""

from __future__ import annotations

import functools
import logging
import math
from contextvars import ContextVar
from typing import Any, get_args, get_origin

from pydantic import TypeAdapter

from .._core.errors import ConfigurationError, ProviderError
from .._providers.provider_errors import PROBING_FORMAT, refused
from .signature import AgentSignature

logger = logging.getLogger("flock")

MODES = ("auto", "json_schema", "off")
SCHEMA_FORMS = ("json_schema", "json_object")
PROMPT = "prompt"
STATE_KEY = "structured_outputs"
SPAN_ATTRIBUTE = "flock.structured_outputs"

# The form the engine chose for the call in progress (None: Flock leaves the request alone).
# The engine's JSONAdapter copy reads it so that DSPy's own response_format does not replace Flock's.
_FORM: ContextVar[str | None] = ContextVar("flock_structured_form", default=None)


class StructuredOutputsRefused(ProviderError):
    """``structured_outputs="json_schema"`` was asked for, but the provider refused every schema form."""


def check_mode(mode: Any) -> str:
    """Validate ``DSPyEngine(structured_outputs=...)``."""
    if mode not in MODES:
        raise ConfigurationError(
            f"DSPyEngine(structured_outputs={mode!r}): choose one of {', '.join(repr(m) for m in MODES)}"
        )
    return str(mode)


# --------------------------------------------------------------------------- the schema


def output_schema(sig: AgentSignature, *, reasoning: bool = False) -> dict[str, Any]:
    """The JSON schema of one answer to ``sig``: an object with one property per output field."""
    properties: dict[str, Any] = {}
    defs: dict[str, Any] = {}
    if reasoning:
        properties["reasoning"] = {"type": "string"}
    for f in sig.outputs:
        item_type = get_args(f.type)[0] if f.plural and get_origin(f.type) is list else f.type
        item = _clean(TypeAdapter(item_type).json_schema())
        defs.update(item.pop("$defs", {}))
        if f.plural:
            lo, hi = f.count or (0, None)
            prop: dict[str, Any] = {"type": "array", "items": item, "minItems": lo}
            if hi is not None:
                prop["maxItems"] = hi
        else:
            prop = item
        if f.description:
            prop = {**prop, "description": f.description}
        properties[f.name] = prop
    schema: dict[str, Any] = {
        "type": "object",
        "properties": properties,
        "required": list(properties),
        "additionalProperties": False,
    }
    if defs:
        schema["$defs"] = defs
    return schema


def response_format(form: str, name: str, schema: dict[str, Any]) -> dict[str, Any] | None:
    """The ``response_format`` request value for ``form`` (``None`` for prompt-only)."""
    if form == "json_schema":
        inner: dict[str, Any] = {"name": name, "schema": schema}
        strict = _strict(schema)
        if strict is not None:
            inner["schema"], inner["strict"] = strict, True
        return {"type": "json_schema", "json_schema": inner}
    if form == "json_object":
        return {"type": "json_object", "schema": _ranges_as_enums(schema)}
    return None


def _ranges_as_enums(node: Any) -> Any:
    """``node`` with small numeric ranges spelled as ``enum``s, which grammars can enforce.

    llama.cpp's schema-to-grammar conversion (the ``json_object`` form) ignores ``minimum`` and
    ``maximum`` on numbers: a small model then writes ``"score": 10`` for a score in [0, 1], and
    re-asks rarely change its mind. An integer range of at most 200 values becomes that enum; a
    number range no wider than 2 becomes its values in steps of 0.01. Wider ranges stay as they are
    (the engine still checks them after parsing).
    """
    if isinstance(node, list):
        return [_ranges_as_enums(x) for x in node]
    if not isinstance(node, dict):
        return node
    out = {k: _ranges_as_enums(v) if k not in ("properties", "$defs") else v for k, v in node.items()}
    for key in ("properties", "$defs"):
        if isinstance(node.get(key), dict):
            out[key] = {name: _ranges_as_enums(sub) for name, sub in node[key].items()}
    values = _range_values(node)
    if values is not None:
        for key in ("type", "minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum"):
            out.pop(key, None)
        out["enum"] = values
    return out


def _range_values(node: dict[str, Any]) -> list[float] | list[int] | None:
    kind = node.get("type")
    if kind not in ("number", "integer") or "enum" in node or "const" in node:
        return None
    lo = node.get("minimum", node.get("exclusiveMinimum"))
    hi = node.get("maximum", node.get("exclusiveMaximum"))
    if not isinstance(lo, int | float) or not isinstance(hi, int | float) or hi < lo:
        return None
    if kind == "integer":
        ints = [i for i in range(math.ceil(lo), math.floor(hi) + 1) if _inside(i, node)]
        return ints if 0 < len(ints) <= 200 else None
    if hi - lo > 2:
        return None
    start = math.ceil(round(lo * 100, 6))
    nums = [round(i / 100, 2) for i in range(start, math.floor(round(hi * 100, 6)) + 1)]
    nums = [int(v) if v == int(v) else v for v in nums if _inside(v, node)]
    return nums or None


def _inside(value: float, node: dict[str, Any]) -> bool:
    low, high = node.get("exclusiveMinimum"), node.get("exclusiveMaximum")
    return (low is None or value > low) and (high is None or value < high)


def _clean(node: Any) -> Any:
    """A JSON schema without Pydantic's ``title`` noise (property *names* called title stay)."""
    if isinstance(node, dict):
        out: dict[str, Any] = {}
        for key, value in node.items():
            if key == "title" and isinstance(value, str):
                continue
            if key in ("properties", "$defs", "patternProperties") and isinstance(value, dict):
                out[key] = {name: _clean(sub) for name, sub in value.items()}
            else:
                out[key] = _clean(value)
        return out
    if isinstance(node, list):
        return [_clean(x) for x in node]
    return node


def _strict(schema: dict[str, Any]) -> dict[str, Any] | None:
    """``schema`` in OpenAI's strict shape, or ``None`` when it has optional properties."""

    def walk(node: Any) -> Any:
        if isinstance(node, list):
            return [walk(x) for x in node]
        if not isinstance(node, dict):
            return node
        out = {k: walk(v) if k not in ("properties", "$defs") else v for k, v in node.items()}
        for key in ("properties", "$defs"):
            if isinstance(node.get(key), dict):
                out[key] = {name: walk(sub) for name, sub in node[key].items()}
        if isinstance(node.get("properties"), dict):
            if set(node.get("required", ())) != set(node["properties"]):
                raise _NotStrict
            out["additionalProperties"] = False
        return out

    try:
        return dict(walk(schema))
    except _NotStrict:
        return None


class _NotStrict(Exception):
    pass


# --------------------------------------------------------------------------- one evaluation


class StructuredCall:
    """How one evaluation asks for structured outputs, falling back when a form is refused.

    ``memory`` maps a model key to the form that last worked; the engine passes the Flock's
    ``ModelSettings.shared`` entry, so what one engine learnt serves every engine of that Flock.
    """

    def __init__(
        self,
        mode: str,
        memory: dict[str, Any],
        lm: Any,
        sig: AgentSignature,
        *,
        program_kind: str,
        adapter: Any,
        cache: dict[Any, Any] | None = None,
    ) -> None:
        self.mode = mode
        self.memory = memory
        self.key = _model_key(lm)
        self.applies = mode != "off" and program_kind in ("predict", "chain_of_thought") and _fits(adapter)
        self.form: str | None = None
        self._schema: dict[str, Any] | None = None
        self._sig = sig
        self._reasoning = program_kind == "chain_of_thought"
        self._cache = cache if cache is not None else {}

    @property
    def schema(self) -> dict[str, Any]:
        """The output schema (built on first use)."""
        if self._schema is None:
            key = (self._sig, self._reasoning)
            found = self._cache.get(key)
            if found is None:
                found = self._cache[key] = output_schema(self._sig, reasoning=self._reasoning)
            self._schema = found
        return self._schema

    def forms(self) -> list[str]:
        """The forms to try, in order, starting from what worked last time for this model."""
        order = [*SCHEMA_FORMS] if self.mode == "json_schema" else [*SCHEMA_FORMS, PROMPT]
        known = self.memory.get(self.key)
        return order[order.index(known) :] if known in order else order

    async def acall(self, run: Any, program: Any, values: dict[str, Any]) -> Any:
        """``run(program, values)`` with the first ``response_format`` form the provider accepts."""
        if not self.applies:
            return await run(program, values)
        # Concurrent first calls each try the forms: a refusal is one quick answer per call, once
        # per model and Flock, where making them wait for the first would cost a whole model call.
        forms = self.forms()
        name = f"{self._sig.agent}_{self._sig.group}".replace("-", "_")[:64] or "output"
        for i, form in enumerate(forms):
            key = (self._sig, self._reasoning, form)
            if key not in self._cache:
                self._cache[key] = response_format(form, name, self.schema)
            fmt = self._cache[key]
            token = _FORM.set(form)
            # Until a form worked for this model, a refusal must reach us at once: the provider
            # layer does not retry it as if it were an outage (llama.cpp refuses with a 500).
            probe = PROBING_FORMAT.set(form != PROMPT and self.memory.get(self.key) != form)
            try:
                extra = {"config": {"response_format": fmt}} if fmt is not None else {}
                prediction = await run(program, {**values, **extra})
            except Exception as exc:
                if form == PROMPT or not refused(exc):
                    raise
                if i + 1 == len(forms):
                    raise StructuredOutputsRefused(
                        f"model {self.key!r} refused response_format in every schema form "
                        f"({', '.join(SCHEMA_FORMS)}): {type(exc).__name__}: {exc}. Use "
                        "DSPyEngine(structured_outputs='auto') to fall back to prompt-only answers, "
                        "or 'off'",
                        model=self.key,
                    ) from exc
                logger.info("model %r refused response_format %r; trying %r", self.key, form, forms[i + 1])
                continue
            finally:
                PROBING_FORMAT.reset(probe)
                _FORM.reset(token)
            self.form = form
            self.memory[self.key] = form
            return prediction
        raise AssertionError("unreachable: the last form either returns or raises")


def form_memory(settings: Any, own: dict[str, Any]) -> dict[str, Any]:
    """Per-Flock memory of the working form per model (``own`` outside a Flock)."""
    shared = getattr(settings, "shared", None)
    if not isinstance(shared, dict):
        return own
    memory: dict[str, Any] = shared.setdefault(STATE_KEY, {})
    return memory


def flock_form() -> str | None:
    """The form Flock chose for the model call in progress, if Flock is in charge of it."""
    return _FORM.get()


def schema_in_force() -> bool:
    """Whether the model call in progress sends the output schema in a form the provider took.

    While it does, the adapter's prompt leaves out what the schema already says (see
    :func:`_lean_framing`); a prompt-only call (the third form, or ``"off"``) keeps all of it.
    """
    return _FORM.get() in SCHEMA_FORMS


def _model_key(lm: Any) -> str:
    model = str(getattr(lm, "model", type(lm).__name__))
    kwargs = getattr(lm, "kwargs", None) or {}
    base = kwargs.get("api_base") or kwargs.get("base_url")
    return f"{model}@{base}" if base else model


def _fits(adapter: Any) -> bool:
    """Adapters whose answers can be a JSON object: every one but the two-step adapter."""
    import dspy

    return not isinstance(adapter, dspy.TwoStepAdapter)


def record_form(trace: dict[str, Any], call: StructuredCall) -> None:
    """Note the form used in the engine trace and on the current span."""
    if call.form is None:
        return
    trace["structured_outputs"] = call.form
    from .engine_tracing import tracing_on

    if tracing_on():
        from opentelemetry import trace as otel

        otel.get_current_span().set_attribute(SPAN_ATTRIBUTE, call.form)


def adapt(adapter: Any) -> Any:
    """Let the engine's own adapter copy take part in structured outputs (returns it).

    * JSONAdapter (and subclasses such as BAMLAdapter): DSPy picks its own ``response_format``
      before each call; while Flock is in charge of the call, Flock's choice stands.
    * Other text adapters (Chat, XML): an answer that is one JSON object holding the output fields
      (what a schema-constrained model writes) is parsed as JSON when the adapter's own format is
      not found.
    """
    import dspy
    from dspy.utils.exceptions import AdapterParseError

    if isinstance(adapter, dspy.TwoStepAdapter):
        return adapter
    if isinstance(adapter, dspy.JSONAdapter):
        choose = adapter._prepare_response_format

        def prepare(lm: Any, lm_kwargs: dict[str, Any], signature: Any) -> None:
            if _FORM.get() is None:
                choose(lm, lm_kwargs, signature)

        adapter._prepare_response_format = prepare
        return _lean_framing(adapter)
    if isinstance(adapter, dspy.ChatAdapter):
        own_parse = adapter.parse
        json_parse = dspy.JSONAdapter().parse

        def parse(signature: Any, completion: str) -> dict[str, Any]:
            try:
                return dict(own_parse(signature, completion))
            except AdapterParseError:
                if not completion.lstrip().startswith("{"):
                    raise
                return dict(json_parse(signature, completion))

        adapter.parse = parse
        return _lean_framing(adapter)
    return adapter


# The parts of DSPy's Chat and JSON adapter prompts that describe or show the answer: the output
# section of the structure (with "note: the value you produce must adhere to the JSON schema: {...}"
# per typed field), the closing "Respond with ..." line ("(must be formatted as a valid Python
# Critique)" per typed field), and earlier answers (demos, `.with_history()` turns).
_ANSWER_PARTS = (
    "format_field_structure",
    "user_message_output_requirements",
    "format_assistant_message_content",
)


def _lean_framing(adapter: Any) -> Any:
    """Frame a call whose schema the provider enforces as what it is: a JSON answer (returns it).

    With a schema in force the provider holds the answer to one JSON object whose fields have their
    types, so the JSON schema written into the prompt only repeats it: about 200 characters per
    output model on every call, more than the whole lineage context of a typical activation. For
    such a call the adapter describes the answer with DSPy's own ``JSONAdapter`` framing ("Outputs
    will be a JSON object with the following fields", "Respond with a JSON object ...") and with the
    output fields typed as plain text, which drops the schema notes. The field list (with the type
    names), the field descriptions (fan-out counts) and the instructions stay, and the inputs are
    shown as before; earlier answers (demos, history turns) are shown as JSON objects too. A
    ``ChatAdapter`` prompt then no longer asks for ``[[ ## field ## ]]`` markers that the grammar
    would not let the model write (on SmolLM2-135M, asking for markers without
    the schema note made it ramble: 90% valid at the first attempt against 100% with this framing).
    A prompt-only call keeps the adapter's full text. Each part is changed only where the adapter
    uses DSPy's own ``ChatAdapter``/``JSONAdapter`` version of it: an adapter that frames fields its
    own way (XMLAdapter's tags, BAMLAdapter's schema) keeps its framing.
    """
    import dspy

    own_parts = {getattr(dspy.ChatAdapter, n) for n in _ANSWER_PARTS}
    own_parts |= {getattr(dspy.JSONAdapter, n) for n in _ANSWER_PARTS}
    as_json = dspy.JSONAdapter()

    @functools.lru_cache(maxsize=128)
    def untyped(signature: Any) -> Any:
        for name in signature.output_fields:
            signature = signature.with_updated_fields(name, type_=str)
        return signature

    for name in _ANSWER_PARTS:
        if getattr(type(adapter), name) in own_parts:
            setattr(adapter, name, _framed(getattr(adapter, name), getattr(as_json, name), untyped))
    return adapter


def _framed(own: Any, lean: Any, untyped: Any) -> Any:
    def framed(signature: Any, *args: Any, **kwargs: Any) -> Any:
        if schema_in_force():
            return lean(untyped(signature), *args, **kwargs)
        return own(signature, *args, **kwargs)

    return framed
