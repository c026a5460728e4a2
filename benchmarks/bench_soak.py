"""Soak: does a long-running Flock's memory come back down when its work is done?

``--inputs`` (50,000) inputs go through a 3-agent chain (``Order`` → ``Priced`` → ``Packed`` →
``Shipped``, function engines via ``.calls``), published ``--chunk`` at a time (each its own
workflow), ``run_until_idle()`` after each chunk, on each store (``InMemoryStore``,
``SQLiteStore``). Every store runs in a fresh child process, which reports its resident set size
(RSS, from ``/proc/self``):

- ``before_mb``: with the Flock built and warmed up by one input, before the soak;
- ``peak_mb``: the highest RSS during the soak (the kernel's high-water mark, reset at ``before``);
- ``after_mb``: once the last run returned and ``gc.collect()`` ran.

The board's own data is part of ``after``: every artifact of an in-memory board, and the decoded
artifacts a SQLite store keeps cached (its data is on disk). ``board_mb`` estimates it in another
fresh process, built the same way and measured the same way, that only loads the finished board
into a new store: for memory, the same artifacts and consumption records put into a fresh
``InMemoryStore``; for SQLite, the finished file opened and read once with a new ``SQLiteStore``.
The target: ``after_mb <= 1.10 * (before_mb + board_mb)``; ``excess_mb`` is what ``after``
holds beyond ``before + board`` (the orchestrator's memory per finished input shows up there,
also as ``excess_bytes_per_input``). Prints one JSON document.

    .venv/bin/python benchmarks/bench_soak.py                  # 50,000 inputs on each store
    .venv/bin/python benchmarks/bench_soak.py --inputs 2000    # a quick run
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import sqlite3
import subprocess
import sys
import tempfile
import time
from contextlib import closing
from datetime import UTC
from pathlib import Path
from typing import Any

import anyio
from pydantic import BaseModel

from flock import Artifact, Flock, InMemoryStore, SQLiteStore, flock_type
from flock._stores.store import ActivationRecord  # the journal record the memory board is rebuilt with

_PAGE = os.sysconf("SC_PAGE_SIZE")
MB = 1024 * 1024
DECODED_CACHE = 50_000  # artifacts a SQLiteStore keeps decoded (flock/_stores/sqlite_store.py, _Decoded)


@flock_type(name="soak.Order")
class Order(BaseModel):
    n: int
    item: str


@flock_type(name="soak.Priced")
class Priced(BaseModel):
    n: int
    item: str
    price: float


@flock_type(name="soak.Packed")
class Packed(BaseModel):
    n: int
    box: str


@flock_type(name="soak.Shipped")
class Shipped(BaseModel):
    n: int
    tracking: str


def build(store: Any) -> Flock:
    flock = Flock(store=store)
    flock.agent("pricer").consumes(Order).publishes(Priced).calls(
        lambda o: Priced(n=o.n, item=o.item, price=o.n * 0.5)
    )
    flock.agent("packer").consumes(Priced).publishes(Packed).calls(lambda p: Packed(n=p.n, box=f"box-{p.n}"))
    flock.agent("shipper").consumes(Packed).publishes(Shipped).calls(
        lambda p: Shipped(n=p.n, tracking=f"TRK{p.n:08d}")
    )
    return flock


def rss() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * _PAGE


def peak() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("no VmHWM in /proc/self/status")


def reset_peak() -> None:
    # Writing 5 to clear_refs resets the high-water mark (Linux 4.0+).
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")


def settled_rss() -> int:
    gc.collect()
    return rss()


def open_store(kind: str, path: Path) -> Any:
    return InMemoryStore() if kind == "memory" else SQLiteStore(path)


async def soak(kind: str, path: Path, inputs: int, chunk: int, dump: Path) -> dict[str, Any]:
    flock = build(open_store(kind, path))
    await flock.publish(Order(n=-1, item="warm-up"))
    await flock.run_until_idle()
    before = settled_rss()
    reset_peak()
    started = time.perf_counter()
    for first in range(0, inputs, chunk):
        for n in range(first, min(first + chunk, inputs)):
            await flock.publish(Order(n=n, item=f"item-{n}"))
        await flock.run_until_idle()
    wall = time.perf_counter() - started
    top = peak()
    after = settled_rss()
    shipped = await flock.store.count()
    if kind == "memory":  # the board, for the estimate of its own memory (after measuring)
        with dump.open("w") as f:
            for a in await flock.store.list():
                f.write(a.model_dump_json() + "\n")
    else:
        await flock.store.close()
    return {
        "store": kind,
        "inputs": inputs,
        "artifacts": shipped,
        "wall_s": round(wall, 1),
        "activations_per_s": round(3 * inputs / wall),
        "before_mb": round(before / MB, 1),
        "peak_mb": round(top / MB, 1),
        "after_mb": round(after / MB, 1),
    }


EXTERNAL_FIELDS = {"type", "payload", "correlation_id", "partition_key", "tags", "visibility", "created_at"}


def sharing(a: Artifact, pool: dict[Any, Any]) -> Artifact:
    """``a`` rebuilt the way the running Flock built it: the values it shares between artifacts (a
    workflow's correlation id, type and producer names, the empty tag set, the visibility, the UTC
    time zone) shared again, and the same set of explicitly set fields (``publish()`` sets seven,
    an agent's output all). Parsed from JSON, each artifact would get its own copies of all of these,
    and the board's estimate would come out about a quarter too high."""
    values = dict(a)
    for key in ("correlation_id", "type", "produced_by", "tags"):
        values[key] = pool.setdefault(values[key], values[key])
    values["visibility"] = pool.setdefault(a.visibility.model_dump_json(), a.visibility)
    values["created_at"] = a.created_at.astimezone(UTC)
    explicit = EXTERNAL_FIELDS if a.produced_by == "external" else set(values)
    return Artifact.model_construct(_fields_set=explicit, **values)


async def board_only(kind: str, path: Path, dump: Path) -> dict[str, Any]:
    """RSS of a fresh process, built and warmed up the same way, that then holds only the finished
    board: for memory, its artifacts and consumption records in a fresh ``InMemoryStore``; for
    SQLite, the file opened with a new ``SQLiteStore`` plus the decoded artifacts such a store
    keeps (the newest ``DECODED_CACHE``)."""
    store = InMemoryStore() if kind == "memory" else None
    flock = build(store if store is not None else SQLiteStore(path.with_name("warm-up.db")))
    await flock.publish(Order(n=-1, item="warm-up"))
    await flock.run_until_idle()
    if store is None:
        await flock.store.close()
    pool: dict[Any, Any] = {}
    before = settled_rss()
    if store is not None:
        with dump.open() as f:
            for line in f:
                a = sharing(Artifact.model_validate_json(line), pool)
                if await store.get(a.id) is None:
                    await store.put(a)
                if a.consumed_from:
                    record = ActivationRecord.for_inputs(a.produced_by, 0, list(a.consumed_from))
                    await store.commit_activation(record, [])
        return {"board_mb": round((settled_rss() - before) / MB, 1)}
    async with SQLiteStore(path) as sqlite:
        await sqlite.count()  # the store open and used, its decoded cache filled by hand:
        with closing(sqlite3.connect(path)) as conn:
            rows = conn.execute("SELECT body FROM artifacts ORDER BY seq DESC LIMIT ?", (DECODED_CACHE,))
            cache = {a.id: a for a in (sharing(Artifact.model_validate_json(b), pool) for (b,) in rows)}
        held = settled_rss()
    del cache
    return {"board_mb": round((held - before) / MB, 1), "file_mb": round(file_size(path) / MB, 1)}


def file_size(path: Path) -> int:
    return path.stat().st_size


def child(args: list[str]) -> dict[str, Any]:
    out = subprocess.run([sys.executable, __file__, *args], check=True, capture_output=True, text=True)
    result: dict[str, Any] = json.loads(out.stdout)
    return result


def measure(kind: str, inputs: int, chunk: int, folder: Path) -> dict[str, Any]:
    path, dump = folder / f"{kind}.db", folder / f"{kind}.jsonl"
    run = child(
        [
            "--child",
            "soak",
            "--store",
            kind,
            "--inputs",
            str(inputs),
            "--chunk",
            str(chunk),
            "--path",
            str(path),
            "--dump",
            str(dump),
        ]
    )
    board = child(["--child", "board", "--store", kind, "--path", str(path), "--dump", str(dump)])
    run.update(board)
    target = 1.10 * (run["before_mb"] + run["board_mb"])
    excess = run["after_mb"] - run["before_mb"] - run["board_mb"]
    run["target_mb"] = round(target, 1)
    run["within_target"] = run["after_mb"] <= target
    run["excess_mb"] = round(excess, 1)
    run["excess_bytes_per_input"] = round(excess * MB / inputs)
    return run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--inputs", type=int, default=50_000)
    parser.add_argument("--chunk", type=int, default=1_000, help="inputs published per run_until_idle()")
    parser.add_argument("--stores", default="memory,sqlite")
    parser.add_argument("--child", choices=["soak", "board"], help=argparse.SUPPRESS)
    parser.add_argument("--store", help=argparse.SUPPRESS)
    parser.add_argument("--path", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--dump", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child == "soak":
        print(json.dumps(anyio.run(soak, args.store, args.path, args.inputs, args.chunk, args.dump)))
        return
    if args.child == "board":
        print(json.dumps(anyio.run(board_only, args.store, args.path, args.dump)))
        return
    with tempfile.TemporaryDirectory(prefix="flock-bench-soak-") as tmp:
        results = [measure(kind, args.inputs, args.chunk, Path(tmp)) for kind in args.stores.split(",")]
    print(json.dumps({"inputs": args.inputs, "chunk": args.chunk, "runs": results}, indent=2))


if __name__ == "__main__":
    main()
