"""Subscriptions: where, from_agents, tags, AND gates, count gates, OR, self-trigger, at-most-once."""

from __future__ import annotations

import pytest
from pydantic import BaseModel

from flock import EvalInputs, Flock, flock_type

pytestmark = pytest.mark.anyio


@flock_type
class A(BaseModel):
    n: int = 0


@flock_type
class B(BaseModel):
    n: int = 0


@flock_type
class Out(BaseModel):
    ids: list[str]


class Recorder:
    """A function engine that records every activation's input artifacts."""

    def __init__(self) -> None:
        self.calls: list[EvalInputs] = []

    def __call__(self, *models: BaseModel, inputs: EvalInputs) -> None:
        self.calls.append(inputs)

    @property
    def values(self) -> list[list[tuple[str, int]]]:
        return [[(a.type, m.n) for a, m in zip(c.artifacts, c.models, strict=True)] for c in self.calls]


async def test_where_filters_artifacts() -> None:
    flock = Flock()
    rec = Recorder()
    flock.agent("even").consumes(A, where=lambda a: a.n % 2 == 0).calls(rec)
    await flock.publish_many([A(n=i) for i in range(6)])
    await flock.run_until_idle()
    assert sorted(v[0][1] for v in rec.values) == [0, 2, 4]


async def test_several_where_predicates_must_all_hold() -> None:
    flock = Flock()
    rec = Recorder()
    flock.agent("x").consumes(A, where=[lambda a: a.n > 1, lambda a: a.n < 4]).calls(rec)
    await flock.publish_many([A(n=i) for i in range(6)])
    await flock.run_until_idle()
    assert sorted(v[0][1] for v in rec.values) == [2, 3]


async def test_a_raising_where_predicate_is_recorded_not_silent() -> None:
    flock = Flock()
    rec = Recorder()
    flock.agent("picky").consumes(A, where=lambda a: 1 / a.n > 0).calls(rec)
    await flock.publish(A(n=0))
    await flock.publish(A(n=1))
    summary = await flock.run_until_idle()
    assert [v[0][1] for v in rec.values] == [1]
    assert [(e.agent, e.kind, e.error_type) for e in summary.errors] == [
        ("picky", "subscription_error", "ZeroDivisionError")
    ]


async def test_from_agents_restricts_producers() -> None:
    flock = Flock()
    rec = Recorder()
    flock.agent("good").consumes(A).publishes(B).calls(lambda a: B(n=1))
    flock.agent("bad").consumes(A).publishes(B).calls(lambda a: B(n=2))
    flock.agent("judge").consumes(B, from_agents="good").calls(rec)
    flock.agent("both").consumes(B, from_agents={"good", "bad"}).calls(Recorder())
    await flock.publish(A())
    await flock.publish(B(n=3))  # external: not from "good"
    summary = await flock.run_until_idle()
    assert rec.values == [[("B", 1)]]
    assert summary.agents_run["both"] == 2


async def test_tags_match_any_of_the_subscribed_tags() -> None:
    flock = Flock()
    rec = Recorder()
    flock.agent("triage").consumes(A, tags={"urgent", "vip"}).calls(rec)
    await flock.publish(A(n=1), tags={"urgent"})
    await flock.publish(A(n=2), tags={"vip", "other"})
    await flock.publish(A(n=3), tags={"other"})
    await flock.publish(A(n=4))
    await flock.publish(A(n=5), tags="urgent")
    await flock.run_until_idle()
    assert sorted(v[0][1] for v in rec.values) == [1, 2, 5]


async def test_and_gate_gets_one_of_each() -> None:
    flock = Flock()
    rec = Recorder()
    flock.agent("joiner").consumes(A, B).calls(rec)
    corr = "wf"
    await flock.publish(A(n=1), correlation_id=corr)
    await flock.publish(A(n=2), correlation_id=corr)
    assert (await flock.run_until_idle()).activations == 0  # waiting for a B
    await flock.publish(B(n=10), correlation_id=corr)
    await flock.run_until_idle()
    assert rec.values == [[("A", 1), ("B", 10)]]
    await flock.publish(B(n=20), correlation_id=corr)
    await flock.publish(B(n=30), correlation_id=corr)
    await flock.run_until_idle()
    assert rec.values == [[("A", 1), ("B", 10)], [("A", 2), ("B", 20)]]
    assert {a.correlation_id for c in rec.calls for a in c.artifacts} == {corr}


async def test_and_gate_outputs_carry_all_inputs_in_their_lineage() -> None:
    flock = Flock()
    flock.agent("joiner").consumes(A, B).publishes(Out).calls(
        lambda a, b, inputs: Out(ids=[str(x.id) for x in inputs.artifacts])
    )
    a = await flock.publish(A(n=1), correlation_id="wf")
    b = await flock.publish(B(n=1), correlation_id="wf")
    await flock.run_until_idle()
    [out] = [x for x in await flock.store.list() if x.type == "Out"]
    assert out.consumed_from == (a.id, b.id)
    assert out.correlation_id == "wf"


async def test_count_gate_waits_for_two_and_the_engine_gets_both() -> None:
    flock = Flock()
    rec = Recorder()
    flock.agent("pair").consumes(A, A).calls(rec)
    await flock.publish(A(n=1), correlation_id="wf")
    assert (await flock.run_until_idle()).activations == 0
    await flock.publish(A(n=2), correlation_id="wf")
    await flock.publish(A(n=3), correlation_id="wf")
    summary = await flock.run_until_idle()
    assert summary.activations == 1
    assert rec.values == [[("A", 1), ("A", 2)]]
    assert len(rec.calls[0].artifacts) == 2 and len(rec.calls[0].models) == 2
    await flock.publish(A(n=4), correlation_id="wf")
    await flock.run_until_idle()
    assert rec.values[1] == [("A", 3), ("A", 4)]


async def test_mixed_count_and_gate_keeps_declaration_order() -> None:
    flock = Flock()
    rec = Recorder()
    flock.agent("mix").consumes(A, B, A).calls(rec)
    for obj in (B(n=1), A(n=1), B(n=2), A(n=2)):
        await flock.publish(obj, correlation_id="wf")
    await flock.run_until_idle()
    assert rec.values == [[("A", 1), ("B", 1), ("A", 2)]]


async def test_separate_consumes_calls_are_or() -> None:
    flock = Flock()
    rec = Recorder()
    flock.agent("either").consumes(A).consumes(B).calls(rec)
    await flock.publish(A(n=1))
    await flock.publish(B(n=2))
    await flock.publish(A(n=3))
    summary = await flock.run_until_idle()
    assert summary.activations == 3
    assert sorted(tuple(v[0]) for v in rec.values) == [("A", 1), ("A", 3), ("B", 2)]


async def test_gates_never_combine_artifacts_of_different_correlations() -> None:
    flock = Flock()
    rec = Recorder()
    flock.agent("joiner").consumes(A, B).calls(rec)
    flock.agent("pair").consumes(A, A).calls(rec)
    await flock.publish(A(n=1), correlation_id="one")
    await flock.publish(B(n=1), correlation_id="two")
    await flock.publish(A(n=2), correlation_id="two")
    summary = await flock.run_until_idle()
    # joiner fires only in "two" (A2+B1); pair never has two A's in one workflow
    assert summary.activations == 1
    assert rec.values == [[("A", 2), ("B", 1)]]
    assert {a.correlation_id for a in rec.calls[0].artifacts} == {"two"}
    await flock.publish(B(n=5), correlation_id="one")
    await flock.run_until_idle()
    assert rec.values[1] == [("A", 1), ("B", 5)]
    assert {a.correlation_id for a in rec.calls[1].artifacts} == {"one"}


async def test_prevent_self_trigger_is_on_by_default() -> None:
    flock = Flock()
    flock.agent("echo").consumes(A).publishes(A).calls(lambda a: A(n=a.n + 1))
    assert flock.agents[0].prevent_self_trigger is True
    await flock.publish(A(n=0))
    summary = await flock.run_until_idle()
    assert summary.activations == 1
    assert sorted(a.n for a in await flock.store.get_by_type(A)) == [0, 1]
    assert summary.ok


async def test_prevent_self_trigger_off_lets_an_agent_consume_its_own_outputs() -> None:
    flock = Flock()
    flock.agent("count").consumes(A, where=lambda a: a.n < 3).publishes(A).calls(
        lambda a: A(n=a.n + 1)
    ).prevent_self_trigger(False)
    await flock.publish(A(n=0))
    summary = await flock.run_until_idle()
    assert summary.activations == 3
    assert sorted(a.n for a in await flock.store.get_by_type(A)) == [0, 1, 2, 3]


async def test_other_agents_still_see_a_self_triggering_agents_outputs() -> None:
    flock = Flock()
    rec = Recorder()
    flock.agent("echo").consumes(A).publishes(A).calls(lambda a: A(n=a.n + 1))
    flock.agent("listener").consumes(A, from_agents="echo").calls(rec)
    await flock.publish(A(n=0))
    await flock.run_until_idle()
    assert rec.values == [[("A", 1)]]


async def test_each_activation_happens_at_most_once() -> None:
    flock = Flock()
    rec = Recorder()
    flock.agent("once").consumes(A).calls(rec)
    await flock.publish(A(n=1))
    assert (await flock.run_until_idle()).activations == 1
    assert (await flock.run_until_idle()).activations == 0
    assert (await flock.run_until_idle(timeout=5)).activations == 0
    assert len(rec.calls) == 1


async def test_two_matching_subscriptions_of_one_agent_each_fire_once() -> None:
    flock = Flock()
    rec = Recorder()
    flock.agent("twice").consumes(A).consumes(A, where=lambda a: a.n > 0).calls(rec)
    await flock.publish(A(n=0))
    await flock.publish(A(n=1))
    summary = await flock.run_until_idle()
    # (artifact, agent, subscription): n=0 matches one subscription, n=1 matches both
    assert summary.activations == 3
    assert sorted(v[0][1] for v in rec.values) == [0, 1, 1]


async def test_artifacts_without_subscribers_wake_nobody() -> None:
    flock = Flock()
    rec = Recorder()
    flock.agent("b-only").consumes(B).calls(rec)
    await flock.publish_many([A(n=i) for i in range(5)])
    summary = await flock.run_until_idle()
    assert summary.activations == 0 and rec.calls == []
    assert summary.artifacts_by_type["A"] == 5
