"""``.with_mcp(server, allow=...)``: an MCP server's tools in an agent's ReAct loop, with a real
server process (``mcp_tool_server.py``) started over stdio by the Flock, or served over HTTP."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import anyio
import pytest
from mcp_support import (
    TOKEN,
    TOOL_SERVER,
    Answer,
    Pair,
    Question,
    ReactScript,
    Total,
    alive,
    observations_of,
    stop,
)
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import StatusCode

from flock import ConfigurationError, DSPyEngine, Flock, MCPError, MCPServer
from flock.testing import FunctionModel

pytestmark = pytest.mark.anyio

COMMAND = [sys.executable, TOOL_SERVER]


def clerk(
    flock: Flock, script: ReactScript, server: Any = None, allow: Any = None, name: str = "clerk"
) -> None:
    flock.agent(name).consumes(Question).publishes(Answer).with_mcp(
        COMMAND if server is None else server, allow=allow
    ).with_engines(DSPyEngine(script.model()))


async def test_an_agent_calls_a_stdio_server_tool_and_publishes(spans: InMemorySpanExporter) -> None:
    script = ReactScript(("weather", {"city": "Oslo"}))
    async with Flock() as flock:
        clerk(flock, script)
        await flock.publish(Question(city="Oslo"))
        summary = await flock.run_until_idle()
        assert summary.errors == []
        answers, _ = await flock.store.query_artifacts()
        assert [a.type for a in answers].count("Answer") == 1
    assert script.observations()[0] == "sunny in Oslo, 21 degrees"  # the server's answer, as text
    tool = next(s for s in spans.get_finished_spans() if s.name == "execute_tool weather")
    assert tool.attributes["gen_ai.tool.name"] == "weather"
    label = f"{Path(sys.executable).name} mcp_tool_server.py"
    assert tool.attributes["flock.mcp.server"] == label
    connect = next(s for s in spans.get_finished_spans() if s.name == f"flock.mcp.connect {label}")
    assert connect.attributes["flock.mcp.transport"] == "stdio" and connect.attributes["flock.mcp.tools"] == 9
    evaluate = next(s for s in spans.get_finished_spans() if s.name == "flock.evaluate clerk")
    assert tool.parent.span_id == evaluate.context.span_id == connect.parent.span_id


async def test_the_real_react_path_over_http_uses_the_tool_result(openai_server: Any) -> None:
    """A model behind a real OpenAI-protocol server asks for ``add``; the sum the MCP server returns
    is what the agent publishes."""
    import dspy

    def step(call: Any) -> Any:
        trajectory = str(call.inputs.get("trajectory") or "")
        if "next_tool_name" in call.output_fields:
            if "observation_0" not in trajectory:
                return {
                    "next_thought": "add them",
                    "next_tool_name": "add",
                    "next_tool_args": {"a": 2, "b": 40},
                }
            return {"next_thought": "done", "next_tool_name": "finish", "next_tool_args": {}}
        observed = int(trajectory.split("[[ ## observation_0 ## ]]")[1].split()[0])
        values = call.values()
        values[next(n for n in call.output_fields if n != "reasoning")] = Total(value=observed)
        return values

    openai_server.always(step)
    engine = DSPyEngine(
        "openai/test-model", lm_kwargs={"api_base": openai_server.base_url, "api_key": "k" * 12}
    )
    async with Flock() as flock:
        flock.agent("adder").consumes(Pair).publishes(Total).with_mcp(COMMAND, allow="add").with_engines(
            engine
        )
        await flock.publish(Pair(a=2, b=40))
        with dspy.context(callbacks=[openai_server.recorder]):
            await flock.run_until_idle()
        totals, _ = await flock.store.query_artifacts()
        assert [a.payload for a in totals if a.type == "Total"] == [{"value": 42}]


async def test_allow_hides_the_other_tools() -> None:
    offered: list[list[str]] = []

    def record(call: Any) -> Any:
        if "next_tool_name" in call.output_fields:
            from typing import get_args

            offered.append(list(get_args(call.signature.output_fields["next_tool_name"].annotation)))
        return script(call)

    script = ReactScript(("weather", {"city": "Rome"}))
    async with Flock() as flock:
        flock.agent("clerk").consumes(Question).publishes(Answer).with_mcp(
            COMMAND, allow=["weather", "add"]
        ).with_engines(DSPyEngine(FunctionModel(record)))
        await flock.invoke("clerk", Question(city="Rome"))
    assert sorted(offered[0]) == ["add", "finish", "weather"]


async def test_allow_naming_a_missing_tool_is_a_configuration_error() -> None:
    async with Flock() as flock:
        clerk(flock, ReactScript(), allow=["weather", "teleport"])
        with pytest.raises(ConfigurationError, match=r"\['teleport'\].*offers \[.*'weather'"):
            await flock.invoke("clerk", Question(city="Rome"))


async def test_a_tool_error_is_the_tools_answer_not_a_crash(spans: InMemorySpanExporter) -> None:
    script = ReactScript(("refuse", {"reason": "no umbrellas"}), ("weather", {"city": "Bergen"}))
    async with Flock() as flock:
        clerk(flock, script)
        await flock.publish(Question(city="Bergen"))
        summary = await flock.run_until_idle()
    assert summary.errors == []
    first, second = script.observations()[:2]
    assert first.startswith("Error: ") and "refused: no umbrellas" in first and "Traceback" not in first
    assert second == "sunny in Bergen, 21 degrees"
    failed = next(s for s in spans.get_finished_spans() if s.name == "execute_tool refuse")
    assert failed.status.status_code == StatusCode.ERROR


async def test_a_slow_call_hits_the_tool_timeout_and_the_session_stays_usable() -> None:
    script = ReactScript(("nap", {"seconds": 30}), ("add", {"a": 20, "b": 22}))
    async with Flock() as flock:
        flock.agent("clerk").consumes(Question).publishes(Answer).with_mcp(COMMAND).with_engines(
            DSPyEngine(script.model(), tool_timeout=0.5)
        )
        await flock.invoke("clerk", Question(city="x"))
    timed_out, added = script.observations()[:2]
    assert "did not return within 0.5 s" in timed_out
    assert added == "42"


async def test_content_that_is_not_text_is_described() -> None:
    script = ReactScript(("chart", {"points": 96}))
    async with Flock() as flock:
        clerk(flock, script)
        await flock.invoke("clerk", Question(city="x"))
    assert script.observations()[0] == "[image image/png, about 100 bytes]"


async def test_a_server_that_cannot_start_fails_the_activation_and_the_run_goes_on() -> None:
    async with Flock() as flock:
        clerk(
            flock,
            ReactScript(("weather", {"city": "x"})),
            server=[sys.executable, "-c", "pass"],
            name="broken",
        )
        flock.agent("fine").consumes(Question).publishes(Total).calls(lambda q: Total(value=len(q.city)))
        await flock.publish(Question(city="Lima"))
        summary = await flock.run_until_idle()
        totals, _ = await flock.store.query_artifacts()
    errors = summary.errors
    assert [e.agent for e in errors] == ["broken"]
    assert errors[0].error_type == "MCPError"
    assert "could not be started" in errors[0].message and "python" in errors[0].message
    assert [a.payload for a in totals if a.type == "Total"] == [{"value": 4}]


async def test_a_missing_command_names_the_command() -> None:
    async with Flock() as flock:
        clerk(flock, ReactScript(), server="/nonexistent/mcp-server --stdio")
        with pytest.raises(MCPError, match=r"could not be started.*'/nonexistent/mcp-server' exists"):
            await flock.invoke("clerk", Question(city="x"))


async def test_a_server_that_dies_mid_call_fails_that_activation_and_is_restarted_for_the_next() -> None:
    crash = ReactScript(("crash", {}), ("weather", {"city": "never"}))
    fine = ReactScript(("pid", {}))
    async with Flock() as flock:
        clerk(flock, crash, name="crasher")
        with pytest.raises(MCPError, match="went away during a call of its tool 'crash'"):
            await flock.invoke("crasher", Question(city="a"))
        assert len(crash.seen) == 1  # the evaluation ended at the failed call: no further model call
        clerk(flock, fine, name="after")
        await flock.invoke("after", Question(city="b"))
        pid = int(fine.observations()[0])
        assert alive(pid)
    assert not alive(pid)


async def test_one_session_per_server_is_shared_and_shutdown_ends_the_process() -> None:
    scripts = [ReactScript(("pid", {}), ("nap", {"seconds": 0.2})) for _ in range(2)]
    flock = Flock()
    for i, script in enumerate(scripts):
        clerk(flock, script, name=f"clerk{i}")
    for city in ("a", "b", "c"):
        await flock.publish(Question(city=city))
    await flock.run_until_idle()
    seen = set().union(*(s.first_observations() for s in scripts))
    assert len(seen) == 1  # three inputs, two agents, six activations: one server process
    assert len(scripts[0].seen) >= 9 and len(scripts[1].seen) >= 9  # 3 activations x 3 model calls each
    pid = int(seen.pop())
    assert alive(pid)
    await flock.shutdown()
    assert not alive(pid)


async def test_concurrent_activations_send_their_calls_on_the_one_session_side_by_side() -> None:
    script = ReactScript(("overlap", {"seconds": 1.0}), ("pid", {}))
    async with Flock() as flock:
        clerk(flock, script)
        for city in ("a", "b", "c", "d"):
            await flock.publish(Question(city=city))
        summary = await flock.run_until_idle()
    assert summary.errors == []
    assert max(int(o) for o in script.first_observations()) >= 2  # calls overlapped in the server
    pids = {found[1] for found in map(observations_of, script.seen) if len(found) > 1}
    assert len(pids) == 1  # four activations, one server process


def test_the_server_process_ends_with_the_event_loop_even_without_shutdown() -> None:
    flock = Flock()
    scripts = [ReactScript(("pid", {})), ReactScript(("pid", {}))]

    async def main(script: ReactScript) -> None:
        clerk(flock, script, name=f"clerk{len(flock.agents)}")
        await flock.invoke(f"clerk{len(flock.agents) - 1}", Question(city="x"))

    anyio.run(main, scripts[0])
    first = int(scripts[0].observations()[0])
    assert not alive(first)
    anyio.run(main, scripts[1])  # the same Flock on a new event loop starts the server again
    second = int(scripts[1].observations()[0])
    assert second != first and not alive(second)


async def test_env_reaches_the_server_and_secrets_stay_out_of_messages() -> None:
    from flock._tracing.redact import registered_secrets

    secret = "greeting-credential-91c4e7"
    script = ReactScript(("greeting", {}))
    server = MCPServer(command=sys.executable, args=[TOOL_SERVER], env={"MCP_TEST_GREETING": secret})
    assert secret not in repr(server) and secret not in repr(flock_agent_spec(server))
    async with Flock() as flock:
        clerk(flock, script, server=server)
        await flock.invoke("clerk", Question(city="x"))
    assert script.observations()[0] == secret
    assert secret in registered_secrets()  # exported spans are scrubbed of it
    broken = MCPServer(command=sys.executable, args=["-c", "import sys; sys.exit(2)"], env={"TOKEN": secret})
    async with Flock() as flock:
        clerk(flock, ReactScript(), server=broken)
        with pytest.raises(MCPError) as raised:
            await flock.invoke("clerk", Question(city="x"))
    assert secret not in str(raised.value)


async def test_exported_spans_and_logs_carry_no_env_or_header_values(
    spans: InMemorySpanExporter, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    import logging

    from flock._tracing.redact import Redactor

    monkeypatch.setenv("OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT", "true")  # prompts on spans
    secret = "mcp-env-credential-4d8b2f"
    server = MCPServer(command=sys.executable, args=[TOOL_SERVER], env={"MCP_TEST_GREETING": secret})
    script = ReactScript(("greeting", {}), ("refuse", {"reason": secret}))
    with caplog.at_level(logging.DEBUG, logger="flock"):
        async with Flock() as flock:
            clerk(flock, script, server=server)
            await flock.invoke("clerk", Question(city="x"))
    assert "refused: [REDACTED]" in script.observations()[1]  # a tool's error never echoes it back
    finished = spans.get_finished_spans()
    raw = repr([dict(s.attributes or {}) for s in finished])
    assert secret in raw  # the tool's answer was in a captured prompt...
    exported = repr([Redactor().attributes(dict(s.attributes or {})) for s in finished])
    assert secret not in exported  # ...and is cut out of what the exporters write
    assert secret not in caplog.text


def flock_agent_spec(server: MCPServer) -> Any:
    flock = Flock()
    return flock.agent("x").consumes(Question).publishes(Answer).with_mcp(server).spec


async def test_a_streamable_http_server_with_headers(http_tool_server: str) -> None:
    script = ReactScript(("add", {"a": 1, "b": 2}))
    server = MCPServer(url=http_tool_server, headers={"Authorization": f"Bearer {TOKEN}"})
    async with Flock() as flock:
        clerk(flock, script, server=server)
        await flock.invoke("clerk", Question(city="x"))
    assert script.observations()[0] == "3"
    async with Flock() as flock:
        clerk(flock, ReactScript(("add", {"a": 1, "b": 2})), server=http_tool_server)  # no credentials
        with pytest.raises(MCPError, match="could not be reached") as raised:
            await flock.invoke("clerk", Question(city="x"))
    assert TOKEN not in str(raised.value)


async def test_an_http_server_that_went_away_fails_the_activation(
    doomed_http_tool_server: tuple[str, subprocess.Popen[bytes]],
) -> None:
    url, process = doomed_http_tool_server
    async with Flock() as flock:
        clerk(flock, ReactScript(("add", {"a": 1, "b": 1})), server=url)
        assert (await flock.invoke("clerk", Question(city="x")))[0].type == "Answer"
        stop(process)
        with pytest.raises(MCPError, match="went away during a call of its tool 'add'"):
            await flock.invoke("clerk", Question(city="y"))
        with pytest.raises(MCPError, match="could not be reached"):  # the next one tries again
            await flock.invoke("clerk", Question(city="z"))


def test_servers_are_checked_when_declared() -> None:
    flock = Flock()
    builder = flock.agent("x").consumes(Question).publishes(Answer)
    for bad, match in [
        (42, "an MCP server is a command"),
        ("", "empty"),
        (MCPServer, None),
    ]:
        with pytest.raises(ConfigurationError, match=match):
            builder.with_mcp(bad)
    with pytest.raises(ConfigurationError, match="tool names"):
        builder.with_mcp("python server.py", allow=[""])
    with pytest.raises(ConfigurationError):
        MCPServer(command="python", url="http://127.0.0.1/mcp")
    with pytest.raises(ConfigurationError, match="headers= are for a URL"):
        MCPServer(command="python", headers={"a": "b"})
    with pytest.raises(ConfigurationError, match="timeout"):
        MCPServer(url="http://127.0.0.1:1/mcp", timeout=0)
    spec = (
        builder.with_mcp("python 'my server.py' --fast").with_mcp("https://u:pw@tools.example/mcp?k=v").spec
    )
    first, second = spec.toolsets
    assert (first.server.command, first.server.args) == ("python", ("my server.py", "--fast"))
    assert second.server.url == "https://u:pw@tools.example/mcp?k=v"
    assert second.server.label == "https://tools.example/mcp"  # no user, password or query
    assert "pw" not in repr(second)


async def test_a_slow_server_start_is_bounded_by_the_timeout() -> None:
    silent = MCPServer(command=sys.executable, args=["-c", "import time; time.sleep(60)"], timeout=1)
    async with Flock() as flock:
        clerk(flock, ReactScript(), server=silent)
        with pytest.raises(MCPError, match="did not answer within 1 s"):
            await flock.invoke("clerk", Question(city="x"))
