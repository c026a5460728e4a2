"""What ``.with_mcp(server, allow=...)`` puts on an agent's spec: a server and the tools it may use.

A toolset (see :mod:`flock._engine.tools`): the engine asks it for its tools when an activation
needs them, and it asks the Flock's connection to the server (:mod:`flock._mcp.client`, which
imports the SDK) only then.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from .._core.errors import ConfigurationError
from .._core.extras import install_command
from .servers import MCPServer


@dataclass(frozen=True, eq=False)
class MCPTools:
    """What ``.with_mcp(server, allow=...)`` adds to an agent: a server and the tool names it may use
    (``None``: all). A toolset (see :mod:`flock._engine.tools`)."""

    server: MCPServer
    allow: frozenset[str] | None = None
    agent: str = ""

    @classmethod
    def of(cls, server: Any, allow: str | Iterable[str] | None, agent: str) -> MCPTools:
        if importlib.util.find_spec("mcp") is None:
            raise ConfigurationError(
                f"agent {agent!r}: with_mcp() needs the MCP SDK: {install_command('mcp')}"
            )
        spec = MCPServer.of(server)
        names: frozenset[str] | None = None
        if allow is not None:
            items = (
                [allow] if isinstance(allow, str) else list(allow) if isinstance(allow, Iterable) else None
            )
            if not items or not all(isinstance(n, str) and n for n in items):
                raise ConfigurationError(
                    f"agent {agent!r}: with_mcp(allow=...) takes tool names, such as allow=['search'], "
                    f"got {allow!r}"
                )
            names = frozenset(items)
        return cls(spec, names, agent)

    async def tool_defs(self, shared: dict[str, Any]) -> list[Any]:
        """The server's tools (those ``allow`` names) as :class:`~flock._engine.tools.ToolDef` values,
        on the Flock's session with the server (started now if there is none)."""
        from .client import connections

        connection = connections(shared).get(self.server)
        return await connection.tool_defs(self.allow, self.agent)

    def __repr__(self) -> str:
        allow = sorted(self.allow) if self.allow is not None else None
        return f"MCPTools({self.server.label!r}, allow={allow!r})"
