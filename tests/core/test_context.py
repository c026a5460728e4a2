"""Context: what an engine sees besides its inputs."""

from __future__ import annotations

import pytest
from pydantic import BaseModel

from flock import (
    Context,
    ContextRequest,
    CorrelationContext,
    Flock,
    NoContext,
    PrivateVisibility,
    flock_type,
)

pytestmark = pytest.mark.anyio


@flock_type
class Task(BaseModel):
    n: int = 0


@flock_type
class Note(BaseModel):
    n: int = 0


class Looker:
    """A function engine that records the context each activation saw."""

    def __init__(self) -> None:
        self.seen: dict[int, list[tuple[str, int]]] = {}
        self.ctx: list[Context] = []

    def __call__(self, task: Task, ctx: Context) -> None:
        self.ctx.append(ctx)
        self.seen[task.n] = [(a.type, a.payload["n"]) for a in ctx.artifacts]


async def test_correlation_context_is_the_visible_artifacts_of_the_own_workflow() -> None:
    flock = Flock(context_provider=CorrelationContext())
    look = Looker()
    flock.agent("looker").consumes(Task).calls(look)
    await flock.publish_many([Note(n=1), Note(n=2)], correlation_id="mine")
    await flock.publish(Note(n=3), correlation_id="mine", visibility=PrivateVisibility(agents={"other"}))
    await flock.publish_many([Note(n=100), Note(n=101)], correlation_id="theirs")
    await flock.publish(Note(n=200))  # a workflow of its own
    await flock.publish(Task(n=7), correlation_id="mine")
    await flock.publish(Task(n=8), correlation_id="theirs")
    await flock.run_until_idle()
    # inputs excluded, oldest first, nothing from other workflows, nothing invisible
    assert look.seen[7] == [("Note", 1), ("Note", 2)]
    assert look.seen[8] == [("Note", 100), ("Note", 101)]
    ctx = {c.correlation_id: c for c in look.ctx}
    assert set(ctx) == {"mine", "theirs"}
    assert ctx["mine"].agent == "looker" and ctx["mine"].subscription == 0
    assert ctx["mine"].model == flock.model


async def test_default_context_includes_earlier_outputs_of_the_workflow() -> None:
    flock = Flock()
    look = Looker()
    flock.agent("noter").consumes(Note).publishes(Task).calls(lambda n: Task(n=n.n))
    flock.agent("looker").consumes(Task).calls(look)
    await flock.publish(Note(n=5), correlation_id="wf")
    await flock.run_until_idle()
    assert look.seen[5] == [("Note", 5)]  # the root of the workflow; its own input excluded


async def test_correlation_context_is_bounded_to_the_newest() -> None:
    flock = Flock(context_provider=CorrelationContext())
    look = Looker()
    flock.agent("looker").consumes(Task).calls(look)
    await flock.publish_many([Note(n=i) for i in range(60)], correlation_id="wf")
    await flock.publish(Task(n=1), correlation_id="wf")
    await flock.run_until_idle()
    assert look.seen[1] == [("Note", i) for i in range(10, 60)]  # the default limit is 50


async def test_the_flock_wide_default_provider_can_be_set() -> None:
    flock = Flock(context_provider=CorrelationContext(limit=3))
    look = Looker()
    flock.agent("looker").consumes(Task).calls(look)
    await flock.publish_many([Note(n=i) for i in range(10)], correlation_id="wf")
    await flock.publish(Task(n=1), correlation_id="wf")
    await flock.run_until_idle()
    assert look.seen[1] == [("Note", 7), ("Note", 8), ("Note", 9)]


async def test_with_context_overrides_the_default() -> None:
    flock = Flock()
    quiet, custom = Looker(), Looker()
    requests: list[ContextRequest] = []
    notes: list = []

    def notes_everywhere(request: ContextRequest) -> list:  # a sync provider
        requests.append(request)
        return notes

    flock.agent("quiet").consumes(Task).calls(quiet).with_context(NoContext())
    flock.agent("custom").consumes(Task).calls(custom).with_context(notes_everywhere).tenant("t")
    notes.append(await flock.publish(Note(n=1), correlation_id="a"))
    notes.append(await flock.publish(Note(n=2), correlation_id="b"))
    task = await flock.publish(Task(n=9), correlation_id="a")
    await flock.run_until_idle()
    assert quiet.seen[9] == []
    assert custom.seen[9] == [("Note", 1), ("Note", 2)]  # the provider decides, even across workflows
    [req] = requests
    assert (req.agent.name, req.identity.tenant_id, req.correlation_id) == ("custom", "t", "a")
    assert req.inputs == (task,)


async def test_an_async_provider_and_visibility_enforcement() -> None:
    flock = Flock()
    look = Looker()

    async def all_notes(request: ContextRequest) -> list:
        return [a for a in await request.store.list() if a.type == "Note"]

    flock.agent("looker").consumes(Task).calls(look).with_context(all_notes)
    await flock.publish(Note(n=1), visibility=PrivateVisibility(agents={"looker"}))
    await flock.publish(Note(n=2), visibility=PrivateVisibility(agents={"someone-else"}))
    await flock.publish(Task(n=0))
    await flock.run_until_idle()
    assert look.seen[0] == [("Note", 1)]


async def test_a_failing_provider_is_an_agent_error() -> None:
    flock = Flock()
    look = Looker()

    def broken(request: ContextRequest) -> list:
        raise RuntimeError("no context today")

    flock.agent("looker").consumes(Task).calls(look).with_context(broken)
    await flock.publish(Task(n=0))
    summary = await flock.run_until_idle()
    assert look.seen == {}
    assert [(e.kind, e.error_type) for e in summary.errors] == [("agent_error", "RuntimeError")]
