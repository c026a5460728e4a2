"""Run a flock as an MCP server: over stdio (the default of ``flock mcp``) or streamable HTTP.

Either way a :class:`~flock._core.serving.Runner` keeps the flock working beside the server, so
what a client publishes is processed as it arrives. Over HTTP every request needs
``Authorization: Bearer <key>`` with a key of :class:`~flock.ApiKeys` (or ``FLOCK_API_KEYS``):
none or a wrong one is answered 401 before the MCP layer sees it.
"""

from __future__ import annotations

from typing import Any

import anyio

from .._core.serving import Runner
from .._server.auth import CHALLENGE, PRINCIPAL, ApiKeys, Principal, bearer_key, send_response, unauthorized
from .flock_server import build_server

LOCAL = Principal(tenant=None, scopes=frozenset({"admin"}), name="mcp-stdio")
"""Who calls over stdio: the local user who started the process (it could read the board file
anyway). ``flock mcp --tenant T`` narrows it to one tenant."""


async def serve_stdio(flock: Any, principal: Principal = LOCAL) -> None:
    """Serve ``flock`` over this process's stdin/stdout until the client closes stdin."""
    from mcp.server.stdio import stdio_server

    runner = Runner(flock)
    server = build_server(flock, runner.settled, principal)
    async with anyio.create_task_group() as tg:
        tg.start_soon(runner.run)
        async with stdio_server() as (read, write):
            await server.run(read, write, server.create_initialization_options())
        tg.cancel_scope.cancel()


def http_app(
    flock: Any, keys: ApiKeys, runner: Runner, *, host: str = "127.0.0.1", path: str = "/mcp"
) -> Any:
    """The ASGI application: the MCP endpoint at ``path`` behind the API-key layer."""
    server = build_server(flock, runner.settled, None)
    return _Keys(server.streamable_http_app(streamable_http_path=path, host=host), keys)


async def serve_http(
    flock: Any,
    host: str = "127.0.0.1",
    port: int = 8000,
    *,
    auth: ApiKeys | None = None,
    log_level: str = "warning",
) -> None:
    """Serve ``flock`` over streamable HTTP at ``http://host:port/mcp`` until cancelled or interrupted."""
    import uvicorn

    keys = auth if auth is not None else ApiKeys.from_env()
    runner = Runner(flock)
    app = http_app(flock, keys, runner, host=host)
    config = uvicorn.Config(app, host=host, port=port, log_level=log_level, access_log=False, lifespan="on")
    server = uvicorn.Server(config)
    async with anyio.create_task_group() as tg:
        tg.start_soon(runner.run)
        try:
            await server.serve()
        finally:
            if server.started and not server.should_exit:  # cancelled: close the sockets
                server.should_exit = True
                with anyio.CancelScope(shield=True):
                    await server.shutdown()
            tg.cancel_scope.cancel()


class _Keys:
    """ASGI layer: an HTTP request needs a known bearer key, or it ends here with a 401. The key's
    principal goes into the request's scope, where the tools find it."""

    def __init__(self, app: Any, keys: ApiKeys) -> None:
        self.app = app
        self.keys = keys

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":  # lifespan
            await self.app(scope, receive, send)
            return
        key = bearer_key(scope["headers"])
        principal = self.keys.authenticate(key)
        if principal is None:
            await send_response(send, 401, unauthorized(key, "error"), b"application/json", [CHALLENGE])
            return
        scope[PRINCIPAL] = principal
        await self.app(scope, receive, send)
