"""PostgresStore beyond the protocol: migrations, two processes' stores on one board, typed errors,
and a Flock on it. Runs against a real PostgreSQL server (the ``postgres_server`` fixture)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import anyio
import pytest
from pydantic import BaseModel
from test_conformance import filled, outputs_of, record_for

from flock import ConfigurationError, Flock, FlockClosedError, StoreError, flock_type

pytestmark = pytest.mark.anyio
psycopg = pytest.importorskip("psycopg", reason="psycopg is not installed: pip install 'flock[postgres]'")


@flock_type(name="pg_test.Order")
class Order(BaseModel):
    item: str
    qty: int


@flock_type(name="pg_test.Invoice")
class Invoice(BaseModel):
    item: str
    total: float


def store(dsn: str, **kw: Any) -> Any:
    from flock import PostgresStore

    return PostgresStore(dsn, **kw)


async def test_two_stores_on_one_board_see_each_others_writes(postgres_dsn: str) -> None:
    async with store(postgres_dsn) as a, store(postgres_dsn) as b:
        arts = await filled(a, 5)
        assert await b.list() == arts
        record = record_for(arts[:1])
        await b.record_activation(record)
        assert await a.in_flight() == [record]
        await a.commit_activation(record, outputs_of(record, arts[:1]))
        assert await b.in_flight() == [] and await b.count() == 7
        assert await b.consumptions() == {(arts[0].id, "writer", 0)}


async def test_concurrent_commits_each_commit_once_and_a_failing_one_fails_alone(postgres_dsn: str) -> None:
    # Activations that finish together share one statement (group commit): each still commits
    # all or nothing, a re-delivery publishes nothing twice, and an error reaches only its caller.
    from flock import FilterConfig
    from flock._stores.store import ActivationRecord

    async with store(postgres_dsn) as s:
        arts = await filled(s, 40)
        records = [record_for([arts[i], arts[i + 20]]) for i in range(20)]
        bad = ActivationRecord(records[7].id, "writer\x00", 0, records[7].input_ids)  # NUL: refused
        outcomes: dict[Any, str] = {}
        hot_before = await s.count(FilterConfig(tags=frozenset({"hot"})))

        async def commit(record: ActivationRecord, n: int, key: Any) -> None:
            inputs = [a for a in arts if a.id in record.input_ids]
            try:
                await s.commit_activation(record, outputs_of(records[n], inputs))
                outcomes[key] = "ok"
            except StoreError:
                outcomes[key] = "error"

        async with anyio.create_task_group() as tg:
            for i, record in enumerate(records):
                tg.start_soon(commit, bad if i == 7 else record, i, i)
            for i in range(5):  # the same activations again, at the same time
                tg.start_soon(commit, records[i], i, (i, "again"))
        assert outcomes.pop(7) == "error" and set(outcomes.values()) == {"ok"} and len(outcomes) == 24
        assert await s.count() == 40 + 19 * 2
        assert await s.consumptions() == {
            (i, "writer", 0) for n, r in enumerate(records) if n != 7 for i in r.input_ids
        }
        assert await s.in_flight() == []
        hot = FilterConfig(tags=frozenset({"hot"}))
        assert await s.count(hot) == hot_before + 19  # every first output is tagged "hot"
        expected = [o for n, r in enumerate(records) if n != 7 for o in outputs_of(r, [])]
        stored = await s.get_many(o.id for o in expected)
        assert [(a.id, a.tags, a.payload) for a in stored] == [(o.id, o.tags, o.payload) for o in expected]


async def test_schemas_keep_boards_apart_and_migrate_once(postgres_dsn: str) -> None:
    async with store(postgres_dsn, schema="one") as one, store(postgres_dsn, schema="two") as two:
        await filled(one, 3)
        assert await two.count() == 0
        stats = await one.stats()
        assert stats["schema_version"] == 3 and stats["artifacts"] == 3 and stats["queued"] == 0
    async with store(postgres_dsn, schema="one") as again:  # reopening migrates nothing, keeps all
        assert await again.count() == 3


async def test_a_board_from_a_newer_flock_is_refused(postgres_dsn: str) -> None:
    async with store(postgres_dsn, schema="future") as s:
        await s.count()
    with psycopg.connect(postgres_dsn, autocommit=True) as conn:
        conn.execute("UPDATE future.schema_version SET version = 99")
    async with store(postgres_dsn, schema="future") as s:
        with pytest.raises(ConfigurationError, match="schema version 99, newer than this Flock"):
            await s.count()


def test_bad_arguments_are_refused_when_declared() -> None:
    pytest.importorskip("psycopg_pool")
    with pytest.raises(ConfigurationError, match="plain lower-case name"):
        store("postgresql://localhost/x", schema="Robert'); DROP TABLE students;--")
    with pytest.raises(ConfigurationError, match="max_connections"):
        store("postgresql://localhost/x", max_connections=0)
    with pytest.raises(ConfigurationError, match="not a PostgreSQL DSN"):
        store("host=localhost port")


async def test_an_unreachable_server_is_a_store_error_that_names_it() -> None:
    import socket

    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    unreachable = store(f"postgresql://nobody@127.0.0.1:{port}/board?connect_timeout=2")
    with pytest.raises(StoreError, match=rf"127\.0\.0\.1:{port}/board.*cannot be reached"):
        await unreachable.count()
    await unreachable.close()


async def test_a_closed_store_refuses_work(postgres_dsn: str) -> None:
    s = store(postgres_dsn)
    await s.count()
    await s.close()
    await s.close()  # twice is fine
    with pytest.raises(FlockClosedError, match="closed"):
        await s.count()


async def test_retention_keeps_the_inputs_of_work_in_flight(postgres_dsn: str) -> None:
    async with store(postgres_dsn) as s:
        arts = await filled(s, 6)  # created in 2020
        await s.record_activation(record_for(arts[:1]))
        assert await s.delete_before(datetime(2021, 1, 1, tzinfo=UTC)) == 5
        assert [a.id for a in await s.list()] == [arts[0].id]
        assert [a.id for a in await s.recent(5)] == [arts[0].id]


async def test_a_flock_runs_on_it_and_a_new_process_sees_the_board(postgres_dsn: str) -> None:
    flock = Flock(store=store(postgres_dsn))
    flock.agent("billing").consumes(Order).publishes(Invoice).calls(
        lambda o: Invoice(item=o.item, total=o.qty * 2.5)
    )
    await flock.publish(Order(item="tea", qty=4))
    await flock.run_until_idle()
    await flock.store.close()
    async with store(postgres_dsn) as later:
        assert await later.get_by_type(Invoice) == [Invoice(item="tea", total=10.0)]
        assert await later.in_flight() == [] and len(await later.consumptions()) == 1


@flock_type(name="pg_test.Memo")
class Memo(BaseModel):
    text: str


async def test_resume_rechecks_shared_work_runs_it_once_and_leaves_other_agents_work_queued(
    postgres_dsn: str, caplog: pytest.LogCaptureFixture
) -> None:
    from flock import LabelledVisibility

    first = Flock(store=store(postgres_dsn))
    first.agent("reader").labels("hr").consumes(Memo).calls(lambda m: None)
    first.agent("auditor").consumes(Memo).calls(lambda m: None)
    await first.publish(Memo(text="payroll"), visibility=LabelledVisibility(required_labels={"hr"}))
    await first.publish(Memo(text="menu"))
    await first.store.close()  # queued on the board (reader twice, auditor once), nothing ran

    # A worker that declares only the reader, no longer labelled "hr": the payroll memo is refused
    # (recorded as failed), the menu runs once, and the auditor's work waits for its own workers.
    later = Flock(store=store(postgres_dsn))
    ran: list[str] = []
    later.agent("reader").consumes(Memo).calls(lambda m: ran.append(m.text))
    summary = await later.resume()
    assert ran == ["menu"]
    assert [(e.agent, e.kind) for e in summary.errors] == [("reader", "subscription_error")]
    assert not [r for r in caplog.records if "auditor" in r.getMessage()]
    assert (await later.store.stats())["queued"] == 1
    await later.store.close()

    auditing = Flock(store=store(postgres_dsn))
    audited: list[str] = []
    auditing.agent("auditor").consumes(Memo).calls(lambda m: audited.append(m.text))
    assert (await auditing.resume()).errors == []
    assert audited == ["menu"] and ran == ["menu"]
    assert (await auditing.store.stats())["queued"] == 0
    assert await auditing.store.in_flight() == []
    await auditing.store.close()


async def test_per_agent_bounds_hold_when_claiming_from_the_shared_queue(postgres_dsn: str) -> None:
    peaks: dict[str, int] = {}
    running: dict[str, int] = {"serial": 0, "wide": 0}

    def gauge(name: str) -> Any:
        async def run(memo: Memo) -> None:
            running[name] += 1
            peaks[name] = max(peaks.get(name, 0), running[name])
            await anyio.sleep(0.01)
            running[name] -= 1

        return run

    flock = Flock(store=store(postgres_dsn), max_concurrency=8)
    flock.agent("serial").consumes(Memo).calls(gauge("serial")).max_concurrency(1)
    flock.agent("wide").consumes(Memo).calls(gauge("wide")).max_concurrency(3)
    await flock.publish_many([Memo(text=str(i)) for i in range(12)])
    summary = await flock.run_until_idle()
    assert summary.agents_run == {"serial": 12, "wide": 12}
    assert peaks == {"serial": 1, "wide": 3}
    assert (await flock.store.stats())["queued"] == 0
    await flock.store.close()
