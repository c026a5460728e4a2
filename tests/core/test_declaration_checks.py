"""Wiring mistakes fail at declaration with a ConfigurationError naming the agent, the call and the fix."""

from __future__ import annotations

import functools
from typing import Any

import pytest
from pydantic import BaseModel

from flock import BatchSpec, ConfigurationError, Flock, JoinSpec, flock_type

pytestmark = pytest.mark.anyio


@flock_type
class Ticket(BaseModel):
    text: str
    key: str = "k"


@flock_type
class Triage(BaseModel):
    category: str
    key: str = "k"


@flock_type
class Reply(BaseModel):
    text: str


def test_a_one_argument_function_on_a_two_type_gate_is_refused_naming_agent_gate_and_fix() -> None:
    flock = Flock()
    with pytest.raises(ConfigurationError) as info:
        flock.agent("responder").consumes(Ticket, Triage).publishes(Reply).calls(lambda t: Reply(text=t.text))
    message = str(info.value)
    assert "'responder'" in message
    assert "consumes(Ticket, Triage) (an AND gate)" in message
    assert "2 models per activation" in message
    assert "def handle(ticket, triage)" in message


def test_the_arity_check_also_runs_when_consumes_comes_after_calls() -> None:
    flock = Flock()
    builder = flock.agent("responder").calls(lambda t: Reply(text=t.text)).consumes(Ticket)
    with pytest.raises(ConfigurationError, match="calls"):
        builder.consumes(Ticket, Triage)
    assert len(builder.spec.subscriptions) == 1  # the refused declaration left the spec as it was


def test_functions_that_fit_the_subscription_are_accepted() -> None:
    flock = Flock()

    def respond(ticket: Ticket, triage: Triage, *, ctx: Any) -> Reply:
        return Reply(text=ticket.text)

    def bundle(*tickets: Ticket) -> Reply:
        return Reply(text=str(len(tickets)))

    flock.agent("a").consumes(Ticket, Triage).publishes(Reply).calls(respond)
    flock.agent("b").consumes(Ticket, batch=BatchSpec(size=3)).publishes(Reply).calls(bundle)
    flock.agent("c").consumes(Ticket, Ticket).publishes(Reply).calls(lambda a, b: Reply(text=a.text))
    flock.agent("d").consumes(Ticket).publishes(Reply).calls(print)  # builtins: nothing to check


def test_a_batch_function_must_take_a_partial_batch_too() -> None:
    flock = Flock()
    with pytest.raises(ConfigurationError, match=r"with a batch.*\*items"):
        flock.agent("b").consumes(Ticket, batch=BatchSpec(size=2)).calls(lambda a, b: None)


def test_arguments_annotated_in_the_wrong_order_are_refused() -> None:
    def respond(triage: Triage, ticket: Ticket) -> Reply:
        return Reply(text=ticket.text)

    with pytest.raises(ConfigurationError, match=r"argument 1 is annotated Triage.*passes a Ticket"):
        Flock().agent("r").consumes(Ticket, Triage).calls(respond)


def test_a_plain_where_on_a_gate_of_several_types_points_to_the_per_type_form() -> None:
    flock = Flock()
    with pytest.raises(ConfigurationError) as info:
        flock.agent("router").consumes(Ticket, Triage, where=lambda t: t.category == "bug")
    message = str(info.value)
    assert "'router'" in message and "consumes(Ticket, Triage)" in message
    assert "where={Ticket: lambda t: ..., Triage: lambda t: ...}" in message


async def test_per_type_where_applies_to_members_of_its_type_only() -> None:
    flock = Flock()
    seen: list[tuple[str, str]] = []
    flock.agent("router").consumes(Ticket, Triage, where={Triage: lambda t: t.category == "bug"}).calls(
        lambda ticket, triage: seen.append((ticket.text, triage.category))
    )
    await flock.publish(Ticket(text="crash"), correlation_id="c1")  # gates collect per workflow
    await flock.publish(Triage(category="billing"), correlation_id="c1")  # filtered out: it waits on
    await flock.publish(Triage(category="bug"), correlation_id="c1")
    summary = await flock.run_until_idle()
    assert summary.ok
    assert seen == [("crash", "bug")]


def test_where_dict_keys_must_be_consumed_types() -> None:
    with pytest.raises(ConfigurationError, match="key 'Reply' that is not one of its types"):
        Flock().agent("r").consumes(Ticket, Triage, where={Reply: lambda r: True})


@pytest.mark.parametrize(
    ("declare", "match"),
    [
        (lambda b: b.consumes(Ticket, where=lambda a, b: True), "must take exactly one argument"),
        (lambda b: b.consumes(Ticket, where=lambda: True), "must take exactly one argument"),
        (lambda b: b.consumes(Ticket).publishes(Reply, validate=lambda: True), "validate="),
        (lambda b: b.consumes(Ticket).publishes(Reply, where=lambda a, b: 1), r"publishes\(Reply\) where="),
        (lambda b: b.consumes(Ticket, Triage, join=JoinSpec(by=lambda a, b: 1, within=2)), "JoinSpec"),
    ],
)
def test_predicates_and_keys_take_one_model(declare: Any, match: str) -> None:
    with pytest.raises(ConfigurationError, match=match):
        declare(Flock().agent("x"))


def test_a_predicate_annotated_for_another_type_is_refused() -> None:
    def urgent(triage: Triage) -> bool:
        return triage.category == "bug"

    with pytest.raises(ConfigurationError, match="annotated for Triage but receives Ticket"):
        Flock().agent("x").consumes(Ticket, where=urgent)


async def _async_pred(model: Any) -> bool:
    return False


class _AsyncCallable:
    async def __call__(self, model: Any) -> bool:
        return False


@pytest.mark.parametrize("pred", [_async_pred, functools.partial(_async_pred), _AsyncCallable()])
@pytest.mark.parametrize(
    "declare",
    [
        lambda b, p: b.consumes(Ticket).publishes(Reply, validate=p),
        lambda b, p: b.consumes(Ticket).publishes(Reply, where=p),
    ],
    ids=["validate", "publishes-where"],
)
def test_async_output_checks_are_refused_since_they_would_always_pass(declare: Any, pred: Any) -> None:
    with pytest.raises(ConfigurationError, match=r"is async.*Use a plain def"):
        declare(Flock().agent("x"), pred)


async def test_a_validate_check_that_returns_a_coroutine_fails_closed() -> None:
    flock = Flock()
    flock.agent("x").consumes(Ticket).publishes(Reply, validate=lambda r: _async_pred(r)).calls(
        lambda t: Reply(text=t.text)
    )
    await flock.publish(Ticket(text="a"))
    summary = await flock.run_until_idle()
    assert await flock.store.get_by_type(Reply) == []
    [error] = summary.errors
    assert "returned an awaitable" in error.message


async def _is_bug(triage: Triage) -> bool:
    return triage.category == "bug"


async def _key_of(model: Any) -> str:
    return str(model.key)


async def test_async_per_type_where_and_async_join_keys_are_awaited() -> None:
    flock = Flock()
    seen: list[str] = []
    flock.agent("gate").consumes(Ticket, Triage, where={Triage: _is_bug}).calls(
        lambda ticket, triage: seen.append("gate " + triage.category)
    )
    flock.agent("join").consumes(Ticket, Triage, join=JoinSpec(by=_key_of, within=5)).calls(
        lambda ticket, triage: seen.append("join " + triage.category)
    )
    await flock.publish(Ticket(text="t"), correlation_id="c1")
    await flock.publish(Triage(category="billing"), correlation_id="c1")
    await flock.publish(Triage(category="bug"), correlation_id="c1")
    assert (await flock.run_until_idle()).ok
    assert sorted(seen) == ["gate bug", "join billing"]


def test_an_async_best_of_score_is_refused() -> None:
    with pytest.raises(ConfigurationError, match="plain"):
        Flock().agent("x").best_of(2, _async_pred)


async def test_a_sync_join_key_still_joins_after_the_checks() -> None:
    flock = Flock()
    pairs: list[str] = []
    flock.agent("m").consumes(Ticket, Triage, join=JoinSpec(by=lambda m: m.key, within=5)).calls(
        lambda ticket, triage: pairs.append(ticket.text + triage.category)
    )
    await flock.publish(Ticket(text="t"), correlation_id="c1")
    await flock.publish(Triage(category="c"), correlation_id="c1")
    await flock.run_until_idle()
    assert pairs == ["tc"]


def test_flock_limits_and_budget_of_the_wrong_kind_are_refused_with_an_example() -> None:
    from flock import Budget, RateLimit

    limit = RateLimit("openai/*", requests_per_minute=500)
    with pytest.raises(
        ConfigurationError, match=r"limits= takes a list of RateLimit values, e\.g\. limits=\["
    ):
        Flock(limits=limit)  # type: ignore[arg-type]  # one limit, not a list of them
    with pytest.raises(ConfigurationError, match=r"limits= takes RateLimit values.*got 500"):
        Flock(limits=[500])
    with pytest.raises(
        ConfigurationError, match=r"budget= takes a Budget, e\.g\. Budget\(max_tokens=.*got 5"
    ):
        Flock(budget=5)
    flock = Flock(limits=[limit], budget=Budget(max_tokens=10))
    assert flock.settings.limits == (limit,)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"temperature": 5}, "DSPyEngine(temperature=...) takes a number from 0 to 2, or None, got 5"),
        ({"max_tokens": 0}, "DSPyEngine(max_tokens=...) takes an int >= 1, or None, got 0"),
        ({"cache": "yes"}, "DSPyEngine(cache=...) takes True or False, got 'yes'"),
        ({"lm_kwargs": ["api_base"]}, "DSPyEngine(lm_kwargs=...) takes a dict of dspy.LM keyword arguments"),
    ],
)
def test_engine_values_are_checked_when_given_as_when_set_through_a_variable(
    kwargs: dict[str, Any], message: str
) -> None:
    from flock import DSPyEngine

    with pytest.raises(ConfigurationError) as caught:
        DSPyEngine(**kwargs)
    assert str(caught.value).startswith(message)
