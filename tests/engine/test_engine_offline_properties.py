"""Property: the offline model answers any generated schema validly, under every adapter."""

from __future__ import annotations

from typing import Any, Literal

import anyio
from engine_support import ADAPTERS, Task, evaluate, make_adapter, spec
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import BaseModel, Field, create_model

from flock import DSPyEngine, flock_type
from flock.testing import TestModel


class Inner(BaseModel):
    label: str = Field(min_length=1, max_length=20)
    weight: float = Field(ge=0, le=1)


@st.composite
def field_types(draw: st.DrawFn) -> tuple[Any, Any]:
    kind = draw(st.sampled_from(["int", "float", "str", "literal", "list", "bool", "inner", "optional"]))
    if kind == "int":
        lo = draw(st.integers(-50, 50))
        return int, Field(ge=lo, le=lo + draw(st.integers(0, 20)))
    if kind == "float":
        lo = draw(st.floats(-5, 5, allow_nan=False))
        return float, Field(gt=lo, lt=lo + draw(st.floats(0.1, 10, allow_nan=False)))
    if kind == "str":
        lo = draw(st.integers(0, 30))
        return str, Field(min_length=lo, max_length=lo + draw(st.integers(0, 40)))
    if kind == "literal":
        words = st.sampled_from(["a", "b", "c", "low", "high"])
        options = tuple(draw(st.lists(words, min_size=1, unique=True)))
        return Literal[options], ...  # type: ignore[valid-type]
    if kind == "list":
        lo = draw(st.integers(0, 3))
        return list[str], Field(min_length=lo, max_length=lo + draw(st.integers(0, 3)))
    if kind == "bool":
        return bool, ...
    if kind == "inner":
        return list[Inner], Field(min_length=1)
    return str | None, None


@st.composite
def output_models(draw: st.DrawFn) -> type[BaseModel]:
    names = draw(st.lists(st.from_regex(r"[a-z]{3,8}", fullmatch=True), min_size=1, max_size=5, unique=True))
    fields = {name: draw(field_types()) for name in names if name not in dir(BaseModel)}
    # DSPy's BAMLAdapter mistakes a nested model used by two fields for recursion: keep one.
    nested = [name for name, (tp, _) in fields.items() if tp == list[Inner]]
    fields.update({name: (str, ...) for name in nested[1:]})
    fields = fields or {"value": (str, ...)}
    return flock_type(name="Generated")(create_model("Generated", **fields))  # type: ignore[call-overload]


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(output_models(), st.sampled_from(ADAPTERS), st.sampled_from([None, (3, 3), (1, 4)]), st.integers(0, 9))
def test_offline_answers_are_always_valid(
    model: type[BaseModel], adapter: str, fan_out: tuple[int, int] | None, seed: int
) -> None:
    engine = DSPyEngine(TestModel(seed), adapter=make_adapter(adapter), max_reasks=0)
    agent = spec(Task, publishes=((model, fan_out),))

    async def run() -> None:
        result = await evaluate(engine, agent, Task(text="a generated case"))
        lo, hi = fan_out or (1, 1)
        assert lo <= len(result.outputs) <= hi
        assert all(type(o) is model for o in result.outputs)

    anyio.run(run)
