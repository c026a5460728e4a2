"""Visibility: enforced when scheduling and in context, failing closed, inherited by outputs."""

from __future__ import annotations

from datetime import timedelta

import pytest
from pydantic import BaseModel

from flock import (
    AfterVisibility,
    AgentIdentity,
    AllOfVisibility,
    ConfigurationError,
    Context,
    CorrelationContext,
    FilterConfig,
    Flock,
    LabelledVisibility,
    PrivateVisibility,
    PublicVisibility,
    TenantVisibility,
    VisibilityError,
    flock_type,
)

pytestmark = pytest.mark.anyio


@flock_type
class Doc(BaseModel):
    text: str = ""
    secret: bool = False


@flock_type
class Other(BaseModel):
    text: str = ""


@flock_type
class Summary(BaseModel):
    text: str = ""
    secret: bool = False


def summarize(doc: Doc) -> Summary:
    return Summary(text=doc.text, secret=doc.secret)


def readers(flock: Flock, *specs: tuple[str, dict]) -> dict[str, list[str]]:
    """Declare agents that record the Doc texts they were woken by."""
    seen: dict[str, list[str]] = {}
    for name, opts in specs:
        seen[name] = []
        b = flock.agent(name).consumes(Doc).calls(lambda d, _n=name: seen[_n].append(d.text))
        if "tenant" in opts:
            b.tenant(opts["tenant"])
        if "labels" in opts:
            b.labels(*opts["labels"])
    return seen


# ----------------------------------------------------------------------------- fail closed


@pytest.mark.parametrize(
    ("factory", "hint"),
    [
        (lambda: TenantVisibility(tenant_id=None), "tenant_id='acme'"),
        (lambda: TenantVisibility(tenant_id=""), "non-empty tenant_id"),
        (lambda: TenantVisibility(), "non-empty tenant_id"),
        (lambda: LabelledVisibility(required_labels=set()), "required_labels={'finance'}"),
        (lambda: LabelledVisibility(required_labels=frozenset()), "at least one label"),
        (lambda: LabelledVisibility(), "at least one label"),
        (lambda: PrivateVisibility(agents=set()), "agents={'reviewer'}"),
        (lambda: PrivateVisibility(), "at least one agent"),
        (lambda: AfterVisibility(ttl=-1), "ttl >= 0"),
        (lambda: AfterVisibility(ttl="soon"), "ttl >= 0"),
        # a delay past the calendar's end broke every later read of the board (OverflowError)
        (lambda: AfterVisibility(ttl=10**12), "at most 100 years"),
        (lambda: AfterVisibility(ttl=timedelta.max), "at most 100 years"),
    ],
)
def test_visibility_fails_closed(factory, hint) -> None:
    with pytest.raises(VisibilityError) as info:
        factory()
    assert isinstance(info.value, ConfigurationError)
    assert hint in str(info.value)


def test_visibility_values_are_frozen_and_accept_shorthands() -> None:
    assert PrivateVisibility(agents="a").agents == frozenset({"a"})
    assert LabelledVisibility(required_labels="x").required_labels == frozenset({"x"})
    assert AfterVisibility(ttl=2).ttl == timedelta(seconds=2)
    vis = TenantVisibility(tenant_id="acme")
    with pytest.raises(ValueError, match="frozen"):
        vis.tenant_id = "other"  # type: ignore[misc]


# ----------------------------------------------------------------------------- scheduling


async def test_public_artifacts_wake_everyone() -> None:
    flock = Flock()
    seen = readers(flock, ("plain", {}), ("tenant", {"tenant": "acme"}), ("labelled", {"labels": ["x"]}))
    await flock.publish(Doc(text="hi"), visibility=PublicVisibility())
    await flock.publish(Doc(text="default"))
    await flock.run_until_idle()
    assert seen == {name: ["hi", "default"] for name in seen}


async def test_private_artifacts_wake_only_the_named_agents() -> None:
    flock = Flock()
    seen = readers(flock, ("alice", {}), ("bob", {}), ("carol", {}))
    await flock.publish(Doc(text="for alice"), visibility=PrivateVisibility(agents={"alice"}))
    await flock.publish(Doc(text="for both"), visibility=PrivateVisibility(agents={"alice", "bob"}))
    await flock.run_until_idle()
    assert seen == {"alice": ["for alice", "for both"], "bob": ["for both"], "carol": []}


async def test_private_visibility_with_a_tenant_matches_name_and_tenant() -> None:
    vis = PrivateVisibility(agents={"alice"}, tenant_id="acme")
    results = {}
    for tenant in ("acme", "globex", None):
        flock = Flock()
        seen = readers(flock, ("alice", {"tenant": tenant} if tenant else {}))
        await flock.publish(Doc(text="x"), visibility=vis)
        await flock.run_until_idle()
        results[tenant] = seen["alice"]
    assert results == {"acme": ["x"], "globex": [], None: []}


async def test_tenant_visibility_wakes_only_that_tenant() -> None:
    flock = Flock()
    seen = readers(flock, ("acme1", {"tenant": "acme"}), ("globex1", {"tenant": "globex"}), ("none", {}))
    await flock.publish(Doc(text="acme only"), visibility=TenantVisibility(tenant_id="acme"))
    await flock.run_until_idle()
    assert seen == {"acme1": ["acme only"], "globex1": [], "none": []}


async def test_labelled_visibility_needs_every_required_label() -> None:
    flock = Flock()
    seen = readers(
        flock,
        ("both", {"labels": ["finance", "eu"]}),
        ("finance", {"labels": ["finance"]}),
        ("more", {"labels": ["finance", "eu", "extra"]}),
        ("none", {}),
    )
    await flock.publish(Doc(text="f"), visibility=LabelledVisibility(required_labels={"finance"}))
    await flock.publish(Doc(text="fe"), visibility=LabelledVisibility(required_labels={"finance", "eu"}))
    await flock.run_until_idle()
    assert seen == {"both": ["f", "fe"], "finance": ["f"], "more": ["f", "fe"], "none": []}


async def test_after_visibility_schedules_subscribers_once_its_time_has_come() -> None:
    flock = Flock()
    flock.agent("late").consumes(Doc).publishes(Summary).calls(summarize)
    doc = await flock.publish(Doc(text="later"), visibility=AfterVisibility(ttl=0.2))
    identity = AgentIdentity(name="late")
    hidden, total = await flock.store.query_artifacts(FilterConfig(visible_to=identity))
    assert (hidden, total) == ([], 0)
    summary = await flock.run_until_idle()  # waits for the artifact's time instead of dropping it
    assert summary.agents_run == {"late": 1}
    [out] = (await flock.store.query_artifacts(FilterConfig(type_names="Summary")))[0]
    assert out.created_at >= doc.created_at + timedelta(seconds=0.2)
    assert out.visibility == PublicVisibility()  # the delay has passed; its `then` rule carries over
    visible, _ = await flock.store.query_artifacts(FilterConfig(visible_to=identity))
    assert doc in visible
    assert (await flock.run_until_idle()).activations == 0  # and only once


async def test_after_visibility_then_rule_still_applies() -> None:
    flock = Flock()
    seen = readers(flock, ("alice", {}), ("bob", {}))
    vis = AfterVisibility(ttl=timedelta(milliseconds=50), then=PrivateVisibility(agents={"bob"}))
    await flock.publish(Doc(text="x"), visibility=vis)
    await flock.run_until_idle()
    assert seen == {"alice": [], "bob": ["x"]}


# ----------------------------------------------------------------------------- context


async def test_context_shows_only_what_the_agent_may_see() -> None:
    flock = Flock(context_provider=CorrelationContext())  # the whole workflow, filtered
    contexts: dict[str, list[str]] = {}

    def look(other: Other, ctx: Context) -> None:
        contexts[ctx.agent] = sorted(a.payload["text"] for a in ctx.artifacts)

    flock.agent("alice").consumes(Other).calls(look).tenant("acme").labels("finance")
    flock.agent("bob").consumes(Other).calls(look)
    corr = "wf"
    await flock.publish(Doc(text="public"), correlation_id=corr)
    await flock.publish(
        Doc(text="alice"), correlation_id=corr, visibility=PrivateVisibility(agents={"alice"})
    )
    await flock.publish(Doc(text="acme"), correlation_id=corr, visibility=TenantVisibility(tenant_id="acme"))
    await flock.publish(
        Doc(text="fin"), correlation_id=corr, visibility=LabelledVisibility(required_labels={"finance"})
    )
    await flock.publish(Doc(text="later"), correlation_id=corr, visibility=AfterVisibility(ttl=3600))
    await flock.publish(Other(text="go"), correlation_id=corr)
    # Nobody subscribes to Doc, so the hour-long AfterVisibility sets no timer and the run ends at once.
    await flock.run_until_idle(timeout=10)
    assert contexts == {"alice": ["acme", "alice", "fin", "public"], "bob": ["public"]}


async def test_a_custom_provider_cannot_leak_invisible_artifacts() -> None:
    flock = Flock()
    contexts: list[list[str]] = []

    async def everything(request) -> list:
        return await request.store.list()

    flock.agent("nosy").consumes(Other).calls(
        lambda o, ctx: contexts.append(sorted(a.payload["text"] for a in ctx.artifacts))
    ).with_context(everything)
    await flock.publish(Doc(text="public"))
    await flock.publish(Doc(text="private"), visibility=PrivateVisibility(agents={"someone"}))
    await flock.publish(Doc(text="tenant"), visibility=TenantVisibility(tenant_id="acme"))
    await flock.publish(Other(text="go"))
    await flock.run_until_idle()
    assert contexts == [["go", "public"]]


# ----------------------------------------------------------------------------- inheritance


async def test_outputs_inherit_the_inputs_visibility() -> None:
    flock = Flock()
    flock.agent("alice").consumes(Doc).publishes(Summary).calls(summarize)
    private = PrivateVisibility(agents={"alice", "bob"})
    await flock.publish(Doc(text="p"), visibility=private)
    tenant = TenantVisibility(tenant_id="acme")
    flock.agent("t").consumes(Other).publishes(Summary).calls(lambda o: Summary(text=o.text)).tenant("acme")
    await flock.publish(Other(text="t"), visibility=tenant)
    await flock.publish(Other(text="public"))
    await flock.run_until_idle()
    outs = {a.payload["text"]: a for a in await flock.store.list() if a.type == "Summary"}
    assert outs["p"].visibility == private
    assert outs["t"].visibility == tenant
    # A tenant's agent keeps what it makes within its tenant, even from a public input.
    assert outs["public"].visibility == tenant


async def test_outputs_of_private_inputs_are_not_public_to_others() -> None:
    flock = Flock()
    seen: list[str] = []
    flock.agent("alice").consumes(Doc).publishes(Summary).calls(summarize)
    flock.agent("eve").consumes(Summary).calls(lambda s: seen.append(s.text))
    await flock.publish(Doc(text="secret"), visibility=PrivateVisibility(agents={"alice"}))
    await flock.run_until_idle()
    assert len(await flock.store.get_by_type(Summary)) == 1
    assert seen == []


async def test_gate_outputs_combine_the_restrictions_of_all_inputs() -> None:
    flock = Flock()
    flock.agent("j").consumes(Doc, Other).publishes(Summary).calls(
        lambda d, o: Summary(text=d.text + o.text)
    ).tenant("acme").labels("hr")
    tenant = TenantVisibility(tenant_id="acme")
    labelled = LabelledVisibility(required_labels={"hr"})
    await flock.publish(Doc(text="a"), visibility=tenant, correlation_id="wf")
    await flock.publish(Other(text="b"), visibility=labelled, correlation_id="wf")
    await flock.run_until_idle()
    [out] = (await flock.store.query_artifacts(FilterConfig(type_names="Summary")))[0]
    assert isinstance(out.visibility, AllOfVisibility)
    assert set(out.visibility.parts) == {tenant, labelled}
    acme_hr = AgentIdentity(name="x", tenant_id="acme", labels=frozenset({"hr"}))
    acme = AgentIdentity(name="x", tenant_id="acme")
    now = out.created_at
    assert out.visibility.allows(acme_hr, now=now, published_at=now)
    assert not out.visibility.allows(acme, now=now, published_at=now)


async def test_a_declared_visibility_narrows_but_never_widens_what_the_inputs_impose() -> None:
    flock = Flock()
    flock.agent("alice").consumes(Doc).publishes(Summary, visibility=PublicVisibility()).calls(summarize)
    labelled = LabelledVisibility(required_labels={"hr"})
    flock.agent("bob").consumes(Other).publishes(Summary, visibility=labelled).calls(
        lambda o: Summary(text=o.text)
    )
    private = PrivateVisibility(agents={"alice"})
    await flock.publish(Doc(text="p"), visibility=private)
    await flock.publish(Other(text="o"))
    await flock.run_until_idle()
    outs = {a.payload["text"]: a for a in await flock.store.list() if a.type == "Summary"}
    assert outs["p"].visibility == private  # declared public, but made from a private input
    assert outs["o"].visibility == labelled  # a public input: the declaration narrows it


async def test_publishes_visibility_can_be_decided_per_artifact() -> None:
    flock = Flock()
    secret = PrivateVisibility(agents={"boss"})
    flock.agent("w").consumes(Doc).publishes(
        Summary, visibility=lambda s: secret if s.secret else PublicVisibility()
    ).calls(summarize)
    seen: list[str] = []
    flock.agent("boss").consumes(Summary).calls(lambda s: seen.append(s.text))
    flock.agent("intern").consumes(Summary).calls(lambda s: seen.append("intern:" + s.text))
    await flock.publish(Doc(text="open", secret=False))
    await flock.publish(Doc(text="closed", secret=True))
    await flock.run_until_idle()
    vis = {a.payload["text"]: a.visibility for a in await flock.store.list() if a.type == "Summary"}
    assert vis == {"open": PublicVisibility(), "closed": secret}
    assert sorted(seen) == ["closed", "intern:open", "open"]


async def test_a_visibility_callable_returning_junk_fails_the_activation() -> None:
    flock = Flock()
    flock.agent("w").consumes(Doc).publishes(Summary, visibility=lambda s: "public").calls(summarize)
    await flock.publish(Doc(text="x"))
    summary = await flock.run_until_idle()
    assert await flock.store.get_by_type(Summary) == []
    assert [e.kind for e in summary.errors] == ["contract"]
    assert "not a visibility" in summary.errors[0].message


async def test_private_output_of_a_tenant_agent_is_bound_to_its_tenant() -> None:
    flock = Flock()
    flock.agent("w").consumes(Doc).publishes(Summary, visibility=PrivateVisibility(agents={"r"})).calls(
        summarize
    ).tenant("acme")
    await flock.publish(Doc(text="x"))
    await flock.run_until_idle()
    [out] = (await flock.store.query_artifacts(FilterConfig(type_names="Summary")))[0]
    assert out.visibility == PrivateVisibility(agents={"r"}, tenant_id="acme")


async def test_a_declared_delay_on_outputs_is_kept() -> None:
    # publishes(visibility=AfterVisibility(...)) embargoes the outputs: nobody sees them before the
    # delay, not even with a restricted input or a tenant added to the rule.
    flock = Flock()
    embargo = AfterVisibility(ttl=timedelta(hours=1), then=LabelledVisibility(required_labels={"press"}))
    flock.agent("w").consumes(Doc).publishes(Summary, visibility=embargo).calls(summarize)
    flock.agent("t").tenant("acme").consumes(Other).publishes(
        Summary, visibility=AfterVisibility(ttl=3600)
    ).calls(lambda o: Summary(text=o.text))
    await flock.publish(Doc(text="news"), visibility=PrivateVisibility(agents={"w", "editor"}))
    await flock.publish(Other(text="acme news"))
    await flock.run_until_idle()
    press = AgentIdentity(name="editor", labels=frozenset({"press"}), tenant_id="acme")
    found, total = await flock.store.query_artifacts(FilterConfig(type_names="Summary", visible_to=press))
    assert (found, total) == ([], 0)  # both are still under embargo
    outs = {a.payload["text"]: a.visibility for a in await flock.store.list() if a.type == "Summary"}
    later = max(a.created_at for a in await flock.store.list()) + timedelta(hours=2)
    for text, who in (("news", press), ("acme news", AgentIdentity(name="x", tenant_id="acme"))):
        vis = outs[text]
        assert vis.allows(who, now=later, published_at=later - timedelta(hours=2))
    assert not outs["news"].allows(
        AgentIdentity(name="x", labels=frozenset({"press"})), now=later, published_at=later
    )
    assert not outs["acme news"].allows(
        AgentIdentity(name="x", tenant_id="other"), now=later, published_at=later
    )


async def test_an_embargo_too_long_for_the_calendar_is_refused_before_it_reaches_the_board() -> None:
    flock = Flock()
    with pytest.raises(VisibilityError):
        await flock.publish(Doc(text="x"), visibility=AfterVisibility(ttl=10**12))
    assert await flock.store.list() == []
    everyone, _ = await flock.store.query_artifacts(FilterConfig(visible_to=AgentIdentity(name="x")))
    assert everyone == []


async def test_a_failure_is_as_restricted_as_what_the_agent_was_shown() -> None:
    # An error message may quote what the engine read (a model's unparsable answer, a function's
    # exception): the WorkflowError of an agent that read a finance memo is for finance only.
    flock = Flock(context_provider=CorrelationContext())

    def fail(doc: Doc, ctx: Context) -> Summary:
        raise ValueError(f"cannot summarize with {ctx.artifacts[0].payload['text']}")

    flock.agent("w").labels("finance").consumes(Doc).publishes(Summary).calls(fail)
    memo = await flock.publish(
        Other(text="salaries"), visibility=LabelledVisibility(required_labels={"finance"})
    )
    await flock.publish(Doc(text="public"), correlation_id=memo.correlation_id)
    summary = await flock.run_until_idle()
    assert "salaries" in summary.errors[0].message
    outsider = AgentIdentity(name="x")
    seen, _ = await flock.store.query_artifacts(
        FilterConfig(type_names="flock.WorkflowError", visible_to=outsider)
    )
    assert seen == []
    finance = AgentIdentity(name="x", labels=frozenset({"finance"}))
    errors, _ = await flock.store.query_artifacts(
        FilterConfig(type_names="flock.WorkflowError", visible_to=finance)
    )
    assert len(errors) == 1


async def test_a_failing_hook_is_as_restricted_as_what_the_agent_was_shown() -> None:
    from flock import AgentComponent

    class Auditor(AgentComponent):
        async def on_terminate(self, agent, ctx):  # type: ignore[no-untyped-def]
            raise RuntimeError(f"audit failed for {[a.payload['text'] for a in ctx.artifacts]}")

    flock = Flock(context_provider=CorrelationContext())
    flock.agent("w").labels("finance").consumes(Doc).publishes(Summary).calls(summarize).with_utilities(
        Auditor()
    )
    memo = await flock.publish(
        Other(text="salaries"), visibility=LabelledVisibility(required_labels={"finance"})
    )
    await flock.publish(Doc(text="public"), correlation_id=memo.correlation_id)
    summary = await flock.run_until_idle()
    assert "salaries" in summary.errors[0].message
    outsider = AgentIdentity(name="x")
    seen, _ = await flock.store.query_artifacts(
        FilterConfig(type_names="flock.WorkflowError", visible_to=outsider)
    )
    assert seen == []
