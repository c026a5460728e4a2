"""Live runs: events, map over many inputs, runtime variables (the core side of each)."""

from __future__ import annotations

import dataclasses

import anyio
import anyio.lowlevel
import pytest
from pydantic import BaseModel

from flock import (
    ActivationEvent,
    ArtifactEvent,
    ConfigurationError,
    EngineComponent,
    EvalResult,
    Flock,
    TenantVisibility,
    TokenEvent,
    UnknownAgentError,
    Var,
    VariableEvent,
    WorkflowError,
    flock_type,
)

pytestmark = pytest.mark.anyio


@flock_type
class Idea(BaseModel):
    topic: str


@flock_type
class Pitch(BaseModel):
    title: str


@flock_type
class Verdict(BaseModel):
    ok: bool


def pipeline() -> Flock:
    flock = Flock()
    flock.agent("writer").consumes(Idea).publishes(Pitch).calls(lambda i: Pitch(title=i.topic.title()))
    flock.agent("judge").consumes(Pitch).publishes(Verdict).calls(lambda p: Verdict(ok=True))
    return flock


async def run_and_close(flock: Flock, events, *inputs: BaseModel) -> None:  # type: ignore[no-untyped-def]
    await flock.publish_many(list(inputs))
    await flock.run_until_idle()
    events.close()


# ------------------------------------------------------------------ events


async def test_events_follow_a_run_in_order() -> None:
    flock = pipeline()
    seen: list[tuple[str, str]] = []
    async with flock.events() as events, anyio.create_task_group() as tg:
        tg.start_soon(run_and_close, flock, events, Idea(topic="bees"))
        async for event in events:
            if isinstance(event, ArtifactEvent):
                seen.append(("artifact", event.artifact.type))
            elif isinstance(event, ActivationEvent):
                seen.append((event.state, event.agent))
    assert seen == [
        ("artifact", "Idea"),
        ("started", "writer"),
        ("finished", "writer"),
        ("artifact", "Pitch"),
        ("started", "judge"),
        ("finished", "judge"),
        ("artifact", "Verdict"),
    ]


async def test_a_failed_activation_is_reported_as_failed() -> None:
    flock = Flock()

    def boom(i: Idea) -> Pitch:
        raise ValueError("no")

    flock.agent("writer").consumes(Idea).publishes(Pitch).calls(boom)
    states: list[str] = []
    async with flock.events(agents="writer") as events, anyio.create_task_group() as tg:
        tg.start_soon(run_and_close, flock, events, Idea(topic="x"))
        async for event in events:
            if isinstance(event, ActivationEvent):
                states.append(event.state)
    assert states == ["started", "failed"]


async def test_a_slow_subscriber_never_blocks_the_run_and_its_losses_are_counted() -> None:
    flock = pipeline()
    async with flock.events(buffer=5) as slow, flock.events() as fast:
        await flock.publish_many([Idea(topic=str(i)) for i in range(40)])
        with anyio.fail_after(10):
            summary = await flock.run_until_idle()  # nobody reads during the run
        slow.close()
        fast.close()
        kept = [e async for e in slow]
        everything = [e async for e in fast]
    assert summary.activations == 80
    assert len(kept) == 5 and slow.dropped == len(everything) - 5 > 0
    assert fast.dropped == 0


async def test_a_reader_that_falls_behind_keeps_the_newest_events() -> None:
    # The oldest unread events go first, for a subscriber that sees everything and for one that
    # filters alike; what was lost is counted exactly.
    flock = pipeline()
    async with flock.events(buffer=3) as everything, flock.events(agents=["judge"], buffer=2) as judged:
        await flock.publish_many([Idea(topic=str(i)) for i in range(4)])
        await flock.run_until_idle()
        everything.close()
        judged.close()
        kept = [e async for e in everything]
        kept_judged = [e async for e in judged]
    # 4 inputs, 8 activations (started + finished), 8 outputs: 4 + 16 + 8 = 28 events
    assert everything.dropped == 25 and everything.delivered == 3
    assert [type(e).__name__ for e in kept[-1:]] == ["ArtifactEvent"]
    assert isinstance(kept[-1], ArtifactEvent) and kept[-1].artifact.type.endswith("Verdict")
    # the judge's events: 4 x (started, finished, verdict) = 12, the last two kept
    assert judged.dropped == 10 and len(kept_judged) == 2
    assert isinstance(kept_judged[-1], ArtifactEvent) and kept_judged[-1].artifact.produced_by == "judge"


async def test_events_are_whole_values() -> None:
    # What a run emits equals, hashes, prints and converts like events built by hand; ``kind`` is
    # a class constant (not a field), yet every event has it.
    flock = pipeline()
    async with flock.events() as events:
        await run_and_close(flock, events, Idea(topic="owls"))
        got = [e async for e in events]
    activations = [e for e in got if isinstance(e, ActivationEvent)]
    artifacts = [e for e in got if isinstance(e, ArtifactEvent)]
    assert len(activations) == 4 and len(artifacts) == 3
    for e in activations:
        same = ActivationEvent(e.agent, e.activation_id, e.state, e.correlation_id)
        assert e == same and hash(e) == hash(same) and repr(e) == repr(same)
        assert dataclasses.asdict(e) == dataclasses.asdict(same) and e.kind == "activation"
    for e in artifacts:
        assert e == ArtifactEvent(e.artifact) and repr(e) == repr(ArtifactEvent(e.artifact))
        assert dataclasses.asdict(e)["artifact"] == e.artifact and e.kind == "artifact"
    assert {e.correlation_id for e in activations} == {artifacts[0].artifact.correlation_id}


async def test_a_closed_stream_gets_no_more_events() -> None:
    flock = pipeline()
    async with flock.events() as events, flock.events() as other:
        await flock.publish(Idea(topic="owls"))
        await flock.run_until_idle()
        events.close()
        await flock.publish(Idea(topic="moths"))  # after the close: not for this stream
        await flock.run_until_idle()
        got = [e async for e in events]
        other.close()
        assert len([e async for e in other]) == 2 * len(got) == 14
    assert events.dropped == 0 and other.dropped == 0


async def test_a_tenant_subscriber_sees_only_what_its_tenant_may_see() -> None:
    flock = Flock()
    flock.agent("acme-writer").tenant("acme").consumes(Idea).publishes(Pitch).calls(
        lambda i: Pitch(title=i.topic)
    )
    flock.agent("globex-writer").tenant("globex").consumes(Idea).publishes(Pitch).calls(
        lambda i: Pitch(title=i.topic)
    )
    async with flock.events(tenant="acme") as acme, flock.events(tenant="globex") as globex:
        await flock.publish(Idea(topic="acme idea"), visibility=TenantVisibility(tenant_id="acme"))
        await flock.publish(Idea(topic="globex idea"), visibility=TenantVisibility(tenant_id="globex"))
        await flock.run_until_idle()
        acme.close()
        globex.close()
        for_acme = [e async for e in acme]
        for_globex = [e async for e in globex]

    def texts(events: list) -> set[str]:  # type: ignore[type-arg]
        return {str(e.artifact.payload) for e in events if isinstance(e, ArtifactEvent)}

    assert all("acme" in t for t in texts(for_acme)) and len(texts(for_acme)) == 2
    assert all("globex" in t for t in texts(for_globex)) and len(texts(for_globex)) == 2
    assert {e.agent for e in for_acme if isinstance(e, ActivationEvent)} == {"acme-writer"}


class Streamer(EngineComponent):
    """Streams its answer in pieces, as an LLM engine would."""

    async def evaluate(self, agent, ctx, inputs, output_group):  # type: ignore[no-untyped-def]
        title = f"A film about {inputs.first(Idea).topic}"
        for start in range(0, len(title), 4):
            ctx.emit_token("title", title[start : start + 4])
            await anyio.lowlevel.checkpoint()
        return EvalResult(outputs=[Pitch(title=title)])


async def test_token_deltas_add_up_to_the_published_field() -> None:
    flock = Flock()
    flock.agent("writer").consumes(Idea).publishes(Pitch).with_engines(Streamer())
    deltas: list[str] = []
    async with flock.events() as events, anyio.create_task_group() as tg:
        tg.start_soon(run_and_close, flock, events, Idea(topic="bees"))
        async for event in events:
            if isinstance(event, TokenEvent):
                assert (event.agent, event.field) == ("writer", "title")
                deltas.append(event.delta)
    [pitch] = await flock.store.get_by_type(Pitch)
    assert len(deltas) > 1 and "".join(deltas) == pitch.title


# ------------------------------------------------------------------ map


async def test_map_returns_one_slot_per_input_in_order_with_failures_in_place() -> None:
    flock = Flock()

    async def write(i: Idea) -> Pitch:
        if i.topic == "bad":
            raise ValueError("cannot pitch that")
        await anyio.sleep(0.01 if i.topic == "slow" else 0)
        return Pitch(title=i.topic.upper())

    flock.agent("writer").consumes(Idea).publishes(Pitch).calls(write)
    topics = ["slow", "a", "bad", "b"]
    results = await flock.map("writer", [Idea(topic=t) for t in topics], concurrency=4)
    assert results[0] == [Pitch(title="SLOW")] and results[1] == [Pitch(title="A")]
    assert isinstance(results[2], WorkflowError) and results[2].message == "cannot pitch that"
    assert results[3] == [Pitch(title="B")]
    assert len(await flock.store.get_by_type(Idea)) == 4  # the inputs are on the board


async def test_map_bounds_the_agents_concurrency_and_reports_progress(
    capsys: pytest.CaptureFixture[str],
) -> None:
    flock = Flock()
    running = peak = 0

    async def write(i: Idea) -> Pitch:
        nonlocal running, peak
        running += 1
        peak = max(peak, running)
        await anyio.sleep(0.005)
        running -= 1
        return Pitch(title=i.topic)

    flock.agent("writer").consumes(Idea).publishes(Pitch).calls(write).max_concurrency(50)
    results = await flock.map("writer", [Idea(topic=str(i)) for i in range(30)], concurrency=3, progress=True)
    assert [r[0].title for r in results] == [str(i) for i in range(30)]  # type: ignore[index]
    assert peak == 3
    err = capsys.readouterr().err
    assert "map writer: 30/30 done, 0 failed" in err


async def test_map_refuses_what_the_agent_cannot_take() -> None:
    flock = pipeline()
    with pytest.raises(UnknownAgentError):
        await flock.map("nobody", [Idea(topic="x")])
    with pytest.raises(ConfigurationError, match="no plain subscription to Verdict"):
        await flock.map("writer", [Verdict(ok=True)])
    assert await flock.store.list() == []


# ------------------------------------------------------------------ variables


async def test_variables_are_typed_by_their_first_declaration() -> None:
    flock = Flock()
    flock.variables.declare("creativity", 0.7)
    flock.variables.set("creativity", 1)  # an int is a fine float
    assert flock.variables["creativity"] == 1.0
    with pytest.raises(
        ConfigurationError, match="variable 'creativity' holds float values; 'hot' is not one"
    ):
        flock.variables.set("creativity", "hot")
    flock.variables.set("tone", "dry")
    with pytest.raises(ConfigurationError, match="holds str values"):
        flock.variables.set("tone", 3)


class Tempered(EngineComponent):
    """Reads a Var-bound parameter before each activation, as DSPyEngine does."""

    def __init__(self, temperature: Var) -> None:
        self.temperature = temperature
        self.seen: list[float] = []

    def bind_variables(self, variables, owner):  # type: ignore[no-untyped-def]
        variables.bind(
            self.temperature,
            parameter="temperature",
            owner=owner,
            accepts="a number between 0 and 2",
            check=lambda v: 0 <= v <= 2,
        )

    async def evaluate(self, agent, ctx, inputs, output_group):  # type: ignore[no-untyped-def]
        self.seen.append(self.temperature.resolve(ctx.variables))
        return EvalResult(outputs=[Pitch(title="t")])


async def test_a_bound_variable_is_checked_at_set_and_read_per_activation() -> None:
    flock = Flock()
    engine = Tempered(Var("creativity", default=0.7))
    flock.agent("writer").consumes(Idea).publishes(Pitch).with_engines(engine)
    await flock.publish(Idea(topic="a"))
    await flock.run_until_idle()
    flock.variables.set("creativity", 1.5)
    with pytest.raises(
        ConfigurationError, match=r"sets temperature= of agent 'writer', which takes a number"
    ):
        flock.variables.set("creativity", 7.0)
    await flock.publish(Idea(topic="b"))
    await flock.run_until_idle()
    assert engine.seen == [0.7, 1.5]


async def test_a_change_reaches_the_next_activation_not_the_running_one() -> None:
    flock = Flock()
    started = anyio.Event()
    go_on = anyio.Event()
    seen: list[str] = []

    class Reader(EngineComponent):
        async def evaluate(self, agent, ctx, inputs, output_group):  # type: ignore[no-untyped-def]
            started.set()
            await go_on.wait()
            seen.append(ctx.variables.get("tone", "unset"))
            return EvalResult(outputs=[Pitch(title="t")])

    flock.agent("writer").consumes(Idea).publishes(Pitch).with_engines(Reader()).max_concurrency(1)
    flock.variables.set("tone", "dry")
    await flock.publish_many([Idea(topic="a"), Idea(topic="b")])
    async with anyio.create_task_group() as tg:
        tg.start_soon(flock.run_until_idle)
        await started.wait()
        flock.variables.set("tone", "warm")  # while the first activation runs
        go_on.set()
    assert seen == ["dry", "warm"]


async def test_a_variable_change_is_an_event() -> None:
    flock = Flock()
    async with flock.events() as events:
        flock.variables.set("tone", "dry")
        events.close()
        got = [e async for e in events]
    assert got == [VariableEvent("tone", "dry")]



async def test_a_waiting_reader_gets_every_event_when_they_come_close_together() -> None:
    # A reader woken moments ago is woken again a little later rather than at once: an event that
    # arrives then, with nothing after it, must still reach it (nothing closes the stream here).
    flock = Flock()
    got: list[object] = []
    async with flock.events() as events:

        async def read() -> None:
            async for event in events:
                got.append(event.value)  # type: ignore[union-attr]
                if len(got) == 3:
                    return

        with anyio.fail_after(10):  # the reader returns once it has all three
            async with anyio.create_task_group() as tg:
                tg.start_soon(read)
                await anyio.lowlevel.checkpoint()  # the reader is waiting
                flock.variables.set("tone", "dry")
                await anyio.lowlevel.checkpoint()  # it wakes and waits again
                flock.variables.set("tone", "warm")
                flock.variables.set("tone", "bold")
    assert got == ["dry", "warm", "bold"]


async def test_several_readers_of_one_stream_share_its_events_and_all_end_when_it_closes() -> None:
    # Two tasks read one stream: each event reaches one of them, and close() ends both (before,
    # the second reader's wait replaced the first's, which then waited forever).
    flock = Flock()
    got: list[object] = []
    async with flock.events() as events:

        async def read() -> None:
            async for event in events:
                got.append(event.value)  # type: ignore[union-attr]

        with anyio.fail_after(10):
            async with anyio.create_task_group() as tg:
                tg.start_soon(read)
                tg.start_soon(read)
                await anyio.sleep(0.01)  # both wait
                flock.variables.set("tone", "dry")
                await anyio.sleep(0.01)
                flock.variables.set("tone", "warm")
                await anyio.sleep(0.01)
                events.close()
    assert got == ["dry", "warm"]


async def test_a_reader_cancelled_while_another_waits_leaves_that_one_waiting() -> None:
    flock = Flock()
    got: list[object] = []
    async with flock.events() as events:

        async def read() -> None:
            async for event in events:
                got.append(event.value)  # type: ignore[union-attr]

        with anyio.fail_after(10):
            async with anyio.create_task_group() as tg:
                tg.start_soon(read)
                await anyio.sleep(0.01)
                with anyio.move_on_after(0.01):  # a second reader gives up while both wait
                    await read()
                flock.variables.set("tone", "dry")
                await anyio.sleep(0.01)
                events.close()
    assert got == ["dry"]

# ------------------------------------------------------------------ the live view


async def test_progress_shows_a_live_line_on_stderr_and_nothing_on_stdout(
    capsys: pytest.CaptureFixture[str],
) -> None:
    flock = pipeline()
    flock.agent("broken").consumes(Verdict).calls(lambda v: 1 / 0)
    await flock.publish_many([Idea(topic=t) for t in ("a", "b", "c")])
    await flock.run_until_idle(progress=True)
    out, err = capsys.readouterr()
    assert out == ""
    assert err.strip().splitlines()[-1].startswith("flock: 9 done, 0 running, 0 queued, 3 failed, ")


async def test_progress_is_off_by_default_when_stderr_is_not_a_terminal(
    capsys: pytest.CaptureFixture[str],
) -> None:
    flock = pipeline()
    await flock.publish(Idea(topic="a"))
    await flock.run_until_idle()
    assert capsys.readouterr() == ("", "")


def test_on_a_terminal_the_line_is_rewritten_in_place() -> None:
    import io

    from flock._core.lifecycle import State
    from flock._core.scheduler import Activation
    from flock._live.live_view import LiveView

    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    screen = Terminal()
    view = LiveView(
        queued=lambda: 2,
        running=lambda: 1,
        metrics=lambda: {"input_tokens": 1200.0, "output_tokens": 34.0},
        usage=dict,
        stream=screen,
    )
    view.interval = 0.0
    act = Activation("writer", 0, ())
    for state in (State.RUNNING, State.COMMITTED, State.FAILED):
        view(act, state)
    view.close()
    frames = screen.getvalue().split("\r\x1b[2K")
    assert frames[0] == "" and len(frames) == 4  # two updates and the closing line, in place
    assert frames[-1] == frames[-1].rstrip("\n") + "\n"
    assert "2 done, 1 running, 2 queued, 1 failed" in frames[-1] and "1,234 tokens" in frames[-1]


async def test_a_read_given_up_on_leaves_the_stream_readable() -> None:
    # A reader may stop waiting (a keep-alive timer, a UI tick) and read again later.
    # (The SSE endpoint reads this way: one iterator, each read under a keep-alive timeout.)
    flock = Flock()
    async with flock.events() as events:
        reader = events.__aiter__()
        with anyio.move_on_after(0.01) as waited:
            await reader.__anext__()
        assert waited.cancelled_caught
        flock.variables.set("tone", "dry")
        with anyio.fail_after(10):
            assert await reader.__anext__() == VariableEvent("tone", "dry")
