"""Common command-line mistakes end in one line that says what to do, never a traceback."""

from __future__ import annotations

from pathlib import Path

import pytest

from flock.cli import main


@pytest.fixture
def app(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    (tmp_path / "memory_app.py").write_text("from flock import Flock\nflock = Flock()\n")
    monkeypatch.chdir(tmp_path)
    return "memory_app:flock"


def test_a_worker_on_an_in_memory_board_is_refused_before_it_starts(
    app: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["worker", app]) == 1
    out, err = capsys.readouterr()
    assert out == ""  # no "flock worker ...: <InMemoryStore object at 0x...>" banner first
    assert err == (
        "flock: error: flock worker needs a board that workers share, and memory_app:flock keeps its board "
        "in InMemoryStore: pass --store postgresql://user:password@host/db, or make it "
        "Flock(store=PostgresStore(dsn)) (see docs/scaling-out.md)\n"
    )


def test_a_worker_on_a_sqlite_file_is_told_to_use_postgresql(
    app: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["worker", app, "--store", "sqlite:///board.db"]) == 1
    assert "--store takes a postgresql:// DSN, got sqlite:...; workers share a board on PostgreSQL" in (
        capsys.readouterr().err
    )


def test_prompts_of_a_flock_without_language_model_agents_says_why_there_are_none(
    app: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["prompts", app]) == 0
    assert capsys.readouterr().out == (
        "memory_app:flock: no agent runs the DSPy engine, so there are no prompts (agents with .calls(), "
        "other engines or .human() send none)\n"
    )
