"""``flock store PATH``: stats, recent, inflight, JSON output, and a clear error for a missing file."""

from __future__ import annotations

import json
from pathlib import Path

import anyio
import pytest
from pydantic import BaseModel

from flock import Flock, SQLiteStore, flock_type
from flock.cli import main


@flock_type(name="cli_test.Question")
class Question(BaseModel):
    text: str


@flock_type(name="cli_test.Answer")
class Answer(BaseModel):
    text: str


def board(path: Path | str, *, answered: int, queued: int) -> None:
    """``answered`` questions run to completion, then ``queued`` more left in flight (a SQLite
    file, or a PostgreSQL board when ``path`` is a URL)."""

    async def fill() -> None:
        if isinstance(path, str):
            from flock import PostgresStore

            flock = Flock(store=PostgresStore(path))
        else:
            flock = Flock(store=SQLiteStore(path))
        flock.agent("oracle").consumes(Question).publishes(Answer).calls(lambda q: Answer(text=q.text[::-1]))
        for i in range(answered):
            await flock.publish(Question(text=f"q{i}"))
        await flock.run_until_idle()
        for i in range(queued):
            await flock.publish(Question(text=f"later{i}"))
        await flock.store.close()

    anyio.run(fill)


def test_stats_counts_by_type(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "board.db"
    board(path, answered=3, queued=1)
    assert main(["store", str(path)]) == 0
    out = capsys.readouterr().out
    assert out.startswith("7 artifacts, 3 consumption records, 1 activations in flight (schema v3")
    assert [line.split() for line in out.splitlines()[1:]] == [
        ["TYPE", "COUNT"],
        ["cli_test.Answer", "3"],
        ["cli_test.Question", "4"],
    ]
    assert main(["store", str(path), "--json", "stats"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["artifacts_by_type"] == {"cli_test.Answer": 3, "cli_test.Question": 4}


def test_the_sqlite_url_form_names_the_same_board(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "board.db"  # `flock tasks --store sqlite:///...` takes this form: so does `flock store`
    board(path, answered=1, queued=0)
    assert main(["store", f"sqlite:///{path}"]) == 0
    assert capsys.readouterr().out.startswith("2 artifacts, 1 consumption records")


def test_recent_lists_newest_first(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "board.db"
    board(path, answered=2, queued=1)
    assert main(["store", str(path), "recent", "-n", "2"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["CREATED", "(UTC)", "TYPE", "PRODUCED", "BY", "WORKFLOW", "ID", "PAYLOAD"]
    assert len(lines) == 3
    assert "later0" in lines[1] and "external" in lines[1]
    assert "cli_test.Answer" in lines[2] and "oracle" in lines[2] and '"1q"' in lines[2]


def test_inflight_shows_what_resume_would_run(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "board.db"
    board(path, answered=1, queued=2)
    assert main(["store", str(path), "inflight"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["ACTIVATION", "AGENT", "SUB", "STATUS", "INPUTS"]
    assert [line.split()[1:4] for line in lines[1:]] == [["oracle", "0", "pending"]] * 2
    assert main(["store", str(path), "--json", "inflight"]) == 0
    assert len(json.loads(capsys.readouterr().out)["in_flight"]) == 2


def test_a_missing_file_is_an_error_not_a_new_board(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["store", str(tmp_path / "nope.db")]) == 1
    assert "no board at" in capsys.readouterr().err
    assert not (tmp_path / "nope.db").exists()


def test_a_postgresql_board_by_url(postgres_dsn: str, capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("psycopg", reason="psycopg is not installed: pip install 'flock[postgres]'")
    board(postgres_dsn, answered=2, queued=1)
    assert main(["store", postgres_dsn]) == 0
    out = capsys.readouterr().out
    assert out.startswith("5 artifacts, 2 consumption records, 1 activations in flight (schema v3, 1 queued")
    assert out.splitlines()[0].endswith("router none)")  # the Flock that routed it has closed
    assert [line.split() for line in out.splitlines()[1:]] == [
        ["TYPE", "COUNT"],
        ["cli_test.Answer", "2"],
        ["cli_test.Question", "3"],
    ]
    assert main(["store", postgres_dsn, "recent", "-n", "1"]) == 0
    assert "later0" in capsys.readouterr().out.splitlines()[1]
    assert main(["store", postgres_dsn, "--json", "inflight"]) == 0
    assert [r["status"] for r in json.loads(capsys.readouterr().out)["in_flight"]] == ["pending"]
    assert main(["store", postgres_dsn, "--schema", "other"]) == 1  # no board there: none is made
    assert "no board at postgresql://127.0.0.1:" in capsys.readouterr().err
    assert main(["store", postgres_dsn, "--schema", "other"]) == 1
