"""Joins: grouped by key within a time or count window; completion fires once, expiry is visible."""

from __future__ import annotations

from datetime import timedelta

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import BaseModel

from flock import (
    ConfigurationError,
    EvalInputs,
    Flock,
    JoinExpired,
    JoinSpec,
    ManualClock,
    Until,
    WorkflowError,
    flock_type,
)

pytestmark = pytest.mark.anyio


@flock_type(name="sched.Order")
class Order(BaseModel):
    key: int


@flock_type(name="sched.Payment")
class Payment(BaseModel):
    key: int


@flock_type(name="sched.Matched")
class Matched(BaseModel):
    key: int


class Matcher:
    """Records every activation: (input type names, keys) plus the correlation id it ran in."""

    def __init__(self) -> None:
        self.calls: list[tuple[list[str], list[int]]] = []
        self.inputs: list[EvalInputs] = []

    def __call__(self, order: Order, payment: Payment, inputs: EvalInputs) -> Matched:
        self.calls.append(([a.type for a in inputs.artifacts], [order.key, payment.key]))
        self.inputs.append(inputs)
        return Matched(key=order.key)

    @property
    def keys(self) -> list[int]:
        return [keys[0] for _, keys in self.calls]


def join_flock(within: timedelta | int = timedelta(minutes=5)) -> tuple[Flock, Matcher, ManualClock]:
    clock = ManualClock()
    flock = Flock(clock=clock)
    matcher = Matcher()
    (
        flock.agent("matcher")
        .consumes(Order, Payment, join=JoinSpec(by=lambda m: m.key, within=within))
        .publishes(Matched)
        .calls(matcher)
    )
    return flock, matcher, clock


async def test_a_complete_group_fires_once_with_members_in_declaration_order() -> None:
    flock, matcher, _ = join_flock()
    await flock.publish(Payment(key=1))  # the second declared type arrives first
    await flock.publish(Order(key=1))
    summary = await flock.run_until_idle()
    assert matcher.calls == [(["sched.Order", "sched.Payment"], [1, 1])]
    assert summary.activations == 1
    assert summary.waiting == {} and summary.expired_joins == 0


async def test_a_join_combines_different_correlation_ids_and_records_the_lineage() -> None:
    flock, matcher, _ = join_flock()
    order = await flock.publish(Order(key=7), correlation_id="orders")
    payment = await flock.publish(Payment(key=7), correlation_id="payments")
    await flock.run_until_idle()
    assert matcher.keys == [7]
    (matched,) = [a for a in await flock.store.list() if a.type == "sched.Matched"]
    assert matched.consumed_from == (order.id, payment.id)
    assert matched.correlation_id == "orders"  # the first member's, in declaration order


async def test_out_of_order_arrivals_pair_by_key() -> None:
    flock, matcher, _ = join_flock()
    for model in [Order(key=1), Order(key=2), Payment(key=3), Payment(key=2), Order(key=3), Payment(key=1)]:
        await flock.publish(model)
    summary = await flock.run_until_idle()
    assert matcher.keys == [2, 3, 1]  # each fires when its last member arrives
    assert all(a == b for _, (a, b) in matcher.calls)
    assert summary.waiting == {}


async def test_two_workflows_interleaved_each_get_their_own_pairs() -> None:
    flock, matcher, _ = join_flock()
    for i in range(3):
        await flock.publish(Order(key=100 + i), correlation_id="wf-a")
        await flock.publish(Order(key=200 + i), correlation_id="wf-b")
    for i in reversed(range(3)):
        await flock.publish(Payment(key=200 + i), correlation_id="wf-b")
        await flock.publish(Payment(key=100 + i), correlation_id="wf-a")
    await flock.run_until_idle()
    assert sorted(matcher.keys) == [100, 101, 102, 200, 201, 202]
    for inputs in matcher.inputs:
        workflows = {a.correlation_id for a in inputs.artifacts}
        assert len(workflows) == 1  # keys never collide across these workflows, so neither do pairs


async def test_a_repeated_member_waits_for_its_own_partner() -> None:
    flock, matcher, _ = join_flock()
    await flock.publish_many([Order(key=1), Order(key=1), Payment(key=1)])
    summary = await flock.run_until_idle()
    assert matcher.keys == [1]
    assert summary.waiting == {"matcher": 1}
    await flock.publish(Payment(key=1))
    summary = await flock.run_until_idle()
    assert matcher.keys == [1, 1]
    assert summary.waiting == {}


async def test_an_open_group_waits_without_keeping_the_run_busy() -> None:
    flock, matcher, _ = join_flock()
    await flock.publish(Order(key=1))
    summary = await flock.run_until_idle()  # the window is a passive deadline
    assert matcher.calls == []
    assert summary.waiting == {"matcher": 1}
    assert summary.expired_joins == 0


async def test_a_time_window_expiry_is_a_typed_event_and_counted() -> None:
    flock, _, clock = join_flock(within=timedelta(minutes=5))
    order = await flock.publish(Order(key=9), correlation_id="w")
    await flock.run_until_idle()
    clock.advance(timedelta(minutes=5))
    summary = await flock.run_until_idle()
    assert summary.expired_joins == 1
    assert summary.waiting == {}
    assert summary.artifacts_by_type["flock.JoinExpired"] == 1
    (event,) = await flock.store.get_by_type(JoinExpired)
    assert event.agent == "matcher"
    assert event.key == "9"
    assert event.received == {"sched.Order": 1}
    assert event.missing == {"sched.Payment": 1}
    assert event.member_ids == [str(order.id)]
    (artifact,) = [a for a in await flock.store.list() if a.type == "flock.JoinExpired"]
    assert artifact.correlation_id == "w" and artifact.consumed_from == (order.id,)
    assert await flock.store.get_by_type(Order) == [Order(key=9)]  # the member stays on the board
    assert "expired joins: 1" in str(summary)


async def test_run_until_reaches_the_expiry_without_real_waiting() -> None:
    flock, _, clock = join_flock(within=timedelta(hours=2))
    await flock.publish(Order(key=1))
    assert await flock.run_until(Until.exists(JoinExpired), timeout=5)
    assert clock.monotonic() == 7200.0


async def test_a_group_completed_within_its_window_does_not_expire_later() -> None:
    flock, matcher, clock = join_flock(within=timedelta(minutes=5))
    await flock.publish(Order(key=1))
    await flock.run_until_idle()
    clock.advance(timedelta(minutes=4))
    await flock.publish(Payment(key=1))
    await flock.run_until_idle()
    clock.advance(timedelta(minutes=10))
    summary = await flock.run_until_idle()
    assert matcher.keys == [1]
    assert summary.expired_joins == 0
    assert await flock.store.get_by_type(JoinExpired) == []


async def test_a_partner_after_expiry_starts_a_new_group() -> None:
    flock, matcher, clock = join_flock(within=timedelta(minutes=5))
    await flock.publish(Order(key=1))
    clock.advance(timedelta(minutes=6))
    summary = await flock.run_until_idle()
    assert summary.expired_joins == 1
    await flock.publish(Payment(key=1))
    summary = await flock.run_until_idle()
    assert matcher.calls == []  # the expired order is not revived
    assert summary.waiting == {"matcher": 1}
    clock.advance(timedelta(minutes=5))
    summary = await flock.run_until_idle()
    assert summary.expired_joins == 1
    events = await flock.store.get_by_type(JoinExpired)
    assert [e.missing for e in events] == [{"sched.Payment": 1}, {"sched.Order": 1}]


async def test_a_partner_after_a_missed_deadline_does_not_join_the_stale_group() -> None:
    # Time passed between runs, so the window's timer never fired; the late partner must still
    # not complete a group whose window has closed.
    flock, matcher, clock = join_flock(within=timedelta(minutes=5))
    await flock.publish(Order(key=1))
    await flock.run_until_idle()
    clock.advance(timedelta(minutes=6))
    await flock.publish(Payment(key=1))
    summary = await flock.run_until_idle()
    assert matcher.calls == []
    assert summary.expired_joins == 1
    assert summary.waiting == {"matcher": 1}  # the payment, in a new group
    (event,) = await flock.store.get_by_type(JoinExpired)
    assert event.missing == {"sched.Payment": 1}


async def test_a_count_window_expires_a_group_after_n_further_arrivals() -> None:
    flock, matcher, _ = join_flock(within=2)
    await flock.publish(Order(key=1))
    await flock.publish(Order(key=2))  # one further arrival: key 1 still open
    summary = await flock.run_until_idle()
    assert summary.expired_joins == 0 and summary.waiting == {"matcher": 2}
    await flock.publish(Order(key=3))  # two further arrivals: key 1 expires
    summary = await flock.run_until_idle()
    assert summary.expired_joins == 1
    assert [e.key for e in await flock.store.get_by_type(JoinExpired)] == ["1"]
    await flock.publish(Payment(key=3))  # key 2 had its second further arrival now too
    await flock.publish(Payment(key=1))  # too late for key 1: a new group
    summary = await flock.run_until_idle()
    assert matcher.keys == [3]
    assert [e.key for e in await flock.store.get_by_type(JoinExpired)] == ["1", "2"]
    assert summary.waiting == {"matcher": 1}


async def test_a_count_window_of_one_needs_the_partner_next() -> None:
    flock, matcher, _ = join_flock(within=1)
    await flock.publish_many([Order(key=1), Payment(key=1), Order(key=2), Order(key=3), Payment(key=2)])
    summary = await flock.run_until_idle()
    assert matcher.keys == [1]
    assert summary.expired_joins == 2  # key 2 when key 3 arrived, key 3 when payment 2 arrived


async def test_agents_can_react_to_expired_joins() -> None:
    flock, _, _ = join_flock(within=timedelta(seconds=1))
    alerts: list[dict[str, int]] = []
    flock.agent("alerts").consumes(JoinExpired).calls(lambda e: alerts.append(e.missing))
    await flock.publish(Payment(key=4))
    assert await flock.run_until(Until.exists(JoinExpired), timeout=5)
    await flock.run_until_idle()
    assert alerts == [{"sched.Order": 1}]


async def test_a_raising_key_function_is_reported_not_swallowed() -> None:
    def key(m: Order | Payment) -> int:
        if m.key < 0:
            raise ValueError(f"negative key {m.key}")
        return m.key

    flock = Flock(clock=ManualClock())
    matcher = Matcher()
    (
        flock.agent("matcher")
        .consumes(Order, Payment, join=JoinSpec(by=key, within=5))
        .publishes(Matched)
        .calls(matcher)
    )
    bad = await flock.publish(Order(key=-1))
    await flock.publish_many([Order(key=2), Payment(key=2)])
    summary = await flock.run_until_idle()
    assert matcher.keys == [2]  # the other artifacts are unaffected
    (error,) = summary.errors
    assert error.kind == "subscription_error"
    assert error.agent == "matcher"
    assert error.error_type == "ValueError" and "negative key -1" in error.message
    assert error.input_ids == [str(bad.id)]
    assert len(await flock.store.get_by_type(WorkflowError)) == 1


@pytest.mark.parametrize("within", [0, -1, timedelta(0), True, "5m", 1.5])
def test_invalid_join_windows_fail_at_declaration(within: object) -> None:
    with pytest.raises(ConfigurationError, match="within"):
        JoinSpec(by=lambda m: m, within=within)  # type: ignore[arg-type]


def test_a_join_key_must_be_callable() -> None:
    with pytest.raises(ConfigurationError, match="callable"):
        JoinSpec(by="key", within=3)  # type: ignore[arg-type]


arrivals = st.dictionaries(
    keys=st.integers(min_value=0, max_value=20),
    values=st.sampled_from(["A", "B", "AB"]),
    min_size=1,
    max_size=12,
).flatmap(
    lambda present: st.permutations([(kind, key) for key, kinds in present.items() for kind in kinds]).map(
        lambda order: (present, order)
    )
)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(case=arrivals)
def test_property_every_key_with_both_members_fires_exactly_once(
    case: tuple[dict[int, str], list[tuple[str, int]]], anyio_backend: str
) -> None:
    import anyio

    present, order = case

    async def scenario() -> None:
        flock, matcher, _ = join_flock(within=timedelta(days=1))
        for kind, key in order:
            await flock.publish(Order(key=key) if kind == "A" else Payment(key=key))
        summary = await flock.run_until_idle()
        complete = sorted(k for k, kinds in present.items() if kinds == "AB")
        assert sorted(matcher.keys) == complete
        singles = len(present) - len(complete)
        assert summary.waiting == ({"matcher": singles} if singles else {})
        assert summary.expired_joins == 0

    anyio.run(scenario, backend=anyio_backend)


async def test_an_unhashable_join_key_is_reported_like_a_raising_one() -> None:
    flock = Flock(clock=ManualClock())
    flock.agent("matcher").consumes(Order, Payment, join=JoinSpec(by=lambda m: [m.key], within=5)).calls(
        lambda order, payment: None
    )
    await flock.publish(Order(key=1))
    summary = await flock.run_until_idle()
    (error,) = summary.errors
    assert error.kind == "subscription_error" and error.error_type == "TypeError"
    assert "unhashable" in error.message


steps = st.lists(
    st.tuples(st.sampled_from(["A", "B"]), st.integers(min_value=0, max_value=4), st.integers(0, 4)),
    min_size=1,
    max_size=20,
)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(ops=steps, count_window=st.booleans())
def test_property_every_member_is_joined_expired_or_waiting_exactly_once(
    ops: list[tuple[str, int, int]], count_window: bool, anyio_backend: str
) -> None:
    import anyio

    async def scenario() -> None:
        flock, matcher, clock = join_flock(within=3 if count_window else timedelta(minutes=5))
        published = []
        for kind, key, minutes in ops:
            clock.advance(timedelta(minutes=minutes))
            published.append(await flock.publish(Order(key=key) if kind == "A" else Payment(key=key)))
            await flock.run_until_idle()
        summary = await flock.run_until_idle()
        joined = [str(a.id) for inputs in matcher.inputs for a in inputs.artifacts]
        expired = [m for e in await flock.store.get_by_type(JoinExpired) for m in e.member_ids]
        waiting = summary.waiting.get("matcher", 0)
        assert len(joined) + len(expired) + waiting == len(published)
        assert len(set(joined) | set(expired)) == len(joined) + len(expired)  # no artifact twice
        for inputs in matcher.inputs:
            assert len({m.key for m in inputs.models}) == 1  # type: ignore[attr-defined]
            times = [a.created_at for a in inputs.artifacts]
            if not count_window:  # a group never completes after its window closed
                assert max(times) - min(times) < timedelta(minutes=5)

    anyio.run(scenario, backend=anyio_backend)


async def test_the_expiry_of_a_tenants_join_stays_in_its_tenant() -> None:
    # A JoinExpired is the agent's output: like every output of a tenant's agent, it stays in the
    # tenant, even when the members were public.
    from flock import AgentIdentity, FilterConfig

    flock = Flock(clock=ManualClock())
    (
        flock.agent("acme-matcher")
        .tenant("acme")
        .consumes(Order, Payment, join=JoinSpec(by=lambda m: m.key, within=timedelta(minutes=5)))
        .publishes(Matched)
        .calls(Matcher())
    )
    await flock.publish(Order(key=7))
    assert await flock.run_until(Until.exists(JoinExpired), timeout=5)
    filters = FilterConfig(type_names=frozenset({"flock.JoinExpired"}), visible_to=AgentIdentity(name="x"))
    assert await flock.store.count(filters) == 0
    acme = FilterConfig(
        type_names=frozenset({"flock.JoinExpired"}), visible_to=AgentIdentity(name="x", tenant_id="acme")
    )
    assert await flock.store.count(acme) == 1
