"""Sessions with MCP servers: one per server per Flock, started when an activation first needs the
server's tools, shared by every activation of every agent that uses the server, closed by
``Flock.shutdown()`` (or, failing that, when the event loop ends).

A session is held open by an *owner task* on the event loop that entered it: the SDK's client keeps
task groups and cancel scopes that must be left by the task that entered them, and activations come
and go. Activations send their requests on the shared session concurrently (JSON-RPC ids keep them
apart). A session whose server died is replaced by a fresh one for the next activation that needs it.
"""

from __future__ import annotations

import asyncio
import contextvars
import json
import logging
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from typing import Any

import anyio

from .._core.errors import ConfigurationError
from .._core.extras import install_command
from .._engine.tools import ToolDef, ToolFailed
from .._tracing.redact import register_secrets, scrub
from .servers import MCPError, MCPServer

try:
    import httpx2
    import mcp_types
    from mcp import Client, StdioServerParameters
    from mcp.client.streamable_http import streamable_http_client
    from mcp.shared.exceptions import MCPError as _SDKError
except ImportError as exc:  # pragma: no cover - checked by .with_mcp() first
    raise ConfigurationError(
        f"MCP tools need the mcp extra ({exc.name} is missing): {install_command('mcp')}"
    ) from None

log = logging.getLogger("flock")

SHARED_KEY = "flock.mcp"
_CONNECTION_CLOSED = -32000
_CLOSE_WAIT_S = 10.0  # the SDK's own stdio shutdown: stdin closed, 2 s, SIGTERM, 2 s, SIGKILL
_MAX_PAGES = 100


class MCPToolError(ToolFailed):
    """A tool of an MCP server reported an error (or refused the call). The model sees the message
    as the tool's answer and may try again; the activation goes on."""


def connections(shared: dict[str, Any]) -> Connections:
    """The Flock's :class:`Connections` (kept in its per-Flock engine state)."""
    found = shared.get(SHARED_KEY)
    if found is None:
        found = shared[SHARED_KEY] = Connections()
    return found


class Connections:
    """The MCP sessions of one Flock, one per server (servers with equal command, environment, URL
    and headers share one). ``aclose()`` ends them all; ``Flock.shutdown()`` calls it."""

    def __init__(self) -> None:
        self._by_key: dict[tuple[Any, ...], Connection] = {}

    def get(self, server: MCPServer) -> Connection:
        found = self._by_key.get(server.key)
        if found is None:
            found = self._by_key[server.key] = Connection(server)
        return found

    async def aclose(self) -> None:
        for connection in list(self._by_key.values()):
            await connection.aclose()


class Connection:
    """One server's session, (re)started on demand."""

    def __init__(self, server: MCPServer) -> None:
        self.server = server
        self._live: _Live | None = None
        self._lock: tuple[asyncio.AbstractEventLoop, asyncio.Lock] | None = None
        self._defs: dict[frozenset[str] | None, tuple[tuple[Any, ...], list[ToolDef]]] = {}
        register_secrets(server.secrets)  # exported spans are scrubbed of them

    @property
    def connected(self) -> bool:
        """Whether a session is open now."""
        return self._live is not None and self._live.ok

    async def tool_defs(self, allow: frozenset[str] | None, agent: str) -> list[ToolDef]:
        """The tools ``allow`` names (all when ``None``), listed once per session. A new session that
        lists the same tools gets the same :class:`ToolDef` objects, so the engine's programs built
        for them stay valid (and its cache does not grow with every restart of a server)."""
        live = self._live
        if (
            live is not None
            and live.ok
            and live.tools is not None
            and live.loop is asyncio.get_running_loop()
        ):
            tools = live.tools
        else:
            with _connect_span(self.server) as span:
                live = await self._session()
                tools = await live.listing(self.server)
                if span is not None:
                    span.set_attribute("flock.mcp.tools", len(tools))
        listed = tuple((t.name, t.description, json.dumps(t.input_schema, sort_keys=True)) for t in tools)
        cached = self._defs.get(allow)
        if cached is not None and cached[0] == listed:
            return cached[1]
        if allow is not None:
            missing = sorted(allow - {t.name for t in tools})
            if missing:
                raise ConfigurationError(
                    f"agent {agent!r}: with_mcp(allow=...) names {missing}, which MCP server "
                    f"{self.server.label!r} does not offer; it offers {sorted(t.name for t in tools)}"
                )
        found = [self._tool_def(t) for t in tools if allow is None or t.name in allow]
        self._defs[allow] = (listed, found)
        return found

    def _tool_def(self, tool: Any) -> ToolDef:
        name = tool.name
        label = self.server.label

        async def call(arguments: dict[str, Any]) -> str:
            _note_server(label)
            live = self._live  # the session of now: never one started in the middle of this call
            if live is None or live.loop is not asyncio.get_running_loop():
                raise _gone(self.server, name, None)
            return await live.call(self.server, name, arguments)

        return ToolDef(
            name=name,
            description=tool.description or tool.title or name,
            parameters=_parameters(tool.input_schema),
            call=call,
            ends_activation=(MCPError,),
            source=f"MCP server {label!r}",
        )

    async def _session(self) -> _Live:
        loop = asyncio.get_running_loop()
        live = self._live
        if live is not None and live.loop is loop and live.ok:
            return live
        if self._lock is None or self._lock[0] is not loop:
            self._lock = (loop, asyncio.Lock())
        async with self._lock[1]:
            live = self._live
            if live is not None and live.loop is loop and live.ok:
                return live
            if live is not None:
                self._live = None
                await live.close()  # a dead session (or one of an event loop that ended)
            live = await _Live.start(self.server, loop)
            self._live = live
            return live

    async def aclose(self) -> None:
        live, self._live = self._live, None
        if live is not None:
            await live.close()


class _Live:
    """One open session and the task that owns it."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.ready = anyio.Event()
        self.closing = anyio.Event()
        self.client: Any = None
        self.error: BaseException | None = None
        self.broken = False
        self.task: asyncio.Task[None] | None = None
        self.tools: list[Any] | None = None

    @property
    def ok(self) -> bool:
        return self.client is not None and not self.broken and self.task is not None and not self.task.done()

    @classmethod
    async def start(cls, server: MCPServer, loop: asyncio.AbstractEventLoop) -> _Live:
        live = cls(loop)
        # The owner task starts with a context of its own (the activation's context variables are not
        # its business) that keeps only the current span, so the SDK's handshake spans have a parent.
        from opentelemetry import context as otel_context
        from opentelemetry import trace

        current = trace.get_current_span()
        owned = contextvars.Context()
        owned.run(otel_context.attach, trace.set_span_in_context(current))
        live.task = loop.create_task(live._own(server), name=f"flock MCP {server.label}", context=owned)
        try:
            with anyio.fail_after(server.timeout):
                await live.ready.wait()
        except TimeoutError:
            await live.close()
            raise MCPError(
                f"MCP server {server.label!r} did not answer within {server.timeout:g} s; check that it "
                "speaks MCP"
                + (" on stdin/stdout" if server.command else " at this URL")
                + " (or raise MCPServer(timeout=...) for a slow start)",
                server=server.label,
            ) from None
        except BaseException:
            await live.close()
            raise
        if live.client is None:
            await live.close()
            raise _start_error(server, live.error)
        log.info("MCP server %r connected", server.label)
        return live

    async def _own(self, server: MCPServer) -> None:
        try:
            async with Client(_transport(server), client_info=_client_info()) as client:
                self.client = client
                self.ready.set()
                await self.closing.wait()
        except Exception as exc:  # kept: start() and call() report it as an MCPError
            self.error = exc
        finally:
            self.broken = True
            self.ready.set()

    async def listing(self, server: MCPServer) -> list[Any]:
        if self.tools is not None:
            return self.tools
        tools: list[Any] = []
        cursor = None
        try:
            with anyio.fail_after(server.timeout):
                for _ in range(_MAX_PAGES):
                    page = await self.client.list_tools(cursor=cursor)
                    tools.extend(page.tools)
                    cursor = page.next_cursor
                    if not cursor:
                        break
        except TimeoutError:
            self.broken = True
            raise MCPError(
                f"MCP server {server.label!r} did not list its tools within {server.timeout:g} s",
                server=server.label,
            ) from None
        except Exception as exc:
            self.broken = True
            raise MCPError(
                f"MCP server {server.label!r} failed to list its tools: {_reason(exc, server)}",
                server=server.label,
            ) from None
        self.tools = tools
        return tools

    async def call(self, server: MCPServer, name: str, arguments: dict[str, Any]) -> str:
        client = self.client
        if client is None or self.broken:
            raise _gone(server, name, self.error)
        try:
            result = await client.call_tool(name, arguments)
        except _SDKError as exc:
            if exc.code != _CONNECTION_CLOSED:  # the server refused this call: the model may retry
                raise MCPToolError(scrub(exc.message, server.secrets)) from None
            self.broken = True
            raise _gone(server, name, exc) from None
        except (anyio.BrokenResourceError, anyio.ClosedResourceError, OSError, httpx2.TransportError) as exc:
            self.broken = True
            raise _gone(server, name, exc) from None
        text = render(result)
        if result.is_error:
            raise MCPToolError(scrub(text, server.secrets) or f"tool {name!r} reported an error")
        return text

    async def close(self) -> None:
        self.broken = True
        self.closing.set()
        task = self.task
        if task is None or task.done():
            return
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:  # pragma: no cover - close() is awaited, so a loop runs
            return
        if running is not self.loop:  # its event loop is gone or elsewhere: that loop ends the task
            return
        with anyio.CancelScope(shield=True):
            done, _ = await asyncio.wait({task}, timeout=_CLOSE_WAIT_S)
            if not done:
                task.cancel()
                await asyncio.wait({task}, timeout=_CLOSE_WAIT_S)


@asynccontextmanager
async def _http(server: MCPServer) -> AsyncIterator[Any]:
    timeout = httpx2.Timeout(30.0, read=300.0)  # a server may hold a response stream open
    async with (
        httpx2.AsyncClient(headers=dict(server.headers or {}), timeout=timeout) as http,
        streamable_http_client(str(server.url), http_client=http) as streams,
    ):
        yield streams


def _transport(server: MCPServer) -> Any:
    if server.url is not None:
        return _http(server)
    return StdioServerParameters(
        command=str(server.command),
        args=list(server.args),
        env=dict(server.env or {}) or None,
        cwd=server.cwd,
    )


def _client_info() -> Any:
    from importlib.metadata import PackageNotFoundError, version

    try:
        found = version("flock")
    except PackageNotFoundError:  # pragma: no cover - a source tree that was never installed
        found = "0"
    return mcp_types.Implementation(name="flock", version=found)


def _leaf(exc: BaseException | None) -> BaseException | None:
    while isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        exc = exc.exceptions[0]
    return exc


def _reason(exc: BaseException | None, server: MCPServer) -> str:
    leaf = _leaf(exc)
    if leaf is None:
        return "the session is closed"
    text = str(leaf.message if isinstance(leaf, _SDKError) else leaf) or type(leaf).__name__
    return scrub(" ".join(text.split()), server.secrets)


def _start_error(server: MCPServer, exc: BaseException | None) -> MCPError:
    leaf = _leaf(exc)
    reason = _reason(exc, server)
    label = server.label
    if server.command is not None:
        if isinstance(leaf, OSError):
            hint = f"check that the command {server.command!r} exists and can run (try it in a terminal)"
        else:
            hint = (
                "it exited or closed stdin/stdout before it answered: run the command in a terminal to see "
                "its error (its stderr goes to this process's stderr)"
            )
        return MCPError(f"MCP server {label!r} could not be started: {reason}; {hint}", server=label)
    hint = (
        "check that it is running, that the URL is its MCP endpoint (often ending in /mcp) and that "
        "headers= carry the credentials it wants"
    )
    return MCPError(f"MCP server {label!r} could not be reached: {reason}; {hint}", server=label)


def _gone(server: MCPServer, tool: str, exc: BaseException | None) -> MCPError:
    return MCPError(
        f"MCP server {server.label!r} went away during a call of its tool {tool!r} ({_reason(exc, server)}); "
        "the activation failed, and the next activation that needs the server starts a new session",
        server=server.label,
    )


@contextmanager
def _connect_span(server: MCPServer) -> Iterator[Any]:
    """A ``flock.mcp.connect <server>`` span around starting (or reusing) a session and listing the
    tools, or nothing when tracing is off. The SDK's own request spans are its children."""
    from .._engine.engine_tracing import tracing_on

    if not tracing_on():
        yield None
        return
    from .._tracing.tracing import mark_failed, tracer

    attributes = {"flock.mcp.server": server.label, "flock.mcp.transport": "http" if server.url else "stdio"}
    with tracer().start_as_current_span(
        f"flock.mcp.connect {server.label}",
        attributes=attributes,
        record_exception=False,
        set_status_on_exception=False,
    ) as span:
        try:
            yield span
        except Exception as exc:
            mark_failed(span, exc, "mcp_error")
            raise


def _note_server(label: str) -> None:
    from .._engine.engine_tracing import tracing_on

    if tracing_on():
        from opentelemetry import trace

        trace.get_current_span().set_attribute("flock.mcp.server", label)


def render(result: Any) -> str:
    """A tool result as the text the model reads: text blocks as they are, other blocks described,
    the structured content as JSON when there is no text."""
    parts: list[str] = []
    for block in result.content or ():
        kind = getattr(block, "type", "")
        if kind == "text":
            parts.append(block.text)
        elif kind in ("image", "audio"):
            data = block.data or ""
            size = len(data) * 3 // 4 - data[-2:].count("=")  # base64
            parts.append(f"[{kind} {block.mime_type}, about {size:,} bytes]")
        elif kind == "resource_link":
            parts.append(f"[resource {block.uri}" + (f": {block.name}" if block.name else "") + "]")
        elif kind == "resource":
            inner = block.resource
            text = getattr(inner, "text", None)
            parts.append(
                text if isinstance(text, str) else f"[resource {inner.uri}, {inner.mime_type or 'binary'}]"
            )
    if result.structured_content is not None and not any(
        getattr(b, "type", "") == "text" for b in result.content or ()
    ):
        parts.append(json.dumps(result.structured_content, default=str))
    return "\n".join(parts)


def _parameters(schema: Any) -> dict[str, Any]:
    """An MCP tool's input schema as ``dspy.Tool`` args: argument name -> schema, references inlined."""
    if not isinstance(schema, dict):
        return {}
    defs = {**schema.get("definitions", {}), **schema.get("$defs", {})}
    properties = schema.get("properties") or {}
    return {name: _inline(value, defs, 0) for name, value in properties.items()}


def _inline(schema: Any, defs: dict[str, Any], depth: int) -> Any:
    if isinstance(schema, list):
        return [_inline(v, defs, depth) for v in schema]
    if not isinstance(schema, dict):
        return schema
    ref = schema.get("$ref")
    if isinstance(ref, str) and depth < 16:
        target = defs.get(ref.rsplit("/", 1)[-1])
        if isinstance(target, dict):
            merged = {**target, **{k: v for k, v in schema.items() if k != "$ref"}}
            return _inline(merged, defs, depth + 1)
    return {k: _inline(v, defs, depth) for k, v in schema.items() if k not in ("$defs", "definitions")}
