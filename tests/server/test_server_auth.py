"""Deny by default: every endpoint with no key, a wrong key, a key without the scope and another
tenant's key, against a real server on 127.0.0.1."""

from __future__ import annotations

import json
from functools import partial

import anyio
import pytest

from flock import ApiKeys, ConfigurationError, Flock, Principal, PrivateVisibility

ENDPOINTS = [
    ("GET", "/health"),
    ("GET", "/ready"),
    ("GET", "/openapi.json"),
    ("GET", "/artifacts"),
    ("GET", "/artifacts/00000000-0000-0000-0000-000000000000"),
    ("POST", "/artifacts"),
    ("GET", "/agents"),
    ("GET", "/traces"),
    ("GET", "/traces/abc"),
    ("GET", "/events"),
    ("GET", "/tasks"),
    ("GET", "/tasks/00000000-0000-0000-0000-000000000000"),
    ("POST", "/tasks/00000000-0000-0000-0000-000000000000"),
    ("GET", "/no-such-path"),
    ("GET", "/docs"),
]


def test_every_endpoint_refuses_no_key_and_a_wrong_key(serve):
    served = serve()
    for key in (None, "wrong-key-123", "key-tenant-a-but-longer"):
        with served.client(key) as client:
            for method, path in ENDPOINTS:
                body = {"type": "Ticket", "payload": {"title": "x"}} if method == "POST" else None
                response = client.request(method, path, json=body)
                assert response.status_code == 401, (key, method, path, response.text)
                assert response.headers["www-authenticate"].startswith("Bearer")
    # a key in another scheme is no key
    with served.client(None) as client:
        assert client.get("/artifacts", headers={"Authorization": "Basic key-tenant-a"}).status_code == 401
    assert served.flock.store.__len__() == 0  # nothing was published by the refused POSTs


def test_missing_scope_is_403(serve):
    served = serve()
    with served.client("key-a-readonly") as client:
        assert (
            client.post("/artifacts", json={"type": "Ticket", "payload": {"title": "x"}}).status_code == 403
        )
        assert client.get("/traces").status_code == 403
        assert client.get("/artifacts").status_code == 200
    with served.client("key-a-publish-only") as client:
        assert client.get("/artifacts").status_code == 403
        assert client.get("/agents").status_code == 403
        assert client.get("/events").status_code == 403
        assert client.get("/tasks").status_code == 403
        assert client.post("/tasks/x", json={"payload": {}}).status_code == 403
        assert client.get("/health").status_code == 200  # a valid key, no scope needed


def test_another_tenants_key_sees_nothing_of_it(serve):
    served = serve()
    with served.client("key-tenant-a") as a, served.client("key-tenant-b") as b:
        created = a.post("/artifacts", json={"type": "Ticket", "payload": {"title": "secret of a"}})
        assert created.status_code == 201
        art = created.json()
        assert art["visibility"] == {"kind": "tenant", "tenant_id": "a"}
        assert b.get(f"/artifacts/{art['id']}").status_code == 404  # never 403: existence does not leak
        assert a.get(f"/artifacts/{art['id']}").json()["payload"] == {"title": "secret of a", "priority": 3}
        listed = b.get("/artifacts").json()
        assert all("secret of a" not in json.dumps(item) for item in listed["items"])
        assert listed["total"] == len(listed["items"])
        mine = a.get("/artifacts", params={"type": "Ticket"}).json()
        assert [item["id"] for item in mine["items"]] == [art["id"]]
        # the agents of tenant b are not shown to tenant a
        names = {agent["name"] for agent in a.get("/agents").json()["items"]}
        assert names == {"triage", "triage-a"}
    with served.client("key-a-readonly") as ro:
        assert ro.get(f"/artifacts/{art['id']}").status_code == 200  # same tenant, other key


def test_the_tenant_comes_from_the_key_not_the_body(serve):
    served = serve()
    with served.client("key-tenant-b") as b:
        sneaky = {"type": "Ticket", "payload": {"title": "t"}, "visibility": {"kind": "public"}}
        assert b.post("/artifacts", json=sneaky).status_code == 422
        made = b.post("/artifacts", json={"type": "Ticket", "payload": {"title": "t"}}).json()
        assert made["visibility"]["tenant_id"] == "b"


def test_api_keys_and_principals_are_checked():
    with pytest.raises(ConfigurationError, match="unknown scope"):
        Principal(scopes={"write"})
    with pytest.raises(ConfigurationError, match="at least one key"):
        ApiKeys({})
    with pytest.raises(ConfigurationError, match="at least 8"):
        ApiKeys({"short": Principal()})
    keys = ApiKeys({"a-long-key": Principal(tenant="a", scopes={"read"})})
    assert keys.authenticate("a-long-key") == Principal(tenant="a", scopes=frozenset({"read"}))
    assert keys.authenticate("a-long-keY") is None
    assert keys.authenticate(None) is None
    assert "a-long-key" not in repr(keys)
    assert Principal(scopes={"admin"}).allows("publish")


def test_keys_from_the_environment():
    env = {"FLOCK_API_KEYS": '{"env-key-123": {"tenant": "t", "scopes": ["read", "publish"]}}'}
    principal = ApiKeys.from_env(env).authenticate("env-key-123")
    assert principal == Principal(tenant="t", scopes=frozenset({"read", "publish"}))
    for bad in ("", "not json", "[1]", '{"k-12345678": {"tenant": "t", "role": "x"}}'):
        with pytest.raises(ConfigurationError, match="FLOCK_API_KEYS"):
            ApiKeys.from_env({"FLOCK_API_KEYS": bad})


@pytest.mark.anyio
async def test_serve_without_any_keys_refuses_to_start(monkeypatch):
    monkeypatch.delenv("FLOCK_API_KEYS", raising=False)
    flock = Flock()
    with pytest.raises(ConfigurationError, match="no API keys"):
        await flock.serve(port=1)
    with pytest.raises(ConfigurationError, match="takes ApiKeys"):
        await flock.serve(port=1, auth={"k": "v"})


def test_traces_are_for_operators_not_for_a_tenants_admin(serve):
    # A trace spans every tenant's runs: an admin key bound to a tenant must not read it.
    keys = {
        "acme-admin-key": Principal(tenant="acme", scopes={"admin"}),
        "ops-key-0001": Principal(scopes={"admin"}),
    }
    served = serve(auth=ApiKeys(keys), probe="ops-key-0001")
    with served.client("acme-admin-key") as acme:
        for path in ("/traces", "/traces/abc"):
            refused = acme.get(path)
            assert refused.status_code == 403, path
            assert "admin key that has no tenant" in refused.json()["detail"]
        assert acme.get("/artifacts").status_code == 200  # every scope within its tenant
    with served.client("ops-key-0001") as ops:
        assert ops.get("/traces").status_code == 404  # allowed; tracing is off in this test


def test_a_key_reads_as_no_agent_unless_named(serve):
    # An artifact private to an agent is not shown to keys, whatever the agent is called, unless a
    # key is given that agent's name on purpose.
    from pydantic import BaseModel

    class Memo(BaseModel):
        text: str

    flock = Flock()
    flock.agent("api").consumes(Memo).calls(lambda m: None)
    memo = Memo(text="for the api agent")
    anyio.run(partial(flock.publish, memo, visibility=PrivateVisibility(agents={"api"})))
    keys = {
        "acme-key-123": Principal(tenant="acme", scopes={"read"}),
        "as-agent-1": Principal(scopes={"read"}, name="api"),
    }
    served = serve(flock=flock, auth=ApiKeys(keys), probe="acme-key-123")
    with served.client("acme-key-123") as acme, served.client("as-agent-1") as agent:
        assert acme.get("/artifacts").json()["total"] == 0
        assert agent.get("/artifacts").json()["total"] == 1
