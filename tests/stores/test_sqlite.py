"""SQLiteStore beyond the protocol: the file, reopening it, settings, schema, retention, and a Flock on it."""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import anyio
import pytest
from pydantic import BaseModel
from test_conformance import filled, make, outputs_of, record_for

from flock import (
    ConfigurationError,
    FilterConfig,
    Flock,
    FlockClosedError,
    PrivateVisibility,
    SQLiteStore,
    flock_type,
)
from flock._stores.sqlite_schema import MIGRATIONS

pytestmark = pytest.mark.anyio


@flock_type(name="sqlite_test.Order")
class Order(BaseModel):
    item: str
    qty: int


@flock_type(name="sqlite_test.Invoice")
class Invoice(BaseModel):
    item: str
    total: float


@flock_type(name="sqlite_test.Receipt")
class Receipt(BaseModel):
    text: str


def shop(path: Path) -> Flock:
    flock = Flock(store=SQLiteStore(path))
    flock.agent("billing").consumes(Order).publishes(Invoice).calls(
        lambda o: Invoice(item=o.item, total=o.qty * 2.5)
    )
    flock.agent("cashier").consumes(Invoice).publishes(Receipt).calls(
        lambda i: Receipt(text=f"{i.item}: {i.total:.2f}")
    )
    return flock


async def test_every_field_survives_reopening_the_file(tmp_path: Path) -> None:
    path = tmp_path / "board.db"
    async with SQLiteStore(path) as store:
        arts = await filled(store, 30)  # every visibility kind, tags, lineage-free and timed
    async with SQLiteStore(path) as again:
        assert await again.list() == arts
        assert [await again.get(a.id) for a in arts] == arts
        f = FilterConfig(tags=frozenset({"hot"}), start=arts[3].created_at)
        assert (await again.query_artifacts(f))[0] == [a for a in arts if f.matches(a)]


async def test_a_pipeline_runs_and_its_board_survives_reopening(tmp_path: Path) -> None:
    path = tmp_path / ".flock" / "board.db"  # parent folders are created
    flock = shop(path)
    for i in range(5):
        await flock.publish(Order(item=f"item{i}", qty=i), tags={"web"})
    summary = await flock.run_until_idle()
    assert summary.activations == 10 and not summary.errors
    before = await flock.store.list()
    consumed = await flock.store.consumptions()
    await flock.store.close()

    reopened = shop(path)
    assert await reopened.store.list() == before
    assert (
        await reopened.store.consumptions()
        == consumed
        == {
            (a.id, agent, 0)
            for a in before
            for agent in ("billing", "cashier")
            if a.type == f"sqlite_test.{'Order' if agent == 'billing' else 'Invoice'}"
        }
    )
    assert await reopened.store.in_flight() == []
    receipts = await reopened.store.get_by_type(Receipt)
    assert sorted(r.text for r in receipts) == [f"item{i}: {i * 2.5:.2f}" for i in range(5)]
    assert (await reopened.resume()).activations == 0  # nothing was left to do
    assert await reopened.store.count() == 15
    await reopened.store.close()


async def test_resume_finishes_work_that_was_queued_but_never_ran(tmp_path: Path) -> None:
    path = tmp_path / "board.db"
    flock = shop(path)
    orders = [await flock.publish(Order(item="tea", qty=q)) for q in (1, 2, 3)]
    assert len(await flock.store.in_flight()) == 3  # queued by publish, never run
    await flock.store.close()  # the process "stops" here

    restarted = shop(path)
    summary = await restarted.resume()
    assert summary.activations == 6
    store = restarted.store
    assert await store.in_flight() == []
    assert sorted(i.total for i in await store.get_by_type(Invoice)) == [2.5, 5.0, 7.5]
    assert {(o.id, "billing", 0) for o in orders} <= await store.consumptions()
    await store.close()


async def test_work_published_before_resume_runs_once(tmp_path: Path) -> None:
    path = tmp_path / "board.db"
    flock = shop(path)
    await flock.publish(Order(item="left over", qty=1))  # queued, then the process "stops"
    await flock.store.close()

    restarted = Flock(store=SQLiteStore(path))
    calls: list[str] = []

    def bill(o: Order) -> Invoice:
        calls.append(o.item)
        return Invoice(item=o.item, total=1.0)

    restarted.agent("billing").consumes(Order).publishes(Invoice).calls(bill)
    await restarted.publish(Order(item="new", qty=1))  # before resume(): fine, runs once
    await restarted.resume()
    assert sorted(calls) == ["left over", "new"]
    assert await restarted.store.in_flight() == []
    await restarted.store.close()


async def test_resume_needs_no_journal_entry_for_work_it_can_rederive(tmp_path: Path) -> None:
    # record_activation is write-behind: a crash may lose the newest entries. Resume finds that
    # work again from the stored artifacts and the consumption records.
    path = tmp_path / "board.db"
    flock = shop(path)
    await flock.publish(Order(item="tea", qty=2))
    await flock.store.close()
    with sqlite3.connect(path) as conn:
        conn.execute("DELETE FROM activations")
    restarted = shop(path)
    assert (await restarted.resume()).activations == 2
    assert [i.total for i in await restarted.store.get_by_type(Invoice)] == [5.0]
    await restarted.store.close()


@flock_type(name="sqlite_test.Ping")
class Ping(BaseModel):
    n: int


def on_disk(path: Path) -> tuple[int, int]:
    """(consumption records, activations in flight) as another connection sees the file."""
    with sqlite3.connect(path) as conn:
        (consumed,) = conn.execute("SELECT COUNT(*) FROM consumptions").fetchone()
        (in_flight,) = conn.execute("SELECT COUNT(*) FROM activations").fetchone()
    return consumed, in_flight


async def test_a_run_that_returns_has_what_it_did_not_wait_for_on_disk(tmp_path: Path) -> None:
    # Activations that publish nothing do not wait for their commit; run_until_idle() flushes.
    path = tmp_path / "board.db"
    flock = Flock(store=SQLiteStore(path))
    for name in ("a", "b", "c"):
        flock.agent(name).consumes(Ping).calls(lambda p: None)
    for n in range(40):
        await flock.publish(Ping(n=n))
    await flock.run_until_idle()
    assert on_disk(path) == (120, 0)
    store = flock.store
    extra = await flock.publish(Ping(n=40))  # queued for a, b and c: three journal records
    silent = record_for([extra], "a")
    await store.commit_activation(silent, [], wait=False)
    await store.flush()
    assert on_disk(path) == (121, 2)
    await store.commit_activation(record_for([extra], "b"), [], wait=False)
    await flock.shutdown()  # flushes too
    assert on_disk(path) == (122, 1)
    await store.close()


async def test_durability_settings(tmp_path: Path) -> None:
    settings: list[tuple[Any, int]] = [("process", 1), ("power", 2)]  # synchronous NORMAL, FULL
    for setting, level in settings:
        async with SQLiteStore(tmp_path / f"{setting}.db", durability=setting) as store:
            await store.put(make(1))
            (found,) = await store._read(lambda c: c.execute("PRAGMA synchronous").fetchone())
            (mode,) = await store._read(lambda c: c.execute("PRAGMA journal_mode").fetchone())
            assert (found, mode) == (level, "wal")
    with pytest.raises(ConfigurationError, match=r"'process'.*'power'"):
        SQLiteStore(tmp_path / "x.db", durability="disk")  # type: ignore[arg-type]


async def test_schema_is_versioned_and_a_newer_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "board.db"
    async with SQLiteStore(path):
        pass
    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA user_version").fetchone() == (len(MIGRATIONS),)
        indexes = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'index'")}
        conn.execute(f"PRAGMA user_version = {len(MIGRATIONS) + 1}")
    assert {"artifacts_type", "artifacts_correlation", "artifacts_producer", "artifacts_created"} <= indexes
    with pytest.raises(ConfigurationError, match="newer"):
        SQLiteStore(path)


async def test_a_version_1_file_is_migrated_with_its_data_intact(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "board.db"
    with monkeypatch.context() as patch:  # write the file as the Flock that had only migration 1
        patch.setattr("flock._stores.sqlite_schema.MIGRATIONS", MIGRATIONS[:1])
        async with SQLiteStore(path) as old:
            arts = await filled(old, 12)
            record = record_for(arts[:2])
            outputs = outputs_of(record, arts[:2])
            await old.commit_activation(record, outputs)
            pending = record_for(arts[2:3], agent="reviewer")
            await old.record_activation(pending)
            before = (await old.list(), await old.consumptions(), await old.in_flight())
    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA user_version").fetchone() == (1,)
    async with SQLiteStore(path) as store:
        assert (await store.stats())["schema_version"] == len(MIGRATIONS) == 3
        assert (await store.list(), await store.consumptions(), await store.in_flight()) == before
        assert await store.list() == [*arts, *outputs]
        assert len(await store.consumptions()) == 2
        assert [r.id for r in await store.in_flight()] == [pending.id]
    with sqlite3.connect(path) as conn:
        indexes = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'index'")}
    assert "consumptions_activation" not in indexes
    assert "artifacts_type" in indexes


async def test_a_closed_store_refuses_work_and_closing_twice_is_fine(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "board.db")
    await store.close()
    await store.close()
    with pytest.raises(FlockClosedError):
        await store.put(make(1))
    with pytest.raises(FlockClosedError):
        await store.list()


async def test_concurrent_writes_all_land(tmp_path: Path) -> None:
    async with SQLiteStore(tmp_path / "board.db") as store:
        arts = [make(i) for i in range(300)]
        async with anyio.create_task_group() as tg:
            for a in arts:
                tg.start_soon(store.put, a)
        assert {a.id for a in await store.list()} == {a.id for a in arts}


async def test_a_failing_write_does_not_undo_its_batch_neighbours(tmp_path: Path) -> None:
    async with SQLiteStore(tmp_path / "board.db") as store:
        first = make(0)
        await store.put(first)
        results: dict[int, str] = {}

        async def put(i: int) -> None:
            try:
                await store.put(make(i, id=first.id) if i == 5 else make(i))
                results[i] = "ok"
            except Exception as exc:
                results[i] = type(exc).__name__

        async with anyio.create_task_group() as tg:
            for i in range(1, 10):
                tg.start_soon(put, i)
        assert results == {i: "DuplicateArtifactError" if i == 5 else "ok" for i in range(1, 10)}
        assert await store.count() == 9
        assert await store.get(first.id) == first


async def test_delete_before_keeps_consumption_records_consistent(tmp_path: Path) -> None:
    async with SQLiteStore(tmp_path / "board.db") as store:
        old = await filled(store, 6)  # created T0 + 0..5 minutes
        cutoff = old[3].created_at
        done = record_for(old[:2])
        outs = outputs_of(done, old[:2])  # created T0 + 100 minutes: newer than the cutoff
        await store.commit_activation(done, outs)
        waiting = record_for(old[2:3], "reviewer")
        await store.record_activation(waiting)  # still in flight: its input must stay

        assert await store.delete_before(cutoff) == 2  # old[0], old[1]; old[2] is protected
        left = {a.id for a in await store.list()}
        assert left == {a.id for a in old[2:]} | {o.id for o in outs}
        # The consumption records went with their artifacts; no remaining artifact lost its own.
        assert await store.consumptions() == set()
        assert [r.id for r in await store.in_flight()] == [waiting.id]
        assert await store.count(FilterConfig(tags=frozenset({"hot", "cold"}))) == sum(
            1 for a in old[2:] if a.tags & {"hot", "cold"}
        ) + sum(1 for o in outs if o.tags & {"hot", "cold"})
        await store.vacuum()
        assert await store.count() == 6


async def test_delete_before_never_removes_a_consumption_of_a_remaining_artifact(tmp_path: Path) -> None:
    async with SQLiteStore(tmp_path / "board.db") as store:
        arts = await filled(store, 4)
        late = record_for(arts[3:])
        await store.commit_activation(late, [])
        await store.delete_before(arts[3].created_at)
        assert await store.consumptions() == {(arts[3].id, "writer", 0)}


async def test_private_outputs_stay_private_after_reopening(tmp_path: Path) -> None:
    path = tmp_path / "board.db"
    flock = shop(path)
    await flock.publish(Order(item="secret", qty=1), visibility=PrivateVisibility(agents={"billing"}))
    await flock.run_until_idle()
    await flock.store.close()
    async with SQLiteStore(path) as store:
        invoices, _ = await store.query_artifacts(FilterConfig(type_names=frozenset({"sqlite_test.Invoice"})))
        assert [a.visibility for a in invoices] == [PrivateVisibility(agents={"billing"})]


async def test_time_filters_compare_instants_across_timezones(tmp_path: Path) -> None:
    async with SQLiteStore(tmp_path / "board.db") as store:
        a = make(1, created_at=datetime(2024, 1, 1, 12, tzinfo=UTC))
        await store.put(a)
        plus_one = datetime.fromisoformat("2024-01-01T13:00:00+01:00")  # the same instant
        assert (await store.query_artifacts(FilterConfig(start=plus_one, end=plus_one)))[0] == [a]


def test_one_store_serves_successive_event_loops(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "board.db")  # opened outside any event loop
    first, second = make(1), make(2)
    anyio.run(store.put, first)
    anyio.run(store.put, second)

    async def finish() -> list[Any]:
        found = await store.list()
        await store.close()
        return found

    assert anyio.run(finish) == [first, second]


async def test_a_write_whose_caller_is_cancelled_still_completes(tmp_path: Path) -> None:
    async with SQLiteStore(tmp_path / "board.db") as store:
        art = make(1)
        with anyio.CancelScope() as scope:
            scope.cancel()
            await store.put(art)  # queued, then waited for despite the cancellation
        assert await store.count(FilterConfig(type_names=frozenset({art.type}))) == 1
