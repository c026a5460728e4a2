"""The main job and the durable-board example run in a fresh interpreter and show what they claim."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def _run(name: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(
        [sys.executable, str(EXAMPLES / name)], cwd=cwd, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    return done


def test_the_main_job_runs_a_traced_pipeline_on_the_offline_model(tmp_path: Path) -> None:
    done = _run("01_pipeline.py", tmp_path)
    assert "using the built-in 'offline' model" in done.stderr  # it announces itself
    for line in ("writer → Pitch", "critic → Review", "marketer → Tagline", "producer → Greenlight"):
        assert line in done.stdout
    assert "4 activations, 8 artifacts, 0 errors" in done.stdout
    assert (tmp_path / ".flock" / "traces.db").is_file()
    trace_prefix = done.stdout.split("traces show ")[1].split()[0]
    shown = subprocess.run(
        [sys.executable, "-m", "flock", "traces", "show", trace_prefix],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert shown.returncode == 0, shown.stderr
    assert "flock.run movie-studio" in shown.stdout and "flock.activate producer" in shown.stdout


def test_the_durable_board_example_finishes_left_work_exactly_once(tmp_path: Path) -> None:
    done = _run("09_durable_board.py", tmp_path)
    assert "process 2 resumed: 3 activations" in done.stdout
    assert "process 3 resumed: 0 activations; the board holds 6 artifacts" in done.stdout


def test_the_traced_research_example_shows_what_the_tracing_docs_show(tmp_path: Path) -> None:
    done = _run("10_traced_research.py", tmp_path)
    assert "6 activations, 10 artifacts, 1 errors" in done.stdout
    shown = subprocess.run(
        [sys.executable, "-m", "flock", "traces", "show", "latest"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert shown.returncode == 0, shown.stderr
    assert "flock.run bee-research" in shown.stdout
    assert shown.stdout.count("execute_tool search_papers") == 3
    assert "finish stop" in shown.stdout  # finish reasons reach the store on Flock's own provider
    assert "ERROR   inputs Report · agent_error: RuntimeError: the review board is closed" in shown.stdout


def test_the_fallback_and_budget_example_shows_both(tmp_path: Path) -> None:
    done = _run("11_fallback_budget.py", tmp_path)
    assert "3 answers, made by: ['model:offline']" in done.stdout
    assert "offline: calls=3 failures=0 retries=0 fallbacks=3" in done.stdout
    assert "function: calls=0 failures=2 retries=1" in done.stdout
    assert "the primary saw 2 calls" in done.stdout
    assert "the run stopped: the model budget of this run is spent" in done.stdout
    assert "1 answer made within the budget, the rest stays queued" in done.stdout
    assert "after raising the budget: 4 answers, none lost" in done.stdout


def test_the_streaming_example_shows_the_text_as_it_arrives(tmp_path: Path) -> None:
    done = _run("14_streaming.py", tmp_path)
    out = done.stdout
    assert out.index("[writer started]") < out.index("Logline about") < out.index("[writer finished]")
    assert "[published Review]" in out
    assert "streamed logline equals the published one: True" in out
    assert out.endswith("2 activations\n")  # the second run, with progress="writer"
    shown = done.stderr.splitlines()
    assert any(line.startswith("writer.logline: ") for line in shown), done.stderr
    assert "writer.logline: " not in out  # the view writes to stderr only


def test_the_human_approval_example_waits_for_the_manager_then_pays(tmp_path: Path) -> None:
    done = _run("17_human_approval.py", tmp_path)
    out = done.stdout
    assert "process 1: 4 activations, 2 tasks open for the manager" in out
    assert "a wrong answer is refused: approved: Input should be a valid boolean" in out
    assert "answered the laptop; 1 task left open" in out
    assert "three days later: 0 tasks open" in out
    assert "manager: approved=False (no answer within two days)" in out
    assert "payments: [('ada', 12.5), ('bob', 1800.0)]" in out


def test_the_wiring_example_finds_what_no_single_declaration_shows(tmp_path: Path) -> None:
    out = _run("20_wiring.py", tmp_path).stdout
    assert "inputs (nobody publishes them): ['Escalation', 'Ticket']" in out
    assert "dead ends (nobody consumes them): ['Survey']" in out
    assert "cycles: [['fixer', 'reviewer']]" in out
    assert "can never run when only Tickets arrive: ['escalator']" in out
    checked = subprocess.run(  # its module-level flock, from a terminal
        [sys.executable, "-m", "flock", "check", "20_wiring:flock", "--inputs", "Ticket"],
        cwd=EXAMPLES,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert checked.returncode == 1, checked.stderr
    assert checked.stdout.endswith(
        "problem: agent 'escalator' can never run from the inputs ['Ticket']\n2 problems\n"
    )


def test_the_map_example_keeps_input_order_and_isolates_the_failure(tmp_path: Path) -> None:
    done = _run("21_map.py", tmp_path)
    lines = done.stdout.splitlines()
    assert [line.split()[0] for line in lines] == ["translator"] * 4 + ["checker"] * 4
    assert lines[0].startswith("translator  'good morning'") and "Translation(french=" in lines[0]
    assert lines[4:] == [
        "checker     'good morning'         -> 2 words",
        "checker     'the bees are back'    -> 4 words",
        "checker     ''                     -> failed (ValueError): an empty phrase has nothing to check",
        "checker     'see you soon'         -> 3 words",
    ]
    assert "map translator: 4/4 done, 0 failed" in done.stderr


def test_the_visibility_example_shows_restrictions_passed_on_and_refused(tmp_path: Path) -> None:
    lines = _run("22_visibility.py", tmp_path).stdout.splitlines()
    assert lines[:2] == ["payroll saw Note: raise for ada", "all_hands saw Announcement: new office"]
    assert lines[2].startswith("hr wrote 'summary of complaint #7', visible as LabelledVisibility(")
    assert [line.split(":")[0] for line in lines[4:]] == ["refused"] * 3


def test_the_components_example_masks_and_vetoes_without_touching_the_agent(tmp_path: Path) -> None:
    assert _run("23_components.py", tmp_path).stdout.splitlines() == [
        "idle: 3 artifacts stored, 1 activation(s) vetoed",
        "Re 'printer on fire': we wrote to [email] and will copy you.",
        "emails masked: 1, activations: 1",
    ]


def test_the_sessions_example_remembers_each_session_apart(tmp_path: Path) -> None:
    assert _run("24_sessions.py", tmp_path).stdout.splitlines() == [
        "ada: My name is Ada.    -> Nice to meet you.",
        "bob: My name is Bob.    -> Nice to meet you.",
        "ada: What is my name?   -> Your name is Ada.",
        "bob: What is my name?   -> Your name is Bob.",
        "eve: What is my name?   -> You have not told me.",
    ]
