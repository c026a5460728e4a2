"""Prompt versions: on every engine output, on spans, in the SQLite store, and in `flock prompts`."""

from __future__ import annotations

import re
import sqlite3
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest
from engine_support import Summary, Task
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from flock import DSPyEngine, Flock, SQLiteStore, Var
from flock.cli import main

pytestmark = pytest.mark.anyio


def writer(flock: Flock, **engine: object) -> Any:
    return (
        flock.agent("writer")
        .description("Summarise the task.")
        .consumes(Task)
        .publishes(Summary)
        .with_engines(
            DSPyEngine(**engine)  # type: ignore[arg-type]
        )
    )


async def versions_of(flock: Flock, *texts: str) -> list[str | None]:
    found = []
    for text in texts:
        [out] = await flock.invoke("writer", Task(text=text))
        found.append(out.prompt_version)
    return found


async def test_every_output_carries_a_content_hash_that_follows_the_prompt() -> None:
    flock = Flock()
    writer(flock, instructions=Var("style", default="Be brief."))
    first, again = await versions_of(flock, "bees", "wasps")
    assert first is not None and len(first) == 12 and first == again  # same prompt, same version
    flock.variables.set("style", "Be thorough.")
    (changed,) = await versions_of(flock, "ants")
    assert changed != first
    flock.variables.set("style", "Be brief.")
    assert await versions_of(flock, "bees") == [first]  # A/B: switching back is the same version
    other = Flock()
    writer(other, instructions="Be brief.")
    assert await versions_of(other, "moths") == [first]  # content, not identity


async def test_a_declared_label_wins_and_external_artifacts_have_none() -> None:
    flock = Flock()
    writer(flock).prompt_version("v2")
    [out] = await flock.invoke("writer", Task(text="bees"))
    assert out.prompt_version == "v2"
    published = await flock.publish(Task(text="x"))
    assert published.prompt_version is None


async def test_the_sqlite_store_keeps_the_version_and_migrates_old_files(tmp_path: Path) -> None:
    path = tmp_path / "board.db"
    async with SQLiteStore(path) as store:
        flock = Flock(store=store)
        writer(flock)
        [out] = await flock.invoke("writer", Task(text="bees"))
    async with SQLiteStore(path) as store:
        again = await store.get(out.id)
    assert again is not None and again.prompt_version == out.prompt_version is not None
    query = (
        "SELECT a.id FROM artifact_prompts p JOIN artifacts a ON a.seq = p.seq "
        "WHERE p.produced_by = 'writer' AND p.prompt_version = ?"
    )
    with sqlite3.connect(path) as conn:
        assert conn.execute(query, (out.prompt_version,)).fetchall() == [(str(out.id),)]
        plan = " ".join(str(r) for r in conn.execute("EXPLAIN QUERY PLAN " + query, (out.prompt_version,)))
        assert "artifact_prompts_version" in plan  # the migration's index serves queries by version
        conn.execute("DROP TRIGGER artifact_prompts_follow")  # as a file from before prompt versions
        conn.execute("DROP TABLE artifact_prompts")
        conn.execute("PRAGMA user_version = 2")
    async with SQLiteStore(path) as store:
        kept = await store.get(out.id)
    assert kept is not None and kept.prompt_version == out.prompt_version
    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA user_version").fetchone()[0] >= 3
        # migrated: the versions of the artifacts already on the board are filled in from their bodies
        assert conn.execute(query, (out.prompt_version,)).fetchall() == [(str(out.id),)]


async def test_spans_carry_the_version_and_the_rendered_prompt_once(spans: InMemorySpanExporter) -> None:
    flock = Flock()
    writer(flock)
    [a] = await flock.invoke("writer", Task(text="bees"))
    await flock.invoke("writer", Task(text="wasps"))
    evaluate = [s for s in spans.get_finished_spans() if s.name == "flock.evaluate writer"]
    assert [s.attributes["flock.prompt_version"] for s in evaluate] == [a.prompt_version] * 2  # type: ignore[index]
    events = [e for s in evaluate for e in s.events if e.name == "flock.prompt"]
    assert len(events) == 1 and "Summarise the task." in str(events[0].attributes["text"])  # type: ignore[index]


def _app(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "prompt_app.py").write_text(
        textwrap.dedent(
            """
            from pydantic import BaseModel
            from flock import DSPyEngine, Flock, Var, flock_type

            @flock_type
            class Brief(BaseModel):
                text: str

            @flock_type
            class Memo(BaseModel):
                body: str

            flock = Flock()
            brief = DSPyEngine(instructions="Be brief.")
            flock.agent("brief").consumes(Brief).publishes(Memo).with_engines(brief)
            flock.agent("thorough").consumes(Brief).publishes(Memo).with_engines(
                DSPyEngine(instructions=Var("style", default="Be thorough."))
            )
            flock.agent("labelled").consumes(Memo).publishes(Brief).prompt_version("v7")
            """
        )
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "prompt_app", raising=False)


def test_flock_prompts_lists_and_diffs_versions(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    _app(tmp_path, monkeypatch)
    assert main(["prompts", "prompt_app:flock"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["agent", "group", "version"]
    rows = {line.split()[0]: line.split()[2] for line in lines[1:]}
    assert set(rows) == {"brief", "thorough", "labelled"} and rows["labelled"] == "v7"
    assert main(["prompts", "prompt_app:flock", "--diff", rows["brief"], rows["thorough"]]) == 0
    diff = capsys.readouterr().out
    assert re.search(r"^-\s+Be brief\.$", diff, re.M) and re.search(r"^\+\s+Be thorough\.$", diff, re.M)
    assert main(["prompts", "prompt_app:flock", "--diff", rows["brief"], "0123456789ab"]) == 1
    assert "0123456789ab not found" in capsys.readouterr().err
