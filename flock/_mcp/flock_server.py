"""A flock as an MCP server (``flock mcp module:flock``): its board and agents as MCP tools.

Tools (each answers JSON, as text and as structured content):

``publish``          publish a ``type`` artifact with ``payload`` (validated by the registered model;
                     problems come back as a tool error with Pydantic's messages), optionally in
                     ``correlation_id``'s workflow; with ``wait`` (default) the flock processes it
                     first and the answer lists what the agents published downstream of it.
``query``            the board, oldest first, filtered by ``type``/``correlation_id``/``produced_by``.
``invoke``           run one agent directly on an input and return its outputs (not published).
``list_agents``      the agents: what they consume and publish.
``list_types``       every registered artifact type with its JSON schema.

Who calls is a :class:`~flock.Principal`: over HTTP the one its API key maps to (deny by default,
like the REST server); over stdio the local user who started the process. Its tenant is applied to
what it publishes (``TenantVisibility``) and to what it reads; ``publish`` and ``invoke`` need
the ``publish`` scope, the others ``read``.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from typing import Any
from uuid import UUID, uuid4

import mcp_types as types
from mcp.server.lowlevel import Server
from pydantic import BaseModel, ValidationError

from .._core.artifact import Artifact, payload_of
from .._core.visibility import PUBLIC, AgentIdentity, TenantVisibility
from .._server.auth import PRINCIPAL, Principal
from .._stores.store import FilterConfig

MAX_WAIT_S = 600.0
MAX_DOWNSTREAM = 100

_OBJECT = {"type": "object", "additionalProperties": True}
_TOOLS: dict[str, tuple[str, str, dict[str, Any]]] = {
    "publish": (
        "publish",
        "Publish an artifact on the flock's board. `type` is a registered artifact type (see list_types), "
        "`payload` its fields. With `wait` (default true) the flock first processes it, and the answer "
        "lists the artifacts the agents published downstream of it.",
        {
            "type": "object",
            "properties": {
                "type": {"type": "string", "description": "a registered artifact type name"},
                "payload": {**_OBJECT, "description": "the artifact's fields"},
                "correlation_id": {"type": "string", "maxLength": 200, "description": "the workflow"},
                "wait": {"type": "boolean", "default": True},
                "timeout": {"type": "number", "exclusiveMinimum": 0, "maximum": MAX_WAIT_S, "default": 60},
            },
            "required": ["type", "payload"],
        },
    ),
    "query": (
        "read",
        "Artifacts on the board that you may see, oldest first: {items, total}.",
        {
            "type": "object",
            "properties": {
                "type": {"type": "string"},
                "correlation_id": {"type": "string"},
                "produced_by": {"type": "string", "description": "an agent name, or 'external'"},
                "limit": {"type": "integer", "minimum": 1, "maximum": 200, "default": 20},
                "offset": {"type": "integer", "minimum": 0, "default": 0},
            },
        },
    ),
    "invoke": (
        "publish",
        "Run one agent directly on an input (`type` and `payload`, not put on the board) and return "
        "its outputs that this key may see (not published; `withheld` counts the others).",
        {
            "type": "object",
            "properties": {
                "agent": {"type": "string"},
                "type": {"type": "string"},
                "payload": _OBJECT,
                "timeout": {"type": "number", "exclusiveMinimum": 0, "maximum": MAX_WAIT_S, "default": 120},
            },
            "required": ["agent", "type", "payload"],
        },
    ),
    "list_agents": ("read", "The flock's agents: what each consumes and publishes.", {"type": "object"}),
    "list_types": ("read", "Every registered artifact type with its JSON schema.", {"type": "object"}),
}


class ToolFailure(Exception):
    """A call the flock refuses: the message goes back as the tool's error."""


def tool_list() -> list[types.Tool]:
    return [
        types.Tool(name=name, description=description, input_schema=schema)
        for name, (_, description, schema) in _TOOLS.items()
    ]


class FlockTools:
    """The tools' work, for one flock. ``settled(timeout)`` waits until published work is done (the
    runner that keeps the flock working provides it)."""

    def __init__(self, flock: Any, settled: Callable[[float], Any]) -> None:
        self.flock = flock
        self.settled = settled

    async def call(self, name: str, arguments: dict[str, Any], principal: Principal) -> dict[str, Any]:
        entry = _TOOLS.get(name)
        if entry is None:
            raise ToolFailure(f"unknown tool {name!r}; this server offers {sorted(_TOOLS)}")
        scope = entry[0]
        if not principal.allows(scope):
            raise ToolFailure(f"this key lacks the {scope!r} scope that {name!r} needs")
        method = getattr(self, f"_{name}")
        result: dict[str, Any] = await method(arguments, principal)
        return result

    # -------------------------------------------------------------------------- tools
    async def _publish(self, args: dict[str, Any], principal: Principal) -> dict[str, Any]:
        flock = self.flock
        name, value = self._validated(args)
        correlation = _text(args, "correlation_id") or str(uuid4())
        tenant = principal.tenant
        artifact = Artifact(
            type=name,
            payload=payload_of(value),
            correlation_id=correlation,
            visibility=TenantVisibility(tenant_id=tenant) if tenant is not None else PUBLIC,
            created_at=flock._clock.now(),
        )
        await flock.publish(artifact)
        answer: dict[str, Any] = {"artifact": _json(artifact)}
        if args.get("wait", True) is not False:
            timeout = _seconds(args, 60.0)
            answer["settled"] = bool(await self.settled(timeout))
            answer["downstream"] = [_json(a) for a in await self._downstream(artifact, principal)]
        return answer

    async def _query(self, args: dict[str, Any], principal: Principal) -> dict[str, Any]:
        limit = args.get("limit", 20)
        offset = args.get("offset", 0)
        if not isinstance(limit, int) or not 1 <= limit <= 200:
            raise ToolFailure("limit must be an integer from 1 to 200")
        if not isinstance(offset, int) or offset < 0:
            raise ToolFailure("offset must be an integer >= 0")
        kind, producer = _text(args, "type"), _text(args, "produced_by")
        filters = FilterConfig(
            type_names=frozenset([kind]) if kind else None,
            produced_by=frozenset([producer]) if producer else None,
            correlation_id=_text(args, "correlation_id"),
            visible_to=_reader(principal),
        )
        items, total = await self.flock.store.query_artifacts(filters, limit=limit, offset=offset)
        return {"items": [_json(a) for a in items], "total": total}

    async def _invoke(self, args: dict[str, Any], principal: Principal) -> dict[str, Any]:
        agent = _text(args, "agent")
        spec = next((s for s in self._agents(principal) if s.name == agent), None)
        if spec is None:
            raise ToolFailure(
                f"no agent named {agent!r}; agents: {[s.name for s in self._agents(principal)]}"
            )
        _, value = self._validated(args)
        timeout = _seconds(args, 120.0)
        try:
            outputs = await self.flock.invoke(agent, value, publish_outputs=False, timeout=timeout)
        except Exception as exc:  # the agent's own failure (or the timeout): the caller reads it
            raise ToolFailure(f"agent {agent!r} failed: {type(exc).__name__}: {exc}") from None
        # The outputs carry what the agent was shown (its context too): the key gets those it may see.
        who, now = _reader(principal), self.flock._clock.now()
        shown = [a for a in outputs if who is None or a.visibility.allows(who, now=now, published_at=now)]
        return {"outputs": [_json(a) for a in shown], "withheld": len(outputs) - len(shown)}

    async def _list_agents(self, args: dict[str, Any], principal: Principal) -> dict[str, Any]:
        items = [
            {
                "name": spec.name,
                "description": spec.description,
                "consumes": [list(s.type_names) for s in spec.subscriptions],
                "publishes": [[o.type_name for o in g.outputs] for g in spec.output_groups],
            }
            for spec in self._agents(principal)
        ]
        return {"items": items, "total": len(items)}

    async def _list_types(self, args: dict[str, Any], principal: Principal) -> dict[str, Any]:
        types_ = self.flock._catalog.types
        found = {}
        for name in types_.names():
            model = types_.resolve(name)
            if model is not None:
                found[name] = model.model_json_schema()
        return {"types": found}

    # -------------------------------------------------------------------------- helpers
    def _validated(self, args: dict[str, Any]) -> tuple[str, BaseModel]:
        name = _text(args, "type") or ""
        types_ = self.flock._catalog.types
        model = types_.resolve(name) if name else None
        if model is None:
            raise ToolFailure(f"unknown artifact type {name!r}; this flock knows {sorted(types_.names())}")
        payload = args.get("payload")
        if not isinstance(payload, dict):
            raise ToolFailure("payload must be an object with the artifact's fields")
        try:
            return name, model.model_validate(payload)
        except ValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(str(p) for p in e['loc']) or 'payload'}: {e['msg']}" for e in exc.errors()
            )
            raise ToolFailure(f"invalid {name} payload: {problems}") from None

    def _agents(self, principal: Principal) -> list[Any]:
        everyone = _sees_all(principal)
        return [s for s in self.flock.agents if everyone or s.tenant_id in (None, principal.tenant)]

    async def _downstream(self, root: Artifact, principal: Principal) -> list[Artifact]:
        """What was published from ``root`` (its lineage), as far as ``principal`` may see."""
        filters = FilterConfig(correlation_id=root.correlation_id, visible_to=_reader(principal))
        items, _ = await self.flock.store.query_artifacts(filters, limit=10_000)
        reached: set[UUID] = {root.id}
        found: list[Artifact] = []
        for artifact in sorted(items, key=lambda a: a.created_at):
            if artifact.id != root.id and reached.intersection(artifact.consumed_from):
                reached.add(artifact.id)
                found.append(artifact)
        return found[:MAX_DOWNSTREAM]


def _text(args: dict[str, Any], key: str) -> str | None:
    value = args.get(key)
    if value is None:
        return None
    if not isinstance(value, str):
        raise ToolFailure(f"{key} must be a string")
    return value


def _seconds(args: dict[str, Any], default: float) -> float:
    value = args.get("timeout", default)
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 < value <= MAX_WAIT_S:
        raise ToolFailure(f"timeout must be seconds > 0 and <= {MAX_WAIT_S:g}")
    return float(value)


def _sees_all(principal: Principal) -> bool:
    """An admin without a tenant is an operator: it reads every tenant's artifacts."""
    return principal.tenant is None and "admin" in principal.scopes


def _reader(principal: Principal) -> AgentIdentity | None:
    return None if _sees_all(principal) else principal.identity


def _json(artifact: Artifact) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(artifact.model_dump_json())
    return data


def build_server(flock: Any, settled: Callable[[float], Any], local: Principal | None) -> Server[Any]:
    """The MCP server for ``flock``. ``local`` is the principal of every call without an HTTP request
    (stdio); over HTTP the principal comes from the request (put there by the API-key layer)."""
    tools = FlockTools(flock, settled)

    async def list_tools(ctx: Any, params: Any) -> types.ListToolsResult:
        return types.ListToolsResult(tools=tool_list())

    async def call_tool(ctx: Any, params: types.CallToolRequestParams) -> types.CallToolResult:
        request = getattr(ctx, "request", None)
        scope = getattr(request, "scope", None)
        principal = scope.get(PRINCIPAL) if isinstance(scope, dict) else local
        if principal is None:  # never anonymous: only the API-key layer or stdio name a principal
            return _error("no principal: this server needs an API key")
        try:
            data = await tools.call(params.name, dict(params.arguments or {}), principal)
        except ToolFailure as exc:
            return _error(str(exc))
        text = json.dumps(data, default=str)
        return types.CallToolResult(
            content=[types.TextContent(type="text", text=text)], structured_content=data
        )

    return Server(
        "flock",
        instructions="A Flock blackboard: publish typed artifacts, query the board, invoke agents. "
        "Call list_types first to see the artifact types and their fields.",
        on_list_tools=list_tools,
        on_call_tool=call_tool,
    )


def _error(text: str) -> types.CallToolResult:
    return types.CallToolResult(content=[types.TextContent(type="text", text=text)], is_error=True)


__all__: Sequence[str] = ["FlockTools", "build_server", "tool_list"]
