"""The DSPy engine's tools: Python functions (``.with_tools``) and tools described by a JSON schema
that come from elsewhere at run time (``.with_mcp``: an MCP server's tools).

Both become ``dspy.Tool`` objects that ReAct calls on the async path, each call inside an
``execute_tool <name>`` span and bounded by ``DSPyEngine(tool_timeout=...)`` (a :class:`~flock.ToolTimeout`
the model sees as the tool's error). A tool's exception is shown to the model as the tool's error,
which is what ReAct does (a :class:`ToolFailed` as ``Error: <message>``, without a traceback), except
for the exception types a :class:`ToolDef` names in
``ends_activation``: those end the evaluation (the activation fails with them), for a tool source
that is gone as a whole (an MCP server that died) rather than a tool that failed once.

A *toolset* is any object on ``AgentSpec.toolsets`` with ``async def tool_defs(shared)`` returning
:class:`ToolDef` values; ``shared`` is the Flock's per-Flock engine state (``ModelSettings.shared``), where
a toolset keeps its connections.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Awaitable, Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any, NoReturn

import anyio
import anyio.lowlevel
import dspy

from .._core.errors import ConfigurationError, FlockError, ToolTimeout
from .engine_tracing import tool_span


class ToolFailed(FlockError):
    """A tool answered with an error (a :class:`ToolDef` tool: an MCP server's tool reported one, or
    refused the arguments). The model reads ``Error: <message>`` as the tool's answer, without a
    traceback, and may try again; the tool's span records the failure."""


@dataclass(frozen=True, eq=False)
class ToolDef:
    """A tool described by data: its name, description, JSON-schema arguments and an async call.

    Attributes:
        name: the name the model calls it by.
        description: what it does, shown to the model.
        parameters: argument name -> JSON schema (``$ref`` already inlined).
        call: ``await call(arguments)`` runs it and returns what the model reads.
        ends_activation: exception types that end the evaluation instead of reaching the model.
        source: where the tool comes from, for messages (``"MCP server 'files'"``).
    """

    name: str
    description: str
    parameters: Mapping[str, Any]
    call: Callable[[dict[str, Any]], Awaitable[Any]]
    ends_activation: tuple[type[BaseException], ...] = ()
    source: str = ""


async def resolve_toolsets(agent: Any, shared: dict[str, Any]) -> tuple[ToolDef, ...]:
    """The tools of every toolset of ``agent`` (connecting to their sources if needed). Two tools of
    one name (from two toolsets, or a toolset and a function) are a :class:`ConfigurationError`."""
    found: list[ToolDef] = []
    seen = {getattr(f, "name", None) or getattr(f, "__name__", "tool"): "with_tools()" for f in agent.tools}
    for toolset in agent.toolsets:
        for tool in await toolset.tool_defs(shared):
            other = seen.get(tool.name)
            if other is not None:
                raise ConfigurationError(
                    f"agent {agent.name!r}: two tools are named {tool.name!r} ({other} and {tool.source}); "
                    "a model calls tools by name: keep one with allow=[...] on .with_mcp()"
                )
            seen[tool.name] = tool.source or "a toolset"
            found.append(tool)
    return tuple(found)


def function_tool(func: Callable[..., Any], timeout: float | None = None) -> Any:
    """A ``dspy.Tool`` for ``func``, traced and bounded by ``timeout``; sync functions run in a worker
    thread (the loop stays free), abandoned when the call is cancelled (a tool that never returns
    cannot hold up the run's deadline)."""
    if isinstance(func, dspy.Tool):
        return func
    name = getattr(func, "__name__", "tool")
    is_async = inspect.iscoroutinefunction(func)

    async def call(args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        if is_async:
            return await func(*args, **kwargs)
        work = functools.partial(func, *args, **kwargs)
        return await anyio.to_thread.run_sync(work, abandon_on_cancel=True)

    @functools.wraps(func)
    async def run(*args: Any, **kwargs: Any) -> Any:
        with tool_span(name, kwargs):
            return await _bounded(name, timeout, call(args, kwargs))

    return dspy.Tool(run, name=name, desc=inspect.getdoc(func))


def schema_tool(tool: ToolDef, timeout: float | None = None) -> Any:
    """A ``dspy.Tool`` for a :class:`ToolDef`, traced and bounded like :func:`function_tool`."""

    async def run(**kwargs: Any) -> Any:
        try:
            with tool_span(tool.name, kwargs):
                return await _bounded(tool.name, timeout, tool.call(kwargs))
        except tool.ends_activation as exc:
            await abort(exc)
        except ToolFailed as exc:
            return f"Error: {exc}"

    return dspy.Tool(run, name=tool.name, desc=tool.description or tool.name, args=dict(tool.parameters))


async def _bounded(name: str, timeout: float | None, work: Awaitable[Any]) -> Any:
    if timeout is None:
        return await work
    with anyio.move_on_after(timeout):
        return await work
    raise ToolTimeout(
        f"tool {name!r} did not return within {timeout} s (DSPyEngine(tool_timeout=...)); "
        "answer without it or try another tool"
    )


class _Abort:
    __slots__ = ("error", "scope")

    def __init__(self, scope: anyio.CancelScope) -> None:
        self.scope = scope
        self.error: BaseException | None = None


_ABORT: ContextVar[_Abort | None] = ContextVar("flock_tool_abort", default=None)


@contextmanager
def abortable() -> Iterator[None]:
    """Run a program whose tools may end it with :func:`abort`: the block is cancelled and the
    tool's error raised here. (ReAct shows every ``Exception`` a tool raises to the model; a
    cancellation passes through it.)"""
    with anyio.CancelScope() as scope:
        holder = _Abort(scope)
        token = _ABORT.set(holder)
        try:
            yield
        finally:
            _ABORT.reset(token)
    if holder.error is not None:
        raise holder.error


async def abort(exc: BaseException) -> NoReturn:
    """End the surrounding :func:`abortable` block with ``exc`` (or raise it when there is none)."""
    holder = _ABORT.get()
    if holder is None or holder.error is not None:
        raise exc
    holder.error = exc
    holder.scope.cancel()
    await anyio.lowlevel.checkpoint()
    raise exc  # pragma: no cover - the checkpoint above is cancelled


def tool_list(funcs: Sequence[Any], defs: Sequence[ToolDef], timeout: float | None) -> list[Any]:
    """The ``dspy.Tool`` objects of an agent's functions and toolset tools."""
    return [*(function_tool(f, timeout) for f in funcs), *(schema_tool(d, timeout) for d in defs)]
