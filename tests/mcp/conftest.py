"""MCP tests: a real MCP server process (``mcp_tool_server.py``, written with the official SDK),
started over stdio by the code under test or over streamable HTTP on 127.0.0.1 by a fixture."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator

import pytest

pytest.importorskip("mcp", reason="the MCP SDK is not installed: pip install 'flock[mcp]'")

from mcp_support import HERE, TOKEN, TOOL_SERVER, free_port, stop, wait_for_port
from openai_server import OpenAIServer


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def openai_server() -> Iterator[OpenAIServer]:
    """A real OpenAI-protocol chat server on 127.0.0.1 (``tests/openai_server.py``)."""
    with OpenAIServer() as server:
        yield server


@pytest.fixture(scope="module")
def http_tool_server() -> Iterator[str]:
    """The tool server over streamable HTTP on 127.0.0.1; every request needs ``Bearer TOKEN``.
    Yields its MCP endpoint URL."""
    port = free_port()
    process = subprocess.Popen([sys.executable, TOOL_SERVER, "--http", str(port), "--token", TOKEN], cwd=HERE)
    try:
        wait_for_port(port, process)
        yield f"http://127.0.0.1:{port}/mcp"
    finally:
        stop(process)


@pytest.fixture
def doomed_http_tool_server() -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """A tool server over HTTP (no token) of the test's own, which the test may stop."""
    port = free_port()
    process = subprocess.Popen([sys.executable, TOOL_SERVER, "--http", str(port)], cwd=HERE)
    try:
        wait_for_port(port, process)
        yield f"http://127.0.0.1:{port}/mcp", process
    finally:
        stop(process)
