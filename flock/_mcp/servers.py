"""Which MCP server an agent's tools come from: plain values (no MCP SDK import).

:class:`MCPServer` says how to reach a server: a command started as a child process that speaks MCP
on stdin/stdout, or the URL of a streamable HTTP endpoint. What ``.with_mcp(server, allow=...)``
puts on an agent's spec is :class:`~flock._mcp.toolset.MCPTools`. The SDK is imported only when the
tools are first listed (:mod:`flock._mcp.client`).
"""

from __future__ import annotations

import shlex
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any
from urllib.parse import urlsplit

from .._core.errors import ConfigurationError, FlockError


class MCPError(FlockError):
    """An MCP server could not be started or reached, or it went away during a call.

    The activation that needed it fails with this error (a :class:`~flock.WorkflowError` on the
    board); the run goes on, and the next activation that needs the server starts it again. The
    message names the server and what to check. Errors of single tool calls are not this error:
    the model sees them as the tool's answer.
    """

    def __init__(self, message: str, *, server: str = "") -> None:
        super().__init__(message)
        self.server = server


def _strings(value: Any, what: str) -> MappingProxyType[str, str] | None:
    if value is None:
        return None
    if not isinstance(value, Mapping) or not all(
        isinstance(k, str) and k and isinstance(v, str) for k, v in value.items()
    ):
        raise ConfigurationError(f"MCPServer({what}=...) takes a mapping of strings to strings")
    return MappingProxyType(dict(value))


@dataclass(frozen=True, eq=False)
class MCPServer:
    """An MCP server: a command run as a child process (stdio), or a streamable HTTP URL.

    ::

        MCPServer(command="python", args=["tools.py"], env={"TOOLS_TOKEN": token})
        MCPServer(url="https://tools.example.com/mcp", headers={"Authorization": f"Bearer {key}"})

    Args:
        command: the program to start; it must speak MCP on its stdin/stdout.
        args: its arguments.
        env: environment variables for the child, added to a small safe base (``PATH``, ``HOME``,
            ...); the rest of this process's environment is not passed on.
        cwd: the child's working directory.
        url: a streamable HTTP endpoint (``http://`` or ``https://``), usually ending in ``/mcp``.
        headers: HTTP headers sent with every request (for example ``Authorization``).
        name: how messages and spans name the server (default: the command's name and its first
            argument's, such as ``python tools.py``, or the URL without credentials or query).
        timeout: seconds to start, connect and list the tools before giving up with an
            :class:`MCPError`. Tool calls are bounded by ``DSPyEngine(tool_timeout=...)``.

    Values of ``env`` and ``headers`` are secrets: they never appear in ``repr``, messages or spans.
    """

    command: str | None = None
    args: tuple[str, ...] = ()
    env: Mapping[str, str] | None = field(default=None, repr=False)
    cwd: str | None = None
    url: str | None = None
    headers: Mapping[str, str] | None = field(default=None, repr=False)
    name: str | None = None
    timeout: float = 30.0

    def __post_init__(self) -> None:
        if (self.command is None) == (self.url is None):
            raise ConfigurationError(
                "MCPServer needs command= (a program that speaks MCP on stdin/stdout) or url= (a streamable "
                "HTTP endpoint), not both and not neither"
            )
        if self.command is not None and (not isinstance(self.command, str) or not self.command.strip()):
            raise ConfigurationError(f"MCPServer(command=...) takes a non-empty string, got {self.command!r}")
        args = self.args
        if (
            isinstance(args, str)
            or not isinstance(args, Iterable)
            or not all(isinstance(a, str) for a in args)
        ):
            raise ConfigurationError(f"MCPServer(args=...) takes a list of strings, got {args!r}")
        object.__setattr__(self, "args", tuple(args))
        if self.url is not None:
            parts = urlsplit(self.url) if isinstance(self.url, str) else None
            if parts is None or parts.scheme not in ("http", "https") or not parts.hostname:
                raise ConfigurationError(
                    f"MCPServer(url=...) takes an http:// or https:// URL such as http://127.0.0.1:8000/mcp, "
                    f"got {self.url!r}"
                )
            if self.env is not None or self.cwd is not None:
                raise ConfigurationError("MCPServer: env= and cwd= are for a command; a URL takes headers=")
        elif self.headers is not None:
            raise ConfigurationError("MCPServer: headers= are for a URL; a command takes env=")
        object.__setattr__(self, "env", _strings(self.env, "env"))
        object.__setattr__(self, "headers", _strings(self.headers, "headers"))
        if self.cwd is not None:
            object.__setattr__(self, "cwd", str(self.cwd))
        if self.name is not None and (not isinstance(self.name, str) or not self.name.strip()):
            raise ConfigurationError(f"MCPServer(name=...) takes a non-empty string, got {self.name!r}")
        if isinstance(self.timeout, bool) or not isinstance(self.timeout, int | float) or self.timeout <= 0:
            raise ConfigurationError(f"MCPServer(timeout=...) must be seconds > 0, got {self.timeout!r}")

    def __repr__(self) -> str:  # no args, env, headers or URL parts that may hold secrets
        return f"MCPServer({self.label!r})"

    @classmethod
    def of(cls, server: Any) -> MCPServer:
        """``server`` as an :class:`MCPServer`: a URL string, a command string (split like a shell
        would), a list ``[command, *args]``, or an :class:`MCPServer` itself."""
        if isinstance(server, MCPServer):
            return server
        if isinstance(server, str):
            text = server.strip()
            if text.startswith(("http://", "https://")):
                return cls(url=text)
            try:
                parts = shlex.split(text)
            except ValueError as exc:
                raise ConfigurationError(f"cannot split the MCP server command {server!r}: {exc}") from None
            if not parts:
                raise ConfigurationError("the MCP server command is empty")
            return cls(command=parts[0], args=tuple(parts[1:]))
        if isinstance(server, list | tuple) and server and all(isinstance(p, str) for p in server):
            return cls(command=server[0], args=tuple(server[1:]))
        raise ConfigurationError(
            "an MCP server is a command (a string such as 'python tools.py', or a list), an http(s):// URL, "
            f"or an MCPServer(...); got {server!r}"
        )

    @property
    def label(self) -> str:
        """The server's name in messages and spans: no secrets (no env, headers, URL user or query)."""
        if self.name is not None:
            return self.name
        if self.url is not None:
            parts = urlsplit(self.url)
            port = f":{parts.port}" if parts.port else ""
            return f"{parts.scheme}://{parts.hostname}{port}{parts.path}"
        label = Path(str(self.command)).name
        if self.args and not self.args[0].startswith("-"):  # the script or package it runs; no options
            label += f" {Path(self.args[0]).name}"
        return label

    @property
    def key(self) -> tuple[Any, ...]:
        """Equal for servers that one session may serve (same command, environment, URL, headers)."""
        return (
            self.command,
            self.args,
            tuple(sorted((self.env or {}).items())),
            self.cwd,
            self.url,
            tuple(sorted((self.headers or {}).items())),
        )

    @property
    def secrets(self) -> tuple[str, ...]:
        """Values to keep out of messages and spans: every env and header value, and URL credentials."""
        found = [*(self.env or {}).values(), *(self.headers or {}).values()]
        for value in (self.headers or {}).values():
            scheme, _, token = value.partition(" ")
            if token and scheme.lower() in ("bearer", "basic", "token"):
                found.append(token)
        if self.url is not None:
            parts = urlsplit(self.url)
            found += [p for p in (parts.password, parts.query) if p]
        return tuple(s for s in found if len(s) >= 4)
