"""Batches: by size, by timeout, per correlation or across workflows, and never stranded at idle."""

from __future__ import annotations

from datetime import timedelta

import anyio
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import BaseModel

from flock import BatchSpec, ConfigurationError, Context, EvalInputs, Flock, ManualClock, Until, flock_type

pytestmark = pytest.mark.anyio


@flock_type(name="sched.Item")
class Item(BaseModel):
    n: int


@flock_type(name="sched.Bundle")
class Bundle(BaseModel):
    ns: list[int]


class Batcher:
    """Records each batch: the input values, their correlation ids and when it arrived."""

    def __init__(self, clock: ManualClock | None = None) -> None:
        self.clock = clock
        self.batches: list[list[int]] = []
        self.correlations: list[set[str]] = []
        self.times: list[float] = []

    def __call__(self, *items: Item, inputs: EvalInputs, ctx: Context) -> Bundle:
        self.batches.append([i.n for i in items])
        self.correlations.append({a.correlation_id for a in inputs.artifacts})
        if self.clock is not None:
            self.times.append(self.clock.monotonic())
        return Bundle(ns=[i.n for i in items])


def batching_flock(spec: BatchSpec, **options: object) -> tuple[Flock, Batcher, ManualClock]:
    clock = ManualClock()
    flock = Flock(clock=clock, **options)  # type: ignore[arg-type]
    batcher = Batcher(clock)
    flock.agent("batcher").consumes(Item, batch=spec).publishes(Bundle).calls(batcher)
    return flock, batcher, clock


async def test_a_batch_fires_once_size_artifacts_arrived() -> None:
    flock, batcher, _ = batching_flock(BatchSpec(size=3), flush_partial_batches=False)
    await flock.publish_many([Item(n=i) for i in range(7)], correlation_id="w")
    summary = await flock.run_until_idle()
    assert batcher.batches == [[0, 1, 2], [3, 4, 5]]
    assert summary.activations == 2
    assert summary.waiting == {"batcher": 1}  # the seventh waits; it is counted, not lost


async def test_batched_inputs_reach_the_engine_as_one_list() -> None:
    flock = Flock()
    seen: list[list[str]] = []

    def engine(*items: Item, inputs: EvalInputs) -> None:
        seen.append([a.type for a in inputs.artifacts])
        assert [m.n for m in inputs.all(Item)] == [i.n for i in items]

    flock.agent("b").consumes(Item, batch=BatchSpec(size=4)).calls(engine)
    await flock.publish_many([Item(n=i) for i in range(4)], correlation_id="w")
    summary = await flock.run_until_idle()
    assert seen == [["sched.Item"] * 4]
    assert summary.ok and summary.activations == 1


async def test_batch_outputs_record_every_input_in_their_lineage() -> None:
    flock, _, _ = batching_flock(BatchSpec(size=2))
    items = await flock.publish_many([Item(n=1), Item(n=2)], correlation_id="w")
    await flock.run_until_idle()
    (bundle,) = [a for a in await flock.store.list() if a.type == "sched.Bundle"]
    assert set(bundle.consumed_from) == {a.id for a in items}
    assert bundle.correlation_id == "w"


async def test_a_timeout_delivers_a_partial_batch_after_the_first_arrival() -> None:
    flock, batcher, _ = batching_flock(
        BatchSpec(size=10, timeout=timedelta(seconds=30)), flush_partial_batches=False
    )
    await flock.publish_many([Item(n=1), Item(n=2)], correlation_id="w")
    assert await flock.run_until(Until.exists(Bundle), timeout=5)
    assert batcher.batches == [[1, 2]]
    assert batcher.times == [30.0]  # the ManualClock jumped straight to the deadline


async def test_a_timeout_only_batch_collects_everything_in_its_window() -> None:
    flock, batcher, clock = batching_flock(
        BatchSpec(timeout=timedelta(minutes=1)), flush_partial_batches=False
    )
    await flock.publish_many([Item(n=i) for i in range(5)], correlation_id="w")
    summary = await flock.run_until_idle()  # a batch timeout is a passive deadline
    assert batcher.batches == []
    assert summary.waiting == {"batcher": 5}
    clock.advance(timedelta(minutes=1))
    await flock.run_until_idle()
    assert batcher.batches == [[0, 1, 2, 3, 4]]


async def test_a_batch_that_fills_before_its_timeout_is_not_flushed_again() -> None:
    flock, batcher, clock = batching_flock(
        BatchSpec(size=2, timeout=timedelta(seconds=10)), flush_partial_batches=False
    )
    await flock.publish_many([Item(n=1), Item(n=2)], correlation_id="w")
    await flock.run_until_idle()
    clock.advance(5)
    await flock.publish(Item(n=3), correlation_id="w")  # starts a new batch at t=5
    clock.advance(5)  # t=10: the first batch's timer is due, but that batch is gone
    await flock.run_until_idle()
    assert batcher.batches == [[1, 2]]
    clock.advance(5)  # t=15: the second batch's own timeout
    await flock.run_until_idle()
    assert batcher.batches == [[1, 2], [3]]


async def test_an_artifact_after_a_missed_timeout_starts_a_new_batch() -> None:
    # Time passed between runs (nothing was running to fire the timer): the overdue batch is
    # delivered as it was, and the newcomer does not join a batch whose window has closed.
    flock, batcher, clock = batching_flock(
        BatchSpec(size=10, timeout=timedelta(seconds=10)), flush_partial_batches=False
    )
    await flock.publish(Item(n=1), correlation_id="w")
    await flock.run_until_idle()
    clock.advance(60)
    await flock.publish(Item(n=2), correlation_id="w")
    await flock.run_until_idle()
    assert batcher.batches == [[1]]
    clock.advance(10)
    await flock.run_until_idle()
    assert batcher.batches == [[1], [2]]


async def test_batches_are_kept_per_correlation_id() -> None:
    flock, batcher, _ = batching_flock(BatchSpec(size=2), flush_partial_batches=False)
    # Two workflows interleaved: a batch never mixes them.
    for i in range(4):
        await flock.publish(Item(n=i), correlation_id="odd" if i % 2 else "even")
    await flock.run_until_idle()
    assert sorted(batcher.batches) == [[0, 2], [1, 3]]
    assert all(len(c) == 1 for c in batcher.correlations)


async def test_per_correlation_false_batches_across_workflows() -> None:
    flock, batcher, _ = batching_flock(BatchSpec(size=2, per_correlation=False), flush_partial_batches=False)
    for i in range(4):
        await flock.publish(Item(n=i), correlation_id=f"w{i}")
    await flock.run_until_idle()
    assert batcher.batches == [[0, 1], [2, 3]]
    assert batcher.correlations == [{"w0", "w1"}, {"w2", "w3"}]
    bundles = [a for a in await flock.store.list() if a.type == "sched.Bundle"]
    assert [b.correlation_id for b in bundles] == ["w0", "w2"]  # the first input's workflow


async def test_run_until_idle_flushes_partial_batches_by_default() -> None:
    flock, batcher, _ = batching_flock(BatchSpec(size=5))
    await flock.publish_many([Item(n=i) for i in range(7)], correlation_id="w")
    summary = await flock.run_until_idle()
    assert batcher.batches == [[0, 1, 2, 3, 4], [5, 6]]
    assert summary.waiting == {}
    assert summary.activations == 2


async def test_partial_batches_of_every_workflow_are_flushed() -> None:
    flock, batcher, _ = batching_flock(BatchSpec(size=5))
    await flock.publish_many([Item(n=1), Item(n=2)], correlation_id="a")
    await flock.publish(Item(n=3), correlation_id="b")
    await flock.run_until_idle()
    assert sorted(batcher.batches) == [[1, 2], [3]]


async def test_without_flushing_a_partial_batch_waits_and_is_counted() -> None:
    flock, batcher, _ = batching_flock(BatchSpec(size=5), flush_partial_batches=False)
    await flock.publish_many([Item(n=i) for i in range(3)], correlation_id="w")
    summary = await flock.run_until_idle()
    assert batcher.batches == []
    assert summary.waiting == {"batcher": 3}
    assert "waiting:   batcher=3" in str(summary)
    await flock.publish_many([Item(n=3), Item(n=4)], correlation_id="w")
    summary = await flock.run_until_idle()  # the held artifacts were kept for the next run
    assert batcher.batches == [[0, 1, 2, 3, 4]]
    assert summary.waiting == {}


async def test_a_flushed_batch_feeds_downstream_agents_in_the_same_run() -> None:
    flock, _, _ = batching_flock(BatchSpec(size=5))
    totals: list[int] = []
    flock.agent("sum").consumes(Bundle).calls(lambda b: totals.append(sum(b.ns)))
    await flock.publish_many([Item(n=i) for i in range(3)], correlation_id="w")
    await flock.run_until_idle()
    assert totals == [3]


@pytest.mark.parametrize(
    "kwargs",
    [{}, {"size": 0}, {"size": 2.5}, {"timeout": timedelta(0)}, {"timeout": -1}, {"timeout": "soon"}],
)
def test_invalid_batch_specs_fail_at_declaration(kwargs: dict[str, object]) -> None:
    with pytest.raises(ConfigurationError, match="BatchSpec"):
        BatchSpec(**kwargs)  # type: ignore[arg-type]


def test_a_batch_timeout_in_seconds_becomes_a_timedelta() -> None:
    assert BatchSpec(timeout=2).timeout == timedelta(seconds=2)  # type: ignore[arg-type]


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    workflows=st.lists(st.sampled_from(["a", "b", "c"]), min_size=1, max_size=25),
    size=st.integers(min_value=1, max_value=5),
    per_correlation=st.booleans(),
)
def test_property_every_artifact_is_delivered_exactly_once(
    workflows: list[str], size: int, per_correlation: bool, anyio_backend: str
) -> None:
    async def scenario() -> None:
        flock, batcher, _ = batching_flock(BatchSpec(size=size, per_correlation=per_correlation))
        for n, workflow in enumerate(workflows):
            await flock.publish(Item(n=n), correlation_id=workflow)
        summary = await flock.run_until_idle()
        delivered = [n for batch in batcher.batches for n in batch]
        assert sorted(delivered) == list(range(len(workflows)))
        assert all(1 <= len(batch) <= size for batch in batcher.batches)
        if per_correlation:
            assert all(len(c) == 1 for c in batcher.correlations)
        assert summary.waiting == {}

    anyio.run(scenario, backend=anyio_backend)


def test_a_batch_timeout_that_is_no_number_of_seconds_is_a_configuration_error() -> None:
    for timeout in (float("nan"), float("inf"), 10**20):  # a bare ValueError/OverflowError before
        with pytest.raises(ConfigurationError, match="BatchSpec timeout"):
            BatchSpec(size=2, timeout=timeout)
