"""The endpoints against a real server on 127.0.0.1: publishing (422s, idempotency), queries, agents,
traces, health, the OpenAPI document, and the flock processing what arrives."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import server_app


def wait_for(
    client: httpx.Client, params: dict[str, Any], count: int, timeout: float = 10.0
) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        body: dict[str, Any] = client.get("/artifacts", params=params).json()
        if body["total"] >= count or time.monotonic() > deadline:
            return body
        time.sleep(0.05)


def test_publish_returns_the_artifact_and_the_flock_processes_it(serve):
    served = serve()
    with served.client("key-tenant-a") as a:
        made = a.post(
            "/artifacts", json={"type": "Ticket", "payload": {"title": "printer on fire", "priority": 1}}
        )
        assert made.status_code == 201
        art = made.json()
        assert {"id", "type", "payload", "correlation_id", "produced_by", "created_at"} <= set(art)
        assert art["type"] == "Ticket" and art["produced_by"] == "external"
        # the served flock runs on its own: tenant a's agent triages it, in the same workflow
        done = wait_for(a, {"type": "Triaged", "correlation_id": art["correlation_id"]}, 1)
        assert done["total"] == 1
        triaged = done["items"][0]
        assert triaged["payload"] == {"title": "printer on fire", "urgent": True}
        assert triaged["produced_by"] == "triage-a"
        assert triaged["visibility"] == {"kind": "tenant", "tenant_id": "a"}
        by_producer = a.get("/artifacts", params={"produced_by": "triage-a"}).json()
        assert [i["id"] for i in by_producer["items"]] == [triaged["id"]]


def test_unknown_type_and_invalid_payload_are_422_with_the_errors(serve):
    served = serve()
    with served.client("key-tenant-a") as a:
        unknown = a.post("/artifacts", json={"type": "Nope", "payload": {}})
        assert unknown.status_code == 422
        assert unknown.json()["detail"][0]["loc"] == ["body", "type"]
        assert "Ticket" in unknown.json()["detail"][0]["msg"]
        invalid = a.post("/artifacts", json={"type": "Ticket", "payload": {"title": "", "priority": 9}})
        assert invalid.status_code == 422
        locs = sorted(tuple(e["loc"]) for e in invalid.json()["detail"])
        assert locs == [("body", "payload", "priority"), ("body", "payload", "title")]
        for bad in (b"not json", b"[]", b'{"type": "Ticket"}', b'{"type": "Ticket", "payload": 3}'):
            response = a.post("/artifacts", content=bad, headers={"Content-Type": "application/json"})
            assert response.status_code == 422, bad
        assert a.get("/artifacts").json()["total"] == 0
    assert len(served.flock.store) == 0


def test_the_same_idempotency_key_publishes_once(serve):
    served = serve()
    body = {"type": "Ticket", "payload": {"title": "once"}, "idempotency_key": "req-1"}
    with served.client("key-tenant-a") as a, served.client("key-tenant-b") as b:
        first = a.post("/artifacts", json=body)
        again = a.post("/artifacts", json=body)
        assert first.status_code == again.status_code == 201
        assert first.json() == again.json()
        assert again.headers["idempotent-replayed"] == "true"
        # concurrent repeats: still one artifact
        with ThreadPoolExecutor(8) as pool:
            ids = set(pool.map(lambda _: a.post("/artifacts", json={**body}).json()["id"], range(16)))
        assert ids == {first.json()["id"]}
        # the key belongs to the tenant: tenant b's same key is its own artifact
        other = b.post("/artifacts", json=body)
        assert other.status_code == 201 and other.json()["id"] != first.json()["id"]
        # the same key with another body is refused
        changed = a.post("/artifacts", json={**body, "payload": {"title": "twice"}})
        assert changed.status_code == 409
        assert wait_for(a, {"type": "Ticket"}, 1)["total"] == 1


def test_query_filters_and_pagination(serve):
    served = serve()
    with served.client("key-tenant-b") as b:
        ids = [
            b.post(
                "/artifacts", json={"type": "Ticket", "payload": {"title": f"t{i}"}, "correlation_id": "c1"}
            ).json()["id"]
            for i in range(5)
        ]
        page = b.get("/artifacts", params={"type": "Ticket", "limit": 2, "offset": 1}).json()
        assert page["total"] == 5 and [i["id"] for i in page["items"]] == ids[1:3]
        assert b.get("/artifacts", params={"correlation_id": "c1", "type": "Ticket"}).json()["total"] == 5
        assert b.get("/artifacts", params={"correlation_id": "other"}).json()["total"] == 0
        assert b.get("/artifacts", params={"since": "2100-01-01T00:00:00"}).json()["total"] == 0
        assert b.get("/artifacts", params={"limit": 0}).status_code == 422
        assert b.get("/artifacts/not-a-uuid").status_code == 404
        assert b.get("/artifacts/00000000-0000-0000-0000-000000000000").status_code == 404


def test_agents_with_their_subscriptions(serve):
    served = serve()
    with served.client("key-operator") as op:
        agents = {a["name"]: a for a in op.get("/agents").json()["items"]}
    assert set(agents) == {"triage", "triage-a", "triage-b"}
    assert agents["triage-a"]["subscriptions"][0]["types"] == ["Ticket"]
    assert agents["triage-a"]["publishes"] == [["Triaged"]]
    assert agents["triage-a"]["tenant"] == "a"


def test_the_openapi_document_carries_every_registered_type(serve):
    served = serve()
    with served.client("key-tenant-a") as a:
        doc = a.get("/openapi.json").json()
    schemas = doc["components"]["schemas"]
    assert schemas["Ticket"]["properties"]["priority"]["maximum"] == 5
    assert "Triaged" in schemas and "WorkflowError" in schemas
    assert doc["x-flock-types"]["Ticket"] == "#/components/schemas/Ticket"
    variants = doc["paths"]["/artifacts"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    assert {v["properties"]["type"]["const"] for v in variants["oneOf"]} >= {"Ticket", "Triaged"}
    assert {"/artifacts", "/artifacts/{artifact_id}", "/agents", "/events", "/health"} <= set(doc["paths"])


def test_health_and_readiness(serve):
    served = serve()
    with served.client("key-a-readonly") as ro:
        assert ro.get("/health").json() == {"status": "ok", "ready": True, "halted": None}
        assert ro.get("/ready").status_code == 200


def test_traces_need_admin_and_tracing(serve, tmp_path, spans):
    # ``spans`` installs the test session's tracer provider first: enable_tracing() then joins it
    # instead of installing its own, which would stay for the rest of the session (one per process).
    served = serve()
    with served.client("key-operator") as op:
        off = op.get("/traces")
        assert off.status_code == 404 and "tracing is off" in off.json()["detail"]
    from flock.tracing import disable_tracing, enable_tracing, flush_tracing

    enable_tracing(store=tmp_path / "traces.db")
    try:
        with served.client("key-tenant-a") as a:
            created = a.post("/artifacts", json={"type": "Ticket", "payload": {"title": "traced"}}).json()
            wait_for(a, {"type": "Triaged", "correlation_id": created["correlation_id"]}, 1)
        flush_tracing()
        with served.client("key-operator") as op:
            runs = op.get("/traces").json()["items"]
            assert runs and runs[0]["trace_id"]
            one = op.get(f"/traces/{runs[0]['trace_id']}").json()
            assert one["spans"] and one["trace_id"] == runs[0]["trace_id"]
            page = op.get(f"/traces/{runs[0]['trace_id']}", params={"format": "html"})
            assert page.headers["content-type"].startswith("text/html")
            assert op.get("/traces/ffffffffffff").status_code == 404
    finally:
        disable_tracing()


def test_a_served_flock_with_its_own_keys(serve):
    from flock import ApiKeys, Principal

    auth = ApiKeys({"only-this-key": Principal(scopes={"read"})})
    served = serve(server_app.make_flock(), auth, probe="only-this-key")
    with served.client("key-operator") as other:
        assert other.get("/health").status_code == 401
    with served.client("only-this-key") as mine:
        assert mine.get("/artifacts").json() == {"items": [], "total": 0}
