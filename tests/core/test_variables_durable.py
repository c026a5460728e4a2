"""Durable runtime variables: saved on a real SQLite file, read back by the next Flock."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import BaseModel

from flock import ConfigurationError, Flock, SQLiteStore, VariableEvent, flock_type

pytestmark = pytest.mark.anyio


@flock_type
class Note(BaseModel):
    text: str


@flock_type
class Styled(BaseModel):
    text: str
    style: str


async def stop(flock: Flock) -> None:
    await flock.shutdown()
    await flock.store.close()


def build(path: Path, seen: list[str]) -> Flock:
    flock = Flock(store=SQLiteStore(path))
    flock.variables.declare("style", "plain", durable=True)
    flock.variables.declare("scratch", 0)  # not durable

    def restyle(note: Note) -> Styled:
        style = flock.variables.get("style")
        seen.append(style)
        return Styled(text=note.text, style=style)

    flock.agent("stylist").consumes(Note).publishes(Styled).calls(restyle)
    return flock


async def test_a_durable_variable_survives_a_restart_and_an_ordinary_one_does_not(tmp_path: Path) -> None:
    path = tmp_path / "board.db"
    seen: list[str] = []
    first = build(path, seen)
    first.variables.set("style", "bold")
    first.variables.set("scratch", 7)
    await first.publish(Note(text="a"))
    await first.run_until_idle()
    await stop(first)

    second = build(path, seen)
    assert second.variables.get("style") == "plain"  # nothing read yet: no await has happened
    await second.resume()
    assert second.variables.get("style") == "bold"
    assert second.variables.get("scratch") == 0
    await second.publish(Note(text="b"))
    await second.run_until_idle()
    assert seen == ["bold", "bold"]
    # The saved values are on the board, but no agent sees them and none is woken by them.
    saved = [a for a in await second.store.list() if a.type == "flock.Variable"]
    assert [a.payload["name"] for a in saved] == ["style"]
    assert all(a.visibility.kind == "private" for a in saved)
    await stop(second)


async def test_the_last_value_set_wins_and_a_change_is_an_event(tmp_path: Path) -> None:
    path = tmp_path / "board.db"
    seen: list[str] = []
    first = build(path, seen)
    for style in ("bold", "italic", "caps"):
        first.variables.set("style", style)
        await first.variables.sync()
    await stop(first)

    second = build(path, seen)
    async with second.events() as events:
        await second.variables.sync()
        events.close()
        changes = [e async for e in events if isinstance(e, VariableEvent)]
    assert second.variables.get("style") == "caps"
    assert [(e.name, e.value) for e in changes] == [("style", "caps")]
    await stop(second)


async def test_a_local_change_made_before_the_first_read_wins_over_the_saved_value(tmp_path: Path) -> None:
    path = tmp_path / "board.db"
    seen: list[str] = []
    first = build(path, seen)
    first.variables.set("style", "bold")
    await first.variables.sync()
    await stop(first)

    second = build(path, seen)
    second.variables.set("style", "quiet")  # set before anything was read: this process decides
    await second.publish(Note(text="c"))
    await second.run_until_idle()
    assert seen == ["quiet"]
    await stop(second)

    third = build(path, seen)
    await third.variables.sync()
    assert third.variables.get("style") == "quiet"
    await stop(third)


async def test_a_saved_value_of_the_wrong_type_is_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "board.db"
    first = Flock(store=SQLiteStore(path))
    first.variables.declare("limit", "ten", durable=True)
    first.variables.set("limit", "eleven")
    await first.variables.sync()
    await stop(first)

    second = Flock(store=SQLiteStore(path))
    second.variables.declare("limit", 10, durable=True)  # the type changed since
    with pytest.raises(ConfigurationError, match=r"durable variable 'limit'.*set a new value"):
        await second.variables.sync()
    await stop(second)


async def test_on_the_memory_store_a_durable_variable_is_an_ordinary_one() -> None:
    flock = Flock()
    flock.variables.declare("style", "plain", durable=True)
    flock.variables.set("style", "bold")
    await flock.variables.sync()
    assert flock.variables.get("style") == "bold"
    assert await flock.store.list() == []
    await flock.shutdown()


async def test_an_engine_parameter_bound_to_a_durable_var_starts_from_the_saved_value(tmp_path: Path) -> None:
    from flock import DSPyEngine, Var

    def studio() -> Flock:
        flock = Flock(store=SQLiteStore(tmp_path / "board.db"))
        engine = DSPyEngine(temperature=Var("creativity", default=0.7, durable=True))
        flock.agent("writer").consumes(Note).publishes(Styled).with_engines(engine)
        return flock

    first = studio()
    first.variables.set("creativity", 0.95)
    await first.variables.sync()
    await stop(first)
    second = studio()
    await second.resume()
    assert second.variables.get("creativity") == 0.95
    await stop(second)


class FailsOnce(SQLiteStore):
    """A SQLite board whose next write fails once (a full disk, a lost connection)."""

    failing = False

    async def put(self, artifact):  # type: ignore[no-untyped-def]
        if self.failing:
            self.failing = False
            raise OSError("disk full")
        await super().put(artifact)


async def test_a_change_whose_saving_failed_is_saved_on_the_next_try(tmp_path: Path) -> None:
    path = tmp_path / "board.db"
    store = FailsOnce(path)
    first = Flock(store=store)
    first.variables.declare("style", "plain", durable=True)
    await first.variables.sync()
    first.variables.set("style", "bold")
    store.failing = True
    with pytest.raises(OSError, match="disk full"):
        await first.publish(Note(text="a"))  # saving the change fails: the publish says so
    await first.publish(Note(text="a"))  # the next try saves it
    await stop(first)

    second = Flock(store=SQLiteStore(path))
    second.variables.declare("style", "plain", durable=True)
    await second.variables.sync()
    assert second.variables.get("style") == "bold"
    await stop(second)
