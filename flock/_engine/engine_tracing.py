"""The engine's spans: model calls, tool calls and re-asks (OpenTelemetry GenAI conventions).

Only built when a tracer provider is installed; otherwise every helper here is a no-op, so an
untraced run pays nothing. Prompt and completion text is recorded only when
:func:`flock.tracing.capture_content_enabled` says so.

* ``chat <model>``: one per language-model call (a ReAct step, a TwoStep extraction, a re-ask...),
  opened by the engine's view of the model (or, when other DSPy callbacks listen to model calls, by
  a DSPy callback), with ``gen_ai.usage.*`` tokens from the engine's usage tracker and, when the view
  ran the call itself, the response's finish reasons, model and id.
* ``execute_tool <name>``: one per tool call.
* ``flock.reask``: wraps a re-ask; its model call is a child.
"""

from __future__ import annotations

import json
import operator
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from contextvars import ContextVar
from time import perf_counter
from typing import Any
from uuid import uuid4

import dspy
from dspy.utils.callback import BaseCallback

from .._tracing.tracing import _off, mark_failed, tracer


def tracing_on() -> bool:
    """Whether spans are recorded at all (a tracer provider is installed)."""
    return _off() is None


_capture_enabled: Callable[[], bool] | None = None  # from flock.tracing on first use (it needs the SDK)


def capture_content() -> bool:
    global _capture_enabled
    if _capture_enabled is None:
        from ..tracing import capture_content_enabled

        _capture_enabled = capture_content_enabled
    return _capture_enabled()


def split_model(model: str) -> tuple[str, str]:
    """``"openai/gpt-4.1"`` -> ``("openai", "gpt-4.1")``; built-in models belong to ``"flock"``."""
    provider, sep, name = model.partition("/")
    return (provider, name) if sep else ("flock", model)


_Opened = tuple[Any, int, Any, bool, Any, str, float]


class ModelSpans(BaseCallback):
    """A ``chat <model>`` span around every language-model call of an evaluation.

    One per engine. What a call needs from its evaluation (the usage tracker, whether to record
    content) comes from :class:`ModelCalls`, a context variable, so concurrent evaluations share it.
    :class:`TracedModels` opens the spans around the engine's own view of the model: directly
    (:meth:`start` / :meth:`finish`) when no other DSPy callback listens, else as a DSPy callback.
    """

    def __init__(self) -> None:
        self._open: dict[str, _Opened] = {}

    def on_lm_start(self, call_id: str, instance: Any, inputs: dict[str, Any]) -> None:
        opened = self.start(instance, inputs.get("messages"), inputs.get("kwargs"))
        if opened is not None:
            self._open[call_id] = opened

    def on_lm_end(self, call_id: str, outputs: Any, exception: BaseException | None = None) -> None:
        opened = self._open.pop(call_id, None)
        if opened is not None:
            self.finish(opened, outputs, exception)

    def start(self, instance: Any, messages: Any, kwargs: dict[str, Any] | None) -> _Opened | None:
        """Open the span of a call to ``instance`` (only timed when tracing is off); ``None`` outside
        an evaluation."""
        call = _CALL.get()
        if call is None:  # a call outside an evaluation (nobody else holds the engine's view)
            return None
        usage, capture, sink = call
        model = str(getattr(instance, "model", "unknown"))
        span = None
        if tracing_on():
            provider, name = split_model(model)
            attributes: dict[str, Any] = {
                "gen_ai.operation.name": "chat",
                "gen_ai.provider.name": provider,
                "gen_ai.request.model": name,
            }
            settings = {**(getattr(instance, "kwargs", None) or {}), **(kwargs or {})}
            for key in ("temperature", "max_tokens"):
                if isinstance(settings.get(key), int | float):
                    attributes[f"gen_ai.request.{key}"] = settings[key]
            if capture and messages:
                attributes["gen_ai.input.messages"] = json.dumps(
                    [
                        {"role": m.get("role"), "parts": [{"type": "text", "content": m.get("content")}]}
                        for m in messages
                        if isinstance(m, dict)
                    ],
                    default=str,
                )
            span = tracer().start_span(f"chat {name}", attributes=attributes)
        return (span, usage()[0], usage, capture, sink, model, perf_counter())

    def finish(
        self, opened: _Opened, outputs: Any, exception: BaseException | None, result: Any = None
    ) -> None:
        """Close a span from :meth:`start`: tokens, the failure or (if captured) the answers; with
        DSPy's call ``result`` at hand, also the response's finish reasons, model and id. The call's
        duration and tokens go to the evaluation's sink (metrics and the run summary's latency)."""
        span, calls_before, usage_of, capture, sink, model, started = opened
        seconds = perf_counter() - started
        calls, usage = usage_of()
        tokens = None
        if calls > calls_before:
            tokens = (
                _tokens(usage, "prompt_tokens", "input_tokens"),
                _tokens(usage, "completion_tokens", "output_tokens"),
            )
        if sink is not None:
            sink(model, seconds, tokens, exception)
        if span is None:
            return
        if result is not None:
            _describe_response(span, result)
        if tokens is not None:
            span.set_attribute("gen_ai.usage.input_tokens", tokens[0])
            span.set_attribute("gen_ai.usage.output_tokens", tokens[1])
        if exception is not None:
            mark_failed(span, exception, "model_error")
        elif capture and isinstance(outputs, list):
            texts = [o.get("text") if isinstance(o, dict) else o for o in outputs]
            span.set_attribute(
                "gen_ai.output.messages",
                json.dumps(
                    [{"role": "assistant", "parts": [{"type": "text", "content": t}]} for t in texts],
                    default=str,
                ),
            )
        span.end()


# Told of every finished model call: (model, seconds, (input, output) tokens or None, exception).
CallSink = Callable[[str, float, "tuple[int, int] | None", "BaseException | None"], None]
Usage = Callable[[], tuple[int, dict[str, Any]]]

_CALL: ContextVar[tuple[Usage, bool, CallSink | None] | None] = ContextVar("flock_model_call", default=None)


class ModelCalls:
    """Within the block, :class:`ModelSpans` takes tokens from ``usage`` (``(calls, last_usage)`` of the
    evaluation's usage tracker, which DSPy updates before a call ends), records content if ``capture``
    and tells ``sink`` of every finished call."""

    __slots__ = ("_state", "_token")

    def __init__(self, usage: Usage, capture: bool, sink: CallSink | None = None) -> None:
        self._state = (usage, capture, sink)
        self._token: Any = None

    def __enter__(self) -> None:
        self._token = _CALL.set(self._state)

    def __exit__(self, *exc: object) -> None:
        _CALL.reset(self._token)


class TracedModels:
    """Per engine: a view of each language model whose calls open :class:`ModelSpans` spans.

    A callback in ``dspy.context(callbacks=...)`` makes DSPy wrap every module, adapter and model call
    of the evaluation (argument binding, a uuid, handler lookup: most of tracing's cost on a fast
    model). The view is a ``lm.copy()`` that shares the model's state (its ``history`` and ``kwargs``
    objects; any attribute the caller later sets on the model is carried over before the next use),
    with :class:`ModelSpans` on its own ``callbacks``, so only model calls are wrapped. Its ``acall``
    goes further: when no other callback listens, it opens the span itself and calls the model
    method DSPy's wrapper would call, skipping the wrapper (a third of a fast call's tracing cost).
    """

    def __init__(self) -> None:
        self.spans = ModelSpans()
        self._views: dict[int, tuple[Any, Any, dict[str, Any]]] = {}

    def view(self, lm: Any) -> Any:
        """The traced view of ``lm`` (made once, kept in step with ``lm``)."""
        entry = self._views.get(id(lm))
        if entry is None or entry[0] is not lm:
            view = lm.copy()
            view.acall = self._acall_of(view)
            entry = self._views[id(lm)] = (lm, view, {})
        _, view, seen = entry
        state = lm.__dict__
        if seen.keys() != state.keys() or not all(map(operator.is_, seen.values(), state.values())):
            self._sync(lm, view, seen)  # first use, or the caller changed the model since
        return view

    def _sync(self, lm: Any, view: Any, seen: dict[str, Any]) -> None:
        state, mirror = lm.__dict__, view.__dict__
        for key in seen.keys() - state.keys():
            del seen[key]
            if key not in _OWN:
                mirror.pop(key, None)
        for key, value in state.items():
            if seen.get(key, seen) is not value and key not in _OWN:
                mirror[key] = value
        seen.clear()
        seen.update(state)  # in the model's order, for the identity check in view()
        mirror["callbacks"] = [*(lm.callbacks or []), self.spans]

    def _acall_of(self, view: Any) -> Callable[..., Any]:
        spans = self.spans

        async def acall(prompt: Any = None, *, messages: Any = None, **kwargs: Any) -> Any:
            method = type(view).acall  # looked up per call: a test guard may patch the class
            plain = getattr(method, "__wrapped__", None)
            if plain is None or _listening(view.callbacks) or _listening(dspy_callbacks()):
                # Someone else listens to model calls (or the method is not DSPy's): DSPy's
                # wrapper runs the callbacks, ModelSpans among them.
                return await method(view, prompt, messages=messages, **kwargs)
            opened = spans.start(view, messages, kwargs)
            if opened is None:
                return await plain(view, prompt, messages=messages, **kwargs)
            result = None
            try:
                steps = _call_steps()
                if steps is None or plain is not steps[0]:  # not DSPy's own acall: call it as it is
                    outputs = await plain(view, prompt, messages=messages, **kwargs)
                else:
                    outputs, result = await _call_keeping_result(steps, view, prompt, messages, kwargs)
            except BaseException as exc:  # as DSPy's wrapper reports it to on_lm_end
                spans.finish(opened, None, exc)
                raise
            spans.finish(opened, outputs, None, result)
            return outputs

        return acall


_OWN = ("callbacks", "acall")  # the view's own attributes, never taken from the model

# DSPy's BaseLM.acall is three steps: prepare the call (in a worker thread), execute it, finalize it
# (usage, history, outputs). Its callers get only the outputs; the finish reasons are in the result
# between the last two steps. When the view's model uses DSPy's own acall, the view runs the same
# steps itself and keeps the result. If this DSPy has no such steps, it calls acall as it is.
_steps: Any = None


def _call_steps() -> tuple[Any, ...] | None:
    global _steps
    if _steps is None:
        try:
            from dspy.clients import _deprecation, execution
            from dspy.clients.base_lm import BaseLM

            _steps = (
                BaseLM.acall.__wrapped__,
                execution.prepare,
                execution.aexecute,
                execution.finalize,
                _deprecation.warn_legacy_lm,
                _deprecation.warn_openai_messages,
            )
        except (ImportError, AttributeError):
            _steps = ()
    return _steps or None


async def _call_keeping_result(
    steps: tuple[Any, ...], lm: Any, prompt: Any, messages: Any, kwargs: dict[str, Any]
) -> tuple[Any, Any]:
    import asyncio

    _, prepare, aexecute, finalize, warn_legacy_lm, warn_openai_messages = steps
    call = await asyncio.to_thread(prepare, lm, prompt, messages, kwargs, asynchronous=True)
    if not call.managed:
        warn_legacy_lm()
    warn_openai_messages(lm, messages)
    result = await aexecute(lm, call)
    return finalize(lm, call, result), result


def _describe_response(span: Any, result: Any) -> None:
    """``gen_ai.response.*`` from a DSPy call result: native responses, or a provider's raw response."""
    reasons: list[str] = []
    model = getattr(result, "response_model", None)
    response_id = None
    for response in getattr(result, "responses", None) or ():
        if getattr(response, "finish_reason", None):
            reasons.append(str(response.finish_reason))
        response_id = response_id or getattr(response, "id", None)
    if not reasons:  # a raw, OpenAI-shaped response (the LiteLLM path)
        raw = getattr(result, "raw", None)
        choices = raw.get("choices") if isinstance(raw, dict) else getattr(raw, "choices", None)
        for choice in choices or ():
            reason = (
                choice.get("finish_reason")
                if isinstance(choice, dict)
                else getattr(choice, "finish_reason", None)
            )
            if reason:
                reasons.append(str(reason))
        raw_id = raw.get("id") if isinstance(raw, dict) else getattr(raw, "id", None)
        response_id = response_id or raw_id
    if reasons:
        span.set_attribute("gen_ai.response.finish_reasons", reasons)
    if isinstance(model, str) and model:
        span.set_attribute("gen_ai.response.model", model)
    if isinstance(response_id, str) and response_id:
        span.set_attribute("gen_ai.response.id", response_id)


def dspy_callbacks() -> Any:
    """DSPy's callbacks in the current context (global or ``dspy.context``)."""
    return dspy.settings.get("callbacks", None)


def _listening(callbacks: Any) -> bool:
    """Does any of ``callbacks`` (other than Flock's :class:`ModelSpans`) handle model calls? One that
    only watches modules or adapters (like the offline model's signature tap) misses nothing when a
    model call skips DSPy's callback wrapper."""
    return bool(callbacks) and any(_handles_lm_calls(type(callback)) for callback in callbacks)


_HANDLES_LM_CALLS: dict[type[Any], bool] = {}


def _handles_lm_calls(kind: type[Any]) -> bool:
    found = _HANDLES_LM_CALLS.get(kind)
    if found is None:
        if issubclass(kind, ModelSpans):
            found = False
        elif not issubclass(kind, BaseCallback):
            found = True  # not DSPy's base class: assume it does
        else:
            found = (
                kind.on_lm_start is not BaseCallback.on_lm_start
                or kind.on_lm_end is not BaseCallback.on_lm_end
            )
        _HANDLES_LM_CALLS[kind] = found
    return found


def _tokens(usage: dict[str, Any], *keys: str) -> int:
    for key in keys:
        value = usage.get(key)
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    return 0


@contextmanager
def _tool_span(name: str, arguments: dict[str, Any]) -> Iterator[Any]:
    capture = capture_content()
    attributes: dict[str, Any] = {
        "gen_ai.operation.name": "execute_tool",
        "gen_ai.tool.name": name,
        # DSPy's ReAct gives tool calls no provider id; Flock names each call so spans can refer to it.
        "gen_ai.tool.call.id": f"call_{uuid4().hex[:16]}",
    }
    if capture:
        attributes["gen_ai.tool.call.arguments"] = json.dumps(arguments, default=str)
    with tracer().start_as_current_span(
        f"execute_tool {name}", attributes=attributes, record_exception=False, set_status_on_exception=False
    ) as span:
        try:
            yield span
        except Exception as exc:
            mark_failed(span, exc, "tool_error")
            raise


def tool_span(name: str, arguments: dict[str, Any]) -> AbstractContextManager[Any]:
    """An ``execute_tool <name>`` span, or nothing when tracing is off."""
    return _tool_span(name, arguments) if tracing_on() else nullcontext()


def reask_span(agent: str, attempt: int, errors: list[str]) -> AbstractContextManager[Any]:
    """A ``flock.reask`` span around re-ask ``attempt``, or nothing when tracing is off."""
    if not tracing_on():
        return nullcontext()
    return tracer().start_as_current_span(
        "flock.reask",
        attributes={"flock.agent": agent, "flock.reask.attempt": attempt, "flock.reask.errors": errors},
    )
