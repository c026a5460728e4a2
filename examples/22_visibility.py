"""Who may see what: visibility on artifacts, and how it passes to what agents make of them.

    .venv/bin/python examples/22_visibility.py

An HR case is published for the agents labelled "hr" only. The HR agent sees it and writes a
summary; the summary is at least as restricted as the case it was made from, so the all-hands
agent never sees either. A salary note is private to one agent. An embargoed announcement becomes
visible to everyone after an hour (the flock's clock jumps ahead, no real waiting). Visibilities
that would silently become public (no tenant, no labels, no agents) are refused when made.
"""

from __future__ import annotations

from datetime import timedelta

import anyio
from pydantic import BaseModel

from flock import (
    AfterVisibility,
    FilterConfig,
    Flock,
    LabelledVisibility,
    ManualClock,
    PrivateVisibility,
    TenantVisibility,
    VisibilityError,
    flock_type,
)


@flock_type
class Case(BaseModel):
    text: str


@flock_type
class Summary(BaseModel):
    text: str


@flock_type
class Note(BaseModel):
    text: str


@flock_type
class Announcement(BaseModel):
    text: str


async def main() -> None:
    seen: list[str] = []

    def saw(agent: str):
        return lambda item: seen.append(f"{agent} saw {type(item).__name__}: {item.text}")

    async with Flock(clock=ManualClock()) as flock:
        flock.agent("hr").labels("hr").consumes(Case).publishes(Summary).calls(
            lambda case: Summary(text=f"summary of {case.text}")
        )
        flock.agent("payroll").consumes(Note).calls(saw("payroll"))
        flock.agent("all_hands").consumes(Case).consumes(Summary).consumes(Note).consumes(Announcement).calls(
            saw("all_hands")
        )

        await flock.publish(Case(text="complaint #7"), visibility=LabelledVisibility(required_labels={"hr"}))
        await flock.publish(Note(text="raise for ada"), visibility=PrivateVisibility(agents={"payroll"}))
        await flock.publish(
            Announcement(text="new office"), visibility=AfterVisibility(ttl=timedelta(hours=1))
        )
        await flock.run_until_idle()  # waits for the embargo on the flock's clock

        for line in seen:
            print(line)
        summaries, _ = await flock.store.query_artifacts(FilterConfig(type_names={"Summary"}))
        print(f"hr wrote {summaries[0].payload['text']!r}, visible as {summaries[0].visibility!r}")
        print("all_hands saw neither the case nor its summary, nor the private note")

    for make in (
        lambda: TenantVisibility(tenant_id=""),
        lambda: LabelledVisibility(required_labels=set()),
        lambda: PrivateVisibility(agents=set()),
    ):
        try:
            make()
        except VisibilityError as exc:
            print(f"refused: {exc}")


if __name__ == "__main__":
    anyio.run(main)
