"""Secrets never reach the trace store: not from exception messages, attributes or captured content."""

from __future__ import annotations

from pathlib import Path

import pytest
from trace_support import FAKE_KEY, Recorder, record_run

from flock._tracing.redact import REDACTED, Redactor, environment_secrets, secret_name
from flock._tracing.trace_query import TraceStore
from flock._tracing.trace_store import SQLiteSpanExporter

ENV_KEY = "anthropic-style-opaque-key-0123456789"  # no recognisable shape: only the environment gives it away


def stored_bytes(db: Path) -> bytes:
    return b"".join(p.read_bytes() for p in sorted(db.parent.glob(db.name + "*")))


@pytest.mark.parametrize("capture_content", [False, True])
def test_fake_api_key_never_reaches_the_store(
    db: Path, monkeypatch: pytest.MonkeyPatch, capture_content: bool
) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", FAKE_KEY)
    monkeypatch.setenv("MY_PROVIDER_API_KEY", ENV_KEY)
    exporter = SQLiteSpanExporter(db)
    trace_id = record_run(exporter, capture_content=capture_content)
    rec = Recorder(exporter, t0=1_800_000_000 * 10**9)  # a later run than record_run's
    # the ways a key sneaks in: a user attribute named like a credential, a header, a prompt, an error
    with rec.span(
        "chat m",
        0,
        1,
        llm__api_key=FAKE_KEY,
        http__request__header__authorization=f"Bearer {FAKE_KEY}",
        gen_ai__input__messages=f'[{{"role": "user", "content": "my key is {ENV_KEY}"}}]',
        gen_ai__usage__input_tokens=12,
    ) as span:
        span.record_exception(ValueError(f"bad key {ENV_KEY}"))
    rec.provider.force_flush()
    exporter.shutdown()

    raw = stored_bytes(db)
    assert FAKE_KEY.encode() not in raw
    assert ENV_KEY.encode() not in raw
    assert FAKE_KEY[:12].encode() not in raw  # not even a prefix of it
    with TraceStore(db) as store:
        spans = {s.name: s for s in store.load(store.resolve("latest")).spans}
        run = store.load(trace_id)
    chat = spans["chat m"]
    assert chat.attributes["llm.api_key"] == REDACTED
    assert chat.attributes["http.request.header.authorization"] == REDACTED
    assert (
        chat.attributes["gen_ai.input.messages"] == f'[{{"role": "user", "content": "my key is {REDACTED}"}}]'
    )
    assert chat.attributes["gen_ai.usage.input_tokens"] == 12  # "tokens" is not a credential
    assert chat.events[0]["attributes"]["exception.message"] == f"bad key {REDACTED}"
    failed = next(s for s in run.spans if s.is_error and s.name.startswith("flock.evaluate"))
    assert failed.status_message == f"AuthenticationError: Incorrect API key provided: {REDACTED}"
    captured = [s for s in run.spans if "gen_ai.input.messages" in s.attributes]
    assert bool(captured) is capture_content


def test_redaction_can_be_switched_off_for_the_raw_exporter(db: Path) -> None:
    exporter = SQLiteSpanExporter(db, redact=False)
    record_run(exporter)
    exporter.shutdown()
    assert FAKE_KEY.encode() in stored_bytes(db)


@pytest.mark.parametrize(
    "name",
    [
        "api_key",
        "OPENAI_API_KEY",
        "llm.apikey",
        "authorization",
        "db.password",
        "client_secret",
        "x.access_token",
        "GH_TOKEN",
        "token",
    ],
)
def test_credential_names(name: str) -> None:
    assert secret_name(name)


@pytest.mark.parametrize(
    "name",
    [
        "gen_ai.usage.input_tokens",
        "gen_ai.usage.output_tokens",
        "gen_ai.request.max_tokens",
        "gen_ai.token.type",
        "flock.agent",
        "PATH",
    ],
)
def test_ordinary_names(name: str) -> None:
    assert not secret_name(name)


def test_known_shapes_and_environment_values() -> None:
    redactor = Redactor(secrets=("opaque-value-123",))
    text = (
        "sk-abcdefghijklmnop ghp_abcdefghijklmnopqrstuvwxyz0123 AKIAABCDEFGHIJKLMNOP "
        "Authorization: Bearer abc.def.ghijklmnop opaque-value-123 plain words sk-short"
    )
    assert redactor.text(text) == (
        f"{REDACTED} {REDACTED} {REDACTED} Authorization: {REDACTED} {REDACTED} plain words sk-short"
    )
    assert redactor.value(("a", "opaque-value-123")) == ("a", REDACTED)
    assert not redactor.needed({"flock.input.types": ("Idea", "Task"), "n": 3})


def test_environment_secrets_ignore_short_and_ordinary_values() -> None:
    env = {
        "OPENAI_API_KEY": "sk-123456789",
        "DEBUG_SECRET": "1",
        "PATH": "/usr/bin:/bin",
        "GH_TOKEN": "x" * 20,
    }
    assert environment_secrets(env) == ("x" * 20, "sk-123456789")
