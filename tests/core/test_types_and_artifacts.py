"""Artifact types, per-Flock registries, immutability, correlation ids and lineage."""

from __future__ import annotations

import pytest
from pydantic import BaseModel, Field, ValidationError

from flock import (
    Artifact,
    ConfigurationError,
    DuplicateArtifactError,
    FilterConfig,
    Flock,
    FlockError,
    NotAModelError,
    TypeConflictError,
    UnknownAgentError,
    flock_type,
)

pytestmark = pytest.mark.anyio


@flock_type
class Idea(BaseModel):
    topic: str


@flock_type(name="custom.Pitch")
class Pitch(BaseModel):
    text: str


@flock_type
class Review(BaseModel):
    score: int


def pitch(idea: Idea) -> Pitch:
    return Pitch(text=f"pitch about {idea.topic}")


async def test_flock_type_without_name_uses_the_class_name() -> None:
    flock = Flock()
    art = await flock.publish(Idea(topic="bees"))
    assert art.type == "Idea"
    assert art.payload == {"topic": "bees"}
    assert art.is_a(Idea)
    assert art.as_model(Idea) == Idea(topic="bees")


async def test_flock_type_with_name_is_recorded_on_artifacts_and_routes() -> None:
    flock = Flock()
    flock.agent("writer").consumes(Idea).publishes(Pitch).calls(pitch)
    await flock.publish(Idea(topic="bees"))
    await flock.run_until_idle()
    arts, total = await flock.store.query_artifacts()
    assert total == 2
    assert arts[1].type == "custom.Pitch"
    assert await flock.store.get_by_type(Pitch) == [Pitch(text="pitch about bees")]


def test_flock_type_rejects_non_models_and_empty_names() -> None:
    with pytest.raises(ConfigurationError, match="not a Pydantic model"):
        flock_type(int)
    with pytest.raises(TypeConflictError, match="non-empty"):

        @flock_type(name="  ")
        class Blank(BaseModel):
            x: int


async def test_publishing_a_class_or_a_dict_says_what_to_pass_instead() -> None:
    flock = Flock()
    instance = r"publish\(\) got the class Idea, but needs an instance: pass Idea\(\.\.\.\)"
    with pytest.raises(NotAModelError, match=instance):
        await flock.publish(Idea)
    with pytest.raises(NotAModelError, match=r"got `\{'topic': 'bees'\}`, which is not a Pydantic model"):
        await flock.publish({"topic": "bees"})
    assert (await flock.store.query_artifacts())[1] == 0


async def test_reading_the_board_by_a_type_name_says_to_pass_the_class(tmp_path) -> None:
    from flock import SQLiteStore

    for store in (Flock().store, SQLiteStore(tmp_path / "board.db")):
        with pytest.raises(NotAModelError) as caught:
            await store.get_by_type("custom.Pitch")
        assert str(caught.value) == (
            "got the type name 'custom.Pitch' where a model class is needed: pass the class itself (Pitch), "
            "not its name"
        )
        with pytest.raises(NotAModelError, match="got an instance of Idea, but needs the class: pass Idea"):
            await store.get_by_type(Idea(topic="bees"))


def test_subclass_gets_its_own_default_name() -> None:
    @flock_type(name="base.Name")
    class Base(BaseModel):
        x: int

    @flock_type
    class Child(Base):
        pass

    class Plain(Base):  # not decorated: must not inherit the parent's registered name
        pass

    flock = Flock()
    flock.agent("a").consumes(Base).consumes(Child).consumes(Plain)
    names = [s.type_names[0] for s in flock.agents[0].subscriptions]
    assert names == ["base.Name", "Child", "Plain"]


async def test_two_flocks_never_see_each_others_agents() -> None:
    one, two = Flock(), Flock()
    one.agent("writer").consumes(Idea).publishes(Pitch).calls(pitch)
    # the same agent name is free in another flock
    two.agent("writer").consumes(Review).calls(lambda r: None)
    assert [a.name for a in one.agents] == ["writer"]
    assert [a.consumed_type_names for a in two.agents] == [frozenset({"Review"})]
    await two.publish(Idea(topic="bees"))
    summary = await two.run_until_idle()
    assert summary.activations == 0
    assert await two.store.get_by_type(Pitch) == []
    assert await one.store.list() == []
    with pytest.raises(UnknownAgentError):
        await Flock().invoke("writer", Idea(topic="x"))


async def test_two_flocks_never_see_each_others_types() -> None:
    one, two = Flock(), Flock()
    one.agent("writer").consumes(Idea).publishes(Pitch).calls(pitch)
    ready = Artifact(type="custom.Pitch", payload={"text": "x"})
    with pytest.raises(ConfigurationError, match="unknown to this Flock"):
        await two.publish(ready)
    await one.publish(ready)  # known in the flock that declared it
    assert await one.store.get(ready.id) == ready
    assert await two.store.list() == []


async def test_same_name_different_classes_conflict_within_one_flock_only() -> None:
    @flock_type(name="Thing")
    class ThingA(BaseModel):
        a: int

    @flock_type(name="Thing")
    class ThingB(BaseModel):
        b: int

    flock = Flock()
    flock.agent("a").consumes(ThingA)
    with pytest.raises(TypeConflictError, match=r"@flock_type\(name="):
        flock.agent("b").consumes(ThingB)
    with pytest.raises(TypeConflictError):
        flock.agent("c").consumes(Idea).publishes(ThingB)
    with pytest.raises(TypeConflictError):
        await flock.publish(ThingB(b=1))
    assert await flock.store.list() == []
    # another flock may use the other class under that name
    other = Flock()
    other.agent("b").consumes(ThingB)
    art = await other.publish(ThingB(b=2))
    assert art.type == "Thing"


async def test_artifacts_are_frozen() -> None:
    flock = Flock()
    art = await flock.publish(Idea(topic="bees"))
    with pytest.raises(ValidationError):
        art.correlation_id = "other"  # type: ignore[misc]
    assert (await flock.store.get(art.id)).correlation_id == art.correlation_id  # type: ignore[union-attr]


async def test_publishing_an_existing_id_is_an_error_never_an_overwrite() -> None:
    flock = Flock()
    flock.agent("watcher").consumes(Idea).calls(lambda i: None)
    original = await flock.publish(Idea(topic="bees"))
    impostor = Artifact(id=original.id, type="Idea", payload={"topic": "wasps"})
    with pytest.raises(DuplicateArtifactError, match="immutable") as info:
        await flock.publish(impostor)
    assert isinstance(info.value, FlockError)
    with pytest.raises(DuplicateArtifactError):
        await flock.publish(original)
    stored = await flock.store.list()
    assert stored == [original]
    assert (await flock.store.get(original.id)).payload == {"topic": "bees"}  # type: ignore[union-attr]
    summary = await flock.run_until_idle()
    assert summary.activations == 1  # the rejected duplicates woke nobody


async def test_ready_made_artifact_keeps_its_id_and_correlation() -> None:
    flock = Flock()
    flock.agent("writer").consumes(Idea).publishes(Pitch).calls(pitch)
    ready = Artifact(type="Idea", payload={"topic": "owls"}, correlation_id="wf-1")
    back = await flock.publish(ready)
    assert back.id == ready.id
    await flock.run_until_idle()
    [out] = (await flock.store.query_artifacts(FilterConfig(type_names="custom.Pitch")))[0]
    assert out.correlation_id == "wf-1"
    assert out.consumed_from == (ready.id,)


async def test_correlation_id_is_new_per_external_publish_and_inherited_by_outputs() -> None:
    flock = Flock()
    flock.agent("writer").consumes(Idea).publishes(Pitch).calls(pitch)
    flock.agent("critic").consumes(Pitch).publishes(Review).calls(lambda p: Review(score=len(p.text)))
    a = await flock.publish(Idea(topic="a"))
    b = await flock.publish(Idea(topic="b"))
    c = await flock.publish(Idea(topic="c"), correlation_id="given")
    assert len({a.correlation_id, b.correlation_id, c.correlation_id}) == 3
    assert c.correlation_id == "given"
    await flock.run_until_idle()
    for root in (a, b, c):
        arts, _ = await flock.store.query_artifacts(FilterConfig(correlation_id=root.correlation_id))
        assert [x.type for x in arts] == ["Idea", "custom.Pitch", "Review"]
        assert {x.correlation_id for x in arts} == {root.correlation_id}
    assert len(await flock.store.get_by_type(Review, correlation_id="given")) == 1


async def test_lineage_records_the_inputs_of_each_output() -> None:
    flock = Flock()
    flock.agent("writer").consumes(Idea).publishes(Pitch).calls(pitch)
    flock.agent("critic").consumes(Pitch).publishes(Review).calls(lambda p: Review(score=1))
    idea = await flock.publish(Idea(topic="a"), partition_key="p1")
    await flock.run_until_idle()
    arts = await flock.store.list()
    by_type = {a.type: a for a in arts}
    assert idea.consumed_from == ()
    assert by_type["custom.Pitch"].consumed_from == (idea.id,)
    assert by_type["custom.Pitch"].lineage == (idea.id,)
    assert by_type["Review"].consumed_from == (by_type["custom.Pitch"].id,)
    assert by_type["custom.Pitch"].produced_by == "writer"
    assert by_type["Review"].partition_key == "p1"


async def test_every_output_gets_its_own_id() -> None:
    flock = Flock()
    flock.agent("both").consumes(Idea).publishes(Pitch, Review).calls(
        lambda i: [Pitch(text=i.topic), Review(score=3)]
    )
    flock.agent("many").consumes(Idea).publishes(Review, fan_out=3).calls(
        lambda i: [Review(score=n) for n in range(3)]
    )
    await flock.publish(Idea(topic="a"))
    await flock.run_until_idle()
    arts = await flock.store.list()
    assert len(arts) == 1 + 2 + 3
    assert len({a.id for a in arts}) == len(arts)
    assert sorted(r.score for r in await flock.store.get_by_type(Review)) == [0, 1, 2, 3]
    assert len(await flock.store.get_by_type(Pitch)) == 1


async def test_publish_rejects_non_models() -> None:
    flock = Flock()
    with pytest.raises(ConfigurationError, match="Pydantic model"):
        await flock.publish({"topic": "bees"})  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError, match="visibility"):
        await flock.publish(Idea(topic="x"), visibility="public")  # type: ignore[arg-type]
    assert await flock.store.list() == []


async def test_a_ready_made_artifact_with_an_invalid_payload_is_rejected() -> None:
    flock = Flock()
    seen: list[Idea] = []
    flock.agent("all").consumes(Idea).calls(seen.append)
    flock.agent("some").consumes(Idea, where=lambda i: i.topic != "x").calls(seen.append)
    bad = Artifact(type="Idea", payload={"topic": ["not", "a", "string"]})
    with pytest.raises(ConfigurationError, match="not a valid Idea"):
        await flock.publish(bad)
    assert await flock.store.list() == []
    await flock.publish(Idea(topic="ok"))
    summary = await flock.run_until_idle()  # nothing broken was queued
    assert summary.ok and summary.activations == 2
    assert seen == [Idea(topic="ok"), Idea(topic="ok")]


async def test_a_uuid_correlation_id_is_stored_as_text() -> None:
    from uuid import uuid4

    flock = Flock()
    corr = uuid4()
    art = await flock.publish(Idea(topic="x"), correlation_id=corr)
    assert art.correlation_id == str(corr)
    assert await flock.store.get_by_type(Idea, correlation_id=str(corr)) == [Idea(topic="x")]


class _Aliased(BaseModel):
    full_name: str = Field(alias="Full-Name")


async def test_models_with_field_aliases_round_trip_through_the_board() -> None:
    flock = Flock()
    flock.agent("copy").consumes(_Aliased).publishes(_Aliased).prevent_self_trigger().calls(
        lambda a: _Aliased(**{"Full-Name": a.full_name.upper()})
    )
    published = await flock.publish(_Aliased(**{"Full-Name": "ada"}))
    summary = await flock.run_until_idle()
    assert summary.errors == []
    assert published.payload == {"Full-Name": "ada"}
    assert sorted(a.full_name for a in await flock.store.get_by_type(_Aliased)) == ["ADA", "ada"]
