"""A local model in the loop: contract-valid outputs from a 135M-parameter model on 127.0.0.1.

    python3 scripts/real_model.py setup    # once: llama.cpp's server and SmolLM2-135M (~10 min)
    python3 scripts/real_model.py serve    # in another terminal: http://127.0.0.1:8765/v1
    python examples/12_local_model.py

Any OpenAI-compatible server works: set ``LOCAL_MODEL_URL`` (default ``http://127.0.0.1:8765/v1``)
and ``LOCAL_MODEL`` (default ``openai/smollm2``), e.g. Ollama's ``http://127.0.0.1:11434/v1`` with
``openai/llama3.2`` or vLLM's ``http://127.0.0.1:8000/v1``. The engine sends each output group's JSON
schema as ``response_format`` (structured outputs), in the form the server accepts, so even a tiny
model answers with exactly three pitches. When no server answers, the example says how to start
one and exits.
"""

from __future__ import annotations

import os
import socket
import sys
from urllib.parse import urlparse

import anyio
from pydantic import BaseModel, Field

from flock import DSPyEngine, Flock, flock_type

URL = os.environ.get("LOCAL_MODEL_URL", "http://127.0.0.1:8765/v1")
MODEL = os.environ.get("LOCAL_MODEL", "openai/smollm2")


@flock_type
class Topic(BaseModel):
    name: str


@flock_type
class Pitch(BaseModel):
    title: str = Field(max_length=120)
    hook: str


def server_is_up(url: str) -> bool:
    """Whether something listens at the URL's host and port (a busy llama.cpp server is slow to
    answer any request, so a connection is the quick sign of life)."""
    parts = urlparse(url)
    try:
        with socket.create_connection((parts.hostname or "127.0.0.1", parts.port or 80), timeout=2):
            return True
    except OSError:
        return False


async def main() -> None:
    if not server_is_up(URL):
        print(f"No model server answers at {URL}.")
        print("Start SmolLM2-135M on llama.cpp with:")
        print("    python3 scripts/real_model.py setup   # once, builds llama.cpp (~10 min)")
        print("    python3 scripts/real_model.py serve")
        print("or point LOCAL_MODEL_URL / LOCAL_MODEL at any OpenAI-compatible server (Ollama, vLLM).")
        return
    engine = DSPyEngine(
        MODEL,
        max_tokens=400,  # a small model may ramble: bound every answer
        temperature=0.2,
        lm_kwargs={"api_base": URL, "api_key": "local"},  # local servers ignore the key
    )
    async with Flock() as flock:
        flock.agent("pitcher").description("Write short pitches about the topic.").consumes(Topic).publishes(
            Pitch, fan_out=3
        ).with_engines(engine)
        await flock.publish(Topic(name="urban beekeeping"))
        summary = await flock.run_until_idle()
        pitches = await flock.store.get_by_type(Pitch)
        print(f"{len(pitches)} pitches from {MODEL}:")
        for pitch in pitches:
            print(f"  - {pitch.title}: {pitch.hook[:80]}")
        forms = flock.settings.shared.get("structured_outputs", {})
        print(f"structured outputs: {', '.join(sorted(set(forms.values()))) or 'not used'}")
        print(f"model calls: {int(summary.metrics.get('model_calls', 0))}, errors: {len(summary.errors)}")


if __name__ == "__main__":
    anyio.run(main)
    sys.exit(0)
