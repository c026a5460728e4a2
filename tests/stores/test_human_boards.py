"""Human tasks on every store (memory, a real SQLite file, a real PostgreSQL): two Flocks on one board
see the same open task, and when both answer it at once exactly one answer is published."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any
from uuid import uuid4

import anyio
import pytest
from pydantic import BaseModel

from flock import Flock, TaskClosed, flock_type

pytestmark = pytest.mark.anyio


@flock_type(name="human_test.Draft")
class Draft(BaseModel):
    text: str


@flock_type(name="human_test.Approval")
class Approval(BaseModel):
    ok: bool


@flock_type(name="human_test.Note")
class Note(BaseModel):
    text: str


def build(store: Any) -> Flock:
    flock = Flock(store=store)
    flock.agent("reviewer").consumes(Draft).publishes(Approval).human(prompt="ok?")
    return flock


def second_view(store: Any) -> Any:
    """Another connection to the same board where the store allows one (PostgreSQL: as another
    process would have); SQLite has one writer per file and memory lives in one object."""
    if type(store).__name__ == "PostgresStore":
        from flock import PostgresStore

        return PostgresStore(store.dsn, schema=store.schema)
    return store


async def test_exactly_one_of_two_racing_answers_wins(store: Any) -> None:
    other = second_view(store)
    first, second = build(store), build(other)
    await first.publish(Draft(text="v1"))
    await first.run_until_idle()
    [task] = await first.tasks.list()
    assert [t.id for t in await second.tasks.list()] == [task.id]

    outcomes: dict[str, str] = {}

    async def answer(name: str, flock: Flock, ok: bool) -> None:
        try:
            await flock.tasks.answer(task.id, {"ok": ok})
            outcomes[name] = "won"
        except TaskClosed:
            outcomes[name] = "closed"

    async with anyio.create_task_group() as tg:
        tg.start_soon(answer, "first", first, True)
        tg.start_soon(answer, "second", second, False)
    assert sorted(outcomes.values()) == ["closed", "won"]
    approvals = [a for a in await store.list() if a.type == "human_test.Approval"]
    assert len(approvals) == 1
    assert approvals[0].payload == {"ok": outcomes["first"] == "won"}
    assert await first.tasks.list() == [] and await second.tasks.list() == []
    assert (await second.tasks.get(task.id)).status == "answered"
    if other is not store:
        await other.close()


APP = """
from pydantic import BaseModel
from flock import Flock, flock_type


@flock_type(name="human_test.Draft")
class Draft(BaseModel):
    text: str


@flock_type(name="human_test.Approval")
class Approval(BaseModel):
    ok: bool


flock = Flock()
flock.agent("reviewer").consumes(Draft).publishes(Approval).human(prompt="ok?")
"""


def cli(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "flock", "tasks", *args],
        cwd=cwd,
        input="",
        capture_output=True,
        text=True,
        timeout=120,
    )


async def test_flock_tasks_answers_on_a_postgres_board(postgres_dsn: str, tmp_path: Path) -> None:
    pytest.importorskip("psycopg", reason="psycopg is not installed: pip install 'flock[postgres]'")
    from flock import PostgresStore

    (tmp_path / "pg_review.py").write_text(APP)
    seeding = build(PostgresStore(postgres_dsn))
    await seeding.publish(Draft(text="v1"))
    await seeding.run_until_idle()
    [task] = await seeding.tasks.list()

    on_board = ("pg_review:flock", "--store", postgres_dsn)
    listed = cli(tmp_path, "list", *on_board, "--json")
    assert listed.returncode == 0, listed.stderr
    assert [t["id"] for t in json.loads(listed.stdout)] == [str(task.id)]
    done = cli(tmp_path, "answer", str(task.id), *on_board, "--json", '{"ok": true}')
    assert done.returncode == 0, done.stderr
    assert await seeding.tasks.list() == []  # the other process's answer is on the shared board
    again = cli(tmp_path, "answer", str(task.id), *on_board, "--json", '{"ok": false}')
    assert again.returncode == 1 and "answered already" in again.stderr
    approvals = [a for a in await seeding.store.list() if a.type == "human_test.Approval"]
    assert [a.payload for a in approvals] == [{"ok": True}]
    await seeding.shutdown()
    await seeding.store.close()


async def test_an_answer_is_published_whole_or_not_at_all(tmp_path: Path) -> None:
    # Writing the answer's second artifact fails (a trigger in the real SQLite file raises an
    # error for it): before, the first was already stored, so the task counted as answered and
    # the note was lost for good.
    import sqlite3

    from flock import SQLiteStore

    def editor(path: Path) -> Flock:
        flock = Flock(store=SQLiteStore(path))
        flock.agent("editor").consumes(Draft).publishes(Approval, Note).human(prompt="edit")
        return flock

    path = tmp_path / "board.db"
    flock = editor(path)
    await flock.publish(Draft(text="v1"))
    await flock.run_until_idle()
    [task] = await flock.tasks.list()
    with sqlite3.connect(path) as db:
        db.execute(
            "CREATE TRIGGER broken BEFORE INSERT ON artifacts WHEN NEW.type = 'human_test.Note' "
            "BEGIN SELECT json('{'); END"
        )
    answer = {"human_test.Approval": {"ok": True}, "human_test.Note": {"text": "tighten the intro"}}
    with pytest.raises(Exception, match="malformed JSON"):
        await flock.tasks.answer(task.id, answer)
    assert [t.id for t in await flock.tasks.list()] == [task.id]  # still open: nothing was kept
    answered = ("human_test.Approval", "human_test.Note")
    assert not [a for a in await flock.store.list() if a.type in answered]
    await flock.shutdown()
    await flock.store.close()
    with sqlite3.connect(path) as db:  # the fault is mended; the process starts again
        db.execute("DROP TRIGGER broken")
    again = editor(path)
    await again.resume()
    made = await again.tasks.answer(task.id, answer)  # the same answer, given again, whole
    assert [a.type for a in made] == list(answered)
    assert [a.type for a in await again.store.list() if a.type in answered] == list(answered)
    assert await again.tasks.list() == []
    await again.shutdown()
    await again.store.close()


async def test_a_task_whose_transaction_commits_late_is_still_listed(postgres_dsn: str) -> None:
    # Two processes open tasks at once: the first one's row is numbered first but commits after
    # the second's. A reader that listed the board in between must still see it afterwards.
    pytest.importorskip("psycopg", reason="psycopg is not installed: pip install 'flock[postgres]'")
    from flock import PostgresStore
    from flock._stores.postgres_store import _PUT, _row_values
    from flock._stores.sqlite_schema import ArtifactRow

    store = PostgresStore(postgres_dsn)
    flock = build(store)
    await flock.publish(Draft(text="v1"))
    await flock.run_until_idle()
    [first] = await flock.tasks.list()
    late, early = (first.artifact.model_copy(update={"id": uuid4()}) for _ in range(2))
    async with store.connection() as conn, conn.transaction():
        await conn.execute(_PUT, _row_values(ArtifactRow.of(late)))  # numbered, not committed yet
        await store.put(early)  # numbered after it, committed at once
        assert {t.id for t in await flock.tasks.list()} == {first.id, early.id}
    assert {t.id for t in await flock.tasks.list()} == {first.id, early.id, late.id}
    await flock.shutdown()
    await store.close()
