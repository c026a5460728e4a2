"""Answering a human task on the dashboard, in real headless Chromium against a real server: the
form comes from the task's output schema, a wrong answer shows its errors at the fields and leaves
the task open, a right one publishes the agent's output (seen live)."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, Literal

import httpx
import pytest
from cdp import CHROMIUM, Browser, Page
from pydantic import BaseModel, Field

from flock import ApiKeys, Flock, Principal, flock_type

pytestmark = pytest.mark.skipif(
    CHROMIUM is None, reason="Debian's `chromium` is not installed (apt-get install -y chromium)"
)
READY = "document.documentElement.dataset.ready === 'true'"


@flock_type
class Refund(BaseModel):
    order: str
    amount: float


@flock_type
class RefundDecision(BaseModel):
    approved: bool
    reason: str = Field(min_length=5, description="shown to the customer")
    amount: float = Field(ge=0, le=500)
    channel: Literal["card", "voucher"] = "card"


AUTH = ApiKeys(
    {
        "key-clerk-acme": Principal(tenant="acme", scopes={"publish", "read", "answer"}),
        "key-viewer-acme": Principal(tenant="acme", scopes={"read"}),
        "key-clerk-other": Principal(tenant="other", scopes={"publish", "read", "answer"}),
    }
)


def desk() -> Flock:
    flock = Flock()
    flock.agent("approver").tenant("acme").consumes(Refund).publishes(RefundDecision).human(
        prompt="Refund this order?"
    )
    return flock


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[Browser]:
    with Browser(tmp_path) as running:
        yield running


def log_in(page: Page, url: str, key: str) -> None:
    page.navigate(f"{url}/")
    page.evaluate(f"document.getElementById('key').value = {json.dumps(key)}")
    page.evaluate("document.getElementById('login').submit()")
    page.wait_for(READY)


def fill(page: Page, field: str, value: object) -> None:
    """Type into the open task's field (a checkbox takes a bool)."""
    selector = json.dumps(f'#tasks .field[data-field="{field}"] :is(input, textarea, select)')
    prop = "checked" if isinstance(value, bool) else "value"
    page.evaluate(f"document.querySelector({selector}).{prop} = {json.dumps(value)}")


def field_error(page: Page, field: str) -> str:
    return page.evaluate(
        f"document.querySelector('#tasks .field[data-field=\"{field}\"] .ferror').textContent"
    )


def test_a_task_is_answered_from_its_form(serve: Callable[..., Any], browser: Browser) -> None:
    served = serve(flock=desk(), auth=AUTH, probe="key-clerk-acme")
    with httpx.Client(base_url=served.url, headers={"Authorization": "Bearer key-clerk-acme"}) as acme:
        assert (
            acme.post(
                "/artifacts", json={"type": "Refund", "payload": {"order": "A-17", "amount": 42.5}}
            ).status_code
            == 201
        )
    page = browser.page()
    log_in(page, served.url, "key-clerk-acme")
    page.wait_for("document.querySelectorAll('#tasks form.task-form').length === 1")
    assert page.evaluate("document.querySelector('#tasks .prompt').textContent") == "Refund this order?"
    assert '"order": "A-17"' in page.evaluate("document.querySelector('#tasks .tinput pre').textContent")
    assert page.evaluate("document.getElementById('tasks-count').textContent") == "1"
    page.wait_for("document.querySelector('#runs tr.run .pill').textContent === 'waiting'")
    # the form follows the schema: a checkbox, a text box, a number with its bounds, a choice
    kinds = page.evaluate(
        "Array.from(document.querySelectorAll('#tasks .field')).map(f => [f.dataset.field,"
        " f.querySelector('input,textarea,select').tagName.toLowerCase(),"
        " f.querySelector('input,textarea,select').type])"
    )
    assert kinds == [
        ["approved", "input", "checkbox"],
        ["reason", "textarea", "textarea"],
        ["amount", "input", "number"],
        ["channel", "select", "select-one"],
    ]
    assert page.evaluate("document.querySelector('#tasks .field[data-field=\"amount\"] input').max") == "500"
    assert page.evaluate(
        "Array.from(document.querySelectorAll('#tasks .field[data-field=\"channel\"] option'))"
        ".map(o => o.textContent)"
    ) == ["card", "voucher"]

    # a wrong answer: the server's errors appear at their fields, the task stays open
    fill(page, "approved", True)
    fill(page, "reason", "ok")
    fill(page, "amount", "900")
    page.evaluate("document.querySelector('#tasks form.task-form button[type=submit]').click()")
    page.wait_for("document.querySelector('#tasks .field[data-field=\"reason\"] .ferror').textContent")
    assert "at least 5 characters" in field_error(page, "reason")
    assert "less than or equal to 500" in field_error(page, "amount")
    with httpx.Client(base_url=served.url, headers={"Authorization": "Bearer key-clerk-acme"}) as acme:
        assert acme.get("/tasks").json()["total"] == 1

    # the right answer: published as the agent's output, which appears live on the board
    fill(page, "reason", "damaged in transit")
    fill(page, "amount", "42.5")
    page.evaluate(
        "var s = document.querySelector('#tasks .field[data-field=\"channel\"] select');"
        "s.value = s.options[1].value"
    )
    page.evaluate("document.querySelector('#tasks form.task-form button[type=submit]').click()")
    page.wait_for("!!document.querySelector('#tasks .answered')")
    assert page.evaluate("document.querySelector('#tasks .answered').textContent").startswith(
        "Answered: published RefundDecision "
    )
    page.wait_for("!!document.querySelector('#artifacts .artifact[data-type=\"RefundDecision\"]')")
    decision = json.loads(
        page.evaluate(
            "document.querySelector('#artifacts .artifact[data-type=\"RefundDecision\"] pre').textContent"
        )
    )
    assert decision == {
        "approved": True,
        "reason": "damaged in transit",
        "amount": 42.5,
        "channel": "voucher",
    }
    page.wait_for("document.querySelector('#tasks').textContent.includes('No open tasks.')")
    page.wait_for("document.querySelector('#runs tr.run .pill').textContent === 'done'")
    with httpx.Client(base_url=served.url, headers={"Authorization": "Bearer key-clerk-acme"}) as acme:
        assert acme.get("/tasks").json()["total"] == 0


def test_without_answer_scope_the_form_is_disabled_and_other_tenants_see_nothing(
    serve: Callable[..., Any], browser: Browser
) -> None:
    served = serve(flock=desk(), auth=AUTH, probe="key-clerk-acme")
    with httpx.Client(base_url=served.url, headers={"Authorization": "Bearer key-clerk-acme"}) as acme:
        acme.post("/artifacts", json={"type": "Refund", "payload": {"order": "B-2", "amount": 10}})
    page = browser.page()
    log_in(page, served.url, "key-viewer-acme")
    page.wait_for("document.querySelectorAll('#tasks form.task-form').length === 1")
    assert page.evaluate("document.querySelector('#tasks form.task-form button[type=submit]').disabled")
    assert page.evaluate(
        "Array.from(document.querySelectorAll('#tasks form.task-form input, #tasks form.task-form textarea'))"
        ".every(i => i.disabled)"
    )
    assert "lacks the answer scope" in page.evaluate(
        "document.querySelector('#tasks form.task-form').textContent"
    )
    page.evaluate("document.getElementById('logout').click()")
    page.wait_for("document.title === 'Flock · log in'")
    log_in(page, served.url, "key-clerk-other")
    page.wait_for("document.querySelector('#tasks').textContent.includes('No open tasks.')")
    assert "B-2" not in page.evaluate("document.body.textContent")
