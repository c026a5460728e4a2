"""`flock traces` and `flock traces show`, through main() and through a real subprocess."""

from __future__ import annotations

import argparse
import json
import os
import sqlite3
import subprocess
import sys
from contextlib import closing
from pathlib import Path

import pytest
from opentelemetry import trace
from trace_support import Recorder, record_run

from flock import cli
from flock._tracing.trace_query import TraceStore
from flock._tracing.trace_store import SQLiteSpanExporter


def run_cli(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = cli.main(args)
    out, err = capsys.readouterr()
    return code, out, err


def test_traces_lists_runs_as_a_table(recorded: tuple[Path, str], capsys: pytest.CaptureFixture[str]) -> None:
    db, trace_id = recorded
    code, out, err = run_cli(["traces", "--db", str(db)], capsys)
    assert code == 0, err
    header, row = out.splitlines()
    for column in ("TRACE", "STARTED", "DURATION", "RUN", "AGENTS", "ARTIFACTS", "MODEL CALLS", "TOKENS"):
        assert column in header
    cells = row.split()
    assert cells[0] == trace_id[:12]
    assert "research" in cells
    assert cells[-5:] == ["3", "8", "8", "3,710", "1"]  # agents, artifacts, model calls, tokens, errors
    assert "900.0 ms" in row


def test_show_prints_the_tree_with_durations_tokens_and_status(
    recorded: tuple[Path, str], capsys: pytest.CaptureFixture[str]
) -> None:
    db, trace_id = recorded
    code, out, err = run_cli(["traces", "show", trace_id[:8], "--db", str(db)], capsys)
    assert code == 0, err
    lines = out.splitlines()
    assert trace_id in lines[0]
    assert "3 agents (planner, worker, reviewer)" in out
    assert "2,870 in / 840 out" in out
    assert "1 error" in out
    tree = lines[lines.index(next(line for line in lines if line.startswith("SPAN"))) + 1 :]
    assert tree[0].startswith("flock.run research")
    assert tree[1].startswith("└─ flock.publish Idea")
    assert tree[2].startswith("   └─ flock.activate planner")
    planner_chat = tree[4]
    assert planner_chat.lstrip("│ ├└─").startswith("chat gpt-4.1")
    assert "185.0 ms" in planner_chat and "tokens 420 in / 180 out" in planner_chat and " ok " in planner_chat
    failed = [line for line in tree if "ERROR" in line]
    assert len(failed) == 2  # the activation and its evaluation
    assert "flock.activate worker" in failed[0] and "ContractViolation" in failed[0]
    # the reviewer sits under the publish of its last input, three levels below the worker that made it
    reviewer = next(i for i, line in enumerate(tree) if "flock.activate reviewer" in line)
    assert "flock.publish Result" in tree[reviewer - 1]
    indent = len(tree[reviewer]) - len(tree[reviewer].lstrip("│ ├└─"))
    assert indent == len(tree[reviewer - 1]) - len(tree[reviewer - 1].lstrip("│ ├└─")) + 3


def test_db_option_before_the_subcommand_and_ascii_tree(
    recorded: tuple[Path, str], capsys: pytest.CaptureFixture[str]
) -> None:
    db, _ = recorded
    code, out, _ = run_cli(["traces", "--db", str(db), "show", "latest", "--ascii"], capsys)
    assert code == 0
    assert "`- flock.publish Idea" in out
    assert not any(c in out for c in "├└│")


def test_default_store_is_in_the_working_directory(
    recorded: tuple[Path, str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    db, trace_id = recorded
    (tmp_path / ".flock").mkdir()
    db.rename(tmp_path / ".flock" / "traces.db")
    monkeypatch.chdir(tmp_path)
    code, out, _ = run_cli(["traces"], capsys)
    assert code == 0 and trace_id[:12] in out


def test_errors_are_one_line_with_exit_status_1(tmp_path: Path, recorded: tuple[Path, str], capsys) -> None:
    code, out, err = run_cli(["traces", "--db", str(tmp_path / "missing.db")], capsys)
    assert (code, out) == (1, "")
    assert err.startswith("flock: error: no trace store at") and "enable_tracing" in err
    db, _ = recorded
    code, _, err = run_cli(["traces", "show", "abcdef0123", "--db", str(db)], capsys)
    assert code == 1 and "no trace with id 'abcdef0123'" in err


def test_no_command_prints_help(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run_cli([], capsys)
    assert code == 2
    assert "traces" in out


def test_empty_store_lists_nothing(db: Path, capsys: pytest.CaptureFixture[str]) -> None:
    SQLiteSpanExporter(db).shutdown()
    code, out, _ = run_cli(["traces", "--db", str(db)], capsys)
    assert (code, out) == (0, "no runs recorded yet\n")


def test_python_dash_m_flock_in_a_subprocess(recorded: tuple[Path, str], tmp_path: Path) -> None:
    db, trace_id = recorded
    env = {**os.environ, "PYTHONIOENCODING": "ascii"}  # a terminal that cannot draw box characters
    result = subprocess.run(
        [sys.executable, "-m", "flock", "traces", "show", trace_id[:10], "--db", str(db)],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "`- flock.publish Idea" in result.stdout
    assert "tokens 420 in / 180 out" in result.stdout


def test_other_commands_plug_in_through_the_registry(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "flock_demo_cmd.py").write_text(
        "def add_parser(subparsers):\n"
        "    p = subparsers.add_parser('demo', help='a plugged-in command')\n"
        "    p.add_argument('--n', type=int, default=1)\n"
        "    p.set_defaults(handler=lambda args: print('demo', args.n) or 0)\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(cli, "COMMANDS", (*cli.COMMANDS, "flock_demo_cmd"))
    assert isinstance(cli.build_parser(), argparse.ArgumentParser)
    code, out, _ = run_cli(["demo", "--n", "3"], capsys)
    assert (code, out) == (0, "demo 3\n")
    code, out, _ = run_cli([], capsys)
    assert "demo" in out and "traces" in out


def test_json_output_for_scripts(recorded: tuple[Path, str], capsys: pytest.CaptureFixture[str]) -> None:
    db, trace_id = recorded
    code, out, _ = run_cli(["traces", "--db", str(db), "--json"], capsys)
    assert code == 0
    [run] = json.loads(out)
    assert (run["trace_id"], run["name"], run["tokens"], run["errors"]) == (trace_id, "research", 3710, 1)
    code, out, _ = run_cli(["traces", "show", "latest", "--db", str(db), "--json"], capsys)
    assert code == 0
    document = json.loads(out)
    spans = document["spans"]
    assert len(spans) == 31
    root, idea, planner = spans[:3]
    assert (root["name"], root["parent_id"], root["duration_ns"]) == ("flock.run research", None, 900_000_000)
    assert (idea["name"], idea["parent_id"]) == ("flock.publish Idea", root["span_id"])
    assert (planner["attributes"]["flock.agent"], planner["parent_id"]) == ("planner", idea["span_id"])
    assert document["run"]["agents"] == ["planner", "worker", "reviewer"]


def test_prune_keeps_the_newest_runs(db: Path, capsys: pytest.CaptureFixture[str]) -> None:
    exporter = SQLiteSpanExporter(db)
    ids = [record_run(exporter, name=f"run{i}", t0=(1_790_000_000 + i * 60) * 10**9) for i in range(4)]
    exporter.shutdown()
    code, out, _ = run_cli(["traces", "prune", "--keep", "1", "--db", str(db)], capsys)
    assert (code, out) == (0, "removed 3 runs (93 spans)\n")
    with TraceStore(db) as store:
        assert store.recent_trace_ids() == [ids[-1]]
    code, out, _ = run_cli(["traces", "--db", str(db), "prune", "--keep", "5"], capsys)
    assert (code, out) == (0, "removed 0 runs (0 spans)\n")
    code, _, err = run_cli(["traces", "prune", "--keep", "-1", "--db", str(db)], capsys)
    assert code == 2 and "--keep" in err


def test_prune_leaves_a_run_in_progress_alone(db: Path, capsys: pytest.CaptureFixture[str]) -> None:
    exporter = SQLiteSpanExporter(db)
    rec = Recorder(exporter)
    run = rec.tracer.start_span("flock.run live")  # not ended: only its children are in the store
    with rec.span("flock.publish Idea", 0, 1, run):
        pass
    rec.provider.force_flush()
    exporter.shutdown()
    code, out, _ = run_cli(["traces", "prune", "--keep", "0", "--db", str(db)], capsys)
    assert (code, out) == (0, "removed 0 runs (0 spans)\n")
    run.end()


def test_a_file_that_is_not_a_trace_store(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    text = tmp_path / "notes.txt"
    text.write_text("hello " * 1000)
    code, _, err = run_cli(["traces", "--db", str(text)], capsys)
    assert code == 1 and "is not a Flock trace store" in err
    other = tmp_path / "other.db"
    with closing(sqlite3.connect(other)) as conn:
        conn.execute("CREATE TABLE t (x)")
    code, _, err = run_cli(["traces", "show", "latest", "--db", str(other)], capsys)
    assert code == 1 and "is not a Flock trace store (no such table: spans)" in err


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["--version"])
    assert exit_info.value.code == 0
    assert capsys.readouterr().out.startswith("flock ")


def test_a_very_deep_trace_prints(db: Path, capsys: pytest.CaptureFixture[str]) -> None:
    exporter = SQLiteSpanExporter(db)
    rec = Recorder(exporter)
    tracer = rec.tracer
    parent = tracer.start_span("flock.run deep")
    spans = [parent]
    for _ in range(3000):  # an agent refining its own output, 1,500 rounds
        parent = tracer.start_span("flock.activate editor", context=trace.set_span_in_context(parent))
        spans.append(parent)
    for span in reversed(spans):
        span.end()
    rec.provider.force_flush()
    exporter.shutdown()
    for args in (["show", "latest"], ["show", "latest", "--json"], ["show", "latest", "--html", "-"]):
        if "--html" in args:
            args[-1] = str(db.parent / "deep.html")
        code, out, err = run_cli(["traces", "--db", str(db), *args], capsys)
        assert code == 0, err
    assert "3001 spans" in out
