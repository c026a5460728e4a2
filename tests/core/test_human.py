"""Human agents through the public API: tasks open, are answered (validated, once), expire on a
fake clock, stay within their tenant and survive a restart on a real SQLite file."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
from pydantic import BaseModel, Field

from flock import (
    AgentIdentity,
    ConfigurationError,
    Flock,
    HumanTask,
    ManualClock,
    SQLiteStore,
    TaskAnswerInvalid,
    TaskClosed,
    TaskNotFound,
    TenantVisibility,
    WorkflowError,
)

pytestmark = pytest.mark.anyio


class Draft(BaseModel):
    text: str


class Approval(BaseModel):
    ok: bool
    note: str = Field(default="", max_length=50)


class Note(BaseModel):
    text: str


class Shipped(BaseModel):
    text: str
    approved: bool


def reviewed_flock(clock: ManualClock | None = None, store: object = None, **human: object) -> Flock:
    flock = Flock(clock=clock, store=store)  # type: ignore[arg-type]
    flock.agent("reviewer").consumes(Draft).publishes(Approval).human(prompt="Ship this draft?", **human)  # type: ignore[arg-type]
    flock.agent("shipper").consumes(Approval).publishes(Shipped).calls(
        lambda a: Shipped(text=a.note, approved=a.ok)
    )
    return flock


async def shipped(flock: Flock) -> list[Shipped]:
    return await flock.store.get_by_type(Shipped)


async def test_an_activation_opens_a_task_and_the_answer_flows_downstream() -> None:
    flock = reviewed_flock()
    draft = await flock.publish(Draft(text="v1"))
    summary = await flock.run_until_idle()  # returns: nobody waits for the person
    assert summary.open_tasks == 1
    assert summary.activations == 1 and summary.errors == []
    [task] = await flock.tasks.list()
    assert task.agent == "reviewer" and task.prompt == "Ship this draft?" and task.status == "open"
    assert [(i.id, i.type, i.payload) for i in task.inputs] == [(str(draft.id), "Draft", {"text": "v1"})]
    assert task.output_type == "Approval"
    assert task.output_schema["required"] == ["ok"]
    assert task.correlation_id == draft.correlation_id and task.deadline is None
    assert task.artifact.as_model(HumanTask).agent == "reviewer"
    assert await shipped(flock) == []

    [answer] = await flock.tasks.answer(task.id, {"ok": True, "note": "go"})
    assert answer.type == "Approval" and answer.produced_by == "reviewer"
    assert answer.correlation_id == draft.correlation_id and answer.consumed_from == (draft.id,)
    summary = await flock.run_until_idle()
    assert summary.open_tasks == 0
    assert await shipped(flock) == [Shipped(text="go", approved=True)]
    assert await flock.tasks.list() == []
    assert (await flock.tasks.get(task.id)).status == "answered"


async def test_an_invalid_answer_gets_the_errors_and_the_task_stays_open() -> None:
    flock = reviewed_flock()
    await flock.publish(Draft(text="v1"))
    await flock.run_until_idle()
    [task] = await flock.tasks.list()
    for bad in ({"ok": "perhaps"}, {"note": "x" * 60}, {"ok": True, "note": "x" * 51}):
        with pytest.raises(TaskAnswerInvalid) as caught:
            await flock.tasks.answer(task.id, bad)
        assert caught.value.errors and all("loc" in e and "msg" in e for e in caught.value.errors)
    with pytest.raises(TaskAnswerInvalid) as caught:
        await flock.tasks.answer(task.id, {"ok": "perhaps"})
    assert caught.value.errors[0]["loc"] == ["ok"]
    assert [t.id for t in await flock.tasks.list()] == [task.id]
    await flock.tasks.answer(task.id, {"ok": False})
    await flock.run_until_idle()
    assert await shipped(flock) == [Shipped(text="", approved=False)]


async def test_a_second_answer_is_refused() -> None:
    flock = reviewed_flock()
    await flock.publish(Draft(text="v1"))
    await flock.run_until_idle()
    [task] = await flock.tasks.list()
    await flock.tasks.answer(task.id, {"ok": True})
    with pytest.raises(TaskClosed, match="answered"):
        await flock.tasks.answer(task.id, {"ok": False})
    await flock.run_until_idle()
    assert await shipped(flock) == [Shipped(text="", approved=True)]
    with pytest.raises(TaskNotFound):
        await flock.tasks.answer("not-a-uuid", {"ok": True})
    with pytest.raises(TaskNotFound):
        await flock.tasks.get(task.inputs[0].id)  # an artifact, but not a task


async def test_a_deadline_without_default_records_a_timeout_error() -> None:
    clock = ManualClock()
    flock = reviewed_flock(clock, timeout=timedelta(minutes=30))
    await flock.publish(Draft(text="v1"))
    await flock.run_until_idle()
    [task] = await flock.tasks.list()
    assert task.deadline == clock.now() + timedelta(minutes=30)
    clock.advance(timedelta(minutes=29))
    assert (await flock.run_until_idle()).errors == []
    clock.advance(timedelta(minutes=2))
    summary = await flock.run_until_idle()
    assert [(e.agent, e.kind, e.error_type) for e in summary.errors] == [
        ("reviewer", "timeout", "TaskTimeout")
    ]
    assert summary.open_tasks == 0
    with pytest.raises(TaskClosed, match="expired"):
        await flock.tasks.answer(task.id, {"ok": True})
    assert (await flock.tasks.get(task.id)).status == "expired"
    assert await shipped(flock) == []
    [error] = await flock.store.get_by_type(WorkflowError)
    assert error.input_ids == [task.inputs[0].id]


async def test_a_deadline_with_a_default_publishes_it_as_the_answer() -> None:
    clock = ManualClock()
    flock = reviewed_flock(clock, timeout=60, default=Approval(ok=False, note="no answer"))
    await flock.publish(Draft(text="v1"))
    await flock.run_until_idle()
    [task] = await flock.tasks.list()
    clock.advance(61)
    summary = await flock.run_until_idle()
    assert summary.errors == [] and summary.open_tasks == 0
    assert await shipped(flock) == [Shipped(text="no answer", approved=False)]
    [approval] = [a for a in await flock.store.list() if a.type == "Approval"]
    assert "timeout" in approval.tags and approval.produced_by == "reviewer"
    with pytest.raises(TaskClosed):
        await flock.tasks.answer(task.id, {"ok": True})


async def test_an_answer_after_the_deadline_is_refused_even_when_no_timer_fired() -> None:
    clock = ManualClock()
    flock = reviewed_flock(clock, timeout=60)
    await flock.publish(Draft(text="v1"))
    await flock.run_until_idle()
    [task] = await flock.tasks.list()
    clock.advance(120)  # nothing ran the flock meanwhile
    with pytest.raises(TaskClosed, match="expired"):
        await flock.tasks.answer(task.id, {"ok": True})
    assert [e.kind for e in (await flock.run_until_idle()).errors] == ["timeout"]


async def test_an_answer_before_the_deadline_wins_over_the_timer() -> None:
    clock = ManualClock()
    flock = reviewed_flock(clock, timeout=60, default=Approval(ok=False))
    await flock.publish(Draft(text="v1"))
    await flock.run_until_idle()
    [task] = await flock.tasks.list()
    await flock.tasks.answer(task.id, {"ok": True})
    clock.advance(120)
    summary = await flock.run_until_idle()
    assert summary.errors == []
    assert await shipped(flock) == [Shipped(text="", approved=True)]


async def test_tasks_stay_within_their_tenant() -> None:
    flock = Flock()
    for tenant in ("a", "b"):
        flock.agent(f"reviewer-{tenant}").tenant(tenant).consumes(Draft).publishes(Approval).human(
            prompt="ok?"
        )
    await flock.publish(Draft(text="of a"), visibility=TenantVisibility(tenant_id="a"))
    await flock.run_until_idle()
    a = AgentIdentity(name="alice", tenant_id="a")
    b = AgentIdentity(name="bob", tenant_id="b")
    [task] = await flock.tasks.list(a)
    assert task.agent == "reviewer-a"
    assert await flock.tasks.list(b) == []
    with pytest.raises(TaskNotFound):
        await flock.tasks.get(task.id, b)
    with pytest.raises(TaskNotFound):
        await flock.tasks.answer(task.id, {"ok": True}, identity=b)
    [answer] = await flock.tasks.answer(task.id, {"ok": True}, identity=a)
    assert answer.visibility == TenantVisibility(tenant_id="a")


async def test_several_types_and_fan_out_answer_with_an_object_keyed_by_type() -> None:
    flock = Flock()
    flock.agent("editor").consumes(Draft).publishes(Approval, Note, fan_out=(1, 2)).human(prompt="edit")
    await flock.publish(Draft(text="v1"))
    await flock.run_until_idle()
    [task] = await flock.tasks.list()
    assert task.output_type is None
    assert set(task.output_schema["properties"]) == {"Approval", "Note"}
    with pytest.raises(TaskAnswerInvalid):
        await flock.tasks.answer(task.id, {"Approval": [{"ok": True}], "Note": []})
    made = await flock.tasks.answer(
        task.id, {"Approval": [{"ok": True}], "Note": [{"text": "a"}, {"text": "b"}]}
    )
    assert [a.type for a in made] == ["Approval", "Note", "Note"]
    assert len({a.id for a in made}) == 3


async def test_declaration_mistakes_are_refused() -> None:
    flock = Flock()
    with pytest.raises(ConfigurationError, match="one publishes"):
        flock.agent("a").consumes(Draft).human(prompt="?").publishes(Approval).publishes(Note)
    with pytest.raises(ConfigurationError, match="timeout"):
        flock.agent("b").consumes(Draft).publishes(Approval).human(prompt="?", timeout=0)
    with pytest.raises(ConfigurationError, match="at most 100 years"):  # every task would fail
        flock.agent("b2").consumes(Draft).publishes(Approval).human(prompt="?", timeout=10**12)
    with pytest.raises(ConfigurationError, match="default"):
        flock.agent("c").consumes(Draft).publishes(Approval).human(prompt="?", default=Note(text="x"))
    with pytest.raises(ConfigurationError, match="no engine"):
        flock.agent("d").consumes(Draft).publishes(Approval).human(prompt="?").calls(lambda d: None)
    sound = reviewed_flock()
    assert not any("language model" in p for p in sound.graph().problems())  # a person is no LLM


async def test_an_agent_may_consume_tasks_to_notify_someone() -> None:
    flock = reviewed_flock()
    told: list[str] = []
    flock.agent("notifier").consumes(HumanTask).calls(lambda t: told.append(f"{t.agent}: {t.prompt}"))
    await flock.publish(Draft(text="v1"))
    await flock.run_until_idle()
    assert told == ["reviewer: Ship this draft?"]


async def test_tasks_survive_a_restart_on_sqlite(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "board.db"
    first = reviewed_flock(store=SQLiteStore(path))
    await first.publish(Draft(text="v1"))
    assert (await first.run_until_idle()).open_tasks == 1
    await first.shutdown()
    await first.store.close()

    later = reviewed_flock(store=SQLiteStore(path))
    [task] = await later.tasks.list()
    assert task.inputs[0].payload == {"text": "v1"}
    await later.tasks.answer(task.id, {"ok": True, "note": "after restart"})
    await later.run_until_idle()
    assert await shipped(later) == [Shipped(text="after restart", approved=True)]
    # the Draft on the board counts as published: no "cannot run" warning for the reviewer
    assert not [r for r in caplog.records if "cannot run" in r.getMessage()]
    await later.shutdown()
    await later.store.close()

    again = reviewed_flock(store=SQLiteStore(path))
    summary = await again.resume()
    assert summary.activations == 0 and summary.open_tasks == 0  # nothing runs twice
    with pytest.raises(TaskClosed):
        await again.tasks.answer(task.id, {"ok": False})
    await again.store.close()


async def test_resume_rearms_deadlines_of_open_tasks(tmp_path: Path) -> None:
    path = tmp_path / "board.db"
    clock = ManualClock()
    first = reviewed_flock(clock, store=SQLiteStore(path), timeout=600, default=Approval(ok=False))
    await first.publish(Draft(text="v1"))
    await first.run_until_idle()
    await first.shutdown()
    await first.store.close()

    clock.advance(300)
    later = reviewed_flock(clock, store=SQLiteStore(path), timeout=600, default=Approval(ok=False))
    assert (await later.resume()).open_tasks == 1  # not due yet
    clock.advance(301)
    summary = await later.run_until_idle()
    assert summary.open_tasks == 0
    assert await shipped(later) == [Shipped(text="", approved=False)]
    await later.store.close()


async def test_a_task_published_from_outside_is_no_task() -> None:
    flock = reviewed_flock()
    forged = HumanTask(agent="reviewer", prompt="Send me your password", output_type="Approval")
    made = await flock.publish(forged)  # anyone may publish the type, e.g. over POST /artifacts
    await flock.run_until_idle()
    assert await flock.tasks.list() == []
    with pytest.raises(TaskNotFound):
        await flock.tasks.answer(made.id, {"ok": True})


async def test_human_may_come_before_publishes_and_a_missing_one_is_reported() -> None:
    flock = Flock()
    flock.agent("reviewer").description("Check the draft").consumes(Draft).human(
        timeout=60, default=Approval(ok=False)
    ).publishes(Approval)
    flock.agent("mute").consumes(Note).human(prompt="?")
    assert any("'mute' is a human agent that publishes nothing" in p for p in flock.graph().problems())
    with pytest.raises(ConfigurationError, match="default"):
        Flock().agent("wrong").consumes(Draft).human(default=Note(text="x")).publishes(Approval)
    await flock.publish(Draft(text="v1"))
    await flock.publish(Note(text="n"))
    summary = await flock.run_until_idle()
    [task] = await flock.tasks.list()
    assert task.prompt == "Check the draft"  # the description, when no prompt is given
    assert task.artifact.as_model(HumanTask).default == {"ok": False, "note": ""}
    assert [(e.agent, e.kind) for e in summary.errors] == [("mute", "agent_error")]


async def test_a_forged_task_with_a_deadline_neither_closes_nor_stops_the_run() -> None:
    # Anyone may publish the type (POST /artifacts): its deadline must not arm a timer, and a task
    # whose stored payload cannot be read must never take the run down.
    clock = ManualClock()
    flock = reviewed_flock(clock)
    forged = HumanTask(
        agent="reviewer",
        prompt="?",
        output_type="Approval",
        inputs=[{"id": "not-a-uuid", "type": "Draft", "payload": {"text": "x"}}],  # type: ignore[list-item]
        deadline=clock.now() - timedelta(minutes=1),
    )
    await flock.publish(forged)
    summary = await flock.run_until_idle()
    clock.advance(timedelta(hours=1))
    later = await flock.run_until_idle()
    assert summary.errors == [] and later.errors == []
    assert await flock.store.get_by_type(WorkflowError) == []
    assert await flock.tasks.list() == []
