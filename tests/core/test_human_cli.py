"""``flock tasks`` as a real process, directly on a SQLite board: list, show, answer (invalid,
valid, twice), and the usage errors."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from flock import Flock, SQLiteStore

APP = """
from pydantic import BaseModel
from flock import Flock, flock_type


@flock_type
class Draft(BaseModel):
    text: str


@flock_type
class Approval(BaseModel):
    ok: bool
    note: str = ""


@flock_type
class Shipped(BaseModel):
    text: str
    approved: bool


def build(store=None):
    flock = Flock(store=store)
    flock.agent("reviewer").consumes(Draft).publishes(Approval).human(prompt="Ship this draft?")
    flock.agent("shipper").consumes(Approval).publishes(Shipped).calls(
        lambda a: Shipped(text=a.note, approved=a.ok)
    )
    return flock


flock = build()
"""

pytestmark = pytest.mark.anyio


def tasks(cwd: Path, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "FLOCK_API_KEY"}
    return subprocess.run(
        [sys.executable, "-m", "flock", "tasks", *args],
        cwd=cwd,
        env=env,
        input=stdin if stdin is not None else "",
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.fixture
def board(tmp_path: Path) -> Path:
    (tmp_path / "review_app.py").write_text(APP)
    return tmp_path


async def seed(path: Path) -> None:
    sys.path.insert(0, str(path.parent))
    try:
        import review_app
    finally:
        sys.path.remove(str(path.parent))
    flock: Flock = review_app.build(SQLiteStore(path))
    await flock.publish(review_app.Draft(text="v1"))
    assert (await flock.run_until_idle()).open_tasks == 1
    await flock.shutdown()
    await flock.store.close()
    sys.modules.pop("review_app")


async def shipped(path: Path) -> list[dict[str, object]]:
    store = SQLiteStore(path, read_only=True)
    try:
        return [a.payload for a in await store.list() if a.type == "Shipped"]
    finally:
        await store.close()


async def test_list_show_and_answer_on_a_sqlite_board(board: Path) -> None:
    db = board / "board.db"
    await seed(db)
    on_board = ("review_app:flock", "--store", "sqlite:///board.db")

    listed = tasks(board, "list", *on_board)
    assert listed.returncode == 0, listed.stderr
    assert "reviewer" in listed.stdout and "Ship this draft?" in listed.stdout
    [task] = json.loads(tasks(board, "list", *on_board, "--json").stdout)
    assert task["inputs"][0]["payload"] == {"text": "v1"} and task["status"] == "open"

    shown = tasks(board, "show", task["id"], *on_board)
    assert shown.returncode == 0
    assert "ok: boolean (required)" in shown.stdout and '"text": "v1"' in shown.stdout

    wrong = tasks(board, "answer", task["id"], *on_board, "--json", '{"ok": "perhaps"}')
    assert wrong.returncode == 1
    assert "ok: Input should be a valid boolean" in wrong.stderr
    assert len(json.loads(tasks(board, "list", *on_board, "--json").stdout)) == 1  # still open

    done = tasks(board, "answer", task["id"], *on_board, "--json", '{"ok": true, "note": "go"}')
    assert done.returncode == 0, done.stderr
    assert "published Approval" in done.stdout and "ran 1 activation(s)" in done.stdout
    assert await shipped(db) == [{"text": "go", "approved": True}]  # routed and run by the command

    again = tasks(board, "answer", task["id"], *on_board, "--json", '{"ok": false}')
    assert again.returncode == 1 and "answered already" in again.stderr
    assert tasks(board, "list", *on_board).stdout.strip() == "no open tasks"
    assert json.loads(tasks(board, "show", task["id"], *on_board, "--json").stdout)["status"] == "answered"


async def test_an_answer_from_stdin(board: Path) -> None:
    db = board / "board.db"
    await seed(db)
    on_board = ("review_app:flock", "--store", str(db))
    [task] = json.loads(tasks(board, "list", *on_board, "--json").stdout)
    done = tasks(board, "answer", task["id"], *on_board, stdin='{"ok": false, "note": "piped"}')
    assert done.returncode == 0, done.stderr
    assert await shipped(db) == [{"text": "piped", "approved": False}]


async def test_usage_errors_exit_2_and_refusals_exit_1(board: Path) -> None:
    no_target = tasks(board, "list")
    assert no_target.returncode == 2 and "MODULE" in no_target.stderr
    in_memory = tasks(board, "list", "review_app:flock")
    assert in_memory.returncode == 2 and "in memory" in in_memory.stderr
    missing = tasks(board, "list", "review_app:flock", "--store", "sqlite:///nowhere.db")
    assert missing.returncode == 2 and "no board" in missing.stderr
    unloadable = tasks(board, "list", "no_such_module:flock", "--store", "sqlite:///board.db")
    assert unloadable.returncode == 2
    no_key = tasks(board, "list", "--url", "http://127.0.0.1:9")
    assert no_key.returncode == 2 and "FLOCK_API_KEY" in no_key.stderr
    nobody = tasks(board, "list", "--url", "http://127.0.0.1:9", "--key", "some-key-123")
    assert nobody.returncode == 2 and "cannot reach" in nobody.stderr
    await SQLiteStore(board / "board.db").close()  # an empty board
    absent = "00000000-0000-0000-0000-000000000000"
    unknown = tasks(board, "show", absent, "review_app:flock", "--store", "sqlite:///board.db")
    assert unknown.returncode == 1 and "no task" in unknown.stderr


def answer_on_a_terminal(cwd: Path, task_id: str, typed: bytes, *args: str) -> tuple[int, str, str]:
    """``flock tasks answer`` with a real terminal (a pty) on stdin, where ``typed`` is typed."""
    import pty

    controller, terminal = pty.openpty()
    try:
        env = {k: v for k, v in os.environ.items() if k != "FLOCK_API_KEY"}
        process = subprocess.Popen(
            [sys.executable, "-m", "flock", "tasks", "answer", task_id, *args],
            cwd=cwd,
            env=env,
            stdin=terminal,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        os.write(controller, typed)
        out, err = process.communicate(timeout=120)
    finally:
        os.close(controller)
        os.close(terminal)
    return process.returncode, out, err


async def test_answer_asks_field_by_field_on_a_terminal(board: Path) -> None:
    db = board / "board.db"
    await seed(db)
    on_board = ("review_app:flock", "--store", "sqlite:///board.db")
    [task] = json.loads(tasks(board, "list", *on_board, "--json").stdout)
    code, out, err = answer_on_a_terminal(board, task["id"], b"perhaps\nyes\nlooks good\n", *on_board)
    assert code == 0, err
    assert "ok (boolean, required): " in out and "answer yes or no; try again" in err
    assert "published Approval" in out
    assert await shipped(db) == [{"text": "looks good", "approved": True}]
