"""A small real MCP server for the tests, written with the official SDK.

    python mcp_tool_server.py                          # stdio
    python mcp_tool_server.py --http PORT [--token T]  # streamable HTTP on 127.0.0.1:PORT/mcp

Tools: ``add``, ``weather`` (deterministic text), ``refuse`` (always a tool error), ``crash`` (the
process exits mid-call), ``greeting`` (reads ``MCP_TEST_GREETING`` from its environment), ``pid``,
``nap`` (sleeps), ``overlap`` (counts calls in flight at once) and ``chart`` (an image). With
``--token`` every HTTP request needs ``Authorization: Bearer T``.
"""

from __future__ import annotations

import argparse
import os

import anyio
from mcp.server.mcpserver import Image, MCPServer
from mcp.server.mcpserver.exceptions import ToolError

app = MCPServer("test-tools", log_level="WARNING")


@app.tool()
def add(a: int, b: int) -> int:
    """Add two integers."""
    return a + b


@app.tool()
def weather(city: str) -> str:
    """Today's weather in a city."""
    return f"sunny in {city}, 21 degrees"


@app.tool()
def refuse(reason: str) -> str:
    """Always refuses (a tool error)."""
    raise ToolError(f"refused: {reason}")


@app.tool()
def crash() -> str:
    """The server process exits in the middle of this call."""
    os._exit(3)


@app.tool()
def greeting() -> str:
    """The greeting this server was started with (MCP_TEST_GREETING)."""
    return os.environ.get("MCP_TEST_GREETING", "no greeting")


@app.tool()
def pid() -> int:
    """This server's process id."""
    return os.getpid()


@app.tool()
async def nap(seconds: float) -> str:
    """Sleep, then answer."""
    await anyio.sleep(seconds)
    return f"slept {seconds}"


@app.tool()
def chart(points: int) -> Image:
    """A (fake) PNG chart of so many points."""
    return Image(data=b"\x89PNG" + bytes(points), format="png")


_in_flight = [0, 0]  # now, most at once


@app.tool()
async def overlap(seconds: float) -> int:
    """Sleep; answer how many calls of this tool were in flight at once, at most, so far."""
    _in_flight[0] += 1
    _in_flight[1] = max(_in_flight)
    try:
        await anyio.sleep(seconds)
    finally:
        _in_flight[0] -= 1
    return _in_flight[1]


def _guarded(inner, token: str):  # type: ignore[no-untyped-def]
    expected = f"Bearer {token}".encode()

    async def asgi(scope, receive, send):  # type: ignore[no-untyped-def]
        if scope["type"] == "http" and dict(scope["headers"]).get(b"authorization") != expected:
            await send({"type": "http.response.start", "status": 401, "headers": []})
            await send({"type": "http.response.body", "body": b"no"})
            return
        await inner(scope, receive, send)

    return asgi


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--http", type=int, default=None)
    parser.add_argument("--token", default=None)
    args = parser.parse_args()
    if args.http is None:
        app.run()
        return
    import uvicorn

    asgi = app.streamable_http_app()
    if args.token:
        asgi = _guarded(asgi, args.token)
    uvicorn.run(asgi, host="127.0.0.1", port=args.http, log_level="warning")


if __name__ == "__main__":
    main()
