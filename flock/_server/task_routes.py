"""Human tasks over REST: list the open ones, look at one, answer one.

``GET /tasks`` and ``GET /tasks/{id}`` need the ``read`` or the ``answer`` scope; ``POST /tasks/{id}``
needs ``answer``. A key sees and answers only the tasks its tenant may see (404 otherwise, so
existence does not leak). See :mod:`flock._core.tasks` for what a task is.
"""

from __future__ import annotations

import json
from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Query, Request
from fastapi.responses import Response
from pydantic import BaseModel, ConfigDict, ValidationError

from .._core.errors import TaskAnswerInvalid, TaskClosed, TaskNotFound
from .._core.visibility import AgentIdentity
from .auth import PRINCIPAL, Principal

router = APIRouter()


class _AnswerBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    payload: dict[str, Any]


def _reader(request: Request, *scopes: str) -> AgentIdentity | None:
    """The identity whose visibility applies (``None``: an admin without a tenant sees all)."""
    principal: Principal = request.scope[PRINCIPAL]
    if not any(principal.allows(s) for s in scopes):
        raise HTTPException(403, f"this key lacks the {' or '.join(repr(s) for s in scopes)} scope")
    if principal.tenant is None and "admin" in principal.scopes:
        return None
    return principal.identity


def _json(data: Any, status: int = 200) -> Response:
    return Response(json.dumps(data, default=str), status, media_type="application/json")


@router.get("/tasks", summary="Open human tasks")
async def list_tasks(
    request: Request,
    agent: str | None = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    offset: Annotated[int, Query(ge=0, le=10**9)] = 0,
) -> Response:
    """Open tasks this key may see, oldest first: ``{"items": [...], "total": n}``. Each has its
    ``id``, ``agent``, ``prompt``, ``inputs``, ``output_type``, ``output_schema`` (the JSON schema
    of an answer's payload), ``deadline``, ``created_at`` and ``correlation_id``."""
    who = _reader(request, "read", "answer")
    tasks = await request.app.state.flock.tasks.list(who, agent=agent)
    page = tasks[offset : offset + limit]
    return _json({"items": [t.to_json() for t in page], "total": len(tasks)})


@router.get("/tasks/{task_id}", summary="One human task", responses={404: {}})
async def get_task(request: Request, task_id: str) -> Response:
    """The task with its ``status`` (``open``, ``answered``, ``expired``); 404 when absent or not
    visible to this key."""
    who = _reader(request, "read", "answer")
    try:
        task = await request.app.state.flock.tasks.get(task_id, who)
    except TaskNotFound:
        raise HTTPException(404, f"no task {task_id!r}") from None
    return _json(task.to_json())


@router.post(
    "/tasks/{task_id}",
    status_code=201,
    summary="Answer a human task",
    responses={201: {"description": "the published artifact"}, 404: {}, 409: {}, 422: {}},
)
async def answer_task(request: Request, task_id: str) -> Response:
    """Body ``{"payload": {...}}``: the answer, validated against the task's output type and published
    as the agent's output. 201 with the artifact (``{"items": [...]}`` when the answer publishes
    several); 422 with the errors (the task stays open); 409 when it was answered or expired."""
    who = _reader(request, "answer")
    flock = request.app.state.flock
    try:
        body = _AnswerBody.model_validate_json(await request.body())
    except ValidationError as exc:
        return _json({"detail": _errors(exc)}, 422)
    try:
        published = await flock.tasks.answer(task_id, body.payload, identity=who)
    except TaskNotFound:
        raise HTTPException(404, f"no task {task_id!r}") from None
    except TaskClosed as exc:
        raise HTTPException(409, str(exc)) from None
    except TaskAnswerInvalid as exc:
        errors = [{**e, "loc": ["body", "payload", *e.get("loc", [])]} for e in exc.errors]
        return _json({"detail": errors}, 422)
    if len(published) == 1:
        return Response(published[0].model_dump_json(), 201, media_type="application/json")
    body_json = ",".join(a.model_dump_json() for a in published)
    return Response(f'{{"items":[{body_json}],"total":{len(published)}}}', 201, media_type="application/json")


def _errors(exc: ValidationError) -> list[dict[str, Any]]:
    try:
        text = exc.json(include_url=False)
    except ValueError:  # the input cannot be shown as JSON (bytes that are not UTF-8)
        text = exc.json(include_url=False, include_input=False)
    errors: list[dict[str, Any]] = json.loads(text)
    for error in errors:
        error["loc"] = ["body", *error.get("loc", [])]
    return errors
