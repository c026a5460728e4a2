"""Browser sessions of a served flock: a login cookie besides the ``Authorization`` header.

A browser cannot attach a bearer header when it navigates to ``/``, so ``POST /login`` checks an API
key once and sets an ``HttpOnly``, ``SameSite=Strict`` cookie that names a session held in this
process (the key itself never travels in a cookie). A session stands for the key's principal until
``POST /logout`` or :data:`SESSION_TTL_S`; a server restart ends every session.

Cross-site request forgery: ``SameSite=Strict`` keeps the browser from sending the cookie on requests
started by another site, and a state-changing request authenticated by the cookie must also be JSON or
carry the ``X-Flock-Request`` header — neither can be sent cross-origin without a CORS preflight,
which this server never grants. A plain HTML form posted from elsewhere is refused (403).
"""

from __future__ import annotations

import hashlib
import secrets
import time
from collections.abc import Callable, Iterable

from .auth import Principal

COOKIE = "flock_session"
SESSION_TTL_S = 12 * 3600
MAX_SESSIONS = 10_000
CSRF_HEADER = "x-flock-request"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


class Sessions:
    """Open browser sessions: a random token (kept as its SHA-256 digest) -> principal, expiry."""

    def __init__(
        self,
        ttl: float = SESSION_TTL_S,
        clock: Callable[[], float] = time.monotonic,
        limit: int = MAX_SESSIONS,
    ) -> None:
        self._ttl = ttl
        self._clock = clock
        self._limit = limit
        self._open: dict[bytes, tuple[Principal, float]] = {}

    def __len__(self) -> int:
        return len(self._open)

    def open(self, principal: Principal) -> str:
        """A new session for ``principal``; returns the token to put in the cookie."""
        now = self._clock()
        if len(self._open) >= self._limit:  # bounded: drop expired ones, then the oldest
            self._open = {d: v for d, v in self._open.items() if v[1] > now}
            while len(self._open) >= self._limit:
                del self._open[next(iter(self._open))]
        token = secrets.token_urlsafe(32)
        self._open[_digest(token)] = (principal, now + self._ttl)
        return token

    def principal(self, token: str | None) -> Principal | None:
        """The principal of a live session, or ``None``."""
        if not token:
            return None
        found = self._open.get(_digest(token))
        if found is None:
            return None
        principal, expires = found
        if expires <= self._clock():
            self._open.pop(_digest(token), None)
            return None
        return principal

    def close(self, token: str | None) -> None:
        """End the session of ``token`` (nothing when there is none)."""
        if token:
            self._open.pop(_digest(token), None)


def _digest(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


def header(headers: Iterable[tuple[bytes, bytes]], name: bytes) -> str | None:
    """The first value of header ``name`` (lower case) in ASGI ``headers``."""
    for key, value in headers:
        if key == name:
            return value.decode("latin-1")
    return None


def session_token(headers: Iterable[tuple[bytes, bytes]]) -> str | None:
    """The session token of the ``Cookie`` header(s), if any."""
    for key, value in headers:
        if key != b"cookie":
            continue
        for part in value.decode("latin-1").split(";"):
            name, _, token = part.strip().partition("=")
            if name == COOKIE and token:
                return token
    return None


def forgery_safe(method: str, headers: Iterable[tuple[bytes, bytes]]) -> bool:
    """Whether a cookie-authenticated request may change state: safe methods always; others only as
    JSON or with the ``X-Flock-Request`` header (both need a CORS preflight cross-origin)."""
    if method in SAFE_METHODS:
        return True
    items = list(headers)
    if header(items, CSRF_HEADER.encode()) is not None:
        return True
    content_type = (header(items, b"content-type") or "").split(";", 1)[0].strip().lower()
    return content_type == "application/json"


def same_origin(headers: Iterable[tuple[bytes, bytes]]) -> bool:
    """False when the browser says the request comes from another site (``Sec-Fetch-Site`` or an
    ``Origin`` whose host is not this one); True for clients that send neither (curl, scripts)."""
    items = list(headers)
    site = header(items, b"sec-fetch-site")
    if site is not None and site not in ("same-origin", "none"):
        return False
    origin = header(items, b"origin")
    if origin is None:
        return True
    host = header(items, b"host") or ""
    return origin.partition("://")[2].rstrip("/") == host


def set_cookie(token: str, *, secure: bool, max_age: int = SESSION_TTL_S) -> str:
    """The ``Set-Cookie`` value of a session (``Secure`` when served over https)."""
    flags = "; Secure" if secure else ""
    return f"{COOKIE}={token}; Path=/; HttpOnly; SameSite=Strict; Max-Age={max_age}{flags}"


def clear_cookie(*, secure: bool) -> str:
    """The ``Set-Cookie`` value that removes the session cookie."""
    return set_cookie("", secure=secure, max_age=0)
