"""The offline model: schema-faithful through every adapter, deterministic, seedable."""

from __future__ import annotations

from datetime import date
from typing import Literal
from uuid import UUID, uuid4

import pytest
from engine_support import ADAPTERS, Idea, Task, evaluate, make_adapter, spec
from pydantic import BaseModel, Field

from flock import DSPyEngine, flock_type
from flock.testing import TestModel

pytestmark = pytest.mark.anyio


class Author(BaseModel):
    name: str = Field(min_length=2, max_length=12)
    email: str | None = None


@flock_type
class Review(BaseModel):
    verdict: Literal["accept", "revise", "reject"]
    stars: int = Field(ge=1, le=5)
    ratio: float = Field(gt=0, lt=0.5)
    summary: str = Field(min_length=40, max_length=80)
    tags: list[str] = Field(min_length=2, max_length=3)
    authors: list[Author] = Field(min_length=1)
    published: date
    ref: UUID
    flagged: bool
    extra: dict[str, int] = {}


@pytest.mark.parametrize("program", ["predict", "chain_of_thought"])
@pytest.mark.parametrize("adapter", ADAPTERS)
async def test_constraints_hold_under_every_adapter(adapter: str, program: str) -> None:
    engine = DSPyEngine(TestModel(), adapter=make_adapter(adapter), program=program, max_reasks=0)
    result = await evaluate(engine, spec(Task, publishes=((Review, (2, 3)),)), Task(text="a paper on bees"))
    assert 2 <= len(result.outputs) <= 3
    for review in result.outputs:
        assert isinstance(review, Review)
        assert len(review.summary) >= 40 and "bees" in review.summary
    if program == "chain_of_thought":
        assert result.trace["reasoning"]
        assert all("reasoning" not in r.model_dump() for r in result.outputs)


async def test_deterministic_for_a_seed_and_different_across_seeds() -> None:
    agent = spec(Task, publishes=((Review, (3, 3)),))
    runs = [
        (await evaluate(DSPyEngine(TestModel(seed)), agent, Task(text="bees"))).outputs for seed in (1, 1, 2)
    ]
    assert runs[0] == runs[1]
    assert runs[0] != runs[2]


async def test_content_is_readable_and_derived_from_the_inputs() -> None:
    result = await evaluate(
        DSPyEngine(TestModel()),
        spec(Task, publishes=((Idea, (3, 3)),)),
        Task(text="urban beekeeping for beginners"),
    )
    titles = [i.title for i in result.outputs]
    assert all("urban beekeeping" in t for t in titles)
    assert len(set(titles)) == 3


async def test_offline_announces_once_per_run_across_engines(capsys: pytest.CaptureFixture[str]) -> None:
    engines = [DSPyEngine("offline"), DSPyEngine()]
    agent = spec(Task, publishes=((Idea, None),))
    first, second = uuid4().hex, uuid4().hex
    for run in (first, first, second):
        for engine in engines:
            await evaluate(engine, agent, Task(text="bees"), run_id=run)
    assert capsys.readouterr().err.count("built-in 'offline' model") == 2


async def test_test_model_records_calls_and_stays_quiet(capsys: pytest.CaptureFixture[str]) -> None:
    model = TestModel()
    await evaluate(DSPyEngine(model), spec(Task, publishes=((Idea, None),)), Task(text="bees"))
    assert len(model.calls) == 1 and "[[ ## task ## ]]" in model.calls[0].prompt
    assert "offline" not in capsys.readouterr().err


@flock_type
class Aliased(BaseModel):
    full_name: str = Field(alias="Full-Name")


@pytest.mark.parametrize("adapter", ADAPTERS)
async def test_aliased_fields_round_trip(adapter: str) -> None:
    engine = DSPyEngine(TestModel(), adapter=make_adapter(adapter), max_reasks=0)
    result = await evaluate(engine, spec(Task, publishes=((Aliased, (2, 2)),)), Task(text="bees"))
    assert [type(o) for o in result.outputs] == [Aliased, Aliased]
