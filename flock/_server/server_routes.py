"""The endpoints of the REST API (see :mod:`flock._server.server` for auth and the app)."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Annotated, Any
from uuid import UUID, uuid4, uuid5

import anyio
from fastapi import APIRouter, HTTPException, Query, Request
from fastapi.responses import HTMLResponse, JSONResponse, Response, StreamingResponse
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from .._core.artifact import Artifact, payload_of
from .._core.errors import DuplicateArtifactError, FlockClosedError
from .._core.visibility import PUBLIC, AgentIdentity, TenantVisibility
from .._live.events import ArtifactEvent, Event
from .._stores.store import FilterConfig
from .auth import PRINCIPAL, Principal

router = APIRouter()
IDEMPOTENCY = UUID("6f1e5d0c-7a43-4c39-9a43-0f3b2f51e9a1")
"""Namespace of artifact ids derived from (tenant, idempotency key)."""
KEEPALIVE_S = 5.0  # also how soon a stream notices a client that left


class _PublishBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    type: str
    payload: dict[str, Any]
    correlation_id: str | None = Field(default=None, max_length=200)
    idempotency_key: str | None = Field(default=None, min_length=1, max_length=200)


def _principal(request: Request, scope: str) -> Principal:
    principal: Principal = request.scope[PRINCIPAL]
    if not principal.allows(scope):
        raise HTTPException(403, f"this key lacks the {scope!r} scope")
    return principal


def _sees_all(principal: Principal) -> bool:
    """An admin without a tenant is an operator: it reads every tenant's artifacts."""
    return principal.tenant is None and "admin" in principal.scopes


def _operator(request: Request) -> Principal:
    """Traces span every tenant: only an operator (``admin`` without a tenant) reads them."""
    principal = _principal(request, "admin")
    if principal.tenant is not None:
        raise HTTPException(
            403,
            f"traces span every tenant, and this admin key belongs to tenant {principal.tenant!r}: "
            "read traces with an admin key that has no tenant",
        )
    return principal


def _reader(principal: Principal) -> AgentIdentity | None:
    return None if _sees_all(principal) else principal.identity


def _json(data: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(json.dumps(data, default=str), status, headers, media_type="application/json")


def _artifact_json(artifact: Artifact, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(artifact.model_dump_json(), status, headers, media_type="application/json")


def _unprocessable(errors: list[dict[str, Any]]) -> JSONResponse:
    return JSONResponse({"detail": errors}, status_code=422)


def _errors(exc: ValidationError, prefix: tuple[str, ...]) -> list[dict[str, Any]]:
    try:
        text = exc.json(include_url=False)
    except ValueError:  # the input itself cannot be shown as JSON (bytes that are not UTF-8)
        text = exc.json(include_url=False, include_input=False)
    errors: list[dict[str, Any]] = json.loads(text)
    for error in errors:
        error["loc"] = [*prefix, *error.get("loc", [])]
    return errors


def _visible(artifact: Artifact, who: AgentIdentity | None) -> bool:
    if who is None:
        return True
    now = datetime.now(UTC)
    return artifact.visibility.allows(who, now=now, published_at=artifact.created_at)


# ------------------------------------------------------------------------------ artifacts
@router.post(
    "/artifacts",
    status_code=201,
    summary="Publish an artifact",
    responses={201: {"description": "the artifact"}, 409: {}, 422: {}},
)
async def publish(request: Request) -> Response:
    """Publish ``payload`` as a ``type`` artifact, visible to the key's tenant. With an
    ``idempotency_key`` the same key (per tenant) publishes once and returns that artifact again."""
    principal = _principal(request, "publish")
    flock = request.app.state.flock
    try:
        body = _PublishBody.model_validate_json(await request.body())
    except ValidationError as exc:
        return _unprocessable(_errors(exc, ("body",)))
    model = flock._catalog.types.resolve(body.type)
    if model is None:
        known = flock._catalog.types.names()
        return _unprocessable(
            [
                {
                    "type": "unknown_type",
                    "loc": ["body", "type"],
                    "msg": f"unknown artifact type {body.type!r}; this flock knows {known}",
                    "input": body.type,
                }
            ]
        )
    try:
        value = model.model_validate(body.payload)
    except ValidationError as exc:
        return _unprocessable(_errors(exc, ("body", "payload")))
    tenant = principal.tenant
    artifact = Artifact(
        type=body.type,
        payload=payload_of(value),
        correlation_id=body.correlation_id or str(uuid4()),
        visibility=TenantVisibility(tenant_id=tenant) if tenant is not None else PUBLIC,
        created_at=flock._clock.now(),
    )
    if body.idempotency_key is not None:
        # The id is the key: a restart on a durable store still finds the first publish.
        artifact = artifact.model_copy(
            update={"id": uuid5(IDEMPOTENCY, f"{tenant or ''}\x00{body.idempotency_key}")}
        )
        first = await flock.store.get(artifact.id)
        if first is None:
            try:
                await flock.publish(artifact)
                return _artifact_json(artifact, 201)
            except DuplicateArtifactError:  # a concurrent request with the same key won
                first = await flock.store.get(artifact.id)
        if first is None or first.type != artifact.type or first.payload != artifact.payload:
            raise HTTPException(409, "this idempotency key was used for a different artifact")
        return _artifact_json(first, 201, {"Idempotent-Replayed": "true"})
    await flock.publish(artifact)
    return _artifact_json(artifact, 201)


def _aware(moment: datetime | None) -> datetime | None:
    if moment is not None and moment.tzinfo is None:
        return moment.replace(tzinfo=UTC)
    return moment


@router.get("/artifacts", summary="Query the board")
async def query(
    request: Request,
    type: Annotated[list[str] | None, Query(max_length=50)] = None,
    correlation_id: str | None = None,
    produced_by: Annotated[list[str] | None, Query(max_length=50)] = None,
    since: datetime | None = None,
    until: datetime | None = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 50,
    offset: Annotated[int, Query(ge=0, le=10**9)] = 0,
) -> Response:
    """Artifacts this key may see, oldest first: ``{"items": [...], "total": n}``."""
    principal = _principal(request, "read")
    filters = FilterConfig(
        type_names=frozenset(type) if type else None,
        produced_by=frozenset(produced_by) if produced_by else None,
        correlation_id=correlation_id,
        visible_to=_reader(principal),
        start=_aware(since),
        end=_aware(until),
    )
    items, total = await request.app.state.flock.store.query_artifacts(filters, limit=limit, offset=offset)
    body = ",".join(a.model_dump_json() for a in items)
    return Response(f'{{"items":[{body}],"total":{total}}}', media_type="application/json")


@router.get("/artifacts/{artifact_id}", summary="One artifact", responses={404: {}})
async def get_artifact(request: Request, artifact_id: str) -> Response:
    """The artifact, or 404 when it does not exist or this key may not see it."""
    principal = _principal(request, "read")
    try:
        wanted = UUID(artifact_id)
    except ValueError:
        wanted = None
    artifact = await request.app.state.flock.store.get(wanted) if wanted is not None else None
    if artifact is None or not _visible(artifact, _reader(principal)):
        raise HTTPException(404, f"no artifact {artifact_id!r}")
    return _artifact_json(artifact)


# ------------------------------------------------------------------------------ agents
def _agent_json(spec: Any) -> dict[str, Any]:
    return {
        "name": spec.name,
        "description": spec.description,
        "subscriptions": [
            {
                "types": list(s.type_names),
                "from_agents": sorted(s.from_agents) if s.from_agents is not None else None,
                "tags": sorted(s.tags) if s.tags is not None else None,
                "batch": s.batch is not None,
                "join": s.join is not None,
            }
            for s in spec.subscriptions
        ],
        "publishes": [[o.type_name for o in g.outputs] for g in spec.output_groups],
        "labels": sorted(spec.labels),
        "tenant": spec.tenant_id,
        "max_concurrency": spec.max_concurrency,
    }


@router.get("/agents", summary="Agents and their subscriptions")
async def agents(request: Request) -> Response:
    """The declared agents of this key's tenant and of no tenant."""
    principal = _principal(request, "read")
    everyone = _sees_all(principal)
    items = [
        _agent_json(spec)
        for spec in request.app.state.flock.agents
        if everyone or spec.tenant_id in (None, principal.tenant)
    ]
    return _json({"items": items, "total": len(items)})


# ------------------------------------------------------------------------------ traces
def _trace_store(request: Request) -> Any:
    from .._tracing.trace_query import TraceNotFound, TraceStore

    path = request.app.state.traces or tracing_store()
    if path is None:
        raise HTTPException(404, "tracing is off: call flock.tracing.enable_tracing() before serving")
    try:
        return TraceStore(path)
    except TraceNotFound as exc:
        raise HTTPException(404, str(exc)) from None


@router.get("/traces", summary="Recent runs (admin)", responses={404: {}})
async def traces(
    request: Request,
    limit: Annotated[int, Query(ge=1, le=500)] = 20,
    correlation_id: Annotated[str | None, Query(max_length=200)] = None,
) -> Response:
    """The most recent traced runs with their numbers (``correlation_id``: those of one workflow).
    Traces span every tenant: operator keys only (admin, no tenant)."""
    _operator(request)

    def load() -> list[dict[str, Any]]:
        with _trace_store(request) as store:
            return [dataclasses.asdict(s) for s in store.list_runs(limit, correlation_id=correlation_id)]

    items = await anyio.to_thread.run_sync(load)
    return _json({"items": items, "total": len(items)})


@router.get("/traces/{trace_id}", summary="One trace (admin)", responses={404: {}})
async def trace(request: Request, trace_id: str, format: str = "json") -> Response:
    """One run's spans (``?format=html`` for the trace page)."""
    _operator(request)
    from .._tracing.trace_html import render_html
    from .._tracing.trace_query import TraceNotFound

    def load() -> Any:
        with _trace_store(request) as store:
            return store.load(store.resolve(trace_id))

    try:
        found = await anyio.to_thread.run_sync(load)
    except TraceNotFound as exc:
        raise HTTPException(404, str(exc)) from None
    if format == "html":
        return HTMLResponse(render_html(found))
    spans = [{k: v for k, v in dataclasses.asdict(s).items() if k != "children"} for s in found.spans]
    return _json({"trace_id": found.trace_id, "stats": dataclasses.asdict(found.stats), "spans": spans})


# ------------------------------------------------------------------------------ events
def event_json(event: Event) -> str:
    """One event as the JSON of one SSE message."""
    if isinstance(event, ArtifactEvent):
        return f'{{"kind":"artifact","artifact":{event.artifact.model_dump_json()}}}'
    return json.dumps({"kind": event.kind, **dataclasses.asdict(event)}, default=str)


@router.get(
    "/events",
    summary="Live events (Server-Sent Events)",
    response_class=StreamingResponse,
    responses={200: {"content": {"text/event-stream": {}}}},
)
async def events(request: Request, buffer: Annotated[int, Query(ge=1, le=100_000)] = 1000) -> Response:
    """One JSON event per message (``data: {...}``): artifacts this key may see, activations whose
    inputs it may see, streamed tokens of outputs it may see, and (operator keys) variable changes."""
    principal = _principal(request, "read")
    flock = request.app.state.flock
    try:  # a key with an identity gets no variable changes: the hub applies every rule
        subscription = flock.events(identity=_reader(principal), buffer=buffer)
    except FlockClosedError as exc:
        raise HTTPException(503, str(exc)) from None

    streams: set[Any] = request.app.state.streams

    async def stream() -> AsyncIterator[str]:
        async with subscription as source:
            streams.add(source)  # the server closes them when it stops
            try:
                yield ": subscribed\n\n"
                iterator = source.__aiter__()
                while True:
                    with anyio.move_on_after(KEEPALIVE_S) as waited:
                        try:
                            event = await iterator.__anext__()
                        except StopAsyncIteration:
                            return
                    if waited.cancelled_caught:
                        yield ": keep-alive\n\n"
                        continue
                    yield f"data: {event_json(event)}\n\n"
            finally:
                streams.discard(source)

    headers = {"Cache-Control": "no-store", "X-Accel-Buffering": "no"}
    return StreamingResponse(stream(), media_type="text/event-stream", headers=headers)


# ------------------------------------------------------------------------------ health
def _readiness(request: Request) -> dict[str, Any]:
    flock = request.app.state.flock
    runner = request.app.state.runner
    halted = runner.halted if runner is not None else None
    ready = not flock._orchestrator.closed and halted is None and (runner is None or runner.running)
    return {"ready": ready, "halted": type(halted).__name__ if halted is not None else None}


@router.get("/health", summary="Liveness")
async def health(request: Request) -> Response:
    """``{"status": "ok", "ready": ...}`` while the process serves. Needs a valid key, no scope."""
    return _json({"status": "ok", **_readiness(request)})


@router.get("/ready", summary="Readiness", responses={503: {}})
async def ready(request: Request) -> Response:
    """200 when the flock processes artifacts; 503 when it is shut down or its last run halted (it
    retries on the next publish). Needs a valid key, no scope."""
    state = _readiness(request)
    status = "ready" if state["ready"] else "unavailable"
    return _json({"status": status, **state}, 200 if state["ready"] else 503)

def tracing_store() -> Any:
    """The trace store file of :func:`flock.tracing.enable_tracing`, or ``None`` when tracing is off."""
    from .. import tracing

    installed = tracing._installed
    return installed.config.store if installed is not None and installed.config is not None else None
