"""A real OpenAI-compatible chat-completions server on 127.0.0.1, for tests and benchmarks.

``POST /v1/chat/completions`` answers from a script (status codes, headers, raw text) or, by
default, with a valid completion built by the offline model's logic. The server learns which
signature a prompt belongs to from :attr:`OpenAIServer.recorder`, a DSPy callback the test installs
with ``dspy.context(callbacks=[server.recorder])``: it records each formatted prompt with its
signature, adapter and inputs, and the server looks the prompt up when the request arrives. The
request itself still travels as JSON over HTTP and the answer is parsed by the real adapter.
"""

from __future__ import annotations

import json
import socket
import struct
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from dspy.utils.callback import BaseCallback

from flock._engine.offline import ModelCall, OfflineEngine, set_tools


@dataclass
class Reply:
    """A scripted answer: a status code, optional headers, and text or a raw error body.

    Script entries may also be plain text, ``None`` (the default answer), a dict of output values
    (rendered in the request's adapter format), or a callable taking the :class:`ModelCall`.

    ``fault`` breaks the transport instead: ``"reset"`` (the connection is reset before any answer),
    ``"hang"`` (no answer until the server stops), ``"drip"`` (the answer's bytes one every
    ``interval`` seconds), ``"malformed"`` (status 200 with a body that is not JSON).
    """

    status: int = 200
    text: str | None = None
    headers: dict[str, str] = field(default_factory=dict)
    body: dict[str, Any] | None = None
    fault: str | None = None
    interval: float = 0.5


class _Server(ThreadingHTTPServer):
    request_queue_size = 256  # the default (5) drops bursts of connections: SYN retries cost 1 s each
    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client that timed out and hung up is part of the scenario, not a server failure.
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)


def _key(messages: list[dict[str, Any]]) -> str:
    return "\x00".join(_text(m.get("content")) for m in messages)


class PromptRecorder(BaseCallback):
    """Remembers the signature behind every prompt an adapter formats."""

    def __init__(self) -> None:
        self._pending: dict[str, tuple[Any, Any, dict[str, Any]]] = {}
        self._by_prompt: dict[str, tuple[Any, Any, dict[str, Any]]] = {}
        self._lock = threading.Lock()

    def on_adapter_format_start(self, call_id: str, instance: Any, inputs: dict[str, Any]) -> None:
        sig = inputs.get("signature")
        if sig is not None and hasattr(sig, "output_fields"):
            with self._lock:
                self._pending[call_id] = (instance, sig, dict(inputs.get("inputs") or {}))

    def on_adapter_format_end(self, call_id: str, outputs: Any, exception: Exception | None = None) -> None:
        with self._lock:
            entry = self._pending.pop(call_id, None)
            if entry is not None and isinstance(outputs, list):
                self._by_prompt[_key(outputs)] = entry

    def lookup(self, messages: list[dict[str, Any]]) -> tuple[Any, Any, dict[str, Any]] | None:
        with self._lock:
            return self._by_prompt.get(_key(messages))


class OpenAIServer:
    """Start with ``with OpenAIServer() as server:``; ``server.base_url`` is the ``api_base``.

    Attributes:
        latency: seconds to wait before answering each request.
        requests: every request body received, in order.
        max_in_flight: the most requests answered at once (each held for ``latency`` seconds).
    """

    def __init__(self, *, latency: float = 0.0, seed: int = 0) -> None:
        self.latency = latency
        self.requests: list[dict[str, Any]] = []
        self.arrivals: list[float] = []
        self.in_flight = 0  # requests being answered now (during the latency wait)
        self.max_in_flight = 0
        self.sse_piece = 7  # characters per streamed chunk (``stream: true`` requests)
        self.streamed: list[list[str]] = []  # the pieces of every streamed answer, in order
        self.recorder = PromptRecorder()
        self.tools: tuple[Any, ...] = ()  # dspy.Tool objects the default answers may call
        # response_format types this server refuses, with the status it answers (llama.cpp's server
        # answers 422 to {"type": "json_schema"}; OpenAI answers 400 to what a model cannot do).
        self.refuse_formats: dict[str, int] = {}
        self.engine = OfflineEngine(seed)
        self._script: list[Reply | str | Callable[[ModelCall], Any] | None] = []
        self._repeat: Reply | str | Callable[[ModelCall], Any] | None = None
        self._down_until = 0.0
        self._down_status = 503
        self._stopping = threading.Event()
        self._lock = threading.Lock()
        self._httpd: _Server | None = None
        self._thread: threading.Thread | None = None

    # ------------------------------------------------------------------ control
    def script(self, *replies: Reply | str | Callable[[ModelCall], Any] | None) -> None:
        """Answer the next requests with ``replies`` in order (``None`` = the default answer)."""
        with self._lock:
            self._script.extend(replies)

    def always(self, reply: Reply | str | Callable[[ModelCall], Any] | None) -> None:
        """Answer every request with ``reply`` once the script is used up (``None`` resets)."""
        self._repeat = reply

    def outage(self, seconds: float, status: int = 503) -> None:
        """Answer every request with ``status`` for the next ``seconds``, then as before."""
        self._down_status = status
        self._down_until = time.monotonic() + seconds

    @property
    def base_url(self) -> str:
        assert self._httpd is not None, "server not started"
        return f"http://127.0.0.1:{self._httpd.server_address[1]}/v1"

    def lm(self, name: str = "test-model", **kwargs: Any) -> Any:
        """A ``dspy.LM`` pointed at this server."""
        import dspy

        kwargs.setdefault("cache", False)
        return dspy.LM(f"openai/{name}", api_base=self.base_url, api_key="test-key", **kwargs)

    def start(self) -> OpenAIServer:
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = json.loads(self.rfile.read(length) or b"{}")
                status, headers, payload, fault = server._answer(self.path, body)
                if fault is not None and fault.fault == "reset":
                    # SO_LINGER 0: close() sends RST, the client sees "connection reset by peer".
                    self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                    self.connection.close()
                    self.close_connection = True
                    return
                if fault is not None and fault.fault == "hang":
                    server._stopping.wait(600)
                    self.close_connection = True
                    return
                streamed = bool(body.get("stream")) and status == 200
                if fault is not None and fault.fault == "malformed":
                    data = b'{"id": "chatcmpl-x", "choices": ['
                else:
                    data = server._sse(payload, body) if streamed else json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "text/event-stream" if streamed else "application/json")
                self.send_header("Content-Length", str(len(data)))
                for k, v in headers.items():
                    self.send_header(k, v)
                self.end_headers()
                if fault is not None and fault.fault == "drip":
                    for i in range(len(data)):
                        if server._stopping.wait(fault.interval):
                            return
                        self.wfile.write(data[i : i + 1])
                        self.wfile.flush()
                    return
                self.wfile.write(data)

            def do_GET(self) -> None:
                # GET /v1/models, as clients use it to see whether a server is there.
                found = self.path.rstrip("/").endswith("/models")
                payload = {"object": "list", "data": [{"id": "test-model", "object": "model"}]}
                data = json.dumps(payload if found else {"error": {"message": "not found"}}).encode()
                self.send_response(200 if found else 404)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, format: str, *args: Any) -> None:
                return None

        self._httpd = _Server(("127.0.0.1", 0), Handler)
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(
            target=self._httpd.serve_forever,
            kwargs={"poll_interval": 0.02},
            name="openai-server",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopping.set()
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def __enter__(self) -> OpenAIServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ------------------------------------------------------------------ answering
    def _answer(
        self, path: str, body: dict[str, Any]
    ) -> tuple[int, dict[str, str], dict[str, Any], Reply | None]:
        with self._lock:
            self.requests.append(body)
            self.arrivals.append(time.monotonic())
            reply = self._script.pop(0) if self._script else self._repeat
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            if self.latency:
                time.sleep(self.latency)
        finally:
            with self._lock:
                self.in_flight -= 1
        if not path.rstrip("/").endswith("/chat/completions"):
            err = {"error": {"message": f"unknown path {path}", "type": "invalid_request_error"}}
            return 404, {}, err, None
        if time.monotonic() < self._down_until:
            status = self._down_status
            return status, {}, {"error": {"message": "the provider is down", "type": "server_error"}}, None
        fmt = body.get("response_format")
        kind = _format_kind(fmt)
        if kind in self.refuse_formats:
            status = self.refuse_formats[kind]
            message = f"response_format {kind!r} is not supported by this server"
            return status, {}, {"error": {"message": message, "type": "invalid_request_error"}}, None
        call = self._call(body.get("messages") or [], fmt if isinstance(fmt, dict) else None)
        if callable(reply) and not isinstance(reply, Reply):
            reply = reply(call)
        fault = reply if isinstance(reply, Reply) and reply.fault is not None else None
        if isinstance(reply, Reply) and reply.status != 200:
            message = f"scripted status {reply.status}"
            err = reply.body or {"error": {"message": message, "type": "server_error", "code": reply.status}}
            return reply.status, reply.headers, err, fault
        if isinstance(reply, Reply):
            reply = reply.text
        if isinstance(reply, dict):
            text = call.format(reply)
        elif isinstance(reply, str):
            text = reply
        else:
            text = call.default()
        prompt_chars = sum(len(m["content"]) for m in call.messages)
        usage = {"prompt_tokens": max(1, prompt_chars // 4), "completion_tokens": max(1, len(text) // 4)}
        usage["total_tokens"] = usage["prompt_tokens"] + usage["completion_tokens"]
        return (
            200,
            {},
            {
                "id": f"chatcmpl-{len(self.requests)}",
                "object": "chat.completion",
                "created": int(time.time()),
                "model": body.get("model", "test-model"),
                "choices": [
                    {"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}
                ],
                "usage": usage,
            },
            fault,
        )

    def _sse(self, payload: dict[str, Any], body: dict[str, Any]) -> bytes:
        """The completion as OpenAI's ``stream: true`` answer: Server-Sent Events of chunks of
        ``sse_piece`` characters, a last chunk with the finish reason (and usage when asked for by
        ``stream_options.include_usage``), then ``data: [DONE]``."""
        text = payload["choices"][0]["message"]["content"]
        base = {"id": payload["id"], "object": "chat.completion.chunk", "created": payload["created"]}
        base["model"] = payload["model"]
        pieces = [text[i : i + self.sse_piece] for i in range(0, len(text), self.sse_piece)] or [""]
        events = [
            {
                **base,
                "choices": [
                    {"index": 0, "delta": {"role": "assistant", "content": ""}, "finish_reason": None}
                ],
            }
        ]
        events += [
            {**base, "choices": [{"index": 0, "delta": {"content": piece}, "finish_reason": None}]}
            for piece in pieces
        ]
        events.append({**base, "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]})
        if (body.get("stream_options") or {}).get("include_usage"):
            events.append({**base, "choices": [], "usage": payload["usage"]})
        self.streamed.append(pieces)
        return "".join(f"data: {json.dumps(e)}\n\n" for e in events).encode() + b"data: [DONE]\n\n"

    def _call(self, messages: list[dict[str, Any]], fmt: dict[str, Any] | None = None) -> ModelCall:
        found = self.recorder.lookup(messages)
        normalized = [{"role": str(m.get("role")), "content": _text(m.get("content"))} for m in messages]
        adapter, sig, inputs = found if found is not None else (None, None, {})
        set_tools(self.tools)  # this handler thread's own context
        return ModelCall(len(self.requests) - 1, normalized, sig, adapter, inputs, self.engine, fmt)


def _format_kind(fmt: Any) -> str:
    """``"json_schema"``, ``"json_object+schema"``, ``"json_object"``, ``"text"`` or ``"none"``."""
    if not isinstance(fmt, dict):
        return "none"
    kind = str(fmt.get("type"))
    return f"{kind}+schema" if kind == "json_object" and "schema" in fmt else kind


def _text(content: Any) -> str:
    if isinstance(content, list):  # content parts
        return "".join(str(p.get("text", "")) if isinstance(p, dict) else str(p) for p in content)
    return str(content or "")
