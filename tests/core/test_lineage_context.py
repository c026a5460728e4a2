"""LineageContext, the default context: the visible ancestors of the inputs, newest first, O(limit)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from uuid import UUID

import pytest
from pydantic import BaseModel

from flock import (
    AgentIdentity,
    Artifact,
    Context,
    ContextRequest,
    Flock,
    InMemoryStore,
    LineageContext,
    PrivateVisibility,
    SQLiteStore,
    flock_type,
)
from flock._core.spec import AgentSpec

pytestmark = pytest.mark.anyio
T0 = datetime(2024, 1, 1, tzinfo=UTC)


@flock_type(name="lineage.Topic")
class Topic(BaseModel):
    n: int = 0


@flock_type(name="lineage.Idea")
class Idea(BaseModel):
    n: int = 0


@flock_type(name="lineage.Critique")
class Critique(BaseModel):
    seen: list[str]


@pytest.fixture(params=["memory", "sqlite"])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> Any:
    if request.param == "memory":
        yield InMemoryStore()
        return
    sqlite = SQLiteStore(tmp_path / "board.db")
    try:
        yield sqlite
    finally:
        await sqlite.close()


def art(n: int, parents: tuple[Artifact, ...] = (), workflow: str = "wf", **fields: Any) -> Artifact:
    return Artifact(
        type="lineage.Idea",
        payload={"n": n},
        correlation_id=workflow,
        consumed_from=tuple(p.id for p in parents),
        created_at=T0 + timedelta(seconds=n),
        **fields,
    )


def request(store: Any, *inputs: Artifact, who: str = "critic", workflow: str = "wf") -> ContextRequest:
    agent = AgentSpec(name=who)
    return ContextRequest(agent, AgentIdentity(name=who), workflow, tuple(inputs), store)


def ns(arts: list[Artifact]) -> list[int]:
    return [a.payload["n"] for a in arts]


async def put(store: Any, *arts: Artifact) -> None:
    for a in arts:
        await store.put(a)


async def test_ancestors_newest_first_without_siblings(store: Any) -> None:
    root = art(0)
    brief = art(1, (root,))
    ideas = [art(10 + i, (brief,)) for i in range(5)]
    unrelated = art(20)
    await put(store, root, brief, *ideas, unrelated)
    got = await LineageContext()(request(store, ideas[2]))
    assert ns(got) == [1, 0]  # the brief, then what the brief came from; no sibling idea, nothing else


async def test_a_join_sees_the_ancestors_of_every_input_in_time_order(store: Any) -> None:
    a0, b0 = art(0), art(1)
    a1, b1 = art(2, (a0,)), art(3, (b0,))
    a2 = art(4, (a1,))
    await put(store, a0, b0, a1, b1, a2)
    assert ns(await LineageContext()(request(store, a2, b1))) == [2, 1, 0]  # inputs excluded


async def test_limit_keeps_the_newest(store: Any) -> None:
    chain = [art(0)]
    for i in range(1, 40):
        chain.append(art(i, (chain[-1],)))
    await put(store, *chain)
    assert ns(await LineageContext(limit=5)(request(store, chain[-1]))) == [38, 37, 36, 35, 34]
    assert await LineageContext(limit=0)(request(store, chain[-1])) == []


async def test_invisible_ancestors_are_skipped_but_walked_through(store: Any) -> None:
    root = art(0)
    secret = art(1, (root,), visibility=PrivateVisibility(agents={"someone-else"}))
    child = art(2, (secret,))
    await put(store, root, secret, child)
    assert ns(await LineageContext()(request(store, child))) == [0]
    assert ns(await LineageContext()(request(store, child, who="someone-else"))) == [1, 0]


async def test_other_workflows_end_the_walk(store: Any) -> None:
    elsewhere = art(0, workflow="other")
    here = art(1, (elsewhere,))
    child = art(2, (here,))
    await put(store, elsewhere, here, child)
    assert ns(await LineageContext()(request(store, child))) == [1]


class CountingStore(InMemoryStore):
    """An in-memory store that counts what the context asks of it."""

    def __init__(self) -> None:
        super().__init__()
        self.fetched = 0
        self.scans = 0

    async def get_many(self, ids: Any) -> list[Artifact]:
        ids = list(ids)
        self.fetched += len(ids)
        return await super().get_many(ids)

    async def query_artifacts(self, *args: Any, **kwargs: Any) -> Any:
        self.scans += 1
        return await super().query_artifacts(*args, **kwargs)


async def test_the_cost_is_bounded_by_the_limit_not_the_workflow() -> None:
    store = CountingStore()
    root = art(0)
    wide = art(1, (root, *(art(1000 + i) for i in range(100))))  # a huge join
    chain = [wide]
    for i in range(2, 3000):
        chain.append(art(i, (chain[-1],)))
    await put(store, root, *chain)
    got = await LineageContext(limit=20)(request(store, chain[-1]))
    assert ns(got) == list(range(2998, 2978, -1))
    assert store.fetched <= 21 and store.scans == 0
    store.fetched = 0
    await LineageContext(limit=20)(request(store, chain[2]))  # reaches the join: its newest 20 parents
    assert store.fetched <= 2 + 20 + 1


class Critic:
    def __init__(self) -> None:
        self.seen: list[list[str]] = []

    def __call__(self, idea: Idea, ctx: Context) -> Critique:
        seen = [f"{a.type}:{a.payload['n']}" for a in ctx.artifacts]
        self.seen.append(seen)
        return Critique(seen=seen)


async def test_the_default_context_of_a_flock_is_the_lineage() -> None:
    flock = Flock()
    critic = Critic()
    flock.agent("ideas").consumes(Topic).publishes(Idea, fan_out=4).calls(
        lambda t: [Idea(n=10 * t.n + i) for i in range(4)]
    )
    flock.agent("critic").consumes(Idea).publishes(Critique).calls(critic)
    await flock.publish(Topic(n=1), correlation_id="w")
    await flock.publish(Topic(n=2), correlation_id="w")  # same workflow, not an ancestor of the ideas of 1
    await flock.run_until_idle()
    assert len(critic.seen) == 8
    assert sorted(map(tuple, critic.seen)) == [("lineage.Topic:1",)] * 4 + [("lineage.Topic:2",)] * 4


async def test_unknown_parents_are_skipped(store: Any) -> None:
    ghost = UUID(int=7)
    child = Artifact(type="lineage.Idea", payload={"n": 5}, correlation_id="wf", consumed_from=(ghost,))
    await put(store, child)
    assert await LineageContext()(request(store, child)) == []
