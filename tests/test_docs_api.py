"""The API reference (docs/api.md) and ``flock.__all__`` list the same names.

An entry in docs/api.md is a list item that starts with the name in backticks, then `` — `` and a
one-line description::

    - `Flock` — A blackboard and the agents that work on it.
"""

from __future__ import annotations

import re
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
