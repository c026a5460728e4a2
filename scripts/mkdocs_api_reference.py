"""MkDocs hook: the API reference page lists every public name once and documents it from its docstring.

docs/api.md is an index: one list item per name of ``flock.__all__`` (``- `Name` — one line``),
grouped under ``##`` headings. When the site is built, this hook appends a "Reference" part that
renders each listed name with mkdocstrings (signature, parameters, docstring with its examples),
in the same groups and order, and links every index entry to it. So adding a public name means
adding one line to docs/api.md; tests/test_docs_api.py checks that nothing is left out.
"""

from __future__ import annotations

import re
from typing import Any

ENTRY = re.compile(r"^- `(?P<name>[A-Za-z_][A-Za-z0-9_]*)` — ", re.MULTILINE)
HEADING = re.compile(r"^## (?P<title>.+)$", re.MULTILINE)
COMMENT = re.compile(r"<!--.*?-->", re.DOTALL)
DSPY_DOCS = "https://dspy.ai/api/adapters/{name}/"


def target(name: str) -> str | None:
    """The dotted path mkdocstrings renders for a public name (None: documented by DSPy)."""
    import flock

    lazy = flock._LAZY.get(name)
    if lazy is not None:
        module, attr = lazy
        return None if not module.startswith("flock") else f"{module}.{attr}"
    return f"flock.{name}"


def anchor(name: str) -> str:
    return f"ref-{name.lower()}"


def reference(markdown: str) -> str:
    """``markdown`` (docs/api.md) with the rendered reference appended and the index linked to it."""
    visible = COMMENT.sub("", markdown)
    parts: list[str] = ["", "---", "", "# Reference", ""]
    for block in re.split(r"(?=^## )", visible, flags=re.MULTILINE):
        heading = HEADING.match(block)
        names = ENTRY.findall(block)
        if heading is None or not names:
            continue
        parts += [f"## {heading['title']} {{ #ref-group-{_slug(heading['title'])} }}", ""]
        for name in names:
            path = target(name)
            if path is None:
                parts += [
                    f"### `{name}` {{ #{anchor(name)} }}",
                    "",
                    f"DSPy's `{name}`, re-exported for `DSPyEngine(adapter=...)`: see the "
                    f"[DSPy reference]({DSPY_DOCS.format(name=name)}).",
                    "",
                ]
            else:
                parts += [f"::: {path}", "    options:", f"      heading: {name}", ""]
    linked = ENTRY.sub(lambda m: f"- [`{m['name']}`](#{_ref_id(m['name'])}) — ", markdown)
    return linked + "\n".join(parts)


def _ref_id(name: str) -> str:
    path = target(name)
    return anchor(name) if path is None else path


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")


def on_page_markdown(markdown: str, page: Any, config: Any, files: Any) -> str:
    if page.file.src_uri != "api.md":
        return markdown
    return reference(markdown)
