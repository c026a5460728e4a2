"""The live dashboard at ``/``: one HTML page with a script and a style sheet shipped in the package
(``flock/_server/static/``; no npm, no CDN, no build step). The page reads the REST API with the
browser's session cookie (see :mod:`flock._server.login`) and follows ``GET /events``."""

from __future__ import annotations

from functools import cache
from importlib.resources import files

from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import JSONResponse, Response

from .auth import PRINCIPAL, Principal
from .login import router as login_router
from .sessions import session_token

router = APIRouter()
router.include_router(login_router)

ASSETS = {
    "dashboard.js": "text/javascript; charset=utf-8",
    "tasks.js": "text/javascript; charset=utf-8",
    "dashboard.css": "text/css; charset=utf-8",
}
POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self' data:; "
    "frame-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'"
)
"""The page runs only its own script and talks only to this server."""


@cache
def asset(name: str) -> bytes:
    """A file of ``flock/_server/static`` (read once)."""
    return files("flock._server").joinpath("static", name).read_bytes()


@router.get("/", summary="The live dashboard (HTML)", include_in_schema=False)
async def dashboard(request: Request) -> Response:
    """The dashboard page; its panels load what this key may read."""
    headers = {
        "Content-Security-Policy": POLICY,
        "Cache-Control": "no-store",
        "X-Content-Type-Options": "nosniff",
    }
    return Response(asset("dashboard.html"), media_type="text/html; charset=utf-8", headers=headers)


@router.get("/static/{name}", summary="A dashboard asset", include_in_schema=False)
async def static(name: str) -> Response:
    """The dashboard's script and style sheet."""
    if name not in ASSETS:
        raise HTTPException(404, f"no asset {name!r}")
    return Response(
        asset(name),
        media_type=ASSETS[name],
        headers={"Cache-Control": "no-cache", "X-Content-Type-Options": "nosniff"},
    )


@router.get("/me", summary="Who this credential is")
async def me(request: Request) -> Response:
    """The tenant and scopes of the calling key or session, so a client (the dashboard) can leave out
    what it may not use. ``session`` says whether a login cookie authenticated the request."""
    principal: Principal = request.scope[PRINCIPAL]
    scopes = sorted(principal.scopes)
    return JSONResponse(
        {
            "tenant": principal.tenant,
            "scopes": scopes,
            "name": principal.name,
            "session": request.headers.get("authorization") is None
            and session_token(request.scope["headers"]) is not None,
        }
    )
