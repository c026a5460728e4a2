"""flock.graph(), the unreachable-agent warning of a run, and `flock check`: wiring mistakes found early."""

from __future__ import annotations

import logging
import textwrap
from datetime import timedelta
from pathlib import Path

import pytest
from pydantic import BaseModel

from flock import AgentGraph, Flock, HumanTask, JoinExpired, JoinSpec, WorkflowError, flock_type
from flock.cli import main

pytestmark = pytest.mark.anyio


@flock_type
class Idea(BaseModel):
    topic: str


@flock_type
class Draft(BaseModel):
    text: str


@flock_type
class Review(BaseModel):
    verdict: str


@flock_type
class Final(BaseModel):
    text: str


def studio() -> Flock:
    flock = Flock()
    flock.agent("writer").consumes(Idea).publishes(Draft).calls(lambda i: Draft(text=i.topic))
    flock.agent("critic").consumes(Draft).publishes(Review).calls(lambda d: Review(verdict="ok"))
    flock.agent("reviser").consumes(Review, where=lambda r: r.verdict != "ok").publishes(Draft).calls(
        lambda r: Draft(text="again")
    )
    flock.agent("editor").consumes(Draft, Review).publishes(Final).calls(lambda d, r: Final(text=d.text))
    flock.agent("archivist").consumes(Final, Idea).calls(lambda f, i: None)
    return flock


def test_the_graph_finds_reachability_dead_ends_and_cycles() -> None:
    graph = studio().graph()
    assert isinstance(graph, AgentGraph)
    assert graph.unreachable(from_types=[Idea]) == []
    assert graph.unreachable(from_types=["Draft"]) == ["archivist", "writer"]  # an AND gate needs all
    assert graph.unreachable(from_types=[]) == ["archivist", "critic", "editor", "reviser", "writer"]
    assert graph.dead_ends() == []
    assert graph.cycles() == [["critic", "reviser"]]
    assert graph.inputs() == ["Idea"]
    assert graph.problems() == []


def test_dead_ends_and_self_loops() -> None:
    flock = Flock()
    flock.agent("writer").consumes(Idea).publishes(Draft, Final).calls(lambda i: [])
    flock.agent("polisher").consumes(Draft).publishes(Draft).calls(lambda d: d)
    flock.agent("looper").consumes(Draft).publishes(Draft).prevent_self_trigger(False).calls(lambda d: None)
    graph = flock.graph()
    assert graph.dead_ends() == ["Final"]
    assert ["looper"] in graph.cycles()
    assert ["polisher"] not in graph.cycles()  # it ignores its own outputs
    assert ["looper", "polisher"] in graph.cycles()


def test_from_agents_limits_which_producers_wake_a_subscription() -> None:
    flock = Flock()
    flock.agent("writer").consumes(Idea).publishes(Draft).calls(lambda i: None)
    flock.agent("critic").consumes(Draft, from_agents="writer").publishes(Review).calls(lambda d: None)
    flock.agent("reviser").consumes(Review).publishes(Draft).calls(lambda r: None)
    graph = flock.graph()
    assert graph.edges()["reviser"] == set()  # the critic ignores the reviser's drafts
    assert graph.cycles() == []


def test_the_mermaid_picture_shows_types_agents_and_gates() -> None:
    text = studio().graph().to_mermaid()
    lines = text.splitlines()
    assert lines[0] == "flowchart LR"
    assert '    t_Idea["Idea"]' in lines
    assert '    a_writer(["writer"])' in lines
    assert "    t_Idea --> a_writer" in lines
    assert "    a_writer --> t_Draft" in lines
    assert "    t_Review -->|and| a_editor" in lines


def test_the_five_newcomer_mistakes_are_problems() -> None:
    flock = Flock()
    flock.agent("intake").consumes(Idea).publishes(Draft).calls(lambda i: Draft(text=i.topic))
    flock.agent("idle")  # consumes nothing
    flock.agent("mute").consumes(Draft)  # an LLM agent that publishes nothing
    flock.agent("orphan").consumes(Review).publishes(Final).calls(lambda r: None)  # nobody publishes Review
    graph = flock.graph()
    found = graph.problems()
    assert any("'idle' consumes nothing and has no schedule" in p for p in found)
    assert any("'mute' runs a language model but publishes nothing" in p for p in found)
    assert not any("Review" in p for p in found)  # without inputs it may come from outside
    found = graph.problems(inputs=[Idea])
    assert any("type 'Review' is consumed by orphan but no agent publishes it" in p for p in found)
    assert any("agent 'orphan' can never run from the inputs ['Idea']" in p for p in found)


def test_a_loop_with_no_way_in_is_a_problem_without_inputs() -> None:
    flock = Flock()
    flock.agent("a").consumes(Draft).publishes(Review).calls(lambda d: None)
    flock.agent("b").consumes(Review).publishes(Draft).calls(lambda r: None)
    assert [p.split(":")[0] for p in flock.graph().problems()] == [
        "agent 'a' can never run",
        "agent 'b' can never run",
    ]


async def test_run_until_idle_warns_once_about_agents_nothing_can_wake(
    caplog: pytest.LogCaptureFixture,
) -> None:
    flock = Flock()
    flock.agent("writer").consumes(Idea).publishes(Draft).calls(lambda i: Draft(text=i.topic))
    flock.agent("reader").consumes(Draft).calls(lambda d: None)
    flock.agent("judge").consumes(Review).calls(lambda r: None)
    flock.agent("on_error").consumes(WorkflowError).calls(lambda e: None)
    with caplog.at_level(logging.WARNING, logger="flock"):
        await flock.publish(Idea(topic="bees"))
        await flock.run_until_idle()
        await flock.publish(Idea(topic="ants"))
        await flock.run_until_idle()
    warnings = [r.getMessage() for r in caplog.records if "cannot run" in r.getMessage()]
    assert warnings == [
        "agent 'judge' cannot run from what has been published so far: nothing published Review and no "
        "agent publishes it. Publish Review, or check the wiring with flock.graph().problems() or "
        "`flock check`"
    ]


async def test_no_warning_once_the_missing_type_arrives(caplog: pytest.LogCaptureFixture) -> None:
    flock = Flock()
    flock.agent("judge").consumes(Review).calls(lambda r: None)
    with caplog.at_level(logging.WARNING, logger="flock"):
        await flock.publish(Review(verdict="ok"))
        await flock.run_until_idle()
    assert not [r for r in caplog.records if "cannot run" in r.getMessage()]


def test_records_flock_publishes_for_an_agent_wake_their_consumers_in_the_graph() -> None:
    # JoinExpired comes from an agent with a join, HumanTask from a human agent: no agent declares
    # them, yet their consumers can run, and neither is an input from outside nor a dead end.
    flock = Flock()
    flock.agent("pairer").consumes(
        Idea, Draft, join=JoinSpec(by=lambda m: 1, within=timedelta(minutes=5))
    ).publishes(Final).calls(lambda i, d: Final(text=d.text))
    flock.agent("chaser").consumes(JoinExpired).calls(lambda e: None)
    flock.agent("approver").consumes(Final).publishes(Review).human(prompt="ok?")
    flock.agent("pager").consumes(HumanTask).calls(lambda t: None)
    graph = flock.graph()
    assert graph.inputs() == ["Draft", "Idea"]
    assert graph.unreachable() == []
    assert graph.unreachable(from_types=[Idea]) == ["approver", "chaser", "pager", "pairer"]
    assert graph.problems() == []
    assert graph.edges()["pairer"] == {"approver", "chaser"}
    assert graph.edges()["approver"] == {"pager"}


async def test_no_warning_for_a_consumer_of_join_expired(caplog: pytest.LogCaptureFixture) -> None:
    flock = Flock()
    flock.agent("pairer").consumes(
        Idea, Draft, join=JoinSpec(by=lambda m: 1, within=timedelta(minutes=5))
    ).publishes(Final).calls(lambda i, d: Final(text=d.text))
    flock.agent("chaser").consumes(JoinExpired).calls(lambda e: None)
    with caplog.at_level(logging.WARNING, logger="flock"):
        await flock.publish(Idea(topic="bees"))
        await flock.publish(Draft(text="bees"))
        await flock.run_until_idle()
    assert not [r.getMessage() for r in caplog.records if "cannot run" in r.getMessage()]


def _module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, name: str, body: str) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    header = """
        from pydantic import BaseModel
        from flock import Flock, flock_type

        @flock_type
        class Ticket(BaseModel):
            text: str

        @flock_type
        class Triage(BaseModel):
            category: str

        flock = Flock()
    """
    (tmp_path / f"{name}.py").write_text(textwrap.dedent(header) + textwrap.dedent(body))


def test_flock_check_prints_the_graph_and_exits_0_when_sound(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    _module(
        tmp_path,
        monkeypatch,
        "sound_app",
        """
        flock.agent("triage").consumes(Ticket).publishes(Triage)
    """,
    )
    assert main(["check", "sound_app:flock"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("1 agents, 2 types\n\nflowchart LR\n")
    assert "inputs (no agent publishes them, so they must be published from outside): Ticket" in out
    assert "dead ends (published, consumed by no agent" in out
    assert out.endswith("no problems found\n")


def test_flock_check_exits_1_on_problems_and_names_them(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    _module(
        tmp_path,
        monkeypatch,
        "broken_app",
        """
        flock.agent("triage").consumes(Ticket)
        flock.agent("router").consumes(Triage).calls(print)
    """,
    )
    assert main(["check", "broken_app", "--inputs", "Ticket"]) == 1
    out = capsys.readouterr().out
    assert "problem: agent 'triage' runs a language model but publishes nothing" in out
    assert "problem: type 'Triage' is consumed by router but no agent publishes it" in out
    assert out.endswith("3 problems\n")


def test_flock_check_reports_a_declaration_error_as_a_problem(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    _module(
        tmp_path,
        monkeypatch,
        "gate_app",
        """
        flock.agent("r").consumes(Ticket, Triage, where=lambda t: t.category == "bug")
    """,
    )
    assert main(["check", "gate_app:flock"]) == 1
    assert "where={Ticket: lambda t: ..., Triage: lambda t: ...}" in capsys.readouterr().out


def test_flock_check_exits_2_when_the_target_is_not_a_flock(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    _module(tmp_path, monkeypatch, "other_app", "")
    assert main(["check", "other_app:Ticket"]) == 2
    assert "not a Flock" in capsys.readouterr().err
    assert main(["check", "no_such_module_here"]) == 2


def test_flock_check_says_how_to_load_what_it_could_not(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    _module(tmp_path, monkeypatch, "other_flock", "")  # a module-level `flock`
    header = "from flock import Flock\n"
    (tmp_path / "made_in_main.py").write_text(header + "def build(store):\n    return Flock(store=store)\n")
    (tmp_path / "needs_dep.py").write_text("import flock_no_such_dependency\n")

    def error(*argv: str) -> str:
        assert main(["check", *argv]) == 2
        return capsys.readouterr().err.strip()

    assert error("apps/made_in_main.py") == (
        "flock check: 'apps/made_in_main.py' is a file path; give a module name, as for `python -m`: "
        "apps.made_in_main:flock from here, or made_in_main:flock from apps/"
    )
    assert error("made_in_main:flock") == (
        "flock check: module 'made_in_main' has no attribute 'flock'; it defines no Flock at module level "
        "(a Flock made inside a function cannot be loaded): add `flock = Flock(...)` at module level, or "
        "name a function that returns one, e.g. made_in_main:build"
    )
    assert error("other_flock:board") == (
        "flock check: module 'other_flock' has no attribute 'board'; the Flocks it defines: other_flock:flock"
    )
    assert error("made_in_main:build") == (
        "flock check: made_in_main:build is a function that needs arguments (store); name a module-level "
        "Flock, or a function that takes none and returns one"
    )
    assert error("needs_dep") == (
        "flock check: importing 'needs_dep' failed: it needs 'flock_no_such_dependency', which is not "
        "installed (No module named 'flock_no_such_dependency'); install it into this environment"
    )
    assert error("no_such_app_module").startswith(
        "flock check: cannot import 'no_such_app_module': No module named 'no_such_app_module'. Run from "
        "the directory that holds no_such_app_module"
    )


async def test_a_language_model_agent_that_publishes_nothing_is_warned_about_once_it_runs(
    caplog: pytest.LogCaptureFixture,
) -> None:
    flock = Flock()
    flock.agent("silent").consumes(Idea)  # no .publishes(), no .calls(): the DSPy engine, asked nothing
    flock.agent("doer").consumes(Idea).calls(lambda i: None)  # a function that only acts: fine
    with caplog.at_level(logging.WARNING, logger="flock"):
        for topic in ("bees", "ants"):
            await flock.publish(Idea(topic=topic))
            summary = await flock.run_until_idle()
            assert summary.agents_run["silent"] == 1
    warnings = [r.getMessage() for r in caplog.records if "ran with no .publishes" in r.getMessage()]
    assert warnings == [
        "agent 'silent' ran with no .publishes(...), so its language model was not asked anything and "
        "nothing was published: add .publishes(SomeType), or .calls(func) for an agent that only acts"
    ]


async def test_an_agent_that_nothing_can_start_is_warned_about_after_a_run(
    caplog: pytest.LogCaptureFixture,
) -> None:
    flock = Flock()
    flock.agent("idle").publishes(Draft).calls(lambda: Draft(text="never"))  # no consumes, no schedule
    with caplog.at_level(logging.WARNING, logger="flock"):
        await flock.run_until_idle()
        await flock.run_until_idle()
    assert [r.getMessage() for r in caplog.records] == [
        "agent 'idle' consumes nothing and has no schedule, so it never runs: add .consumes(SomeType) or "
        ".schedule(every=...)"
    ]
