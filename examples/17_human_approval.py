"""A human approval step: expenses over a limit wait for a manager; the rest is automatic.

    .venv/bin/python examples/17_human_approval.py      # a scripted tour, offline, no API key

Small expenses are approved by a function agent; larger ones open a task for the ``manager``, a
human agent. Answers are validated against ``Decision``; a task not answered within two days is
closed with a default rejection. The tour runs on a SQLite board and a fake clock: the first
"process" opens the tasks and stops, the second finds them on the board, answers one (a wrong
answer first, to show the errors), lets the other one expire, and the payer acts on the outcomes.

Serve it and answer from a terminal or over HTTP yourself (``pip install 'flock[server]'``)::

    export FLOCK_API_KEYS='{"manager-key-1": {"tenant": null, "scopes": ["publish", "read", "answer"]}}'
    cd examples && flock serve 17_human_approval:flock --port 8000
    FLOCK_API_KEY=manager-key-1 flock tasks list --url http://127.0.0.1:8000
    FLOCK_API_KEY=manager-key-1 flock tasks answer <id> --url http://127.0.0.1:8000   # asks field by field
    curl -s -X POST localhost:8000/tasks/<id> -H 'Authorization: Bearer manager-key-1' \\
      -H 'Content-Type: application/json' -d '{"payload": {"approved": true, "reason": "ok"}}'
"""

from __future__ import annotations

import tempfile
from datetime import timedelta
from pathlib import Path

import anyio
from pydantic import BaseModel, Field

from flock import Clock, Flock, ManualClock, SQLiteStore, TaskAnswerInvalid, flock_type

LIMIT = 100.0


@flock_type
class Expense(BaseModel):
    who: str
    what: str
    amount: float = Field(gt=0)


@flock_type
class Decision(BaseModel):
    approved: bool
    reason: str = Field(min_length=2, max_length=200)


@flock_type
class Payment(BaseModel):
    who: str
    amount: float


def build(store: SQLiteStore | None = None, clock: Clock | None = None) -> Flock:
    flock = Flock(store=store, clock=clock)
    flock.agent("auto").consumes(Expense, where=lambda e: e.amount <= LIMIT).publishes(Decision).calls(
        lambda e: Decision(approved=True, reason=f"under the {LIMIT:.0f} limit")
    )
    flock.agent("manager").consumes(Expense, where=lambda e: e.amount > LIMIT).publishes(Decision).human(
        prompt="Approve this expense?",
        timeout=timedelta(days=2),
        default=Decision(approved=False, reason="no answer within two days"),
    )
    flock.agent("payer").consumes(Expense, Decision).publishes(Payment, fan_out=(0, 1)).calls(
        lambda e, d: [Payment(who=e.who, amount=e.amount)] if d.approved else []
    )
    return flock


flock = build()  # for `flock serve 17_human_approval:flock` and `flock tasks ... 17_human_approval:flock`


async def tour(board: Path) -> None:
    clock = ManualClock()  # the two-day deadline passes in no time

    first = build(SQLiteStore(board), clock)
    for who, what, amount in (
        ("ada", "coffee beans", 12.5),
        ("bob", "laptop", 1800),
        ("cy", "conference", 900),
    ):
        await first.publish(Expense(who=who, what=what, amount=amount))
    summary = await first.run_until_idle()
    print(f"process 1: {summary.activations} activations, {summary.open_tasks} tasks open for the manager")
    await first.shutdown()
    await first.store.close()

    later = build(SQLiteStore(board), clock)  # a new process on the same board
    await later.resume()
    open_tasks = await later.tasks.list()
    for task in open_tasks:
        expense = task.inputs[0].payload
        print(f"  task for {task.agent}: {task.prompt} {expense['what']} ({expense['amount']:.2f})")
    laptop = next(t for t in open_tasks if t.inputs[0].payload["what"] == "laptop")
    try:
        await later.tasks.answer(laptop.id, {"approved": "sure"})
    except TaskAnswerInvalid as exc:
        print("  a wrong answer is refused:", ", ".join(f"{e['loc'][0]}: {e['msg']}" for e in exc.errors))
    await later.tasks.answer(laptop.id, {"approved": True, "reason": "needed for the new hire"})
    await later.run_until_idle()
    print(f"  answered the laptop; {len(await later.tasks.list())} task left open")

    clock.advance(timedelta(days=3))
    summary = await later.run_until_idle()
    print(f"three days later: {summary.open_tasks} tasks open")
    for decision in await later.store.list():
        if decision.type == "Decision":
            model = decision.as_model(Decision)
            print(f"  {decision.produced_by}: approved={model.approved} ({model.reason})")
    payments = sorted((p.who, p.amount) for p in await later.store.get_by_type(Payment))
    print("payments:", payments)
    await later.store.close()


async def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        await tour(Path(tmp) / "expenses.db")


if __name__ == "__main__":
    anyio.run(main)
