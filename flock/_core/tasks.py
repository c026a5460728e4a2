"""``flock.tasks``: the human tasks of one Flock — list them, look at one, answer one.

Tasks are :class:`~flock.HumanTask` artifacts on the board (see :mod:`flock._core.human`), so this
is a view over the store: it survives restarts on a durable store, and what a caller sees is
filtered by visibility like any read of the board.
"""

from __future__ import annotations

import builtins
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal
from uuid import UUID

import anyio

from .._stores.store import FilterConfig
from .artifact import Artifact
from .errors import FlockClosedError, TaskClosed, TaskNotFound
from .human import (
    HUMAN_TASK,
    HumanTask,
    TaskInput,
    answer_artifacts,
    answer_id,
    is_genuine,
    parse_answer,
    timeout_artifacts,
)
from .outcomes import WorkflowError
from .types import type_name
from .visibility import AgentIdentity

TaskStatus = Literal["open", "answered", "expired"]
_PAGE = 500
_LATE = 64  # tasks read again at each refresh that finds new ones (see _read_board)
_WORKFLOW_ERROR = type_name(WorkflowError)


@dataclass(frozen=True)
class TaskInfo:
    """One human task as :attr:`Flock.tasks` shows it: the :class:`HumanTask` fields, where it lives
    on the board, and its ``status`` (``"open"``, ``"answered"`` or ``"expired"``)."""

    id: UUID
    agent: str
    prompt: str
    inputs: list[TaskInput]
    output_type: str | None
    output_schema: dict[str, Any]
    deadline: datetime | None
    created_at: datetime
    correlation_id: str
    status: TaskStatus
    artifact: Artifact

    @classmethod
    def of(cls, artifact: Artifact, status: TaskStatus) -> TaskInfo:
        task = HumanTask.model_validate(artifact.payload)
        return cls(
            id=artifact.id,
            agent=task.agent,
            prompt=task.prompt,
            inputs=task.inputs,
            output_type=task.output_type,
            output_schema=task.output_schema,
            deadline=task.deadline,
            created_at=artifact.created_at,
            correlation_id=artifact.correlation_id,
            status=status,
            artifact=artifact,
        )

    def to_json(self) -> dict[str, Any]:
        """JSON-ready fields (what ``GET /tasks`` and ``flock tasks`` show)."""
        task = HumanTask.model_validate(self.artifact.payload)
        return {
            "id": str(self.id),
            "agent": self.agent,
            "prompt": self.prompt,
            "inputs": [i.model_dump(mode="json") for i in self.inputs],
            "output_type": self.output_type,
            "outputs": task.outputs,
            "output_schema": self.output_schema,
            "deadline": self.deadline.isoformat() if self.deadline else None,
            "default": task.default,
            "created_at": self.created_at.isoformat(),
            "correlation_id": self.correlation_id,
            "status": self.status,
        }


class Tasks:
    """The human tasks of a Flock (``flock.tasks``)::

        for task in await flock.tasks.list():
            print(task.agent, task.prompt, task.inputs)
        await flock.tasks.answer(task.id, {"ok": True})   # publishes the agent's output
        await flock.run_until_idle()                       # routes it downstream

    ``identity`` (an :class:`AgentIdentity`) limits what a call sees and may answer to what that
    identity may see, as the REST API does for a key's tenant; ``None`` sees every task.
    """

    def __init__(self, flock: Any) -> None:
        self._flock = flock
        # Open tasks by id in publication order, and how many task artifacts the board held when it
        # was last read: each look reads only the tasks published since and checks the open ones
        # (a closed task never opens again), so it costs O(open tasks), not O(every task ever).
        self._open: dict[UUID, Artifact] = {}
        self._scanned = 0
        self._reading: anyio.Lock | None = None  # one look at a time (REST requests run concurrently)

    async def list(
        self, identity: AgentIdentity | None = None, *, agent: str | None = None
    ) -> builtins.list[TaskInfo]:
        """Open tasks, oldest first (``agent`` keeps one agent's)."""
        await self._refresh()
        now = self._flock._clock.now()
        return [
            TaskInfo.of(t, "open")
            for t in self._open.values()
            if (agent is None or t.produced_by == agent)
            and (identity is None or t.visibility.allows(identity, now=now, published_at=t.created_at))
        ]

    async def count(self) -> int:
        """How many tasks are open (the ``open_tasks`` of a run summary)."""
        await self._refresh()
        return len(self._open)

    async def _refresh(self) -> None:
        if self._reading is None:
            self._reading = anyio.Lock()
        async with self._reading:
            await self._read_board()

    async def _read_board(self) -> None:
        store = self._flock.store
        filters = FilterConfig(type_names=frozenset({HUMAN_TASK}))
        total = await store.count(filters)
        if total < self._scanned:  # retention removed tasks: read the board afresh
            self._open.clear()
            self._scanned = 0
        if self._scanned < total:
            # Read again the last _LATE tasks already read: on a board several processes write,
            # a task whose transaction commits late sits before tasks read already (PostgreSQL
            # numbers rows when they are written, not when they commit). Tasks met twice are
            # kept once; closed ones go below.
            self._scanned = max(0, self._scanned - _LATE)
        while self._scanned < total:
            page, _ = await store.query_artifacts(filters, limit=_PAGE, offset=self._scanned)
            if not page:
                break
            self._scanned += len(page)
            self._open.update((t.id, t) for t in page if is_genuine(t))
        if self._open:
            closing = await _get_many(store, [answer_id(t) for t in self._open])
            closed = {a.id for a in closing}
            for task_id in [t for t in self._open if answer_id(t) in closed]:
                del self._open[task_id]

    async def get(self, task_id: UUID | str, identity: AgentIdentity | None = None) -> TaskInfo:
        """One task, whatever its status. Raises :class:`TaskNotFound` when there is no such task or
        ``identity`` may not see it."""
        task = await self._task(task_id, identity)
        closing = await self._flock.store.get(answer_id(task.id))
        return TaskInfo.of(task, _status(closing))

    async def answer(
        self, task_id: UUID | str, payload: Any, *, identity: AgentIdentity | None = None
    ) -> builtins.list[Artifact]:
        """Answer a task: validate ``payload`` against its output type and publish it as the agent's
        output (its correlation id and visibility; ids derived from the task). Returns the published
        artifacts; they are routed now and their subscribers run on the next run (at once when served).

        ``payload`` is the answer object (``{"ok": true}``) when the agent publishes one type, else an
        object keyed by type name (see :class:`HumanTask`).

        Raises:
            TaskAnswerInvalid: the payload does not validate (``.errors``); the task stays open.
            TaskClosed: it was answered already, or its deadline passed.
            TaskNotFound: no such task, or ``identity`` may not see it.
        """
        flock = self._flock
        orch = flock._orchestrator
        if orch.closed:
            raise FlockClosedError("this Flock was shut down; create a new Flock to answer tasks")
        task = await self._task(task_id, identity)
        closing = await flock.store.get(answer_id(task.id))
        if closing is not None:
            raise TaskClosed(
                f"task {task.id} is {_status(closing)} already; its answer is artifact {closing.id}"
            )
        human = HumanTask.model_validate(task.payload)
        catalog = flock._catalog
        spec = catalog.specs.get(human.agent)
        now = flock._clock.now()
        if human.deadline is not None and now >= human.deadline:
            await orch.close_task(timeout_artifacts(task, catalog.types, spec, now))
            raise TaskClosed(
                f"task {task.id} expired at {human.deadline.isoformat()}; it takes no answer now"
            )
        models = parse_answer(human, payload, catalog.types, spec)
        artifacts = answer_artifacts(task, models, spec, now, frozenset({"human"}))
        if not await orch.close_task(artifacts):
            raise TaskClosed(f"task {task.id} was closed by another answer or its deadline just now")
        return artifacts

    async def _task(self, task_id: UUID | str, identity: AgentIdentity | None) -> Artifact:
        try:
            wanted = task_id if isinstance(task_id, UUID) else UUID(str(task_id))
        except ValueError:
            raise TaskNotFound(
                f"{task_id!r} is not a task id (a UUID): list the open tasks with flock tasks list"
            ) from None
        task = await self._flock.store.get(wanted)
        if (
            task is None
            or task.type != HUMAN_TASK
            or not is_genuine(task)
            or (
                identity is not None
                and not task.visibility.allows(
                    identity, now=self._flock._clock.now(), published_at=task.created_at
                )
            )
        ):
            raise TaskNotFound(f"no task {task_id}: list the open tasks with flock tasks list")
        return task


def _status(closing: Artifact | None) -> TaskStatus:
    if closing is None:
        return "open"
    if "timeout" in closing.tags or (
        closing.type == _WORKFLOW_ERROR and closing.payload.get("kind") == "timeout"
    ):
        return "expired"
    return "answered"


async def _get_many(store: Any, ids: builtins.list[UUID]) -> builtins.list[Artifact]:
    if not ids:
        return []
    get_many = getattr(store, "get_many", None)
    if get_many is not None:
        found: builtins.list[Artifact] = await get_many(ids)
        return found
    return [a for a in [await store.get(i) for i in ids] if a is not None]
