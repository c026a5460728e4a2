"""Several outputs from one model call: a summary, an analysis and a list of risks.

    python examples/02_multi_output.py

One ``publishes(Summary, Analysis)`` call is one output group, so the DSPy engine asks for both in a
single call with the signature ``report: Report -> summary: Summary, analysis: Analysis``. A second
``publishes(Risk, fan_out=(1, 3))`` is a separate group (a second call). Runs on the built-in
"offline" model: no API key; set FLOCK_MODEL (e.g. "openai/gpt-4.1-mini") for a real one.
"""

from __future__ import annotations

import anyio
from pydantic import BaseModel, Field

from flock import Flock, flock_type, inspect_signature


@flock_type
class Report(BaseModel):
    title: str
    body: str


@flock_type
class Summary(BaseModel):
    text: str = Field(max_length=200)


@flock_type
class Analysis(BaseModel):
    sentiment: str = Field(pattern=r"^(positive|neutral|negative)$", default="neutral")
    key_points: list[str] = Field(min_length=2, max_length=4)
    confidence: float = Field(ge=0, le=1)


@flock_type
class Risk(BaseModel):
    description: str
    severity: int = Field(ge=1, le=5)


async def main() -> None:
    async with Flock() as flock:
        analyst = (
            flock.agent("analyst")
            .description("Read the quarterly report closely.")
            .consumes(Report)
            .publishes(Summary, Analysis)
            .publishes(Risk, fan_out=(1, 3))
        )
        print(inspect_signature(analyst, group=0), end="\n\n")

        await flock.publish(Report(title="Q3", body="Revenue grew 12% while churn rose in the SMB segment."))
        await flock.run_until_idle(raise_on_error=True)

        for artifact in await flock.store.list():
            print(f"{artifact.produced_by:>8} -> {artifact.type:<8} {artifact.payload}")


if __name__ == "__main__":
    anyio.run(main)
