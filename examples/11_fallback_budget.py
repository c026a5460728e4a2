"""A fallback model and a budget: what a bad hour at the provider costs (latency, not data or money).

    python examples/11_fallback_budget.py

The "primary" provider here is down (it answers every call with HTTP 503, played by
``flock.testing.FunctionModel``, which raises DSPy's provider error as a real 503 would). The engine
retries it once, then the offline model answers as the fallback: the outputs carry the tag
``model:offline`` and the run summary's usage says who did what. A token budget then stops a second
batch of work: no new model call starts past it, the run raises ``BudgetExceeded``, and the untouched
questions stay queued until the budget is raised.
"""

from __future__ import annotations

import anyio
from dspy.lm15 import ServerError
from pydantic import BaseModel

from flock import Budget, BudgetExceeded, CircuitBreaker, DSPyEngine, Flock, flock_type
from flock.testing import FunctionModel


@flock_type
class Question(BaseModel):
    text: str


@flock_type
class Answer(BaseModel):
    text: str


def down(call: object) -> ServerError:
    return ServerError("the primary provider is down", status=503)


async def main() -> None:
    primary = FunctionModel(down)
    engine = DSPyEngine(
        primary,
        retries=1,
        fallbacks=("offline",),
        breaker=CircuitBreaker(failures=2, reset_after=30.0),
        timeout=30.0,
    )
    flock = Flock(budget=Budget(max_tokens=1_500, per="run"))
    flock.agent("answerer").max_concurrency(1).consumes(Question).publishes(Answer).with_engines(engine)

    await flock.publish_many([Question(text=f"Why do bees dance? ({i})") for i in range(3)])
    summary = await flock.run_until_idle()
    answers = [a for a in await flock.store.list() if a.type == "Answer"]
    print(f"{len(answers)} answers, made by: {sorted({t for a in answers for t in a.tags})}")
    for model, usage in sorted(summary.usage.items()):
        print(
            f"  {model}: calls={usage.calls} failures={usage.failures} retries={usage.retries} "
            f"fallbacks={usage.fallbacks} tokens={usage.tokens}"
        )
    print(f"the primary saw {len(primary.calls)} calls: its breaker opened after 2 failures")

    # A tight budget: the first call spends it, the rest waits, untouched, for the next run.
    tight = Flock(budget=Budget(max_tokens=1, per="run"))
    tight.agent("answerer").max_concurrency(1).consumes(Question).publishes(Answer).with_engines(
        DSPyEngine("offline")
    )
    await tight.publish_many([Question(text=f"question {i}") for i in range(4)])
    try:
        await tight.run_until_idle()
    except BudgetExceeded as exc:
        print(f"the run stopped: {str(exc).split(':')[0]}")
    print(
        f"{len(await tight.store.get_by_type(Answer))} answer made within the budget, the rest stays queued"
    )
    tight.settings.budget = Budget(max_tokens=100_000, per="run")  # raised: the stopped run goes on
    await tight.run_until_idle()
    print(f"after raising the budget: {len(await tight.store.get_by_type(Answer))} answers, none lost")


if __name__ == "__main__":
    anyio.run(main)
