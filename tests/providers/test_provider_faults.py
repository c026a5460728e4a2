"""Fault injection against a real OpenAI-protocol server on 127.0.0.1: what a bad provider costs.

Every scenario sends real HTTP through DSPy's adapter path and the engine's guarded model view.
"""

from __future__ import annotations

import time
from typing import Any

import anyio
import dspy
import pytest
from engine_support import Summary, Task, evaluate, spec
from openai_server import OpenAIServer, Reply

from flock import (
    CircuitBreaker,
    DSPyEngine,
    ProviderConfigError,
    ProviderError,
    ProviderTimeout,
    ProviderUnavailable,
    RateLimited,
    RunHalted,
)
from flock._providers.budget import ModelUsage

pytestmark = pytest.mark.anyio

AGENT = spec(Task, publishes=((Summary, None),))


def engine_for(server: OpenAIServer, **kwargs: Any) -> DSPyEngine:
    lm_kwargs = {"api_base": server.base_url, "api_key": "test-key-0123456789"}
    return DSPyEngine("openai/test-model", lm_kwargs=lm_kwargs, **kwargs)


async def run(server: OpenAIServer, engine: DSPyEngine) -> Any:
    with dspy.context(callbacks=[server.recorder]):
        return await evaluate(engine, AGENT, Task(text="bees"))


def usage(engine: DSPyEngine, model: str = "openai/test-model") -> ModelUsage:
    found = engine._own_state["usage"][model]
    assert isinstance(found, ModelUsage)
    return found


async def test_a_429_with_retry_after_waits_as_asked_then_answers(server: OpenAIServer) -> None:
    server.script(Reply(status=429, headers={"Retry-After": "0.4"}))
    engine = engine_for(server, retries=2)
    result = await run(server, engine)
    assert isinstance(result.outputs[0], Summary)
    assert len(server.requests) == 2
    assert server.arrivals[1] - server.arrivals[0] >= 0.38
    assert usage(engine).retries == 1 and usage(engine).calls == 1 and usage(engine).failures == 1


async def test_a_429_without_retry_after_backs_off_and_answers(server: OpenAIServer) -> None:
    server.script(Reply(status=429), Reply(status=429))
    engine = engine_for(server, retries=3)
    result = await run(server, engine)
    assert result.outputs and len(server.requests) == 3
    assert usage(engine).retries == 2


async def test_429s_past_the_retries_raise_rate_limited(server: OpenAIServer) -> None:
    server.always(Reply(status=429, headers={"Retry-After": "0.05"}))
    with pytest.raises(RateLimited, match=r"HTTP 429.*RateLimit"):
        await run(server, engine_for(server, retries=2))
    assert len(server.requests) == 3


@pytest.mark.parametrize("status", [500, 502, 503])
async def test_a_burst_of_5xx_is_retried(server: OpenAIServer, status: int) -> None:
    server.script(*[Reply(status=status)] * 3)
    engine = engine_for(server, retries=3)
    assert (await run(server, engine)).outputs
    assert len(server.requests) == 4 and usage(engine).retries == 3


async def test_5xx_past_the_retries_raise_provider_unavailable(server: OpenAIServer) -> None:
    server.always(Reply(status=503))
    with pytest.raises(ProviderUnavailable, match="fallbacks="):
        await run(server, engine_for(server, retries=1))
    assert len(server.requests) == 2


async def test_a_connection_reset_is_retried(server: OpenAIServer) -> None:
    server.script(Reply(fault="reset"), Reply(fault="reset"))
    assert (await run(server, engine_for(server, retries=2))).outputs
    assert len(server.requests) == 3


async def test_a_malformed_reply_is_retried(server: OpenAIServer) -> None:
    server.script(Reply(fault="malformed"))
    assert (await run(server, engine_for(server, retries=1))).outputs
    assert len(server.requests) == 2


async def test_a_dripping_reply_cannot_extend_the_deadline(server: OpenAIServer) -> None:
    server.always(Reply(fault="drip", interval=0.2))  # a byte every 0.2 s: no read ever times out
    start = time.monotonic()
    with pytest.raises(ProviderTimeout, match=r"deadline of 1\.0 s"):
        await run(server, engine_for(server, retries=0, timeout=1.0))
    assert time.monotonic() - start < 2.5


async def test_a_hanging_provider_times_out_and_is_retried(server: OpenAIServer) -> None:
    server.script(Reply(fault="hang"))
    start = time.monotonic()
    result = await run(server, engine_for(server, retries=1, timeout=0.5))
    assert result.outputs and len(server.requests) == 2
    assert time.monotonic() - start < 2.5


@pytest.mark.parametrize("status", [401, 403, 404])
async def test_configuration_errors_fail_fast_without_retries(server: OpenAIServer, status: int) -> None:
    server.always(Reply(status=status))
    with pytest.raises(ProviderConfigError, match="API key") as caught:
        await run(server, engine_for(server, retries=3, fallbacks=("openai/other",)))
    assert isinstance(caught.value, RunHalted)
    assert len(server.requests) == 1  # no retry, no fallback: retrying cannot fix a configuration


async def test_a_bad_request_is_a_provider_error_not_retried(server: OpenAIServer) -> None:
    server.always(Reply(status=400))
    with pytest.raises(ProviderError) as caught:
        await run(server, engine_for(server, retries=3))
    assert type(caught.value) is ProviderError and len(server.requests) == 1


async def test_a_provider_down_for_a_while_is_waited_out(server: OpenAIServer) -> None:
    server.outage(1.0)
    start = time.monotonic()
    result = await run(server, engine_for(server, retries=6))
    assert result.outputs
    assert time.monotonic() - start >= 1.0
    assert server.arrivals[-1] - server.arrivals[0] >= 1.0


async def test_the_breaker_opens_fails_fast_and_closes_after_a_probe(server: OpenAIServer) -> None:
    server.always(Reply(status=503))
    engine = engine_for(server, retries=0, breaker=CircuitBreaker(failures=2, reset_after=0.5))
    for _ in range(2):
        with pytest.raises(ProviderUnavailable, match="is unavailable"):
            await run(server, engine)
    with pytest.raises(ProviderUnavailable, match=r"circuit breaker .* is open"):
        await run(server, engine)
    assert len(server.requests) == 2  # the third call never reached the provider
    server.always(None)
    await anyio.sleep(0.55)
    assert (await run(server, engine)).outputs  # the half-open probe succeeds: closed again
    assert (await run(server, engine)).outputs
    assert len(server.requests) == 4


async def test_a_failed_probe_opens_the_breaker_again(server: OpenAIServer) -> None:
    server.always(Reply(status=503))
    engine = engine_for(server, retries=0, breaker=CircuitBreaker(failures=1, reset_after=0.3))
    with pytest.raises(ProviderUnavailable):
        await run(server, engine)
    await anyio.sleep(0.35)
    with pytest.raises(ProviderUnavailable, match="is unavailable"):
        await run(server, engine)  # the probe went out and failed
    with pytest.raises(ProviderUnavailable, match="circuit breaker"):
        await run(server, engine)
    assert len(server.requests) == 2


async def test_a_fallback_answers_when_the_model_is_down(server: OpenAIServer, backup: OpenAIServer) -> None:
    server.always(Reply(status=503))
    fallback = backup.lm("backup-model")
    engine = engine_for(server, retries=1, fallbacks=(fallback,))
    with dspy.context(callbacks=[server.recorder, backup.recorder]):
        result = await evaluate(engine, AGENT, Task(text="bees"))
    assert result.outputs and len(server.requests) == 2 and len(backup.requests) == 1
    assert result.trace["model"] == "openai/backup-model"
    assert result.trace["fallback_from"] == "openai/test-model"
    assert "model:openai/backup-model" in result.tags
    assert usage(engine, "openai/backup-model").fallbacks == 1
    assert usage(engine).failures == 2 and usage(engine).calls == 0


async def test_a_fallback_answers_when_the_model_is_too_slow(
    server: OpenAIServer, backup: OpenAIServer
) -> None:
    server.always(Reply(fault="hang"))
    engine = engine_for(server, retries=0, timeout=0.5, fallbacks=(backup.lm("backup-model"),))
    with dspy.context(callbacks=[server.recorder, backup.recorder]):
        result = await evaluate(engine, AGENT, Task(text="bees"))
    assert result.outputs and result.trace["model"] == "openai/backup-model"


async def test_an_open_breaker_sends_calls_to_the_fallback_at_once(
    server: OpenAIServer, backup: OpenAIServer
) -> None:
    server.always(Reply(status=503))
    engine = engine_for(
        server, retries=0, breaker=CircuitBreaker(failures=1, reset_after=60), fallbacks=(backup.lm("b"),)
    )
    with dspy.context(callbacks=[server.recorder, backup.recorder]):
        for _ in range(3):
            assert (await evaluate(engine, AGENT, Task(text="bees"))).outputs
    assert len(server.requests) == 1 and len(backup.requests) == 3
