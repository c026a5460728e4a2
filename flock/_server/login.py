"""Logging a browser in: the login page a browser gets at ``/`` without a credential, ``POST /login``
(an API key in, a session cookie out) and ``POST /logout``. Sessions: :mod:`flock._server.sessions`."""

from __future__ import annotations

import json
from collections.abc import Iterable
from html import escape
from typing import Any
from urllib.parse import parse_qs

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response

from .sessions import clear_cookie, forgery_safe, header, same_origin, session_token, set_cookie

router = APIRouter()
LOGIN_ROUTES = frozenset({("POST", "/login"), ("POST", "/logout")})
"""Routes the deny-by-default layer lets through without a credential: they check keys themselves."""
MAX_BODY = 4096

_PAGE = """<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width,initial-scale=1"><title>Flock · log in</title>
<style>body{{margin:0;font:14px/1.4 system-ui,sans-serif;background:#f8fafc;color:#0f172a;display:flex;
min-height:100vh;align-items:center;justify-content:center}}form{{background:#fff;border:1px solid #e2e8f0;
border-radius:10px;padding:24px 28px;width:340px}}h1{{font-size:18px;margin:0 0 14px}}label{{display:block;
margin-bottom:6px;color:#64748b}}input{{width:100%;box-sizing:border-box;padding:8px;border:1px solid #cbd5e1;
border-radius:6px;font:inherit}}button{{margin-top:12px;padding:8px 16px;border:0;border-radius:6px;
background:#3b82f6;color:#fff;font:inherit;cursor:pointer}}.error{{color:#dc2626;margin:0 0 10px}}</style>
</head><body><form id="login" method="post" action="/login"><h1>Flock dashboard</h1>{error}
<label for="key">API key</label><input id="key" name="key" type="password" autocomplete="current-password"
required autofocus><button type="submit">Log in</button></form></body></html>"""


def login_page(error: str | None = None) -> str:
    """The login form (no data of the flock in it), with ``error`` above the field."""
    shown = f'<p class="error" id="login-error">{escape(error)}</p>' if error else ""
    return _PAGE.format(error=shown)


def wants_html(headers: Iterable[tuple[bytes, bytes]]) -> bool:
    """Whether the client accepts HTML (a browser navigating), so a 401 may be the login page."""
    return "text/html" in (header(headers, b"accept") or "")


def _secure(request: Request) -> bool:
    return request.url.scheme == "https"


class _TooLarge(Exception):
    pass


async def _small_body(request: Request) -> bytes:
    """The body, read only up to :data:`MAX_BODY` bytes: this route answers anyone, key or not."""
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_BODY:
            raise _TooLarge
    return body


async def _key_of(request: Request) -> tuple[str | None, bool]:
    """The key a login request sends, and whether it came as JSON (else as a form)."""
    body = await _small_body(request)
    content_type = (request.headers.get("content-type") or "").split(";", 1)[0].strip().lower()
    if content_type == "application/json":
        try:
            data: Any = json.loads(body)
        except ValueError:
            return None, True
        key = data.get("key") if isinstance(data, dict) else None
        return (key if isinstance(key, str) else None), True
    try:
        form = parse_qs(body.decode("utf-8"), max_num_fields=5)
    except (UnicodeDecodeError, ValueError):
        return None, False
    keys = form.get("key")
    return (keys[0] if keys else None), False


@router.post("/login", summary="Log a browser in", include_in_schema=False)
async def login(request: Request) -> Response:
    """Check an API key (form field or JSON ``key``) and set the session cookie. A form gets a
    redirect to the dashboard; JSON gets the principal's tenant and scopes."""
    if not same_origin(request.scope["headers"]):
        return JSONResponse({"detail": "log in from this server's own login page"}, status_code=403)
    try:
        key, as_json = await _key_of(request)
    except _TooLarge:
        return JSONResponse({"detail": f"a login body has at most {MAX_BODY} bytes"}, status_code=413)
    principal = request.app.state.keys.authenticate(key)
    if principal is None:
        if as_json:
            return JSONResponse({"detail": "a wrong API key"}, status_code=401)
        return HTMLResponse(login_page("That key is not known to this server."), status_code=401)
    token = request.app.state.sessions.open(principal)
    response: Response
    if as_json:
        response = JSONResponse({"tenant": principal.tenant, "scopes": sorted(principal.scopes)})
    else:
        response = RedirectResponse("/", status_code=303)
    response.headers["set-cookie"] = set_cookie(token, secure=_secure(request))
    response.headers["cache-control"] = "no-store"
    return response


@router.post("/logout", summary="Log a browser out", include_in_schema=False)
async def logout(request: Request) -> Response:
    """End the session of the cookie and clear it. Like every state change by cookie, it must be JSON
    or carry the ``X-Flock-Request`` header."""
    headers = request.scope["headers"]
    if not forgery_safe(request.method, headers):
        return JSONResponse(
            {"detail": "send the X-Flock-Request header (or a JSON body) to log out"}, status_code=403
        )
    request.app.state.sessions.close(session_token(headers))
    response = Response(status_code=204)
    response.headers["set-cookie"] = clear_cookie(secure=_secure(request))
    return response
