"""A board file under stress: a second writer process, a damaged file, a full disk, floats JSON
cannot spell. Each failure is a typed :class:`StoreError` that names the file; nothing
acknowledged is lost."""

from __future__ import annotations

import contextlib
import functools
import math
import os
import shutil
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from uuid import uuid4

import anyio
import pytest
from pydantic import BaseModel

from flock import (
    Artifact,
    ConfigurationError,
    Flock,
    SQLiteStore,
    StoreCorruptError,
    StoreError,
    StoreFullError,
    StoreLockedError,
    flock_type,
)

pytestmark = pytest.mark.anyio


@flock_type(name="board_file.Order")
class Order(BaseModel):
    n: int
    note: str = ""


@flock_type(name="board_file.Invoice")
class Invoice(BaseModel):
    n: int


# ------------------------------------------------------------------ one writer per board
# A child process that opens the board, says OPEN (or LOCKED, with the error), waits for a go file,
# then resumes the board: every activation appends one line to the log, so a second writer that
# was let in shows up as activations run twice.
WRITER = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    import anyio
    from pydantic import BaseModel
    from flock import Flock, SQLiteStore, StoreLockedError, flock_type

    @flock_type(name="board_file.Order")
    class Order(BaseModel):
        n: int
        note: str = ""

    @flock_type(name="board_file.Invoice")
    class Invoice(BaseModel):
        n: int

    board, go, log = Path(sys.argv[1]), Path(sys.argv[2]), Path(sys.argv[3])

    async def bill(order: Order) -> Invoice:
        with log.open("a") as f:
            f.write(f"{order.n}\\n")
        await anyio.sleep(0.01)
        return Invoice(n=order.n)

    async def main() -> None:
        try:
            store = SQLiteStore(board)
        except StoreLockedError as exc:
            print("LOCKED", exc, flush=True)
            return
        print("OPEN", flush=True)
        while not go.exists():
            time.sleep(0.01)
        flock = Flock(store=store)
        flock.agent("billing").consumes(Order).publishes(Invoice).calls(bill)
        await flock.resume()
        await store.close()
        print("DONE", flush=True)

    anyio.run(main)
    """
)


def start_writer(board: Path, go: Path, log: Path) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-c", WRITER, str(board), str(go), str(log)], stdout=subprocess.PIPE, text=True
    )


async def queue_orders(board: Path, n: int) -> None:
    """``n`` orders published and queued for billing, never run (the process "stops")."""
    flock = Flock(store=SQLiteStore(board))
    flock.agent("billing").consumes(Order).publishes(Invoice).calls(lambda o: Invoice(n=o.n))
    for i in range(n):
        await flock.publish(Order(n=i))
    await flock.store.close()


def test_a_second_writer_process_is_refused_and_no_activation_runs_twice(tmp_path: Path) -> None:
    board, go, log = tmp_path / "board.db", tmp_path / "go", tmp_path / "calls.log"
    anyio.run(queue_orders, board, 50)
    first = start_writer(board, go, log)
    second = None
    try:
        assert first.stdout is not None and first.stdout.readline().split() == ["OPEN"]
        second = start_writer(board, go, log)  # the first holds the board, and waits
        assert second.stdout is not None
        answer = second.stdout.readline()
        go.touch()
        assert first.stdout.readline().strip() == "DONE"
        assert first.wait(timeout=60) == 0 and second.wait(timeout=60) == 0
    finally:
        for proc in (first, second):
            if proc is not None:
                if proc.poll() is None:
                    proc.kill()
                proc.wait()
                assert proc.stdout is not None
                proc.stdout.close()
    assert answer.startswith("LOCKED") and str(board) in answer and f"process {first.pid}" in answer
    assert sorted(int(n) for n in log.read_text().split()) == list(range(50))  # each ran once
    assert sorted(i.n for i in anyio.run(invoices, board)) == list(range(50))


async def invoices(board: Path) -> list[Invoice]:
    async with SQLiteStore(board) as store:
        return await store.get_by_type(Invoice)


HOLDER = "\n".join(  # opens the board for writing, says so, and keeps it open
    [
        "import sys, time",
        "from flock import SQLiteStore",
        "store = SQLiteStore(sys.argv[1])",
        "print('OPEN', flush=True)",
        "time.sleep(120)",
    ]
)


async def count(board: Path, **options: bool) -> int:
    async with SQLiteStore(board, **options) as store:
        if options.get("read_only"):
            with pytest.raises(ConfigurationError, match="read only"):
                await store.put(Artifact(type="board_file.Order", payload={"n": 2, "note": ""}))
        return await store.count()


async def put_one(board: Path) -> None:
    async with SQLiteStore(board) as store:
        await store.put(Artifact(type="board_file.Order", payload={"n": 1, "note": ""}))


def test_the_lock_dies_with_a_killed_writer_and_readers_may_read_meanwhile(tmp_path: Path) -> None:
    board = tmp_path / "board.db"
    anyio.run(put_one, board)
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, str(board)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "OPEN"
        with pytest.raises(StoreLockedError) as refused:
            SQLiteStore(board)
        assert refused.value.path == str(board) and isinstance(refused.value, StoreError)
        assert "read_only=True" in str(refused.value)  # says what to do
        assert anyio.run(functools.partial(count, board, read_only=True)) == 1  # reading beside it is fine
    finally:
        holder.kill()  # SIGKILL: no chance to clean up
        holder.wait()
        assert holder.stdout is not None
        holder.stdout.close()
    assert anyio.run(count, board) == 1  # the kernel released the lock with the process


async def test_two_stores_in_one_process_cannot_both_write_one_board(tmp_path: Path) -> None:
    board = tmp_path / "board.db"
    first = SQLiteStore(board)
    with pytest.raises(StoreLockedError, match="already open for writing"):
        SQLiteStore(board)
    await first.close()
    async with SQLiteStore(board):  # closing released it
        pass


def test_a_read_only_store_never_creates_a_board(tmp_path: Path) -> None:
    with pytest.raises(StoreError, match="cannot open the board"):
        SQLiteStore(tmp_path / "missing.db", read_only=True)
    assert not (tmp_path / "missing.db").exists()


# ------------------------------------------------------------------ a damaged file
async def test_a_file_that_is_not_a_board_is_refused_with_its_path(tmp_path: Path) -> None:
    board = tmp_path / "board.db"
    board.write_bytes(b"this is a grocery list, not a database\n" * 200)
    with pytest.raises(StoreCorruptError) as info:
        SQLiteStore(board)
    assert info.value.path == str(board) and str(board) in str(info.value) and "backup" in str(info.value)
    board.unlink()
    await SQLiteStore(board).close()  # the refused open released its writer lock


async def test_a_damaged_page_raises_a_typed_error_on_read(tmp_path: Path) -> None:
    board = tmp_path / "board.db"
    async with SQLiteStore(board) as store:
        for i in range(300):
            await store.put(Artifact(type="board_file.Order", payload={"n": i, "note": "x" * 200}))
        await store.vacuum()  # everything in the main file, the WAL checkpointed away
    data = bytearray(board.read_bytes())
    page = 4096
    for offset in range(2 * page, len(data) - page, page):  # keep the header page, wreck the rest
        data[offset : offset + page] = b"\xff" * page
    board.write_bytes(bytes(data))
    with pytest.raises(StoreCorruptError, match=str(board)):
        async with SQLiteStore(board) as damaged:
            await damaged.list()


# ------------------------------------------------------------------ a full disk
@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A real 640 KiB file system (tmpfs), mounted for the test; skipped where mounting is not allowed."""
    mount = shutil.which("mount")
    if mount is None or os.geteuid() != 0:
        pytest.skip("needs root and mount(8) to make a small tmpfs file system for a real full disk")
    disk = tmp_path / "disk"
    disk.mkdir()
    made = subprocess.run(
        [mount, "-t", "tmpfs", "-o", "size=640k", "tmpfs", str(disk)], capture_output=True, text=True
    )
    if made.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({made.stderr.strip()}): no real full disk to test with")
    try:
        yield disk
    finally:
        subprocess.run(["umount", "-l", str(disk)], check=True)


def grow(disk: Path, kib: int = 16 * 1024) -> None:
    """Resize the test's file system (a tmpfs can shrink, down to what it holds)."""
    subprocess.run(["mount", "-o", f"remount,size={kib}k", str(disk)], check=True)


def used_kib(disk: Path) -> int:
    stats = os.statvfs(disk)
    return (stats.f_blocks - stats.f_bfree) * stats.f_frsize // 1024


def order(i: int) -> Artifact:
    return Artifact(type="board_file.Order", payload={"n": i, "note": f"{i}-" + "y" * 2000})


async def test_a_full_disk_loses_nothing_acknowledged_and_says_so_typed(small_disk: Path) -> None:
    board = small_disk / "board.db"
    flock = Flock(store=SQLiteStore(board))
    flock.agent("billing").consumes(Order).publishes(Invoice).calls(lambda o: Invoice(n=o.n))
    acked: list[Artifact] = []
    failed: StoreFullError | None = None
    for i in range(2_000):  # ~4 MB of orders: far more than the disk holds
        art = order(i)
        try:
            acked.append(await flock.publish(art))
        except StoreFullError as exc:
            failed, refused = exc, art
            break
    assert failed is not None and failed.path == str(board), "the disk never filled up"
    assert str(board) in str(failed) and "Free space" in str(failed)
    assert len(acked) > 10
    grow(small_disk)  # space freed: the same store goes on
    try:  # a write not waited for (a journal record) may have failed too: reported once, typed
        await flock.store.flush()
    except StoreFullError as exc:
        assert "queued earlier without waiting" in str(exc)
    later = await flock.publish(order(10_000))
    await flock.store.close()
    async with SQLiteStore(board) as reopened:
        stored = {a.id for a in await reopened.list()}
        assert {a.id for a in acked} <= stored and later.id in stored  # nothing acknowledged lost
        assert refused.id not in stored  # the refused write was not stored, not half-stored


# ------------------------------------------------------------------ floats JSON cannot spell
@flock_type(name="board_file.Reading")
class Reading(BaseModel):
    value: float
    bounds: list[float]


@flock_type(name="board_file.Scaled")
class Scaled(BaseModel):
    value: float
    bounds: list[float]


def same(a: list[float], b: list[float]) -> bool:
    return all((math.isnan(x) and math.isnan(y)) or x == y for x, y in zip(a, b, strict=True))


async def test_nan_and_infinities_round_trip_through_the_file(tmp_path: Path) -> None:
    board = tmp_path / "board.db"
    nan, inf = float("nan"), float("inf")

    def scaled(r: Reading) -> Scaled:
        return Scaled(value=r.value * 2, bounds=[b * 2 for b in r.bounds])

    flock = Flock(store=SQLiteStore(board))
    flock.agent("scaler").consumes(Reading).publishes(Scaled).calls(scaled)
    await flock.publish(Reading(value=nan, bounds=[-inf, 1.5, inf]))
    await flock.publish(Reading(value=2.0, bounds=[nan]), correlation_id=str(uuid4()))
    await flock.run_until_idle()
    await flock.store.close()

    reopened = Flock(store=SQLiteStore(board))
    reopened.agent("scaler").consumes(Reading).publishes(Scaled).calls(scaled)
    summary = await reopened.resume()  # validates every stored payload again
    assert summary.activations == 0 and not summary.errors
    readings = await reopened.store.get_by_type(Reading)
    assert same([r.value for r in readings], [nan, 2.0])
    assert same(readings[0].bounds, [-inf, 1.5, inf]) and same(readings[1].bounds, [nan])
    outs = sorted(await reopened.store.get_by_type(Scaled), key=lambda s: len(s.bounds))
    assert same([o.value for o in outs], [4.0, nan]) and same(outs[1].bounds, [-inf, 3.0, inf])
    await reopened.store.close()


@flock_type(name="board_file.Bulky")
class Bulky(BaseModel):
    n: int
    text: str


async def fill_mid_run(disk: Path) -> tuple[Flock, list[Artifact], list[int]]:
    """A Flock whose 100 inputs were acknowledged, and whose first run filled the disk."""
    flock = Flock(store=SQLiteStore(disk / "board.db"))
    calls: list[int] = []

    def bulk(o: Order) -> Bulky:
        calls.append(o.n)
        return Bulky(n=o.n, text="z" * 8_000)  # 100 of these are more than the disk holds

    flock.agent("bulker").consumes(Order).publishes(Bulky).calls(bulk)
    grow(disk)  # room for the inputs (the WAL grows by a few pages per commit) ...
    orders = [await flock.publish(Order(n=i)) for i in range(100)]
    grow(disk, used_kib(disk) + 256)  # ... then only 256 KiB more: the outputs do not fit
    with pytest.raises(StoreFullError) as full:
        await flock.run_until_idle()
    assert full.value.path == str(disk / "board.db")
    grow(disk)
    with contextlib.suppress(StoreFullError):  # a write not waited for may report its failure once
        await flock.store.flush()
    return flock, orders, calls


async def test_a_disk_that_fills_mid_run_stops_the_run_typed_and_loses_nothing(small_disk: Path) -> None:
    flock, orders, calls = await fill_mid_run(small_disk)
    for _ in range(3):  # the first run after a halt re-raised the old error on some cores (see the report)
        try:
            summary = await flock.run_until_idle()
            break
        except StoreFullError:
            continue
    assert not summary.errors
    await flock.store.close()
    async with SQLiteStore(small_disk / "board.db") as reopened:
        made = [a for a in await reopened.list() if a.type == "board_file.Bulky"]
        consumed = await reopened.consumptions()
        assert await reopened.in_flight() == []
    assert sorted(b.payload["n"] for b in made) == list(range(100))  # each exactly once
    assert {(o.id, "bulker", 0) for o in orders} <= consumed
    assert set(calls) == set(range(100))  # activations whose commit failed ran again
