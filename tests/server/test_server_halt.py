"""A served flock whose run halts keeps serving: /ready says 503 with the error, the input stays
queued, and the runner retries on its own (after a back-off) once the cause is gone."""

from __future__ import annotations

import time

import server_app

from flock import ProviderConfigError


def test_a_halted_run_is_reported_and_retried(serve):
    broken = {"on": True}

    def triage(ticket: server_app.Ticket) -> server_app.Triaged:
        if broken["on"]:
            raise ProviderConfigError("the provider answered 401: set the API key")
        return server_app.Triaged(title=ticket.title, urgent=False)

    flock = server_app.Flock()
    flock.agent("triage").consumes(server_app.Ticket).publishes(server_app.Triaged).calls(triage)
    served = serve(flock)
    with served.client("key-operator") as op:
        assert op.post("/artifacts", json={"type": "Ticket", "payload": {"title": "t"}}).status_code == 201
        deadline = time.monotonic() + 10
        while (ready := op.get("/ready")).status_code == 200 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert ready.status_code == 503
        assert ready.json() == {"status": "unavailable", "ready": False, "halted": "ProviderConfigError"}
        assert op.get("/health").json()["ready"] is False  # alive, not ready
        broken["on"] = False  # the cause is fixed: the runner's retry finishes the queued ticket
        deadline = time.monotonic() + 15
        while op.get("/artifacts", params={"type": "Triaged"}).json()["total"] == 0:
            assert time.monotonic() < deadline, "the halted work was not retried"
            time.sleep(0.1)
        assert op.get("/ready").status_code == 200
        assert op.get("/artifacts", params={"type": "WorkflowError"}).json()["total"] == 0
