"""Token streaming for DSPyEngine: the ``str`` values of an output's fields, piece by piece.

When someone listens (``ctx.streaming``), the engine runs ``predict`` and ``chain_of_thought``
programs through DSPy's streaming support (``dspy.streamify`` with one ``StreamListener`` per
output field): the model is called with ``stream=True`` and the listener hands over the text of
each output field as it arrives. An output field holds a whole model as JSON, so
:class:`FieldDeltas` reads that JSON incrementally and reports the decoded pieces of each
top-level string value: ``ctx.emit_token("title", "A fil")``. Joined, the pieces of a field equal
the published value. When nobody listens nothing streams: the ordinary call path runs. Other
programs do not stream. A re-ask streams too, under the next ``attempt`` number; the offline model
streams its answers in small pieces, as a provider would.

Token field names are the model's field names (``title``); when one output group publishes several
outputs they are prefixed with the signature field (``pitch.title``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

STREAMED_PROGRAMS = ("predict", "chain_of_thought")
_ESCAPES = {'"': '"', "\\": "\\", "/": "/", "b": "\b", "f": "\f", "n": "\n", "r": "\r", "t": "\t"}


class FieldDeltas:
    """Feed the JSON text of one object in pieces; ``emit(key, delta)`` gets its string values' text."""

    def __init__(self, emit: Callable[[str, str], None], prefix: str = "") -> None:
        self._emit = emit
        self._prefix = prefix
        self._depth = 0
        self._in_string = False
        self._role = ""  # "key", "value" (a top-level string value: streamed) or "" (other)
        self._awaiting_key = False
        self._after_colon = False
        self._key: list[str] = []
        self._current = ""
        self._escape = False
        self._hex: str | None = None
        self._high: int | None = None
        self._out: list[str] = []

    def feed(self, text: str) -> None:
        for ch in text:
            if self._in_string:
                self._string_char(ch)
            elif ch == '"':
                self._in_string = True
                if self._depth == 1 and self._awaiting_key:
                    self._role, self._key = "key", []
                elif self._depth == 1 and self._after_colon:
                    self._role = "value"
                else:
                    self._role = ""
                self._after_colon = False
            elif ch in "{[":
                self._depth += 1
                self._awaiting_key = self._depth == 1 and ch == "{"
                self._after_colon = False
            elif ch in "}]":
                self._depth -= 1
            elif ch == "," and self._depth == 1:
                self._awaiting_key = True
            elif ch == ":" and self._depth == 1:
                self._after_colon = True
            elif not ch.isspace():
                self._after_colon = False
        self._flush()

    def _string_char(self, ch: str) -> None:
        if self._hex is not None:
            self._hex += ch
            if len(self._hex) == 4:
                code, self._hex = int(self._hex, 16), None
                if 0xD800 <= code < 0xDC00:
                    self._high = code
                    return
                if self._high is not None and 0xDC00 <= code < 0xE000:
                    code = 0x10000 + ((self._high - 0xD800) << 10) + (code - 0xDC00)
                self._high = None
                self._char(chr(code))
            return
        if self._escape:
            self._escape = False
            if ch == "u":
                self._hex = ""
            else:
                self._char(_ESCAPES.get(ch, ch))
            return
        if ch == "\\":
            self._escape = True
        elif ch == '"':
            self._in_string = False
            if self._role == "key":
                self._flush()
                self._current = "".join(self._key)
                self._awaiting_key = False
            elif self._role == "value":
                self._flush()
        else:
            self._char(ch)

    def _char(self, ch: str) -> None:
        if self._role == "key":
            self._key.append(ch)
        elif self._role == "value":
            self._out.append(ch)

    def _flush(self) -> None:
        if self._out:
            self._emit(self._prefix + self._current, "".join(self._out))
            self._out = []


async def call_streaming(
    program: Any, values: dict[str, Any], output_fields: list[str], emit: Callable[[str, str], None]
) -> Any:
    """Run ``program`` on ``values`` with the model streaming; report output field text through ``emit``."""
    import dspy
    from dspy.streaming import StreamListener, StreamResponse

    parsers = {
        name: FieldDeltas(emit, "" if len(output_fields) == 1 else f"{name}.") for name in output_fields
    }
    listeners = [StreamListener(signature_field_name=name) for name in output_fields]
    streaming = dspy.streamify(program, stream_listeners=listeners, is_async_program=True)
    prediction = None
    async for item in streaming(**values):
        if isinstance(item, StreamResponse):
            parser = parsers.get(item.signature_field_name)
            if parser is not None:
                parser.feed(item.chunk)
        elif isinstance(item, dspy.Prediction):
            prediction = item
    return prediction
