"""The REST API of a served flock (extra ``flock[server]``: FastAPI on uvicorn).

Deny by default: an ASGI layer in front of every route, the OpenAPI document and unknown paths
included, turns away a request without a valid ``Authorization: Bearer <key>`` (401). Routes then
check scopes (403). What a principal reads is filtered by its visibility; what it publishes carries
its tenant. The routes live in :mod:`flock._server.server_routes`.
"""

from __future__ import annotations

import inspect
import json
import logging
from typing import Any

import anyio
from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from pydantic.json_schema import models_json_schema
from starlette.types import ASGIApp, Receive, Scope, Send

from .._core.errors import ConfigurationError
from .._core.serving import Runner
from .auth import CHALLENGE, PRINCIPAL, ApiKeys, Principal, bearer_key, send_response, unauthorized
from .login import LOGIN_ROUTES, login_page, wants_html
from .sessions import Sessions, forgery_safe, session_token

log = logging.getLogger("flock")


class _Deny:
    """ASGI layer: every HTTP request needs a known bearer key or a live session cookie (see
    :mod:`flock._server.sessions`), or it ends here with a 401 — a small login page for a browser
    asking for ``/``. ``POST /login`` and ``POST /logout`` pass through: they check keys themselves."""

    def __init__(self, app: ASGIApp, keys: ApiKeys, sessions: Sessions) -> None:
        self.app = app
        self.keys = keys
        self.sessions = sessions

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":  # lifespan; websockets are not served
            if scope["type"] == "websocket":
                await send({"type": "websocket.close", "code": 1008})
                return
            await self.app(scope, receive, send)
            return
        headers = scope["headers"]
        key = bearer_key(headers)
        principal = self.keys.authenticate(key)
        by_cookie = False
        if principal is None and key is None:
            principal = self.sessions.principal(session_token(headers))
            by_cookie = principal is not None
        method, path = scope["method"], scope["path"]
        if (method, path) in LOGIN_ROUTES:
            await self.app(scope, receive, send)
            return
        if principal is None:
            if method in ("GET", "HEAD") and path == "/" and wants_html(headers):
                await send_response(send, 401, login_page().encode(), b"text/html; charset=utf-8")
                return
            await send_response(send, 401, unauthorized(key), b"application/json", [CHALLENGE])
            return
        if by_cookie and not forgery_safe(method, headers):
            body = json.dumps(
                {
                    "detail": "a request authenticated by the session cookie that changes state must be "
                    "JSON (Content-Type: application/json) or carry the X-Flock-Request header"
                }
            ).encode()
            await send_response(send, 403, body, b"application/json")
            return
        scope[PRINCIPAL] = principal
        await self.app(scope, receive, send)


def resolve_auth(auth: ApiKeys | None) -> ApiKeys:
    """``auth`` itself, or the keys of ``FLOCK_API_KEYS``; never no keys at all."""
    if auth is None:
        return ApiKeys.from_env()
    if not isinstance(auth, ApiKeys):
        raise ConfigurationError(
            f"serve(auth=...) takes ApiKeys({{key: Principal(...)}}), got {auth!r}; without it the "
            "keys come from FLOCK_API_KEYS"
        )
    return auth


def create_app(
    flock: Any, auth: ApiKeys | None = None, *, runner: Runner | None = None, traces: Any = None
) -> FastAPI:
    """The ASGI application serving ``flock``. ``runner`` reports readiness; ``traces`` is the trace
    store file (default: the one :func:`flock.tracing.enable_tracing` writes, if tracing is on)."""
    from .dashboard import router as dashboard
    from .server_routes import router
    from .task_routes import router as task_router

    keys = resolve_auth(auth)
    extra: dict[str, Any] = {}
    if "telemetry" in inspect.signature(FastAPI.__init__).parameters:
        # recent FastAPI versions trace every request on the global provider: with enable_tracing() each
        # health probe and dashboard fetch would become a "run" in Flock's trace store
        extra["telemetry"] = {"tracing": False}
    app = FastAPI(
        **extra,
        title="Flock",
        summary="A typed blackboard of agents: publish artifacts, query the board, follow events.",
        version="1",
        docs_url=None,
        redoc_url=None,
    )
    app.state.flock = flock
    app.state.runner = runner
    app.state.traces = traces
    app.state.streams = set()  # open event streams
    app.state.keys = keys
    app.state.sessions = Sessions()
    app.include_router(router)
    app.include_router(task_router)
    app.include_router(dashboard)
    app.openapi = lambda: _openapi(app)  # type: ignore[method-assign]
    app.add_middleware(_Deny, keys=keys, sessions=app.state.sessions)
    return app


def _openapi(app: FastAPI) -> dict[str, Any]:
    """FastAPI's document plus every registered artifact type's schema and the publish body as a
    union over them (regenerated when a type is registered)."""
    flock = app.state.flock
    types = flock._catalog.types
    names = tuple(types.names())
    cached = getattr(app.state, "openapi_cache", None)
    if cached is not None and cached[0] == names:
        return cached[1]
    doc = get_openapi(title=app.title, version=app.version, summary=app.summary, routes=app.routes)
    models = [types.resolve(n) for n in names]
    keys, defs = models_json_schema(
        [(m, "validation") for m in models if m is not None],
        ref_template="#/components/schemas/{model}",
    )
    schemas = doc.setdefault("components", {}).setdefault("schemas", {})
    schemas.update(defs.get("$defs", {}))
    variants = []
    type_refs = {}
    for name, model in zip(names, models, strict=True):
        if model is None:
            continue
        ref = keys[(model, "validation")]
        type_refs[name] = ref["$ref"]
        variants.append(
            {
                "type": "object",
                "title": f"Publish {name}",
                "properties": {
                    "type": {"const": name, "type": "string"},
                    "payload": ref,
                    "correlation_id": {"type": ["string", "null"], "maxLength": 200},
                    "idempotency_key": {"type": ["string", "null"], "minLength": 1, "maxLength": 200},
                },
                "required": ["type", "payload"],
                "additionalProperties": False,
            }
        )
    doc["x-flock-types"] = type_refs
    body = doc["paths"]["/artifacts"]["post"]
    body["requestBody"] = {
        "required": True,
        "content": {"application/json": {"schema": {"oneOf": variants}}},
    }
    app.state.openapi_cache = (names, doc)
    return doc


async def serve(
    flock: Any,
    host: str = "127.0.0.1",
    port: int = 8000,
    *,
    auth: ApiKeys | None = None,
    log_level: str = "warning",
) -> None:
    """Serve ``flock`` over HTTP until cancelled or interrupted, processing artifacts as they arrive."""
    import uvicorn

    runner = Runner(flock)
    app = create_app(flock, auth, runner=runner)
    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        log_level=log_level,
        lifespan="off",
        access_log=False,
        timeout_graceful_shutdown=3,  # open event streams must not hold a stop forever
    )
    server = uvicorn.Server(config)
    async with anyio.create_task_group() as tg:
        tg.start_soon(runner.run)
        try:
            await server.serve()
        finally:
            for stream in list(app.state.streams):  # end open event streams, or shutdown waits on them
                stream.close()
            if server.started and not server.should_exit:  # cancelled: close the sockets
                server.should_exit = True
                with anyio.CancelScope(shield=True):
                    await server.shutdown()
            tg.cancel_scope.cancel()


__all__ = ["PRINCIPAL", "Principal", "create_app", "serve"]
