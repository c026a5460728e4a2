"""The live view with an agent's streamed text: ``run_until_idle(progress="writer")``."""

from __future__ import annotations

import io
import uuid

import anyio.lowlevel
import pytest
from pydantic import BaseModel

from flock import DSPyEngine, EngineComponent, EvalResult, Flock, UnknownAgentError, flock_type
from flock._live.events import ActivationEvent, TokenEvent
from flock._live.live_view import LiveView

pytestmark = pytest.mark.anyio


@flock_type
class Brief(BaseModel):
    topic: str


@flock_type
class Draft(BaseModel):
    text: str


class Typist(EngineComponent):
    """Streams its text in 5-character pieces (one attempt, or a bad one first when asked)."""

    def __init__(self, text: str, bad_first: str = "") -> None:
        self.text, self.bad_first = text, bad_first
        self.streaming: list[bool] = []

    async def evaluate(self, agent, ctx, inputs, output_group):  # type: ignore[no-untyped-def]
        self.streaming.append(ctx.streaming)
        attempts = [self.bad_first, self.text] if self.bad_first else [self.text]
        for attempt, text in enumerate(attempts):
            for start in range(0, len(text), 5):
                ctx.emit_token("text", text[start : start + 5], attempt)
                await anyio.lowlevel.checkpoint()
        return EvalResult(outputs=[Draft(text=self.text)])


async def test_an_agents_text_is_written_line_by_line_on_stderr_and_nothing_on_stdout(
    capsys: pytest.CaptureFixture[str],
) -> None:
    typist = Typist("Owls hunt at night.\nThey fly without a sound.")
    flock = Flock()
    flock.agent("writer").consumes(Brief).publishes(Draft).with_engines(typist)
    await flock.publish(Brief(topic="owls"))
    summary = await flock.run_until_idle(progress="writer")
    out, err = capsys.readouterr()
    assert out == "" and summary.activations == 1
    lines = err.splitlines()
    assert lines[:2] == ["writer.text: Owls hunt at night.", "writer.text: They fly without a sound."]
    assert lines[-1].startswith("flock: 1 done, 0 running, 0 queued, 0 failed, ")
    # the listener goes with the run: the next run's engine is not asked to stream
    await flock.publish(Brief(topic="bats"))
    await flock.run_until_idle(progress=False)
    assert typist.streaming == [True, False]


async def test_a_re_asked_answer_is_marked_and_the_new_one_follows(
    capsys: pytest.CaptureFixture[str],
) -> None:
    flock = Flock()
    typist = Typist("A calm owl.", bad_first="Score: 9 of 5")
    flock.agent("writer").consumes(Brief).publishes(Draft).with_engines(typist)
    await flock.publish(Brief(topic="owls"))
    await flock.run_until_idle(progress="writer")
    lines = capsys.readouterr().err.splitlines()
    assert lines[:2] == ["writer.text: Score: 9 of 5 [asked again]", "writer.text: A calm owl."]


async def test_the_offline_models_streamed_text_is_the_published_text(
    capsys: pytest.CaptureFixture[str],
) -> None:
    flock = Flock(model="offline")
    flock.agent("writer").consumes(Brief).publishes(Draft).with_engines(DSPyEngine())
    await flock.publish(Brief(topic="owls"))
    await flock.run_until_idle(progress="writer")
    [draft] = await flock.store.get_by_type(Draft)
    assert f"writer.text: {draft.text}" in capsys.readouterr().err.splitlines()


async def test_an_unknown_agent_is_refused_before_the_run() -> None:
    flock = Flock()
    flock.agent("writer").consumes(Brief).publishes(Draft).calls(lambda b: Draft(text=b.topic))
    await flock.publish(Brief(topic="owls"))
    with pytest.raises(UnknownAgentError, match=r"progress='critic'.*declared agents: \['writer'\]"):
        await flock.run_until_idle(progress="critic")
    assert (await flock.run_until_idle(progress=False)).activations == 1  # nothing was lost


def test_on_a_terminal_the_line_being_written_ends_the_status_line() -> None:
    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    screen = Terminal()
    view = LiveView(queued=lambda: 0, running=lambda: 1, metrics=dict, usage=dict, stream=screen)
    view.agent, view.interval = "writer", 0.0
    act = uuid.uuid4()
    for piece in ("Owls hunt ", "at night.\nThey ", "fly"):
        view.on_event(TokenEvent("writer", act, "text", piece))
    frames = screen.getvalue().split("\r\x1b[2K")
    assert "writer.text: Owls hunt at night.\n" in frames  # a finished line stays above
    assert frames[-1].endswith("| writer.text: They fly")  # the unfinished one ends the status line
    view.on_event(ActivationEvent("writer", act, "finished"))
    assert screen.getvalue().split("\r\x1b[2K")[-2] == "writer.text: They fly\n"


async def test_concurrent_activations_lines_interleave_but_never_mix(
    capsys: pytest.CaptureFixture[str],
) -> None:
    class Echo(EngineComponent):
        async def evaluate(self, agent, ctx, inputs, output_group):  # type: ignore[no-untyped-def]
            text = f"{inputs.first(Brief).topic} fly at night."
            for start in range(0, len(text), 3):  # both activations stream piece by piece, in turns
                ctx.emit_token("text", text[start : start + 3])
                await anyio.lowlevel.checkpoint()
            return EvalResult(outputs=[Draft(text=text)])

    flock = Flock()
    flock.agent("writer").consumes(Brief).publishes(Draft).with_engines(Echo()).max_concurrency(2)
    await flock.publish_many([Brief(topic="owls"), Brief(topic="bats")])
    await flock.run_until_idle(progress="writer")
    lines = capsys.readouterr().err.splitlines()
    assert sorted(lines[:2]) == ["writer.text: bats fly at night.", "writer.text: owls fly at night."]
