"""The promises that held under attack, kept on every store (in memory and a real SQLite file),
through the public API: restricted artifacts never reach other agents, not by subscription, not as
context, not through a custom context provider; outputs of restricted inputs stay restricted down a
chain; context never crosses workflows; concurrent publishers lose and duplicate nothing; an
artifact id is never stored twice. (A full disk: test_board_file.py; kill -9 during fan-outs,
gates and batches: test_crash.py.)"""

from __future__ import annotations

from collections import Counter
from typing import Any

import anyio
import anyio.lowlevel
import pytest
from pydantic import BaseModel

from flock import (
    Artifact,
    Context,
    CorrelationContext,
    DuplicateArtifactError,
    Flock,
    LabelledVisibility,
    PrivateVisibility,
    TenantVisibility,
    flock_type,
)

pytestmark = pytest.mark.anyio


@flock_type(name="holds.Memo")
class Memo(BaseModel):
    text: str


@flock_type(name="holds.Note")
class Note(BaseModel):
    text: str


@flock_type(name="holds.Poke")
class Poke(BaseModel):
    text: str = "go"


RESTRICTED = {
    "for-alice": PrivateVisibility(agents={"alice"}),
    "acme-only": TenantVisibility(tenant_id="acme"),
    "finance-only": LabelledVisibility(required_labels={"finance"}),
}


def texts(artifacts: Any) -> list[str]:
    return sorted(str(a.payload.get("text")) for a in artifacts)


async def everything(request: Any) -> list[Artifact]:
    """A context provider that tries to leak the whole board."""
    found, _ = await request.store.query_artifacts(limit=1_000)
    return [*(await request.store.list()), *found]


@pytest.mark.parametrize("provider", ["default", "custom"])
async def test_restricted_artifacts_reach_only_the_agents_allowed_to_see_them(
    store: Any, provider: str
) -> None:
    # The workflow-wide provider offers every restricted memo of the workflow to every agent; the
    # default LineageContext offers only ancestors (the Poke has none), so it is covered elsewhere.
    flock = Flock(store=store, context_provider=CorrelationContext())
    woken: dict[str, list[str]] = {}
    shown: dict[str, list[str]] = {}

    def read(value: Memo | Poke, ctx: Context) -> None:
        if isinstance(value, Memo):
            woken.setdefault(ctx.agent, []).append(value.text)
        else:
            shown[ctx.agent] = [t for t in texts(ctx.artifacts) if t != "go"]

    for name, tenant, labels in [
        ("alice", None, ()),
        ("acme-bot", "acme", ()),
        ("globex-bot", "globex", ()),
        ("accountant", None, ("finance",)),
        ("outsider", None, ()),
    ]:
        agent = flock.agent(name).consumes(Memo).consumes(Poke).calls(read)
        if provider == "custom":
            agent.with_context(everything)
        if tenant:
            agent.tenant(tenant)
        if labels:
            agent.labels(*labels)
    for text, visibility in RESTRICTED.items():
        await flock.publish(Memo(text=text), visibility=visibility, correlation_id="wf")
    await flock.publish(Memo(text="public"), correlation_id="wf")
    await flock.run_until_idle()
    await flock.publish(Poke(), correlation_id="wf")
    await flock.run_until_idle()

    allowed = {
        "alice": ["for-alice", "public"],
        "acme-bot": ["acme-only", "public"],
        "globex-bot": ["public"],
        "accountant": ["finance-only", "public"],
        "outsider": ["public"],
    }
    assert {name: sorted(seen) for name, seen in woken.items()} == allowed  # subscriptions
    if provider == "custom":  # a provider's own result is filtered (the leaky one lists some twice)
        shown = {name: sorted(set(seen)) for name, seen in shown.items()}
    assert shown == allowed  # context


async def test_outputs_of_restricted_inputs_stay_restricted_down_a_chain(store: Any) -> None:
    flock = Flock(store=store)
    reached: list[str] = []
    flock.agent("alice").consumes(Memo).publishes(Note).calls(lambda m: Note(text=f"from {m.text}"))
    flock.agent("acme-bot").consumes(Memo).publishes(Note).calls(
        lambda m: Note(text=f"acme {m.text}")
    ).tenant("acme")
    flock.agent("accountant").consumes(Memo).publishes(Note).calls(
        lambda m: Note(text=f"fin {m.text}")
    ).labels("finance")
    # Downstream agents that must never see what the restricted inputs became.
    flock.agent("eve").consumes(Note).calls(lambda n: reached.append(f"eve: {n.text}"))
    flock.agent("globex-bot").consumes(Note).calls(lambda n: reached.append(f"globex: {n.text}")).tenant(
        "globex"
    )
    for text, visibility in RESTRICTED.items():
        await flock.publish(Memo(text=text), visibility=visibility)
    await flock.run_until_idle()

    notes = {a.payload["text"]: a.visibility for a in await flock.store.list() if a.type == "holds.Note"}
    assert notes == {
        "from for-alice": PrivateVisibility(agents={"alice"}),
        "acme acme-only": TenantVisibility(tenant_id="acme"),
        "fin finance-only": LabelledVisibility(required_labels={"finance"}),
    }
    assert reached == []


async def test_context_never_crosses_workflows(store: Any) -> None:
    # Flock-wide CorrelationContext (the default before LineageContext, whose walk ends at other
    # workflows: tests/core/test_lineage_context.py) and an agent's own.
    flock = Flock(store=store, context_provider=CorrelationContext())
    shown: dict[str, dict[str, list[str]]] = {"default": {}, "correlation": {}}

    def look(kind: str) -> Any:
        def read(poke: Poke, ctx: Context) -> None:
            shown[kind][ctx.correlation_id] = texts(ctx.artifacts)

        return read

    flock.agent("reader").consumes(Poke).calls(look("default"))
    flock.agent("by-workflow").consumes(Poke).calls(look("correlation")).with_context(
        CorrelationContext(limit=100)
    )
    for wf in ("wf-a", "wf-b", "wf-c"):
        for i in range(5):
            await flock.publish(Memo(text=f"{wf}-{i}"), correlation_id=wf)
    for wf in ("wf-a", "wf-b"):
        await flock.publish(Poke(text=f"poke-{wf}"), correlation_id=wf)
    await flock.run_until_idle()
    for kind in ("default", "correlation"):
        assert set(shown[kind]) == {"wf-a", "wf-b"}
        for wf, seen in shown[kind].items():
            assert seen and all(t.startswith(wf) or t == f"poke-{wf}" for t in seen), (kind, wf, seen)


async def test_twenty_concurrent_publishers_lose_and_duplicate_nothing(store: Any) -> None:
    flock = Flock(store=store)
    handled: list[str] = []

    def note(memo: Memo) -> Note:
        handled.append(memo.text)
        return Note(text=memo.text)

    flock.agent("noter").consumes(Memo).publishes(Note).calls(note)
    published: list[Artifact] = []

    async def publisher(p: int) -> None:
        for i in range(25):
            published.append(await flock.publish(Memo(text=f"{p}-{i}")))
            await anyio.lowlevel.checkpoint()

    async with anyio.create_task_group() as tg:
        tg.start_soon(flock.run_until_idle)
        for p in range(20):
            tg.start_soon(publisher, p)
    await flock.run_until_idle()

    wanted = sorted(f"{p}-{i}" for p in range(20) for i in range(25))
    assert sorted(a.payload["text"] for a in published) == wanted
    board = await flock.store.list()
    assert len({a.id for a in board}) == len(board) == 1_000
    assert texts(a for a in board if a.type == "holds.Memo") == wanted
    assert texts(a for a in board if a.type == "holds.Note") == wanted
    assert sorted(handled) == wanted  # every input handled, none twice
    assert Counter(a.consumed_from for a in board if a.type == "holds.Note").most_common(1)[0][1] == 1


async def test_an_artifact_id_is_never_stored_or_routed_twice(store: Any) -> None:
    flock = Flock(store=store)
    handled: list[str] = []
    flock.agent("noter").consumes(Memo).calls(lambda m: handled.append(m.text))
    first = await flock.publish(Memo(text="original"))
    again = Artifact(id=first.id, type="holds.Memo", payload={"text": "impostor"})
    with pytest.raises(DuplicateArtifactError, match=str(first.id)):
        await flock.publish(again)
    await flock.run_until_idle()
    assert [a.payload for a in await flock.store.list()] == [{"text": "original"}]
    assert handled == ["original"]
