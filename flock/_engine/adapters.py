"""Engine-owned DSPy adapters: no silent second calls, and a system message built once.

The engine never uses the caller's adapter object itself; it makes its own (from a class, or a
shallow copy of an instance) so that it can

* keep ``ChatAdapter``'s silent retry with ``JSONAdapter`` off unless asked for,
* replace ``TwoStepAdapter`` by :class:`QuietTwoStepAdapter`, whose extraction step does not retry
  with ``JSONAdapter`` behind the engine's back either,
* memoise the system message per signature: DSPy rebuilds it, JSON schemas included, on every call
  although it depends on the signature alone (about a third of DSPy's CPU per call) and on whether
  the call's output schema is enforced by the provider (then the message leaves the schema out, see
  ``structured._lean_framing``).
"""

from __future__ import annotations

import copy
import functools
from typing import Any

import dspy
from dspy.clients._deprecation import adapter_message_call
from dspy.utils.exceptions import AdapterParseError

from .structured import schema_in_force


class QuietTwoStepAdapter(dspy.TwoStepAdapter):
    """``TwoStepAdapter`` whose extraction step fails visibly instead of re-asking with JSONAdapter.

    DSPy's version extracts with a default ``ChatAdapter()``, which silently makes a third call with
    ``JSONAdapter`` when the extraction cannot be parsed. Here a parse failure surfaces, and the
    engine's own re-ask (with the errors, bounded by ``max_reasks``) handles it.
    """

    def __init__(self, extraction_model: dspy.BaseLM, **kwargs: Any) -> None:
        super().__init__(extraction_model, **kwargs)
        self._extractor = _memoised(dspy.ChatAdapter(use_json_adapter_fallback=False))

    async def acall(
        self,
        lm: dspy.BaseLM,
        lm_kwargs: dict[str, Any],
        signature: Any,
        demos: list[dict[str, Any]],
        inputs: dict[str, Any],
    ) -> list[dict[str, Any]]:
        """First call: free text from ``lm``. Second call: fields extracted by the extraction model."""
        messages = self.format(signature, demos, inputs)
        with adapter_message_call(lm, messages):
            outputs = await lm.acall(messages=messages, **lm_kwargs)
        extractor = self._create_extractor_signature(signature)
        values = []
        for output in outputs:
            text = output.get("text") if isinstance(output, dict) else output
            try:
                found = await self._extractor.acall(self.extraction_model, {}, extractor, [], {"text": text})
            except AdapterParseError as exc:
                raise AdapterParseError(
                    adapter_name="TwoStepAdapter",
                    signature=signature,
                    lm_response=str(text),
                    message=f"the extraction step could not parse the fields: {exc.adapter_name}",
                ) from exc
            values.append(found[0])
        return values


def own_adapter(adapter: Any, lm: dspy.BaseLM, fallback: bool) -> Any:
    """The engine's adapter for ``adapter`` (``None``, a class, or an instance) and ``lm``."""
    if adapter is None:
        made = dspy.ChatAdapter(use_json_adapter_fallback=fallback)
    elif isinstance(adapter, type):
        if adapter is dspy.TwoStepAdapter and not fallback:
            made = QuietTwoStepAdapter(lm)
        elif issubclass(adapter, dspy.TwoStepAdapter):
            made = adapter(lm)
        elif issubclass(adapter, dspy.ChatAdapter) and not issubclass(adapter, dspy.JSONAdapter):
            made = adapter(use_json_adapter_fallback=fallback)
        else:
            made = adapter()
    else:
        made = copy.copy(adapter)
        if type(made) is dspy.TwoStepAdapter and not fallback:
            made = QuietTwoStepAdapter(made.extraction_model, callbacks=made.callbacks)
        elif isinstance(made, dspy.ChatAdapter) and not isinstance(made, dspy.JSONAdapter) and not fallback:
            made.use_json_adapter_fallback = False  # no silent second call
    return _memoised(made)


def _memoised(adapter: Any) -> Any:
    build = adapter.format_system_message

    # Per signature, and per framing: with or without the output types (see structured.schema_in_force).
    @functools.lru_cache(maxsize=128)
    def system_message(signature: Any, schema_in_force: bool) -> str:
        return str(build(signature))

    adapter.format_system_message = lambda signature: system_message(signature, schema_in_force())
    return adapter
