"""Human tasks over REST against a real server on 127.0.0.1: list, show, answer (valid, invalid,
twice), tenants, scopes; the answer is routed downstream by the served flock."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import BaseModel

from flock import ApiKeys, Flock, Principal, flock_type


@flock_type
class Draft(BaseModel):
    text: str


@flock_type
class Approval(BaseModel):
    ok: bool
    note: str = ""


@flock_type
class Shipped(BaseModel):
    text: str
    approved: bool


AUTH = ApiKeys(
    {
        "key-a-reviewer": Principal(tenant="a", scopes={"publish", "read", "answer"}),
        "key-a-answer-only": Principal(tenant="a", scopes={"answer"}),
        "key-a-readonly": Principal(tenant="a", scopes={"read"}),
        "key-a-publish-only": Principal(tenant="a", scopes={"publish"}),
        "key-b-reviewer": Principal(tenant="b", scopes={"publish", "read", "answer"}),
        "key-operator": Principal(scopes={"admin"}),
    }
)


def make_flock() -> Flock:
    flock = Flock()
    for tenant in ("a", "b"):
        flock.agent(f"reviewer-{tenant}").tenant(tenant).consumes(Draft).publishes(Approval).human(
            prompt="Ship this draft?"
        )
        flock.agent(f"shipper-{tenant}").tenant(tenant).consumes(Approval).publishes(Shipped).calls(
            lambda a: Shipped(text=a.note, approved=a.ok)
        )
    return flock


def wait_for(client: httpx.Client, path: str, count: int, timeout: float = 20.0, **params: Any) -> list[Any]:
    deadline = time.monotonic() + timeout
    while True:
        items: list[Any] = client.get(path, params=params).json()["items"]
        if len(items) >= count:
            return items
        if time.monotonic() > deadline:
            raise AssertionError(f"{path} had {len(items)} items after {timeout}s, wanted {count}")
        time.sleep(0.05)


def test_a_task_is_listed_answered_once_and_routed(serve):
    served = serve(make_flock(), AUTH)
    with served.client("key-a-reviewer") as a, served.client("key-b-reviewer") as b:
        draft = a.post("/artifacts", json={"type": "Draft", "payload": {"text": "v1"}}).json()
        [task] = wait_for(a, "/tasks", 1)
        assert task["agent"] == "reviewer-a" and task["prompt"] == "Ship this draft?"
        assert task["inputs"] == [{"id": draft["id"], "type": "Draft", "payload": {"text": "v1"}}]
        assert task["output_type"] == "Approval" and task["output_schema"]["required"] == ["ok"]
        assert task["correlation_id"] == draft["correlation_id"] and task["deadline"] is None
        assert {"id", "created_at"} <= set(task)
        assert a.get(f"/tasks/{task['id']}").json()["status"] == "open"

        # another tenant neither sees nor answers it: 404, never 403
        assert b.get("/tasks").json() == {"items": [], "total": 0}
        assert b.get(f"/tasks/{task['id']}").status_code == 404
        assert b.post(f"/tasks/{task['id']}", json={"payload": {"ok": True}}).status_code == 404

        # an invalid answer: 422 with the errors, the task stays open
        wrong = a.post(f"/tasks/{task['id']}", json={"payload": {"ok": "perhaps"}})
        assert wrong.status_code == 422
        assert wrong.json()["detail"][0]["loc"] == ["body", "payload", "ok"]
        assert a.post(f"/tasks/{task['id']}", json={"answer": {"ok": True}}).status_code == 422
        assert a.post(f"/tasks/{task['id']}", content=b"not json").status_code == 422
        assert [t["id"] for t in a.get("/tasks").json()["items"]] == [task["id"]]

        made = a.post(f"/tasks/{task['id']}", json={"payload": {"ok": True, "note": "go"}})
        assert made.status_code == 201
        approval = made.json()
        assert approval["type"] == "Approval" and approval["produced_by"] == "reviewer-a"
        assert approval["visibility"] == {"kind": "tenant", "tenant_id": "a"}
        again = a.post(f"/tasks/{task['id']}", json={"payload": {"ok": False}})
        assert again.status_code == 409

        [done] = wait_for(a, "/artifacts", 1, type="Shipped")
        assert done["payload"] == {"text": "go", "approved": True}
        assert a.get("/tasks").json()["total"] == 0
        assert a.get(f"/tasks/{task['id']}").json()["status"] == "answered"
    with served.client("key-operator") as operator:
        assert operator.get(f"/tasks/{task['id']}").status_code == 200  # an operator sees every tenant
    assert served.flock.store.__len__() == 4  # draft, task, approval, shipped: the 409 published nothing


def test_task_scopes(serve):
    served = serve(make_flock(), AUTH)
    with served.client("key-a-reviewer") as a:
        a.post("/artifacts", json={"type": "Draft", "payload": {"text": "v1"}})
        [task] = wait_for(a, "/tasks", 1)
    path = f"/tasks/{task['id']}"
    with served.client("key-a-publish-only") as publisher:
        assert publisher.get("/tasks").status_code == 403
        assert publisher.get(path).status_code == 403
        assert publisher.post(path, json={"payload": {"ok": True}}).status_code == 403
    with served.client("key-a-readonly") as reader:
        assert reader.get("/tasks").json()["total"] == 1
        assert reader.post(path, json={"payload": {"ok": True}}).status_code == 403
    with served.client("key-a-answer-only") as answerer:
        assert answerer.get("/tasks").json()["total"] == 1  # answering needs seeing
        assert answerer.post(path, json={"payload": {"ok": False}}).status_code == 201
    for absent in ("/tasks/00000000-0000-0000-0000-000000000000", "/tasks/nope"):
        with served.client("key-operator") as operator:
            assert operator.get(absent).status_code == 404
            assert operator.post(absent, json={"payload": {"ok": True}}).status_code == 404


def run_cli(*args: str, key: str | None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "FLOCK_API_KEY"}
    if key is not None:
        env["FLOCK_API_KEY"] = key
    return subprocess.run(
        [sys.executable, "-m", "flock", "tasks", *args],
        env=env,
        input="",
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_the_cli_answers_over_rest(serve):
    served = serve(make_flock(), AUTH)
    with served.client("key-a-reviewer") as a:
        a.post("/artifacts", json={"type": "Draft", "payload": {"text": "v1"}})
        [task] = wait_for(a, "/tasks", 1)
    url = ("--url", served.url)
    listed = run_cli("list", *url, key="key-a-reviewer")
    assert listed.returncode == 0, listed.stderr
    assert task["id"] in listed.stdout and "reviewer-a" in listed.stdout
    assert run_cli("list", *url, key="key-b-reviewer").stdout.strip() == "no open tasks"
    hidden = run_cli("show", task["id"], *url, key="key-b-reviewer")
    assert hidden.returncode == 1 and "no task" in hidden.stderr
    refused = run_cli("list", *url, key="wrong-key-123")
    assert refused.returncode == 2 and "401" in refused.stderr
    reader = run_cli("answer", task["id"], *url, "--json", '{"ok": true}', key="key-a-readonly")
    assert reader.returncode == 2 and "403" in reader.stderr

    wrong = run_cli("answer", task["id"], *url, "--payload", '{"ok": "perhaps"}', key="key-a-reviewer")
    assert wrong.returncode == 1 and "ok: Input should be a valid boolean" in wrong.stderr
    done = run_cli(  # the payload may also come as the argument after the id
        "answer",
        task["id"],
        '{"ok": true, "note": "cli"}',
        *url,
        "--key",
        "key-a-reviewer",
        key=None,
    )
    assert done.returncode == 0, done.stderr
    assert "published Approval" in done.stdout
    again = run_cli("answer", task["id"], *url, "--json", '{"ok": true}', key="key-a-reviewer")
    assert again.returncode == 1 and "answered already" in again.stderr
    with served.client("key-a-reviewer") as a:
        [done_art] = wait_for(a, "/artifacts", 1, type="Shipped")
    assert done_art["payload"] == {"text": "cli", "approved": True}


def test_a_served_flock_closes_tasks_at_their_deadline(serve):
    flock = Flock()
    flock.agent("reviewer").consumes(Draft).publishes(Approval).human(
        prompt="quick!", timeout=0.5, default=Approval(ok=False, note="too late")
    )
    flock.agent("urgent").consumes(Draft).publishes(Approval).human(prompt="quicker!", timeout=0.2)
    served = serve(flock, AUTH)
    with served.client("key-operator") as operator:
        operator.post("/artifacts", json={"type": "Draft", "payload": {"text": "v1"}})
        [approval] = wait_for(operator, "/artifacts", 1, type="Approval")  # nobody answers: the default
        assert approval["payload"] == {"ok": False, "note": "too late"} and "timeout" in approval["tags"]
        [error] = wait_for(operator, "/artifacts", 1, type="flock.WorkflowError")
        assert error["payload"]["kind"] == "timeout" and error["produced_by"] == "urgent"
        assert operator.get("/tasks").json()["total"] == 0
        tasks = operator.get("/artifacts", params={"type": "flock.HumanTask"}).json()["items"]
        statuses = {operator.get(f"/tasks/{t['id']}").json()["status"] for t in tasks}
        assert statuses == {"expired"}
        late = operator.post(f"/tasks/{tasks[0]['id']}", json={"payload": {"ok": True}})
        assert late.status_code == 409


JSON = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12,
)


@pytest.mark.filterwarnings("ignore:Do not use the `random` module inside strategies")
def test_no_answer_body_makes_a_server_error(serve):
    """Generated bodies, payloads and field values against an open task: 201 once, then 409; 422 for
    anything invalid (the task stays open until a valid answer); never a server error."""
    served = serve(make_flock(), AUTH)
    with served.client("key-a-reviewer") as a:
        a.post("/artifacts", json={"type": "Draft", "payload": {"text": "v1"}})
        [task] = wait_for(a, "/tasks", 1)
        path = f"/tasks/{task['id']}"
        statuses: list[int] = []

        @given(
            body=st.one_of(
                JSON,
                st.fixed_dictionaries({"payload": JSON}),
                st.fixed_dictionaries({"payload": st.fixed_dictionaries({"ok": JSON, "note": JSON})}),
            )
        )
        @settings(max_examples=80, deadline=None, suppress_health_check=list(HealthCheck), database=None)
        def answer(body: Any) -> None:
            response = a.post(path, json=body)
            assert response.status_code in (201, 409, 422), response.text
            if statuses and 201 in statuses:
                assert response.status_code != 201  # answered once, never again
            statuses.append(response.status_code)

        answer()
        answered = 201 in statuses
        assert (a.get(path).json()["status"] == "answered") == answered
        assert statuses.count(201) <= 1 and 422 in statuses
