"""Every ```python block of docs/*.md and README.md runs, as written, in this test.

How a page runs (the rules for writing docs code blocks):

- **A page is one script.** Its ```python blocks run in order in one namespace, so a block is a
  fragment that continues the blocks above it on the same page: it may use the types, agents and
  the ``flock`` that earlier blocks made. Each page starts from an empty namespace.
- **Top-level ``await`` works**: every block is compiled as async code and runs on one event loop
  per page (``asyncio.run(...)`` inside a block works too).
- **Printed output is checked**: a ```text block that directly follows a ```python block (only
  blank lines between) must equal what the python block printed (trailing spaces aside).
- **Opting out**: put ``<!-- docs: no-run REASON -->`` on the line before a block that must not run
  (for instance one that needs a real provider's API key), and ``<!-- docs: no-check -->`` before a
  ```text block that shows output which varies (timings, ids). Say why in REASON; use it rarely.
- Blocks run in a fresh temporary working directory, on the offline model (``FLOCK_MODEL`` unset),
  with real provider calls forbidden. A page that calls ``enable_tracing(`` runs in a child
  process, since that installs the process-wide tracer provider.

A failure names the page, the block number (1 = the page's first ```python block) and its first
line in the file, so the block is easy to find and run on its own.
"""

from __future__ import annotations

import ast
import asyncio
import contextlib
import difflib
import io
import re
import subprocess
import sys
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent
PAGES = [*sorted((ROOT / "docs").rglob("*.md")), ROOT / "README.md"]
FENCE = re.compile(
    r"(?P<marker><!--\s*docs:\s*(?P<directive>[a-z-]+)(?P<reason>[^>]*)-->\s*\n)?"
    r"^(?P<indent>[ \t]*)```(?P<lang>[\w-]*)[^\n]*\n(?P<body>.*?)^(?P=indent)```[ \t]*$",
    re.DOTALL | re.MULTILINE,
)


@dataclass
class Block:
    number: int  # 1-based among the page's python blocks
    line: int  # line of the opening fence in the page
    code: str
    run: bool
    expected: str | None  # the ```text block right after it, when checked


def _dedent(body: str, indent: str) -> str:
    return "".join(ln[len(indent) :] if ln.startswith(indent) else ln for ln in body.splitlines(True))


def parse(text: str) -> list[Block]:
    """The python blocks of a page, each with the text output it promises (if any)."""
    blocks: list[Block] = []
    previous_end = -1
    for match in FENCE.finditer(text):
        lang, directive = match["lang"], match["directive"]
        body = _dedent(match["body"], match["indent"])
        if lang == "python":
            line = text.count("\n", 0, match.start("indent")) + 1
            blocks.append(Block(len(blocks) + 1, line, body, directive != "no-run", None))
        elif lang == "text" and blocks and directive != "no-check":
            between = text[previous_end : match.start()]
            if between.strip() == "" and blocks[-1].expected is None:
                blocks[-1].expected = body
        previous_end = match.end()
    return blocks


def _lines(text: str) -> list[str]:
    """Lines without trailing spaces (editors strip them from pages)."""
    return [line.rstrip() + "\n" for line in text.splitlines()]


def _ids(pages: list[Path]) -> list[str]:
    return [str(p.relative_to(ROOT)) for p in pages]


PYTHON_PAGES = [p for p in PAGES if parse(p.read_text(encoding="utf-8"))]


def test_the_harness_finds_the_pages() -> None:
    names = set(_ids(PYTHON_PAGES))
    assert {"README.md", "docs/concepts.md", "docs/getting-started.md", "docs/scheduling.md"} <= names


def test_parse_reads_markers_and_outputs() -> None:
    page = (
        "```python\nprint(1)\n```\n\n```text\n1\n```\n"
        "<!-- docs: no-run needs a key -->\n```python\nboom()\n```\n"
        "- item\n\n    ```python\n    x = 1\n    ```\n"
        "```python\nprint(2)\n```\n<!-- docs: no-check -->\n```text\nwhatever\n```\n"
    )
    blocks = parse(page)
    assert [(b.number, b.run, b.expected) for b in blocks] == [
        (1, True, "1\n"),
        (2, False, None),
        (3, True, None),
        (4, True, None),
    ]
    assert blocks[2].code == "x = 1\n"
    assert blocks[0].line == 1


def _run_page(page: Path, blocks: list[Block]) -> None:
    rel = page.relative_to(ROOT)
    namespace: dict[str, Any] = {"__name__": "__main__"}
    with asyncio.Runner() as runner:
        for block in blocks:
            if not block.run:
                continue
            where = f"{rel} block {block.number} (line {block.line})"
            out = io.StringIO()
            try:
                compiled = compile(block.code, where, "exec", flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT)
                with contextlib.redirect_stdout(out):
                    result = eval(compiled, namespace)
                    if result is not None:
                        runner.run(result)
            except BaseException as exc:
                if isinstance(exc, KeyboardInterrupt):
                    raise
                detail = "".join(traceback.format_exception(exc))
                pytest.fail(
                    f"{where} failed:\n{detail}\n--- the block ---\n{block.code}"
                    f"--- it printed ---\n{out.getvalue()}",
                    pytrace=False,
                )
            printed = _lines(out.getvalue())
            if block.expected is not None and printed != _lines(block.expected):
                diff = difflib.unified_diff(_lines(block.expected), printed, "page", "printed")
                pytest.fail(
                    f"{where} printed something else than the ```text block below it shows:\n"
                    + "".join(diff)
                    + "(fix the page, or put <!-- docs: no-check --> before a text block that varies)",
                    pytrace=False,
                )


def _installs_tracing(page: Path) -> bool:
    return "enable_tracing(" in page.read_text(encoding="utf-8")


@pytest.mark.parametrize("page", PYTHON_PAGES, ids=_ids(PYTHON_PAGES))
def test_page_runs(page: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("FLOCK_MODEL", raising=False)
    monkeypatch.delenv("DEFAULT_MODEL", raising=False)
    if not _installs_tracing(page):
        _run_page(page, parse(page.read_text(encoding="utf-8")))
        return
    child = subprocess.run(
        [sys.executable, __file__, str(page)], capture_output=True, text=True, timeout=300, check=False
    )
    if child.returncode != 0:
        pytest.fail(child.stdout + child.stderr[-3000:], pytrace=False)


if __name__ == "__main__":  # a child process runs one page: python tests/test_docs_blocks.py PAGE
    from flock.testing import forbid_real_model_calls

    page = Path(sys.argv[1])
    try:
        with forbid_real_model_calls():
            _run_page(page, parse(page.read_text(encoding="utf-8")))
    except pytest.fail.Exception as failed:
        print(failed.msg)
        sys.exit(1)
