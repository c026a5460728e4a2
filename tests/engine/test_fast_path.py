"""The fast path kept for every user: local servers through the environment, unknown model names,
no network but the provider, typos caught at declaration, as many calls in flight as allowed."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import dspy
import pytest
from engine_support import Summary, Task
from openai_server import OpenAIServer

from flock import ConfigurationError, DSPyEngine, Flock

pytestmark = pytest.mark.anyio
ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize(
    ("name", "suggestion"),
    [("offlin", "'offline'"), ("gpt4o", "'gpt-4o'"), ("opnai/gpt-4.1", "'openai/gpt-4.1'")],
)
def test_a_misspelt_model_fails_at_declaration_with_a_suggestion(name: str, suggestion: str) -> None:
    with pytest.raises(ConfigurationError, match=r"(?i)did you mean") as caught:
        Flock(name)
    assert suggestion in str(caught.value)
    with pytest.raises(ConfigurationError, match=r"(?i)did you mean"):
        DSPyEngine(name)


@pytest.mark.parametrize("name", ["", "openai/", "/gpt-4.1", " offline", "open ai/gpt-4.1"])
def test_malformed_model_names_fail_at_declaration(name: str) -> None:
    with pytest.raises(ConfigurationError):
        DSPyEngine(name)
    if name:
        with pytest.raises(ConfigurationError):
            Flock(name)


@pytest.mark.parametrize(
    "name", ["offline", "openai/my-local-model", "hosted_vllm/llama-3", "gpt-4.1", "my-gateway/some-model"]
)
def test_valid_names_including_models_no_price_table_knows(name: str) -> None:
    assert Flock(name).model == name
    assert DSPyEngine(name).model == name


def test_a_misspelt_model_in_the_environment_names_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FLOCK_MODEL", "offlne")
    with pytest.raises(ConfigurationError, match=r"FLOCK_MODEL='offlne'.*(?i:did you mean) 'offline'"):
        Flock()


async def test_the_connection_pool_is_sized_to_the_concurrency() -> None:
    """DSPy's native client holds 100 connections; 150 concurrent activations all reach the server."""
    with OpenAIServer(latency=0.5) as server:
        flock = Flock(
            "openai/pool-model",
            max_concurrency=150,
            lm_kwargs={"api_base": server.base_url, "api_key": "k"},
        )
        flock.agent("a").consumes(Task).publishes(Summary).max_concurrency(150)
        with dspy.context(callbacks=[server.recorder]):
            await flock.publish_many([Task(text=f"t{i}") for i in range(150)])
            summary = await flock.run_until_idle()
    assert summary.ok and len(server.requests) == 150
    assert server.max_in_flight == 150


# One process per scenario: the LiteLLM import, DSPy's model table and the environment are per process.
SCENARIO = """
import asyncio, json, os, sys
from dspy.clients import model_metadata
from pydantic import BaseModel
from flock import DSPyEngine, Flock, flock_type

@flock_type
class Question(BaseModel):
    text: str

@flock_type
class Answer(BaseModel):
    text: str

async def main():
    flock = Flock(sys.argv[1], lm_kwargs=json.loads(sys.argv[2]))
    flock.agent("a").consumes(Question).publishes(Answer)
    await flock.publish(Question(text="hi"))
    summary = await flock.run_until_idle()
    print(json.dumps({
        "ok": summary.ok,
        "errors": [e.message for e in summary.errors],
        "litellm": "litellm" in sys.modules,
        "table": model_metadata._source.get("source"),
        "table_reason": model_metadata._source.get("fallback_reason"),
        "env_cost_map": os.environ.get("LITELLM_LOCAL_MODEL_COST_MAP"),
    }))

asyncio.run(main())
"""

ANSWER = '[[ ## answer ## ]]\n{"text": "hello"}\n\n[[ ## completed ## ]]'


def _scenario(model: str, lm_kwargs: dict[str, str], env: dict[str, str]) -> dict[str, object]:
    base = {
        k: v
        for k, v in os.environ.items()
        if k not in ("LITELLM_LOCAL_MODEL_COST_MAP", "OPENAI_API_BASE", "OPENAI_BASE_URL", "OPENAI_API_KEY")
        and not k.startswith("PYTEST")
    }
    done = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(SCENARIO), model, json.dumps(lm_kwargs)],
        env={**base, **env},
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("variable", ["OPENAI_API_BASE", "OPENAI_BASE_URL"])
def test_a_base_url_from_the_environment_stays_on_the_fast_client(variable: str) -> None:
    with OpenAIServer() as server:
        server.always(ANSWER)
        got = _scenario("openai/my-local-model", {}, {variable: server.base_url, "OPENAI_API_KEY": "k"})
        assert len(server.requests) == 1  # the environment's server answered
    assert got["ok"], got["errors"]
    assert got["litellm"] is False  # DSPy's own client, not LiteLLM


def test_no_price_table_download_and_the_environment_is_left_alone() -> None:
    with OpenAIServer() as server:
        server.always(ANSWER)
        got = _scenario("openai/gpt-4o-mini", {"api_base": server.base_url, "api_key": "k"}, {})
    assert got["ok"], got["errors"]
    assert got["table"] == "local" and "no download" in str(got["table_reason"])
    assert got["env_cost_map"] is None  # Flock did not set the variable


LOOKUPS = """
import asyncio, json, sys
from collections import Counter
from dspy.clients import capabilities, costs, model_metadata
from pydantic import BaseModel
from flock import Flock, flock_type

scans = Counter()
original = model_metadata.model_info

def counting(provider, model, *, namespaces=None):
    scans[(provider, model)] += 1
    return original(provider, model, namespaces=namespaces)

for module in (model_metadata, costs, capabilities):
    module.model_info = counting

@flock_type
class Question(BaseModel):
    text: str

@flock_type
class Answer(BaseModel):
    text: str

async def main():
    flock = Flock(sys.argv[1], lm_kwargs={"api_base": sys.argv[2], "api_key": "k"})
    flock.agent("a").consumes(Question).publishes(Answer)
    await flock.publish_many([Question(text=str(i)) for i in range(6)])
    summary = await flock.run_until_idle()
    calls = summary.latency[sys.argv[1]].calls
    print(json.dumps({"ok": summary.ok, "calls": calls, "scans": sum(scans.values()), "names": len(scans)}))

asyncio.run(main())
"""


def test_model_metadata_is_looked_up_once_per_model_name() -> None:
    with OpenAIServer() as server:
        server.always(ANSWER)
        done = subprocess.run(
            [sys.executable, "-c", textwrap.dedent(LOOKUPS), "openai/my-local-model", server.base_url],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=120,
        )
    assert done.returncode == 0, done.stderr
    got = json.loads(done.stdout.strip().splitlines()[-1])
    assert got["ok"] and got["calls"] == 6
    assert got["scans"] == got["names"] <= 2  # DSPy asked 3 times per call: 18 scans without the cache


def test_an_engine_shared_by_flocks_keeps_one_model_per_settings() -> None:
    engine = DSPyEngine("openai/shared-model")
    first, second = Flock(max_concurrency=8), Flock(max_concurrency=300)
    lm = engine.lm_for(first.model, first.settings.lm_kwargs, concurrency=8)
    assert engine.lm_for(second.model, second.settings.lm_kwargs, concurrency=300) is lm  # no churn
    assert lm._engine_store.size == 300  # the pool grows to the larger Flock's concurrency
    own = Flock(lm_kwargs={"api_base": "http://127.0.0.1:9/v1"})
    assert engine.lm_for(own.model, own.settings.lm_kwargs).kwargs["api_base"] == "http://127.0.0.1:9/v1"
