"""A real Flock run with enable_tracing(): spans reach the store, `flock traces` and the browser page.

The run happens in a subprocess because enable_tracing() installs the process-wide tracer provider.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from browser import CHROMIUM, Elements, chromium

from flock import cli
from flock._tracing.trace_query import TraceStore

PIPELINE = """
import anyio
from pydantic import BaseModel
from flock import Flock, flock_type
from flock.tracing import enable_tracing

@flock_type
class Idea(BaseModel):
    topic: str

@flock_type
class Pitch(BaseModel):
    title: str

@flock_type
class Review(BaseModel):
    stars: int

@flock_type
class Tagline(BaseModel):
    text: str

@flock_type
class Poster(BaseModel):
    colors: list[str]

@flock_type
class Greenlight(BaseModel):
    title: str

def censor(tagline: Tagline) -> Greenlight:
    raise RuntimeError("the censor refuses")

async def main() -> None:
    enable_tracing(store="traces.db")
    async with Flock() as flock:
        flock.agent("writer").consumes(Idea).publishes(Pitch).calls(lambda i: Pitch(title=i.topic.title()))
        flock.agent("critic").consumes(Pitch).publishes(Review, fan_out=2).calls(
            lambda p: [Review(stars=4), Review(stars=5)]
        )
        flock.agent("marketer").consumes(Pitch).publishes(Tagline, Poster).calls(
            lambda p: [Tagline(text=p.title + "!"), Poster(colors=["gold"])]
        )
        flock.agent("producer").consumes(Pitch, Tagline).publishes(Greenlight).calls(
            lambda p, t: Greenlight(title=p.title)
        )
        flock.agent("censor").consumes(Tagline).publishes(Greenlight).calls(censor)
        async with flock.traced_run("studio"):
            await flock.publish(Idea(topic="bees"))
            await flock.run_until_idle()

anyio.run(main)
"""


@pytest.fixture(scope="module")
def studio(tmp_path_factory: pytest.TempPathFactory) -> Path:
    workdir = tmp_path_factory.mktemp("studio")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "PYTEST"))}
    result = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(PIPELINE)],
        cwd=workdir,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return workdir / "traces.db"


def test_the_run_is_one_trace_with_causal_tree(studio: Path) -> None:
    with TraceStore(studio) as store:
        [run] = store.list_runs()
        trace = store.load(run.trace_id)
    assert run.name == "studio"
    assert sorted(run.agents) == ["censor", "critic", "marketer", "producer", "writer"]
    assert run.activations == 5
    assert run.artifacts_by_type == {
        "Idea": 1,
        "Pitch": 1,
        "Review": 2,
        "Tagline": 1,
        "Poster": 1,
        "Greenlight": 1,
        "flock.WorkflowError": 1,  # the censor's failure, published to the board
    }
    assert run.errors == 1
    spans = {s.span_id: s for s in trace.spans}
    for span in trace.spans:
        if span.category == "activate":  # woken by an artifact: a child of the span that published it
            cause = spans[span.parent_id or ""]
            assert cause.category == "publish"
            assert cause.attributes["flock.artifact.type"] in span.attributes["flock.input.types"]
    [censor] = [s for s in trace.spans if s.name == "flock.activate censor"]
    assert censor.is_error
    [producer] = [s for s in trace.spans if s.name == "flock.activate producer"]
    assert len(producer.links) == 1  # the AND gate's other input
    # content capture is off: publish spans name the artifact, they do not copy its payload
    assert not any("flock.artifact.payload" in s.attributes for s in trace.spans)


def test_cli_and_browser_show_the_run(
    studio: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli.main(["traces", "--db", str(studio)]) == 0
    table = capsys.readouterr().out
    assert "studio" in table
    assert cli.main(["traces", "show", "latest", "--db", str(studio)]) == 0
    tree = capsys.readouterr().out
    assert "flock.activate censor" in tree and "ERROR" in tree
    page = tmp_path / "studio.html"
    assert cli.main(["traces", "show", "latest", "--db", str(studio), "--html", str(page)]) == 0
    if CHROMIUM is None:
        pytest.skip("Debian's `chromium` is not installed (apt-get install -y chromium)")
    result = chromium(page, tmp_path, "--dump-dom")
    assert result.returncode == 0, result.stderr[-2000:]
    dom = Elements()
    dom.feed(result.stdout)
    keys = {e[1]["data-key"] for e in dom.elements if "node" in e[1].get("class", "").split()}
    assert {"agent:writer", "agent:critic", "agent:censor", "type:Greenlight", "source:external"} <= keys
    assert "flock.activate producer" in dom.text("name")


CAPTURED = """
import anyio
from pydantic import BaseModel
from flock import DSPyEngine, Flock, flock_type
from flock.tracing import enable_tracing

@flock_type
class Note(BaseModel):
    text: str

@flock_type
class Summary(BaseModel):
    text: str

async def main() -> None:
    enable_tracing(store="traces.db", capture_content=True)
    async with Flock("offline") as flock:
        flock.agent("summarizer").consumes(Note).publishes(Summary)
        async with flock.traced_run("captured"):
            await flock.publish(Note(text="the deploy key is sk-live-NOTREALabcdef0123456789 keep it safe"))
            await flock.run_until_idle()

anyio.run(main)
"""


def test_captured_prompts_reach_the_store_without_keys(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "PYTEST"))}
    env["OPENAI_API_KEY"] = "sk-proj-FAKEFAKEFAKE0123456789"
    result = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(CAPTURED)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    raw = b"".join(p.read_bytes() for p in tmp_path.glob("traces.db*"))
    assert b"sk-live-NOTREAL" not in raw and b"sk-proj-FAKE" not in raw
    with TraceStore(tmp_path / "traces.db") as store:
        trace = store.load(store.resolve("latest"))
    [chat] = [s for s in trace.spans if s.category == "model"]
    assert "the deploy key is [REDACTED] keep it safe" in chat.attributes["gen_ai.input.messages"]
    assert "gen_ai.output.messages" in chat.attributes
    assert chat.attributes["gen_ai.response.finish_reasons"] == ["stop"]
    # with content capture on, a publish span carries the artifact's payload (scrubbed like the rest)
    [note] = [s for s in trace.spans if s.name == "flock.publish Note"]
    assert json.loads(note.attributes["flock.artifact.payload"]) == {
        "text": "the deploy key is [REDACTED] keep it safe"
    }
