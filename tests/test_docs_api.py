"""The API reference (docs/api.md) and ``flock.__all__`` list the same names, and every name is documented.

An entry in docs/api.md is a list item that starts with the name in backticks, then `` — `` and a
one-line description::

    - `Flock` — A blackboard and the agents that work on it.
"""

from __future__ import annotations

import dataclasses
import importlib
import re
import sys
from collections import Counter
from pathlib import Path

import flock

API_MD = Path(__file__).resolve().parent.parent / "docs" / "api.md"
ENTRY = re.compile(r"^- `([A-Za-z_][A-Za-z0-9_]*)` — \S", re.MULTILINE)
COMMENT = re.compile(r"<!--.*?-->", re.DOTALL)


def documented_names() -> list[str]:
    """Names of the entries in docs/api.md (HTML comments, which readers never see, are skipped)."""
    return ENTRY.findall(COMMENT.sub("", API_MD.read_text(encoding="utf-8")))


def test_all_is_sorted() -> None:
    assert flock.__all__ == sorted(flock.__all__)


def test_all_has_no_duplicates() -> None:
    assert len(flock.__all__) == len(set(flock.__all__))


def test_every_public_name_is_documented() -> None:
    missing = sorted(set(flock.__all__) - set(documented_names()))
    assert not missing, f"add these to docs/api.md as '- `Name` — description': {missing}"


def test_every_documented_name_is_public() -> None:
    extra = sorted(set(documented_names()) - set(flock.__all__))
    assert not extra, f"docs/api.md documents names that are not in flock.__all__: {extra}"


def test_each_name_is_documented_once() -> None:
    twice = sorted(name for name, n in Counter(documented_names()).items() if n > 1)
    assert not twice, f"docs/api.md documents these names more than once: {twice}"


# ---------------------------------------------------------------- the generated reference
# docs/api.md is also the source of the reference part of the page: scripts/mkdocs_api_reference.py
# renders every listed name from its docstring with mkdocstrings when the site is built (the
# `mkdocs build --strict` of the gate fails on a name it cannot resolve or a docstring it cannot read).

sys.path.insert(0, str(API_MD.parent.parent / "scripts"))
import mkdocs_api_reference as hook  # noqa: E402

DSPY_NAMES = {"ChatAdapter", "JSONAdapter", "XMLAdapter", "TwoStepAdapter", "BAMLAdapter"}


def own_docstring(obj: object) -> str:
    """The object's own docstring; a dataclass's generated ``Name(field, ...)`` text does not count."""
    doc = (obj.__dict__.get("__doc__") if isinstance(obj, type) else getattr(obj, "__doc__", None)) or ""
    name = getattr(obj, "__name__", "")
    if isinstance(obj, type) and dataclasses.is_dataclass(obj) and doc.startswith(f"{name}("):
        return ""
    return doc.strip()


def test_every_public_name_has_a_docstring_of_its_own() -> None:
    undocumented = sorted(
        name for name in flock.__all__ if name not in DSPY_NAMES and not own_docstring(getattr(flock, name))
    )
    assert not undocumented, f"write a docstring (what it is, how to use it) for: {undocumented}"


def test_the_reference_renders_every_public_name_from_its_docstring() -> None:
    page = hook.reference(API_MD.read_text(encoding="utf-8"))
    directives = re.findall(r"^::: (\S+)\n    options:\n      heading: (\w+)$", page, re.MULTILINE)
    rendered = {heading: path for path, heading in directives}
    linked_to_dspy = set(re.findall(r"^### `(\w+)` \{ #ref-\w+ \}$", page, re.MULTILINE))
    assert linked_to_dspy == DSPY_NAMES
    assert sorted(rendered) == sorted(set(flock.__all__) - DSPY_NAMES)
    for name, path in rendered.items():
        module, _, attr = path.rpartition(".")
        assert getattr(importlib.import_module(module), attr) is getattr(flock, name), path
    for name in flock.__all__:  # every index entry links to its rendered entry
        assert f"- [`{name}`](#" in page, name
