"""What a subscriber with an identity or a tenant may see of a run: never more than the artifacts
it may see (an activation's tokens are its outputs before they are published)."""

from __future__ import annotations

import anyio
import anyio.lowlevel
import pytest
from pydantic import BaseModel

from flock import (
    ActivationEvent,
    AgentIdentity,
    ArtifactEvent,
    CorrelationContext,
    EngineComponent,
    EvalResult,
    Flock,
    FlockClosedError,
    LabelledVisibility,
    PrivateVisibility,
    TokenEvent,
    VariableEvent,
    flock_type,
)

pytestmark = pytest.mark.anyio


@flock_type
class Idea(BaseModel):
    topic: str


@flock_type
class Memo(BaseModel):
    text: str


@flock_type
class Pitch(BaseModel):
    title: str


class Echo(EngineComponent):
    """Streams a title made of its input and everything its context showed it, as an LLM would."""

    async def evaluate(self, agent, ctx, inputs, output_group):  # type: ignore[no-untyped-def]
        seen = [str(a.payload) for a in ctx.artifacts]
        title = f"{inputs.first(Idea).topic} {' '.join(seen)}"
        for start in range(0, len(title), 4):
            ctx.emit_token("title", title[start : start + 4])
            await anyio.lowlevel.checkpoint()
        return EvalResult(outputs=[Pitch(title=title)])


async def watch(flock: Flock, who: AgentIdentity, *publish: tuple[BaseModel, dict]) -> list[object]:  # type: ignore[type-arg]
    async with flock.events(identity=who) as events:
        for value, options in publish:
            await flock.publish(value, **options)
        await flock.run_until_idle()
        events.close()
        return [e async for e in events]


def tokens(events: list[object]) -> str:
    return "".join(e.delta for e in events if isinstance(e, TokenEvent))


async def test_a_subscriber_without_a_tenant_sees_nothing_of_a_tenants_agent() -> None:
    # The agent's outputs carry its tenant: a subscriber of no tenant may not see them, so it may
    # not watch them stream either, even when the input was public.
    flock = Flock()
    flock.agent("acme-writer").tenant("acme").consumes(Idea).publishes(Pitch).with_engines(Echo())
    got = await watch(flock, AgentIdentity(name="viewer"), (Idea(topic="public idea"), {}))
    [pitch] = await flock.store.get_by_type(Pitch)
    assert pitch.title.startswith("public idea")
    assert [type(e).__name__ for e in got] == ["ArtifactEvent"]  # its own public input only


async def test_tokens_that_carry_the_context_are_shown_only_to_who_may_see_the_outputs() -> None:
    # The writer (label "finance") reads a finance memo of the workflow as context: its output is
    # visible to finance only, and so are the tokens that spell it out.
    flock = Flock(context_provider=CorrelationContext())
    flock.agent("writer").labels("finance").consumes(Idea).publishes(Pitch).with_engines(Echo())
    memo = await flock.publish(
        Memo(text="salaries"), visibility=LabelledVisibility(required_labels={"finance"})
    )
    idea = (Idea(topic="public idea"), {"correlation_id": memo.correlation_id})
    outsider = await watch(flock, AgentIdentity(name="viewer"), idea)
    assert "salaries" in (await flock.store.get_by_type(Pitch))[0].title
    assert "salaries" not in tokens(outsider)
    assert not any(isinstance(e, ArtifactEvent) and e.artifact.type == "Pitch" for e in outsider)

    insider = await watch(flock, AgentIdentity(name="cfo", labels=frozenset({"finance"})), idea)
    assert "salaries" in tokens(insider)
    assert any(isinstance(e, ArtifactEvent) and e.artifact.type == "Pitch" for e in insider)


async def test_tokens_of_outputs_declared_private_are_not_shown_to_others() -> None:
    flock = Flock()
    (
        flock.agent("writer")
        .consumes(Idea)
        .publishes(Pitch, visibility=PrivateVisibility(agents={"editor"}))
        .with_engines(Echo())
    )
    got = await watch(flock, AgentIdentity(name="viewer"), (Idea(topic="draft"), {}))
    assert tokens(got) == ""
    assert not any(isinstance(e, ArtifactEvent) and e.artifact.type == "Pitch" for e in got)
    editor = await watch(flock, AgentIdentity(name="editor"), (Idea(topic="draft"), {}))
    assert tokens(editor).startswith("draft")


async def test_a_tenant_subscriber_gets_no_variable_changes() -> None:
    # Variables are flock-wide settings of the operator, as over REST (admin keys only).
    flock = Flock()
    flock.agent("writer").consumes(Idea).publishes(Pitch).with_engines(Echo())
    async with (
        flock.events(tenant="acme") as acme,
        flock.events(agents="writer") as writer,
        flock.events() as all_,
    ):
        flock.variables.set("tone", "dry")
        for stream in (acme, writer, all_):
            stream.close()
        got = [[e async for e in s] for s in (acme, writer, all_)]
    assert got == [[], [VariableEvent("tone", "dry")], [VariableEvent("tone", "dry")]]


async def test_events_of_a_shut_down_flock_end_at_once() -> None:
    flock = Flock()
    await flock.shutdown()
    with anyio.fail_after(5), pytest.raises(FlockClosedError, match="shut down"):
        async with flock.events() as events:
            async for _ in events:
                pass


async def test_activation_events_follow_the_inputs_the_subscriber_may_see() -> None:
    flock = Flock()
    flock.agent("writer").consumes(Idea).publishes(Pitch).with_engines(Echo())
    secret = (Idea(topic="hidden"), {"visibility": PrivateVisibility(agents={"writer", "boss"})})
    outsider = await watch(flock, AgentIdentity(name="viewer"), secret)
    boss = await watch(flock, AgentIdentity(name="boss"), secret)
    assert outsider == []
    assert [e.state for e in boss if isinstance(e, ActivationEvent)] == ["started", "finished"]
    assert tokens(boss).startswith("hidden")


async def test_a_tenant_subscriber_reads_as_no_agent() -> None:
    # flock.events(tenant=...) is not an agent: an artifact private to an agent that happens to be
    # called like the subscriber's internal name is not its to see.
    flock = Flock()
    flock.agent("events").consumes(Memo).calls(lambda m: None)
    async with flock.events(tenant="acme") as acme:
        await flock.publish(
            Memo(text="private to the agent"), visibility=PrivateVisibility(agents={"events"})
        )
        await flock.run_until_idle()
        acme.close()
        assert [e async for e in acme] == []


async def test_events_of_an_unknown_agent_or_a_wrong_filter_are_refused_with_what_to_do() -> None:
    # A misspelt name used to give a stream that stays silent forever.
    from flock import ConfigurationError, UnknownAgentError

    flock = Flock()
    flock.agent("writer").consumes(Idea).publishes(Pitch).with_engines(Echo())
    with pytest.raises(UnknownAgentError, match=r"no agent named 'writter'; declared agents: \['writer'\]"):
        flock.events(agents=["writter"])
    with pytest.raises(ConfigurationError, match="agent names"):
        flock.events(agents=7)  # type: ignore[arg-type]
    for tenant in ("", " ", 5):  # a pydantic ValidationError (or an identity of tenant "") before
        with pytest.raises(ConfigurationError, match="tenant"):
            flock.events(tenant=tenant)  # type: ignore[arg-type]


async def test_agents_given_as_a_generator_are_read_once() -> None:
    # The names were checked by reading the generator, which left nothing to keep: a silent stream.
    flock = Flock()
    flock.agent("writer").consumes(Idea).publishes(Pitch).with_engines(Echo())
    async with flock.events(agents=(name for name in ["writer"])) as events:
        await flock.publish(Idea(topic="owls"))
        await flock.run_until_idle()
        events.close()
        got = [e async for e in events]
    assert events.agents == frozenset({"writer"})
    kinds = [e.kind for e in got]
    assert kinds[0] == "activation" and kinds[-1] == "artifact" and kinds.count("activation") == 2
