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
from collections import OrderedDict
from collections.abc import Callable
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any, get_args

import dspy
from dspy.lm15 import Message, Response, TextPart, Usage
from dspy.utils.callback import BaseCallback

from .offline_values import Faker, jsonable, list_words, stable_json, subject_of

_CALL: ContextVar[tuple[Any, Any, dict[str, Any]] | None] = ContextVar("flock_offline_call", default=None)
_TOOLS: ContextVar[tuple[Any, ...]] = ContextVar("flock_offline_tools", default=())
_PIECE = 8  # characters per streamed piece of an offline answer


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
    """Undo :func:`set_tools`."""
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
    response_format: dict[str, Any] | None = None

    @property
    def schema(self) -> dict[str, Any] | None:
        """The JSON schema the request asks the answer to follow (structured outputs), if any."""
        fmt = self.response_format or {}
        schema = fmt.get("schema")
        if schema is None and isinstance(fmt.get("json_schema"), dict):
            schema = fmt["json_schema"].get("schema")
        return schema if isinstance(schema, dict) else None

    @property
    def prompt(self) -> str:
        """All message contents joined, for ``in`` checks."""
        return "\n\n".join(m["content"] for m in self.messages)

    @property
    def output_fields(self) -> list[str]:
        """Names of the output fields this call must answer."""
        return list(self.signature.output_fields) if self.signature is not None else []

    def values(self) -> dict[str, Any]:
        """The valid output values the offline model would produce."""
        return self._model.values(self)

    def format(self, values: dict[str, Any]) -> str:
        """Render output values (models, lists, dicts, strings) in this call's adapter format, or
        as one JSON object when the request carries a schema (structured outputs)."""
        if self.schema is not None:
            return json.dumps({k: jsonable(v) for k, v in values.items()})
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
        """The answer as stream events, its text in word-sized pieces (as a provider streams it)."""
        from dspy.lm15 import StreamDeltaEvent, TextDelta, response_to_events

        for event in response_to_events(self.complete(request)):
            delta = getattr(event, "delta", None)
            if not isinstance(delta, TextDelta) or len(delta.text) <= _PIECE:
                yield event
                continue
            text = delta.text
            for start in range(0, len(text), _PIECE):
                yield StreamDeltaEvent(
                    TextDelta(
                        text[start : start + _PIECE],
                        delta.part_index,
                        delta.logprobs if start == 0 else (),
                        logprobs_complete=delta.logprobs_complete if start == 0 else True,
                    )
                )

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
        config = getattr(request, "config", None)
        fmt = getattr(config, "response_format", None)
        call = ModelCall(len(self.calls), messages, signature, adapter, inputs, self, fmt)
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
        """Valid output values for ``call``, deterministic for the seed and the inputs."""
        sig = call.signature
        schema = call.schema
        if schema is not None and "properties" in schema:
            # Structured outputs: the answer is whatever the request's schema describes.
            names = list(sig.output_fields) if sig is not None else sorted(schema["properties"])
            digest = hashlib.sha256(f"{self.seed}|{names}|{stable_json(call.inputs)}".encode()).digest()
            subject = subject_of(sig, call.inputs) if sig is not None else "the request"
            faker = Faker(random.Random(int.from_bytes(digest[:8], "big")), subject)
            faker.defs = dict(schema.get("$defs", {}))
            return faker.obj(schema, 0)
        if sig is None:
            return {}
        digest = hashlib.sha256(
            f"{self.seed}|{list(sig.output_fields)}|{stable_json(call.inputs)}".encode()
        ).digest()
        faker = Faker(random.Random(int.from_bytes(digest[:8], "big")), subject_of(sig, call.inputs))
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
                    f"Work out {list_words([n for n in sig.output_fields if n != name])} "
                    f"from {list_words(list(sig.input_fields))}."
                )
                continue
            values[name] = faker.field(name, info)
        return values

    def render(self, call: ModelCall, values: dict[str, Any]) -> str:
        """``values`` as the completion text ``call``'s adapter parses."""
        sig, adapter = call.signature, call.adapter
        if sig is None:
            return json.dumps(jsonable(values))
        if isinstance(adapter, dspy.TwoStepAdapter):
            # Free text for the first step; values as JSON so the extraction step can read them back.
            return "\n\n".join(f"{k}: {json.dumps(jsonable(v))}" for k, v in values.items())
        if adapter is None:
            adapter = dspy.ChatAdapter()
        # JSON data, not model instances: instances would be dumped by field name, but the schema
        # the model is shown (and the parser) uses aliases.
        data = {k: jsonable(v) for k, v in values.items()}
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


def _react_step(faker: Faker, sig: Any, inputs: dict[str, Any]) -> dict[str, Any]:
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
