"""Run conditions (Until) and activation conditions (When): store counts, composition, deferral."""

from __future__ import annotations

import builtins
from pathlib import Path
from typing import Any

import anyio
import pytest
from pydantic import BaseModel

from flock import (
    Artifact,
    Condition,
    FilterConfig,
    Flock,
    InMemoryStore,
    ManualClock,
    SQLiteStore,
    Until,
    When,
    WorkflowError,
    flock_type,
)

pytestmark = pytest.mark.anyio


@flock_type(name="sched.Doc")
class Doc(BaseModel):
    n: int
    status: str = "draft"


@flock_type(name="sched.Note")
class Note(BaseModel):
    n: int


@flock_type(name="sched.Vote")
class Vote(BaseModel):
    n: int


class CountingStore(InMemoryStore):
    """An in-memory store that records which read methods were called."""

    def __init__(self) -> None:
        super().__init__()
        self.reads: list[str] = []

    async def count(self, filters: FilterConfig | None = None) -> int:
        self.reads.append("count")
        return await super().count(filters)

    async def list(self) -> builtins.list[Artifact]:
        self.reads.append("list")
        return await super().list()

    async def query_artifacts(
        self, filters: FilterConfig | None = None, limit: int = 50, offset: int = 0
    ) -> tuple[builtins.list[Artifact], int]:
        self.reads.append("query_artifacts")
        return await super().query_artifacts(filters, limit, offset)

    async def get_by_type(self, model: Any, *, correlation_id: str | None = None) -> builtins.list[Any]:
        self.reads.append("get_by_type")
        return await super().get_by_type(model, correlation_id=correlation_id)


async def holds(flock: Flock, condition: Condition) -> bool:
    """Evaluate a condition through the public run API: an idle flock answers at once."""
    return await flock.run_until(condition, timeout=5)


# ----------------------------------------------------------------------------- run conditions


async def test_run_until_idle_condition() -> None:
    flock = Flock()
    flock.agent("n").consumes(Doc).publishes(Note).calls(lambda d: Note(n=d.n))
    await flock.publish_many([Doc(n=i) for i in range(3)])
    assert await flock.run_until(Until.idle(), timeout=5) is True
    assert len(await flock.store.get_by_type(Note)) == 3


async def test_artifact_count_comparisons() -> None:
    flock = Flock()
    await flock.publish_many([Doc(n=i) for i in range(4)])
    assert await holds(flock, Until.artifact_count(Doc).at_least(4))
    assert not await holds(flock, Until.artifact_count(Doc).at_least(5))
    assert await holds(flock, Until.artifact_count(Doc).at_most(4))
    assert not await holds(flock, Until.artifact_count(Doc).at_most(3))
    assert await holds(flock, Until.artifact_count(Doc).exactly(4))
    assert not await holds(flock, Until.artifact_count(Doc).exactly(3))
    assert await holds(flock, Until.artifact_count(Note).exactly(0))


@pytest.mark.parametrize("durable", [False, True], ids=["memory", "sqlite"])
async def test_artifact_count_filters_by_correlation_tags_and_producer(durable: bool, tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "board.db") if durable else InMemoryStore()
    try:
        await check_count_filters(Flock(store=store))
    finally:
        if isinstance(store, SQLiteStore):
            await store.close()


async def check_count_filters(flock: Flock) -> None:
    flock.agent("noter").consumes(Doc, tags="urgent").publishes(Note).calls(lambda d: Note(n=d.n))
    await flock.publish_many([Doc(n=1), Doc(n=2)], correlation_id="w1", tags={"urgent"})
    await flock.publish(Doc(n=3), correlation_id="w2", tags={"later", "urgent"})
    await flock.publish(Doc(n=4), correlation_id="w2")
    await flock.run_until_idle()
    assert await holds(flock, Until.artifact_count(Doc, correlation_id="w1").exactly(2))
    assert await holds(flock, Until.artifact_count(Doc, correlation_id="w2").exactly(2))
    assert await holds(flock, Until.artifact_count(Doc, tags="urgent").exactly(3))
    assert await holds(flock, Until.artifact_count(Doc, tags={"later", "other"}).exactly(1))
    assert await holds(flock, Until.artifact_count(Note, produced_by="noter").exactly(3))
    assert await holds(flock, Until.artifact_count(Note, produced_by="noter", correlation_id="w2").exactly(1))
    assert await holds(flock, Until.artifact_count(Doc, produced_by="noter").exactly(0))


async def test_exists_and_none() -> None:
    flock = Flock()
    await flock.publish(Doc(n=1), correlation_id="w")
    assert await holds(flock, Until.exists(Doc))
    assert await holds(flock, Until.exists(Doc, correlation_id="w"))
    assert not await holds(flock, Until.exists(Doc, correlation_id="elsewhere"))
    assert not await holds(flock, Until.exists(Note))
    assert await holds(flock, Until.none(Note))
    assert not await holds(flock, Until.none(Doc))


async def test_any_field() -> None:
    flock = Flock()
    await flock.publish_many([Doc(n=i) for i in range(3)])
    assert not await holds(flock, Until.any_field(Doc, field="status", predicate=lambda s: s == "final"))
    await flock.publish(Doc(n=9, status="final"))
    assert await holds(flock, Until.any_field(Doc, field="status", predicate=lambda s: s == "final"))
    assert await holds(flock, Until.any_field(Doc, field="n", predicate=lambda n: n > 8))
    assert not await holds(flock, Until.any_field(Note, field="n", predicate=lambda n: True))


async def test_workflow_error() -> None:
    flock = Flock()

    def fail(doc: Doc) -> Note:
        raise RuntimeError("boom")

    flock.agent("bad").consumes(Doc).publishes(Note).calls(fail)
    assert not await holds(flock, Until.workflow_error())
    await flock.publish(Doc(n=1))
    assert await flock.run_until(Until.workflow_error(), timeout=5)
    assert [e.kind for e in await flock.store.get_by_type(WorkflowError)] == ["agent_error"]


async def test_and_or_not() -> None:
    flock = Flock()
    await flock.publish_many([Doc(n=1), Doc(n=2)])
    two_docs = Until.artifact_count(Doc).exactly(2)
    a_note = Until.exists(Note)
    assert not await holds(flock, two_docs & a_note)
    assert await holds(flock, two_docs | a_note)
    assert await holds(flock, two_docs & ~a_note)
    assert not await holds(flock, ~two_docs)
    assert await holds(flock, ~(two_docs & a_note))
    assert await holds(flock, (a_note | two_docs) & ~Until.workflow_error())


async def test_run_until_stops_as_soon_as_the_condition_holds() -> None:
    flock = Flock()
    flock.agent("n").consumes(Doc).publishes(Note).calls(lambda d: Note(n=d.n)).max_concurrency(1)
    await flock.publish_many([Doc(n=i) for i in range(20)])
    assert await flock.run_until(Until.artifact_count(Note).at_least(3), timeout=5)
    done = len(await flock.store.get_by_type(Note))
    assert 3 <= done < 20  # the rest is still queued
    summary = await flock.run_until_idle()
    assert len(await flock.store.get_by_type(Note)) == 20
    assert summary.activations == 20  # a summary covers everything since the last run_until_idle


async def test_run_until_returns_false_when_idle_without_the_condition() -> None:
    flock = Flock()
    flock.agent("n").consumes(Doc).publishes(Note).calls(lambda d: Note(n=d.n))
    await flock.publish(Doc(n=1))
    assert await flock.run_until(Until.artifact_count(Note).at_least(2)) is False  # no timeout needed


async def test_run_until_timeout_returns_false() -> None:
    flock = Flock()
    gate = anyio.Event()

    async def stuck(doc: Doc) -> Note:
        await gate.wait()
        return Note(n=doc.n)

    flock.agent("stuck").consumes(Doc).publishes(Note).calls(stuck)
    await flock.publish(Doc(n=1))
    assert await flock.run_until(Until.exists(Note), timeout=0.05) is False
    gate.set()
    assert await flock.run_until(Until.exists(Note), timeout=5) is True  # the work was kept


async def test_conditions_over_ten_thousand_artifacts_use_store_counts() -> None:
    store = CountingStore()
    flock = Flock(store=store)
    await flock.publish_many([Doc(n=i) for i in range(5_000)], correlation_id="big")
    await flock.publish_many([Doc(n=i) for i in range(4_999)], tags={"rest"})
    imported = Artifact(type="sched.Doc", payload={"n": -1}, produced_by="importer", tags=frozenset({"rest"}))
    await flock.publish(imported)
    await flock.publish_many([Note(n=i) for i in range(3)], correlation_id="big")
    store.reads.clear()

    checks: list[tuple[Condition, bool]] = [
        (Until.artifact_count(Doc).exactly(10_000), True),
        (Until.artifact_count(Doc).at_least(10_001), False),
        (Until.artifact_count(Doc).at_most(9_999), False),
        (Until.artifact_count(Doc, correlation_id="big").exactly(5_000), True),
        (Until.artifact_count(Doc, tags="rest").exactly(5_000), True),
        (Until.artifact_count(Doc, produced_by="importer").exactly(1), True),
        (Until.artifact_count(Note, correlation_id="big").exactly(3), True),
        (Until.exists(Doc, produced_by="nobody"), False),
        (Until.none(Vote), True),
        (Until.exists(Doc) & ~Until.workflow_error(), True),
    ]
    for condition, expected in checks:
        assert await holds(flock, condition) is expected, condition
    assert store.reads and set(store.reads) == {"count"}  # no listing, no paging, no loading


async def test_activation_conditions_count_with_the_store() -> None:
    store = CountingStore()
    flock = Flock(store=store)
    fired: list[int] = []
    flock.agent("a").consumes(Doc, activation=When.correlation(Vote).count_at_least(3)).calls(
        lambda d: fired.append(d.n)
    )
    await flock.publish_many([Vote(n=i) for i in range(2)], correlation_id="w")
    await flock.publish(Doc(n=1), correlation_id="w")
    store.reads.clear()
    await flock.publish(Vote(n=2), correlation_id="w")
    assert set(store.reads) == {"count"}
    await flock.run_until_idle()
    assert fired == [1]


# ----------------------------------------------------------------------------- activation conditions


def voting_flock() -> tuple[Flock, list[tuple[str, int]]]:
    flock = Flock()
    fired: list[tuple[str, int]] = []

    def decide(doc: Doc, inputs: Any) -> None:
        fired.append((inputs.artifacts[0].correlation_id, doc.n))

    flock.agent("decider").consumes(Doc, activation=When.correlation(Vote).count_at_least(2)).calls(decide)
    return flock, fired


async def test_an_unmet_activation_condition_defers_and_counts() -> None:
    flock, fired = voting_flock()
    await flock.publish(Doc(n=1), correlation_id="w")
    await flock.publish(Vote(n=1), correlation_id="w")
    summary = await flock.run_until_idle()
    assert fired == []
    assert summary.deferred == 1
    assert "deferred:  1" in str(summary)


async def test_a_deferred_artifact_is_rechecked_when_its_workflow_grows() -> None:
    flock, fired = voting_flock()
    await flock.publish_many([Doc(n=1), Doc(n=2)], correlation_id="w")
    await flock.run_until_idle()
    await flock.publish_many([Vote(n=1), Vote(n=2)], correlation_id="w")
    summary = await flock.run_until_idle()
    assert fired == [("w", 1), ("w", 2)]  # every held artifact, in arrival order
    assert summary.deferred == 0 and summary.activations == 2


async def test_a_met_condition_lets_artifacts_through_at_once() -> None:
    flock, fired = voting_flock()
    await flock.publish_many([Vote(n=1), Vote(n=2)], correlation_id="w")
    await flock.publish(Doc(n=5), correlation_id="w")
    summary = await flock.run_until_idle()
    assert fired == [("w", 5)]
    assert summary.deferred == 0


async def test_activation_conditions_are_per_workflow() -> None:
    flock, fired = voting_flock()
    await flock.publish(Doc(n=1), correlation_id="a")
    await flock.publish(Doc(n=2), correlation_id="b")
    await flock.publish_many([Vote(n=1), Vote(n=2)], correlation_id="b")
    summary = await flock.run_until_idle()
    assert fired == [("b", 2)]
    assert summary.deferred == 1  # a's document is still held, not dropped
    await flock.publish_many([Vote(n=3), Vote(n=4)], correlation_id="a")
    await flock.run_until_idle()
    assert fired == [("b", 2), ("a", 1)]


async def test_a_condition_on_the_consumed_type_itself() -> None:
    flock = Flock()
    fired: list[int] = []
    flock.agent("third").consumes(Doc, activation=When.correlation(Doc).count_at_least(3)).calls(
        lambda d: fired.append(d.n)
    )
    await flock.publish_many([Doc(n=i) for i in range(4)], correlation_id="w")
    summary = await flock.run_until_idle()
    assert fired == [0, 1, 2, 3]
    assert summary.deferred == 0


async def test_a_global_activation_condition_is_rechecked_on_any_publish() -> None:
    flock = Flock()
    fired: list[int] = []
    flock.agent("go").consumes(Doc, activation=Until.exists(Vote)).calls(lambda d: fired.append(d.n))
    await flock.publish(Doc(n=1), correlation_id="a")
    assert (await flock.run_until_idle()).deferred == 1
    await flock.publish(Vote(n=1), correlation_id="b")  # another workflow satisfies the condition
    summary = await flock.run_until_idle()
    assert fired == [1]
    assert summary.deferred == 0


async def test_activation_conditions_work_with_manual_clock_and_gates() -> None:
    flock = Flock(clock=ManualClock())
    fired: list[tuple[int, int]] = []
    flock.agent("pair").consumes(Doc, Note, activation=When.correlation(Vote).count_at_least(1)).calls(
        lambda d, n: fired.append((d.n, n.n))
    )
    await flock.publish(Doc(n=1), correlation_id="w")
    await flock.publish(Note(n=2), correlation_id="w")
    await flock.run_until_idle()
    assert fired == []
    await flock.publish(Vote(n=0), correlation_id="w")
    await flock.run_until_idle()
    assert fired == [(1, 2)]


def test_activation_must_be_a_condition() -> None:
    from flock import ConfigurationError

    with pytest.raises(ConfigurationError, match="count_at_least"):
        Flock().agent("x").consumes(Doc, activation=lambda: True)


async def test_a_raising_activation_condition_is_reported_not_raised() -> None:
    flock = Flock()
    fired: list[int] = []
    broken = Until.any_field(Vote, field="n", predicate=lambda n: n > "x")  # int > str raises
    flock.agent("a").consumes(Doc, activation=broken).calls(lambda d: fired.append(d.n))
    flock.agent("b").consumes(Doc).calls(lambda d: fired.append(-d.n))
    await flock.publish(Doc(n=1))  # no vote yet: the predicate is never called, the doc is held
    await flock.publish(Vote(n=1))  # now the re-check raises
    await flock.publish(Doc(n=2))  # and so does the check of a new doc
    summary = await flock.run_until_idle()
    assert sorted(fired) == [-2, -1]  # the other agent is unaffected
    assert [e.kind for e in summary.errors] == ["subscription_error", "subscription_error"]
    assert all(e.agent == "a" and e.error_type == "TypeError" for e in summary.errors)
    assert summary.deferred == 0  # reported once each, not re-checked forever


async def test_an_activation_condition_counts_only_what_the_agent_may_see() -> None:
    # Another tenant (over REST a client chooses its correlation id) or a private vote must not
    # release a tenant agent's held documents: the agent acts on what it may see.
    from flock import PrivateVisibility, TenantVisibility

    flock = Flock()
    fired: list[int] = []
    flock.agent("acme-decider").tenant("acme").consumes(
        Doc, activation=When.correlation(Vote).count_at_least(2)
    ).calls(lambda d: fired.append(d.n))
    acme, globex = TenantVisibility(tenant_id="acme"), TenantVisibility(tenant_id="globex")
    await flock.publish(Doc(n=1), correlation_id="w", visibility=acme)
    await flock.publish(Vote(n=1), correlation_id="w", visibility=acme)
    await flock.publish(Vote(n=2), correlation_id="w", visibility=globex)
    await flock.publish(Vote(n=3), correlation_id="w", visibility=PrivateVisibility(agents={"auditor"}))
    summary = await flock.run_until_idle()
    assert fired == [] and summary.deferred == 1
    await flock.publish(Vote(n=4), correlation_id="w")  # public: the agent sees a second vote
    await flock.run_until_idle()
    assert fired == [1]
