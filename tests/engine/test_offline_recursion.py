"""The offline model on recursive types: a finite, valid answer for every model that has one, and a
typed contract failure (never a RecursionError or a hang) for one that has none."""

from __future__ import annotations

from typing import Optional, Self

import anyio
import pytest
from pydantic import BaseModel

from flock import Flock, flock_type

pytestmark = pytest.mark.anyio


@flock_type(name="recursion.Ask")
class Ask(BaseModel):
    topic: str


@flock_type(name="recursion.Node")
class Node(BaseModel):
    name: str
    parent: Optional[Self]  # noqa: UP045 - the spelling the defect was reported with; required, nullable


@flock_type(name="recursion.Tree")
class Tree(BaseModel):
    label: str
    children: list[Tree]


class Leaf(BaseModel):
    value: int


@flock_type(name="recursion.Expr")
class Expr(BaseModel):
    op: str
    left: Expr | Leaf
    right: Expr | Leaf | None


@flock_type(name="recursion.Impossible")
class Impossible(BaseModel):
    name: str
    next: Impossible  # required and never None: no finite value exists


def depth(value: object, link: str) -> int:
    found = getattr(value, link, None)
    return 1 + depth(found, link) if isinstance(found, BaseModel) else 1


async def answer(output: type[BaseModel]) -> tuple[list[BaseModel], list[str]]:
    flock = Flock("offline")
    flock.agent("maker").consumes(Ask).publishes(output)
    await flock.publish(Ask(topic="family trees"))
    with anyio.fail_after(30):
        summary = await flock.run_until_idle()
    return await flock.store.get_by_type(output), [f"{e.kind}: {e.message}" for e in summary.errors]


@pytest.mark.parametrize("output", [Node, Tree, Expr])
async def test_a_recursive_model_gets_a_finite_valid_answer(output: type[BaseModel]) -> None:
    made, errors = await answer(output)
    assert errors == [] and len(made) == 1
    (value,) = made
    assert isinstance(value, output)
    if isinstance(value, Node):
        assert 1 < depth(value, "parent") <= 5  # it nests a little, as a model would, then stops
    if isinstance(value, Expr):
        assert 1 < depth(value, "left") <= 5


async def test_a_model_with_no_finite_value_fails_typed_not_with_a_recursion_error() -> None:
    made, errors = await answer(Impossible)
    assert made == [] and len(errors) == 1
    assert errors[0].startswith("contract:") and "recursion" not in errors[0].lower()
