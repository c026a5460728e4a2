"""MCP both ways: an agent uses an MCP server's tools, and the flock itself is an MCP server.

    .venv/bin/python examples/18_mcp.py      # needs pip install 'flock[mcp]'; runs offline

1. The ``packer`` agent gets the tools of ``mcp_weather_server.py`` (a small MCP server shipped
   next to this file, started as a child process over stdio) with ``.with_mcp(...)``, limited to
   ``forecast`` by ``allow=``. On the built-in offline model its ReAct loop calls the tool once, then
   answers; the server notes the call on stderr. ``shutdown()`` ends the server process.
2. ``flock mcp 18_mcp:flock`` serves this flock as an MCP server. The MCP SDK's own client starts
   it, lists its tools and publishes a ``Trip``: the answer holds what the agents made of it.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import anyio
from pydantic import BaseModel, Field

from flock import Flock, MCPServer

HERE = Path(__file__).resolve().parent


class Trip(BaseModel):
    city: str = Field(min_length=1)
    days: int = Field(default=3, ge=1, le=30)


class PackingList(BaseModel):
    items: list[str]
    note: str


weather = MCPServer(command=sys.executable, args=[str(HERE / "mcp_weather_server.py")], name="weather")

flock = Flock()  # FLOCK_MODEL, else the offline model
flock.agent("packer").description("Suggest what to pack for the trip, given the forecast.").consumes(
    Trip
).publishes(PackingList).with_mcp(weather, allow=["forecast"])


async def use_tools() -> None:
    async with flock:  # shutdown() at the end closes the weather server
        await flock.publish(Trip(city="Oslo", days=4))
        summary = await flock.run_until_idle()
        lists = await flock.store.get_by_type(PackingList)
        print(f"1. packer -> PackingList ({len(lists)} published, {len(summary.errors)} errors)")


async def serve_the_flock() -> None:
    from mcp import Client, StdioServerParameters

    command = StdioServerParameters(
        command=sys.executable, args=["-m", "flock", "mcp", "18_mcp:flock"], cwd=str(HERE)
    )
    async with Client(command) as client:
        tools = [tool.name for tool in (await client.list_tools()).tools]
        print(f"2. flock mcp offers: {', '.join(tools)}")
        result = await client.call_tool("publish", {"type": "Trip", "payload": {"city": "Lisbon", "days": 2}})
        answer = result.structured_content or {}
        made = [f"{a['produced_by']} -> {a['type']}" for a in answer.get("downstream", [])]
        print(f"   published Trip {answer['artifact']['payload']}; downstream: {made}")
        bad = await client.call_tool("publish", {"type": "Trip", "payload": {"city": "", "days": 90}})
        print(f"   an invalid Trip is a tool error: {bad.content[0].text}")
        board = await client.call_tool("query", {"type": "PackingList"})
        print(
            f"   the served board holds {json.dumps((board.structured_content or {})['total'])} PackingList"
        )


if __name__ == "__main__":
    anyio.run(use_tools)
    anyio.run(serve_the_flock)
