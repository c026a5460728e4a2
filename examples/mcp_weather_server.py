"""A small MCP server for ``18_mcp.py``, written with the official MCP SDK (``pip install 'flock[mcp]'``).

It speaks MCP on stdin/stdout: a client starts it as a child process. Its tools answer from a table
(no network), and it notes every call on stderr, which is where a stdio server's logs go.
"""

from __future__ import annotations

import sys

from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.exceptions import ToolError

server = MCPServer("weather", log_level="WARNING")

FORECASTS = {"oslo": "rain, 9 °C", "lisbon": "sunny, 24 °C", "denver": "snow, -2 °C"}


@server.tool()
def forecast(city: str) -> str:
    """Tomorrow's weather in a city."""
    print(f"weather server: forecast({city!r})", file=sys.stderr)
    return FORECASTS.get(city.strip().lower(), "clouds, 15 °C")


@server.tool()
def alerts(city: str) -> str:
    """Severe-weather alerts for a city."""
    print(f"weather server: alerts({city!r})", file=sys.stderr)
    if city.strip().lower() == "denver":
        return "winter storm warning until Friday"
    raise ToolError(f"no alert service covers {city!r}")


if __name__ == "__main__":
    server.run()
