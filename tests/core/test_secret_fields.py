"""Secret fields in artifact types are refused where the type is declared: an artifact is stored,
shown to other agents and traced, and a pydantic secret would reach its consumer as '**********'."""

from __future__ import annotations

from typing import Annotated

import pytest
from pydantic import BaseModel, Field, Secret, SecretBytes, SecretStr

from flock import ConfigurationError, Flock, flock_type


@flock_type(name="secrets.Ask")
class Ask(BaseModel):
    question: str


def test_a_secret_str_field_is_refused_at_flock_type_with_what_to_do() -> None:
    with pytest.raises(ConfigurationError) as refused:

        @flock_type
        class Login(BaseModel):
            user: str
            api_key: SecretStr

    message = str(refused.value)
    assert "Login.api_key is a SecretStr" in message
    assert "'**********'" in message and "environment" in message and "plain str field" in message


class Vault(BaseModel):
    tokens: list[SecretBytes] = []


class Account(BaseModel):
    name: str
    vault: Vault | None = None


@pytest.mark.parametrize(
    ("annotation", "path", "kind"),
    [
        (SecretStr | None, "Holder.value", "SecretStr"),
        (list[SecretBytes], "Holder.value", "SecretBytes"),
        (dict[str, Secret[int]], "Holder.value", "Secret"),
        (Annotated[SecretStr, Field(min_length=3)], "Holder.value", "SecretStr"),
        (list[Account], "Holder.value.vault.tokens", "SecretBytes"),  # nested models are searched
    ],
)
def test_secrets_inside_containers_and_nested_models_are_found(
    annotation: object, path: str, kind: str
) -> None:
    holder = type("Holder", (BaseModel,), {"__annotations__": {"value": annotation}})
    with pytest.raises(ConfigurationError, match=f"{path} is a {kind}"):
        flock_type(holder)


def test_an_undecorated_model_with_a_secret_is_refused_when_an_agent_declares_it() -> None:
    class Token(BaseModel):
        secret: SecretStr

    flock = Flock()
    with pytest.raises(ConfigurationError, match=r"Token\.secret is a SecretStr"):
        flock.agent("minter").consumes(Ask).publishes(Token)


def test_models_without_secrets_and_recursive_models_are_fine() -> None:
    @flock_type
    class Folder(BaseModel):
        name: str
        password_hint: str = ""
        children: list[Folder] = []

    assert Folder.__flock_type_name__ == "Folder"  # type: ignore[attr-defined]


@pytest.mark.anyio
async def test_a_secret_in_an_error_message_does_not_reach_the_board(monkeypatch: pytest.MonkeyPatch) -> None:
    # A function agent's exception echoes a key (an HTTP client's error with the URL, say): the
    # WorkflowError on the board, the run summary and the log line carry it redacted.
    import logging

    from pydantic import BaseModel

    from flock import Flock

    secret = "pk-live-4f9a8b7c6d5e4f3a2b1c"
    monkeypatch.setenv("BILLING_API_KEY", secret)

    class Invoice(BaseModel):
        amount: int

    def charge(invoice: Invoice) -> None:
        raise RuntimeError(f"POST https://billing.example/charge?key={secret} answered 401")

    flock = Flock()
    flock.agent("biller").consumes(Invoice).calls(charge)
    records: list[logging.LogRecord] = []
    handler = logging.Handler()
    handler.emit = records.append  # type: ignore[method-assign]
    logging.getLogger("flock").addHandler(handler)
    try:
        await flock.publish(Invoice(amount=5))
        summary = await flock.run_until_idle()
    finally:
        logging.getLogger("flock").removeHandler(handler)
    [error] = summary.errors
    assert secret not in error.message and "answered 401" in error.message
    assert all(secret not in str(a.payload) for a in await flock.store.list())
    assert records and all(secret not in r.getMessage() for r in records)
