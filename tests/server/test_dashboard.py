"""The dashboard at ``/`` and its login, over a real uvicorn server; the page runs in real headless
Chromium driven over the DevTools protocol (tests/cdp.py)."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from cdp import CHROMIUM, Browser, Page

needs_chromium = pytest.mark.skipif(
    CHROMIUM is None, reason="Debian's `chromium` is not installed (apt-get install -y chromium)"
)
READY = "document.documentElement.dataset.ready === 'true'"
NODES = "Array.from(document.querySelectorAll('#graph .node')).map(n => n.dataset.key)"


def publish(served: Any, key: str, title: str, priority: int = 3) -> dict:
    with served.client(key) as client:
        answer = client.post(
            "/artifacts", json={"type": "Ticket", "payload": {"title": title, "priority": priority}}
        )
    assert answer.status_code == 201, answer.text
    return answer.json()


# ------------------------------------------------------------------ HTTP: login page and session cookie
def test_root_without_a_credential_is_a_login_page_with_no_data(serve: Callable[..., Any]) -> None:
    served = serve()
    publish(served, "key-tenant-a", "secret roadmap")
    page = httpx.get(f"{served.url}/", headers={"Accept": "text/html,*/*"})
    assert page.status_code == 401
    assert page.headers["content-type"].startswith("text/html")
    assert '<form id="login" method="post" action="/login">' in page.text
    for data in ("secret roadmap", "Ticket", "triage"):
        assert data not in page.text
    # a client that does not ask for HTML gets the JSON 401, as on every other route
    plain = httpx.get(f"{served.url}/")
    assert plain.status_code == 401 and plain.json()["detail"].startswith("no API key")
    assert httpx.get(f"{served.url}/artifacts", headers={"Accept": "text/html"}).status_code == 401
    with served.client("key-tenant-a") as client:
        dashboard = client.get("/", headers={"Accept": "text/html"})
        assert dashboard.status_code == 200
        assert "<title>Flock dashboard</title>" in dashboard.text
        assert "script-src 'self'" in dashboard.headers["content-security-policy"]
        assert client.get("/static/dashboard.js").headers["content-type"].startswith("text/javascript")
        assert client.get("/static/../server.py").status_code == 404
        assert client.get("/static/nothing.js").status_code == 404
    with served.client("wrong-key-123") as client:
        assert client.get("/", headers={"Accept": "text/html"}).status_code == 401


def test_login_sets_a_strict_http_only_cookie_that_authenticates(serve: Callable[..., Any]) -> None:
    served = serve()
    with httpx.Client(base_url=served.url) as browser:
        wrong = browser.post("/login", data={"key": "not-a-known-key"})
        assert wrong.status_code == 401 and "That key is not known" in wrong.text
        assert "set-cookie" not in wrong.headers
        answer = browser.post("/login", data={"key": "key-tenant-a"})
        assert answer.status_code == 303 and answer.headers["location"] == "/"
        cookie = answer.headers["set-cookie"]
        assert cookie.startswith("flock_session=")
        assert "key-tenant-a" not in cookie  # a session token, not the key
        for flag in ("HttpOnly", "SameSite=Strict", "Path=/"):
            assert flag in cookie
        assert browser.get("/me").json() == {
            "tenant": "a",
            "scopes": ["publish", "read"],
            "name": None,
            "session": True,
        }
        body = {"type": "Ticket", "payload": {"title": "by cookie"}}
        assert browser.post("/artifacts", json=body).status_code == 201
        # a state change by cookie must be JSON or carry X-Flock-Request: a cross-site form cannot
        form = browser.post("/artifacts", content=json.dumps(body), headers={"Content-Type": "text/plain"})
        assert form.status_code == 403 and "X-Flock-Request" in form.json()["detail"]
        marked = browser.post(
            "/artifacts",
            content=json.dumps(body),
            headers={"Content-Type": "text/plain", "X-Flock-Request": "1"},
        )
        assert marked.status_code == 201
        titles = {a["payload"]["title"] for a in browser.get("/artifacts?type=Ticket").json()["items"]}
        assert titles == {"by cookie"}
        assert browser.post("/logout").status_code == 403  # no header: refused like any form post
        out = browser.post("/logout", headers={"X-Flock-Request": "1"})
        assert out.status_code == 204 and "Max-Age=0" in out.headers["set-cookie"]
        assert browser.get("/me").status_code == 401
    # the old token is dead on the server too, not only dropped by this client
    token = cookie.split(";", 1)[0].split("=", 1)[1]
    assert httpx.get(f"{served.url}/me", cookies={"flock_session": token}).status_code == 401


def test_login_from_another_site_is_refused(serve: Callable[..., Any]) -> None:
    served = serve()
    for headers in ({"Origin": "https://evil.example"}, {"Sec-Fetch-Site": "cross-site"}):
        answer = httpx.post(f"{served.url}/login", data={"key": "key-tenant-a"}, headers=headers)
        assert answer.status_code == 403 and "set-cookie" not in answer.headers
    # anyone may call /login, so it reads no more than a small body
    huge = httpx.post(f"{served.url}/login", content=b"key=" + b"x" * 100_000)
    assert huge.status_code == 413 and "set-cookie" not in huge.headers
    assert httpx.post(f"{served.url}/login", json={"key": 5}).status_code == 401
    same = httpx.post(f"{served.url}/login", json={"key": "key-tenant-a"}, headers={"Origin": served.url})
    assert same.status_code == 200 and same.json() == {"tenant": "a", "scopes": ["publish", "read"]}


# ------------------------------------------------------------------ Chromium
@pytest.fixture
def browser(tmp_path: Path) -> Iterator[Browser]:
    with Browser(tmp_path) as running:
        yield running


def log_in(page: Page, url: str, key: str) -> None:
    page.navigate(f"{url}/")
    assert page.evaluate("document.title") == "Flock · log in"
    page.evaluate(
        f"document.getElementById('key').value = {json.dumps(key)}; document.getElementById('login').submit()"
    )
    page.wait_for("document.title === 'Flock dashboard' || !!document.getElementById('login-error')")


def sub(node: str) -> str:
    """The JS expression of a graph node's count line."""
    return f"document.querySelector('#graph [data-key=\"{node}\"] .sub').textContent"


def texts(page: Page, selector: str) -> list[str]:
    return page.evaluate(
        f"Array.from(document.querySelectorAll({json.dumps(selector)})).map(e => e.textContent)"
    )


@needs_chromium
def test_dashboard_in_chromium_logs_in_and_follows_the_board_live(
    serve: Callable[..., Any], browser: Browser
) -> None:
    served = serve()
    publish(served, "key-tenant-a", "printer on fire", priority=1)
    publish(served, "key-tenant-b", "tenant b private")
    page = browser.page()

    log_in(page, served.url, "wrong-key-for-sure")
    assert (
        page.evaluate("document.getElementById('login-error').textContent")
        == "That key is not known to this server."
    )
    assert page.cookies() == []

    log_in(page, served.url, "key-tenant-a")
    page.wait_for(READY)
    [cookie] = page.cookies()
    assert cookie["name"] == "flock_session" and cookie["httpOnly"] and cookie["sameSite"] == "Strict"
    assert page.evaluate("document.cookie") == ""  # invisible to scripts
    assert page.evaluate("document.getElementById('who').textContent") == "tenant a · scopes publish, read"

    # the graph: tenant a's agents and the shared one, never tenant b's
    nodes = set(page.evaluate(NODES))
    assert nodes == {"type:Ticket", "type:Triaged", "agent:triage", "agent:triage-a"}
    page.wait_for(f"{sub('type:Triaged')} === '1 artifact'")
    page.wait_for("document.getElementById('live').textContent === 'live'")

    payloads = texts(page, "#artifacts .payload")
    assert any("printer on fire" in p for p in payloads)
    assert not any("tenant b" in p for p in payloads)
    assert len(texts(page, "#runs tbody tr.run")) == 1

    # published now (by another client): appears without a reload, counts move
    publish(served, "key-tenant-b", "tenant b again")
    sent = publish(served, "key-tenant-a", "coffee machine")
    page.wait_for("document.querySelectorAll('#artifacts .artifact[data-type=\"Triaged\"]').length === 2")
    first = page.evaluate("document.querySelector('#artifacts .artifact').dataset.type")
    assert first == "Triaged"  # newest first
    assert page.evaluate(f"!!document.querySelector('#artifacts [data-id=\"{sent['id']}\"]')")
    page.wait_for(f"{sub('type:Ticket')} === '2 artifacts'")
    page.wait_for(f"{sub('agent:triage-a')} === '0 running · 1 done'")
    assert (
        page.evaluate("document.querySelector('[data-edge=\"agent:triage-a>type:Triaged\"]').textContent")
        == "\u00d71"
    )
    assert len(texts(page, "#runs tbody tr.run")) == 2
    assert not any("tenant b" in p for p in texts(page, "#artifacts .payload"))

    # browse by type, then by run
    page.evaluate(
        "var s = document.getElementById('type-filter'); s.value = 'Ticket';"
        "s.dispatchEvent(new Event('change'))"
    )
    page.wait_for(
        "Array.from(document.querySelectorAll('#artifacts .artifact'))"
        ".every(a => a.dataset.type === 'Ticket')"
    )
    page.wait_for("document.querySelectorAll('#artifacts .artifact').length === 2")
    page.evaluate(f"document.querySelector('#runs tr[data-run=\"{sent['correlation_id']}\"]').click()")
    page.wait_for("document.querySelectorAll('#artifacts .artifact').length === 1")
    assert "coffee machine" in texts(page, "#artifacts .payload")[0]

    # non-admin: traces are explained, not broken; logging out ends the session
    assert "admin key without a tenant" in page.evaluate("document.getElementById('traces').textContent")
    page.evaluate("document.getElementById('logout').click()")
    page.wait_for("document.title === 'Flock · log in'")
    assert page.cookies() == []


@needs_chromium
def test_dashboard_degrades_with_fewer_scopes(serve: Callable[..., Any], browser: Browser) -> None:
    served = serve()
    page = browser.page()
    log_in(page, served.url, "key-a-publish-only")
    page.wait_for(READY)
    assert "lacks the read scope" in page.evaluate("document.getElementById('graph').textContent")
    page.evaluate("document.getElementById('logout').click()")
    page.wait_for("document.title === 'Flock · log in'")
    log_in(page, served.url, "key-operator")
    page.wait_for(READY)
    # an admin sees every tenant's agents; tracing is off in this server, and the panel says so
    nodes = set(page.evaluate(NODES))
    assert {"agent:triage-a", "agent:triage-b"} <= nodes
    page.wait_for("document.getElementById('traces').textContent.includes('tracing is off')", timeout=30)
