"""Flock's metric instruments: names, units and GenAI attributes through the global meter provider."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from metric_support import count, metric_points, total

from flock._tracing import metrics as _metrics


def test_operation_duration_and_token_usage_carry_genai_attributes(metric_reader) -> None:
    _metrics.record_operation("openai/m-duration", 0.25, input_tokens=120, output_tokens=30)
    points = metric_points(
        metric_reader, "gen_ai.client.operation.duration", **{"gen_ai.request.model": "m-duration"}
    )
    assert len(points) == 1
    attrs = dict(points[0].attributes)
    assert attrs == {
        "gen_ai.operation.name": "chat",
        "gen_ai.provider.name": "openai",
        "gen_ai.system": "openai",
        "gen_ai.request.model": "m-duration",
    }
    assert points[0].count == 1 and points[0].sum == 0.25
    tokens = {
        p.attributes["gen_ai.token.type"]: p.sum
        for p in metric_points(
            metric_reader, "gen_ai.client.token.usage", **{"gen_ai.request.model": "m-duration"}
        )
    }
    assert tokens == {"input": 120, "output": 30}


def test_a_failed_call_names_its_error_type(metric_reader) -> None:
    _metrics.record_operation("openai/m-failing", 1.5, error_type="ProviderTimeout")
    failed = metric_points(
        metric_reader, "gen_ai.client.operation.duration", **{"gen_ai.request.model": "m-failing"}
    )
    assert [p.attributes.get("error.type") for p in failed] == ["ProviderTimeout"]
    assert (
        metric_points(metric_reader, "gen_ai.client.token.usage", **{"gen_ai.request.model": "m-failing"})
        == []
    )


def test_flock_counters(metric_reader) -> None:
    model = {"gen_ai.request.model": "m-counters"}
    _metrics.record_retry("openai/m-counters", "RateLimited")
    _metrics.record_retry("openai/m-counters", "RateLimited")
    _metrics.record_reask("openai/m-counters", "writer")
    _metrics.record_breaker_transition("openai/m-counters", "open")
    _metrics.record_breaker_transition("openai/m-counters", "half_open")
    _metrics.record_rate_limit_wait("openai/m-counters", 0.5)
    _metrics.record_fallback("openai/m-counters", "openai/m-backup")
    assert total(metric_reader, "flock.model.retries", **model, **{"error.type": "RateLimited"}) == 2
    assert total(metric_reader, "flock.contract.reasks", **model, **{"flock.agent": "writer"}) == 1
    assert total(metric_reader, "flock.breaker.transitions", **model, **{"flock.breaker.state": "open"}) == 1
    assert total(metric_reader, "flock.breaker.transitions", **model) == 2
    assert total(metric_reader, "flock.rate_limit.waits", **model) == 1
    assert count(metric_reader, "flock.rate_limit.wait.duration", **model) == 1
    assert total(metric_reader, "flock.rate_limit.wait.duration", **model) == 0.5
    assert (
        total(metric_reader, "flock.model.fallbacks", **model, **{"flock.fallback.model": "openai/m-backup"})
        == 1
    )


def test_builtin_models_belong_to_provider_flock(metric_reader) -> None:
    _metrics.record_operation("offline", 0.001)
    points = metric_points(
        metric_reader, "gen_ai.client.operation.duration", **{"gen_ai.request.model": "offline"}
    )
    assert points and points[0].attributes["gen_ai.provider.name"] == "flock"


PROBE = """
import json, sys
from flock._tracing import metrics as _metrics
before = set(sys.modules)
for _ in range(3):
    _metrics.record_operation("openai/x", 0.1, input_tokens=1, output_tokens=2)
    _metrics.record_retry("openai/x")
    _metrics.record_reask("openai/x", "a")
    _metrics.record_breaker_transition("openai/x", "open")
    _metrics.record_rate_limit_wait("openai/x", 0.1)
    _metrics.record_fallback("openai/x", "openai/y")
sdk = sorted(m for m in set(sys.modules) - before if m.startswith("opentelemetry.sdk"))
print(json.dumps({"on": _metrics.metrics_on(), "made": _metrics._instruments is not None, "sdk": sdk}))
"""


def test_without_a_meter_provider_nothing_is_made_or_imported() -> None:
    env = {k: v for k, v in os.environ.items() if k != "OTEL_PYTHON_METER_PROVIDER"}
    result = subprocess.run(
        [sys.executable, "-c", PROBE], env=env, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == {"on": False, "made": False, "sdk": []}
