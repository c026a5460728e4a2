"""Human agents: an activation opens a task; an answer or the deadline closes it.

A human agent (``AgentBuilder.human``) runs no engine. Its activation's outcome is one
:class:`HumanTask` artifact: the inputs, the prompt, the JSON schema of the expected answer and the
deadline. Committing it marks the inputs handled like any activation, so no concurrency slot is held
while a person thinks, and the task is as durable, visible and tenant-bound as any artifact.

The answer (or, at the deadline, the declared default or a ``WorkflowError`` of kind ``"timeout"``)
is published under ids derived from the task's id (:func:`answer_id`): whichever is stored first
wins, in this process or another, because every store refuses a duplicate id. A task is open while
no artifact with its answer id exists.

The answer's payload form: the object itself when the agent publishes one type without fan-out;
otherwise an object keyed by registered type name, whose values are an object (exactly one) or a
list (``fan_out``)::

    {"Approval": {"ok": true}}                      # publishes(Approval, Note) ...
    {"Idea": [{"title": "a"}, {"title": "b"}]}      # publishes(Idea, fan_out=(1, 3))
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Annotated, Any
from uuid import UUID, uuid5

from pydantic import BaseModel, ConfigDict, Field, ValidationError, create_model

from .artifact import Artifact, payload_of
from .contract import check_group
from .errors import ConfigurationError, OutputError, TaskAnswerInvalid
from .outcomes import WorkflowError
from .spec import AgentSpec, HumanSpec, OutputDecl, OutputGroup
from .types import flock_type, type_name
from .visibility import Visibility, _Base
from .visibility import narrowed as narrow


class TaskInput(BaseModel):
    """One input of a :class:`HumanTask`: the artifact's id, registered type name and payload."""

    id: str
    type: str
    payload: dict[str, Any]


@flock_type(name="flock.HumanTask")
class HumanTask(BaseModel):
    """An open question for a person, published when a human agent's activation runs.

    ``output_type`` is the registered name of the answer's type when the agent publishes one type
    (else ``None``; ``outputs`` maps every answer type to its ``[lo, hi]`` fan-out, or ``None`` for
    exactly one); ``output_schema`` is the JSON schema an answer's payload must match; ``default``
    the payload published at the ``deadline`` (``None``: a ``WorkflowError`` of kind ``"timeout"``).
    Answer it with ``flock.tasks.answer(...)``, ``POST /tasks/{id}`` or ``flock tasks answer``.
    Agents may consume it like any type (to notify someone, say).
    """

    agent: str
    prompt: str
    inputs: list[TaskInput] = []
    output_type: str | None = None
    outputs: dict[str, list[int] | None] = {}
    output_schema: dict[str, Any] = {}
    deadline: datetime | None = None
    default: Any = None


HUMAN_TASK = type_name(HumanTask)
_TIMEOUT = "TaskTimeout"


def is_genuine(task: Artifact) -> bool:
    """Opened by the human agent it names: a ``flock.HumanTask`` published from outside (over
    ``POST /artifacts``, say) is not a task anyone is asked to answer, and no deadline closes it."""
    return bool(task.payload.get("agent") == task.produced_by)


def answer_id(task_id: UUID, position: int = 0) -> UUID:
    """The id of the ``position``-th artifact that closes the task (the first one decides)."""
    return uuid5(task_id, "answer" if position == 0 else f"answer:{position}")


def check_human(spec: AgentSpec, human: HumanSpec) -> None:
    """Declaration checks of ``.human(...)``, in whatever order the builder calls come: at most one
    output group, no engine, a default that is a valid answer."""
    if len(spec.output_groups) > 1:
        raise ConfigurationError(
            f"agent {spec.name!r}: a human agent answers one form, so it takes one publishes(...) call "
            f"(it has {len(spec.output_groups)})"
        )
    if spec.engines:
        raise ConfigurationError(
            f"agent {spec.name!r}: a human agent runs no engine; drop .calls()/.with_engines() or .human()"
        )
    if human.default is not None and spec.output_groups:
        group = spec.output_groups[0]
        try:
            answer_model(group).model_validate(default_payload(group, human.default))
        except ValidationError as exc:
            raise ConfigurationError(
                f"agent {spec.name!r}: human(default=...) is not a valid answer: {exc}"
            ) from exc


def default_payload(group: OutputGroup, default: Any) -> Any:
    """``.human(default=...)`` as an answer payload: a model instance, a list of them, or a payload."""
    models = default if isinstance(default, list | tuple) else [default]
    if not models or not all(isinstance(m, BaseModel) for m in models):
        return default  # already a payload; checked against the answer model by check_human
    if _single(group):
        return payload_of(models[0])
    out: dict[str, Any] = {}
    for decl in group.outputs:
        mine = [payload_of(m) for m in models if type_name(type(m)) == decl.type_name]
        out[decl.type_name] = mine if decl.is_list else (mine[0] if mine else None)
    return out


def _single(group: OutputGroup) -> bool:
    return len(group.outputs) == 1 and not group.outputs[0].is_list


def answer_model(group: OutputGroup) -> type[BaseModel]:
    """The model an answer's payload validates as (see the module docstring for its form)."""
    if _single(group):
        return group.outputs[0].type
    fields: dict[str, Any] = {}
    for i, decl in enumerate(group.outputs):
        if decl.is_list:
            lo, hi = decl.fan_out or (1, 1)
            kind: Any = Annotated[list[decl.type], Field(min_length=lo, max_length=hi)]  # type: ignore[name-defined]
        else:
            kind = decl.type
        fields[f"f{i}"] = (kind, Field(alias=decl.type_name))
    return create_model(
        "Answer", __config__=ConfigDict(extra="forbid", populate_by_name=False), **fields
    )


def open_task(spec: AgentSpec, inputs: Sequence[Artifact], now: datetime) -> HumanTask:
    """The task a human agent's activation on ``inputs`` opens."""
    assert spec.human is not None
    if not spec.output_groups:
        raise ConfigurationError(
            f"agent {spec.name!r} is a human agent that publishes nothing: add .publishes(SomeType)"
        )
    group = spec.output_groups[0]
    human = spec.human
    return HumanTask(
        agent=spec.name,
        prompt=human.prompt or spec.description or "",
        inputs=[TaskInput(id=str(a.id), type=a.type, payload=a.payload) for a in inputs],
        output_type=group.outputs[0].type_name if len(group.outputs) == 1 else None,
        outputs={d.type_name: list(d.fan_out) if d.fan_out else None for d in group.outputs},
        output_schema=answer_model(group).model_json_schema(by_alias=True),
        deadline=now + timedelta(seconds=human.timeout) if human.timeout is not None else None,
        default=default_payload(group, human.default) if human.default is not None else None,
    )


def _group_of(task: HumanTask, types: Any) -> OutputGroup:
    """The output group a task's answer must fill, rebuilt from the task (declarations may be gone)."""
    decls = []
    for name, fan_out in task.outputs.items():
        model = types.resolve(name)
        if model is None:
            raise ConfigurationError(
                f"human task of agent {task.agent!r} expects a {name!r}, a type this Flock does not know: "
                "declare the agent as it was when the task was opened"
            )
        decls.append(OutputDecl(type=model, type_name=name, fan_out=tuple(fan_out) if fan_out else None))  # type: ignore[arg-type]
    return OutputGroup(index=0, outputs=tuple(decls))


def parse_answer(task: HumanTask, payload: Any, types: Any, spec: AgentSpec | None) -> list[BaseModel]:
    """The models an answer publishes, in declaration order; :class:`TaskAnswerInvalid` when wrong."""
    group = _group_of(task, types)
    model = answer_model(group)
    try:
        value = model.model_validate(payload)
    except ValidationError as exc:
        errors = _error_list(exc)
        raise TaskAnswerInvalid(
            f"the answer is not a valid {task.output_type or 'answer'} for agent {task.agent!r}: "
            + "; ".join(f"{'.'.join(map(str, e['loc'])) or 'payload'}: {e['msg']}" for e in errors[:5])
            + ". Fix those fields and answer again (the task stays open)",
            errors,
        ) from None
    if _single(group):
        models: list[BaseModel] = [value]
    else:
        models = []
        for i, decl in enumerate(group.outputs):
            got = getattr(value, f"f{i}")
            models.extend(got if decl.is_list else [got])
    if spec is not None and spec.output_groups:
        try:
            models = check_group(spec.name, spec.output_groups[0], models)
        except OutputError as exc:
            raise TaskAnswerInvalid(
                f"{exc}. Answer again (the task stays open)",
                [{"loc": [], "msg": str(exc), "type": "validation_failed"}],
            ) from None
    if not models:
        raise TaskAnswerInvalid(
            f"this answer publishes nothing for agent {task.agent!r} (its where= filter kept no output); "
            "an answer must publish at least one artifact",
            [{"loc": [], "msg": "the answer publishes nothing", "type": "empty_answer"}],
        )
    return models


def _error_list(exc: ValidationError) -> list[dict[str, Any]]:
    try:
        text = exc.json(include_url=False)
    except ValueError:  # the input cannot be shown as JSON
        text = exc.json(include_url=False, include_input=False)
    errors: list[dict[str, Any]] = json.loads(text)
    return errors


def answer_artifacts(
    task: Artifact,
    models: Sequence[BaseModel],
    spec: AgentSpec | None,
    now: datetime,
    tags: frozenset[str],
) -> list[Artifact]:
    """The artifacts that close ``task`` with ``models``, under the task's deterministic answer ids."""
    human = HumanTask.model_validate(task.payload)
    consumed = tuple(UUID(i.id) for i in human.inputs)
    declared = {d.type_name: d for d in spec.output_groups[0].outputs} if spec and spec.output_groups else {}
    out = []
    for i, model in enumerate(models):
        name = type_name(type(model))
        out.append(
            Artifact(
                id=answer_id(task.id, i),
                type=name,
                payload=payload_of(model),
                produced_by=task.produced_by,
                correlation_id=task.correlation_id,
                partition_key=task.partition_key,
                tags=tags,
                visibility=_narrowed(task.visibility, declared.get(name), model),
                created_at=now,
                consumed_from=consumed,
            )
        )
    return out


def _narrowed(visibility: Visibility, decl: Any, model: BaseModel) -> Visibility:
    """The task's visibility, narrowed by the output's declared ``visibility=`` (never widened)."""
    declared: Any = getattr(decl, "visibility", None)
    if declared is not None and not isinstance(declared, _Base):
        declared = declared(model)
    if not isinstance(declared, _Base):
        return visibility
    return narrow(declared, visibility)  # type: ignore[arg-type]


def timeout_artifacts(task: Artifact, types: Any, spec: AgentSpec | None, now: datetime) -> list[Artifact]:
    """What closes ``task`` at its deadline: its default answer, or a ``WorkflowError`` (``timeout``)."""
    human = HumanTask.model_validate(task.payload)
    if human.default is not None:
        models = parse_answer(human, human.default, types, None)
        return answer_artifacts(task, models, spec, now, frozenset({"timeout"}))
    record = WorkflowError(
        agent=human.agent,
        kind="timeout",
        error_type=_TIMEOUT,
        message=(
            f"human task {task.id} was not answered by its deadline {human.deadline}; declare "
            "human(default=...) to publish a default answer instead"
        ),
        input_ids=[i.id for i in human.inputs],
    )
    return [
        Artifact(
            id=answer_id(task.id),
            type=type_name(WorkflowError),
            payload=payload_of(record),
            produced_by=task.produced_by,
            correlation_id=task.correlation_id,
            partition_key=task.partition_key,
            visibility=task.visibility,
            created_at=now,
            consumed_from=tuple(UUID(i.id) for i in human.inputs),
        )
    ]
