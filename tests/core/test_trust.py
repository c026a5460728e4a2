"""The defects of the "Trust" review, each reproduced through the public API.

Tenancy and visibility, lost work, the loop guard, shutdown, memory, and runs that halt.
"""

from __future__ import annotations

import gc
import os
from datetime import timedelta
from pathlib import Path
from typing import Any

import anyio
import pytest
from pydantic import BaseModel, Field

from flock import (
    AfterVisibility,
    AgentIdentity,
    Artifact,
    BudgetExceeded,
    ConfigurationError,
    CorrelationContext,
    EngineComponent,
    EvalResult,
    Flock,
    FlockClosedError,
    InMemoryStore,
    LabelledVisibility,
    OrchestratorComponent,
    PrivateVisibility,
    ProviderConfigError,
    RunTimeout,
    SQLiteStore,
    TenantVisibility,
    WorkflowError,
    flock_type,
)

pytestmark = pytest.mark.anyio


@flock_type
class Doc(BaseModel):
    text: str


@flock_type
class Note(BaseModel):
    text: str


@flock_type
class Summary(BaseModel):
    text: str


def seen_by(artifact: Artifact, **identity: Any) -> bool:
    who = AgentIdentity(name=identity.pop("name", "someone"), **identity)
    now = artifact.created_at + timedelta(days=1)
    return artifact.visibility.allows(who, now=now, published_at=artifact.created_at)


class ContextReader(EngineComponent):
    """An engine that reads its context (as LLM engines do) and summarizes it."""

    async def evaluate(self, agent, ctx, inputs, output_group):  # type: ignore[no-untyped-def]
        return EvalResult(outputs=[Summary(text="|".join(a.payload["text"] for a in ctx.artifacts))])


# ------------------------------------------------------------------ tenancy and visibility


async def test_outputs_are_as_restricted_as_the_context_the_agent_was_shown() -> None:
    flock = Flock(context_provider=CorrelationContext())  # the whole workflow, the labelled Doc too
    flock.agent("hr").labels("hr").consumes(Note).publishes(Summary).with_engines(ContextReader())
    secret = LabelledVisibility(required_labels={"hr"})
    await flock.publish(Doc(text="salaries"), visibility=secret, correlation_id="wf")
    await flock.publish(Note(text="summarize"), correlation_id="wf")  # a public input
    await flock.run_until_idle()
    [out] = [a for a in await flock.store.list() if a.type == "Summary"]
    assert out.payload["text"] == "salaries"  # the engine was shown the labelled context
    assert seen_by(out, labels=frozenset({"hr"}))
    assert not seen_by(out)  # so its output is not public


async def test_a_tenant_agents_outputs_stay_in_its_tenant() -> None:
    flock = Flock(context_provider=CorrelationContext())  # the whole workflow, the tenant Doc too
    flock.agent("acme-bot").tenant("acme").consumes(Note).publishes(Summary).with_engines(ContextReader())
    await flock.publish(
        Doc(text="acme plans"), visibility=TenantVisibility(tenant_id="acme"), correlation_id="wf"
    )
    await flock.publish(Note(text="go"), correlation_id="wf")
    leaked: list[str] = []
    flock.agent("globex-bot").tenant("globex").consumes(Summary).calls(lambda s: leaked.append(s.text))
    await flock.run_until_idle()
    [out] = [a for a in await flock.store.list() if a.type == "Summary"]
    assert out.payload["text"] == "acme plans"
    assert seen_by(out, tenant_id="acme")
    assert not seen_by(out, tenant_id="globex") and not seen_by(out)
    assert leaked == []


async def test_failures_of_a_tenant_agent_stay_in_its_tenant() -> None:
    flock = Flock()

    def boom(n: Note) -> Summary:
        raise ValueError("no")

    flock.agent("acme-bot").tenant("acme").consumes(Note).publishes(Summary).calls(boom)
    await flock.publish(Note(text="go"))
    summary = await flock.run_until_idle()
    assert [e.kind for e in summary.errors] == ["agent_error"]
    [failure] = [a for a in await flock.store.list() if a.type == "flock.WorkflowError"]
    assert seen_by(failure, tenant_id="acme") and not seen_by(failure, tenant_id="globex")


async def test_publishing_an_artifact_with_options_is_refused_not_ignored() -> None:
    flock = Flock()
    flock.agent("a").consumes(Doc).calls(lambda d: None)
    ready = Artifact(type="Doc", payload={"text": "x"})
    with pytest.raises(ConfigurationError, match="takes no tags=, visibility="):
        await flock.publish(ready, visibility=PrivateVisibility(agents={"a"}), tags={"t"})
    with pytest.raises(ConfigurationError, match="correlation_id="):
        await flock.publish(ready, correlation_id="wf")
    assert await flock.store.list() == []
    # Options set on the artifact itself are kept.
    private = ready.model_copy(update={"visibility": PrivateVisibility(agents={"a"})})
    stored = await flock.publish(private)
    assert (await flock.store.get(stored.id)).visibility == PrivateVisibility(agents={"a"})  # type: ignore[union-attr]


async def test_resume_rechecks_journaled_work_against_todays_declarations(tmp_path: Path) -> None:
    path = tmp_path / "board.db"
    first = Flock(store=SQLiteStore(path))
    first.agent("reader").labels("hr").consumes(Doc).calls(lambda d: None)
    await first.publish(Doc(text="payroll"), visibility=LabelledVisibility(required_labels={"hr"}))
    await first.store.close()  # the process stops before the activation runs

    later = Flock(store=SQLiteStore(path))
    ran: list[str] = []
    later.agent("reader").consumes(Doc).calls(lambda d: ran.append(d.text))  # no longer labelled "hr"
    summary = await later.resume()
    assert ran == []
    assert [(e.agent, e.kind) for e in summary.errors] == [("reader", "subscription_error")]
    assert "no longer" not in summary.errors[0].message or "may not consume" in summary.errors[0].message
    await later.store.close()
    again = Flock(store=SQLiteStore(path))
    again.agent("reader").consumes(Doc).calls(lambda d: ran.append(d.text))
    assert (await again.resume()).errors == []  # recorded as handled: not refused a second time
    assert ran == []
    await again.store.close()


async def test_an_after_visibility_artifact_nobody_will_see_does_not_hold_the_run() -> None:
    flock = Flock()
    got: list[str] = []
    flock.agent("alice").consumes(Doc).calls(lambda d: got.append(d.text))
    hidden = AfterVisibility(ttl=timedelta(minutes=10), then=PrivateVisibility(agents={"bob"}))
    await flock.publish(Doc(text="for bob"), visibility=hidden)
    with anyio.fail_after(5):  # not the ten minutes of its ttl
        await flock.run_until_idle()
    assert got == []


async def test_async_where_predicates_are_awaited_not_taken_as_true() -> None:
    flock = Flock()
    got: list[str] = []

    async def only_yes(d: Doc) -> bool:
        return d.text == "yes"

    flock.agent("a").consumes(Doc, where=only_yes).calls(lambda d: got.append(d.text))
    await flock.publish_many([Doc(text="yes"), Doc(text="no")])
    await flock.run_until_idle()
    assert got == ["yes"]


# ------------------------------------------------------------------ lost work


@flock_type
class Leaky(BaseModel):
    text: str
    token: str = Field(exclude=True)  # dropped from the stored payload, yet required


async def test_an_input_that_no_longer_validates_fails_its_activation_not_the_run() -> None:
    flock = Flock()
    got: list[str] = []
    flock.agent("reader").consumes(Leaky).calls(lambda leaky: got.append(leaky.text))
    flock.agent("other").consumes(Doc).calls(lambda d: got.append(d.text))
    await flock.publish(Leaky(text="a", token="t"))
    await flock.publish(Doc(text="fine"))
    summary = await flock.run_until_idle()
    assert got == ["fine"]
    [error] = summary.errors
    assert (error.agent, error.kind, error.error_type) == ("reader", "invalid_input", "InputInvalid")
    assert "no longer validates" in error.message and "Leaky" in error.message


class FullDisk(InMemoryStore):
    """Refuses commits while ``full`` (as a disk that ran out of space)."""

    full = True

    async def commit_activation(self, record, outputs, *, wait=True):  # type: ignore[no-untyped-def]
        if self.full:
            raise OSError(28, "No space left on device")
        await super().commit_activation(record, outputs, wait=wait)


async def test_a_store_failing_to_commit_stops_the_run_and_loses_nothing() -> None:
    store = FullDisk()
    flock = Flock(store=store)
    runs: list[str] = []

    def summarize(d: Doc) -> Summary:
        runs.append(d.text)
        return Summary(text=d.text.upper())

    flock.agent("s").consumes(Doc).publishes(Summary).calls(summarize).max_concurrency(1)
    await flock.publish_many([Doc(text=t) for t in "abc"])
    with pytest.raises(OSError, match="No space left"):
        await flock.run_until_idle()
    assert await store.get_by_type(Summary) == []
    store.full = False  # space freed: the next run does all of it
    summary = await flock.run_until_idle()
    assert sorted(s.text for s in await store.get_by_type(Summary)) == ["A", "B", "C"]
    assert summary.errors == [] and summary.activations == 3


async def test_a_failing_publish_hook_never_strands_outputs() -> None:
    class Broken(OrchestratorComponent):
        async def on_artifact_published(self, flock, artifact):  # type: ignore[no-untyped-def]
            raise RuntimeError("observer broke")

    flock = Flock(components=[Broken()])
    got: list[str] = []
    flock.agent("s").consumes(Doc).publishes(Summary).calls(lambda d: Summary(text=d.text))
    flock.agent("t").consumes(Summary).calls(lambda s: got.append(s.text))
    await flock.publish(Doc(text="x"))
    summary = await flock.run_until_idle()
    assert got == ["x"]  # the output was routed although the hook raised for it
    assert summary.errors and all(
        e.agent == "Broken" and "observer broke" in e.message for e in summary.errors
    )


@flock_type
class Ping(BaseModel):
    n: int


@flock_type
class Pong(BaseModel):
    n: int


async def test_the_loop_guard_stops_loops_not_independent_inputs() -> None:
    flock = Flock(max_agent_iterations=5)
    got: list[str] = []
    flock.agent("s").consumes(Doc).publishes(Summary).calls(lambda d: Summary(text=d.text))
    flock.agent("t").consumes(Summary).calls(lambda s: got.append(s.text))
    await flock.publish_many([Doc(text=str(i)) for i in range(40)], correlation_id="one-conversation")
    summary = await flock.run_until_idle()
    assert summary.errors == [] and len(got) == 40

    # A real loop in the same conversation is still stopped: five turns each, then refused.
    flock.agent("ping").consumes(Ping).publishes(Pong).calls(lambda p: Pong(n=p.n + 1))
    flock.agent("pong").consumes(Pong).publishes(Ping).calls(lambda p: Ping(n=p.n + 1))
    await flock.publish(Ping(n=0), correlation_id="one-conversation")
    summary = await flock.run_until_idle()
    assert summary.agents_run == {"ping": 5, "pong": 5}
    assert [(e.agent, e.kind) for e in summary.errors] == [("ping", "loop_guard")]


async def test_shutdown_ends_a_running_run_before_it_returns(tmp_path: Path) -> None:
    path = tmp_path / "board.db"
    flock = Flock(store=SQLiteStore(path))
    enough = anyio.Event()
    answered: list[str] = []

    async def slow(d: Doc) -> Summary:
        await anyio.sleep(0.05)
        answered.append(d.text)
        if len(answered) == 4:
            enough.set()
        return Summary(text=d.text)

    flock.agent("s").consumes(Doc).publishes(Summary).calls(slow).max_concurrency(2)
    await flock.publish_many([Doc(text=str(i)) for i in range(40)])
    outcome: list[BaseException] = []

    async def run() -> None:
        try:
            await flock.run_until_idle()
        except FlockClosedError as exc:
            outcome.append(exc)

    with anyio.fail_after(10):
        async with anyio.create_task_group() as tg:
            tg.start_soon(run)
            await enough.wait()  # some work is done
            await flock.shutdown()
            after_shutdown = await flock.store.count()
            await anyio.sleep(0.3)
            assert await flock.store.count() == after_shutdown  # nothing more is published
    assert len(outcome) == 1 and "shut down during the run" in str(outcome[0])
    done = len(await flock.store.get_by_type(Summary))
    assert 0 < done < 40
    await flock.store.close()

    later = Flock(store=SQLiteStore(path))
    later.agent("s").consumes(Doc).publishes(Summary).calls(lambda d: Summary(text=d.text))
    await later.resume()
    texts = [s.text for s in await later.store.get_by_type(Summary)]
    assert sorted(texts, key=int) == [str(i) for i in range(40)]  # every input once, none twice
    await later.store.close()


MEMORY_PROBE = """
import anyio, gc, sys, tracemalloc
from pydantic import BaseModel
from flock import Artifact, Flock, InMemoryStore


class Doc(BaseModel):
    text: str


class Note(BaseModel):
    text: str


class Summary(BaseModel):
    text: str


class Forgetful(InMemoryStore):
    # Keeps no artifacts, so what a run leaves in memory is the orchestrator's alone.
    async def put(self, artifact: Artifact) -> None:
        pass

    async def commit_activation(self, record, outputs, *, wait=True):
        pass


async def main() -> None:
    flock = Flock(store=Forgetful())
    flock.agent("a").consumes(Doc).publishes(Note).calls(lambda d: Note(text=d.text))
    flock.agent("b").consumes(Note).publishes(Summary).calls(lambda n: Summary(text=n.text))
    flock.agent("c").consumes(Summary).calls(lambda s: None)

    async def batch(n: int) -> None:
        await flock.publish_many([Doc(text="x") for _ in range(n)], correlation_id="wf")
        await flock.run_until_idle()

    await batch(300)  # warm caches and code paths
    gc.collect()
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    await batch(3000)
    gc.collect()
    print((tracemalloc.get_traced_memory()[0] - before) / 3000)


anyio.run(main)
"""


def test_a_finished_run_leaves_no_memory_behind_per_input(tmp_path: Path) -> None:
    # In a fresh interpreter: a tracer provider another test installed would keep spans around.
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "FLOCK_"))}
    done = subprocess.run(
        [sys.executable, "-c", MEMORY_PROBE],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
        env=env,
    )
    assert done.returncode == 0, done.stderr
    per_input = float(done.stdout.strip())
    assert per_input < 40, f"{per_input:.0f} bytes stay behind per finished input"


async def test_best_of_reports_the_engines_error_when_every_candidate_fails() -> None:
    flock = Flock()

    def boom(d: Doc) -> Summary:
        raise ValueError("the model said no")

    flock.agent("s").consumes(Doc).publishes(Summary).calls(boom).best_of(3, lambda r: 0)
    await flock.publish(Doc(text="x"))
    [error] = (await flock.run_until_idle()).errors
    assert (error.error_type, error.message) == ("ValueError", "the model said no")


async def test_the_run_deadline_holds_against_engine_work_that_never_ends() -> None:
    flock = Flock()
    released = anyio.Event()

    async def answer(d: Doc) -> Summary:
        for _ in range(10_000):  # a provider that drips a byte now and then, for ever
            if released.is_set():
                break
            await anyio.sleep(0.5)
        return Summary(text=d.text)

    flock.agent("s").consumes(Doc).publishes(Summary).calls(answer)
    await flock.publish(Doc(text="x"))
    with anyio.fail_after(5), pytest.raises(RunTimeout):
        await flock.run_until_idle(timeout=0.3)
    released.set()
    await flock.run_until_idle()  # the activation was kept
    assert await flock.store.get_by_type(Summary) == [Summary(text="x")]


# ------------------------------------------------------------------ runs that halt


class Provider(EngineComponent):
    """An engine whose provider refuses every call until ``fixed``."""

    def __init__(self, error: Exception) -> None:
        self.error = error
        self.fixed = False
        self.calls = 0

    async def evaluate(self, agent, ctx, inputs, output_group):  # type: ignore[no-untyped-def]
        self.calls += 1
        if not self.fixed:
            raise self.error
        return EvalResult(outputs=[Summary(text=inputs.first(Doc).text)])


@pytest.mark.parametrize(
    "error",
    [
        ProviderConfigError("the provider answered 401: set OPENAI_API_KEY", model="openai/gpt-4.1"),
        BudgetExceeded("the run's budget of 1,000 tokens is spent"),
    ],
    ids=["config", "budget"],
)
async def test_a_halting_error_stops_the_run_and_keeps_every_input(error: Exception, tmp_path: Path) -> None:
    path = tmp_path / "board.db"
    flock = Flock(store=SQLiteStore(path))
    engine = Provider(error)
    flock.agent("s").consumes(Doc).publishes(Summary).with_engines(engine)
    await flock.publish_many([Doc(text=str(i)) for i in range(50)])
    with pytest.raises(type(error)) as raised:
        await flock.run_until_idle()
    assert raised.value is error
    assert engine.calls <= flock.agents[0].max_concurrency < 50  # those already started, not one per input
    assert await flock.store.get_by_type(WorkflowError) == []  # nothing recorded as failed
    engine.fixed = True
    summary = await flock.run_until_idle()
    assert summary.errors == [] and summary.activations == 50
    assert len(await flock.store.get_by_type(Summary)) == 50
    await flock.store.close()


async def test_a_halted_run_resumes_in_a_new_process_after_the_fix(tmp_path: Path) -> None:
    path = tmp_path / "board.db"
    flock = Flock(store=SQLiteStore(path))
    flock.agent("s").consumes(Doc).publishes(Summary).with_engines(Provider(ProviderConfigError("no key")))
    await flock.publish_many([Doc(text=str(i)) for i in range(10)])
    with pytest.raises(ProviderConfigError):
        await flock.run_until_idle()
    await flock.store.close()

    fixed = Provider(ProviderConfigError("unused"))
    fixed.fixed = True
    later = Flock(store=SQLiteStore(path))
    later.agent("s").consumes(Doc).publishes(Summary).with_engines(fixed)
    summary = await later.resume()
    assert summary.errors == [] and fixed.calls == 10
    assert len(await later.store.get_by_type(Summary)) == 10
    await later.store.close()


async def test_a_context_kept_from_a_run_does_not_keep_the_flock_alive() -> None:
    import contextvars
    import weakref

    kept: list[contextvars.Context] = []

    def remember(d: Doc) -> None:
        kept.append(contextvars.copy_context())  # as a keep-alive connection's callbacks do

    flock = Flock()
    flock.agent("a").consumes(Doc).calls(remember)
    await flock.publish(Doc(text="x"))
    await flock.run_until_idle()
    alive = weakref.ref(flock)
    del flock
    gc.collect()
    assert kept and alive() is None
