"""Who may call a served flock: API keys mapped to principals. Plain values, no server code.

::

    auth = ApiKeys({"key-a": Principal(tenant="a", scopes={"publish", "read"})})
    await flock.serve(auth=auth)

Keys may also come from the environment: ``FLOCK_API_KEYS`` holds a JSON object that maps each key
to ``{"tenant": ..., "scopes": [...]}`` (see :meth:`ApiKeys.from_env`).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from .._core.errors import ConfigurationError
from .._core.visibility import AgentIdentity

SCOPES = frozenset({"publish", "read", "answer", "admin"})
"""What a principal may be allowed: ``publish`` artifacts, ``read`` the board, agents and events,
``answer`` human tasks, ``admin`` (every scope, plus traces, which span every tenant)."""

ENV_VAR = "FLOCK_API_KEYS"


@dataclass(frozen=True)
class Principal:
    """Who a credential stands for: a tenant (``None``: no tenant, sees only public artifacts) and
    the scopes it holds. The tenant comes from the credential, never from a request.

    ``name`` is the agent name the key reads as: artifacts private to that agent
    (``PrivateVisibility(agents={name})``) are visible to it. ``None`` (the default): it reads as
    no agent, so no agent's private artifacts reach it, whatever the agents are called.

    ::

        Principal(tenant="acme", scopes={"publish", "read"})
    """

    tenant: str | None = None
    scopes: frozenset[str] = field(default_factory=frozenset)
    name: str | None = None

    def __post_init__(self) -> None:
        scopes = self.scopes
        if isinstance(scopes, str) or not isinstance(scopes, Iterable):
            raise ConfigurationError(
                f"Principal(scopes=...) takes a set of scope names such as {{'read'}}, got {scopes!r}"
            )
        scopes = frozenset(scopes)
        unknown = sorted(scopes - SCOPES)
        if unknown:
            raise ConfigurationError(
                f"unknown scope(s) {unknown} in Principal: the scopes are {sorted(SCOPES)}"
            )
        if self.tenant is not None and (not isinstance(self.tenant, str) or not self.tenant.strip()):
            raise ConfigurationError(
                f"Principal(tenant=...) takes a non-empty string or None, got {self.tenant!r}"
            )
        if self.name is not None and (not isinstance(self.name, str) or not self.name.strip()):
            raise ConfigurationError(
                f"Principal(name=...) takes an agent's name to read as, or None, got {self.name!r}"
            )
        object.__setattr__(self, "scopes", scopes)

    def allows(self, scope: str) -> bool:
        """Whether this principal holds ``scope`` (``admin`` holds every scope)."""
        return scope in self.scopes or "admin" in self.scopes

    @property
    def identity(self) -> AgentIdentity:
        """The identity visibility rules see when this principal reads (no name: the empty name,
        which no agent can have)."""
        return AgentIdentity(name=self.name or "", tenant_id=self.tenant)


def _digest(key: str) -> bytes:
    return hashlib.sha256(key.encode()).digest()


class ApiKeys:
    """API keys and the principals they stand for. Keys are kept only as SHA-256 digests.

    ::

        ApiKeys({"key-a": Principal(tenant="a", scopes={"publish", "read"})})
    """

    def __init__(self, keys: Mapping[str, Principal]) -> None:
        if not isinstance(keys, Mapping):
            raise ConfigurationError(f"ApiKeys takes a mapping of key -> Principal, got {keys!r}")
        self._by_digest: dict[bytes, Principal] = {}
        for key, principal in keys.items():
            if not isinstance(key, str) or len(key.strip()) < 8:
                raise ConfigurationError(
                    "every API key must be a string of at least 8 characters (use a long random one, "
                    "e.g. python -c 'import secrets; print(secrets.token_urlsafe(32))')"
                )
            if not isinstance(principal, Principal):
                raise ConfigurationError(f"ApiKeys maps keys to Principal values, got {principal!r}")
            self._by_digest[_digest(key)] = principal
        if not self._by_digest:
            raise ConfigurationError(
                "ApiKeys needs at least one key: a server without keys would refuse every request"
            )

    def __len__(self) -> int:
        return len(self._by_digest)

    def __repr__(self) -> str:  # never shows a key
        return f"ApiKeys(<{len(self)} keys>)"

    def authenticate(self, key: str | None) -> Principal | None:
        """The principal of ``key``, or ``None`` for a missing or unknown key."""
        if not key:
            return None
        wanted = _digest(key)
        found = None
        for digest, principal in self._by_digest.items():  # compare all, in constant time each
            if hmac.compare_digest(digest, wanted):
                found = principal
        return found

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> ApiKeys:
        """Keys from ``FLOCK_API_KEYS``: a JSON object mapping each key to its principal::

            FLOCK_API_KEYS='{"key-a": {"tenant": "a", "scopes": ["publish", "read"]},
                             "ops-key": {"scopes": ["admin"]}}'

        Raises :class:`ConfigurationError` when the variable is missing, empty or malformed.
        """
        raw = (environ if environ is not None else os.environ).get(ENV_VAR, "").strip()
        if not raw:
            raise ConfigurationError(
                f"no API keys: pass auth=ApiKeys({{...}}) or set {ENV_VAR} to a JSON object such as "
                '\'{"my-long-key": {"tenant": "acme", "scopes": ["publish", "read"]}}\''
            )
        try:
            data: Any = json.loads(raw)
        except json.JSONDecodeError as exc:
            raise ConfigurationError(f"{ENV_VAR} is not valid JSON ({exc.msg} at {exc.pos})") from None
        if not isinstance(data, dict):
            raise ConfigurationError(f"{ENV_VAR} must be a JSON object mapping keys to principals")
        keys: dict[str, Principal] = {}
        for key, value in data.items():
            if not isinstance(value, dict) or set(value) - {"tenant", "scopes", "name"}:
                raise ConfigurationError(
                    f'{ENV_VAR}: each value is {{"tenant": ..., "scopes": [...]}} (optional "name"); '
                    f"one key has {sorted(value) if isinstance(value, dict) else type(value).__name__}"
                )
            scopes = value.get("scopes", [])
            if not isinstance(scopes, list):
                raise ConfigurationError(f'{ENV_VAR}: "scopes" must be a list of scope names')
            keys[key] = Principal(
                tenant=value.get("tenant"), scopes=frozenset(scopes), name=value.get("name")
            )
        return cls(keys)


PRINCIPAL = "flock.principal"
"""Key of the authenticated :class:`Principal` in a served request's ASGI scope."""


# --------------------------------------------------------------------------- the ASGI side, shared by
# the REST server and ``flock mcp --http`` (no web framework needed)


def bearer_key(headers: Iterable[tuple[bytes, bytes]]) -> str | None:
    """The key of an ``Authorization: Bearer <key>`` header among ASGI ``headers``, else ``None``."""
    for name, value in headers:
        if name == b"authorization":
            scheme, _, token = value.decode("latin-1").partition(" ")
            return token.strip() if scheme.lower() == "bearer" else None
    return None


def unauthorized(key: str | None, field: str = "detail") -> bytes:
    """The JSON body of a 401: what was wrong with the credential and how to send one."""
    reason = "a wrong API key" if key else "no API key"
    return json.dumps(
        {field: f"{reason}: send the header 'Authorization: Bearer <key>' with a known key"}
    ).encode()


CHALLENGE = (b"www-authenticate", b'Bearer realm="flock"')


async def send_response(
    send: Any, status: int, body: bytes, content_type: bytes, extra: list[tuple[bytes, bytes]] | None = None
) -> None:
    """Answer an ASGI request with ``status`` and ``body`` (not cached)."""
    headers = [(b"content-type", content_type), (b"content-length", str(len(body)).encode()), *(extra or [])]
    headers.append((b"cache-control", b"no-store"))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
