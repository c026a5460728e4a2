"""The flock's MCP tools in process: the SDK's client on the same server ``flock mcp`` runs, with the
runner that keeps the flock working beside it (the process tests drive the real command)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import anyio
import pytest
from flock_app import Ticket, Triaged, triage
from mcp import Client

from flock import Flock, Principal
from flock._core.serving import Runner
from flock._mcp.flock_server import build_server

pytestmark = pytest.mark.anyio

OPERATOR = Principal(scopes={"admin"}, name="operator")


def helpdesk() -> Flock:
    flock = Flock()
    flock.agent("triage").consumes(Ticket).publishes(Triaged).calls(triage)
    flock.agent("acme_triage").tenant("acme").consumes(Ticket).publishes(Triaged).calls(triage)
    return flock


@asynccontextmanager
async def connected(flock: Flock, principal: Principal) -> AsyncIterator[Client]:
    runner = Runner(flock)
    async with anyio.create_task_group() as tg:
        tg.start_soon(runner.run)
        async with Client(build_server(flock, runner.settled, principal)) as client:
            yield client
        tg.cancel_scope.cancel()
    await flock.shutdown()


async def call(client: Client, tool: str, **arguments: Any) -> Any:
    result = await client.call_tool(tool, arguments)
    assert not result.is_error, result.content[0].text
    return result.structured_content


async def refused(client: Client, tool: str, **arguments: Any) -> str:
    result = await client.call_tool(tool, arguments)
    assert result.is_error
    text: str = result.content[0].text
    return text


async def test_publish_into_a_workflow_and_query_it_with_filters_and_pages() -> None:
    async with connected(helpdesk(), OPERATOR) as client:
        first = await call(client, "publish", type="Ticket", payload={"title": "a", "priority": 1})
        workflow = first["artifact"]["correlation_id"]
        second = await call(client, "publish", type="Ticket", payload={"title": "b"}, correlation_id=workflow)
        assert second["artifact"]["correlation_id"] == workflow
        # Downstream is the published artifact's lineage, not everything in its workflow.
        assert {d["payload"]["title"] for d in second["downstream"]} == {"b"}
        everything = await call(client, "query", correlation_id=workflow)
        assert everything["total"] == 6  # 2 tickets, each triaged by both agents (both are public)
        triaged = await call(client, "query", type="Triaged", produced_by="triage", limit=1, offset=1)
        assert triaged["total"] == 2 and len(triaged["items"]) == 1
        assert "limit must be" in await refused(client, "query", limit=0)
        assert "timeout must be" in await refused(
            client, "publish", type="Ticket", payload={"title": "x"}, timeout=0
        )


async def test_a_tenant_principal_publishes_into_its_tenant_and_sees_its_agents_only() -> None:
    acme = Principal(tenant="acme", scopes={"publish", "read"}, name="acme")
    async with connected(helpdesk(), acme) as client:
        published = await call(client, "publish", type="Ticket", payload={"title": "vpn down"})
        assert [d["produced_by"] for d in published["downstream"]] == ["acme_triage"]
        agents = await call(client, "list_agents")
        assert [a["name"] for a in agents["items"]] == ["triage", "acme_triage"]  # no tenant, and its own
        outputs = await call(client, "invoke", agent="acme_triage", type="Ticket", payload={"title": "t"})
        assert outputs["outputs"][0]["produced_by"] == "acme_triage"


async def test_another_tenants_agents_are_not_there_for_it() -> None:
    globex = Principal(tenant="globex", scopes={"publish", "read"}, name="globex")
    async with connected(helpdesk(), globex) as client:
        assert [a["name"] for a in (await call(client, "list_agents"))["items"]] == ["triage"]
        text = await refused(client, "invoke", agent="acme_triage", type="Ticket", payload={"title": "t"})
        assert "no agent named 'acme_triage'" in text


async def test_an_agent_that_fails_under_invoke_is_a_tool_error() -> None:
    flock = helpdesk()

    def broken(ticket: Ticket) -> Triaged:
        raise RuntimeError("the triage desk is closed")

    flock.agent("broken").consumes(Ticket).publishes(Triaged).calls(broken)
    async with connected(flock, OPERATOR) as client:
        text = await refused(client, "invoke", agent="broken", type="Ticket", payload={"title": "t"})
        assert "the triage desk is closed" in text


async def test_unknown_tools_and_bad_arguments_are_tool_errors() -> None:
    reader = Principal(scopes={"read"}, name="reader")
    async with connected(helpdesk(), reader) as client:
        assert "unknown tool 'teleport'" in await refused(client, "teleport")
        assert "lacks the 'publish' scope" in await refused(client, "invoke", agent="triage", type="Ticket")
        assert "correlation_id must be a string" in await refused(client, "query", correlation_id=5)


async def test_invoke_returns_only_the_outputs_the_key_may_see() -> None:
    # The agent reads a finance memo as context, so its output is for finance only: a tenant key that
    # invokes it learns that an output was withheld, not what it says.
    from flock import Artifact, LabelledVisibility

    flock = helpdesk()
    memo: list[Artifact] = []

    def memos(request: Any) -> list[Artifact]:
        return memo

    flock.agent("finance_triage").labels("finance").consumes(Ticket).publishes(Triaged).calls(
        lambda t, ctx: Triaged(title=f"{t.title}: {ctx.artifacts[0].payload['title']}", urgent=True)
    ).with_context(memos)
    memo.append(
        await flock.publish(
            Ticket(title="salaries leak"), visibility=LabelledVisibility(required_labels={"finance"})
        )
    )
    acme = Principal(tenant="acme", scopes={"publish", "read"}, name="acme")
    async with connected(flock, acme) as client:
        got = await call(client, "invoke", agent="finance_triage", type="Ticket", payload={"title": "t"})
    assert got["outputs"] == [] and got["withheld"] == 1
    assert "salaries" not in str(got)
