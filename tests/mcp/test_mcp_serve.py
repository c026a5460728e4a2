"""``flock mcp module:flock`` as a real process, driven by the MCP SDK's own client: over stdio, and
over streamable HTTP behind API keys (none, a wrong one, another tenant's, a missing scope)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import httpx2
import pytest
from mcp import Client, MCPError, StdioServerParameters
from mcp.client.streamable_http import streamable_http_client
from mcp_support import HERE, free_port, stop, wait_for_port

pytestmark = pytest.mark.anyio

KEYS = {
    "mcp-key-tenant-a": {"tenant": "a", "scopes": ["publish", "read"]},
    "mcp-key-tenant-b": {"tenant": "b", "scopes": ["publish", "read"]},
    "mcp-key-a-readonly": {"tenant": "a", "scopes": ["read"]},
}


def stdio(*extra: str) -> StdioServerParameters:
    return StdioServerParameters(
        command=sys.executable, args=["-m", "flock", "mcp", "flock_app:flock", *extra], cwd=str(HERE)
    )


async def call(client: Client, tool: str, **arguments: Any) -> Any:
    result = await client.call_tool(tool, arguments)
    assert not result.is_error, result.content[0].text
    return result.structured_content


async def test_stdio_publish_runs_the_flock_and_returns_what_came_downstream() -> None:
    async with Client(stdio()) as client:
        tools = {t.name: t for t in (await client.list_tools()).tools}
        assert set(tools) == {"publish", "query", "invoke", "list_agents", "list_types"}
        assert tools["publish"].input_schema["required"] == ["type", "payload"]
        published = await call(
            client, "publish", type="Ticket", payload={"title": "printer on fire", "priority": 1}
        )
        assert published["artifact"]["payload"] == {"title": "printer on fire", "priority": 1}
        assert published["settled"] is True
        downstream = published["downstream"]  # a public ticket: both triage agents see it
        assert sorted(d["produced_by"] for d in downstream) == ["triage", "triage_a"]
        for triaged in downstream:
            assert triaged["type"] == "Triaged"
            assert triaged["payload"] == {"title": "printer on fire", "urgent": True}
            assert triaged["consumed_from"] == [published["artifact"]["id"]]
        board = await call(client, "query", correlation_id=published["artifact"]["correlation_id"])
        assert board["total"] == 3
        quick = await call(client, "publish", type="Ticket", payload={"title": "no wait"}, wait=False)
        assert "downstream" not in quick


async def test_stdio_validation_errors_come_back_as_tool_errors() -> None:
    async with Client(stdio()) as client:
        bad = await client.call_tool("publish", {"type": "Ticket", "payload": {"title": "", "priority": 9}})
        assert bad.is_error
        text = bad.content[0].text
        assert "title: String should have at least 1 character" in text
        assert "priority: Input should be less than or equal to 5" in text
        unknown = await client.call_tool("publish", {"type": "Nope", "payload": {}})
        assert unknown.is_error and "'Ticket'" in unknown.content[0].text
        board = await call(client, "query")
        assert board["total"] == 0  # nothing invalid reached the board


async def test_stdio_lists_types_and_agents_and_invokes_without_publishing() -> None:
    async with Client(stdio()) as client:
        found = await call(client, "list_types")
        assert found["types"]["Ticket"]["properties"]["priority"]["maximum"] == 5
        agents = await call(client, "list_agents")
        assert [a["name"] for a in agents["items"]] == ["triage", "triage_a"]
        assert agents["items"][0] == (
            {
                "name": "triage",
                "description": "Marks urgent tickets.",
                "consumes": [["Ticket"]],
                "publishes": [["Triaged"]],
            }
        )
        invoked = await call(client, "invoke", agent="triage", type="Ticket", payload={"title": "x"})
        assert [o["payload"] for o in invoked["outputs"]] == [{"title": "x", "urgent": False}]
        assert (await call(client, "query"))["total"] == 0
        missing = await client.call_tool(
            "invoke", {"agent": "ghost", "type": "Ticket", "payload": {"title": "x"}}
        )
        assert missing.is_error and "ghost" in missing.content[0].text


async def test_stdio_with_a_tenant_publishes_into_it() -> None:
    async with Client(stdio("--tenant", "a")) as client:
        published = await call(client, "publish", type="Ticket", payload={"title": "t"})
        assert published["artifact"]["visibility"] == {"kind": "tenant", "tenant_id": "a"}
        (triaged,) = published["downstream"]  # only tenant a's agent sees a's ticket
        assert triaged["produced_by"] == "triage_a"
        assert triaged["visibility"] == {"kind": "tenant", "tenant_id": "a"}


@pytest.fixture(scope="module")
def http_flock() -> Iterator[str]:
    port = free_port()
    env = {**os.environ, "FLOCK_API_KEYS": json.dumps(KEYS)}
    process = subprocess.Popen(
        [sys.executable, "-m", "flock", "mcp", "flock_app:flock", "--http", "--port", str(port)],
        cwd=HERE,
        env=env,
    )
    try:
        wait_for_port(port, process)
        yield f"http://127.0.0.1:{port}/mcp"
    finally:
        stop(process)


@asynccontextmanager
async def http_client(url: str, key: str | None) -> AsyncIterator[Client]:
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    async with (
        httpx2.AsyncClient(headers=headers) as http,
        Client(streamable_http_client(url, http_client=http)) as client,
    ):
        yield client


def test_http_without_a_key_or_with_a_wrong_one_is_401(http_flock: str) -> None:
    initialize = {"jsonrpc": "2.0", "id": 1, "method": "tools/list"}
    headers = {"Accept": "application/json, text/event-stream", "Content-Type": "application/json"}
    for auth in (
        {},
        {"Authorization": "Bearer not-a-key-at-all"},
        {"Authorization": "Basic mcp-key-tenant-a"},
    ):
        answer = httpx.post(http_flock, json=initialize, headers={**headers, **auth})
        assert answer.status_code == 401
        assert answer.headers["www-authenticate"] == 'Bearer realm="flock"'


async def test_http_tenants_see_only_their_own_artifacts(http_flock: str) -> None:
    async with http_client(http_flock, "mcp-key-tenant-a") as a:
        published = await call(a, "publish", type="Ticket", payload={"title": "a's ticket", "priority": 2})
        assert published["artifact"]["visibility"] == {"kind": "tenant", "tenant_id": "a"}
        assert [d["payload"]["urgent"] for d in published["downstream"]] == [True]
        mine = await call(a, "query", correlation_id=published["artifact"]["correlation_id"])
        assert mine["total"] == 2
    async with http_client(http_flock, "mcp-key-tenant-b") as b:
        theirs = await call(b, "query", correlation_id=published["artifact"]["correlation_id"])
        assert theirs["total"] == 0


async def test_http_a_missing_scope_is_a_tool_error(http_flock: str) -> None:
    async with http_client(http_flock, "mcp-key-a-readonly") as reader:
        refused = await reader.call_tool("publish", {"type": "Ticket", "payload": {"title": "x"}})
        assert refused.is_error and "lacks the 'publish' scope" in refused.content[0].text
        assert (await call(reader, "list_types"))["types"]


async def test_the_sdk_client_without_a_key_cannot_connect(http_flock: str) -> None:
    with pytest.raises(BaseExceptionGroup) as raised:  # the SDK reports the HTTP error from its tasks
        async with http_client(http_flock, None) as client:
            await client.list_tools()
    found = raised.value
    while isinstance(found, BaseExceptionGroup):
        found = found.exceptions[0]
    assert isinstance(found, MCPError) and found.message == "Server returned an error response"


def test_http_without_keys_refuses_to_start() -> None:
    env = {k: v for k, v in os.environ.items() if k != "FLOCK_API_KEYS"}
    done = subprocess.run(
        [sys.executable, "-m", "flock", "mcp", "flock_app:flock", "--http"],
        cwd=HERE,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 1
    assert "FLOCK_API_KEYS" in done.stderr
