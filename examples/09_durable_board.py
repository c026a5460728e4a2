"""A durable board: work left behind by a process that stopped is finished by the next one.

    .venv/bin/python examples/09_durable_board.py

The first "process" (a Flock on a SQLite file) publishes three orders and stops before running its
agents, as a crashed process would. The second opens the same file with the same agents and calls
``resume()``: the orders are routed again and every one is handled exactly once. A third run of
``resume()`` finds nothing left to do. Inspect the file afterwards with
``.venv/bin/flock store <path>``.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import anyio
from pydantic import BaseModel

from flock import Flock, SQLiteStore, flock_type


@flock_type
class Order(BaseModel):
    item: str
    quantity: int


@flock_type
class Invoice(BaseModel):
    item: str
    total: float


def bill(order: Order) -> Invoice:
    return Invoice(item=order.item, total=round(order.quantity * 9.99, 2))


def build(store: SQLiteStore) -> Flock:
    flock = Flock(store=store)
    flock.agent("billing").consumes(Order).publishes(Invoice).calls(bill)
    return flock


async def main(path: Path) -> None:
    async with SQLiteStore(path) as store:  # process 1: publishes, then "crashes" before running
        flock = build(store)
        await flock.publish_many([Order(item="pen", quantity=3), Order(item="ink", quantity=1)])
        await flock.publish(Order(item="pad", quantity=2))
        print(f"process 1 stored {len(await store.list())} orders and stopped before running its agents")

    async with SQLiteStore(path) as store:  # process 2: same file, same agents
        flock = build(store)
        summary = await flock.resume()
        print(f"process 2 resumed: {summary.activations} activations")
        for invoice in await store.get_by_type(Invoice):
            print(f"  invoice {invoice.item}: {invoice.total}")

    async with SQLiteStore(path) as store:  # process 3: nothing is done twice
        summary = await build(store).resume()
        held = len(await store.list())
        print(f"process 3 resumed: {summary.activations} activations; the board holds {held} artifacts")
    print(f"\nboard file: {path}  (inspect it with: flock store {path})")


if __name__ == "__main__":
    anyio.run(main, Path(tempfile.mkdtemp(prefix="flock-board-")) / "board.db")
