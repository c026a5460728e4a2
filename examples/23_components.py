"""Extension points: hooks around every activation, and hooks that see the whole flock.

    .venv/bin/python examples/23_components.py

A `Redact` agent component (attached with `.with_utilities(...)`) masks e-mail addresses in the
support agent's replies after its engine ran and before the contract check, and counts what it
masked in the run's metrics. A `SpamFilter` orchestrator component (passed as
`Flock(components=[...])`) sees every artifact as it is stored and vetoes activations for tickets
that look like spam; it reports when the flock goes idle. Neither touches the agents' code. See
docs/extending.md for every hook.
"""

from __future__ import annotations

import re

import anyio
from pydantic import BaseModel

from flock import AgentComponent, Artifact, Flock, OrchestratorComponent, flock_type

EMAIL = re.compile(r"[\w.+-]+@[\w-]+\.[\w.]+")


@flock_type
class Ticket(BaseModel):
    text: str


@flock_type
class Reply(BaseModel):
    text: str


class Redact(AgentComponent):
    """Masks e-mail addresses in every output of the agent it is attached to."""

    async def on_post_evaluate(self, agent, ctx, inputs, result):
        masked = 0
        for i, output in enumerate(result.outputs):
            text, n = EMAIL.subn("[email]", output.text)
            result.outputs[i] = output.model_copy(update={"text": text})
            masked += n
        result.metrics["emails_masked"] = masked  # summed into RunSummary.metrics
        return result


class SpamFilter(OrchestratorComponent):
    """Vetoes activations for spam tickets; keeps its counts on itself (per flock, not global)."""

    def __init__(self) -> None:
        self.stored = 0
        self.vetoed = 0

    async def on_artifact_published(self, flock, artifact: Artifact) -> None:
        self.stored += 1

    def on_schedule(self, flock, artifact: Artifact, agent) -> bool:
        spam = "free money" in str(artifact.payload.get("text", "")).lower()
        self.vetoed += spam
        return not spam

    async def on_idle(self, flock) -> None:
        print(f"idle: {self.stored} artifacts stored, {self.vetoed} activation(s) vetoed")


def answer(ticket: Ticket) -> Reply:
    return Reply(text=f"Re '{ticket.text}': we wrote to ops@example.com and will copy you.")


async def main() -> None:
    spam_filter = SpamFilter()
    async with Flock(components=[spam_filter]) as flock:
        flock.agent("support").consumes(Ticket).publishes(Reply).calls(answer).with_utilities(Redact())
        await flock.publish_many([Ticket(text="printer on fire"), Ticket(text="FREE MONEY inside")])
        summary = await flock.run_until_idle()
        for reply in await flock.store.get_by_type(Reply):
            print(reply.text)
        print(f"emails masked: {summary.metrics['emails_masked']}, activations: {summary.activations}")


if __name__ == "__main__":
    anyio.run(main)
