"""The blackboard store: the protocol, indexes, queries, filters and pagination."""

from __future__ import annotations

from datetime import timedelta
from uuid import uuid4

import pytest
from pydantic import BaseModel

from flock import (
    AgentIdentity,
    BlackboardStore,
    DuplicateArtifactError,
    FilterConfig,
    Flock,
    InMemoryStore,
    PrivateVisibility,
    TenantVisibility,
    flock_type,
)

pytestmark = pytest.mark.anyio


@flock_type
class Task(BaseModel):
    n: int


@flock_type
class Done(BaseModel):
    n: int


async def board() -> tuple[Flock, list]:
    """A board with Tasks in two workflows, Done outputs, tags and a private artifact."""
    flock = Flock()
    flock.agent("worker").consumes(Task).publishes(Done).calls(lambda t: Done(n=t.n))
    arts = []
    for i in range(6):
        arts.append(
            await flock.publish(
                Task(n=i), correlation_id="even" if i % 2 == 0 else "odd", tags={"hot"} if i < 2 else None
            )
        )
    arts.append(await flock.publish(Done(n=99), visibility=PrivateVisibility(agents={"boss"})))
    await flock.run_until_idle()
    return flock, arts


def test_in_memory_store_satisfies_the_protocol() -> None:
    assert isinstance(InMemoryStore(), BlackboardStore)
    assert isinstance(Flock().store, InMemoryStore)


async def test_a_given_store_is_used() -> None:
    store = InMemoryStore()
    flock = Flock(store=store)
    await flock.publish(Task(n=1))
    assert len(store) == 1
    assert flock.store is store


async def test_get_and_list() -> None:
    flock, arts = await board()
    first = arts[0]
    assert await flock.store.get(first.id) == first
    assert await flock.store.get(str(first.id)) == first
    assert await flock.store.get(uuid4()) is None
    assert await flock.store.get("not-a-uuid") is None
    listed = await flock.store.list()
    assert listed[:7] == arts  # publication order
    assert len(listed) == 13  # 7 published + 6 Done outputs


async def test_get_by_type_returns_models_optionally_by_correlation() -> None:
    flock, _ = await board()
    assert [t.n for t in await flock.store.get_by_type(Task)] == [0, 1, 2, 3, 4, 5]
    assert sorted(d.n for d in await flock.store.get_by_type(Done)) == [0, 1, 2, 3, 4, 5, 99]
    assert sorted(d.n for d in await flock.store.get_by_type(Done, correlation_id="odd")) == [1, 3, 5]
    assert await flock.store.get_by_type(Task, correlation_id="nope") == []
    assert all(isinstance(d, Done) for d in await flock.store.get_by_type(Done))


async def test_query_artifacts_filters() -> None:
    flock, arts = await board()
    store = flock.store

    async def q(**kw) -> list:
        items, total = await store.query_artifacts(FilterConfig(**kw), limit=100)
        assert total == len(items)
        return items

    assert [a.payload["n"] for a in await q(type_names={"Task"})] == [0, 1, 2, 3, 4, 5]
    assert len(await q(type_names="Done")) == 7  # a plain string is accepted
    assert len(await q(type_names={"Task", "Done"})) == 13
    assert {a.produced_by for a in await q(produced_by="worker")} == {"worker"}
    assert len(await q(produced_by="worker")) == 6
    assert len(await q(produced_by={"worker", "external"})) == 13
    odd = await q(correlation_id="odd")
    assert {a.correlation_id for a in odd} == {"odd"} and len(odd) == 6
    assert [a.payload["n"] for a in await q(correlation_id="odd", type_names="Task")] == [1, 3, 5]
    assert [a.payload["n"] for a in await q(tags={"hot"})] == [0, 1]
    assert [a.payload["n"] for a in await q(tags={"hot", "cold"})] == [0, 1]
    assert await q(tags={"cold"}) == []
    assert [a.payload["n"] for a in await q(visibility={"private"})] == [99]
    boss, intern = AgentIdentity(name="boss"), AgentIdentity(name="intern")
    assert len(await q(visible_to=boss)) == 13
    assert 99 not in [a.payload["n"] for a in await q(visible_to=intern)]
    assert len(await q(visible_to=intern)) == 12
    start = arts[3].created_at
    assert [a.payload["n"] for a in await q(type_names="Task", start=start)] == [3, 4, 5]
    assert [a.payload["n"] for a in await q(type_names="Task", end=arts[1].created_at)] == [0, 1]
    later = arts[-1].created_at + timedelta(days=1)
    assert await q(start=later) == []


async def test_query_artifacts_paginates_in_publication_order_with_totals() -> None:
    flock = Flock()
    published = await flock.publish_many([Task(n=i) for i in range(12)])
    pages = []
    offset = 0
    while True:
        items, total = await flock.store.query_artifacts(
            FilterConfig(type_names="Task"), limit=5, offset=offset
        )
        assert total == 12
        if not items:
            break
        pages.append(items)
        offset += len(items)
    assert [len(p) for p in pages] == [5, 5, 2]
    assert [a for p in pages for a in p] == published
    default, total = await flock.store.query_artifacts()
    assert total == 12 and default == published  # default limit 50, offset 0, no filters
    tail, total = await flock.store.query_artifacts(limit=3, offset=10)
    assert ([a.payload["n"] for a in tail], total) == ([10, 11], 12)


async def test_multi_type_queries_keep_publication_order() -> None:
    flock = Flock()
    order = []
    for i in range(6):
        order.append(await flock.publish(Task(n=i) if i % 3 else Done(n=i)))
    items, total = await flock.store.query_artifacts(FilterConfig(type_names={"Task", "Done"}), limit=100)
    assert items == order and total == 6


async def test_count() -> None:
    flock, _ = await board()
    assert await flock.store.count() == 13
    assert await flock.store.count(FilterConfig(type_names="Task", correlation_id="even")) == 3
    assert await flock.store.count(FilterConfig(visible_to=AgentIdentity(name="intern"))) == 12


async def test_store_rejects_duplicate_ids() -> None:
    flock, arts = await board()
    with pytest.raises(DuplicateArtifactError):
        await flock.store.put(arts[0])
    assert await flock.store.count() == 13


async def test_tenant_filtering_through_visible_to() -> None:
    flock = Flock()
    await flock.publish(Task(n=1), visibility=TenantVisibility(tenant_id="acme"))
    await flock.publish(Task(n=2), visibility=TenantVisibility(tenant_id="globex"))
    await flock.publish(Task(n=3))
    acme = AgentIdentity(name="a", tenant_id="acme")
    items, total = await flock.store.query_artifacts(FilterConfig(visible_to=acme))
    assert ([a.payload["n"] for a in items], total) == ([1, 3], 2)
