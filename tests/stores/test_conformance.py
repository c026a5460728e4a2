"""The store conformance suite: one set of tests, run against every store (see conftest.STORES).

A store that passes keeps artifacts immutable and in publication order, answers every filter the
way :meth:`FilterConfig.matches` defines it (visibility included, with correct pagination), and
keeps the activation journal: idempotent re-delivery, in-flight activations, consumptions.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import uuid4

import pytest
from pydantic import BaseModel

from flock import (
    AfterVisibility,
    AgentIdentity,
    AllOfVisibility,
    Artifact,
    BlackboardStore,
    DuplicateArtifactError,
    FilterConfig,
    LabelledVisibility,
    PrivateVisibility,
    PublicVisibility,
    TenantVisibility,
    flock_type,
)
from flock._stores.store import ActivationRecord, output_id

pytestmark = pytest.mark.anyio

T0 = datetime(2020, 1, 1, tzinfo=UTC)


@flock_type(name="conformance.Note")
class Note(BaseModel):
    n: int


@flock_type(name="conformance.Memo")
class Memo(BaseModel):
    n: int


VISIBILITIES: list[Any] = [
    PublicVisibility(),
    PrivateVisibility(agents={"alice"}),
    TenantVisibility(tenant_id="acme"),
    LabelledVisibility(required_labels={"finance"}),
    AfterVisibility(ttl=timedelta(days=365 * 100)),  # not visible to anyone yet
    AfterVisibility(ttl=timedelta(seconds=0), then=PrivateVisibility(agents={"bob"})),
    AllOfVisibility(
        parts=(TenantVisibility(tenant_id="acme"), LabelledVisibility(required_labels={"finance"}))
    ),
]
IDENTITIES = [
    AgentIdentity(name="alice"),
    AgentIdentity(name="bob", labels=frozenset({"finance"}), tenant_id="acme"),
    AgentIdentity(name="carol", tenant_id="other"),
]


def make(i: int, **fields: Any) -> Artifact:
    """Artifact number ``i`` of a varied board: types, producers, workflows, tags, visibility, time."""
    model = Note if i % 3 else Memo
    defaults: dict[str, Any] = {
        "type": "conformance.Note" if model is Note else "conformance.Memo",
        "payload": {"n": i},
        "produced_by": ("external", "writer", "reviewer")[i % 3],
        "correlation_id": f"wf-{i % 4}",
        "partition_key": f"p{i % 2}",
        "tags": frozenset({"hot"} if i % 5 == 0 else {"cold", "x"} if i % 5 == 1 else set()),
        "visibility": VISIBILITIES[i % len(VISIBILITIES)],
        "created_at": T0 + timedelta(minutes=i),
    }
    defaults.update(fields)
    return Artifact(**defaults)


async def filled(store: Any, n: int = 40) -> list[Artifact]:
    arts = [make(i) for i in range(n)]
    for a in arts:
        await store.put(a)
    return arts


FILTERS = [
    FilterConfig(),
    FilterConfig(type_names=frozenset({"conformance.Note"})),
    FilterConfig(type_names=frozenset({"conformance.Note", "conformance.Memo"})),
    FilterConfig(type_names=frozenset()),
    FilterConfig(produced_by=frozenset({"writer"})),
    FilterConfig(correlation_id="wf-1"),
    FilterConfig(correlation_id="wf-1", type_names=frozenset({"conformance.Memo"})),
    FilterConfig(tags=frozenset({"hot"})),
    FilterConfig(tags=frozenset({"hot", "x"})),
    FilterConfig(visibility=frozenset({"private", "tenant"})),
    FilterConfig(start=T0 + timedelta(minutes=10), end=T0 + timedelta(minutes=20)),
    FilterConfig(start=T0 + timedelta(minutes=10), produced_by=frozenset({"external", "reviewer"})),
    *(FilterConfig(visible_to=who) for who in IDENTITIES),
    FilterConfig(visible_to=IDENTITIES[1], correlation_id="wf-2", tags=frozenset({"hot", "cold"})),
]


def expected(arts: list[Artifact], f: FilterConfig) -> list[Artifact]:
    now = datetime.now(UTC)
    return [a for a in arts if f.matches(a, now)]


# ---------------------------------------------------------------------------------- artifacts


async def test_satisfies_the_protocol(store: Any) -> None:
    assert isinstance(store, BlackboardStore)


async def test_put_then_get_returns_an_equal_artifact(store: Any) -> None:
    arts = await filled(store, 14)  # every visibility kind, tags, partition keys
    for a in arts:
        got = await store.get(a.id)
        assert got == a
        assert got.created_at == a.created_at and got.created_at.tzinfo is not None
        assert await store.get(str(a.id)) == a


async def test_get_of_an_unknown_or_malformed_id_is_none(store: Any) -> None:
    await filled(store, 3)
    assert await store.get(uuid4()) is None
    assert await store.get("not-a-uuid") is None


async def test_list_is_in_publication_order_not_time_order(store: Any) -> None:
    late, early = make(1, created_at=T0 + timedelta(days=1)), make(2, created_at=T0)
    await store.put(late)
    await store.put(early)
    assert [a.id for a in await store.list()] == [late.id, early.id]


async def test_lineage_survives(store: Any) -> None:
    parents = await filled(store, 2)
    child = make(5, consumed_from=tuple(p.id for p in parents))
    await store.put(child)
    got = await store.get(child.id)
    assert got.consumed_from == child.consumed_from == got.lineage


async def test_get_many_answers_in_the_order_asked_and_skips_unknown_ids(store: Any) -> None:
    arts = await filled(store, 12)
    wanted = [arts[7].id, uuid4(), str(arts[2].id), "not-a-uuid", arts[11].id, arts[7].id]
    assert await store.get_many(wanted) == [arts[7], arts[2], arts[11], arts[7]]
    assert await store.get_many([]) == []
    many = [make(100 + i) for i in range(1200)]  # more ids than one SQL statement may bind
    for a in many:
        await store.put(a)
    assert [a.id for a in await store.get_many([a.id for a in reversed(many)])] == [
        a.id for a in reversed(many)
    ]


async def test_duplicate_id_raises_and_keeps_the_original(store: Any) -> None:
    original = make(1)
    await store.put(original)
    impostor = make(2, id=original.id, payload={"n": 999})
    with pytest.raises(DuplicateArtifactError, match="immutable"):
        await store.put(impostor)
    assert await store.get(original.id) == original
    assert await store.count() == 1
    await store.put(make(3))  # the store is still usable
    assert await store.count() == 2


async def test_put_all_adds_every_artifact_or_none(store: Any) -> None:
    held = make(1)
    await store.put(held)
    fresh, clash = make(2), make(3, id=held.id, payload={"n": 999})
    with pytest.raises(DuplicateArtifactError):
        await store.put_all([fresh, clash])  # the second one's id exists: nothing is added
    assert await store.get(fresh.id) is None and await store.count() == 1
    assert await store.get(held.id) == held
    with pytest.raises(DuplicateArtifactError):
        await store.put_all([fresh, fresh])  # twice in one batch
    assert await store.count() == 1
    more = [make(4), make(5), make(6)]
    await store.put_all(more)
    assert [a.id for a in await store.list()] == [held.id] + [a.id for a in more]


async def test_get_by_type_returns_models_optionally_by_workflow(store: Any) -> None:
    arts = await filled(store, 20)
    notes = await store.get_by_type(Note)
    assert notes == [Note(n=a.payload["n"]) for a in arts if a.type == "conformance.Note"]
    in_wf = await store.get_by_type(Memo, correlation_id="wf-3")
    assert in_wf == [
        Memo(n=a.payload["n"]) for a in arts if a.type == "conformance.Memo" and a.correlation_id == "wf-3"
    ]


@pytest.mark.parametrize(
    "f", FILTERS, ids=lambda f: repr({k: v for k, v in vars(f).items() if v is not None})
)
async def test_query_matches_the_filter_definition(store: Any, f: FilterConfig) -> None:
    arts = await filled(store)
    want = expected(arts, f)
    items, total = await store.query_artifacts(f, limit=1000)
    assert [a.id for a in items] == [a.id for a in want]
    assert total == len(want) == await store.count(f)


@pytest.mark.parametrize(
    "f", [FILTERS[0], FILTERS[5], *FILTERS[-4:]], ids=["all", "workflow", "a", "b", "c", "mixed"]
)
async def test_pages_concatenate_to_the_whole_answer_in_order(store: Any, f: FilterConfig) -> None:
    arts = await filled(store)
    want = [a.id for a in expected(arts, f)]
    for size in (1, 3, 7):
        pages: list[Any] = []
        for offset in range(0, len(want) + size, size):
            items, total = await store.query_artifacts(f, limit=size, offset=offset)
            assert total == len(want)
            assert len(items) == min(size, max(0, len(want) - offset))
            pages.extend(a.id for a in items)
        assert pages == want


async def test_query_past_the_end_and_an_empty_board(store: Any) -> None:
    assert await store.query_artifacts() == ([], 0)
    assert await store.count() == 0
    await filled(store, 5)
    assert await store.query_artifacts(FilterConfig(), limit=10, offset=50) == ([], 5)
    assert await store.query_artifacts(FilterConfig(visible_to=IDENTITIES[0]), limit=10, offset=50) == (
        [],
        await store.count(FilterConfig(visible_to=IDENTITIES[0])),
    )


async def test_visibility_hides_what_an_identity_may_not_see(store: Any) -> None:
    arts = await filled(store, len(VISIBILITIES))
    seen = {
        who.name: {a.id for a in (await store.query_artifacts(FilterConfig(visible_to=who)))[0]}
        for who in IDENTITIES
    }
    public, private_alice, tenant, labelled, later, then_bob, all_of = (a.id for a in arts)
    assert seen["alice"] == {public, private_alice}
    assert seen["bob"] == {public, tenant, labelled, then_bob, all_of}
    assert seen["carol"] == {public}
    assert later not in set().union(*seen.values())


# ---------------------------------------------------------------------------------- the journal


def record_for(inputs: list[Artifact], agent: str = "writer", subscription: int = 0) -> ActivationRecord:
    return ActivationRecord.for_inputs(agent, subscription, [a.id for a in inputs])


def outputs_of(record: ActivationRecord, inputs: list[Artifact], n: int = 2) -> list[Artifact]:
    return [
        make(
            100 + k,
            id=output_id(record.id, 0, k),
            produced_by=record.agent,
            consumed_from=tuple(a.id for a in inputs),
        )
        for k in range(n)
    ]


async def test_in_flight_follows_an_activation_until_it_commits(store: Any) -> None:
    inputs = await filled(store, 2)
    record = record_for(inputs)
    assert await store.in_flight() == []
    await store.record_activation(record)
    assert await store.in_flight() == [record]
    running = ActivationRecord(record.id, record.agent, record.subscription, record.input_ids, "running")
    await store.record_activation(running)
    assert await store.in_flight() == [running]  # updated in place, not added
    await store.commit_activation(running, outputs_of(record, inputs))
    assert await store.in_flight() == []
    assert await store.consumptions() == {(a.id, "writer", 0) for a in inputs}


async def test_in_flight_keeps_recording_order(store: Any) -> None:
    inputs = await filled(store, 3)
    records = [record_for([a], agent) for a in inputs for agent in ("writer", "reviewer")]
    for r in records:
        await store.record_activation(r)
    assert await store.in_flight() == records


async def test_commit_stores_outputs_and_consumptions_together(store: Any) -> None:
    inputs = await filled(store, 2)
    record = record_for(inputs, "reviewer", 1)
    outs = outputs_of(record, inputs)
    await store.commit_activation(record, outs)
    assert [await store.get(o.id) for o in outs] == outs
    assert await store.consumptions() == {(a.id, "reviewer", 1) for a in inputs}
    assert await store.count() == 4


async def test_re_delivery_of_a_committed_activation_is_idempotent(store: Any) -> None:
    inputs = await filled(store, 1)
    record = record_for(inputs)
    first = outputs_of(record, inputs)
    await store.record_activation(record)
    await store.commit_activation(record, first)
    # The activation ran again (say, after a crash): same ids, a later time, another payload.
    again = [
        o.model_copy(update={"created_at": o.created_at + timedelta(hours=1), "payload": {"n": -1}})
        for o in first
    ]
    await store.record_activation(record)
    await store.commit_activation(record, again)
    assert await store.count() == 3
    assert [await store.get(o.id) for o in first] == first  # the originals stay
    assert await store.consumptions() == {(inputs[0].id, "writer", 0)}
    assert await store.in_flight() == []


async def test_re_delivery_adds_the_outputs_a_torn_earlier_attempt_lacked(store: Any) -> None:
    inputs = await filled(store, 1)
    record = record_for(inputs)
    outs = outputs_of(record, inputs, n=3)
    await store.put(outs[0])  # an earlier attempt got this far outside the journal
    await store.commit_activation(record, outs)
    assert [await store.get(o.id) for o in outs] == outs
    assert await store.count() == 4


async def test_commit_without_outputs_records_consumption(store: Any) -> None:
    inputs = await filled(store, 1)
    record = record_for(inputs, "sink", 2)
    await store.record_activation(record)
    await store.commit_activation(record, [])
    assert await store.consumptions() == {(inputs[0].id, "sink", 2)}
    assert await store.in_flight() == []
    assert await store.count() == 1


async def test_queries_see_committed_outputs(store: Any) -> None:
    inputs = await filled(store, 4)
    record = record_for(inputs[:1])
    outs = outputs_of(record, inputs[:1])
    await store.commit_activation(record, outs)
    f = FilterConfig(produced_by=frozenset({"writer"}), start=T0 + timedelta(minutes=100))
    items, total = await store.query_artifacts(f)
    assert [a.id for a in items] == [o.id for o in outs] and total == 2
    assert {a.id for a in await store.list()} >= {o.id for o in outs}


async def test_a_commit_not_waited_for_is_seen_by_every_later_read_and_is_idempotent(store: Any) -> None:
    inputs = await filled(store, 2)
    silent, loud = record_for(inputs[:1], "sink"), record_for(inputs[1:], "writer")
    outs = outputs_of(loud, inputs[1:])
    for record in (silent, loud):
        await store.record_activation(record)
    await store.commit_activation(silent, [], wait=False)
    await store.commit_activation(loud, outs, wait=False)
    assert await store.in_flight() == []
    assert await store.consumptions() == {(inputs[0].id, "sink", 0), (inputs[1].id, "writer", 0)}
    assert await store.list() == [*inputs, *outs]
    assert await store.get(outs[0].id) == outs[0] and await store.count() == 4
    await store.flush()
    # Committed again (the activation ran again after a crash lost nothing, or a lost completion):
    # nothing changes.
    await store.record_activation(silent)
    await store.commit_activation(silent, [], wait=False)
    await store.commit_activation(loud, outs)
    await store.flush()
    assert await store.in_flight() == []
    assert len(await store.consumptions()) == 2 and await store.count() == 4
