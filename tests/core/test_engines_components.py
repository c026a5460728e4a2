"""Engines, chained engines, component hooks, best_of, and the output contract."""

from __future__ import annotations

import re

import pytest
from pydantic import BaseModel

import flock._core.components as components_module
from flock import (
    AgentComponent,
    Context,
    EngineComponent,
    EvalInputs,
    EvalResult,
    FilterConfig,
    Flock,
    FunctionEngine,
    OutputGroup,
    WorkflowError,
    flock_type,
)

pytestmark = pytest.mark.anyio


@flock_type
class Task(BaseModel):
    n: int = 0


@flock_type
class Draft(BaseModel):
    n: int = 0


@flock_type
class Final(BaseModel):
    n: int = 0


@flock_type
class Note(BaseModel):
    n: int = 0


class Returns(EngineComponent):
    """An engine whose evaluate returns whatever ``make(task)`` gives."""

    def __init__(self, make) -> None:
        self.make = make

    async def evaluate(self, agent, ctx, inputs, output_group):
        return self.make(inputs.models[0])


async def run_one(flock: Flock, obj: BaseModel | None = None):
    await flock.publish(obj or Task(n=1))
    return await flock.run_until_idle()


async def finals(flock: Flock) -> list[int]:
    return sorted(f.n for f in await flock.store.get_by_type(Final))


# ----------------------------------------------------------------------------- engines


@pytest.mark.parametrize(
    "make",
    [
        lambda t: EvalResult(outputs=[Final(n=t.n)]),
        lambda t: EvalResult.of(Final(n=t.n)),
        lambda t: Final(n=t.n),
        lambda t: [Final(n=t.n)],
        lambda t: (Final(n=t.n),),
    ],
    ids=["EvalResult", "EvalResult.of", "model", "list", "tuple"],
)
async def test_engine_may_return_an_eval_result_a_model_or_a_list(make) -> None:
    flock = Flock()
    flock.agent("e").consumes(Task).publishes(Final).with_engines(Returns(make))
    summary = await run_one(flock, Task(n=5))
    assert summary.ok
    assert await finals(flock) == [5]


async def test_engine_component_subclass_with_no_fields_needs_no_arguments() -> None:
    class Doubler(EngineComponent):
        async def evaluate(self, agent, ctx, inputs, output_group):
            assert isinstance(ctx, Context) and isinstance(inputs, EvalInputs)
            assert isinstance(output_group, OutputGroup)
            assert agent.name == "d"
            return Final(n=inputs.first(Task).n * 2)

    flock = Flock()
    flock.agent("d").consumes(Task).publishes(Final).with_engines(Doubler())
    await run_one(flock, Task(n=21))
    assert await finals(flock) == [42]


async def test_an_engine_returning_none_produces_nothing() -> None:
    flock = Flock()
    flock.agent("sink").consumes(Task).with_engines(Returns(lambda t: None))
    flock.agent("liar").consumes(Task).publishes(Final).with_engines(Returns(lambda t: None))
    summary = await run_one(flock)
    assert summary.agents_run == {"sink": 1, "liar": 1}
    assert [(e.agent, e.kind) for e in summary.errors] == [("liar", "contract")]
    assert "expected exactly 1 Final, got 0" in summary.errors[0].message


async def test_engine_metrics_are_summed_into_the_summary() -> None:
    flock = Flock()
    flock.agent("e").consumes(Task).publishes(Final).with_engines(
        Returns(lambda t: EvalResult.of(Final(n=t.n), tokens=10, calls=1))
    )
    await flock.publish_many([Task(n=1), Task(n=2)])
    summary = await flock.run_until_idle()
    assert summary.metrics == {"tokens": 20, "calls": 2}


async def test_several_engines_chain() -> None:
    seen: list[tuple[list[str], dict]] = []

    class First(EngineComponent):
        async def evaluate(self, agent, ctx, inputs, output_group):
            return EvalResult(outputs=[Draft(n=inputs.models[0].n + 1)], state={"from": "first"})

    class Second(EngineComponent):
        async def evaluate(self, agent, ctx, inputs, output_group):
            seen.append(([a.type for a in inputs.artifacts], dict(inputs.state)))
            return Final(n=inputs.first(Draft).n * 10)

    flock = Flock()
    flock.agent("chain").consumes(Task).publishes(Final).with_engines(First(), Second())
    task = await flock.publish(Task(n=1))
    summary = await flock.run_until_idle()
    assert summary.ok
    assert seen == [(["Draft"], {"from": "first"})]
    assert await finals(flock) == [20]
    assert await flock.store.get_by_type(Draft) == []  # intermediate outputs are not published
    [out] = (await flock.store.query_artifacts(FilterConfig(type_names="Final")))[0]
    assert out.consumed_from == (task.id,)


async def test_function_engine_passes_ctx_inputs_and_group_when_asked() -> None:
    got: dict = {}

    async def fn(task: Task, *, ctx: Context, inputs: EvalInputs, group: OutputGroup) -> Final:
        got.update(agent=ctx.agent, n=len(inputs.artifacts), group=group.index)
        return Final(n=task.n)

    flock = Flock()
    flock.agent("f").consumes(Task).publishes(Final).with_engines(FunctionEngine(fn))
    await run_one(flock, Task(n=3))
    assert got == {"agent": "f", "n": 1, "group": 0}
    assert await finals(flock) == [3]


async def test_each_publishes_call_is_one_engine_call() -> None:
    groups: list[int] = []

    def fn(task: Task, group: OutputGroup):
        groups.append(group.index)
        return Final(n=task.n) if group.index == 0 else [Note(n=1), Note(n=2)]

    flock = Flock()
    flock.agent("two").consumes(Task).publishes(Final).publishes(Note, fan_out=2).calls(fn)
    await run_one(flock)
    assert groups == [0, 1]
    assert len(await flock.store.get_by_type(Note)) == 2
    assert await finals(flock) == [1]


# ----------------------------------------------------------------------------- hooks


class Recorder(AgentComponent):
    def __init__(self, log: list[str], tag: str = "") -> None:
        self.log, self.tag = log, tag

    def rec(self, what: str) -> None:
        self.log.append(self.tag + what)

    async def on_initialize(self, agent, ctx):
        self.rec("on_initialize")

    async def on_pre_consume(self, agent, ctx, inputs):
        self.rec("on_pre_consume")

    async def on_pre_evaluate(self, agent, ctx, inputs):
        self.rec("on_pre_evaluate")

    async def on_post_evaluate(self, agent, ctx, inputs, result):
        self.rec("on_post_evaluate")

    async def on_post_publish(self, agent, ctx, artifact):
        self.rec(f"on_post_publish:{artifact.type}")

    async def on_error(self, agent, ctx, error):
        self.rec(f"on_error:{type(error).__name__}")

    async def on_terminate(self, agent, ctx):
        self.rec("on_terminate")


def documented_order() -> list[str]:
    """Hook names in the order the module docstring of flock._core.components lists them."""
    return re.findall(r"on_\w+|engines", components_module.__doc__ or "")


def test_the_docstring_documents_the_order_we_test() -> None:
    assert documented_order() == [
        "on_initialize",
        "on_pre_consume",
        "on_pre_evaluate",
        "engines",
        "on_post_evaluate",
        "on_post_publish",
        "on_terminate",
        "on_error",
        "on_terminate",
    ]


async def test_hooks_run_in_the_documented_order() -> None:
    log: list[str] = []

    def engine(task: Task) -> Final:
        log.append("engines")
        return Final(n=task.n)

    flock = Flock()
    flock.agent("a").consumes(Task).publishes(Final).calls(engine).with_utilities(Recorder(log))
    await run_one(flock)
    assert [e.split(":")[0] for e in log] == documented_order()[:7]
    assert log[5] == "on_post_publish:Final"


async def test_hooks_with_two_output_groups_and_two_utilities() -> None:
    log: list[str] = []

    def engine(task: Task, group: OutputGroup):
        log.append(f"engine{group.index}")
        return Final(n=1) if group.index == 0 else [Note(n=1), Note(n=2)]

    flock = Flock()
    flock.agent("a").consumes(Task).publishes(Final).publishes(Note, fan_out=2).calls(engine).with_utilities(
        Recorder(log, "1."), Recorder(log, "2.")
    )
    await run_one(flock)
    per_group = lambda g: [  # noqa: E731
        "1.on_pre_evaluate", "2.on_pre_evaluate", f"engine{g}", "1.on_post_evaluate", "2.on_post_evaluate",
    ]  # fmt: skip
    published = [f"{u}.on_post_publish:{o}" for o in ("Final", "Note", "Note") for u in ("1", "2")]
    assert log == [
        "1.on_initialize", "2.on_initialize", "1.on_pre_consume", "2.on_pre_consume",
        *per_group(0), *per_group(1), *published,
        "1.on_terminate", "2.on_terminate",
    ]  # fmt: skip


async def test_on_error_then_on_terminate_when_the_engine_fails() -> None:
    log: list[str] = []

    def engine(task: Task) -> Final:
        raise RuntimeError("engine broke")

    flock = Flock()
    flock.agent("a").consumes(Task).publishes(Final).calls(engine).with_utilities(Recorder(log))
    summary = await run_one(flock)
    assert log == [
        "on_initialize",
        "on_pre_consume",
        "on_pre_evaluate",
        "on_error:RuntimeError",
        "on_terminate",
    ]
    assert [e.error_type for e in summary.errors] == ["RuntimeError"]
    assert documented_order()[-2:] == ["on_error", "on_terminate"]


async def test_on_error_sees_contract_violations_too() -> None:
    log: list[str] = []
    flock = Flock()
    flock.agent("a").consumes(Task).publishes(Final, fan_out=2).calls(lambda t: Final()).with_utilities(
        Recorder(log)
    )
    await run_one(flock)
    assert "on_error:ContractViolation" in log
    assert log[-1] == "on_terminate"


async def test_a_failing_on_error_hook_does_not_hide_the_original_failure() -> None:
    class Bad(AgentComponent):
        async def on_error(self, agent, ctx, error):
            raise KeyError("hook")

    flock = Flock()
    flock.agent("a").consumes(Task).publishes(Final).calls(lambda t: 1 / 0).with_utilities(Bad())
    summary = await run_one(flock)
    assert [e.error_type for e in summary.errors] == ["ZeroDivisionError"]


async def test_a_failing_on_terminate_hook_is_recorded() -> None:
    class Bad(AgentComponent):
        async def on_terminate(self, agent, ctx):
            raise KeyError("terminate")

    flock = Flock()
    flock.agent("a").consumes(Task).publishes(Final).calls(lambda t: Final(n=t.n)).with_utilities(Bad())
    summary = await run_one(flock)
    assert await finals(flock) == [1]
    assert [(e.kind, e.error_type) for e in summary.errors] == [("agent_error", "KeyError")]


async def test_hooks_may_replace_inputs_and_results() -> None:
    class Rewrite(AgentComponent):
        async def on_pre_consume(self, agent, ctx, inputs):
            return EvalInputs(artifacts=inputs.artifacts, models=[Task(n=inputs.models[0].n + 100)])

        async def on_post_evaluate(self, agent, ctx, inputs, result):
            return EvalResult(outputs=[Final(n=o.n * 2) for o in result.outputs])

    flock = Flock()
    flock.agent("a").consumes(Task).publishes(Final).calls(lambda t: Final(n=t.n)).with_utilities(Rewrite())
    await run_one(flock, Task(n=1))
    assert await finals(flock) == [202]


async def test_hooks_share_state_through_the_context() -> None:
    class Stamp(AgentComponent):
        async def on_initialize(self, agent, ctx):
            ctx.state["stamp"] = 7

    flock = Flock()
    flock.agent("a").consumes(Task).publishes(Final).calls(
        lambda t, ctx: Final(n=ctx.state["stamp"])
    ).with_utilities(Stamp())
    await run_one(flock)
    assert await finals(flock) == [7]


# ----------------------------------------------------------------------------- best_of


async def test_best_of_keeps_the_highest_scoring_result() -> None:
    values = iter([3, 9, 1, 4])
    calls: list[int] = []

    def engine(task: Task) -> Final:
        calls.append(1)
        return Final(n=next(values))

    flock = Flock()
    flock.agent("a").consumes(Task).publishes(Final).calls(engine).best_of(4, lambda r: r.outputs[0].n)
    summary = await run_one(flock)
    assert summary.ok
    assert len(calls) == 4
    assert await finals(flock) == [9]


async def test_best_of_with_a_minimising_score() -> None:
    values = iter([3, 9, 1])
    flock = Flock()
    flock.agent("a").consumes(Task).publishes(Final).calls(lambda t: Final(n=next(values))).best_of(
        3, lambda r: -r.outputs[0].n
    )
    await run_one(flock)
    assert await finals(flock) == [1]


# ----------------------------------------------------------------------------- contracts


async def test_wrong_fan_out_count_is_a_recorded_contract_violation() -> None:
    flock = Flock()
    flock.agent("three").consumes(Task).publishes(Final, fan_out=3).calls(lambda t: [Final(n=1), Final(n=2)])
    summary = await run_one(flock)
    [err] = summary.errors
    assert (err.agent, err.kind, err.error_type, err.output_group) == (
        "three",
        "contract",
        "ContractViolation",
        0,
    )
    assert "expected exactly 3 Final, got 2" in err.message
    assert await finals(flock) == []
    assert len(await flock.store.get_by_type(WorkflowError)) == 1


@pytest.mark.parametrize(("n", "ok"), [(1, False), (2, True), (4, True), (5, False)])
async def test_fan_out_ranges_are_enforced_never_truncated(n: int, ok: bool) -> None:
    flock = Flock()
    flock.agent("r").consumes(Task).publishes(Final, fan_out=(2, 4)).calls(
        lambda t: [Final(n=i) for i in range(n)]
    )
    summary = await run_one(flock)
    assert summary.ok is ok
    assert await finals(flock) == (list(range(n)) if ok else [])
    if not ok:
        assert "between 2 and 4" in summary.errors[0].message


async def test_an_undeclared_output_type_is_a_contract_violation() -> None:
    flock = Flock()
    flock.agent("a").consumes(Task).publishes(Final).calls(lambda t: [Final(n=1), Note(n=1)])
    summary = await run_one(flock)
    assert [e.kind for e in summary.errors] == ["contract"]
    assert "Note is not declared" in summary.errors[0].message
    assert await finals(flock) == [] and await flock.store.get_by_type(Note) == []


async def test_invalid_fields_are_a_contract_violation() -> None:
    flock = Flock()
    flock.agent("a").consumes(Task).publishes(Final).calls(lambda t: Final.model_construct(n="not a number"))
    summary = await run_one(flock)
    assert [e.error_type for e in summary.errors] == ["ContractViolation"]
    assert await finals(flock) == []


async def test_a_violation_in_one_group_publishes_nothing_of_that_group() -> None:
    def engine(task: Task, group: OutputGroup):
        return Final(n=1) if group.index == 0 else [Note(n=1)]

    flock = Flock()
    flock.agent("a").consumes(Task).publishes(Final).publishes(Note, fan_out=2).calls(engine)
    summary = await run_one(flock)
    assert [(e.kind, e.output_group) for e in summary.errors] == [("contract", 1)]
    assert await finals(flock) == [1]  # group 0 was fine and was published
    assert await flock.store.get_by_type(Note) == []


async def test_failing_validate_is_recorded_as_validation_failed() -> None:
    flock = Flock()
    flock.agent("v").consumes(Task).publishes(
        Final, validate=(lambda f: f.n > 0, "n must be positive")
    ).calls(lambda t: Final(n=t.n))
    await flock.publish(Task(n=1))
    await flock.publish(Task(n=-1))
    summary = await flock.run_until_idle()
    assert await finals(flock) == [1]
    [err] = summary.errors
    assert (err.kind, err.error_type) == ("contract", "ValidationFailed")
    assert "n must be positive" in err.message


async def test_validate_checks_all_run_and_a_raising_check_fails_the_group() -> None:
    flock = Flock()
    flock.agent("v").consumes(Task).publishes(
        Final, fan_out=2, validate=[lambda f: True, lambda f: 1 / f.n > 0]
    ).calls(lambda t: [Final(n=1), Final(n=0)])
    summary = await run_one(flock)
    assert [e.error_type for e in summary.errors] == ["ValidationFailed"]
    assert "ZeroDivisionError" in summary.errors[0].message
    assert await finals(flock) == []


async def test_where_filters_outputs_after_the_contract_holds() -> None:
    flock = Flock()
    flock.agent("w").consumes(Task).publishes(Final, fan_out=3, where=lambda f: f.n % 2 == 1).calls(
        lambda t: [Final(n=i) for i in (1, 2, 3)]
    )
    flock.agent("x").consumes(Task).publishes(Note, fan_out=3, where=lambda f: True).calls(
        lambda t: [Note(n=1)]
    )
    summary = await run_one(flock)
    assert await finals(flock) == [1, 3]
    assert summary.filtered_outputs == 1
    # the contract is checked on what the engine returned, before filtering
    assert [(e.agent, e.kind) for e in summary.errors] == [("x", "contract")]


async def test_hook_order_when_a_later_group_fails() -> None:
    log: list[str] = []

    def engine(task: Task, group: OutputGroup):
        log.append(f"engine{group.index}")
        if group.index == 1:
            raise RuntimeError("second group broke")
        return Final(n=1)

    flock = Flock()
    flock.agent("a").consumes(Task).publishes(Final).publishes(Note).calls(engine).with_utilities(
        Recorder(log)
    )
    summary = await run_one(flock)
    # on_error first; then the earlier group's outputs are published with the WorkflowError
    assert log == [
        "on_initialize", "on_pre_consume",
        "on_pre_evaluate", "engine0", "on_post_evaluate",
        "on_pre_evaluate", "engine1",
        "on_error:RuntimeError", "on_post_publish:Final", "on_terminate",
    ]  # fmt: skip
    assert await finals(flock) == [1]
    assert [(e.error_type, e.output_group) for e in summary.errors] == [("RuntimeError", 1)]
    assert len(await flock.store.get_by_type(WorkflowError)) == 1


async def test_invoke_runs_hooks_and_on_error_before_raising() -> None:
    log: list[str] = []
    flock = Flock()
    flock.agent("a").consumes(Task).publishes(Final).calls(lambda t: 1 / 0).with_utilities(Recorder(log))
    with pytest.raises(ZeroDivisionError):
        await flock.invoke("a", Task())
    assert log[-2:] == ["on_error:ZeroDivisionError", "on_terminate"]
    assert await flock.store.list() == []


async def test_a_failing_on_post_publish_hook_is_recorded_and_the_outputs_stay() -> None:
    class Bad(AgentComponent):
        async def on_post_publish(self, agent, ctx, artifact):
            raise LookupError("after publish")

    flock = Flock()
    flock.agent("a").consumes(Task).publishes(Final).calls(lambda t: Final(n=t.n)).with_utilities(Bad())
    summary = await run_one(flock)
    assert await finals(flock) == [1]
    assert [(e.kind, e.error_type) for e in summary.errors] == [("agent_error", "LookupError")]


async def test_non_model_outputs_in_an_eval_result_are_a_contract_violation() -> None:
    flock = Flock()
    flock.agent("a").consumes(Task).publishes(Final).with_engines(
        Returns(lambda t: EvalResult(outputs=["text", Final(n=1)]))
    )
    summary = await run_one(flock)
    assert [e.kind for e in summary.errors] == ["contract"]
    assert "is not a model" in summary.errors[0].message
    assert await finals(flock) == []
