"""Timers: agents that run on a schedule instead of on artifacts.

    python examples/07_timers.py

A ``heartbeat`` runs every five minutes (three times), a ``standup`` at 09:00 on weekdays (cron),
and a ``reminder`` once, two hours in. A scheduled agent gets no input artifact: its engine reads
``ctx.tick`` (which run this is, and when it fired), and each run starts a new workflow.

Schedules never keep ``run_until_idle`` from returning; ``run_until(condition, timeout=...)`` drives
them. The ManualClock jumps from one deadline to the next, so two simulated days take milliseconds.
"""

from __future__ import annotations

from datetime import timedelta

import anyio
from pydantic import BaseModel

from flock import Context, Flock, ManualClock, Until, flock_type


@flock_type
class Note(BaseModel):
    agent: str
    iteration: int
    fired_at: str


def note(ctx: Context) -> Note:
    tick = ctx.tick  # a flock.Tick: iteration (from 1) and fired_at
    return Note(agent=ctx.agent, iteration=tick.iteration, fired_at=tick.fired_at.strftime("%a %H:%M"))


async def main() -> None:
    clock = ManualClock()  # starts on Tuesday 2030-01-01 00:00 UTC
    async with Flock(clock=clock) as flock:
        every_5_min = timedelta(minutes=5)
        flock.agent("heartbeat").schedule(every=every_5_min, max_repeats=3).publishes(Note).calls(note)
        flock.agent("standup").schedule(cron="0 9 * * 1-5", max_repeats=2).publishes(Note).calls(note)
        flock.agent("reminder").schedule(after=timedelta(hours=2)).publishes(Note).calls(note)

        summary = await flock.run_until_idle()  # runs what is due now, then returns
        print(f"run_until_idle: {summary.activations} activation(s) due at the start, then returned")

        two_standups = Until.artifact_count(Note, produced_by="standup").exactly(2)
        done = await flock.run_until(two_standups, timeout=5)
        print(f"run_until(two standups): {done}")
        summary = await flock.run_until_idle()

        for artifact in await flock.store.list():
            who, workflow = artifact.produced_by, artifact.correlation_id[:8]
            print(f"{who:>9} → {artifact.type} {artifact.payload}  workflow {workflow}")
        print()
        print(summary)
        print(f"clock: {clock.now():%a %Y-%m-%d %H:%M}")


if __name__ == "__main__":
    anyio.run(main)
