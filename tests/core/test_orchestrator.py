"""The orchestrator: publishing, running, stop conditions, invoke, shutdown, concurrency, failures."""

from __future__ import annotations

import logging

import anyio
import pytest
from pydantic import BaseModel

from flock import (
    AgentComponent,
    ContractViolation,
    FilterConfig,
    Flock,
    FlockClosedError,
    FlockError,
    OrchestratorComponent,
    RunSummary,
    RunTimeout,
    TenantVisibility,
    UnknownAgentError,
    Until,
    When,
    WorkflowError,
    WorkflowFailed,
    flock_type,
)

pytestmark = pytest.mark.anyio


@flock_type
class Task(BaseModel):
    n: int = 0


@flock_type
class Note(BaseModel):
    n: int = 0


@flock_type
class Done(BaseModel):
    n: int = 0


@flock_type
class Never(BaseModel):
    pass


def done(task: Task) -> Done:
    return Done(n=task.n)


class Gauge:
    """An async engine that measures how many activations run at the same time."""

    def __init__(self) -> None:
        self.now = 0
        self.peak = 0
        self.calls = 0

    async def __call__(self, model: BaseModel) -> None:
        self.calls += 1
        self.now += 1
        self.peak = max(self.peak, self.now)
        await anyio.sleep(0.01)  # lets other activations start; nothing asserts on time
        self.now -= 1


class Blocker:
    """An async engine that waits until released; counts how often it started."""

    def __init__(self) -> None:
        self.release = anyio.Event()
        self.started = 0

    async def __call__(self, task: Task) -> Done:
        self.started += 1
        await self.release.wait()
        return Done(n=task.n)


# ----------------------------------------------------------------------------- publish / run


async def test_publish_returns_the_stored_artifact() -> None:
    flock = Flock()
    art = await flock.publish(Task(n=1), tags={"a", "b"}, partition_key="p", correlation_id="wf")
    assert await flock.store.get(art.id) == art
    assert art.tags == frozenset({"a", "b"})
    assert (art.partition_key, art.correlation_id, art.produced_by) == ("p", "wf", "external")
    assert art.visibility.kind == "public"


async def test_publish_many_applies_the_same_options_to_each() -> None:
    flock = Flock()
    arts = await flock.publish_many([Task(n=i) for i in range(3)], correlation_id="wf", tags={"batch"})
    assert [a.payload["n"] for a in arts] == [0, 1, 2]
    assert {a.correlation_id for a in arts} == {"wf"}
    assert all(a.tags == frozenset({"batch"}) for a in arts)
    assert len({a.id for a in arts}) == 3
    assert await flock.store.list() == arts
    # without a correlation id each one starts its own workflow
    more = await flock.publish_many([Task(), Task()])
    assert more[0].correlation_id != more[1].correlation_id


async def test_run_until_idle_returns_a_summary_of_the_run() -> None:
    flock = Flock()
    flock.agent("worker").consumes(Task).publishes(Done).calls(done)
    flock.agent("closer").consumes(Done).calls(lambda d: None)
    await flock.publish_many([Task(n=i) for i in range(3)])
    summary = await flock.run_until_idle()
    assert isinstance(summary, RunSummary)
    assert summary.activations == 6
    assert summary.agents_run == {"worker": 3, "closer": 3}
    assert summary.artifacts_by_type == {"Task": 3, "Done": 3}
    assert summary.artifacts_published == 6
    assert summary.ok and summary.errors == []
    assert "6 activations" in str(summary)
    # the next summary covers only what happened since
    again = await flock.run_until_idle()
    assert again.activations == 0 and again.artifacts_published == 0


async def test_run_until_stops_when_the_condition_holds_and_keeps_the_rest() -> None:
    flock = Flock()
    flock.agent("worker").consumes(Task).publishes(Done).calls(done).max_concurrency(1)
    await flock.publish_many([Task(n=i) for i in range(5)])
    assert await flock.run_until(Until.artifact_count(Done).at_least(2)) is True
    assert 2 <= await flock.store.count(FilterConfig(type_names="Done")) < 5
    await flock.run_until_idle()
    assert sorted(d.n for d in await flock.store.get_by_type(Done)) == [0, 1, 2, 3, 4]


async def test_run_until_exists_and_combinators() -> None:
    flock = Flock()
    flock.agent("worker").consumes(Task).publishes(Done).calls(done)
    await flock.publish(Task(n=1))
    assert await flock.run_until(Until.exists(Done)) is True
    assert await flock.run_until(Until.exists(Done) & Until.none(Never)) is True
    assert await flock.run_until(Until.exists(Never) | Until.artifact_count(Done).exactly(1)) is True
    assert await flock.run_until(~Until.exists(Never)) is True
    assert await flock.run_until(Until.artifact_count(Task).at_most(1)) is True
    # conditions that never hold: the run goes idle and reports False
    assert await flock.run_until(Until.exists(Done) & Until.exists(Never)) is False
    assert await flock.run_until(~Until.exists(Done)) is False
    assert await flock.run_until(Until.artifact_count(Done).at_least(2)) is False
    assert await flock.run_until(Until.idle()) is True


async def test_run_until_workflow_error() -> None:
    flock = Flock()
    flock.agent("boom").consumes(Task).calls(lambda t: 1 / 0)
    await flock.publish(Task())
    assert await flock.run_until(Until.workflow_error()) is True
    assert len(await flock.store.get_by_type(WorkflowError)) == 1


async def test_run_until_timeout_returns_false_and_keeps_the_work() -> None:
    flock = Flock()
    blocker = Blocker()
    flock.agent("slow").consumes(Task).publishes(Done).calls(blocker)
    await flock.publish(Task(n=7))
    assert await flock.run_until(Until.exists(Done), timeout=0.1) is False
    assert await flock.store.get_by_type(Done) == []
    blocker.release.set()
    summary = await flock.run_until_idle()
    assert await flock.store.get_by_type(Done) == [Done(n=7)]
    assert blocker.started == 2  # the cancelled activation was run again, not lost
    assert summary.ok


async def test_run_until_rejects_non_conditions() -> None:
    with pytest.raises(FlockError, match=r"Until\.exists"):
        await Flock().run_until(lambda f: True)  # type: ignore[arg-type]


async def test_run_timeout_keeps_queued_work_for_the_next_run() -> None:
    flock = Flock()
    blocker = Blocker()
    flock.agent("slow").consumes(Task).publishes(Done).calls(blocker).max_concurrency(1)
    await flock.publish_many([Task(n=i) for i in range(3)])
    with pytest.raises(RunTimeout, match="stay queued") as info:
        await flock.run_until_idle(timeout=0.1)
    assert isinstance(info.value, TimeoutError)
    assert await flock.store.get_by_type(Done) == []
    blocker.release.set()
    summary = await flock.run_until_idle()
    assert sorted(d.n for d in await flock.store.get_by_type(Done)) == [0, 1, 2]
    assert summary.agents_run["slow"] == 3
    assert summary.ok


# ----------------------------------------------------------------------------- invoke


async def test_invoke_returns_outputs_and_publishes_them() -> None:
    flock = Flock()
    worker = flock.agent("worker").consumes(Task).publishes(Done).calls(done)
    flock.agent("closer").consumes(Done).publishes(Note).calls(lambda d: Note(n=d.n))
    outs = await flock.invoke("worker", Task(n=3))
    assert [(o.type, o.payload, o.produced_by) for o in outs] == [("Done", {"n": 3}, "worker")]
    board = await flock.store.list()
    assert board == outs  # the input itself is not put on the board
    await flock.run_until_idle()  # the outputs wake their subscribers
    assert await flock.store.get_by_type(Note) == [Note(n=3)]
    # the builder works as well as the name
    assert len(await flock.invoke(worker, Task(n=4))) == 1


async def test_invoke_without_publishing_leaves_the_board_unchanged() -> None:
    flock = Flock()
    flock.agent("worker").consumes(Task).publishes(Done).calls(done)
    outs = await flock.invoke("worker", Task(n=3), publish_outputs=False)
    assert [o.payload for o in outs] == [{"n": 3}]
    assert await flock.store.list() == []
    assert await flock.store.get(outs[0].id) is None
    assert (await flock.run_until_idle()).activations == 0


async def test_invoke_unknown_agent() -> None:
    flock = Flock()
    flock.agent("worker").consumes(Task).publishes(Done).calls(done)
    with pytest.raises(UnknownAgentError, match="worker") as info:
        await flock.invoke("wroker", Task())
    assert isinstance(info.value, LookupError)


async def test_invoke_raises_agent_errors_instead_of_recording_them() -> None:
    flock = Flock()

    def broken(task: Task) -> Done:
        raise ValueError("bad task")

    flock.agent("broken").consumes(Task).publishes(Done).calls(broken)
    flock.agent("liar").consumes(Task).publishes(Done, fan_out=2).calls(done)
    with pytest.raises(ValueError, match="bad task"):
        await flock.invoke("broken", Task())
    with pytest.raises(ContractViolation, match="expected exactly 2 Done, got 1"):
        await flock.invoke("liar", Task())
    assert await flock.store.list() == []


async def test_invoke_timeout() -> None:
    flock = Flock()
    flock.agent("slow").consumes(Task).publishes(Done).calls(Blocker())
    with pytest.raises(TimeoutError):
        await flock.invoke("slow", Task(), timeout=0.05)
    assert await flock.store.list() == []


# ----------------------------------------------------------------------------- lifecycle


async def test_async_with_shuts_down_and_refuses_further_work() -> None:
    shut: list[str] = []

    class Hooks(OrchestratorComponent):
        async def on_shutdown(self, flock: object) -> None:
            shut.append("down")

    async with Flock(components=[Hooks()]) as flock:
        flock.agent("worker").consumes(Task).publishes(Done).calls(done)
        await flock.publish(Task(n=1))
        await flock.run_until_idle()
    assert await flock.store.get_by_type(Done) == [Done(n=1)]
    with pytest.raises(FlockClosedError, match="shut down"):
        await flock.publish(Task(n=2))
    with pytest.raises(FlockClosedError):
        await flock.publish_many([Task(n=3)])
    with pytest.raises(FlockClosedError):
        await flock.run_until_idle()
    with pytest.raises(FlockClosedError):
        await flock.run_until(Until.idle())
    await flock.shutdown()  # twice is fine
    assert shut == ["down"]
    assert len(await flock.store.list()) == 2


async def test_shutdown_then_publish() -> None:
    flock = Flock()
    await flock.shutdown()
    with pytest.raises(FlockClosedError) as info:
        await flock.publish(Task())
    assert isinstance(info.value, FlockError)
    assert await flock.store.list() == []


# ----------------------------------------------------------------------------- concurrency


async def test_per_agent_max_concurrency_is_respected() -> None:
    flock = Flock(max_concurrency=100)
    limited, default = Gauge(), Gauge()
    flock.agent("limited").consumes(Task).calls(limited).max_concurrency(2)
    flock.agent("default").consumes(Note).calls(default)
    await flock.publish_many([Task(n=i) for i in range(8)])
    await flock.publish_many([Note(n=i) for i in range(40)])
    await flock.run_until_idle()
    assert limited.calls == 8 and default.calls == 40
    assert limited.peak == 2
    assert default.peak == 32  # the documented default


async def test_global_max_concurrency_bounds_all_agents_together() -> None:
    flock = Flock(max_concurrency=3)
    shared = Gauge()
    flock.agent("one").consumes(Task).calls(shared).max_concurrency(4)
    flock.agent("two").consumes(Note).calls(shared).max_concurrency(4)
    await flock.publish_many([Task(n=i) for i in range(6)])
    await flock.publish_many([Note(n=i) for i in range(6)])
    summary = await flock.run_until_idle()
    assert shared.calls == 12 and summary.activations == 12
    assert shared.peak == 3


async def test_max_concurrency_one_serialises_an_agent() -> None:
    flock = Flock()
    gauge = Gauge()
    flock.agent("serial").consumes(Task).calls(gauge).max_concurrency(1)
    await flock.publish_many([Task(n=i) for i in range(4)])
    await flock.run_until_idle()
    assert (gauge.calls, gauge.peak) == (4, 1)


# ----------------------------------------------------------------------------- loop guard


async def test_loop_guard_trips_loudly() -> None:
    flock = Flock(max_agent_iterations=5)
    flock.agent("loop").consumes(Task).publishes(Task).calls(lambda t: Task(n=t.n + 1)).prevent_self_trigger(
        False
    )
    root = await flock.publish(Task(n=0))
    summary = await flock.run_until_idle()
    assert summary.agents_run["loop"] == 5
    assert [(e.agent, e.kind, e.error_type) for e in summary.errors] == [
        ("loop", "loop_guard", "LoopGuardTripped")
    ]
    assert "max_agent_iterations=5" in summary.errors[0].message
    assert not summary.ok
    [err] = (await flock.store.query_artifacts(FilterConfig(type_names="flock.WorkflowError")))[0]
    assert err.correlation_id == root.correlation_id
    assert err.payload["kind"] == "loop_guard"
    assert len(await flock.store.get_by_type(Task)) == 6
    # the guard is per workflow: tripping again in the same workflow adds nothing
    assert (await flock.run_until_idle()).activations == 0
    # a new workflow gets its own budget
    await flock.publish(Task(n=100))
    again = await flock.run_until_idle()
    assert again.agents_run["loop"] == 5
    assert [e.kind for e in again.errors] == ["loop_guard"]


async def test_loop_guard_counts_a_ping_pong_between_two_agents() -> None:
    flock = Flock(max_agent_iterations=3)
    flock.agent("ping").consumes(Task).publishes(Note).calls(lambda t: Note(n=t.n + 1))
    flock.agent("pong").consumes(Note).publishes(Task).calls(lambda n: Task(n=n.n + 1))
    await flock.publish(Task(n=0))
    with pytest.raises(WorkflowFailed) as info:
        await flock.run_until_idle(raise_on_error=True)
    assert [e.kind for e in info.value.errors] == ["loop_guard"]
    assert info.value.errors[0].agent == "ping"


# ----------------------------------------------------------------------------- failures


async def test_an_agent_that_raises_never_stops_the_others(caplog: pytest.LogCaptureFixture) -> None:
    flock = Flock()

    def boom(task: Task) -> Done:
        raise ValueError("kaput")

    flock.agent("boom").consumes(Task).publishes(Done).calls(boom).tenant("acme")
    flock.agent("fine").consumes(Task).publishes(Note).calls(lambda t: Note(n=t.n)).tenant("acme")
    vis = TenantVisibility(tenant_id="acme")
    task = await flock.publish(Task(n=1), visibility=vis, correlation_id="wf")
    with caplog.at_level(logging.WARNING, logger="flock"):
        summary = await flock.run_until_idle()
    assert await flock.store.get_by_type(Note) == [Note(n=1)]
    assert summary.agents_run == {"boom": 1, "fine": 1}
    [record] = summary.errors
    assert (record.agent, record.kind, record.error_type) == ("boom", "agent_error", "ValueError")
    assert "kaput" in record.message
    assert record.input_ids == [str(task.id)]
    [art] = (await flock.store.query_artifacts(FilterConfig(type_names="flock.WorkflowError")))[0]
    assert art.correlation_id == "wf"
    assert art.visibility == vis
    assert art.consumed_from == (task.id,)
    assert art.produced_by == "boom"
    assert WorkflowError.model_validate(art.payload) == record
    assert any("kaput" in r.getMessage() for r in caplog.records)


async def test_raise_on_error_raises_workflow_failed_after_the_run() -> None:
    flock = Flock()
    flock.agent("boom").consumes(Task).calls(lambda t: 1 / 0)
    flock.agent("fine").consumes(Task).publishes(Done).calls(done)
    await flock.publish_many([Task(n=1), Task(n=2)])
    with pytest.raises(WorkflowFailed, match="division by zero") as info:
        await flock.run_until_idle(raise_on_error=True)
    assert len(info.value.errors) == 2
    assert {e.error_type for e in info.value.errors} == {"ZeroDivisionError"}
    assert len(await flock.store.get_by_type(Done)) == 2  # the others finished
    # a clean run does not raise
    assert (await flock.run_until_idle(raise_on_error=True)).ok


async def test_agents_can_subscribe_to_workflow_errors() -> None:
    flock = Flock()
    seen: list[WorkflowError] = []
    flock.agent("boom").consumes(Task).calls(lambda t: 1 / 0)
    flock.agent("medic").consumes(WorkflowError).calls(seen.append)
    await flock.publish(Task())
    await flock.run_until_idle()
    assert [(e.agent, e.kind) for e in seen] == [("boom", "agent_error")]


async def test_an_engine_returning_junk_is_an_agent_error() -> None:
    flock = Flock()
    flock.agent("junk").consumes(Task).publishes(Done).calls(lambda t: "not a model")
    await flock.publish(Task())
    summary = await flock.run_until_idle()
    assert [e.kind for e in summary.errors] == ["agent_error"]
    assert "return an EvalResult" in summary.errors[0].message


# ----------------------------------------------------------------------------- components and settings


async def test_orchestrator_components_see_publishes_and_can_veto() -> None:
    events: list[str] = []

    class Hooks(OrchestratorComponent):
        async def on_artifact_published(self, flock: object, artifact) -> None:
            events.append(f"published {artifact.type}")

        def on_schedule(self, flock: object, artifact, agent) -> bool:
            return artifact.payload["n"] != 13

        async def on_idle(self, flock: object) -> None:
            events.append("idle")

    flock = Flock(components=[Hooks()])
    flock.agent("worker").consumes(Task).publishes(Done).calls(done)
    await flock.publish(Task(n=1))
    await flock.publish(Task(n=13))
    summary = await flock.run_until_idle()
    assert summary.activations == 1
    assert events == ["published Task", "published Task", "published Done", "idle"]


def test_model_resolution(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("FLOCK_MODEL", raising=False)
    monkeypatch.delenv("DEFAULT_MODEL", raising=False)
    assert Flock().model == "offline"
    monkeypatch.setenv("DEFAULT_MODEL", "default/m")
    assert Flock().model == "default/m"
    monkeypatch.setenv("FLOCK_MODEL", "flock/m")
    assert Flock().model == "flock/m"
    assert Flock("explicit/m").model == "explicit/m"


async def test_comparisons_make_new_conditions() -> None:
    flock = Flock()
    await flock.publish_many([Task(n=i) for i in range(3)])
    base = Until.artifact_count(Task)
    assert await flock.run_until(base.at_least(1) | base.at_most(0)) is True
    assert await flock.run_until(base.at_least(3) & base.at_most(3)) is True
    assert await flock.run_until(base.exactly(2)) is False
    assert repr(base.at_least(4)) == "count(Task) >= 4"


async def test_until_conditions_filter_by_correlation_tags_and_producer() -> None:
    flock = Flock()
    flock.agent("worker").consumes(Task).publishes(Done).calls(done)
    await flock.publish(Task(n=1), correlation_id="a", tags={"hot"})
    await flock.publish_many([Task(n=2), Task(n=3)], correlation_id="b")
    await flock.run_until_idle()
    assert await flock.run_until(Until.artifact_count(Task, correlation_id="b").exactly(2))
    assert await flock.run_until(Until.artifact_count(Task, tags="hot").exactly(1))
    assert await flock.run_until(Until.artifact_count(Done, produced_by="worker").exactly(3))
    assert await flock.run_until(Until.none(Done, produced_by="someone-else"))
    assert not await flock.run_until(Until.exists(Task, correlation_id="c"))


async def test_activation_conditions_defer_until_the_workflow_is_ready() -> None:
    flock = Flock()
    seen: list[int] = []
    flock.agent("x").consumes(Task, activation=When.correlation(Note).count_at_least(2)).calls(
        lambda t: seen.append(t.n)
    )
    await flock.publish(Task(n=1), correlation_id="w")
    await flock.publish(Note(n=1), correlation_id="w")
    assert (await flock.run_until_idle()).activations == 0
    await flock.publish_many([Note(n=2), Note(n=3)], correlation_id="other")  # another workflow
    await flock.run_until_idle()
    assert seen == []
    await flock.publish(Note(n=4), correlation_id="w")
    summary = await flock.run_until_idle()
    assert (seen, summary.activations) == ([1], 1)


async def test_a_timeout_after_the_outputs_were_committed_never_duplicates_them() -> None:
    release = anyio.Event()

    class SlowAfterPublish(AgentComponent):
        async def on_post_publish(self, agent, ctx, artifact) -> None:
            await release.wait()

    flock = Flock()
    downstream: list[int] = []
    worker_runs: list[int] = []

    def work(task: Task) -> Done:
        worker_runs.append(task.n)
        return done(task)

    flock.agent("worker").consumes(Task).publishes(Done).calls(work).with_utilities(SlowAfterPublish())
    flock.agent("closer").consumes(Done).calls(lambda d: downstream.append(d.n))
    await flock.publish(Task(n=1))
    with pytest.raises(RunTimeout):
        await flock.run_until_idle(timeout=0.1)
    release.set()
    await flock.run_until_idle()
    assert await flock.store.get_by_type(Done) == [Done(n=1)]
    assert downstream == [1]
    assert worker_runs == [1]  # committed before the timeout: not queued again


async def test_an_artifact_cannot_be_published_in_an_agents_name() -> None:
    from flock import Artifact, ConfigurationError

    flock = Flock()
    flock.agent("trusted").consumes(Task).publishes(Done).calls(done)
    flock.agent("auditor").consumes(Done, from_agents="trusted").publishes(Note).calls(lambda d: Note(n=d.n))
    forged = Artifact(type="Done", payload={"n": 1}, produced_by="trusted")
    with pytest.raises(ConfigurationError, match="only that agent publishes under its name"):
        await flock.publish(forged)
    assert await flock.store.list() == []
    imported = await flock.publish(Artifact(type="Done", payload={"n": 2}, produced_by="importer"))
    assert imported.produced_by == "importer"


async def test_a_workflow_error_published_from_outside_is_not_a_failure_of_this_run() -> None:
    flock = Flock()
    await flock.publish(WorkflowError(agent="elsewhere", kind="agent_error", error_type="X", message="old"))
    summary = await flock.run_until_idle(raise_on_error=True)
    assert summary.errors == []
    assert len(await flock.store.get_by_type(WorkflowError)) == 1


async def test_invoke_timeout_is_a_run_timeout() -> None:
    async def slow(task: Task) -> Done:
        await anyio.sleep(5)
        return Done()

    flock = Flock()
    flock.agent("slow").consumes(Task).publishes(Done).calls(slow)
    with pytest.raises(RunTimeout, match="did not finish"):
        await flock.invoke("slow", Task(), timeout=0.05)


async def test_invoke_does_not_journal_its_unstored_input() -> None:
    flock = Flock()
    flock.agent("a").consumes(Task).publishes(Done).calls(done)
    (out,) = await flock.invoke("a", Task(n=4))
    assert await flock.store.consumptions() == set()
    assert [a.id for a in await flock.store.list()] == [out.id]


async def test_a_failing_where_is_recorded_once_even_when_resume_routes_it_again() -> None:
    def broken(task: Task) -> bool:
        raise ValueError("bad predicate")

    flock = Flock()
    flock.agent("picky").consumes(Task, where=broken).publishes(Done).calls(done)
    await flock.publish(Task(n=1))
    first = await flock.run_until_idle()
    again = await flock.resume()  # routes every stored artifact again
    assert [e.kind for e in first.errors] == ["subscription_error"]
    assert again.errors == []
    assert len(await flock.store.get_by_type(WorkflowError)) == 1


async def test_wrong_arguments_to_the_run_api_say_what_to_pass() -> None:
    # Each of these escaped as a bare TypeError or AttributeError from deep inside, or, for a
    # negative timeout, as a RunTimeout that blamed the run.
    from flock import ConfigurationError, FilterConfig

    flock = Flock()
    flock.agent("a").consumes(Task).calls(lambda t: None)
    calls = {
        "tags": lambda: flock.publish(Task(title="x"), tags=5),
        "publish_many": lambda: flock.publish_many(None),
        "timeout=": lambda: flock.run_until_idle(timeout="5"),
        "seconds >= 0": lambda: flock.run_until(Until.idle(), timeout=-1),
        "FilterConfig": lambda: flock.store.query_artifacts({"type_names": {"Task"}}),
        "map": lambda: flock.map("a", 5),
    }
    for hint, call in calls.items():
        with pytest.raises(ConfigurationError, match=hint):
            await call()
    assert isinstance(await flock.store.query_artifacts(FilterConfig()), tuple)
