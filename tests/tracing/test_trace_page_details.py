"""The trace page's span details and filters, clicked through in real headless Chromium (tests/cdp.py):
a real traced run with content capture on (in a subprocess: enable_tracing() is process-wide)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from cdp import CHROMIUM, Browser, Page

from flock import cli

RUN = """
import anyio
from pydantic import BaseModel
from flock import Flock, flock_type
from flock.tracing import enable_tracing

@flock_type
class Question(BaseModel):
    text: str

@flock_type
class Answer(BaseModel):
    text: str
    sources: list[str]

@flock_type
class Verdict(BaseModel):
    ok: bool

def check(answer: Answer) -> Verdict:
    raise RuntimeError("the checker is out to lunch")

async def main() -> None:
    enable_tracing(store="traces.db", capture_content=True)
    async with Flock("offline") as flock:
        flock.agent("answerer_with_a_rather_long_name").consumes(Question).publishes(Answer)
        flock.agent("checker").consumes(Answer).publishes(Verdict).calls(check)
        async with flock.traced_run("quiz"):
            await flock.publish(Question(text="why do bees dance?"))
            await flock.run_until_idle()

anyio.run(main)
"""

pytestmark = pytest.mark.skipif(
    CHROMIUM is None, reason="Debian's `chromium` is not installed (apt-get install -y chromium)"
)


@pytest.fixture(scope="module")
def page_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    workdir = tmp_path_factory.mktemp("quiz")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "PYTEST"))}
    result = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(RUN)],
        cwd=workdir,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    page = workdir / "quiz.html"
    assert (
        cli.main(["traces", "show", "latest", "--db", str(workdir / "traces.db"), "--html", str(page)]) == 0
    )
    return page


@pytest.fixture
def page(page_file: Path, tmp_path: Path) -> Page:
    with Browser(tmp_path) as browser:
        tab = browser.page()
        tab.navigate(page_file.as_uri())
        tab.wait_for("document.documentElement.dataset.ready === 'true'")
        yield tab


def shown(page: Page) -> list[str]:
    return page.evaluate(
        "Array.from(document.querySelectorAll('.wf .row:not(.filtered) .name')).map(e => e.textContent)"
    )


def set_field(page: Page, field: str, value: object) -> None:
    """Set a filter control as a user would, and fire the event the page listens to."""
    prop, event = ("checked", "change") if isinstance(value, bool) else ("value", "input")
    if field == "filter-agent":
        event = "change"
    page.evaluate(
        f"var f = document.getElementById({json.dumps(field)}); f.{prop} = {json.dumps(value)};"
        f"f.dispatchEvent(new Event({json.dumps(event)}))"
    )


def click(page: Page, name: str) -> None:
    page.evaluate(
        "Array.from(document.querySelectorAll('.wf .row')).find(r => "
        f"r.querySelector('.name').textContent === {json.dumps(name)}).querySelector('.name').click()"
    )


def test_chat_spans_show_messages_and_keys_do_not_wrap(page: Page) -> None:
    [chat] = [n for n in shown(page) if n.startswith("chat ")]
    click(page, chat)
    roles = page.evaluate(
        "Array.from(document.querySelectorAll('#details .msg .role')).map(e => e.textContent)"
    )
    assert roles[:2] == ["system", "user"] and roles[-1] == "assistant"
    headings = page.evaluate("Array.from(document.querySelectorAll('#details h3')).map(e => e.textContent)")
    assert headings[:3] == ["Prompt", "Answer", "Attributes"]
    user = page.evaluate("document.querySelectorAll('#details .msg.user .part')[0].textContent")
    assert "why do bees dance?" in user
    # the answer is JSON: shown pretty-printed (indented on several lines), not as one long line
    answer = page.evaluate("document.querySelector('#details .msg.assistant .part').textContent")
    assert answer.startswith("{\n  ") and json.loads(answer)
    # every attribute name sits on one line (the old table broke them letter by letter)
    heights = page.evaluate(
        "Array.from(document.querySelectorAll('#details .key')).map(k => "
        "[k.textContent, k.getBoundingClientRect().height, parseFloat(getComputedStyle(k).lineHeight)])"
    )
    assert heights and all(height <= line * 1.5 for _, height, line in heights), heights
    long_name = next(n for n in shown(page) if n.startswith("flock.activate answerer"))
    box = page.evaluate(
        "(() => { var r = Array.from(document.querySelectorAll('.wf .row .name'))"
        f".find(e => e.textContent === {json.dumps(long_name)}); return [r.getBoundingClientRect().height, "
        "parseFloat(getComputedStyle(r.parentNode).lineHeight)]; })()"
    )
    assert box[0] <= box[1] * 1.5  # the waterfall keeps a long span name on one line


def test_publish_spans_show_the_payload(page: Page) -> None:
    click(page, "flock.publish Question")
    headings = page.evaluate("Array.from(document.querySelectorAll('#details h3')).map(e => e.textContent)")
    assert headings[0] == "Published payload"
    payload = page.evaluate("document.querySelector('#details pre').textContent")
    assert json.loads(payload) == {"text": "why do bees dance?"}
    assert payload == json.dumps({"text": "why do bees dance?"}, indent=2)


def test_filters_by_agent_errors_and_search(page: Page) -> None:
    everything = shown(page)
    assert page.evaluate("document.getElementById('match-count').textContent") == f"{len(everything)} spans"
    agents = page.evaluate("Array.from(document.getElementById('filter-agent').options).map(o => o.value)")
    assert agents == ["", "answerer_with_a_rather_long_name", "checker"]

    set_field(page, "filter-agent", "checker")
    only_checker = shown(page)
    assert "flock.activate checker" in only_checker
    assert not any("answerer" in n for n in only_checker)
    assert len(only_checker) < len(everything)

    set_field(page, "filter-agent", "")
    set_field(page, "filter-errors", True)
    errors = shown(page)
    assert errors and "flock.activate checker" in errors
    assert page.evaluate(
        "Array.from(document.querySelectorAll('.wf .row:not(.filtered)'))"
        ".every(r => r.classList.contains('err'))"
    )
    assert page.evaluate("document.getElementById('match-count').textContent") == (
        f"{len(errors)} of {len(everything)} spans"
    )

    # search looks into attributes too: the error message is in the failed spans and the published
    # WorkflowError's payload, nowhere else
    set_field(page, "filter-errors", False)
    set_field(page, "filter-search", "OUT TO LUNCH")
    assert shown(page) == [
        "flock.activate checker",
        "flock.evaluate checker",
        "flock.publish flock.WorkflowError",
    ]
    set_field(page, "filter-search", "bees dance")
    assert "flock.publish Question" in shown(page)  # found in its captured payload
    set_field(page, "filter-search", "")
    assert shown(page) == everything
