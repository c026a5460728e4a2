"""Griffe extension for the API reference: our docstrings use a few reST habits; show them as Markdown.

- ``:class:`~flock.Flock``` (and ``:func:``, ``:meth:``, ``:data:``, ...) → ``Flock`` in code font;
- ````literal```` → ``literal``;
- a paragraph ending in ``::`` followed by an indented block → a ``python`` code block.
"""

from __future__ import annotations

import re
from typing import Any

import griffe

ROLE = re.compile(r":(?:class|func|meth|attr|data|mod|exc|obj):`~?([^`]+)`")
DOUBLE = re.compile(r"``([^`]+)``")


def to_markdown(text: str) -> str:
    text = ROLE.sub(lambda m: f"`{m[1].rsplit('.', 1)[-1] if m[0].count('~') else m[1]}`", text)
    text = DOUBLE.sub(r"`\1`", text)
    lines = text.splitlines()
    out: list[str] = []
    i = 0
    while i < len(lines):
        line = lines[i]
        if (line.rstrip().endswith("::") and not line.strip().startswith(("-", "*"))) or line.strip() == "::":
            stripped = line.rstrip()[:-2].rstrip()
            if stripped:
                out.append(stripped + ":")
            j = i + 1
            while j < len(lines) and not lines[j].strip():
                j += 1
            base = len(line) - len(line.lstrip())
            block: list[str] = []
            while j < len(lines) and (not lines[j].strip() or len(lines[j]) - len(lines[j].lstrip()) > base):
                block.append(lines[j])
                j += 1
            while block and not block[-1].strip():
                block.pop()
            if block:
                indent = min(len(b) - len(b.lstrip()) for b in block if b.strip())
                out += ["", " " * base + "```python"]
                out += [(" " * base + b[indent:]) if b.strip() else "" for b in block]
                out += [" " * base + "```", ""]
                i = j
                continue
        out.append(line)
        i += 1
    return "\n".join(out)


class RstToMarkdown(griffe.Extension):
    def on_instance(self, *, obj: griffe.Object, **kwargs: Any) -> None:
        if obj.docstring is not None:
            obj.docstring.value = to_markdown(obj.docstring.value)
