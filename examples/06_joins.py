"""Joins: pair artifacts from different workflows by a key, within a time window.

    python examples/06_joins.py

Orders and payments arrive independently (each in its own workflow). A ``shipper`` joins an order
with the payment of the same ``order_id`` if both arrive within ten minutes. Order 2's payment never
comes and order 3's comes too late: each open group expires into a visible ``JoinExpired`` artifact,
which a ``collections`` agent picks up; nothing is dropped silently. A ManualClock makes the
minutes pass instantly.
"""

from __future__ import annotations

from datetime import timedelta

import anyio
from pydantic import BaseModel

from flock import Flock, JoinExpired, JoinSpec, ManualClock, flock_type


@flock_type
class Order(BaseModel):
    order_id: int
    item: str


@flock_type
class Payment(BaseModel):
    order_id: int
    amount: float


@flock_type
class Shipment(BaseModel):
    order_id: int
    item: str
    paid: float


@flock_type
class Reminder(BaseModel):
    text: str


def ship(order: Order, payment: Payment) -> Shipment:  # members arrive in declaration order
    return Shipment(order_id=order.order_id, item=order.item, paid=payment.amount)


def remind(expired: JoinExpired) -> Reminder:
    return Reminder(text=f"key {expired.key}: got {expired.received}, still missing {expired.missing}")


async def main() -> None:
    clock = ManualClock()
    async with Flock(clock=clock) as flock:
        (
            flock.agent("shipper")
            .consumes(Order, Payment, join=JoinSpec(by=lambda m: m.order_id, within=timedelta(minutes=10)))
            .publishes(Shipment)
            .calls(ship)
        )
        flock.agent("collections").consumes(JoinExpired).publishes(Reminder).calls(remind)

        await flock.publish(Payment(order_id=1, amount=25.0))  # the payment may come first
        await flock.publish(Order(order_id=1, item="kettle"))
        await flock.publish(Order(order_id=2, item="teapot"))
        await flock.publish(Order(order_id=3, item="mug"))
        summary = await flock.run_until_idle()
        print(f"after the first run: waiting={summary.waiting}, expired_joins={summary.expired_joins}")

        clock.advance(timedelta(minutes=15))  # the windows of orders 2 and 3 close
        await flock.publish(Payment(order_id=3, amount=9.5))  # too late: it opens a new group
        summary = await flock.run_until_idle()

        for artifact in await flock.store.list():
            shown = {k: v for k, v in artifact.payload.items() if k != "member_ids"}
            print(f"{artifact.produced_by:>11} → {artifact.type:<17} {shown}")
        print()
        print(summary)


if __name__ == "__main__":
    anyio.run(main)
