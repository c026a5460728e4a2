"""Rate limits, budgets, usage, secrets and deadlines through a Flock and a real loopback provider."""

from __future__ import annotations

import logging
import threading
import time
import traceback
from typing import Any

import dspy
import pytest
from engine_support import Summary, Task
from metric_support import total
from openai_server import OpenAIServer, Reply

from flock import (
    Budget,
    BudgetExceeded,
    CircuitBreaker,
    ConfigurationError,
    DSPyEngine,
    Flock,
    ModelUsage,
    ProviderConfigError,
    RateLimit,
    WorkflowError,
)
from flock.testing import FunctionModel

pytestmark = pytest.mark.anyio

SECRET = "flock-test-credential-7f3a9c1e"  # no known key shape: only the engine knows it is secret


def engine_for(server: OpenAIServer, **kwargs: Any) -> DSPyEngine:
    lm_kwargs = {"api_base": server.base_url, "api_key": "test-key-0123456789"}
    return DSPyEngine("openai/test-model", lm_kwargs=lm_kwargs, **kwargs)


async def test_a_request_rate_spaces_calls_across_agents(server: OpenAIServer) -> None:
    flock = Flock(limits=[RateLimit("openai/*", requests_per_minute=600)])  # 10 per second
    for name in ("a", "b", "c"):
        flock.agent(name).consumes(Task).publishes(Summary).with_engines(engine_for(server))
    with dspy.context(callbacks=[server.recorder]):
        await flock.publish_many([Task(text=f"t{i}") for i in range(10)])
        await flock.run_until_idle(raise_on_error=True)
    assert len(server.requests) == 30
    arrivals = sorted(server.arrivals)
    # About one second's worth may go at once; the other ~19 calls start 0.1 s apart (1.9 s). The
    # first burst may reach the server late (new connections), which shortens the measured span.
    assert arrivals[-1] - arrivals[0] >= 1.5
    assert len(await flock.store.get_by_type(Summary)) == 30


async def test_max_in_flight_bounds_concurrent_calls() -> None:
    with OpenAIServer(latency=0.15) as server:
        flock = Flock(limits=[RateLimit("openai/test-model", max_in_flight=2)])
        flock.agent("a").consumes(Task).publishes(Summary).with_engines(engine_for(server))
        with dspy.context(callbacks=[server.recorder]):
            await flock.publish_many([Task(text=f"t{i}") for i in range(6)])
            start = time.monotonic()
            await flock.run_until_idle(raise_on_error=True)
            elapsed = time.monotonic() - start
    assert len(server.requests) == 6 and elapsed >= 0.44  # three waves of two


async def test_a_429_pauses_every_caller_of_the_model(server: OpenAIServer) -> None:
    server.script(Reply(status=429, headers={"Retry-After": "0.6"}))
    flock = Flock()
    flock.agent("a").consumes(Task).publishes(Summary).with_engines(engine_for(server))
    with dspy.context(callbacks=[server.recorder]):
        await flock.publish(Task(text="first"))
        await flock.run_until_idle(raise_on_error=True)
        assert len(server.requests) == 2
        throttled_at = server.arrivals[0]
        await flock.publish(Task(text="second"))  # learnt: waits out the provider's pause as well
        await flock.run_until_idle(raise_on_error=True)
    assert server.arrivals[2] - throttled_at >= 0.58


async def test_rate_limits_are_per_flock(server: OpenAIServer, metric_reader: Any) -> None:
    limits = [RateLimit("openai/test-model", requests_per_minute=60)]  # one per second
    flocks = [Flock(limits=limits), Flock(limits=limits)]
    for flock in flocks:
        flock.agent("a").consumes(Task).publishes(Summary).with_engines(engine_for(server))

    before = total(metric_reader, "flock.rate_limit.waits")

    def waits() -> float:
        return total(metric_reader, "flock.rate_limit.waits") - before

    with dspy.context(callbacks=[server.recorder]):
        for flock in flocks:
            await flock.publish(Task(text="bees"))
            await flock.run_until_idle(raise_on_error=True)
        assert waits() == 0  # each flock's first call goes at once: the limiters are not shared
        # Two calls at once in one flock: the second waits for the first one's second to pass.
        await flocks[0].publish_many([Task(text="ants"), Task(text="wasps")])
        await flocks[0].run_until_idle(raise_on_error=True)
    assert waits() >= 1


def test_bad_limits_breakers_and_budgets_fail_at_construction() -> None:
    for make in (
        lambda: RateLimit("openai/*", requests_per_minute=0),
        lambda: RateLimit("", tokens_per_minute=10),
        lambda: RateLimit("m", max_in_flight=0),
        lambda: CircuitBreaker(failures=0),
        lambda: CircuitBreaker(reset_after=-1),
        lambda: Budget(per="week"),  # type: ignore[arg-type]
        lambda: Budget(max_tokens=-5),
        lambda: DSPyEngine(timeout=0),
        lambda: DSPyEngine(fallbacks=(42,)),  # type: ignore[arg-type]
        lambda: DSPyEngine(breaker=5),
        # NaN compares false with everything: a budget of NaN dollars was no budget at all
        lambda: Budget(max_cost_usd=float("nan")),
        lambda: RateLimit("m", requests_per_minute=float("nan")),
        lambda: RateLimit("m", tokens_per_minute=float("nan")),
    ):
        with pytest.raises(ConfigurationError):
            make()


async def test_usage_per_model_lands_in_the_run_summary(server: OpenAIServer) -> None:
    server.script(Reply(status=503))
    flock = Flock()
    flock.agent("a").consumes(Task).publishes(Summary).with_engines(engine_for(server, retries=2))
    with dspy.context(callbacks=[server.recorder]):
        await flock.publish_many([Task(text="one"), Task(text="two")])
        summary = await flock.run_until_idle(raise_on_error=True)
    usage = summary.usage["openai/test-model"]
    assert isinstance(usage, ModelUsage)
    assert (usage.calls, usage.retries, usage.failures, usage.fallbacks) == (2, 1, 1, 0)
    assert usage.input_tokens > 0 and usage.output_tokens > 0
    assert usage.cost_usd is None  # a model the price table does not know
    again = await flock.run_until_idle()
    assert again.usage == {}  # each summary holds its own run's usage


async def test_a_priced_model_reports_its_cost(server: OpenAIServer) -> None:
    flock = Flock()
    engine = DSPyEngine(
        "openai/gpt-4.1-mini", lm_kwargs={"api_base": server.base_url, "api_key": "k-0123456789"}
    )
    flock.agent("a").consumes(Task).publishes(Summary).with_engines(engine)
    with dspy.context(callbacks=[server.recorder]):
        await flock.publish(Task(text="bees"))
        summary = await flock.run_until_idle(raise_on_error=True)
    usage = summary.usage["openai/gpt-4.1-mini"]
    assert usage.cost_usd is not None and 0 < usage.cost_usd < 0.01
    assert summary.metrics["cost_usd"] == pytest.approx(usage.cost_usd)


async def test_a_spent_budget_stops_new_calls(server: OpenAIServer) -> None:
    flock = Flock(budget=Budget(max_tokens=1, per="run"))
    flock.agent("a").max_concurrency(1).consumes(Task).publishes(Summary).with_engines(engine_for(server))
    with dspy.context(callbacks=[server.recorder]):
        await flock.publish_many([Task(text=f"t{i}") for i in range(5)])
        with pytest.raises(BudgetExceeded, match="budget of this run") as caught:
            await flock.run_until_idle()
        assert len(server.requests) == 1  # the first call spent the budget; no other call started
        assert "raise Flock(budget=" in str(caught.value)
        assert len(await flock.store.get_by_type(Summary)) == 1
        assert await flock.store.get_by_type(WorkflowError) == []  # nothing failed: the rest is queued
        flock.settings.budget = Budget(max_tokens=1_000_000)  # raised: the stopped run goes on
        summary = await flock.run_until_idle(raise_on_error=True)
    assert len(await flock.store.get_by_type(Summary)) == 5 and len(server.requests) == 5
    assert summary.usage["openai/test-model"].calls == 5


async def test_a_budget_per_correlation_is_kept_per_workflow(server: OpenAIServer) -> None:
    flock = Flock(budget=Budget(max_tokens=1, per="correlation"))
    flock.agent("a").consumes(Task).publishes(Summary).with_engines(engine_for(server))
    with dspy.context(callbacks=[server.recorder]):
        await flock.publish(Task(text="one"), correlation_id="w1")
        await flock.publish(Task(text="two"), correlation_id="w2")
        await flock.run_until_idle(raise_on_error=True)
        assert len(server.requests) == 2  # one call per workflow fits
        await flock.publish(Task(text="three"), correlation_id="w1")
        with pytest.raises(BudgetExceeded, match="workflow 'w1'"):
            await flock.run_until_idle()
    assert len(server.requests) == 2


async def test_an_echoed_key_never_leaves_the_engine(
    server: OpenAIServer, spans: Any, caplog: pytest.LogCaptureFixture
) -> None:
    echo = {"error": {"message": f"Incorrect API key provided: {SECRET}", "type": "invalid_request_error"}}
    server.always(Reply(status=401, body=echo))
    flock = Flock()
    engine = DSPyEngine("openai/test-model", lm_kwargs={"api_base": server.base_url, "api_key": SECRET})
    flock.agent("a").consumes(Task).publishes(Summary).with_engines(engine)
    with caplog.at_level(logging.INFO, logger="flock"), dspy.context(callbacks=[server.recorder]):
        await flock.publish(Task(text="bees"))
        with pytest.raises(ProviderConfigError) as caught:
            await flock.run_until_idle()
    assert SECRET not in str(caught.value) and "[REDACTED]" in str(caught.value)
    assert SECRET not in "".join(traceback.format_exception(caught.value))  # no chained DSPy error either
    assert SECRET not in caplog.text
    from flock._tracing.redact import Redactor

    finished = spans.get_finished_spans()
    exported = [Redactor().attributes(dict(s.attributes or {})) for s in finished]
    events = [Redactor().attributes(dict(e.attributes or {})) for s in finished for e in s.events]
    assert exported and SECRET in repr([dict(e.attributes or {}) for s in finished for e in s.events])
    assert SECRET not in repr(exported) + repr(events)  # what the exporters write


async def test_an_echoed_key_stays_out_of_the_failure_record(
    server: OpenAIServer, caplog: pytest.LogCaptureFixture
) -> None:
    echo = {"error": {"message": f"upstream rejected key {SECRET}", "type": "server_error"}}
    server.always(Reply(status=500, body=echo))
    flock = Flock()
    lm_kwargs = {"api_base": server.base_url, "api_key": SECRET}
    engine = DSPyEngine("openai/test-model", lm_kwargs=lm_kwargs, retries=0)
    flock.agent("a").consumes(Task).publishes(Summary).with_engines(engine)
    with caplog.at_level(logging.INFO, logger="flock"), dspy.context(callbacks=[server.recorder]):
        await flock.publish(Task(text="bees"))
        await flock.run_until_idle()
    errors = await flock.store.get_by_type(WorkflowError)
    assert errors and SECRET not in errors[0].message and "[REDACTED]" in errors[0].message
    assert errors[0].error_type == "ProviderUnavailable"
    assert SECRET not in caplog.text


async def test_a_missing_key_stops_the_run_once_and_keeps_every_input(
    server: OpenAIServer, caplog: pytest.LogCaptureFixture
) -> None:
    server.always(Reply(status=401))
    flock = Flock()
    flock.agent("a").consumes(Task).publishes(Summary).with_engines(engine_for(server))
    with dspy.context(callbacks=[server.recorder]):
        await flock.publish_many([Task(text=f"t{i}") for i in range(50)])
        with pytest.raises(ProviderConfigError):
            await flock.run_until_idle()
        assert await flock.store.get_by_type(WorkflowError) == []
        assert await flock.store.get_by_type(Summary) == []
        refused = len(server.requests)
        assert refused <= 32  # at most the activations already running when the first 401 came back
        server.always(None)  # the key is fixed
        summary = await flock.run_until_idle(raise_on_error=True)
    assert len(await flock.store.get_by_type(Summary)) == 50
    assert summary.usage["openai/test-model"].calls == 50
    assert len(server.requests) == refused + 50


async def test_a_missing_api_key_says_which_variable_to_set_and_keeps_the_input(
    server: OpenAIServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    flock = Flock("openai/gpt-4.1", lm_kwargs={"api_base": server.base_url})  # no api_key anywhere
    flock.agent("a").consumes(Task).publishes(Summary)
    await flock.publish(Task(text="bees"))
    with pytest.raises(ProviderConfigError) as caught:
        await flock.run_until_idle()
    assert str(caught.value).startswith(
        "model 'openai/gpt-4.1' has no API key: set OPENAI_API_KEY in the environment, or pass the key "
        "as Flock('openai/gpt-4.1', lm_kwargs={'api_key': ...})"
    )
    assert "dspy.LM" not in str(caught.value)  # Flock users do not build dspy.LM themselves
    assert server.requests == []  # refused before any request was sent
    monkeypatch.setenv("OPENAI_API_KEY", "test-key-0123456789")  # fixed: the queued input runs
    with dspy.context(callbacks=[server.recorder]):
        summary = await flock.run_until_idle(raise_on_error=True)
    assert summary.activations == 1 and len(await flock.store.get_by_type(Summary)) == 1


async def test_flock_wide_secrets_are_scrubbed_too(server: OpenAIServer) -> None:
    echo = {"error": {"message": f"bad header {SECRET}", "type": "server_error"}}  # a 500: recorded
    server.always(Reply(status=500, body=echo))
    flock = Flock(lm_kwargs={"extra_headers": {"X-Api-Key": SECRET}})
    engine = engine_for(server, retries=0)
    flock.agent("a").consumes(Task).publishes(Summary).with_engines(engine)
    with dspy.context(callbacks=[server.recorder]):
        await flock.publish(Task(text="bees"))
        await flock.run_until_idle()
    errors = await flock.store.get_by_type(WorkflowError)
    assert errors and SECRET not in errors[0].message and "[REDACTED]" in errors[0].message


async def test_a_blocking_sync_tool_cannot_hold_up_the_run_deadline() -> None:
    release = threading.Event()

    def wait_forever(query: str) -> str:
        """A tool that never returns (until the test ends)."""
        release.wait(30)
        return "late"

    calls = iter(
        [{"next_thought": "look", "next_tool_name": "wait_forever", "next_tool_args": {"query": "q"}}]
    )
    model = FunctionModel(lambda call: next(calls, None) or call.default())
    flock = Flock()
    flock.agent("a").consumes(Task).publishes(Summary).with_tools(wait_forever).with_engines(
        DSPyEngine(model)
    )
    await flock.publish(Task(text="bees"))
    start = time.monotonic()
    try:
        from flock import RunTimeout

        with pytest.raises(RunTimeout):
            await flock.run_until_idle(timeout=1)
        assert time.monotonic() - start < 2.0
    finally:
        release.set()


async def test_a_tool_deadline_tells_the_model_and_the_run_goes_on() -> None:
    release = threading.Event()

    def slow(query: str) -> str:
        """A tool slower than its deadline."""
        release.wait(30)
        return "late"

    seen: list[str] = []

    def answer(call: Any) -> Any:
        seen.append(str(call.messages))
        if len(seen) == 1:
            return {"next_thought": "look", "next_tool_name": "slow", "next_tool_args": {"query": "q"}}
        return call.default()

    flock = Flock()
    engine = DSPyEngine(FunctionModel(answer), tool_timeout=0.3)
    flock.agent("a").consumes(Task).publishes(Summary).with_tools(slow).with_engines(engine)
    await flock.publish(Task(text="bees"))
    start = time.monotonic()
    try:
        await flock.run_until_idle(raise_on_error=True)
    finally:
        release.set()
    assert time.monotonic() - start < 3.0
    assert len(await flock.store.get_by_type(Summary)) == 1
    assert any("did not return within 0.3 s" in text for text in seen[1:])
