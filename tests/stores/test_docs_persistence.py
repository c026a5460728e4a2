"""docs/persistence.md, from "One writer per board" to "Floats", runs as written: its Python blocks,
in order and in an empty folder, print the output shown below them."""

from __future__ import annotations

import ast
import contextlib
import io
import re
from pathlib import Path
from typing import Any

import pytest

PAGE = Path(__file__).resolve().parents[2] / "docs" / "persistence.md"
BLOCK = re.compile(r"```python\n(?P<code>.*?)```(?:\s*```text\n(?P<output>.*?)```)?", re.DOTALL)

pytestmark = pytest.mark.anyio


def blocks() -> list[tuple[str, str | None]]:
    text = PAGE.read_text(encoding="utf-8")
    section = text[text.index("## One writer per board") : text.index("## Floats")]
    return [(m["code"], m["output"]) for m in BLOCK.finditer(section)]


async def test_the_writer_and_failure_sections_run_and_print_what_they_show(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    found = blocks()
    assert len(found) == 2 and all(output is not None for _, output in found)
    namespace: dict[str, Any] = {"__name__": "persistence_md"}
    for number, (code, expected) in enumerate(found, start=1):
        name = f"persistence.md block {number}"
        compiled = compile(code, name, "exec", flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT)
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            result = eval(compiled, namespace)
            if result is not None:
                await result
        assert out.getvalue() == expected, f"block {number} printed:\n{out.getvalue()}\n---\n{code}"
