"""Property tests (hypothesis) for subscription matching, gates and the default context."""

from __future__ import annotations

from collections import Counter, defaultdict

import anyio
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import BaseModel

from flock import (
    AgentIdentity,
    Artifact,
    ContextRequest,
    CorrelationContext,
    EvalInputs,
    Flock,
    InMemoryStore,
    PrivateVisibility,
    flock_type,
)

# Small and database-free: the whole core suite stays well under a minute and writes no files.
SMALL = settings(max_examples=40, deadline=None, database=None)


@flock_type
class A(BaseModel):
    n: int


@flock_type
class B(BaseModel):
    n: int


class Recorder:
    def __init__(self) -> None:
        self.calls: list[tuple[Artifact, ...]] = []

    def __call__(self, *models: BaseModel, inputs: EvalInputs) -> None:
        self.calls.append(tuple(inputs.artifacts))


# (type, correlation, run the orchestrator right after this publish?)
events = st.lists(
    st.tuples(st.sampled_from("AB"), st.integers(0, 2), st.booleans()),
    max_size=24,
)


async def publish_events(flock: Flock, seq: list[tuple[str, int, bool]]) -> list[Artifact]:
    published = []
    for i, (kind, corr, run_now) in enumerate(seq):
        obj = A(n=i) if kind == "A" else B(n=i)
        published.append(await flock.publish(obj, correlation_id=f"c{corr}"))
        if run_now:  # gates must keep their state between runs
            await flock.run_until_idle()
    await flock.run_until_idle()
    return published


def by_correlation(arts: list[Artifact], type_name: str) -> dict[str, list[Artifact]]:
    out: dict[str, list[Artifact]] = defaultdict(list)
    for a in arts:
        if a.type == type_name:
            out[a.correlation_id].append(a)
    return out


@SMALL
@given(events)
def test_and_gate_fires_min_of_each_type_per_correlation(seq: list[tuple[str, int, bool]]) -> None:
    rec = Recorder()

    async def scenario() -> list[Artifact]:
        flock = Flock()
        flock.agent("join").consumes(A, B).calls(rec)
        return await publish_events(flock, seq)

    published = anyio.run(scenario)
    a_by, b_by = by_correlation(published, "A"), by_correlation(published, "B")
    fired = Counter(call[0].correlation_id for call in rec.calls)
    for corr in {a.correlation_id for a in published}:
        assert fired[corr] == min(len(a_by[corr]), len(b_by[corr]))
    for call in rec.calls:
        assert [a.type for a in call] == ["A", "B"]
        assert len({a.correlation_id for a in call}) == 1  # never mixes workflows
    used = [a.id for call in rec.calls for a in call]
    assert len(used) == len(set(used))  # every artifact is used at most once
    # first come, first served: the k-th A of a workflow is paired with its k-th B
    expected = {(a.id, b.id) for corr in a_by for a, b in zip(a_by[corr], b_by.get(corr, []), strict=False)}
    assert {(c[0].id, c[1].id) for c in rec.calls} == expected


@SMALL
@given(events)
def test_count_gate_fires_floor_n_over_3_per_correlation(seq: list[tuple[str, int, bool]]) -> None:
    rec = Recorder()

    async def scenario() -> list[Artifact]:
        flock = Flock()
        flock.agent("triple").consumes(A, A, A).calls(rec)
        return await publish_events(flock, seq)

    published = anyio.run(scenario)
    a_by = by_correlation(published, "A")
    fired = Counter(call[0].correlation_id for call in rec.calls)
    for corr, arts in a_by.items():
        assert fired[corr] == len(arts) // 3
    assert all(len(call) == 3 and {a.type for a in call} == {"A"} for call in rec.calls)
    assert all(len({a.correlation_id for a in call}) == 1 for call in rec.calls)
    expected = {
        tuple(a.id for a in arts[i : i + 3]) for arts in a_by.values() for i in range(0, len(arts) - 2, 3)
    }
    assert {tuple(a.id for a in call) for call in rec.calls} == expected


@SMALL
@given(events)
def test_or_subscriptions_fire_once_per_matching_artifact(seq: list[tuple[str, int, bool]]) -> None:
    rec = Recorder()

    async def scenario() -> list[Artifact]:
        flock = Flock()
        flock.agent("either").consumes(A).consumes(B).calls(rec)
        return await publish_events(flock, seq)

    published = anyio.run(scenario)
    assert sorted(call[0].id for call in rec.calls) == sorted(a.id for a in published)
    assert all(len(call) == 1 for call in rec.calls)


predicates = st.sampled_from(
    [
        ("even", lambda n: n % 2 == 0),
        ("mod3", lambda n: n % 3 == 1),
        ("small", lambda n: n < 5),
        ("none", lambda n: False),
        ("all", lambda n: True),
    ]
)


@SMALL
@given(st.lists(st.integers(-20, 20), max_size=25), predicates)
def test_where_selects_exactly_the_matching_subset(values: list[int], named) -> None:
    _, pred = named
    rec = Recorder()

    async def scenario() -> None:
        flock = Flock()
        flock.agent("picky").consumes(A, where=lambda a: pred(a.n)).calls(rec)
        await flock.publish_many([A(n=v) for v in values])
        await flock.run_until_idle()

    anyio.run(scenario)
    got = Counter(call[0].payload["n"] for call in rec.calls)
    assert got == Counter(v for v in values if pred(v))


tag_sets = st.frozensets(st.sampled_from(["x", "y", "z"]), max_size=3)


@SMALL
@given(st.lists(tag_sets, max_size=15), tag_sets.filter(bool))
def test_tags_match_when_they_intersect(artifact_tags: list[frozenset[str]], wanted: frozenset[str]) -> None:
    rec = Recorder()

    async def scenario() -> list[Artifact]:
        flock = Flock()
        flock.agent("tagged").consumes(A, tags=wanted).calls(rec)
        arts = [await flock.publish(A(n=i), tags=t) for i, t in enumerate(artifact_tags)]
        await flock.run_until_idle()
        return arts

    published = anyio.run(scenario)
    assert sorted(c[0].id for c in rec.calls) == sorted(a.id for a in published if a.tags & wanted)


@SMALL
@given(
    st.lists(st.tuples(st.integers(0, 2), st.booleans()), max_size=30),
    st.integers(0, 8),
    st.data(),
)
def test_default_context_equals_the_newest_visible_of_the_workflow(rows, limit, data) -> None:
    """The paged default context returns exactly the naive answer."""
    identity = AgentIdentity(name="me")
    hidden = PrivateVisibility(agents={"someone-else"})
    arts = [
        Artifact(
            type="A", payload={"n": i}, correlation_id=f"c{corr}", **({"visibility": hidden} if h else {})
        )
        for i, (corr, h) in enumerate(rows)
    ]
    mine = [a for a in arts if a.correlation_id == "c0"]
    inputs = (
        tuple(data.draw(st.lists(st.sampled_from(mine), unique_by=lambda a: a.id, max_size=3)))
        if mine
        else ()
    )

    async def scenario() -> list[Artifact]:
        store = InMemoryStore()
        for a in arts:
            await store.put(a)
        flock = Flock()
        spec = flock.agent("me").consumes(A).spec
        request = ContextRequest(
            agent=spec, identity=identity, correlation_id="c0", inputs=inputs, store=store
        )
        return await CorrelationContext(limit=limit)(request)

    got = anyio.run(scenario)
    input_ids = {a.id for a in inputs}
    naive = [a for a in mine if a.id not in input_ids and a.visibility.kind == "public"]
    assert got == (naive[-limit:] if limit else [])


@SMALL
@given(st.lists(st.sampled_from(["alice", "bob", "carol"]), min_size=1, max_size=3, unique=True))
def test_private_visibility_wakes_exactly_the_named_agents(names: list[str]) -> None:
    woke: list[str] = []

    async def scenario() -> None:
        flock = Flock()
        for name in ("alice", "bob", "carol"):
            flock.agent(name).consumes(A).calls(lambda a, ctx: woke.append(ctx.agent))
        await flock.publish(A(n=0), visibility=PrivateVisibility(agents=set(names)))
        await flock.run_until_idle()

    anyio.run(scenario)
    assert sorted(woke) == sorted(names)
