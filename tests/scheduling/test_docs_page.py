"""docs/scheduling.md runs as written: its Python blocks, in order, print the output shown below them."""

from __future__ import annotations

import ast
import contextlib
import io
import re
from pathlib import Path
from typing import Any

import pytest

PAGE = Path(__file__).resolve().parents[2] / "docs" / "scheduling.md"
BLOCK = re.compile(r"```python\n(?P<code>.*?)```(?:\s*```text\n(?P<output>.*?)```)?", re.DOTALL)

pytestmark = pytest.mark.anyio


def blocks() -> list[tuple[str, str | None]]:
    return [(m["code"], m["output"]) for m in BLOCK.finditer(PAGE.read_text(encoding="utf-8"))]


def test_the_page_has_checked_examples() -> None:
    found = blocks()
    assert len(found) >= 10
    assert sum(output is not None for _, output in found) >= 10


async def test_the_page_runs_and_prints_what_it_shows() -> None:
    namespace: dict[str, Any] = {"__name__": "scheduling_md"}
    for number, (code, expected) in enumerate(blocks(), start=1):
        name = f"scheduling.md block {number}"
        compiled = compile(code, name, "exec", flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT)
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            result = eval(compiled, namespace)
            if result is not None:
                await result
        if expected is not None:
            assert out.getvalue() == expected, f"block {number} printed:\n{out.getvalue()}\n---\n{code}"
